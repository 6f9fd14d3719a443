import pytest
import torch

from alignlab.activations import run_with_sites
from alignlab.errors import ModelError
from alignlab.models import Anatomy
from conftest import TINY_MODELS

PROMPTS = ["The quick brown fox jumps over", "Alignment research needs good tools."]


def _parity(lm, atol):
    ids = lm.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    L = lm.n_layers
    captured = run_with_sites(lm, ids, f"resid.{L}", need_logits=True)
    ours = lm.anatomy.unembed(captured.acts[f"resid.{L}"])
    torch.testing.assert_close(ours, captured.logits, atol=atol, rtol=0)
    # and the model's own forward, without our hooks, gives the same logits
    with torch.no_grad():
        plain = lm.model(ids).logits
    torch.testing.assert_close(captured.logits, plain, atol=0, rtol=0)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_unembed_of_last_residual_equals_model_logits(tiny_models, name):
    _parity(tiny_models[name], atol=1e-5)


@pytest.mark.slow
def test_unembed_parity_on_embedded_default(smollm2):
    assert smollm2.anatomy.family.name == "llama"
    assert smollm2.n_layers == 30 and smollm2.d_model == 576
    _parity(smollm2, atol=1e-3)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_anatomy_parts(tiny_models, name):
    lm = tiny_models[name]
    a = lm.anatomy
    assert a.n_layers == lm.model.config.num_hidden_layers
    assert a.d_vocab == 258
    assert a.unembedding.weight.shape == (258, a.d_model)


def test_unembedding_hash_is_stable_and_model_specific(tiny_models):
    a = tiny_models["tiny-llama"].anatomy.unembedding_hash()
    assert a == tiny_models["tiny-llama"].anatomy.unembedding_hash()
    assert a != tiny_models["tiny-gptneox"].anatomy.unembedding_hash()


def test_unsupported_family_is_named(tiny_llama):
    class Fake(torch.nn.Module):
        class config:  # noqa: N801
            model_type = "mamba"

    with pytest.raises(ModelError, match="'mamba' is not supported; supported: .*llama"):
        Anatomy.of(Fake())


def test_unembedding_hash_follows_in_place_changes():
    from alignlab.models import load_model

    lm = load_model("tiny-gpt2")
    before = lm.anatomy.unembedding_hash()
    with torch.no_grad():
        lm.anatomy.unembedding.weight[0, 0] += 1.0
    assert lm.anatomy.unembedding_hash() != before
    assert lm.anatomy.unembedding_hash() == lm.anatomy._compute_unembedding_hash()
