"""Formats: native round trip and model check, SAELens export layout, SAELens and sparsify import."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from alignlab.errors import ArtifactError
from alignlab.sae import CoderConfig, build_coder
from alignlab.sae.io import (
    CoderMeta,
    LoadedCoder,
    check_model,
    export_saelens,
    hook_to_site,
    import_sparsify,
    load_coder,
    save_coder,
    site_to_hook,
)


def _coder(arch="topk", transcoder=False, skip=False, d=16, width=64, seed=0):
    cfg = CoderConfig(arch, d, width, d_out=(12 if transcoder else None), transcoder=transcoder, skip=skip, k=4)
    coder = build_coder(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        coder.b_enc.normal_(0, 0.3, generator=gen)
        coder.b_dec.normal_(0, 1, generator=gen)
        if coder.W_skip is not None:
            coder.W_skip.normal_(0, 0.1, generator=gen)
        if hasattr(coder, "threshold"):
            coder.threshold.fill_(0.1)
    return coder.eval()


def test_native_folder_records_site_model_and_scales(tmp_path, tiny_llama):
    coder = _coder(d=64)
    meta = CoderMeta(site="resid.2", site_out="resid.2", model=tiny_llama.describe(), input_scale=3.0,
                     training={"tokens": 10})
    save_coder(coder, tmp_path, meta)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["format"] == "alignlab.sae" and cfg["format_version"] == 1
    assert cfg["site"] == "resid.2" and cfg["model"]["model"] == "tiny-llama"
    assert cfg["model"]["unembedding_hash"] == tiny_llama.anatomy.unembedding_hash()
    assert cfg["coder"]["arch"] == "topk" and cfg["input_scale"] == 3.0
    assert set(load_file(str(tmp_path / "sae.safetensors"))) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    loaded = load_coder(tmp_path)
    check_model(loaded, tiny_llama)  # the right model passes


def test_a_coder_refuses_another_model(tmp_path, tiny_models):
    save_coder(_coder(d=64), tmp_path, CoderMeta("resid.2", "resid.2", model=tiny_models["tiny-llama"].describe()))
    with pytest.raises(ArtifactError, match="trained on model 'tiny-llama'"):
        check_model(load_coder(tmp_path), tiny_models["tiny-gpt2"])


def test_unreadable_folders_say_what_is_wrong(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_coder(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(ArtifactError, match="no cfg.json"):
        load_coder(tmp_path / "a")
    (tmp_path / "a" / "cfg.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_coder(tmp_path / "a")
    save_coder(_coder(), tmp_path / "b", CoderMeta("resid.1", "resid.1"))
    (tmp_path / "b" / "sae.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_coder(tmp_path / "b")


@pytest.mark.parametrize("site", ["resid.0", "resid.7", "attn.3", "mlp.2", "mlp_in.5"])
def test_hook_names_round_trip(site):
    assert hook_to_site(site_to_hook(site)) == site
    assert hook_to_site("blocks.3.hook_resid_pre") == "resid.3"
    assert hook_to_site("blocks.3.hook_resid_mid") is None


def _saelens_reference(cfg: dict, t: dict, x: torch.Tensor) -> torch.Tensor:
    """SAELens' documented forward (saes/*.py), written out for the architectures exported."""
    arch = cfg["architecture"]
    sae_in = x - t["b_dec"] if cfg["apply_b_dec_to_input"] else x
    pre = sae_in @ t["W_enc"] + t["b_enc"]
    if arch == "topk":
        values, idx = pre.topk(cfg["k"], dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, idx, values.relu())
    elif arch.startswith("jumprelu"):
        acts = pre.relu() * (pre > t["threshold"].relu())
    else:  # standard, transcoder, skip_transcoder
        acts = pre.relu()
    out = acts @ t["W_dec"] + t["b_dec"]
    if "W_skip" in t:
        out = out + x @ t["W_skip"].T
    return out


CASES = [("topk", False, False, "topk"), ("relu_l1", False, False, "standard"),
         ("jumprelu", False, False, "jumprelu"), ("batchtopk", False, False, "jumprelu"),
         ("relu_l1", True, False, "transcoder"), ("relu_l1", True, True, "skip_transcoder"),
         ("jumprelu", True, False, "jumprelu_transcoder"),
         ("jumprelu", True, True, "jumprelu_skip_transcoder")]


@pytest.mark.parametrize("arch,transcoder,skip,saelens_arch", CASES)
def test_saelens_export_has_saelens_layout_and_reproduces_the_reconstruction(
    arch, transcoder, skip, saelens_arch, tmp_path
):
    coder = _coder(arch, transcoder, skip)
    meta = CoderMeta("mlp_in.3" if transcoder else "resid.4", "mlp.3" if transcoder else "resid.4",
                     model={"model": "tiny-llama"}, training={"seq_len": 64, "corpus": "builtin"})
    export_saelens(LoadedCoder(coder, meta, tmp_path, "alignlab"), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    assert cfg["architecture"] == saelens_arch
    assert cfg["d_in"] == 16 and cfg["d_sae"] == 64 and cfg["dtype"] == "float32"
    assert cfg["normalize_activations"] == "none" and cfg["apply_b_dec_to_input"] is (not transcoder)
    assert cfg["metadata"]["model_name"] == "tiny-llama"
    assert cfg["metadata"]["hook_name"] == ("blocks.3.ln2.hook_normalized" if transcoder else "blocks.3.hook_resid_post")
    assert cfg["metadata"]["sae_lens_version"].startswith("6.")
    tensors = load_file(str(tmp_path / "out" / "sae_weights.safetensors"))
    assert tensors["W_enc"].shape == (16, 64) and tensors["W_dec"].shape == (64, 12 if transcoder else 16)
    if saelens_arch == "topk":
        assert cfg["k"] == 4
    if saelens_arch.startswith("jumprelu"):
        assert tensors["threshold"].shape == (64,)
    if transcoder:
        assert cfg["d_out"] == 12 and cfg["metadata"]["hook_name_out"] == "blocks.3.hook_mlp_out"
    assert ("W_skip" in tensors) == skip
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(5)) * 2
    with torch.no_grad():
        assert torch.allclose(_saelens_reference(cfg, tensors, x), coder(x), atol=1e-5)


