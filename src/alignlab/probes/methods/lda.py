"""Linear discriminant analysis: the mean difference corrected by the within-class covariance.

w = ((1 - g) * S_w + g * I)^-1 (mu_true - mu_false) on standardised states (Marks & Tegmark's
MMProbe with ``iid=True`` is the g = 0 case, where S_w is pseudo-inverted). With as many
features as training rows S_w is near singular, so it is shrunk toward the identity; the
shrinkage g is chosen per layer on validation AUROC. One batched Cholesky solve per g.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..metrics import auroc
from .base import MethodSettings, ProbeInputs, ProbeMethod, register, solve_spd, standardize_stats
from .mean_diff import class_means


def within_class_cov(z: Tensor, y: Tensor) -> Tensor:
    """Pooled within-class covariance per layer: (L, d, d)."""
    pos = y.bool()
    mu_t, mu_f = class_means(z, y)
    centred = torch.cat([z[:, pos] - mu_t[:, None], z[:, ~pos] - mu_f[:, None]], dim=1)
    return centred.transpose(1, 2) @ centred / z.shape[1]


@register
class LinearDiscriminant(ProbeMethod):
    name = "lda"
    summary = "LDA: covariance-corrected mean difference (shrinkage chosen on validation)"

    def fit(self, train: ProbeInputs, val: ProbeInputs, settings: MethodSettings,
            fixed: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        mean, std = standardize_stats(train.x)
        z = (train.x - mean[:, None]) / std[:, None]
        mu_t, mu_f = class_means(z, train.y)
        cov = within_class_cov(z, train.y).double()
        diff = (mu_t - mu_f).double()[..., None]  # (L, d, 1)
        eye = torch.eye(z.shape[-1], dtype=torch.float64)
        if fixed is not None:  # refit with the shrinkage chosen before
            g = fixed["shrinkage"].double()[:, None, None]
            w = solve_spd((1 - g) * cov + g * eye, diff).squeeze(-1).float()
            return {"mean": mean, "std": std, "weight": w, "shrinkage": fixed["shrinkage"]}
        zv = (val.x - mean[:, None]) / std[:, None]
        best = torch.full((z.shape[0],), -1.0)
        weight = torch.zeros(z.shape[0], z.shape[-1])
        chosen = torch.zeros(z.shape[0])
        for g in settings.lda_shrinkage:
            w = solve_spd((1 - g) * cov + g * eye, diff).squeeze(-1).float()  # (L, d)
            score = auroc(torch.einsum("lnd,ld->ln", zv, w), val.y)
            better = score > best
            weight = torch.where(better[:, None], w, weight)
            best = torch.where(better, score, best)
            chosen = torch.where(better, torch.full_like(chosen, g), chosen)
        return {"mean": mean, "std": std, "weight": weight, "shrinkage": chosen}

    def raw_scores(self, state: dict[str, Tensor], inputs: ProbeInputs) -> Tensor:
        z = (inputs.x - state["mean"][:, None]) / state["std"][:, None]
        return torch.einsum("lnd,ld->ln", z, state["weight"])

    def direction(self, state: dict[str, Tensor]) -> Tensor:
        return state["weight"] / state["std"]
