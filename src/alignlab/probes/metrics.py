"""Accuracy, AUROC with bootstrap intervals, and calibration error, batched over layers.

Every metric takes scores shaped ``(..., N)`` (one row per layer, bootstrap draw, ...) and
optional non-negative row weights of the same shape: a bootstrap draw is a weighting (how often
each row was drawn), so one code path serves the point estimate and all draws. The bootstrap
resamples *groups* (rows sharing a pair or entity) when groups are given, as elk's cluster
bootstrap does, because statements about one city are not independent evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

N_BOOTSTRAP = 1000
LEVEL = 0.95
ECE_BINS = 10


def auroc(scores: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """Area under the ROC curve per row of ``scores`` (..., N); ties count one half.

    The probability that a random true row outscores a random false one (the Mann-Whitney
    statistic), each row counted ``weights`` times. NaN where a class is absent.
    """
    weights = torch.ones_like(scores, dtype=torch.float) if weights is None else weights.float()
    scores, labels, weights = torch.broadcast_tensors(scores.float(), labels.float(), weights)
    order = scores.argsort(dim=-1)
    s = scores.gather(-1, order).contiguous()
    y = labels.gather(-1, order)
    w = weights.gather(-1, order)
    w_pos, w_neg = w * y, w * (1 - y)
    neg_cum = torch.nn.functional.pad(w_neg.cumsum(-1), (1, 0))  # (..., N+1): negatives before i
    left = torch.searchsorted(s, s, side="left")
    right = torch.searchsorted(s, s, side="right")
    below = neg_cum.gather(-1, left)
    tied = neg_cum.gather(-1, right) - below
    numerator = (w_pos * (below + 0.5 * tied)).sum(-1)
    denominator = w_pos.sum(-1) * w_neg.sum(-1)
    return numerator / denominator.where(denominator > 0, torch.tensor(float("nan")))


def accuracy(predictions: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted fraction of rows where the 0/1 prediction equals the label: (...)."""
    hits = (predictions.float() == labels.float()).float()
    if weights is None:
        return hits.mean(-1)
    hits, weights = torch.broadcast_tensors(hits, weights.float())
    return (hits * weights).sum(-1) / weights.sum(-1)


def ece(probs: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> Tensor:
    """Expected calibration error of P(true) per row (..., N): equal-width bins, L1.

    Sum over bins of (bin share) * |mean predicted P(true) - fraction true| (Guo et al. 2017,
    binary form as elk's calibration metric, with fixed rather than swept bins).
    """
    probs, labels = torch.broadcast_tensors(probs.float(), labels.float())
    bins = (probs * n_bins).long().clamp(0, n_bins - 1)  # (..., N)
    shape = (*probs.shape[:-1], n_bins)
    conf = torch.zeros(shape).scatter_add_(-1, bins, probs)
    true = torch.zeros(shape).scatter_add_(-1, bins, labels)
    # share * |mean conf - fraction true| = |sum conf - sum true| / N per bin
    return (conf - true).abs().sum(-1) / probs.shape[-1]


def bootstrap_weights(n_rows: int, groups: Tensor | None, n_draws: int, seed: int) -> Tensor:
    """(n_draws, n_rows): how often each row is drawn when groups are resampled with replacement."""
    generator = torch.Generator().manual_seed(seed)
    if groups is None:
        groups = torch.arange(n_rows)
    _, group_index = torch.unique(groups, return_inverse=True)  # (N,) in 0..G-1
    n_groups = int(group_index.max()) + 1
    draws = torch.randint(0, n_groups, (n_draws, n_groups), generator=generator)
    counts = torch.zeros(n_draws, n_groups).scatter_add_(1, draws, torch.ones(n_draws, n_groups))
    return counts[:, group_index]  # (B, N)


@dataclass(frozen=True)
class Interval:
    """A point estimate per layer with a bootstrap interval."""

    estimate: Tensor  # (L,)
    low: Tensor  # (L,)
    high: Tensor  # (L,)


def bootstrap(metric, values: Tensor, labels: Tensor, groups: Tensor | None = None,
              n_draws: int = N_BOOTSTRAP, level: float = LEVEL, seed: int = 0,
              max_elements: int = 4_000_000) -> Interval:
    """Percentile interval of ``metric(values, labels, weights)`` for ``values`` (L, N)."""
    estimate = metric(values, labels)
    weights = bootstrap_weights(values.shape[-1], groups, n_draws, seed)  # (B, N)
    chunk = max(1, max_elements // max(1, values.numel()))
    draws = []
    for start in range(0, n_draws, chunk):
        w = weights[start : start + chunk]  # (b, N)
        draws.append(metric(values[:, None, :], labels, w[None]))  # (L, b)
    stats = torch.cat(draws, dim=1)  # (L, B)
    alpha = (1 - level) / 2
    q = torch.tensor([alpha, 1 - alpha])
    low, high = stats.nanquantile(q, dim=1)
    return Interval(estimate, low, high)


def auroc_interval(scores: Tensor, labels: Tensor, groups: Tensor | None = None, **kwargs) -> Interval:
    return bootstrap(auroc, scores, labels, groups, **kwargs)


def accuracy_interval(predictions: Tensor, labels: Tensor, groups: Tensor | None = None, **kwargs) -> Interval:
    return bootstrap(accuracy, predictions, labels, groups, **kwargs)
