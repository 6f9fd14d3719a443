"""GPT-NeoX layout (Pythia): parallel attention and MLP, untied unembedding."""

from . import Family, register

GPT_NEOX = register(
    Family(
        name="gpt_neox",
        model_types=("gpt_neox",),
        blocks="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        attn="attention",
        mlp="mlp",
    )
)
