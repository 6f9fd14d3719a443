"""The ``alignlab`` command: a thin edge over the library.

It parses into the same typed configs the library takes, prints, and is the only place that
exits: a library error becomes one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .config import add_config_arguments, config_from_namespace, config_to_dict
from .errors import AlignlabError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error:`` line too."""

    def error(self, message: str):  # noqa: D401  (argparse API)
        raise AlignlabError(f"{message} (see `{self.prog} --help`)")


def _console():
    from rich.console import Console

    return Console(highlight=False)


# --- commands -----------------------------------------------------------------------------


def cmd_models(_ns) -> int:
    from rich.table import Table

    from .models import BUILTIN, EMBEDDED_DEFAULT, supported_model_types

    table = Table(title="built-in models")
    for column in ("name", "kind", "installed", "description"):
        table.add_column(column)
    for entry in BUILTIN.values():
        installed = "yes" if entry.installed() else f"no ({entry.install_hint})"
        name = entry.name + (" (default)" if entry.name == EMBEDDED_DEFAULT else "")
        table.add_row(name, entry.kind, installed, entry.summary)
    console = _console()
    console.print(table)
    console.print(
        "Also loadable: a hub id (e.g. EleutherAI/pythia-70m, downloaded only when named), "
        "a local model folder, or a .gguf file.\n"
        f"Supported families: {', '.join(supported_model_types())}."
    )
    return 0


def cmd_inspect(ns) -> int:
    from .firstlook import InspectConfig, inspect_prompt
    from .models import load_model
    from .runs import ensure_writable_dir, start_run

    config = config_from_namespace(InspectConfig, ns)
    if config.out:
        ensure_writable_dir(config.out)  # fail before the slow model load
    lm = load_model(config.model, revision=config.revision, dtype=config.dtype)
    readouts = [inspect_prompt(lm, p, config.sites, config.top_k) for p in config.prompt]
    console = _console()
    for readout in readouts:
        console.print(_inspect_table(readout))
    if config.out:
        run = start_run(config.out, "inspect", config_to_dict(config))
        run.write_metrics({"inspect": {"model": lm.spec, "prompts": [r.to_json() for r in readouts]}})
        console.print(f"wrote {run.path}/metrics.json")
    return 0


def _inspect_table(readout):
    from rich.table import Table

    table = Table(title=f"{readout.prompt!r}  ({readout.n_tokens} tokens; last position)")
    table.add_column("site")
    table.add_column("norm", justify="right")
    table.add_column("logit lens: top tokens (prob)")
    for row in readout.rows:
        tops = "  ".join(f"{t!r} {p:.2f}" for t, p in zip(row.top_tokens, row.top_probs))
        table.add_row(row.site, f"{row.norm:.1f}", tops)
    model_tops = "  ".join(f"{t!r} {p:.2f}" for t, p in zip(readout.model_top_tokens, readout.model_top_probs))
    table.add_row("model", "", model_tops)
    return table


def cmd_demo(ns) -> int:
    from .demo import DemoConfig, run_demo

    config = config_from_namespace(DemoConfig, ns)
    console = _console()
    run = run_demo(config, log=lambda msg: console.print(msg))
    console.print(f"demo written to {run.path} (metrics.json)")
    return 0


# --- parser -------------------------------------------------------------------------------


def _add(sub, name: str, func: Callable, help: str, config_cls: type | None = None):
    parser = sub.add_parser(name, help=help, description=help)
    if config_cls is not None:
        add_config_arguments(parser, config_cls)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from .demo import DemoConfig
    from .firstlook import InspectConfig

    parser = _Parser(
        prog="alignlab",
        description="alignlab: lenses, probes, sparse dictionaries and agent sandboxes for "
        "empirical alignment research. Every computing command writes a run folder.",
    )
    parser.add_argument("--version", action="version", version=f"alignlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    _add(sub, "models", cmd_models, "list the built-in models and which are installed")
    _add(sub, "inspect", cmd_inspect,
         "per-layer residual norm and logit-lens top tokens at a prompt's last position",
         InspectConfig)
    _add(sub, "demo", cmd_demo, "run every section on the embedded default model", DemoConfig)
    return parser


def _quiet_libraries() -> None:
    """Library chatter off; load progress bars only where a person watches a terminal."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()
        os.environ.setdefault("TQDM_DISABLE", "1")  # gguf dequantisation has its own tqdm


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        _quiet_libraries()
        parser = build_parser()
        ns = parser.parse_args(argv)
        if not hasattr(ns, "func"):
            parser.print_help()
            return EXIT_USAGE
        return ns.func(ns)
    except AlignlabError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
