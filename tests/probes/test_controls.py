"""Controls on planted data, where the right answer is known."""

import pytest
import torch

from alignlab.probes import controls as ctl
from alignlab.probes.fit import fit_probe
from alignlab.probes.methods import MethodSettings, ProbeInputs

SETTINGS = MethodSettings(ccs_tries=3, ccs_epochs=200, ccs_lr=2e-2)


def noisy_pairs(n=600, d=16, truth=1.0, seed=0):
    """One layer of contrast pairs: truth flips between the halves with strength ``truth``
    and unit noise, as in real activations (not perfectly separable)."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).float()[torch.randperm(n, generator=g)]
    u = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    base = 2 * torch.randn(n, d, generator=g)
    sign = (2 * y - 1)[:, None]
    x_pos = base + sign * truth * u + torch.randn(n, d, generator=g)
    x_neg = base - sign * truth * u + torch.randn(n, d, generator=g)
    inputs = ProbeInputs(x_pos[None], y, x_pos[None], x_neg[None])
    cut = [torch.arange(0, 360), torch.arange(360, 480), torch.arange(480, 600)]
    return ctl.Splits(*(inputs.take(c) for c in cut))


@pytest.mark.parametrize("method", ["ccs", "eigen"])
def test_distractor_flags_when_stronger_and_passes_when_weaker(method):
    splits = noisy_pairs()
    weaker = ctl.distractor_check(method, splits, [0], SETTINGS, ratio=0.5)
    stronger = ctl.distractor_check(method, splits, [0], SETTINGS, ratio=2.0)
    assert weaker["found"] == "truth" and not weaker["flagged"], weaker
    assert stronger["found"] == "distractor" and stronger["flagged"], stronger
    assert stronger["distractor_auroc_distance"] > 0.3 and stronger["truth_auroc_distance"] < 0.15


def test_distractor_is_as_separable_as_asked():
    splits = noisy_pairs()
    unit, sep, within = ctl.truth_geometry(splits.train)
    d = ctl.make_distractor(splits.train, 2.0, seed=0)
    assert abs(float((d.direction * unit).sum())) < 1e-5  # orthogonal to truth
    assert torch.allclose(d.separation, 2 * sep) and torch.allclose(d.noise, within)
    z = ctl.balanced_signs(splits.train.n, torch.Generator().manual_seed(0))
    injected = ctl.inject(splits.train, d, z, seed=0)
    proj = torch.einsum("lnd,ld->ln", injected.x_pos - injected.x_neg, d.direction)[0]
    gap = proj[z > 0].mean() - proj[z < 0].mean()
    assert gap.item() == pytest.approx(2 * sep.item(), rel=0.15)


def test_shuffled_labels_fall_to_chance(make_planted):
    inputs, _ = make_planted(n=600)
    splits = ctl.Splits(*(inputs.take(torch.arange(a, b)) for a, b in ((0, 360), (360, 480), (480, 600))))
    out = ctl.shuffled_labels("lr", splits, [0, 1, 2], SETTINGS)
    assert abs(out["auroc"] - 0.5) < 0.15
    honest = fit_probe("lr", splits.train, splits.val, [0, 1, 2], SETTINGS)
    assert honest.best_layer == 2


def test_random_directions_distribution(make_planted):
    inputs, _ = make_planted(n=600, strengths=(0.0, 0.0, 3.0))
    train, test = inputs.take(torch.arange(0, 400)), inputs.take(torch.arange(400, 600))
    aucs = ctl.random_direction_aurocs(train, test, n=50)
    assert aucs.shape == (50, 3)
    summary = ctl.random_directions_summary(aucs)
    assert abs(summary["auroc_mean"][0] - 0.5) < 0.05  # no signal at layer 0
    assert summary["auroc_mean"][2] > summary["auroc_mean"][0]  # random directions see strong signal too
    assert summary["auroc_p95"][0] < 0.65


def test_likelihood_control_detects_a_probe_that_is_only_logprob():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(400, generator=g) < 0.5).float()
    logprob = y * 2 + torch.randn(400, generator=g)
    copycat = ctl.likelihood_control(3 * logprob + 1, logprob, y)
    assert copycat["correlation"] == pytest.approx(1.0, abs=1e-6)
    assert copycat["partial_auroc"] == pytest.approx(0.5, abs=0.1)
    independent = ctl.likelihood_control(y * 4 + torch.randn(400, generator=g), logprob, y)
    assert independent["partial_auroc"] > 0.8  # logprob shares some truth, so a little goes
    assert copycat["logprob_auroc"] > 0.8


def test_held_out_templates_reports_both(make_planted):
    inputs, _ = make_planted(n=600)
    train, val, test = (inputs.take(torch.arange(a, b)) for a, b in ((0, 300), (300, 400), (400, 500)))
    other = inputs.take(torch.arange(500, 600))
    probe = fit_probe("mean-diff", train, val, [0, 1, 2], SETTINGS)
    out = ctl.held_out_templates(probe, test, other, [0], [1, 2])
    assert out["held_out_accuracy"] > 0.9 and out["same_template_accuracy"] > 0.9
    assert len(out["held_out_accuracy_by_layer"]) == 3


@pytest.mark.parametrize("n_true, n", [(50, 100), (30, 101)])
def test_permuted_labels_are_uncorrelated_with_truth_in_the_sample(n_true, n):
    y = torch.zeros(n)
    y[torch.randperm(n, generator=torch.Generator().manual_seed(3))[:n_true]] = 1
    inputs = ProbeInputs(torch.randn(1, n, 4), y)
    shuffled = ctl.permuted(inputs, torch.Generator().manual_seed(0)).y
    rate = n_true / n
    for cls in (0, 1):  # each true class gets the overall rate of positives (to one row)
        rows = y == cls
        assert abs(float(shuffled[rows].sum()) - rate * int(rows.sum())) <= 0.5
    assert abs(int(shuffled.sum()) - n_true) <= 1
    # hence (almost) no covariance with truth, unlike a plain permutation's sampling noise
    cov = float(((shuffled - shuffled.mean()) * (y - y.mean())).mean())
    assert abs(cov) < 0.5 / n
    other = ctl.permuted(inputs, torch.Generator().manual_seed(1)).y
    assert not torch.equal(shuffled, other)  # random: another seed, other labels
