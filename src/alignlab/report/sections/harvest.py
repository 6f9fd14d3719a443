"""``harvest``: what went into the activation store, and the residual norm across depth."""

from __future__ import annotations

import json

from ...runs import RunView
from ..blocks import Figure, Paragraph, Section, Table
from ..plots import Series, line_plot
from ..registry import register

PER_LAYER_KEYS = ("resid_norm_mean", "resid_norm_mean_excl_first")
CELL_CHARS = 300  # a nested value longer than this is cut short in the summary table


@register("harvest", order=20)
def harvest_section(run: RunView, metrics: dict) -> Section | None:
    data = metrics.get("harvest")
    if not isinstance(data, dict):
        return None
    blocks: list = [Paragraph(
        "The activation store this run harvested. resid_norm_mean is the mean L2 norm of the "
        "residual stream after each block over every harvested token; "
        "resid_norm_mean_excl_first leaves out each sequence's first position, whose residual "
        "is often far larger than the rest (an attention sink), so the two lines differ where "
        "that happens."
    )]
    per_layer = {k: data[k] for k in PER_LAYER_KEYS if isinstance(data.get(k), list)}
    if per_layer:
        blocks += [_norm_figure(per_layer), _per_layer_table(per_layer)]
    rest = {k: v for k, v in data.items() if k not in per_layer}
    if rest:
        blocks.append(_summary_table(rest))
    return Section("Harvest: activation store statistics", blocks)


def _norm_figure(per_layer: dict[str, list]) -> Figure:
    series = [Series(key, list(range(len(values))), [float("nan") if v is None else v for v in values])
              for key, values in per_layer.items()]
    png = line_plot(series, "layer (resid.i: after block i; 0 = embedding)", "mean residual L2 norm")
    return Figure(png, alt="mean residual stream norm against layer, with and without the first position",
                  caption="Mean residual norm by layer over the harvested tokens.")


def _per_layer_table(per_layer: dict[str, list]) -> Table:
    n_layers = max(len(values) for values in per_layer.values())
    rows = [[f"resid.{i}", *(v[i] if i < len(v) else None for v in per_layer.values())]
            for i in range(n_layers)]
    return Table(["site", *per_layer], rows)


def _summary_table(rest: dict) -> Table:
    return Table(["statistic", "value"], [[key, _cell(value)] for key, value in rest.items()])


def _cell(value):
    if value is None or isinstance(value, str | int | float):
        return value
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > CELL_CHARS:
        text = text[:CELL_CHARS] + f"… ({len(text)} characters; the whole value is in metrics.json)"
    return text