def test_saelens_import_folds_what_alignlab_does_not_model(tmp_path):
    """apply_b_dec_to_input=False and TopK's rescale_acts_by_decoder_norm are folded on import."""
    gen = torch.Generator().manual_seed(0)
    d, width = 8, 32
    tensors = {"W_enc": torch.randn(d, width, generator=gen), "b_enc": torch.randn(width, generator=gen),
               "W_dec": torch.randn(width, d, generator=gen) * 3, "b_dec": torch.randn(d, generator=gen)}
    cfg = {"architecture": "topk", "d_in": d, "d_sae": width, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": False, "normalize_activations": "none", "k": 3,
           "rescale_acts_by_decoder_norm": True,
           "metadata": {"hook_name": "blocks.2.hook_resid_post", "model_name": "gpt2"}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(tmp_path / "sae_weights.safetensors"))
    loaded = load_coder(tmp_path)
    assert loaded.source_format == "saelens" and loaded.meta.site == "resid.3"
    x = torch.randn(20, d, generator=gen)
    # SAELens TopK with rescale: rank z * ||W_dec||, decode (acts / ||W_dec||) @ W_dec
    norms = tensors["W_dec"].norm(dim=1)
    pre = (x @ tensors["W_enc"] + tensors["b_enc"]) * norms
    values, idx = pre.topk(3, dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, idx, values.relu()) / norms
    expected = acts @ tensors["W_dec"] + tensors["b_dec"]
    with torch.no_grad():
        assert torch.allclose(loaded.coder(x), expected, atol=1e-4)
    assert torch.allclose(loaded.coder.W_dec.norm(dim=1), torch.ones(width), atol=1e-5)


def test_saelens_runtime_normalisation_is_refused(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": 4, "d_sae": 8,
                                                   "normalize_activations": "layer_norm"}))
    save_file({"W_enc": torch.zeros(4, 8)}, str(tmp_path / "sae_weights.safetensors"))
    with pytest.raises(ArtifactError, match="normalises activations"):
        load_coder(tmp_path)


def _sparsify_folder(path, transcode=False, skip=False):
    gen = torch.Generator().manual_seed(1)
    d, width = 8, 32
    path.mkdir(parents=True)
    tensors = {"encoder.weight": torch.randn(width, d, generator=gen), "encoder.bias": torch.randn(width, generator=gen),
               "W_dec": torch.randn(width, d, generator=gen), "b_dec": torch.randn(d, generator=gen)}
    if skip:
        tensors["W_skip"] = torch.randn(d, d, generator=gen)
    cfg = {"activation": "topk", "expansion_factor": 4, "normalize_decoder": True, "num_latents": width,
           "k": 5, "multi_topk": False, "skip_connection": skip, "transcode": transcode, "d_in": d}
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(path / "sae.safetensors"))
    return tensors


def _sparsify_reference(t, x, transcode, k=5):
    """sparsify's SparseCoder.forward: relu(linear) -> topk -> decode + b_dec (+ skip)."""
    sae_in = x if transcode else x - t["b_dec"]
    pre = torch.relu(sae_in @ t["encoder.weight"].T + t["encoder.bias"])
    values, idx = pre.topk(k, dim=-1)
    out = sum(values[:, j : j + 1] * t["W_dec"][idx[:, j]] for j in range(k)) + t["b_dec"]
    return out + x @ t["W_skip"].T if "W_skip" in t else out


@pytest.mark.parametrize("hookpoint,transcode,skip,site,site_out", [
    ("layers.6", False, False, "resid.7", "resid.7"),
    ("layers.2.mlp", True, True, "mlp_in.2", "mlp.2"),
])
def test_sparsify_import(tmp_path, hookpoint, transcode, skip, site, site_out):
    tensors = _sparsify_folder(tmp_path / hookpoint, transcode, skip)
    loaded = load_coder(tmp_path / hookpoint)
    assert loaded.source_format == "sparsify"
    assert (loaded.meta.site, loaded.meta.site_out) == (site, site_out)
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(loaded.coder(x), _sparsify_reference(tensors, x, transcode), atol=1e-5)


def test_sparsify_folder_with_an_unknown_hookpoint_needs_a_site(tmp_path):
    _sparsify_folder(tmp_path / "embed_tokens")
    with pytest.raises(ArtifactError, match="pass --site"):
        import_sparsify(tmp_path / "embed_tokens")
    assert import_sparsify(tmp_path / "embed_tokens", site="resid.0").meta.site == "resid.0"


def test_sae_lens_loads_the_export(tmp_path):
    """SAELens itself (the `peers` extra) loads the export and reproduces the reconstruction."""
    sae_lens = pytest.importorskip("sae_lens")
    coder = _coder("topk")
    export_saelens(LoadedCoder(coder, CoderMeta("resid.4", "resid.4"), tmp_path, "alignlab"), tmp_path / "out")
    sae = sae_lens.SAE.load_from_disk(str(tmp_path / "out"), device="cpu")
    x = torch.randn(16, 16)
    with torch.no_grad():
        assert torch.allclose(sae(x), coder(x), atol=1e-5)
