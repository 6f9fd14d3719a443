"""Logistic regression on standardised statement states, every layer in one Newton solve.

Minimises mean log-loss + (lambda / 2) * ||w||^2 (the intercept is not penalised; sklearn's
default C=1 is lambda = 1 / N_train in this form) by Newton's method with step halving,
batched over layers: each step is one (L, d+1, d+1) Hessian and a batched Cholesky solve.
(A batched L-BFGS was tried too: its passes over the data are cheap, but with weak penalties it
needs hundreds of them, and each pass streams every layer's states from memory; Newton needs
eight to ten steps on smollm2's states with sklearn's default penalty.) Penalties are walked
from strong to weak, each warm-starting the next; each layer keeps the penalty with the lowest
validation log-loss.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MethodSettings, ProbeInputs, ProbeMethod, register, solve_spd, standardize_stats

MAX_ITERS = 50
DECREMENT = 1e-7  # stop when the objective is this close to its minimum (mean log-loss units)


def design(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Standardised features with a ones column for the intercept: (L, N, d+1)."""
    z = (x - mean[:, None]) / std[:, None]
    return torch.cat([z, torch.ones(*z.shape[:2], 1)], dim=-1)


def objective(xa: Tensor, y: Tensor, w: Tensor, lam: Tensor) -> Tensor:
    """(L,) mean log-loss + lam/2 * ||w without intercept||^2."""
    return _objective_at(torch.einsum("lnd,ld->ln", xa, w), y, w, lam)


def log_loss(xa: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """(L,) mean log-loss of weights ``w`` (L, d+1) on rows ``xa`` (L, N, d+1)."""
    return _log_loss_at(torch.einsum("lnd,ld->ln", xa, w), y)


def _log_loss_at(logits: Tensor, y: Tensor) -> Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, y.expand_as(logits), reduction="none").mean(1)


def newton_logistic(xa: Tensor, y: Tensor, lam: Tensor, w0: Tensor | None = None,
                    max_iters: int = MAX_ITERS) -> Tensor:
    """Penalised logistic regression per layer: (L, d+1) weights, intercept last.

    ``xa`` (L, N, d+1) with a ones column last, ``y`` (N,), ``lam`` (L,) penalty per layer.
    Each step costs one Hessian product, one batched solve and three passes over the rows (the
    gradient, the logits of the step, the Hessian weights); the step is halved per layer until
    the objective does not rise, on logits updated as ``logits - scale * (xa @ step)``, so the
    halving reads no rows. Layers stop once their Newton decrement says the objective is within
    ``DECREMENT`` of its minimum, and later steps only touch the layers still moving.
    """
    n_layers, n, k = xa.shape
    w = torch.zeros(n_layers, k) if w0 is None else w0.clone()
    penal = torch.ones(k)
    penal[-1] = 0.0  # the intercept is not penalised
    ridge = torch.diag(penal) + 1e-6 * torch.eye(k)
    active = torch.arange(n_layers)
    xs, ws, ls = xa, w, lam
    logits = torch.einsum("lnd,ld->ln", xs, ws)
    value = _objective_at(logits, y, ws, ls)
    for _ in range(max_iters):
        p = torch.sigmoid(logits)
        grad = torch.einsum("lnd,ln->ld", xs, p - y) / n + ls[:, None] * penal * ws
        hess = torch.bmm(xs.transpose(1, 2), xs * (p * (1 - p) / n)[..., None])
        hess += ls[:, None, None] * ridge
        step = solve_spd(hess, grad[..., None]).squeeze(-1)
        decrement = 0.5 * (grad * step).sum(1)
        moved = torch.einsum("lnd,ld->ln", xs, step)
        scale, trial = _halve_until_better(logits, moved, y, ws, step, ls, value)
        better = trial <= value
        scale = torch.where(better, scale, torch.zeros_like(scale))
        ws = ws - scale[:, None] * step
        logits = logits - scale[:, None] * moved
        value = torch.where(better, trial, value)
        w[active] = ws
        keep = (decrement > DECREMENT) & better
        if not bool(keep.any()):
            break
        if not bool(keep.all()):
            active, ws, ls, logits, value = active[keep], ws[keep], ls[keep], logits[keep], value[keep]
            xs = xa[active]
    return w


def _objective_at(logits: Tensor, y: Tensor, w: Tensor, lam: Tensor) -> Tensor:
    """(L,) the objective from precomputed logits (L, N)."""
    return _log_loss_at(logits, y) + 0.5 * lam * w[:, :-1].pow(2).sum(1)


def _halve_until_better(logits: Tensor, moved: Tensor, y: Tensor, w: Tensor, step: Tensor,
                        lam: Tensor, current: Tensor, tries: int = 30) -> tuple[Tensor, Tensor]:
    """Per layer, the step scale (1, 1/2, 1/4, ...) at which the objective first does not rise,
    and the objective there."""
    scale = torch.ones(w.shape[0])
    for _ in range(tries):
        trial = _objective_at(logits - scale[:, None] * moved, y, w - scale[:, None] * step, lam)
        worse = trial > current
        if not bool(worse.any()):
            break
        scale = torch.where(worse, scale / 2, scale)
    return scale, trial


@register
class LogisticRegression(ProbeMethod):
    name = "lr"
    summary = "logistic regression (L2 penalty chosen per layer on validation)"
    native_probability = True

    def fit(self, train: ProbeInputs, val: ProbeInputs, settings: MethodSettings,
            fixed: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        mean, std = standardize_stats(train.x)
        xa = design(train.x, mean, std)
        if fixed is not None:  # refit with the penalty each layer chose before
            w = newton_logistic(xa, train.y, fixed["penalty"])
            return {"mean": mean, "std": std, "weight": w[:, :-1], "bias": w[:, -1],
                    "penalty": fixed["penalty"]}
        xv = design(val.x, mean, std)
        n_layers = train.n_layers
        best_w = torch.zeros(n_layers, train.d + 1)
        best_loss = torch.full((n_layers,), float("inf"))
        best_lam = torch.zeros(n_layers)
        w = None
        for value in sorted(settings.lr_penalties, reverse=True):
            lam = torch.full((n_layers,), float(value))
            w = newton_logistic(xa, train.y, lam, w0=w)
            loss = log_loss(xv, val.y, w)
            better = loss < best_loss
            best_w = torch.where(better[:, None], w, best_w)
            best_loss = torch.where(better, loss, best_loss)
            best_lam = torch.where(better, lam, best_lam)
        return {"mean": mean, "std": std, "weight": best_w[:, :-1], "bias": best_w[:, -1],
                "penalty": best_lam}

    def raw_scores(self, state: dict[str, Tensor], inputs: ProbeInputs) -> Tensor:
        z = (inputs.x - state["mean"][:, None]) / state["std"][:, None]
        return torch.einsum("lnd,ld->ln", z, state["weight"]) + state["bias"][:, None]

    def direction(self, state: dict[str, Tensor]) -> Tensor:
        return state["weight"] / state["std"]
