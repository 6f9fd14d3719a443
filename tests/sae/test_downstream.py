"""Downstream metrics: CE/KL with the coder spliced in, against a slow reference on tiny-llama."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.sae import CoderConfig, build_coder
from alignlab.sae.data import SinkRule, SitePair
from alignlab.sae.evaluate import downstream_metrics


def _identity_coder(d):
    """A skip transcoder whose latents never fire and whose skip is the identity: output = input."""
    coder = build_coder(CoderConfig("relu_l1", d, 8, transcoder=True, skip=True), seed=0)
    with torch.no_grad():
        coder.b_enc.fill_(-1e6)
        coder.b_dec.zero_()
        coder.W_skip.copy_(torch.eye(d))
    return coder


@torch.no_grad()
def _slow_downstream(lm, coder, layer, ids):
    """One sequence at a time; the replacement written out with a plain forward hook."""
    block = lm.anatomy.blocks[layer - 1]  # resid.{layer} is block layer-1's output
    totals = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    kls = {"sae": 0.0, "zero": 0.0}
    count = 0

    def run(seq, replace):
        def hook(_m, _a, out):
            h = out[0] if isinstance(out, tuple) else out
            new = h.clone()
            for t in range(1, h.shape[1]):  # position 0 is the sink: left clean
                new[0, t] = replace(h[0, t])
            return (new, *out[1:]) if isinstance(out, tuple) else new

        handle = block.register_forward_hook(hook) if replace else None
        try:
            return lm.model(input_ids=seq[None]).logits[0].log_softmax(-1)
        finally:
            if handle:
                handle.remove()

    for seq in ids:
        clean = run(seq, None)
        sae = run(seq, lambda h: coder(h[None])[0])
        zero = run(seq, lambda h: torch.zeros_like(h))
        for t in range(len(seq) - 1):
            target = int(seq[t + 1])
            count += 1
            for name, lp in (("clean", clean), ("sae", sae), ("zero", zero)):
                totals[name] -= float(lp[t, target])
            for name, lp in (("sae", sae), ("zero", zero)):
                kls[name] += sum(math.exp(float(clean[t, v])) * float(clean[t, v] - lp[t, v])
                                 for v in range(clean.shape[1]))
    ce = {k: v / count for k, v in totals.items()}
    return ce, {k: v / count for k, v in kls.items()}


def test_downstream_metrics_match_the_slow_reference(tiny_llama):
    lm = tiny_llama
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (3, 12), generator=gen)
    coder = build_coder(CoderConfig("topk", lm.d_model, 128, k=8), seed=1)
    with torch.no_grad():
        coder.b_dec.normal_(0, 0.5, generator=gen)
    rule = SinkRule(first_position=True, norm_factor=0.0)
    fast = downstream_metrics(lm, coder, SitePair("resid.2", "resid.2"), [ids[:2], ids[2:]], rule)
    ce, kl = _slow_downstream(lm, coder, 2, ids)
    assert fast.ce_loss_clean == pytest.approx(ce["clean"], rel=1e-4)
    assert fast.ce_loss == pytest.approx(ce["sae"], rel=1e-4)
    assert fast.ce_loss_zero_ablation == pytest.approx(ce["zero"], rel=1e-4)
    assert fast.kl == pytest.approx(kl["sae"], rel=1e-3, abs=1e-6)
    assert fast.kl_zero_ablation == pytest.approx(kl["zero"], rel=1e-3)
    expected = (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["clean"])
    assert fast.loss_recovered == pytest.approx(expected, rel=1e-3)
    assert fast.n_tokens == 3 * 11


@pytest.mark.parametrize("pair", [SitePair("resid.2", "resid.2"), SitePair("mlp.1", "mlp.1"),
                                  SitePair("mlp_in.1", "mlp_in.1"), SitePair("resid.0", "resid.0")])
def test_a_perfect_reconstruction_recovers_all_the_loss(tiny_llama, pair):
    ids = torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(1))
    metrics = downstream_metrics(tiny_llama, _identity_coder(tiny_llama.d_model), pair, [ids])
    assert metrics.ce_loss == pytest.approx(metrics.ce_loss_clean, abs=1e-5)
    assert metrics.kl == pytest.approx(0.0, abs=1e-5)
    assert metrics.loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert metrics.kl_zero_ablation > 0


def test_a_transcoder_is_spliced_from_its_input_site(tiny_llama):
    """mlp_in.1 -> mlp.1 with the true MLP as the 'transcoder' changes nothing."""
    mlp = tiny_llama.anatomy.mlp(1)
    ids = torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(2))

    class TrueMlp(torch.nn.Module):
        cfg = CoderConfig("relu_l1", 64, 8, transcoder=True)

        def forward(self, x):
            return mlp.forward(x)  # .forward: not through the hooks being tested

    metrics = downstream_metrics(tiny_llama, TrueMlp(), SitePair("mlp_in.1", "mlp.1"), [ids])
    assert metrics.kl == pytest.approx(0.0, abs=1e-5)
    assert metrics.loss_recovered == pytest.approx(1.0, abs=1e-4)
