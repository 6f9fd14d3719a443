"""The ``sae`` report section: per coder, its metrics and where its feature browser is.

Registered with :func:`alignlab.report.register` on import (``alignlab.commands.sae`` imports
it, so every CLI process has it).
"""

from __future__ import annotations

from ..report import Figure, Paragraph, Section, Table, register
from ..report.plots import Series, line_plot
from ..runs import RunView

# (metrics key, column title) in the order shown
COLUMNS = [
    ("arch", "arch"), ("width", "width"), ("k", "k"), ("fvu", "FVU"),
    ("fvu_all_positions", "FVU (all positions)"), ("explained_variance", "explained var."),
    ("l0", "L0"), ("dead_fraction", "dead"), ("dense_fraction", "dense"), ("cosine", "cosine"),
    ("shrinkage", "shrinkage"), ("ce_loss_clean", "CE clean"), ("ce_loss", "CE spliced"),
    ("ce_loss_zero_ablation", "CE zero-abl."), ("loss_recovered", "loss recovered"), ("kl", "KL"),
]


@register("sae", claims=("sae", "sae_train"), order=60)
def sae_section(run: RunView, metrics: dict) -> Section | None:
    coders = metrics.get("sae")
    if not isinstance(coders, dict) or not coders:
        return None
    blocks: list = [Paragraph(
        "Sparse coders, measured on held-out tokens. FVU is the fraction of variance unexplained "
        "about the mean, over tokens that are not attention sinks (each sequence's first position "
        "and tokens whose norm is far above the median); 'FVU (all positions)' counts them too. "
        "L0 is the mean number of active latents per token; dead latents never fired, dense ones "
        "fired on more than 10% of tokens. CE is the model's next-token loss clean, with the "
        "reconstruction spliced in at the site, and with the site zero-ablated; loss recovered = "
        "(CE zero-abl. - CE spliced) / (CE zero-abl. - CE clean)."
    )]
    blocks.append(_metrics_table(coders))
    browsers = [(name, entry["browser"]) for name, entry in coders.items()
                if isinstance(entry, dict) and isinstance(entry.get("browser"), str)]
    for name, path in browsers:
        blocks.append(Paragraph(f"Feature browser for {name}: open {path} (relative to this report)."))
    training = metrics.get("sae_train")
    if isinstance(training, dict):
        blocks += _training_blocks(training, list(coders))
    return Section("Sparse autoencoders and transcoders", blocks)


def _metrics_table(coders: dict) -> Table:
    rows = []
    for name, entry in coders.items():
        if isinstance(entry, dict):
            rows.append([name, *(_cell(entry.get(key)) for key, _ in COLUMNS)])
    return Table(["coder", *(title for _, title in COLUMNS)], rows)


def _cell(value):
    return value if isinstance(value, str | int | float) and not isinstance(value, bool) else (
        None if value is None else str(value))


def _training_blocks(training: dict, names: list[str]) -> list:
    rows = [[key, _cell(training.get(key))] for key in (
        "model", "source", "tokens", "sink_tokens", "steps", "seconds", "tokens_per_second",
        "update_tokens_per_second") if key in training]
    blocks: list = [Table(["training", "value"], rows)]
    history = training.get("history")
    if isinstance(history, list) and len(history) > 1:
        series = [Series(name, [h["step"] for h in history if name in h],
                         [h[name]["fvu"] for h in history if name in h]) for name in names]
        series = [s for s in series if len(s.x) > 1]
        if series:
            png = line_plot(series, "step", "training FVU (batch)")
            blocks.append(Figure(png, alt="training FVU against step, one line per coder",
                                 caption="FVU of each training batch, sinks excluded."))
    return blocks
