"""``sae train``, ``sae eval``, ``sae export``, ``sae browse``."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console

from ..sae import report_section  # noqa: F401  (registers the report section)
from ..sae.config import SaeBrowseConfig, SaeEvalConfig, SaeExportConfig, SaeTrainConfig
from .registry import command


@contextmanager
def _progress(console: Console, enabled: bool):
    """A progress bar with FVU, L0 and dead fraction, only where a person watches a terminal."""
    if not enabled or not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[stats]}"), console=console, transient=True) as bar:
        task = bar.add_task("train", total=None, stats="")

        def on_step(report) -> None:
            stats = "  ".join(f"{name}: FVU {s.fvu:.3f} L0 {s.l0:.1f} dead {s.dead_fraction:.1%}"
                              for name, s in report.stats.items())
            bar.update(task, completed=report.step, total=report.n_steps, stats=stats)

        yield on_step


@command("sae train", "train sparse autoencoders or transcoders (from a store or on the fly)",
         SaeTrainConfig, computes=True)
def run_sae_train(config: SaeTrainConfig, console: Console) -> int:
    from ..sae import distributed
    from ..sae.pipeline import train_run

    main = distributed.init_from_env().is_main
    log = (lambda msg: console.print(msg)) if main else (lambda msg: None)
    with _progress(console, main) as on_step:
        run = train_run(config, log=log, on_step=on_step)
    if run is not None:
        console.print(f"wrote {run.path}/metrics.json")
    return 0


@command("sae eval", "reconstruction and downstream metrics of saved SAEs", SaeEvalConfig, computes=True)
def run_sae_eval(config: SaeEvalConfig, console: Console) -> int:
    from ..sae.pipeline import eval_run

    run = eval_run(config, log=lambda msg: console.print(msg))
    console.print(f"wrote {run.path}/metrics.json")
    return 0


@command("sae export", "write an SAE folder in SAELens' layout (or alignlab's)", SaeExportConfig)
def run_sae_export(config: SaeExportConfig, console: Console) -> int:
    from ..sae.pipeline import export_coder

    out = export_coder(config)
    console.print(f"wrote {config.format} SAE folder {out}")
    return 0


@command("sae browse", "write feature browser pages for the SAEs of a run", SaeBrowseConfig)
def run_sae_browse(config: SaeBrowseConfig, console: Console) -> int:
    from ..sae.pipeline import browse_run

    browse_run(config, log=lambda msg: console.print(msg))
    return 0
