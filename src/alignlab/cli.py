"""The ``alignlab`` command: a thin edge over the library.

It parses into the same typed configs the library takes (one per verb, from the registry in
``alignlab.commands``), prints, and is the only place that exits: a library error becomes one
``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .config import add_config_arguments, config_from_namespace
from .errors import AlignlabError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error:`` line too."""

    def error(self, message: str):
        raise AlignlabError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    from .commands import COMMANDS

    parser = _Parser(
        prog="alignlab",
        description="alignlab: lenses, probes, sparse dictionaries and agent sandboxes for "
        "empirical alignment research. Every computing command writes a run folder.",
    )
    parser.add_argument("--version", action="version", version=f"alignlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    top = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, cmd in COMMANDS.items():
        words = name.split()
        sub = top
        if len(words) == 2:
            if words[0] not in groups:
                group = top.add_parser(words[0], help=f"{words[0]} commands")
                group.set_defaults(command=None, group_parser=group)
                groups[words[0]] = group.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
            sub = groups[words[0]]
        verb = sub.add_parser(words[-1], help=cmd.help, description=cmd.help)
        if cmd.config_cls is not None:
            add_config_arguments(verb, cmd.config_cls)
        verb.set_defaults(command=name)
    return parser


def _quiet_libraries() -> None:
    """Library chatter off; load progress bars only where a person watches a terminal."""
    quiet = not sys.stderr.isatty()
    if quiet:  # read by tqdm when it is first imported: set before transformers imports it
        os.environ.setdefault("TQDM_DISABLE", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if quiet:
        transformers.utils.logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    from .commands import COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        _quiet_libraries()
        parser = build_parser()
        ns = parser.parse_args(argv)
        name = getattr(ns, "command", None)
        if name is None:
            (getattr(ns, "group_parser", None) or parser).print_help()
            return EXIT_USAGE
        cmd = COMMANDS[name]
        config = config_from_namespace(cmd.config_cls, ns) if cmd.config_cls else None
        return cmd.run(config, Console(highlight=False))
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
