"""Last-token capture, log-probabilities, the zero-shot answer and the steering hook."""

import pytest
import torch

from alignlab.probes.causal import steering
from alignlab.probes.datasets import ZERO_SHOT_ANSWERS
from alignlab.probes.features import answer_probability, answer_tokens, last_token_states
from conftest import TINY_MODELS

TEXTS = ["The city of Paris is in France.", "Ice is hot.", "A longer statement, with a comma, about Rome.",
         "Hi.", "Numbers: fifty-three is larger than fifty-one."]


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("name", TINY_MODELS)
def test_batched_capture_equals_one_text_at_a_time(tiny_models, name):
    """Right padding + last real token: every family gives the unbatched states."""
    lm = tiny_models[name]
    batched = last_token_states(lm, TEXTS, batch_size=4)
    assert batched.acts.shape == (lm.n_layers + 1, len(TEXTS), lm.d_model)
    for i, text in enumerate(TEXTS):
        ids = lm.tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            hidden = lm.model(ids, output_hidden_states=True).hidden_states
        for layer in range(lm.n_layers):  # hidden_states[i] is resid.i for i < L
            torch.testing.assert_close(batched.acts[layer, i], hidden[layer][0, -1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-qwen2"])
def test_logprob_matches_model_logits(tiny_models, name):
    lm = tiny_models[name]
    states = last_token_states(lm, TEXTS, batch_size=3, logprob_mask=[True, False, True, True, True])
    assert torch.isnan(states.logprob[1])
    for i in (0, 2, 3):
        ids = lm.tokenizer(TEXTS[i], return_tensors="pt").input_ids
        with torch.no_grad():
            logp = lm.model(ids).logits[0, :-1].log_softmax(-1)
        ref = logp.gather(-1, ids[0, 1:, None]).sum()
        assert states.logprob[i].item() == pytest.approx(ref.item(), abs=1e-3)


def test_selected_layers_only(tiny_llama):
    states = last_token_states(tiny_llama, TEXTS[:2], layers=[1, 3])
    full = last_token_states(tiny_llama, TEXTS[:2])
    assert states.layers == [1, 3]
    torch.testing.assert_close(states.acts, full.acts[[1, 3]])


def test_answer_probability_matches_manual_softmax(tiny_llama):
    lm = tiny_llama
    tokens = answer_tokens(lm, ZERO_SHOT_ANSWERS)
    assert tokens.first != tokens.second  # byte vocab: shared " " prefix, then "T" vs "F"
    prompts = ["Is it true?\nAnswer:", "Q: 2+2=4?\nAnswer:"]
    got = answer_probability(lm, prompts, ZERO_SHOT_ANSWERS, batch_size=2)
    for i, prompt in enumerate(prompts):
        ids = lm.tokenizer(prompt).input_ids + tokens.prefix
        with torch.no_grad():
            logits = lm.model(torch.tensor([ids])).logits[0, -1]
        pair = logits[[tokens.first, tokens.second]].softmax(-1)
        assert got[i].item() == pytest.approx(pair[0].item(), abs=1e-5)


@pytest.mark.parametrize("layer", [0, 2, 4])
def test_steering_adds_vector_at_the_site_and_comes_off(tiny_llama, layer):
    lm = tiny_llama
    before = _hook_count(lm.model)
    vector = torch.randn(lm.d_model)
    plain = last_token_states(lm, TEXTS[:2])
    with steering(lm, layer, vector):
        steered = last_token_states(lm, TEXTS[:2])
    assert _hook_count(lm.model) == before
    torch.testing.assert_close(steered.acts[layer], plain.acts[layer] + vector, atol=1e-4, rtol=1e-4)
    if layer > 0:
        torch.testing.assert_close(steered.acts[layer - 1], plain.acts[layer - 1])
    with pytest.raises(RuntimeError):
        with steering(lm, layer, vector):
            raise RuntimeError("boom")
    assert _hook_count(lm.model) == before
