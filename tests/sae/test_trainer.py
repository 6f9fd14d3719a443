"""The trainer: determinism, resume, learning-rate defaults, AuxK and dead-latent counting."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.errors import ArtifactError, ConfigError
from alignlab.sae import CoderConfig, build_coder
from alignlab.sae.arch.base import total_variance
from alignlab.sae.data import TensorSource
from alignlab.sae.synthetic import PlantedConfig, plant_features, sample
from alignlab.sae.trainer import Trainer, TrainSettings, default_lr


def _data(n=4096, seed=1):
    planted = plant_features(PlantedConfig(d=16, n_features=48, mean_active=3, seed=0))
    return sample(planted, n, seed=seed).x


def _weights(result):
    return {k: v.clone() for k, v in result.coders["x"].state_dict().items()}


def test_default_lr_scales_with_width_like_sparsify():
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(4 * 2**14) == pytest.approx(1e-4)
    trainer = Trainer({"x": CoderConfig("topk", 16, 256, k=4)}, TrainSettings(n_steps=5))
    assert trainer.states["x"].base_lr == pytest.approx(2e-4 / math.sqrt(256 / 2**14))


def test_schedule_warms_up_holds_and_decays_to_zero():
    settings = TrainSettings(n_steps=100, warmup_steps=10, decay_fraction=0.2)
    factors = [settings.lr_factor(s) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10:80] == [1.0] * 70
    assert factors[80] == pytest.approx(1.0) and factors[99] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(factors[80:], factors[81:]))


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="at least one step"):
        TrainSettings(n_steps=0)
    with pytest.raises(ConfigError, match="lr must be positive"):
        TrainSettings(n_steps=3, lr=-1.0)


def test_asking_for_more_steps_than_the_data_holds_is_refused():
    source = TensorSource(_data(256), batch_size=64)
    with pytest.raises(ConfigError, match="holds only 4 batches"):
        Trainer({"x": CoderConfig("topk", 16, 64, k=4)}, TrainSettings(n_steps=10)).fit(source)


def test_training_is_deterministic_and_depends_on_the_seed():
    x = _data()

    def run(seed):
        source = TensorSource(x, batch_size=128)
        cfg = CoderConfig("topk", 16, 64, k=3)
        return _weights(Trainer({"x": cfg}, TrainSettings(n_steps=source.n_batches, seed=seed)).fit(source))

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["W_dec"], c["W_dec"])


class _Stop(Exception):
    pass


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu"])
def test_a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(arch, tmp_path):
    x = _data()
    cfg = CoderConfig(arch, 16, 64, k=3)
    settings = dict(n_steps=32, checkpoint_every=10, checkpoint_dir=tmp_path / "ckpt", seed=5)

    straight = Trainer({"x": cfg}, TrainSettings(**settings)).fit(TensorSource(x, 128))

    def die_at_15(report):
        if report.step == 15:
            raise _Stop

    with pytest.raises(_Stop):
        Trainer({"x": cfg}, TrainSettings(**settings)).fit(TensorSource(x, 128), on_step=die_at_15)
    resumed_trainer = Trainer({"x": cfg}, TrainSettings(**settings))
    assert resumed_trainer.load_checkpoint(tmp_path / "ckpt")
    assert resumed_trainer.step == 10  # the last checkpoint before the crash
    resumed = resumed_trainer.fit(TensorSource(x, 128))

    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert resumed.steps == straight.steps and resumed.tokens == straight.tokens
    assert resumed.history == straight.history


def test_a_checkpoint_from_other_settings_is_refused(tmp_path):
    x = _data(1024)
    trainer = Trainer({"x": CoderConfig("topk", 16, 64, k=3)}, TrainSettings(n_steps=4, checkpoint_dir=tmp_path))
    trainer.fit(TensorSource(x, 128))
    trainer.save_checkpoint()
    other = Trainer({"x": CoderConfig("topk", 16, 32, k=3)}, TrainSettings(n_steps=4))
    with pytest.raises(ArtifactError, match="configs differ"):
        other.load_checkpoint(tmp_path)
    assert not Trainer({"x": CoderConfig("topk", 16, 64, k=3)}, TrainSettings(n_steps=4)).load_checkpoint(
        tmp_path / "nothing-here")


def test_auxk_loss_matches_the_paper_and_only_trains_dead_latents():
    """Gao et al. 2024: the top d/2 dead latents (by pre-activation) model the residual."""
    gen = torch.Generator().manual_seed(0)
    coder = build_coder(CoderConfig("topk", 8, 32, k=2), seed=0)
    with torch.no_grad():
        coder.b_enc.normal_(0, 1, generator=gen)
    x = torch.randn(20, 8, generator=gen)
    dead = torch.zeros(32, dtype=torch.bool)
    dead[[1, 4, 5, 9, 20, 31]] = True
    out = coder.train_forward(x, x, dead)
    # slow reference
    with torch.no_grad():
        pre = (x - coder.b_dec) @ coder.W_enc.T + coder.b_enc
        err = x - out.recon
        k_aux = min(8 // 2, 6)
        total = 0.0
        for n in range(20):
            dead_ids = sorted((i for i in range(32) if dead[i]), key=lambda i: -float(pre[n, i]))[:k_aux]
            err_hat = sum(max(float(pre[n, i]), 0.0) * coder.W_dec[i] for i in dead_ids)
            total += float((err_hat - err[n]).pow(2).sum())
        expected = min(6 / 4, 1.0) * total / float(total_variance(x))
    assert float(out.aux_loss.detach()) == pytest.approx(expected, rel=1e-4)
    coder.zero_grad()
    out.aux_loss.backward()
    touched = (coder.W_dec.grad.abs().sum(1) > 0) | (coder.W_enc.grad.abs().sum(1) > 0)
    assert touched.any() and not touched[~dead].any()


def test_no_dead_latents_means_no_auxk_loss():
    coder = build_coder(CoderConfig("topk", 8, 32, k=2), seed=0)
    x = torch.randn(10, 8)
    assert float(coder.train_forward(x, x, torch.zeros(32, dtype=torch.bool)).aux_loss) == 0.0


def test_dead_latents_are_those_silent_for_dead_after_tokens():
    x = _data(2048)
    cfg = CoderConfig("topk", 16, 64, k=3)
    trainer = Trainer({"x": cfg}, TrainSettings(n_steps=16, dead_after_tokens=500))
    with torch.no_grad():  # latents 0-9 can never fire
        trainer.states["x"].coder.b_enc[:10] = -1e6
    trainer.fit(TensorSource(x, 128))
    since = trainer.states["x"].since_fired
    assert (since[:10] == 16 * 128).all()
    dead = trainer._dead_mask(trainer.states["x"])
    assert dead[:10].all()
