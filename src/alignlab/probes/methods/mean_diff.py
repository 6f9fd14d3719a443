"""Difference of class means ("mass-mean" probe, Marks & Tegmark 2023 ``MMProbe``).

The direction is mean(true) - mean(false) in the raw activation space, the score the
projection of the centred state on it. No hyperparameters; a sign and a calibration are fitted
afterwards like every other method.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MethodSettings, ProbeInputs, ProbeMethod, register


def class_means(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(mean of true rows, mean of false rows), each (L, d)."""
    pos = y.bool()
    return x[:, pos].mean(dim=1), x[:, ~pos].mean(dim=1)


@register
class MeanDifference(ProbeMethod):
    name = "mean-diff"
    summary = "difference of class means (mass-mean probe)"

    def fit(self, train: ProbeInputs, val: ProbeInputs, settings: MethodSettings,
            fixed: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        mu_true, mu_false = class_means(train.x, train.y)
        return {"mean": train.x.mean(dim=1), "weight": mu_true - mu_false}

    def raw_scores(self, state: dict[str, Tensor], inputs: ProbeInputs) -> Tensor:
        return torch.einsum("lnd,ld->ln", inputs.x - state["mean"][:, None], state["weight"])

    def direction(self, state: dict[str, Tensor]) -> Tensor:
        return state["weight"]
