"""``lens train`` and ``lens eval``: the logit lens and the tuned lens, scored layer by layer."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..lens.pipeline import LensEvalConfig, LensTrainConfig
from .registry import command


@command("lens train", "train a tuned lens and score it against the logit lens on held-out text",
         LensTrainConfig, computes=True)
def run_lens_train(config: LensTrainConfig, console: Console) -> int:
    from ..lens.pipeline import run_lens_train as train

    run = train(config, log=lambda msg: console.print(msg, soft_wrap=True))
    console.print(_kl_table(run.read_metrics()["lens"]))
    console.print(f"wrote {run.path}/metrics.json, lens in {run.path}/lens")
    return 0


@command("lens eval", "score the logit lens (and a saved tuned lens) layer by layer on held-out text",
         LensEvalConfig, computes=True)
def run_lens_eval(config: LensEvalConfig, console: Console) -> int:
    from ..lens.pipeline import run_lens_eval as evaluate

    run = evaluate(config, log=lambda msg: console.print(msg, soft_wrap=True))
    console.print(_kl_table(run.read_metrics()["lens"]))
    console.print(f"wrote {run.path}/metrics.json")
    return 0


def _kl_table(metrics: dict) -> Table:
    names = [n for n in ("logit", "tuned", "cold") if n in metrics]
    table = Table(title=f"{metrics['model']}: held-out KL(final || lens), nats "
                        f"({metrics['n_tokens']} positions)")
    table.add_column("site")
    for name in names:
        table.add_column(f"{name} KL", justify="right")
        table.add_column(f"{name} top-1", justify="right")
    for i, site in enumerate(metrics["sites"]):
        cells = []
        for name in names:
            cells += [f"{metrics[name]['kl'][i]:.3f}", f"{metrics[name]['top1_agreement'][i]:.2f}"]
        table.add_row(site, *cells)
    return table
