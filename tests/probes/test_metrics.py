"""Metrics against slow, obviously-correct references."""

import math

import pytest
import torch

from alignlab.probes.metrics import (
    accuracy,
    auroc,
    auroc_interval,
    bootstrap_weights,
    ece,
)


def slow_auroc(scores, labels, weights=None):
    """Every (true, false) pair: 1 if the true row scores higher, 1/2 on a tie."""
    weights = weights or [1.0] * len(scores)
    num = den = 0.0
    for si, yi, wi in zip(scores, labels, weights):
        for sj, yj, wj in zip(scores, labels, weights):
            if yi == 1 and yj == 0:
                den += wi * wj
                num += wi * wj * (1.0 if si > sj else 0.5 if si == sj else 0.0)
    return num / den if den else math.nan


def slow_ece(probs, labels, n_bins=10):
    total = 0.0
    for b in range(n_bins):
        members = [(p, y) for p, y in zip(probs, labels) if min(int(p * n_bins), n_bins - 1) == b]
        if members:
            conf = sum(p for p, _ in members) / len(members)
            frac = sum(y for _, y in members) / len(members)
            total += len(members) / len(probs) * abs(conf - frac)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_pairwise_reference_with_ties_and_weights(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 7, (4, 40), generator=g).float()  # many ties
    labels = torch.randint(0, 2, (40,), generator=g).float()
    weights = torch.randint(0, 4, (40,), generator=g).float()
    got = auroc(scores, labels, weights)
    for layer in range(4):
        ref = slow_auroc(scores[layer].tolist(), labels.tolist(), weights.tolist())
        assert got[layer].item() == pytest.approx(ref, abs=1e-6)
    unweighted = auroc(scores, labels)
    assert unweighted[0].item() == pytest.approx(slow_auroc(scores[0].tolist(), labels.tolist()), abs=1e-6)


def test_auroc_extremes_and_missing_class():
    y = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert auroc(torch.tensor([0.1, 0.2, 0.8, 0.9]), y).item() == 1.0
    assert auroc(torch.tensor([0.9, 0.8, 0.2, 0.1]), y).item() == 0.0
    assert auroc(torch.ones(4), y).item() == 0.5
    assert math.isnan(auroc(torch.rand(4), torch.ones(4)).item())


def test_accuracy_weighted():
    pred = torch.tensor([1.0, 0.0, 1.0, 1.0])
    y = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert accuracy(pred, y).item() == 0.5
    assert accuracy(pred, y, torch.tensor([3.0, 1.0, 0.0, 0.0])).item() == 0.75


@pytest.mark.parametrize("seed", range(3))
def test_ece_matches_binned_reference(seed):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(3, 200, generator=g)
    labels = (torch.rand(200, generator=g) < 0.5).float()
    got = ece(probs, labels)
    for layer in range(3):
        assert got[layer].item() == pytest.approx(slow_ece(probs[layer].tolist(), labels.tolist()), abs=1e-6)
    assert ece(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])).item() == 0.0


def test_bootstrap_weights_resample_groups_whole():
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    w = bootstrap_weights(7, groups, 50, seed=1)
    assert w.shape == (50, 7)
    assert torch.equal(w[:, 0], w[:, 1]) and torch.equal(w[:, 4], w[:, 5])
    assert torch.all(w[:, [0, 2, 4, 6]].sum(1) == 4)  # 4 groups drawn per resample


def test_interval_matches_explicit_resampling():
    """The weighted bootstrap equals recomputing AUROC on explicitly resampled rows."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 60, generator=g)
    labels = (torch.rand(60, generator=g) < 0.5).float()
    w = bootstrap_weights(60, None, 20, seed=3)
    for b in range(20):
        rows = [i for i in range(60) for _ in range(int(w[b, i]))]
        ref = slow_auroc(scores[0, rows].tolist(), labels[rows].tolist())
        assert auroc(scores[0], labels, w[b]).item() == pytest.approx(ref, abs=1e-6)
    iv = auroc_interval(scores, labels, n_draws=400, seed=3)
    assert torch.all(iv.low <= iv.estimate) and torch.all(iv.estimate <= iv.high)
    strong = auroc_interval(torch.cat([labels[None] * 3 + torch.randn(1, 60, generator=g)]), labels, n_draws=400)
    assert strong.low.item() > 0.9
