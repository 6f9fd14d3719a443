"""JumpReLU (Rajamanoharan et al. 2024, "Jumping Ahead"): ``f = z * H(z - theta)``.

Each latent has a learned threshold ``theta``; the L0 penalty and the threshold are trained
through straight-through pseudo-derivatives with a rectangle kernel of width ``bandwidth``
(paper, section 4). The threshold is a plain parameter kept non-negative with ``relu`` at use,
as in SAELens (a log-parameterised threshold barely moves under Adam; SAELens issue #494).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import CoderConfig, SparseCoder
from .registry import register


def _rectangle(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """z * H(z - theta); d/dtheta ~ -(theta / eps) K((z - theta) / eps) (paper, eq. 11)."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = (z > theta).to(z.dtype) * grad
        grad_theta = (-(theta / eps) * _rectangle((z - theta) / eps) * grad).sum(0)
        return grad_z, grad_theta, None


class _Step(torch.autograd.Function):
    """H(z - theta); d/dtheta ~ -(1 / eps) K((z - theta) / eps) (paper, eq. 12)."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = (-(1.0 / eps) * _rectangle((z - theta) / eps) * grad).sum(0)
        return None, grad_theta, None


@register
class JumpReLUCoder(SparseCoder):
    arch = "jumprelu"
    saelens_arch = "jumprelu"
    saelens_transcoder_arch = "jumprelu_transcoder"

    def __init__(self, cfg: CoderConfig, generator: torch.Generator | None = None):
        super().__init__(cfg, generator)
        self.threshold = nn.Parameter(torch.full((cfg.width,), cfg.init_threshold))

    def activate(self, pre: Tensor) -> Tensor:
        return pre * (pre > self.threshold.relu()).to(pre.dtype)

    def train_codes(self, pre: Tensor, tv: Tensor) -> tuple[Tensor, Tensor]:
        theta = self.threshold.relu()
        codes = _JumpReLU.apply(pre, theta, self.cfg.bandwidth)
        l0 = _Step.apply(pre, theta, self.cfg.bandwidth).sum(1).mean()
        return codes, self.cfg.l0_coeff * l0

    def _fold_thresholds(self, output_scale: float) -> None:
        self.threshold.div_(output_scale)

    def saelens_state(self) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
        arch, tensors, extra = super().saelens_state()
        tensors["threshold"] = self.threshold.detach().relu()
        return arch, tensors, extra

    def load_saelens_tensors(self, tensors: dict[str, Tensor]) -> None:
        super().load_saelens_tensors(tensors)
        with torch.no_grad():
            self.threshold.copy_(tensors["threshold"])
