"""Contrast-Consistent Search, as in Burns et al. 2022 (``CCS`` in their ``utils.py``).

Each half of the contrast pair is normalised separately; a linear probe with a sigmoid gives
p+ = p(x+), p- = p(x-); the loss is mean(min(p+, p-)^2) + mean((p+ - (1 - p-))^2); full-batch
AdamW (lr 1e-3, weight decay 0.01, 1000 epochs) from PyTorch's default ``nn.Linear`` init;
several restarts, keeping the one with the lowest loss. The credence that the statement is
true is 0.5 * (p+ + 1 - p-). Every restart of every layer is one slice of a (L, d, R) weight
tensor trained together: AdamW and the loss act elementwise per problem, so this is exactly R
independent runs per layer. Burns read the sign off test labels; here it is fixed on
training labels (see :mod:`alignlab.probes.fit`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import MethodSettings, ProbeInputs, ProbeMethod, register
from .pairs import normalized_pairs, pair_stats


def ccs_loss(p_pos: Tensor, p_neg: Tensor) -> Tensor:
    """Burns et al.'s loss, reduced over rows (dim -2): (..., R) for p of shape (..., N, R)."""
    informative = torch.minimum(p_pos, p_neg).pow(2).mean(dim=-2)
    consistent = (p_pos - (1 - p_neg)).pow(2).mean(dim=-2)
    return informative + consistent


def train_ccs(xp: Tensor, xn: Tensor, settings: MethodSettings) -> dict[str, Tensor]:
    """Fit ``ccs_tries`` probes per layer; keep the lowest final loss. Returns weight (L, d),
    bias (L,), loss (L,)."""
    n_layers, _, d = xp.shape
    g = torch.Generator().manual_seed(settings.seed)
    bound = 1 / math.sqrt(d)  # nn.Linear's default init: U(-1/sqrt(d), 1/sqrt(d))
    w = ((torch.rand(n_layers, d, settings.ccs_tries, generator=g) * 2 - 1) * bound).requires_grad_()
    b = ((torch.rand(n_layers, 1, settings.ccs_tries, generator=g) * 2 - 1) * bound).requires_grad_()
    opt = torch.optim.AdamW([w, b], lr=settings.ccs_lr, weight_decay=settings.ccs_weight_decay)
    with torch.enable_grad():
        for _ in range(settings.ccs_epochs):
            loss = ccs_loss(torch.sigmoid(xp @ w + b), torch.sigmoid(xn @ w + b))  # (L, R)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
    with torch.no_grad():
        final = ccs_loss(torch.sigmoid(xp @ w + b), torch.sigmoid(xn @ w + b))  # (L, R)
        best = final.argmin(dim=1)  # (L,)
        rows = torch.arange(n_layers)
        return {"weight": w.detach()[rows, :, best], "bias": b.detach()[rows, 0, best],
                "loss": final[rows, best]}


def credence(weight: Tensor, bias: Tensor, xp: Tensor, xn: Tensor) -> Tensor:
    """0.5 * (p+ + 1 - p-): (L, N)."""
    p_pos = torch.sigmoid(torch.einsum("lnd,ld->ln", xp, weight) + bias[:, None])
    p_neg = torch.sigmoid(torch.einsum("lnd,ld->ln", xn, weight) + bias[:, None])
    return 0.5 * (p_pos + 1 - p_neg)


@register
class ContrastConsistentSearch(ProbeMethod):
    name = "ccs"
    summary = "Contrast-Consistent Search (Burns et al. 2022), unsupervised"
    uses_pairs = True
    uses_labels = False
    native_probability = True

    def fit(self, train: ProbeInputs, val: ProbeInputs, settings: MethodSettings,
            fixed: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        stats = pair_stats(train)
        xp, xn = normalized_pairs(stats, train)
        return {**stats, **train_ccs(xp, xn, settings)}

    def raw_scores(self, state: dict[str, Tensor], inputs: ProbeInputs) -> Tensor:
        xp, xn = normalized_pairs(state, inputs)
        c = credence(state["weight"], state["bias"], xp, xn).clamp(1e-7, 1 - 1e-7)
        return torch.log(c) - torch.log1p(-c)  # logit of the credence

    def direction(self, state: dict[str, Tensor]) -> Tensor:
        return state["weight"]
