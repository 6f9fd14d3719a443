"""Per-family module paths: one small table per family, looked up by ``config.model_type``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """Where the parts of one model family live, as dotted paths from the CausalLM root.

    Embedding and unembedding come from HF's own ``get_input_embeddings`` /
    ``get_output_embeddings``, which follow renames across transformers versions.
    """

    name: str
    model_types: tuple[str, ...]  # HF ``config.model_type`` values with this layout
    blocks: str  # ModuleList of transformer blocks
    final_norm: str  # norm applied after the last block
    attn: str  # attention module, relative to a block
    mlp: str  # MLP module, relative to a block


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    for model_type in family.model_types:
        if model_type in _FAMILIES:
            raise ValueError(f"model_type {model_type!r} is already registered")
        _FAMILIES[model_type] = family
    return family


def family_for(model_type: str) -> Family | None:
    return _FAMILIES.get(model_type)


def supported_model_types() -> list[str]:
    return sorted(_FAMILIES)


from . import gpt2, gptneox, llama  # noqa: E402,F401  (each file registers its table)
