"""``across``: an analysis repeated over training checkpoints; per-layer curves and metrics by step."""

from __future__ import annotations

from ...runs import RunView
from ..blocks import Figure, Paragraph, Section, Table
from ..plots import Series, line_plot
from ..registry import register

PER_LAYER_FIRST = ("lens.logit.kl", "lens.tuned.kl")
MAX_PER_LAYER_FIGURES = 4
MAX_SCALAR_COLUMNS = 8
MAX_DRIFT_FIGURES = 3  # datasets
MAX_DRIFT_LINES = 8


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
    drift = data.get("probe_drift")
    if isinstance(drift, dict) and drift:
        blocks.extend(_drift_blocks(drift))
    return Section("Across training: the same analysis at each checkpoint", blocks)


def _drift_blocks(drift: dict) -> list:
    """Concept drift of the truth probes: per-layer cosine figures and a summary table."""
    blocks: list = [Paragraph(
        "Concept drift: for each pair of consecutive checkpoints, the cosine between their probes' "
        "directions per layer, and the accuracy of the earlier checkpoint's probe on the later "
        "checkpoint's test states beside the later checkpoint's own probe.")]
    rows = []
    for dataset, methods in list(drift.items())[:MAX_DRIFT_FIGURES]:
        lines = []
        for method, d in methods.items():
            for pair, cosine in zip(d["pairs"], d["cosine"]):
                if len(lines) < MAX_DRIFT_LINES:
                    lines.append(Series(f"{method} {pair}", d["layers"], _nan(cosine)))
        if lines:
            png = line_plot(lines, "layer (resid.i)", "cosine", log_y=False)
            blocks.append(Figure(png, alt=f"{dataset}: probe direction cosine by layer between checkpoints",
                                 caption=f"{dataset}: cosine between consecutive checkpoints' probe directions."))
    for dataset, methods in drift.items():
        for method, d in methods.items():
            keys = ("cosine", "previous_probe_accuracy", "own_probe_accuracy", "previous_probe_auroc",
                    "own_probe_auroc")
            for k, (pair, layer) in enumerate(zip(d["pairs"], d["best_layer"])):
                i = d["layers"].index(layer)
                rows.append([dataset, method, pair, layer, *(d[key][k][i] for key in keys)])
    if rows:
        blocks.append(Table(["dataset", "method", "checkpoints", "layer", "cosine", "earlier probe accuracy",
                             "own probe accuracy", "earlier probe AUROC", "own probe AUROC"], rows,
                            caption="At the later checkpoint's probe layer (chosen on its validation "
                                    "split); every layer is in metrics.json (across.probe_drift)."))
    return blocks


def _nan(values: list) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def _per_layer_keys(series: dict) -> list[str]:
    keys = [k for k, v in series.items() if any(isinstance(x, list) for x in v)]
    return [k for k in PER_LAYER_FIRST if k in keys] + [k for k in keys if k not in PER_LAYER_FIRST]
