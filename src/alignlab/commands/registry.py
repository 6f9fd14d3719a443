"""The command registry: each verb is a typed config plus a function that runs it.

Feature packages declare their verbs in ``alignlab/commands/<group>.py`` with :func:`command`;
``cli.py`` builds the parser from this registry (so choices never drift from the code), and
``alignlab rerun RUN`` rebuilds a config from ``config.json`` and runs the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console


@dataclass(frozen=True)
class Command:
    name: str  # "inspect", or "store verify" for a sub-verb
    help: str  # one line, shown by --help
    run: Callable[[Any, Console], int]  # (config, console) -> exit status
    config_cls: type | None = None  # dataclass parsed from the command line
    computes: bool = False  # writes a run folder that `alignlab rerun` can repeat


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, config_cls: type | None = None, computes: bool = False):
    """Decorator: register ``run(config, console) -> int`` as the verb ``name``."""

    def register(run: Callable[[Any, Console], int]):
        if name in COMMANDS:
            raise ValueError(f"command {name!r} is registered twice")
        COMMANDS[name] = Command(name, help, run, config_cls, computes)
        return run

    return register
