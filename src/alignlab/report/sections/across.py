"""``across``: an analysis repeated over training checkpoints; per-layer curves and metrics by step."""

from __future__ import annotations

from ...runs import RunView
from ..blocks import Figure, Paragraph, Section, Table
from ..plots import Series, line_plot
from ..registry import register

PER_LAYER_FIRST = ("lens.logit.kl", "lens.tuned.kl")
MAX_PER_LAYER_FIGURES = 4
MAX_SCALAR_COLUMNS = 8


@register("across", order=90)
def across_section(run: RunView, metrics: dict) -> Section | None:
    data = metrics.get("across")
    if not isinstance(data, dict) or not isinstance(data.get("series"), dict):
        return None
    checkpoints, series = data.get("checkpoints") or [], data["series"]
    blocks: list = [Paragraph(
        f"`alignlab {data.get('command', '?')}` run on {len(checkpoints)} checkpoints "
        f"({', '.join(checkpoints)}); each checkpoint's own run folder holds its full report."
    )]
    for key in _per_layer_keys(series)[:MAX_PER_LAYER_FIGURES]:
        lines = [Series(c, list(range(len(v))), v) for c, v in zip(checkpoints, series[key]) if v]
        png = line_plot(lines, "layer (resid.i)", key)
        blocks.append(Figure(png, alt=f"{key} against layer, one line per checkpoint",
                             caption=f"{key} by layer at each checkpoint."))
    scalars = [k for k, v in series.items() if all(x is None or isinstance(x, int | float) for x in v)]
    if scalars:
        shown = scalars[:MAX_SCALAR_COLUMNS]
        rows = [[c, *(series[k][i] for k in shown)] for i, c in enumerate(checkpoints)]
        blocks.append(Table(["checkpoint", *shown], rows,
                            caption=f"{len(shown)} of {len(scalars)} scalar metrics; all are in metrics.json."))
    return Section("Across training: the same analysis at each checkpoint", blocks)


def _per_layer_keys(series: dict) -> list[str]:
    keys = [k for k, v in series.items() if any(isinstance(x, list) for x in v)]
    return [k for k in PER_LAYER_FIRST if k in keys] + [k for k in keys if k not in PER_LAYER_FIRST]
