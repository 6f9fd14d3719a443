"""What every probe method takes and gives, and the registry that names them.

A method sees :class:`ProbeInputs` for every layer at once, tensors shaped ``(L, N, d)``, and
returns its fitted state as a dict of tensors whose first axis is the layer, so fitting is
batched tensor algebra across layers (never a Python loop of per-layer solvers). Methods that
read contrast pairs (CCS, eigen) use ``x_pos``/``x_neg``; the others use ``x``. What a method
returns is a raw score per layer and row; :mod:`alignlab.probes.fit` turns it into a calibrated
P(true) and a sign, using training labels only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ...errors import ConfigError, DataError


@dataclass
class ProbeInputs:
    """Hidden states of one set of statements, every layer."""

    x: Tensor  # (L, N, d) the statement's last-token state
    y: Tensor  # (N,) 1.0 true, 0.0 false
    x_pos: Tensor | None = None  # (L, N, d) contrast pair: the statement / answered "Yes"
    x_neg: Tensor | None = None  # (L, N, d) its negation / answered "No"

    @property
    def n(self) -> int:
        return self.x.shape[1]

    @property
    def n_layers(self) -> int:
        return self.x.shape[0]

    @property
    def d(self) -> int:
        return self.x.shape[2]

    @property
    def has_pairs(self) -> bool:
        return self.x_pos is not None and self.x_neg is not None

    def take(self, index: Tensor) -> ProbeInputs:
        """The rows at ``index`` (a 1-D long tensor)."""
        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[:, index]

        return ProbeInputs(self.x[:, index], self.y[index], pick(self.x_pos), pick(self.x_neg))

    def with_labels(self, y: Tensor) -> ProbeInputs:
        return ProbeInputs(self.x, y, self.x_pos, self.x_neg)


@dataclass(frozen=True)
class MethodSettings:
    """Hyperparameters shared by the registry's methods (each reads what it needs)."""

    seed: int = 0
    lr_penalties: tuple[float, ...] = (1.0, 0.1, 0.01)  # L2 strength on the mean loss
    lda_shrinkage: tuple[float, ...] = (1e-3, 1e-2, 0.1, 0.3, 0.6, 0.9)
    ccs_tries: int = 10  # Burns et al.: 10 restarts, keep the lowest loss
    ccs_epochs: int = 1000  # Burns et al.: 1000 full-batch AdamW steps
    ccs_lr: float = 1e-3
    ccs_weight_decay: float = 0.01
    eigen_neg_cov_weight: float = 5.0  # elk's EigenReporter default (var_weight 1)


