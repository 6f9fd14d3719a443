"""Anatomy: the named parts of a causal LM, and ``unembed(h)`` from any residual."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ModelError
from .families import Family, family_for, supported_model_types


def _get(root: nn.Module, dotted: str) -> nn.Module:
    module = root
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


@dataclass
class Anatomy:
    """The parts every tool needs, resolved once for one loaded model."""

    family: Family
    embed: nn.Module
    blocks: nn.ModuleList
    final_norm: nn.Module
    unembedding: nn.Linear

    @classmethod
    def of(cls, model: nn.Module) -> Anatomy:
        model_type = getattr(model.config, "model_type", None)
        family = family_for(model_type)
        if family is None:
            raise ModelError(
                f"model family {model_type!r} is not supported; supported: "
                f"{', '.join(supported_model_types())}. Add a table in alignlab/models/families/"
            )
        return cls(
            family=family,
            embed=model.get_input_embeddings(),
            blocks=_get(model, family.blocks),
            final_norm=_get(model, family.final_norm),
            unembedding=model.get_output_embeddings(),
        )

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return self.unembedding.in_features

    @property
    def d_vocab(self) -> int:
        return self.unembedding.out_features

    def attn(self, layer: int) -> nn.Module:
        return _get(self.blocks[layer], self.family.attn)

    def mlp(self, layer: int) -> nn.Module:
        return _get(self.blocks[layer], self.family.mlp)

    def unembed(self, h: Tensor) -> Tensor:
        """Logits from a residual ``h`` (..., d_model): the final norm on ``h`` itself, then W_U."""
        return self.unembedding(self.final_norm(h))

    def unembedding_hash(self) -> str:
        """sha256 of W_U (and bias) in float32: artifacts record it to refuse the wrong model.

        Cached until the weight tensor is replaced or modified in place (its version counter).
        """
        weight = self.unembedding.weight
        key = (weight.data_ptr(), weight._version, weight.dtype)
        cached = self.__dict__.get("_hash_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        value = self._compute_unembedding_hash()
        self.__dict__["_hash_cache"] = (key, value)
        return value

    def _compute_unembedding_hash(self) -> str:
        digest = hashlib.sha256()
        weight = self.unembedding.weight.detach().to("cpu", torch.float32).contiguous()
        digest.update(weight.numpy().tobytes())
        if self.unembedding.bias is not None:
            digest.update(self.unembedding.bias.detach().to("cpu", torch.float32).numpy().tobytes())
        return digest.hexdigest()
