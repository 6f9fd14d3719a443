"""``models``, ``inspect`` and ``demo``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..config import config_to_dict
from ..demo import DemoConfig
from ..firstlook import InspectConfig, PromptReadout
from .registry import command


@command("models", "list the built-in models and which are installed")
def run_models(_config, console: Console) -> int:
    from ..models import BUILTIN, EMBEDDED_DEFAULT, supported_model_types

    table = Table(title="built-in models")
    for column in ("name", "kind", "installed", "description"):
        table.add_column(column)
    for entry in BUILTIN.values():
        installed = "yes" if entry.installed() else f"no ({entry.install_hint})"
        name = entry.name + (" (default)" if entry.name == EMBEDDED_DEFAULT else "")
        table.add_row(name, entry.kind, installed, entry.summary)
    console.print(table)
    console.print(
        "Also loadable: a hub id (e.g. EleutherAI/pythia-70m, downloaded only when named), "
        "a local model folder, or a .gguf file.\n"
        f"Supported families: {', '.join(supported_model_types())}."
    )
    return 0


@command(
    "inspect",
    "per-layer residual norm and logit-lens top tokens at a prompt's last position",
    InspectConfig,
    computes=True,
)
def run_inspect(config: InspectConfig, console: Console) -> int:
    from ..firstlook import inspect_prompt
    from ..models import load_model
    from ..runs import ensure_writable_dir, start_run

    if config.out:
        ensure_writable_dir(config.out)  # fail before the slow model load
    lm = load_model(config.model, revision=config.revision, dtype=config.dtype)
    readouts = [inspect_prompt(lm, p, config.sites, config.top_k) for p in config.prompt]
    for readout in readouts:
        console.print(_inspect_table(readout))
    if config.out:
        run = start_run(config.out, "inspect", config_to_dict(config))
        run.finish({"inspect": {"model": lm.spec, "prompts": [r.to_json() for r in readouts]}})
        console.print(f"wrote {run.path}/metrics.json")
    return 0


def _tops(tokens: list[str], probs: list[float]) -> str:
    return "  ".join(f"{t!r} {p:.2f}" for t, p in zip(tokens, probs))


def _inspect_table(readout: PromptReadout) -> Table:
    table = Table(title=f"{readout.prompt!r}  ({readout.n_tokens} tokens; last position)")
    table.add_column("site")
    table.add_column("norm", justify="right")
    table.add_column("logit lens: top tokens (prob)")
    for row in readout.rows:
        table.add_row(row.site, f"{row.norm:.1f}", _tops(row.top_tokens, row.top_probs))
    table.add_row("model", "", _tops(readout.model_top_tokens, readout.model_top_probs))
    return table


@command("demo", "run every section on the embedded default model into one run folder", DemoConfig, computes=True)
def run_demo_command(config: DemoConfig, console: Console) -> int:
    from ..demo import run_demo

    run = run_demo(config, log=lambda msg: console.print(msg))
    console.print(f"demo written to {run.path} (metrics.json)")
    return 0
