"""Tuned lens: starts as the logit lens, the fused KL is exact, training beats the logit lens."""

import pytest
import torch

from alignlab.data import read_corpus, tokenize_corpus
from alignlab.errors import ConfigError, DataError
from alignlab.lens import (
    LogitLens,
    ModelRows,
    TrainSettings,
    TunedLens,
    evaluate_lenses,
    rows_from_tokens,
    train_tuned_lens,
)
from alignlab.lens.train import (
    KLReadout,
    Target,
    _log_normaliser,
    _UnembedKL,
    cycle,
    layers_per_pass,
    train_step,
)
from conftest import TINY_MODELS


def _split(lm, n_train=24, n_eval=6, seq_len=32):
    n = (n_train + n_eval) * seq_len
    tokens = tokenize_corpus(read_corpus("builtin"), lm.tokenizer, seq_len, n).tokens
    return tokens[:n_eval], tokens[n_eval:]


@pytest.mark.parametrize("name", TINY_MODELS)
def test_untrained_tuned_lens_is_the_logit_lens(tiny_models, name):
    lm = tiny_models[name]
    lens = TunedLens.for_model(lm)
    assert lens.n_layers == lm.n_layers and lens.d_model == lm.d_model
    held, _ = _split(lm, 0, 2, 16)
    rows = rows_from_tokens(lm, held)
    for layer in range(lm.n_layers):
        torch.testing.assert_close(lens.transform(rows.resid[layer], layer), rows.resid[layer])
    ev = evaluate_lenses(lm, [LogitLens(), lens], [rows])
    assert ev.lenses["tuned"] == ev.lenses["logit"]


def test_translator_is_residual_affine_map():
    lens = TunedLens(2, 3)
    with torch.no_grad():
        lens.translators[1].weight.copy_(torch.arange(9.0).reshape(3, 3))
        lens.translators[1].bias.copy_(torch.tensor([1.0, -1.0, 0.5]))
    h = torch.tensor([[1.0, 2.0, 3.0]])
    want = h + h @ torch.arange(9.0).reshape(3, 3).T + torch.tensor([1.0, -1.0, 0.5])
    torch.testing.assert_close(lens.transform(h, 1), want)
    torch.testing.assert_close(lens.transform(h, 0), h)
    with pytest.raises(ConfigError, match="no translator"):
        lens.transform(h, 2)


def _target(p, w, b):
    """What KLReadout.target makes, from probabilities ``p`` (N, V) and the unembedding."""
    return Target(p, (p * p.log()).sum(-1), p.argmax(-1), p @ w, p @ b)


@pytest.mark.parametrize("groups", [(), (3,)])  # one layer (N, d), or three stacked (G, N, d)
def test_fused_kl_matches_autograd_of_the_textbook_formula(groups):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*groups, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(9, 4, dtype=torch.float64, generator=gen)
    b = torch.randn(9, dtype=torch.float64, generator=gen)
    p = torch.randn(5, 9, dtype=torch.float64, generator=gen).softmax(-1)
    target = _target(p, w, b)
    reference = (p * (p.log() - (x @ w.T + b).log_softmax(-1))).sum(-1)  # (*groups, 5)
    got = _UnembedKL.apply(x, w, b, target)
    torch.testing.assert_close(got, reference)
    assert torch.autograd.gradcheck(lambda x: _UnembedKL.apply(x, w, b, target), (x,))


def test_log_normaliser_falls_back_where_the_top_token_underflows():
    z = torch.tensor([[[0.0, 1.0, 2.0], [0.0, -200.0, 5.0]]], dtype=torch.float64)  # (1, 2, 3)
    q = z.softmax(-1)
    top = torch.tensor([1, 1])  # row 1's q at token 1 is ~e^-205: below 1e-30, recomputed
    torch.testing.assert_close(_log_normaliser(z, q, top), torch.logsumexp(z, -1))


def test_grouped_training_steps_equal_one_layer_at_a_time(tiny_llama):
    """Layers sharing one unembedding product get the gradients they get one at a time."""
    _, train = _split(tiny_llama, 2, 0, 16)
    rows = rows_from_tokens(tiny_llama, train)
    readout = KLReadout(tiny_llama.anatomy, torch.float64)
    grads, losses = [], []
    for memory_mb in (0, 1 << 20):  # 0: one layer per pass; huge: all layers in one pass
        lens = TunedLens.for_model(tiny_llama).double()
        with torch.no_grad():
            for p in lens.parameters():
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        losses.append(train_step(lens, readout, rows, memory_mb))
        grads.append([p.grad.clone() for p in lens.parameters()])
    assert layers_per_pass(rows.n_rows, 258, torch.float64, 0) == 1
    assert layers_per_pass(rows.n_rows, 258, torch.float64, 1 << 20) >= tiny_llama.n_layers
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fused_kl_survives_a_lens_far_from_the_target(tiny_llama):
    """Logits 100 nats apart underflow any direct log-probability; the loss stays finite."""
    readout = KLReadout(tiny_llama.anatomy, torch.float32)
    h = torch.randn(3, tiny_llama.d_model)
    target = readout.target(h)
    assert torch.isfinite(readout.kl(h * 1e4 + 50, target)).all()
    assert readout.kl(h, target).abs().max() < 1e-4


def test_training_beats_the_logit_lens_at_every_layer_and_is_deterministic(tiny_models):
    lm = tiny_models["tiny-llama"]
    held, train = _split(lm)
    settings = TrainSettings(steps=30, optimizer="adam", lr=3e-3)
    first = train_tuned_lens(lm, ModelRows(lm, train, 4, shuffle=True, seed=1), settings)
    again = train_tuned_lens(lm, ModelRows(lm, train, 4, shuffle=True, seed=1), settings)
    for a, b in zip(first.lens.parameters(), again.lens.parameters()):
        assert torch.equal(a, b)
    assert first.steps == 30 and len(first.losses) == 30 and first.seconds > 0
    assert first.final_loss < first.losses[0]
    ev = evaluate_lenses(lm, [LogitLens(), first.lens], ModelRows(lm, held, 3))
    for logit_kl, tuned_kl in zip(ev.lenses["logit"].kl, ev.lenses["tuned"].kl):
        assert tuned_kl < 0.8 * logit_kl


def test_sgd_with_nesterov_momentum_also_trains(tiny_models):
    lm = tiny_models["tiny-gpt2"]
    _, train = _split(lm, 8, 0)
    result = train_tuned_lens(lm, ModelRows(lm, train, 4), TrainSettings(steps=20, optimizer="sgd"))
    assert result.final_loss < result.losses[0]


def test_a_one_pass_source_that_runs_out_is_an_error(tiny_llama):
    _, train = _split(tiny_llama, 4, 0)
    once = (rows_from_tokens(tiny_llama, train[i : i + 2]) for i in (0, 2))
    with pytest.raises(DataError, match="ran out after 2 of 5"):
        list(cycle(once, 5))
    assert len(list(cycle(ModelRows(tiny_llama, train, 2), 5))) == 5  # re-iterable: passes again


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"optimizer": "lbfgs"}, "optimizer"), ({"lr": -1.0}, "lr"),
    ({"momentum": 1.0}, "momentum"), ({"warmup_steps": 10, "steps": 10}, "warmup"),
    ({"matmul_dtype": "int8"}, "matmul_dtype"), ({"memory_mb": 0}, "memory_mb"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainSettings(**kwargs)
