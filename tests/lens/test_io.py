"""Lens artifacts: alignlab's cfg.json + safetensors, and the tuned-lens package's layout."""

import json

import pytest
import torch

from alignlab.errors import ArtifactError
from alignlab.lens import TunedLens
from alignlab.lens.io import (
    export_tuned_lens,
    import_tuned_lens,
    load_lens,
    read_lens,
    save_lens,
)
from alignlab.lens.tuned import peer_unembed_hash


def _random_lens(lm, seed=0):
    lens = TunedLens.for_model(lm)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lens.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return lens


def _same(a: TunedLens, b: TunedLens) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.stacked(), b.stacked()))


def test_save_load_round_trip(tiny_llama, tmp_path):
    lens = _random_lens(tiny_llama)
    folder = save_lens(lens, tmp_path / "lens", extra={"train": {"steps": 3}})
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "lens.safetensors"]
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["format"] == "alignlab.tuned_lens" and cfg["n_layers"] == tiny_llama.n_layers
    assert cfg["model"]["model"] == "tiny-llama"
    assert cfg["model"]["unembedding_hash"] == tiny_llama.anatomy.unembedding_hash()
    assert cfg["extra"]["train"]["steps"] == 3
    loaded = load_lens(folder, tiny_llama)
    assert _same(lens, loaded) and loaded.model_info == lens.model_info


def test_load_refuses_another_model(tiny_models, tmp_path):
    folder = save_lens(_random_lens(tiny_models["tiny-llama"]), tmp_path / "lens")
    with pytest.raises(ArtifactError, match="trained on 'tiny-llama'.*loaded model is 'tiny-gpt2'"):
        load_lens(folder, tiny_models["tiny-gpt2"])


def test_load_refuses_same_architecture_with_other_weights(tmp_path):
    from alignlab.models import load_model

    a, b = load_model("tiny-llama", seed=1), load_model("tiny-llama", seed=2)
    folder = save_lens(_random_lens(a), tmp_path / "lens")
    with pytest.raises(ArtifactError, match="unembedding sha256"):
        load_lens(folder, b)


def test_damaged_or_unfinished_folders_are_refused(tiny_llama, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_lens(tmp_path / "nowhere", tiny_llama)
    folder = save_lens(_random_lens(tiny_llama), tmp_path / "lens")
    weights = folder / "lens.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ArtifactError, match="do not match the sha256"):
        load_lens(folder, tiny_llama)
    (folder / "cfg.json").unlink()  # what an interrupted save leaves
    with pytest.raises(ArtifactError, match="no cfg.json .*found: lens.safetensors"):
        load_lens(folder, tiny_llama)
    (folder / "cfg.json").write_text('{"format": "something-else"}')
    with pytest.raises(ArtifactError, match="not an alignlab tuned lens"):
        load_lens(folder, tiny_llama)


def _write_peer_lens(folder, lm, weights, biases, unembed_hash="auto", bias=True):
    """The tuned-lens package's TunedLens.save layout, written by hand from its source."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "base_model_name_or_path": "EleutherAI/pythia-tiny", "d_model": lm.d_model,
        "num_hidden_layers": lm.n_layers, "bias": bias, "base_model_revision": None,
        "unembed_hash": peer_unembed_hash(lm) if unembed_hash == "auto" else unembed_hash,
        "lens_type": "linear_tuned_lens",
    }
    (folder / "config.json").write_text(json.dumps(config))
    state = {}
    for i in range(lm.n_layers):
        state[f"{i}.weight"] = weights[i]
        if bias:
            state[f"{i}.bias"] = biases[i]
    torch.save(state, folder / "params.pt")
    return folder


def test_import_from_tuned_lens_package_layout(tiny_llama, tmp_path):
    lm = tiny_llama
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(lm.n_layers, lm.d_model, lm.d_model, generator=gen) * 0.1
    b = torch.randn(lm.n_layers, lm.d_model, generator=gen)
    folder = _write_peer_lens(tmp_path / "peer", lm, w, b)
    lens = import_tuned_lens(folder, lm)
    h = torch.randn(5, lm.d_model)
    # the package's TunedLens.transform_hidden: h + layer_translators[i](h)
    torch.testing.assert_close(lens.transform(h, 2), h + h @ w[2].T + b[2])
    assert lens.model_info["imported_from"]["base_model_name_or_path"] == "EleutherAI/pythia-tiny"
    assert _same(read_lens(folder, lm), lens)  # read_lens recognises the layout


def test_import_without_bias_and_without_hash(tiny_llama, tmp_path):
    lm = tiny_llama
    w = torch.zeros(lm.n_layers, lm.d_model, lm.d_model)
    lens = import_tuned_lens(_write_peer_lens(tmp_path / "p", lm, w, None, None, bias=False), lm)
    assert all(torch.equal(t.bias, torch.zeros(lm.d_model)) for t in lens.translators)


def test_export_then_import_round_trip_and_peer_keys(tiny_llama, tmp_path):
    lens = _random_lens(tiny_llama, seed=5)
    folder = export_tuned_lens(lens, tmp_path / "export")
    config = json.loads((folder / "config.json").read_text())
    assert config == {
        "base_model_name_or_path": "tiny-llama", "d_model": tiny_llama.d_model,
        "num_hidden_layers": tiny_llama.n_layers, "bias": True, "base_model_revision": None,
        "unembed_hash": peer_unembed_hash(tiny_llama), "lens_type": "linear_tuned_lens",
    }
    state = torch.load(folder / "params.pt", weights_only=True)
    assert sorted(state) == sorted([f"{i}.{k}" for i in range(tiny_llama.n_layers) for k in ("weight", "bias")])
    assert torch.equal(state["1.weight"], lens.translators[1].weight.detach())
    assert _same(import_tuned_lens(folder, tiny_llama), lens)


def test_import_refuses_another_model_and_bad_files(tiny_models, tmp_path):
    lm, other = tiny_models["tiny-llama"], tiny_models["tiny-gptneox"]
    w = torch.zeros(lm.n_layers, lm.d_model, lm.d_model)
    b = torch.zeros(lm.n_layers, lm.d_model)
    folder = _write_peer_lens(tmp_path / "peer", lm, w, b)
    with pytest.raises(ArtifactError, match="unembed_hash"):
        import_tuned_lens(folder, other)  # same sizes, other unembedding
    wrong_hash = _write_peer_lens(tmp_path / "h", lm, w, b, unembed_hash="0" * 64)
    with pytest.raises(ArtifactError, match="trained on"):
        import_tuned_lens(wrong_hash, lm)
    assert import_tuned_lens(wrong_hash, lm, check_model=False).n_layers == lm.n_layers
    missing = _write_peer_lens(tmp_path / "m", lm, w, b)
    torch.save({"0.weight": w[0]}, missing / "params.pt")
    with pytest.raises(ArtifactError, match="missing"):
        import_tuned_lens(missing, lm)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_import_never_unpickles_objects(tiny_llama, tmp_path, capsys):
    lm = tiny_llama
    folder = _write_peer_lens(tmp_path / "evil", lm, torch.zeros(lm.n_layers, lm.d_model, lm.d_model),
                              torch.zeros(lm.n_layers, lm.d_model))
    torch.save({"0.weight": _Payload()}, folder / "params.pt")
    with pytest.raises(ArtifactError, match="weights_only=True"):
        import_tuned_lens(folder, lm)
    assert "code ran" not in capsys.readouterr().out
