import pytest
import torch

from alignlab.activations import capturing, expand_sites, run_with_sites
from conftest import TINY_MODELS


def _ids(lm, text="Interpretability needs ground truth."):
    return lm.tokenizer([text, text[::-1]], return_tensors="pt").input_ids


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("name", TINY_MODELS)
def test_residuals_match_hf_hidden_states(tiny_models, name):
    """Slow reference: HF's own hidden_states[i] is the input to block i."""
    lm = tiny_models[name]
    ids = _ids(lm)
    captured = run_with_sites(lm, ids, "resid.*")
    with torch.no_grad():
        hidden = lm.model(ids, output_hidden_states=True).hidden_states
    for i in range(lm.n_layers):
        torch.testing.assert_close(captured.acts[f"resid.{i}"], hidden[i], atol=0, rtol=0)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_residual_stream_is_sum_of_components(tiny_models, name):
    """resid.{i+1} = resid.i + attn.i + mlp.i holds for serial and parallel blocks alike."""
    lm = tiny_models[name]
    captured = run_with_sites(lm, _ids(lm), "*")
    for i in range(lm.n_layers):
        a = captured.acts
        torch.testing.assert_close(
            a[f"resid.{i + 1}"], a[f"resid.{i}"] + a[f"attn.{i}"] + a[f"mlp.{i}"], atol=1e-5, rtol=1e-5
        )
        assert a[f"mlp_in.{i}"].shape == a[f"resid.{i}"].shape


def test_early_exit_stops_after_deepest_site(tiny_llama):
    ran = []
    handles = [b.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, b in enumerate(tiny_llama.anatomy.blocks)]
    try:
        captured = run_with_sites(tiny_llama, _ids(tiny_llama), "resid.2,mlp.0")
        assert captured.stopped_early and captured.logits is None
        assert ran == [0, 1]
        ran.clear()
        full = run_with_sites(tiny_llama, _ids(tiny_llama), "resid.2", need_logits=True)
        assert ran == [0, 1, 2, 3] and full.logits is not None
    finally:
        for h in handles:
            h.remove()


def test_hooks_come_off_even_when_forward_fails(tiny_llama):
    before = _hook_count(tiny_llama.model)
    sites = expand_sites("resid.*,attn.*,mlp_in.*", tiny_llama.n_layers)
    with pytest.raises(RuntimeError, match="boom"):
        with capturing(tiny_llama, sites):
            raise RuntimeError("boom")
    assert _hook_count(tiny_llama.model) == before
    run_with_sites(tiny_llama, _ids(tiny_llama), "resid.1")
    assert _hook_count(tiny_llama.model) == before


def test_captured_shapes(tiny_models):
    lm = tiny_models["tiny-gpt2"]
    ids = _ids(lm)
    captured = run_with_sites(lm, ids, "resid.0,attn.3,mlp_in.2")
    for t in captured.acts.values():
        assert t.shape == (*ids.shape, lm.d_model)
