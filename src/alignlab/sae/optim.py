"""Optimisers for sparse coders: Adam, and schedule-free sign descent (sparsify's default).

Schedule-free SGD (Defazio et al. 2024, "The Road Less Scheduled") keeps two sequences: ``z``,
the plain iterate, and ``x``, a running average of ``z``; gradients are taken at the
interpolation ``y = (1 - beta) z + beta x``, which is what the parameters hold during training.
The base step on ``z`` here is sign descent (steepest descent in the L-infinity norm, Bernstein
et al. 2018), as in EleutherAI sparsify 1.3 (``optimizer="signum"``: ``SignSGD`` wrapped in
``schedulefree.ScheduleFreeWrapper(momentum=0.95)``, lr ``5e-3 / sqrt(width / 2**14)``). On
short budgets it reaches a far lower FVU than Adam at its width-scaled learning rate (see
``benchmarks/sae.py``). No learning-rate schedule is needed; :meth:`averaged` gives ``x``, the
weights to keep at the end.

Every piece of state is a per-parameter tensor, so the trainer's checkpoint (which stores
``optimizer.state_dict()["state"]``) restores it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

OPTIMIZERS = ["signum", "adam"]
SIGNUM_MOMENTUM = 0.95  # sparsify's ScheduleFreeWrapper(momentum=0.95)


def default_lr(width: int, optimizer: str = "adam") -> float:
    """sparsify's width-scaled learning rates: signum ``5e-3``, Adam ``2e-4``, over ``sqrt(width / 2**14)``."""
    base = 5e-3 if optimizer == "signum" else 2e-4
    return base / math.sqrt(width / 2**14)


class ScheduleFreeSignSGD(torch.optim.Optimizer):
    """Schedule-free sign descent; the parameters hold ``y``, state holds ``z`` and ``x``.

    ``project`` (optional) maps a parameter and its ``z`` buffer in place after each step, e.g.
    to keep decoder rows on the unit sphere; it is applied to ``z`` so that ``x`` and ``y``,
    averages of points on the sphere, stay near it.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float = SIGNUM_MOMENTUM):
        if not lr > 0 or not 0 <= momentum < 1:
            raise ValueError(f"need lr > 0 and 0 <= momentum < 1, got lr={lr}, momentum={momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ARG002 - the torch.optim signature
        for group in self.param_groups:
            lr, beta = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, lr, beta)

    def _update(self, p: Tensor, lr: float, beta: float) -> None:
        state = self.state[p]
        if not state:
            state["z"] = p.detach().clone()
            state["x"] = p.detach().clone()
            state["weight_sum"] = torch.zeros((), dtype=p.dtype)  # p.dtype: a checkpoint restores it so
            state["lr_max"] = torch.zeros((), dtype=p.dtype)
        z, x = state["z"], state["x"]
        z.add_(p.grad.sign(), alpha=-lr)
        # weights in the average grow with lr_max^2 (schedulefree's weight_lr_power=2)
        state["lr_max"] = torch.clamp_min(state["lr_max"], lr)
        weight = float(state["lr_max"]) ** 2
        state["weight_sum"] += weight
        x.lerp_(z, weight / float(state["weight_sum"]))
        p.copy_(z).lerp_(x, beta)  # y = (1 - beta) z + beta x

    @torch.no_grad()
    def project_(self, p: Tensor, fn) -> None:
        """Apply ``fn`` in place to ``p``'s ``z`` and ``x`` buffers and to ``p`` itself (``y``)."""
        state = self.state.get(p)
        for t in ((state["z"], state["x"]) if state else ()):
            fn(t)
        fn(p)

    @torch.no_grad()
    def averaged(self, p: Tensor) -> Tensor:
        """``x``, the schedule-free average to keep at the end (``p`` itself before any step)."""
        state = self.state.get(p)
        return state["x"].clone() if state else p.detach().clone()


def normalize_rows_(w: Tensor) -> None:
    """Scale each row of ``w`` to unit norm, in place (decoder directions)."""
    w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-12))


def build_optimizer(name: str, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "signum":
        return ScheduleFreeSignSGD(params, lr)
    return torch.optim.Adam(params, lr=lr, fused=True)
