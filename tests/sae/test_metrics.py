"""Reconstruction metrics and the sink rule, each against a slow, obviously-correct reference."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.sae import CoderConfig, build_coder
from alignlab.sae.data import ActivationBatch, SinkRule, sink_mask
from alignlab.sae.evaluate import evaluate_reconstruction


def _dot(a, b):
    return sum(float(p) * float(q) for p, q in zip(a, b))


@torch.no_grad()
def _slow_metrics(coder, batches, dense_threshold=0.1):
    """Row by row, in plain Python floats."""
    rows, all_rows, fires, n_sink = [], [], [0] * coder.width, 0
    for batch in batches:
        for i in range(batch.n_rows):
            x = batch.x[i : i + 1]
            y = batch.target[i]
            code = coder.encode(x)[0]
            y_hat = (coder.decode(code[None]) + coder.skip_term(x))[0]
            all_rows.append((y, y_hat))
            if not batch.keep[i]:
                n_sink += 1
                continue
            rows.append((y, y_hat, code))
            for j, c in enumerate(code):
                fires[j] += c != 0

    def fvu(pairs):
        d = len(pairs[0][0])
        mean = [sum(float(p[0][k]) for p in pairs) / len(pairs) for k in range(d)]
        err = sum(sum((float(y[k]) - float(h[k])) ** 2 for k in range(d)) for y, h, *_ in pairs)
        var = sum(sum((float(y[k]) - mean[k]) ** 2 for k in range(d)) for y, *_ in pairs)
        return err / var

    n, d = len(rows), len(rows[0][0])
    err = sum(sum((float(y[k]) - float(h[k])) ** 2 for k in range(d)) for y, h, _ in rows)
    return {
        "fvu": fvu(rows),
        "mse": err / (n * d),
        "cosine": sum(_dot(y, h) / math.sqrt(_dot(y, y) * _dot(h, h)) for y, h, _ in rows) / n,
        "l0": sum(sum(1 for c in code if c != 0) for _, _, code in rows) / n,
        "dead_fraction": sum(1 for f in fires if f == 0) / coder.width,
        "dense_fraction": sum(1 for f in fires if f / n > dense_threshold) / coder.width,
        "shrinkage": sum(_dot(h, h) for _, h, _ in rows) / sum(_dot(h, y) for y, h, _ in rows),
        "l2_ratio": sum(math.sqrt(_dot(h, h) / _dot(y, y)) for y, h, _ in rows) / n,
        "fvu_all_positions": fvu(all_rows),
        "n_rows": n,
        "n_sink_rows": n_sink,
    }


def _batches(gen, transcoder=False, n_batches=2, rows=40, d_in=6, d_out=5):
    batches = []
    for _ in range(n_batches):
        x = torch.randn(rows, d_in, generator=gen) + 2.0  # a large mean: FVU about 0 would flatter
        y = torch.randn(rows, d_out, generator=gen) if transcoder else None
        keep = torch.rand(rows, generator=gen) > 0.2
        batches.append(ActivationBatch(x, y, keep))
    return batches


@pytest.mark.parametrize("arch,transcoder", [("topk", False), ("relu_l1", False), ("jumprelu", True)])
def test_reconstruction_metrics_match_the_slow_reference(arch, transcoder):
    gen = torch.Generator().manual_seed(1)
    cfg = CoderConfig(arch, 6, 24, d_out=5 if transcoder else None, transcoder=transcoder,
                      skip=transcoder, k=3)
    coder = build_coder(cfg, seed=0)
    with torch.no_grad():
        coder.b_enc.normal_(0, 0.5, generator=gen)
        coder.b_enc[:5] = -100.0  # some latents can never fire: dead
        coder.b_dec.normal_(0, 1, generator=gen)
        if coder.W_skip is not None:
            coder.W_skip.normal_(0, 0.2, generator=gen)
    batches = _batches(gen, transcoder)
    fast = evaluate_reconstruction(coder, batches).to_json()
    slow = _slow_metrics(coder, batches)
    for key, value in slow.items():
        assert fast[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert fast["explained_variance"] == pytest.approx(1 - slow["fvu"], rel=1e-4)
    assert fast["dead_fraction"] >= 5 / 24


def test_fvu_is_about_the_mean_not_about_zero():
    """A coder that outputs the data mean explains nothing: FVU 1, however large the mean."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(500, 4, generator=gen) + 50.0
    coder = build_coder(CoderConfig("relu_l1", 4, 8), seed=0)
    with torch.no_grad():
        coder.b_enc.fill_(-1e6)  # no latent fires
        coder.b_dec.copy_(x.mean(0))
    metrics = evaluate_reconstruction(coder, [ActivationBatch(x, None, torch.ones(500, dtype=torch.bool))])
    assert metrics.fvu == pytest.approx(1.0, abs=1e-6)
    assert metrics.l0 == 0 and metrics.dead_fraction == 1.0


def _slow_sink_mask(acts, rule):
    batch, length, _ = acts.shape
    norms = [[float(acts[b, t].norm()) for t in range(length)] for b in range(batch)]
    pool = sorted(norms[b][t] for b in range(batch) for t in range(1 if rule.first_position else 0, length))
    median = pool[(len(pool) - 1) // 2]  # torch.median: the lower of the two middle values
    return torch.tensor([[(t == 0 and rule.first_position) or
                          (rule.norm_factor > 0 and norms[b][t] > rule.norm_factor * median)
                          for t in range(length)] for b in range(batch)])


@pytest.mark.parametrize("rule", [SinkRule(), SinkRule(first_position=False), SinkRule(norm_factor=0.0)])
def test_sink_mask_matches_the_slow_reference(rule):
    gen = torch.Generator().manual_seed(3)
    acts = torch.randn(3, 9, 4, generator=gen)
    acts[:, 0] *= 100  # first-token sinks
    acts[1, 5] *= 60  # a mid-sequence sink
    assert torch.equal(sink_mask(acts, rule), _slow_sink_mask(acts, rule))
    if rule.norm_factor > 0:
        assert sink_mask(acts, rule)[1, 5]
