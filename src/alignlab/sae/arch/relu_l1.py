"""ReLU with an L1 penalty (Bricken et al. 2023; Anthropic's April 2024 update).

The penalty is ``l1_coeff * sum_i f_i ||W_dec,i||`` per row, divided by the same total variance
as the reconstruction error, so ``l1_coeff`` is in Anthropic's units (inputs scaled to
E||x||^2 = d_in; they use 5). Decoder rows are unit-norm, so the norm factor is 1 during
training; it is kept so the penalty means the same for an imported coder.
"""

from __future__ import annotations

from torch import Tensor

from .base import SparseCoder
from .registry import register


@register
class ReluL1Coder(SparseCoder):
    arch = "relu_l1"
    saelens_arch = "standard"
    saelens_transcoder_arch = "transcoder"

    def activate(self, pre: Tensor) -> Tensor:
        return pre.relu()

    def train_codes(self, pre: Tensor, tv: Tensor) -> tuple[Tensor, Tensor]:
        codes = pre.relu()  # (N, width)
        l1 = (codes * self.W_dec.norm(dim=1)).sum()
        return codes, self.cfg.l1_coeff * l1 / tv
