"""Contrast-pair normalisation shared by CCS and the eigen method (Burns et al. 2022)."""

from __future__ import annotations

from torch import Tensor

from .base import ProbeInputs, burns_stats


def pair_stats(inputs: ProbeInputs) -> dict[str, Tensor]:
    """Each half's own mean and scale: Burns et al. normalise x+ and x- separately, which
    removes the direction that only encodes which answer was appended."""
    if not inputs.has_pairs:
        raise ValueError("this method needs contrast pairs (x_pos, x_neg)")
    mean_pos, scale_pos = burns_stats(inputs.x_pos)
    mean_neg, scale_neg = burns_stats(inputs.x_neg)
    return {"mean_pos": mean_pos, "scale_pos": scale_pos, "mean_neg": mean_neg, "scale_neg": scale_neg}


def normalized_pairs(stats: dict[str, Tensor], inputs: ProbeInputs) -> tuple[Tensor, Tensor]:
    """(x+, x-) each centred and scaled by its own training statistics: (L, N, d) each."""
    if not inputs.has_pairs:
        raise ValueError("this method needs contrast pairs (x_pos, x_neg)")
    xp = (inputs.x_pos - stats["mean_pos"][:, None]) / stats["scale_pos"][:, None, None]
    xn = (inputs.x_neg - stats["mean_neg"][:, None]) / stats["scale_neg"][:, None, None]
    return xp, xn
