"""The eigen method: VINC, the closed-form relative of CCS in EleutherAI's elk.

With each half normalised separately (as for CCS), the direction is the top eigenvector
(largest algebraic eigenvalue) of

    A = Cov(x+) + Cov(x-) - k * (Cov(x+, x-) + Cov(x-, x+))

(elk ``EigenReporter``: variance weight 1, negative-covariance weight k = 5): a direction along
which the statements vary a lot and the two halves of a pair move in opposite ways, as truth
does. elk's invariance term needs several prompt variants per question and is left out here.
The score is 0.5 * (w.x+ - w.x-). Only the top eigenvector is needed, so it comes from a
Krylov subspace built for all layers at once (Rayleigh-Ritz, full reorthogonalisation), like
elk's Lanczos ``eigsh``; layers whose Ritz vector has not converged fall back to a full ``eigh``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MethodSettings, ProbeInputs, ProbeMethod, register
from .pairs import normalized_pairs, pair_stats


def vinc_matrix(xp: Tensor, xn: Tensor, neg_cov_weight: float) -> Tensor:
    """(L, d, d) for centred halves ``xp``, ``xn`` (L, N, d)."""
    n = xp.shape[1]
    cov = (xp.transpose(1, 2) @ xp + xn.transpose(1, 2) @ xn) / n
    cross = xp.transpose(1, 2) @ xn / n
    return cov - neg_cov_weight * (cross + cross.transpose(1, 2))


KRYLOV_STEPS = 80
RESIDUAL_TOLERANCE = 1e-8  # ||A v - theta v|| / ||A||_F below which a Ritz pair is accepted


def top_eigenvector(a: Tensor, steps: int = KRYLOV_STEPS, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Largest algebraic eigenvalue (L,) and its unit eigenvector (L, d) of symmetric ``a``."""
    n_layers, d, _ = a.shape
    m = min(steps, d)
    g = torch.Generator().manual_seed(seed)
    basis = torch.zeros(n_layers, m, d, dtype=a.dtype)  # (L, m, d) orthonormal rows
    basis[:, 0] = torch.nn.functional.normalize(torch.randn(n_layers, d, generator=g, dtype=a.dtype), dim=-1)
    for j in range(1, m):
        v = (a @ basis[:, j - 1, :, None]).squeeze(-1)  # (L, d)
        v = _orthogonalize(v, basis[:, :j])
        norm = v.norm(dim=-1, keepdim=True)
        stuck = norm < 1e-12 * a.flatten(1).norm(dim=-1, keepdim=True).clamp_min(1e-300)
        if bool(stuck.any()):  # invariant subspace found: continue with a fresh direction
            fresh = _orthogonalize(torch.randn(n_layers, d, generator=g, dtype=a.dtype), basis[:, :j])
            v = torch.where(stuck, fresh, v)
            norm = v.norm(dim=-1, keepdim=True)
        basis[:, j] = v / norm
    projected = basis @ a @ basis.transpose(1, 2)  # (L, m, m)
    values, vectors = torch.linalg.eigh((projected + projected.transpose(1, 2)) / 2)
    value = values[:, -1]
    vector = torch.einsum("lm,lmd->ld", vectors[..., -1], basis)
    residual = (a @ vector[..., None]).squeeze(-1) - value[:, None] * vector
    loose = residual.norm(dim=-1) > RESIDUAL_TOLERANCE * a.flatten(1).norm(dim=-1)
    if bool(loose.any()):
        exact_values, exact_vectors = torch.linalg.eigh(a[loose])
        value[loose], vector[loose] = exact_values[:, -1], exact_vectors[..., -1]
    return value, vector


def _orthogonalize(v: Tensor, basis: Tensor) -> Tensor:
    """``v`` (L, d) minus its projection on the rows of ``basis`` (L, j, d), twice for accuracy."""
    for _ in range(2):
        v = v - torch.einsum("ljd,lj->ld", basis, torch.einsum("ljd,ld->lj", basis, v))
    return v


@register
class EigenVINC(ProbeMethod):
    name = "eigen"
    summary = "VINC eigen-method (elk), unsupervised"
    uses_pairs = True
    uses_labels = False

    def fit(self, train: ProbeInputs, val: ProbeInputs, settings: MethodSettings,
            fixed: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        stats = pair_stats(train)
        xp, xn = normalized_pairs(stats, train)
        a = vinc_matrix(xp, xn, settings.eigen_neg_cov_weight).double()
        value, vector = top_eigenvector(a, seed=settings.seed)
        return {**stats, "weight": vector.float(), "eigenvalue": value.float()}

    def raw_scores(self, state: dict[str, Tensor], inputs: ProbeInputs) -> Tensor:
        xp, xn = normalized_pairs(state, inputs)
        w = state["weight"]
        return 0.5 * (torch.einsum("lnd,ld->ln", xp, w) - torch.einsum("lnd,ld->ln", xn, w))

    def direction(self, state: dict[str, Tensor]) -> Tensor:
        return state["weight"]
