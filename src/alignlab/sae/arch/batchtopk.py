"""BatchTopK (Bussmann et al. 2024): keep the ``k * N`` largest activations of a whole batch.

Rows share a budget of ``k`` active latents on average, so hard rows may use more. At inference
there is no batch, so the coder becomes a JumpReLU with one global threshold: an exponential
moving average of the smallest activation BatchTopK kept during training (as SAELens does,
which also saves BatchTopK coders as JumpReLU).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import CoderConfig, SparseCoder
from .registry import register

THRESHOLD_EMA = 0.01  # SAELens' topk_threshold_lr


@register
class BatchTopKCoder(SparseCoder):
    arch = "batchtopk"
    uses_k = True
    encoder_init_norm = 3**-0.5  # as TopK
    saelens_arch = "jumprelu"
    saelens_transcoder_arch = "jumprelu_transcoder"

    def __init__(self, cfg: CoderConfig, generator: torch.Generator | None = None):
        super().__init__(cfg, generator)
        # float64: the EMA of small values drifts in float32 (SAELens keeps it double too)
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64))

    def activate(self, pre: Tensor) -> Tensor:
        return pre * (pre > self.threshold.to(pre.dtype).clamp_min(0)).to(pre.dtype)

    def train_codes(self, pre: Tensor, tv: Tensor) -> tuple[Tensor, Tensor]:
        acts = pre.relu()
        flat = acts.reshape(-1)
        keep = min(self.cfg.k * pre.shape[0], flat.numel())
        values, idx = flat.topk(keep, sorted=False)
        codes = torch.zeros_like(flat).scatter(0, idx, values).reshape(acts.shape)  # (N, width)
        self._update_threshold(values)
        return codes, pre.new_zeros(())

    @torch.no_grad()
    def _update_threshold(self, kept: Tensor) -> None:
        positive = kept[kept > 0]
        if positive.numel():
            smallest = positive.min().to(torch.float64)
            self.threshold.mul_(1 - THRESHOLD_EMA).add_(THRESHOLD_EMA * smallest)

    def _fold_thresholds(self, output_scale: float) -> None:
        self.threshold.div_(output_scale)

    def saelens_state(self) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
        arch, tensors, extra = super().saelens_state()
        threshold = float(self.threshold.clamp_min(0))
        tensors["threshold"] = torch.full((self.width,), threshold, dtype=self.W_dec.dtype)
        return arch, tensors, extra

    def load_saelens_tensors(self, tensors: dict[str, Tensor]) -> None:
        super().load_saelens_tensors(tensors)
        with torch.no_grad():
            self.threshold.fill_(float(tensors["threshold"].max()))