class ProbeMethod:
    """A linear truth probe fitted on all layers at once."""

    name: ClassVar[str]
    summary: ClassVar[str]
    uses_pairs: ClassVar[bool] = False  # reads x_pos / x_neg instead of x
    uses_labels: ClassVar[bool] = True  # the direction itself is fitted with labels
    native_probability: ClassVar[bool] = False  # raw score is already a logit of P(true)

    def fit(self, train: ProbeInputs, val: ProbeInputs, settings: MethodSettings,
            fixed: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The fitted state: tensors whose first axis is the layer.

        ``fixed`` is a state fitted before: a method that chose hyperparameters on ``val``
        (LR's penalty, LDA's shrinkage) reuses them instead of choosing again.
        """
        raise NotImplementedError

    def raw_scores(self, state: dict[str, Tensor], inputs: ProbeInputs) -> Tensor:
        """(L, N), larger meaning "more true" up to a per-layer sign fixed later."""
        raise NotImplementedError

    def direction(self, state: dict[str, Tensor]) -> Tensor:
        """(L, d): the probe's direction in the raw activation space (not normalised)."""
        raise NotImplementedError


METHODS: dict[str, type[ProbeMethod]] = {}


def register(cls: type[ProbeMethod]) -> type[ProbeMethod]:
    """Class decorator: add a method under its ``name``; names are unique."""
    if cls.name in METHODS:
        raise ValueError(f"probe method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> ProbeMethod:
    if name not in METHODS:
        raise ConfigError(f"unknown probe method {name!r}; methods are {', '.join(METHODS)}")
    return METHODS[name]()


# ---------------------------------------------------------------------------------------------
# Normalisation shared by several methods; the statistics come from training rows only.


def standardize_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-layer, per-feature mean and std of ``x`` (L, N, d); constant features get std 1."""
    mean = x.mean(dim=1)  # (L, d)
    std = x.std(dim=1)
    floor = 1e-6 * std.amax(dim=1, keepdim=True).clamp_min(1e-12)
    return mean, torch.where(std > floor, std, torch.ones_like(std))


def burns_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean per feature and one scale per layer: elk's BurnsNorm (the mean feature std).

    Burns et al. 2022 centre each half of the contrast pair separately, which removes the
    direction that only says "this answer is Yes"; scaling by one number keeps directions.
    """
    mean = x.mean(dim=1)  # (L, d)
    scale = (x - mean[:, None]).pow(2).mean(dim=1).sqrt().mean(dim=1)  # (L,)
    return mean, scale.clamp_min(1e-12)


def solve_spd(a: Tensor, b: Tensor) -> Tensor:
    """Solve ``a @ x = b`` for a batch of symmetric positive-definite ``a`` (..., k, k), by Cholesky.

    A matrix that does not factor (singular to working precision) gets jitter, 1e-6, 1e-5, ...
    of its mean diagonal, until it does. Cholesky rather than LU: it is faster for these systems,
    and torch 2.13's batched LU on CPU fails for matrices of 256 rows and more (oneMKL "DLASWP"
    parameter errors, then a hang) once ``torch.set_num_threads`` has been called with more than
    one thread; Cholesky is not affected.
    """
    if not bool(torch.isfinite(a).all()) or not bool(torch.isfinite(b).all()):
        raise DataError("the hidden states give non-finite statistics (NaN or inf); run the model "
                        "in float32 (--dtype float32) or check the states for overflow")
    chol, info = torch.linalg.cholesky_ex(a)
    jitter = 1e-6
    while bool((info > 0).any()):
        redo = info > 0
        scale = a.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1e-12)
        eye = torch.eye(a.shape[-1], dtype=a.dtype)
        fixed, info_fixed = torch.linalg.cholesky_ex(a + (jitter * scale)[..., None, None] * eye)
        chol = torch.where(redo[..., None, None], fixed, chol)
        info = torch.where(redo, info_fixed, info)
        jitter *= 10
    return torch.cholesky_solve(b, chol)


def logistic_newton_1d(s: Tensor, y: Tensor, iters: int = 100, l2: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Platt scaling: (a, b) per layer maximising the likelihood of y under sigmoid(a*s + b).

    ``s`` is (L, N). Two-parameter Newton steps, batched over layers; the tiny L2 keeps
    separable scores finite. Scores are standardised first for conditioning.
    """
    mu, sd = s.mean(dim=1, keepdim=True), s.std(dim=1, keepdim=True).clamp_min(1e-12)
    z = ((s - mu) / sd).double()
    y = y.double()
    theta = torch.zeros(s.shape[0], 2, dtype=torch.float64)  # (L, [a, b])
    feats = torch.stack([z, torch.ones_like(z)], dim=-1)  # (L, N, 2)
    n = s.shape[1]
    reg = torch.tensor([l2, 0.0], dtype=torch.float64)
    for _ in range(iters):
        p = torch.sigmoid((feats * theta[:, None]).sum(-1))  # (L, N)
        grad = (feats * (p - y)[..., None]).sum(1) / n + reg * theta
        hess = torch.einsum("lni,lnj,ln->lij", feats, feats, p * (1 - p)) / n
        hess = hess + torch.diag(reg + 1e-9)
        step = solve_spd(hess, grad[..., None]).squeeze(-1)
        theta = theta - step
        if step.abs().max() < 1e-10:
            break
    a = theta[:, 0] / sd.squeeze(1).double()
    b = theta[:, 1] - a * mu.squeeze(1).double()
    return a.float(), b.float()
