import pytest
import torch

from alignlab.errors import ModelError
from alignlab.models import BUILTIN, load_model


def _weights(lm):
    return torch.cat([p.flatten() for p in lm.model.parameters()])


def test_tiny_models_are_deterministic_under_their_seed():
    a, b = load_model("tiny-llama"), load_model("tiny-llama")
    assert torch.equal(_weights(a), _weights(b))
    c = load_model("tiny-llama", seed=1)
    assert not torch.equal(_weights(a), _weights(c))


def test_tiny_model_load_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model("tiny-gpt2")
    assert torch.equal(torch.rand(3), expected)


def test_loaded_model_is_in_eval_mode_without_grad(tiny_llama):
    assert not tiny_llama.model.training
    assert not any(p.requires_grad for p in tiny_llama.model.parameters())


def test_dtype_is_applied():
    lm = load_model("tiny-gptneox", dtype="bfloat16")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ModelError, match="unknown dtype 'float8'"):
        load_model("tiny-gptneox", dtype="float8")


def test_local_folder_and_revision_subfolder(tmp_path, tiny_llama):
    tiny_llama.model.save_pretrained(tmp_path / "step100")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "step100")
    direct = load_model(str(tmp_path / "step100"))
    by_revision = load_model(str(tmp_path), revision="step100")
    assert torch.equal(_weights(direct), _weights(tiny_llama))
    assert torch.equal(_weights(by_revision), _weights(tiny_llama))
    assert by_revision.revision == "step100" and by_revision.source == "local"
    with pytest.raises(ModelError, match="revision 'step5' is not a subfolder.*found: step100"):
        load_model(str(tmp_path), revision="step5")


def test_pickle_weights_are_refused_unless_allowed(tmp_path, tiny_llama):
    from safetensors.torch import load_file

    tiny_llama.model.save_pretrained(tmp_path)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    for st in tmp_path.glob("*.safetensors"):  # re-save as the legacy pickle format
        torch.save(load_file(st), tmp_path / "pytorch_model.bin")
        st.unlink()
    with pytest.raises(ModelError, match="only pickle weights.*allow_pickle"):
        load_model(str(tmp_path))
    lm = load_model(str(tmp_path), allow_pickle=True)
    assert torch.equal(_weights(lm), _weights(tiny_llama))


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="has no config.json"):
        load_model(str(tmp_path))


def test_unknown_model_names_what_exists():
    with pytest.raises(ModelError, match="unknown model 'no-such-model'.*tiny-llama.*alignlab models"):
        load_model("no-such-model")


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "absent.gguf"))


def test_malformed_gguf_without_magic(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ModelError, match="not a GGUF file"):
        load_model(str(bad))


def test_truncated_gguf(tmp_path):
    path = BUILTIN["smollm2-135m"].gguf_path()
    if path is None:
        pytest.fail("smollm2-135m is not installed: run `make install`")
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(ModelError, match="could not load gguf file"):
        load_model(str(bad))


def test_embedded_default_is_installed():
    assert BUILTIN["smollm2-135m"].installed()
