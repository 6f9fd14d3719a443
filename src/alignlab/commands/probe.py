"""``probe``: truth probes on hidden states, every method and layer, with controls."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..probes.run import ProbeConfig
from .registry import command


@command("probe", "fit truth probes (lr, mean-diff, lda, ccs, eigen, random) on every layer, "
         "with baseline, controls, causal check and transfer", ProbeConfig, computes=True)
def run_probe(config: ProbeConfig, console: Console) -> int:
    from ..probes.run import probe_run

    results, run = probe_run(config, log=lambda msg: console.print(msg, soft_wrap=True))
    metrics = results.to_metrics()["probe"]
    for name in results.datasets:
        console.print(_dataset_table(name, metrics[name]))
    if run is not None:
        console.print(f"wrote {run.path}/metrics.json, probes in {run.path}/probes")
    return 0


def _dataset_table(name: str, data: dict) -> Table:
    summary = data["dataset"]
    splits = summary["probe_splits"]
    table = Table(title=f"{name}: {summary['probe_rows']} statements ({splits['train']} train, "
                        f"{splits['val']} val, {splits['test']} test), pairs: {data['pairs']}; test "
                        "accuracy and AUROC at the layer chosen on validation")
    for column in ("method", "layer", "accuracy", "AUROC [95% CI]", "ECE"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method, m in data.items():
        if not isinstance(m, dict) or "best" not in m:
            continue
        b = m["best"]
        table.add_row(method, str(b["layer"]), _f(b["accuracy"]),
                      f"{_f(b['auroc'])} [{_f(b['auroc_ci_low'])}, {_f(b['auroc_ci_high'])}]", _f(b["ece"]))
    if "lm_baseline" in data:
        b = data["lm_baseline"]
        table.add_row("model says (zero-shot)", "-", _f(b["accuracy"]),
                      f"{_f(b['auroc'])} [{_f(b['auroc_ci_low'])}, {_f(b['auroc_ci_high'])}]", _f(b["ece"]))
    return table


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"
