"""The trainer: determinism, resume, learning-rate defaults, AuxK and dead-latent counting."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.errors import ArtifactError, ConfigError
from alignlab.sae import CoderConfig, build_coder
from alignlab.sae.arch.base import total_variance
from alignlab.sae.data import TensorSource
from alignlab.sae.optim import ScheduleFreeSignSGD
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
    assert default_lr(4 * 2**14, "signum") == pytest.approx(2.5e-3)
    topk = Trainer({"x": CoderConfig("topk", 16, 256, k=4)}, TrainSettings(n_steps=5)).states["x"]
    assert isinstance(topk.optimizer, ScheduleFreeSignSGD)
    assert topk.base_lr == pytest.approx(5e-3 / math.sqrt(256 / 2**14))
    relu = Trainer({"x": CoderConfig("relu_l1", 16, 256)}, TrainSettings(n_steps=5)).states["x"]
    assert isinstance(relu.optimizer, torch.optim.Adam)
    assert relu.base_lr == pytest.approx(2e-4 / math.sqrt(256 / 2**14))
    adam = Trainer({"x": CoderConfig("topk", 16, 256, k=4)}, TrainSettings(n_steps=5, optimizer="adam"))
    assert isinstance(adam.states["x"].optimizer, torch.optim.Adam)


def test_schedule_free_sign_descent_matches_the_reference_recurrences():
    """Defazio et al. 2024 with a sign step on z: z -= lr sign(g); x = mean of z (constant lr);
    gradients are taken at y = (1 - beta) z + beta x."""
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(5, generator=gen)
    p = torch.nn.Parameter(torch.zeros(5))
    opt = ScheduleFreeSignSGD([p], lr=0.1, momentum=0.9)
    z, zs = torch.zeros(5), []
    for _ in range(7):
        y_expected = p.detach().clone()
        loss = (p - target).pow(2).sum()
        loss.backward()
        grad = 2 * (y_expected - target)
        opt.step()
        opt.zero_grad()
        z = z - 0.1 * grad.sign()
        zs.append(z)
        x = torch.stack(zs).mean(0)
        assert torch.allclose(opt.averaged(p), x, atol=1e-6)
        assert torch.allclose(p.detach(), 0.1 * z + 0.9 * x, atol=1e-6)
    with pytest.raises(ValueError, match="lr > 0"):
        ScheduleFreeSignSGD([p], lr=0.0)


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ConfigError, match="unknown optimizer 'sgd'"):
        TrainSettings(n_steps=3, optimizer="sgd")


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


def test_auxk_revives_dead_latents():
    """Half the latents start dead (encoder bias -1: they never win a TopK slot, so the main loss
    never reaches them). Everything else equal, AuxK (Gao et al. 2024) brings most of them back;
    without it they stay dead. Measured: dead fraction 0.40 without AuxK, 0.03 with; latents
    that never fire on held-out rows 0.35 without, 0.00 with."""
    planted = plant_features(PlantedConfig(d=32, n_features=1024, mean_active=4, seed=0))
    x = sample(planted, 32768, seed=1).x
    held_out = sample(planted, 8192, seed=2).x

    def train(auxk: bool):
        cfg = CoderConfig("topk", 32, 512, k=4)
        trainer = Trainer({"x": cfg}, TrainSettings(n_steps=128, auxk=auxk, dead_after_tokens=1024))
        with torch.no_grad():
            trainer.states["x"].coder.b_enc[:256] = -1.0
        dead = []
        result = trainer.fit(TensorSource(x, 256), on_step=lambda r: dead.append(r.stats["x"].dead_fraction))
        with torch.no_grad():
            never_fired = float((result.coders["x"].encode(held_out) > 0).sum(0).eq(0).float().mean())
        return dead, never_fired

    (dead_without, held_without), (dead_with, held_with) = train(False), train(True)
    assert min(max(dead_without), max(dead_with)) > 0.45  # both runs had the handicapped half dead
    assert dead_without[-1] > 0.35 and held_without > 0.25
    assert dead_with[-1] < 0.15 and held_with < 0.15
