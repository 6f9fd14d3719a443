"""GPT-2 layout: learned positions added to the token embedding before block 0."""

from . import Family, register

GPT2 = register(
    Family(
        name="gpt2",
        model_types=("gpt2",),
        blocks="transformer.h",
        final_norm="transformer.ln_f",
        attn="attn",
        mlp="mlp",
    )
)
