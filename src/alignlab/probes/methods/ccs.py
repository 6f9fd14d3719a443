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


LAYER_CHUNK = 8  # layers trained together: a chunk's states stay in cache through its epochs


def train_ccs(xp: Tensor, xn: Tensor, settings: MethodSettings) -> dict[str, Tensor]:
    """Fit ``ccs_tries`` probes per layer; keep the lowest final loss. Returns weight (L, d),
    bias (L,), loss (L,).

    The initial weights of every layer and restart are drawn first, in one fixed order, so a
    layer's result does not depend on which layers it is trained with; layers are then trained
    ``LAYER_CHUNK`` at a time (1.9x faster than all at once on smollm2's 31 layers: the epochs
    of a chunk re-read states that are still in cache).
    """
    n_layers, _, d = xp.shape
    g = torch.Generator().manual_seed(settings.seed)
    bound = 1 / math.sqrt(d)  # nn.Linear's default init: U(-1/sqrt(d), 1/sqrt(d))
    w = (torch.rand(n_layers, d, settings.ccs_tries, generator=g) * 2 - 1) * bound
    b = (torch.rand(n_layers, 1, settings.ccs_tries, generator=g) * 2 - 1) * bound
    for start in range(0, n_layers, LAYER_CHUNK):
        part = slice(start, start + LAYER_CHUNK)
        w[part], b[part] = _adamw_ccs(xp[part], xn[part], w[part].clone(), b[part].clone(), settings)
    final = ccs_loss(torch.sigmoid(xp @ w + b), torch.sigmoid(xn @ w + b))  # (L, R)
    best = final.argmin(dim=1)  # (L,)
    rows = torch.arange(n_layers)
    return {"weight": w[rows, :, best], "bias": b[rows, 0, best], "loss": final[rows, best]}


def _adamw_ccs(xp: Tensor, xn: Tensor, w: Tensor, b: Tensor, settings: MethodSettings) -> tuple[Tensor, Tensor]:
    """Full-batch AdamW on the CCS loss of (L, d, R) weights and (L, 1, R) biases.

    The gradient is written out rather than taken by autograd (the test suite checks it against
    autograd runs of Burns's code): with both halves stacked, each epoch is one batched product
    forward and one backward, instead of autograd's two of each.
    """
    n = xp.shape[1]
    x = torch.cat([xp, xn], dim=1)  # (L, 2N, d)
    xt = x.transpose(1, 2).contiguous()  # (L, d, 2N)
    w.grad, b.grad = torch.zeros_like(w), torch.zeros_like(b)
    opt = torch.optim.AdamW([w, b], lr=settings.ccs_lr, weight_decay=settings.ccs_weight_decay)
    for _ in range(settings.ccs_epochs):
        p = torch.sigmoid(torch.baddbmm(b, x, w))  # (L, 2N, R)
        p_pos, p_neg = p[:, :n], p[:, n:]
        # d loss / d p: the consistency term, plus the informative term on the smaller half
        # (an exact tie splits it, as torch.minimum's gradient does)
        both = (p_pos + p_neg - 1) * (2.0 / n)
        low = torch.minimum(p_pos, p_neg) * (2.0 / n)
        share = torch.where(p_pos == p_neg, 0.5, 1.0) * low
        g_pos = both + torch.where(p_pos <= p_neg, share, 0.0)
        g_neg = both + torch.where(p_neg <= p_pos, share, 0.0)
        g_logit = torch.cat([g_pos, g_neg], dim=1) * p * (1 - p)  # (L, 2N, R)
        torch.bmm(xt, g_logit, out=w.grad)
        torch.sum(g_logit, dim=1, keepdim=True, out=b.grad)
        opt.step()
    return w.detach(), b.detach()


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
