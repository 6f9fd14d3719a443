"""The ``probe`` report section: AUROC by layer with intervals, transfer heatmaps, controls.

Registered with :func:`alignlab.report.register` when this module is imported; it reads only
``metrics["probe"]``, so ``alignlab report RUN`` rebuilds it from ``metrics.json``.
"""

from __future__ import annotations

from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from ..report.blocks import Figure, Heading, Paragraph, Section, Table
from ..report.plots import plot_text, png_bytes
from ..report.registry import register
from ..runs import RunView

NON_METHOD_KEYS = {"dataset", "pairs", "lm_baseline", "gap_recovered", "causal", "skipped"}


def methods_of(data: dict) -> list[str]:
    return [k for k, v in data.items() if k not in NON_METHOD_KEYS and isinstance(v, dict) and "auroc" in v]


def auroc_png(name: str, data: dict) -> bytes:
    """AUROC against layer, one line per method with its 95% band; the model's own answer dashed."""
    fig = MplFigure(figsize=(7.5, 3.8), dpi=100, layout="constrained")
    ax = fig.subplots()
    for method in methods_of(data):
        m = data[method]
        layers = m["layers"]
        ys = [v if v is not None else float("nan") for v in m["auroc"]]
        lo = [v if v is not None else float("nan") for v in m["auroc_ci_low"]]
        hi = [v if v is not None else float("nan") for v in m["auroc_ci_high"]]
        (line,) = ax.plot(layers, ys, marker="o", markersize=2.5, linewidth=1.4, label=plot_text(method))
        ax.fill_between(layers, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.plot([m["best_layer"]], [ys[layers.index(m["best_layer"])]], marker="*", markersize=9,
                color=line.get_color())
    base = data.get("lm_baseline")
    if isinstance(base, dict) and base.get("auroc") is not None:
        ax.axhline(base["auroc"], color="black", linestyle="--", linewidth=1, label="model's own answer")
    ax.axhline(0.5, color="grey", linewidth=0.6)
    ax.set_ylim(0.3, 1.01)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (resid.i)")
    ax.set_ylabel("test AUROC")
    ax.set_title(plot_text(f"{name}: AUROC by layer (bands: 95% bootstrap; star: layer chosen on validation)", 90),
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return png_bytes(fig)


def transfer_png(transfer: dict) -> bytes:
    """One heatmap per method: rows train on, columns test on (accuracy)."""
    methods = list(transfer["methods"])
    names = [plot_text(n, 16) for n in transfer["datasets"]]
    cols = min(3, len(methods))
    rows = -(-len(methods) // cols)
    fig = MplFigure(figsize=(3.3 * cols + 0.8, 3.1 * rows), dpi=100, layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax in axes[len(methods):]:
        ax.set_axis_off()
    for ax, method in zip(axes, methods):
        acc = [[v if v is not None else float("nan") for v in row] for row in transfer["methods"][method]["accuracy"]]
        image = ax.imshow(acc, vmin=0.0, vmax=1.0, cmap="viridis")
        for i, row in enumerate(acc):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(plot_text(method), fontsize=9)
        ax.set_xlabel("tested on", fontsize=8)
        ax.set_ylabel("trained on", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="accuracy")
    return png_bytes(fig)


def _results_table(data: dict) -> Table:
    gap = data.get("gap_recovered") or {}
    rows = []
    for method in methods_of(data):
        b = data[method]["best"]
        rows.append([method, b["layer"], b["accuracy"], b["auroc"], b["auroc_ci_low"], b["auroc_ci_high"],
                     b["ece"], gap.get(method)])
    base = data.get("lm_baseline")
    if isinstance(base, dict):
        rows.append(["model's own answer (zero-shot)", None, base.get("accuracy"), base.get("auroc"),
                     base.get("auroc_ci_low"), base.get("auroc_ci_high"), base.get("ece"), None])
    return Table(["method", "layer", "accuracy", "AUROC", "CI low", "CI high", "ECE", "gap recovered"], rows,
                 caption="Test split, at the layer chosen on validation. Gap recovered: (AUROC - model's "
                         "own AUROC) / (supervised ceiling - model's own AUROC).")


def _controls_table(controls: dict) -> Table:
    rows = []
    for method, c in (controls.get("shuffled_labels") or {}).items():
        rows.append(["shuffled labels", method, f"test AUROC {_f(c.get('auroc'))} (expect ~0.5)"])
    rd = controls.get("random_directions") or {}
    for method, above in (rd.get("above_p95_at_best_layer") or {}).items():
        rows.append(["random directions", method, f"above the random 95th percentile at its layer: {above}"])
    for method, checks in (controls.get("distractor") or {}).items():
        for c in checks.values():
            if isinstance(c, dict):
                rows.append([f"distractor x{c['ratio']:g} truth", method,
                             f"found {c['found']} (truth |AUROC-0.5| {_f(c['truth_auroc_distance'])}, "
                             f"distractor {_f(c['distractor_auroc_distance'])})"])
    held = controls.get("held_out_templates") or {}
    for method, c in held.items():
        if isinstance(c, dict):
            rows.append(["held-out templates", method,
                         f"accuracy {_f(c['held_out_accuracy'])} on templates {c['held_out_templates']} "
                         f"vs {_f(c['same_template_accuracy'])} on the fitted ones"])
    for method, c in (controls.get("likelihood") or {}).items():
        rows.append(["likelihood", method, f"log-prob AUROC {_f(c['logprob_auroc'])}, r(probe, log-prob) "
                                           f"{_f(c['correlation'])}, AUROC with log-prob removed {_f(c['partial_auroc'])}"])
    return Table(["control", "method", "result"], rows)


def _causal_table(causal: dict) -> Table:
    rows = [[m, c["layer"], c["alpha"], c["p_true_base"], c["p_true_plus"], c["p_true_minus"]]
            for m, c in causal.items()]
    return Table(["direction of", "layer", "alpha", "P(True)", "P(True), +alpha u", "P(True), -alpha u"], rows,
                 caption="Zero-shot P(True) on test statements, the probe direction added at its layer.")


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


@register("probe", order=40)
def probe_section(run: RunView, metrics: dict) -> Section | None:
    data = metrics.get("probe")
    if not isinstance(data, dict) or not data.get("datasets"):
        return None
    blocks: list = [Paragraph(
        f"Model {data.get('model', {}).get('model', '?')}. Linear truth probes on each layer's "
        "last-token residual, fitted on the train split; hyperparameters, sign, calibration and the "
        "reported layer are chosen on validation; everything below is on the test split. "
        "CCS and eigen see only contrast pairs (no labels, except to fix the sign).")]
    for name in data["datasets"]:
        d = data[name]
        s = d.get("dataset", {})
        blocks.append(Heading(f"{name} ({s.get('probe_rows', '?')} statements probed of {s.get('rows', '?')} "
                              f"rows; source: {s.get('source', '?')}; licence: {s.get('licence', '?')})"))
        if methods_of(d):
            blocks.append(Figure(auroc_png(name, d), alt=f"test AUROC against layer for each probe method on {name}",
                                 caption="Test AUROC by layer with 95% bootstrap intervals."))
            blocks.append(_results_table(d))
        controls = (data.get("controls") or {}).get(name)
        if controls:
            blocks.append(_controls_table(controls))
        if d.get("causal"):
            blocks.append(_causal_table(d["causal"]))
    transfer = data.get("transfer")
    if isinstance(transfer, dict) and transfer.get("methods"):
        blocks.append(Heading("Transfer: trained on one dataset, tested on another"))
        blocks.append(Figure(transfer_png(transfer), alt="heatmaps of test accuracy, train dataset by test dataset",
                             caption="Each probe at the layer chosen on its own training dataset's validation split."))
    return Section("Truth probes", blocks)
