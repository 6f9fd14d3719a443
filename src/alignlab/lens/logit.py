"""The logit lens (nostalgebraist 2020): decode each layer's residual with the model's own head.

``logits = W_U · final_norm(resid.i)``, with the final norm recomputed on ``resid.i`` itself.
(TransformerLens once reused the last layer's normalisation scale for every layer, which
decodes early layers at the wrong scale; recomputing per layer is what the model would do if
the remaining blocks were skipped.)

Every lens here is a map ``transform(h, layer)`` from ``resid.layer`` to a residual the
unembedding can read; the logit lens's map is the identity.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from ..models import Anatomy


class Lens(Protocol):
    """Anything that maps ``resid.layer`` (..., d) to a residual for the unembedding."""

    name: str

    def transform(self, h: Tensor, layer: int) -> Tensor: ...


class LogitLens:
    """The identity map: ``resid.i`` goes straight into the final norm and the unembedding."""

    name = "logit"

    def transform(self, h: Tensor, layer: int) -> Tensor:
        return h


def lens_logits(anatomy: Anatomy, lens: Lens, h: Tensor, layer: int) -> Tensor:
    """Logits (..., vocab) that ``lens`` reads from ``resid.layer`` ``h`` (..., d)."""
    return unembed(anatomy, lens.transform(h, layer))


def unembed(anatomy: Anatomy, h: Tensor) -> Tensor:
    """``W_U · final_norm(h)`` (..., vocab) in float32, the norm on ``h``'s own statistics."""
    weight = anatomy.unembedding.weight
    return anatomy.unembed(h.to(weight.dtype)).float()
