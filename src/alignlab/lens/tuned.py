"""The tuned lens (Belrose et al. 2023): one affine translator per layer before the unembedding.

Layer ``i``'s translator maps ``resid.i`` to ``h + A_i h + b_i``. ``A_i`` and ``b_i`` start at
zero, so an untrained tuned lens *is* the logit lens, and weight decay pulls it back towards
the logit lens rather than towards a zero map (the residual form of the tuned-lens package's
``TunedLens.transform_hidden``). There are ``L`` translators, for ``resid.0 .. resid.{L-1}``;
``resid.L`` needs none, since the model's own head reads it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models import LoadedModel


class TunedLens(nn.Module):
    """``L`` affine translators, ``nn.Linear(d, d)`` each, applied residually."""

    name = "tuned"

    def __init__(self, n_layers: int, d_model: int, model_info: dict | None = None):
        super().__init__()
        if n_layers < 1 or d_model < 1:
            raise ConfigError(f"a tuned lens needs n_layers, d_model >= 1, got {n_layers}, {d_model}")
        # One module per layer, not one stacked (L, d, d) tensor: indexing a stacked parameter
        # makes every layer's backward pass write a zero-filled gradient for all L layers.
        self.translators = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers))
        with torch.no_grad():
            for translator in self.translators:
                translator.weight.zero_()
                translator.bias.zero_()
        self.model_info = dict(model_info or {})  # LoadedModel.describe() of the model it reads

    @classmethod
    def for_model(cls, lm: LoadedModel) -> TunedLens:
        """A zero-initialised lens (equal to the logit lens) for ``lm``."""
        return cls(lm.n_layers, lm.d_model, model_info(lm)).to(lm.device)

    @property
    def n_layers(self) -> int:
        return len(self.translators)

    @property
    def d_model(self) -> int:
        return self.translators[0].in_features

    @property
    def device(self) -> torch.device:
        return self.translators[0].weight.device

    def transform(self, h: Tensor, layer: int) -> Tensor:
        """``h + A_layer h + b_layer`` for ``h`` (..., d) read at ``resid.layer``."""
        if not 0 <= layer < self.n_layers:
            raise ConfigError(f"layer {layer} has no translator; this lens has 0..{self.n_layers - 1}")
        translator = self.translators[layer]
        h = h.to(translator.weight.dtype)
        return h + translator(h)

    def stacked(self) -> tuple[Tensor, Tensor]:
        """All translators as one weight (L, d_out, d_in) and one bias (L, d), detached."""
        weight = torch.stack([t.weight.detach() for t in self.translators])
        return weight, torch.stack([t.bias.detach() for t in self.translators])

    @torch.no_grad()
    def load_stacked(self, weight: Tensor, bias: Tensor) -> None:
        for i, translator in enumerate(self.translators):
            translator.weight.copy_(weight[i])
            translator.bias.copy_(bias[i])


def model_info(lm: LoadedModel) -> dict:
    """What a lens records about its model: ``describe()`` plus the tuned-lens package's hash."""
    return {**lm.describe(), "tuned_lens_unembed_hash": peer_unembed_hash(lm)}


def peer_unembed_hash(lm: LoadedModel) -> str:
    """The tuned-lens package's ``Unembed.unembedding_hash``: sha256 of ``np.array_str``.

    Their ``tensor_hash`` prints the matrix at one decimal (numpy elides all but the corners
    of a large one) and hashes the text, so it survives dtype changes; reproduced here so an
    exported lens carries the hash the package checks.
    """
    weight = lm.anatomy.unembedding.weight.detach().to("cpu", torch.float32).numpy()
    return hashlib.sha256(str.encode(np.array_str(weight, precision=1))).hexdigest()
