"""The architecture registry, and one conformance test run over every registered architecture."""

from __future__ import annotations

import pytest
import torch

from alignlab.errors import ArtifactError, ConfigError
from alignlab.sae import CoderConfig, architecture_names, build_coder, get_architecture
from alignlab.sae.arch import SparseCoder, register
from alignlab.sae.arch.base import total_variance
from alignlab.sae.data import TensorSource
from alignlab.sae.io import (
    CoderMeta,
    LoadedCoder,
    export_saelens,
    import_saelens,
    load_coder,
    save_coder,
)
from alignlab.sae.trainer import Trainer, TrainSettings

VARIANTS = [  # (transcoder, skip)
    (False, False),
    (True, False),
    (True, True),
]


def test_the_four_architectures_are_registered_default_first():
    assert architecture_names()[0] == "topk"
    assert {"topk", "batchtopk", "jumprelu", "relu_l1"} <= set(architecture_names())


def test_registry_refuses_a_duplicate_name():
    class Again(SparseCoder):
        arch = "topk"

    with pytest.raises(ValueError, match="already registered"):
        register(Again)
    assert get_architecture("topk") is not Again


def test_unknown_architecture_names_the_registered_ones():
    with pytest.raises(ConfigError, match="registered: topk"):
        get_architecture("gated")


def test_config_validation():
    with pytest.raises(ConfigError, match="k must be at most the width"):
        build_coder(CoderConfig("topk", 8, 16, k=17))
    build_coder(CoderConfig("relu_l1", 8, 16, k=17))  # k means nothing to relu_l1
    with pytest.raises(ConfigError, match="skip is for transcoders"):
        CoderConfig("topk", 8, 16, k=2, skip=True)


def _randomise(coder: SparseCoder, gen: torch.Generator) -> None:
    """Non-trivial biases and thresholds, so folding and export are really exercised."""
    with torch.no_grad():
        coder.b_enc.normal_(0, 0.3, generator=gen)
        coder.b_dec.normal_(0, 1.0, generator=gen)
        if coder.W_skip is not None:
            coder.W_skip.normal_(0, 0.1, generator=gen)
        if hasattr(coder, "threshold"):
            coder.threshold.fill_(0.2)


@pytest.mark.parametrize("transcoder,skip", VARIANTS, ids=["sae", "transcoder", "skip-transcoder"])
@pytest.mark.parametrize("arch", architecture_names())
def test_conformance(arch, transcoder, skip, tmp_path):
    """Every architecture: shapes, unit decoder, sparse codes, folding, formats, training."""
    gen = torch.Generator().manual_seed(0)
    d_in, d_out, width = 12, (10 if transcoder else None), 48
    cfg = CoderConfig(arch, d_in, width, d_out=d_out, transcoder=transcoder, skip=skip, k=4)
    coder = build_coder(cfg, seed=3)
    assert torch.equal(coder.W_dec, build_coder(cfg, seed=3).W_dec)  # init depends on the seed only
    _randomise(coder, gen)
    x = torch.randn(64, d_in, generator=gen) * 3 + 1
    y = torch.randn(64, cfg.out_dim, generator=gen) if transcoder else x

    # shapes, unit-norm decoder rows, non-negative codes
    codes = coder.encode(x)
    assert codes.shape == (64, width) and (codes >= 0).all()
    assert coder(x).shape == (64, cfg.out_dim)
    assert torch.allclose(coder.W_dec.norm(dim=1), torch.ones(width), atol=1e-5)
    assert torch.allclose(coder(x), coder.decode(codes) + coder.skip_term(x), atol=1e-5)
    if arch == "topk":
        assert int((codes != 0).sum(1).max()) <= 4

    # the training pass agrees with inference where the two coincide, and gives gradients
    out = coder.train_forward(x, y, dead=torch.ones(width, dtype=torch.bool))
    assert torch.allclose(out.fvu, (y - out.recon).pow(2).sum() / total_variance(y), atol=1e-5)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in coder.parameters())
    coder.zero_grad()

    # the scale is folded into the weights: the folded coder on raw x == coder on scaled x, unscaled
    c_in, c_out = 0.37, (0.37 if not transcoder else 2.5)
    expected = coder(x * c_in) / c_out
    codes_scaled = coder.encode(x * c_in)
    coder.fold_scales(c_in, c_out)
    assert torch.allclose(coder(x), expected, atol=1e-4)
    assert torch.equal(coder.encode(x) != 0, codes_scaled != 0)  # the same latents fire
    assert torch.allclose(coder.W_dec.norm(dim=1), torch.ones(width), atol=1e-5)

    # native round trip
    meta = CoderMeta(site="resid.1", site_out="mlp.1" if transcoder else "resid.1")
    save_coder(coder, tmp_path / "native", meta)
    again = load_coder(tmp_path / "native")
    assert torch.equal(again.coder(x), coder(x))
    assert again.meta.site_out == meta.site_out and again.source_format == "alignlab"

    # SAELens export round trip, where SAELens has the architecture
    loaded = LoadedCoder(coder, meta, tmp_path, "alignlab")
    if arch == "topk" and transcoder:
        with pytest.raises(ArtifactError, match="SAELens has no architecture"):
            export_saelens(loaded, tmp_path / "saelens")
    else:
        export_saelens(loaded, tmp_path / "saelens")
        back = import_saelens(tmp_path / "saelens")
        assert torch.allclose(back.coder(x), coder(x), atol=1e-5)
        assert back.meta.site == "resid.1"

    # a short training run on these rows lowers the loss, the same way under the same seed
    def train(seed):
        source = TensorSource(x, 16, y=y if transcoder else None, epochs=10, name="c")
        trainer = Trainer({"c": cfg}, TrainSettings(n_steps=source.n_batches, seed=seed, lr=3e-3))
        return trainer.fit(source)

    first, second = train(0), train(0)
    assert first.final["c"].fvu < first.history[0]["c"]["fvu"]
    for a, b in zip(first.coders["c"].state_dict().values(), second.coders["c"].state_dict().values()):
        assert torch.equal(a, b)
