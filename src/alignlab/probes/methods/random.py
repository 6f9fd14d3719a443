"""Random directions: the floor any probe must clear.

One Gaussian direction per layer in the standardised space (seeded); the sign and calibration
are fitted on training labels like every other method, so the baseline gets the same help.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MethodSettings, ProbeInputs, ProbeMethod, register, standardize_stats


def random_directions(n_layers: int, d: int, n: int, seed: int) -> Tensor:
    """(n, L, d) unit Gaussian directions, reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, n_layers, d, generator=g)
    return w / w.norm(dim=-1, keepdim=True)


@register
class RandomDirection(ProbeMethod):
    name = "random"
    summary = "a random direction per layer (baseline)"
    uses_labels = False

    def fit(self, train: ProbeInputs, val: ProbeInputs, settings: MethodSettings,
            fixed: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        mean, std = standardize_stats(train.x)
        weight = random_directions(train.n_layers, train.d, 1, settings.seed)[0]
        return {"mean": mean, "std": std, "weight": weight}

    def raw_scores(self, state: dict[str, Tensor], inputs: ProbeInputs) -> Tensor:
        z = (inputs.x - state["mean"][:, None]) / state["std"][:, None]
        return torch.einsum("lnd,ld->ln", z, state["weight"])

    def direction(self, state: dict[str, Tensor]) -> Tensor:
        return state["weight"] / state["std"]
