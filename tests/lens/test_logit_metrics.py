"""Logit lens and per-layer metrics, each against a slow, obviously-correct reference."""

import math

import pytest
import torch

from alignlab.activations import run_with_sites
from alignlab.data import read_corpus, tokenize_corpus
from alignlab.errors import ConfigError
from alignlab.lens import (
    LogitLens,
    ModelRows,
    ResidRows,
    evaluate_lenses,
    rows_from_tokens,
    unembed,
)
from alignlab.lens.metrics import Final, distribution_sums, final_distribution, rows_per_chunk
from conftest import TINY_MODELS


def _tokens(lm, n_seq=3, seq_len=12):
    blocks = tokenize_corpus(read_corpus("builtin"), lm.tokenizer, seq_len, n_seq * seq_len)
    return blocks.tokens


@pytest.mark.parametrize("name", TINY_MODELS)
def test_logit_lens_on_last_residual_is_the_models_own_logits(tiny_models, name):
    lm = tiny_models[name]
    ids = _tokens(lm, 2, 10)
    captured = run_with_sites(lm, ids, f"resid.{lm.n_layers}", need_logits=True)
    lens_out = unembed(lm.anatomy, captured.acts[f"resid.{lm.n_layers}"])
    torch.testing.assert_close(lens_out, captured.logits.float(), atol=1e-5, rtol=1e-5)


def test_logit_lens_recomputes_the_norm_on_each_layer(tiny_llama):
    """Scaling a residual must not change the logit lens (RMSNorm normalises it away)."""
    h = torch.randn(4, tiny_llama.d_model)
    torch.testing.assert_close(unembed(tiny_llama.anatomy, h), unembed(tiny_llama.anatomy, 7.5 * h),
                               atol=1e-4, rtol=1e-4)


def test_rows_keep_positions_with_a_next_token_and_count_bytes(tiny_llama):
    lm = tiny_llama
    ids = _tokens(lm, 2, 10)
    rows = rows_from_tokens(lm, ids, skip_first=1)
    assert rows.resid.shape == (lm.n_layers + 1, 2 * 8, lm.d_model)  # positions 1..8 of 0..9
    assert rows.targets.tolist() == ids[:, 2:10].reshape(-1).tolist()
    # byte tokenizer: every non-special id is one byte
    assert rows.n_bytes == int((ids[:, 2:10] < 256).sum())
    hidden = lm.model(ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(rows.resid[1].reshape(2, 8, -1), hidden[1][:, 1:9])
    assert rows_from_tokens(lm, ids, skip_first=0).n_rows == 2 * 9


def test_skip_first_that_leaves_nothing_is_refused(tiny_llama):
    with pytest.raises(ConfigError, match="skip_first"):
        rows_from_tokens(tiny_llama, _tokens(tiny_llama, 1, 4), skip_first=3)


def _reference_stats(lens_logits, final_logits, target):
    """One position, in float64 Python arithmetic over the whole vocabulary."""
    z = [float(x) for x in lens_logits]
    f = [float(x) for x in final_logits]
    lz, lf = math.log(sum(math.exp(x) for x in z)), math.log(sum(math.exp(x) for x in f))
    q = [math.exp(x - lz) for x in z]
    p = [math.exp(x - lf) for x in f]
    kl = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    ce = -math.log(q[target])
    entropy = -sum(qi * math.log(qi) for qi in q)
    top1 = float(max(range(len(q)), key=q.__getitem__) == max(range(len(p)), key=p.__getitem__))
    return kl, ce, entropy, top1


def test_distribution_sums_match_slow_reference():
    gen = torch.Generator().manual_seed(0)
    lens_logits = torch.randn(6, 11, generator=gen) * 3
    final_logits = torch.randn(6, 11, generator=gen) * 3
    targets = torch.randint(0, 11, (6,), generator=gen)
    got = distribution_sums(lens_logits, final_distribution(final_logits), targets)
    want = torch.zeros(4, dtype=torch.float64)
    for i in range(6):
        want += torch.tensor(_reference_stats(lens_logits[i], final_logits[i], int(targets[i])),
                             dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


def test_identical_distributions_have_zero_kl_and_full_agreement():
    logits = torch.randn(5, 9)
    sums = distribution_sums(logits, final_distribution(logits), torch.zeros(5, dtype=torch.long))
    assert abs(float(sums[0])) < 1e-5 and float(sums[3]) == 5


def _reference_evaluation(lm, rows: ResidRows):
    """Every layer materialised at once ([layers, N, vocab]) in float64: fine on tiny tensors."""
    h = rows.resid.double()
    logits = torch.stack([unembed(lm.anatomy, h[i].float()).double() for i in range(lm.n_layers + 1)])
    logq = logits.log_softmax(-1)  # (L+1, N, V)
    logp, p = logq[-1], logq[-1].exp()
    kl = (p * (logp - logq[:-1])).sum(-1).mean(-1)  # (L,)
    kl_total = (p * (logp - logq[:-1])).sum(-1).sum(-1)
    ce = -logq[:-1].gather(-1, rows.targets.expand(lm.n_layers, -1)[..., None]).squeeze(-1).mean(-1)
    entropy = -(logq[:-1].exp() * logq[:-1]).sum(-1).mean(-1)
    top1 = (logq[:-1].argmax(-1) == logp.argmax(-1)).double().mean(-1)
    return kl, kl_total / math.log(2) / rows.n_bytes, ce, entropy, top1


def test_evaluate_lenses_matches_materialised_reference_with_tiny_chunks(tiny_models):
    lm = tiny_models["tiny-gpt2"]
    rows = rows_from_tokens(lm, _tokens(lm, 3, 12))
    # memory_bytes so small that every position is its own chunk
    assert rows_per_chunk(lm.anatomy.d_vocab, 1) == 1
    got = evaluate_lenses(lm, [LogitLens()], [rows], memory_bytes=1).lenses["logit"]
    kl, bpb, ce, entropy, top1 = _reference_evaluation(lm, rows)
    for name, ref in [("kl", kl), ("kl_bits_per_byte", bpb), ("ce", ce), ("entropy", entropy),
                      ("top1_agreement", top1)]:
        torch.testing.assert_close(torch.tensor(getattr(got, name), dtype=torch.float64), ref,
                                   atol=1e-5, rtol=1e-4, msg=name)


def test_evaluation_streams_batches_like_one_big_batch(tiny_llama):
    lm = tiny_llama
    tokens = _tokens(lm, 4, 12)
    one = evaluate_lenses(lm, [LogitLens()], [rows_from_tokens(lm, tokens)])
    many = evaluate_lenses(lm, [LogitLens()], ModelRows(lm, tokens, batch_size=1))
    assert one.n_tokens == many.n_tokens == 4 * 10 and one.n_bytes == many.n_bytes
    for a, b in zip(one.lenses["logit"].kl, many.lenses["logit"].kl):
        assert a == pytest.approx(b, rel=1e-5)
    assert len(one.lenses["logit"].kl) == lm.n_layers


def test_final_metrics_are_the_models_own_cross_entropy(tiny_llama):
    lm = tiny_llama
    tokens = _tokens(lm, 2, 12)
    ev = evaluate_lenses(lm, [LogitLens()], [rows_from_tokens(lm, tokens, skip_first=1)])
    logits = lm.model(tokens).logits[:, 1:-1]  # positions 1..T-2 predict tokens 2..T-1
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             tokens[:, 2:].reshape(-1))
    assert ev.final.ce == pytest.approx(float(want), rel=1e-5)
    assert isinstance(final_distribution(logits[0]), Final)
