"""Llama layout, shared by Mistral and Qwen2 (pre-norm RMSNorm blocks, untied or tied lm_head)."""

from . import Family, register

LLAMA = register(
    Family(
        name="llama",
        model_types=("llama", "mistral", "qwen2"),
        blocks="model.layers",
        final_norm="model.norm",
        attn="self_attn",
        mlp="mlp",
    )
)
