"""``report`` (rebuild a run folder's report.html) and ``rerun`` (repeat a run from config.json)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rich.console import Console

from ..config import opt
from ..errors import ArtifactError, ConfigError
from ..runs import CONFIG_FILE, RunView, read_run
from .registry import COMMANDS, Command, command


@dataclass
class ReportConfig:
    """``alignlab report RUN``."""

    run: str = opt(help="a finished run folder (one with metrics.json)", positional=True)


@dataclass
class RerunConfig:
    """``alignlab rerun RUN``."""

    run: str = opt(help="a run folder (one with config.json)", positional=True)
    out: str | None = opt(None, "write the new run here instead of over RUN")


@command("report", "rebuild a run folder's report.html from its metrics.json", ReportConfig)
def run_report(config: ReportConfig, console: Console) -> int:
    from ..report import rebuild_report

    path = rebuild_report(config.run)
    console.print(f"wrote {path}")
    return 0


@command("rerun", "run a run folder's command again with its recorded config", RerunConfig)
def run_rerun(config: RerunConfig, console: Console) -> int:
    view = read_run(config.run)
    cmd = command_of(view)
    again = config_of(view, cmd, out=config.out or config.run)
    console.print(f"rerunning `alignlab {cmd.name}` from {view.path / CONFIG_FILE}")
    return cmd.run(again, console)


def command_of(view: RunView) -> Command:
    """The registered command that wrote the run folder."""
    cmd = COMMANDS.get(view.command)
    if cmd is None or not cmd.computes or cmd.config_cls is None:
        known = sorted(name for name, c in COMMANDS.items() if c.computes)
        raise ArtifactError(
            f"{view.path / CONFIG_FILE} names command {view.command!r}, which this alignlab "
            f"cannot rerun (rerunnable: {', '.join(known)}); was it written by another version?"
        )
    return cmd


def config_of(view: RunView, cmd: Command, out: str | None = None):
    """Rebuild the command's config dataclass from ``config.json``, writing to ``out``."""
    fields = {f.name for f in dataclasses.fields(cmd.config_cls)}
    unknown = sorted(set(view.config) - fields)
    if unknown:
        raise ArtifactError(
            f"{view.path / CONFIG_FILE} has options {unknown} that `alignlab {cmd.name}` does not "
            f"take (it takes {sorted(fields)}); was it written by another version?"
        )
    values = dict(view.config)
    if out is not None:
        if "out" not in fields:
            raise ConfigError(f"`alignlab {cmd.name}` writes no run folder, so --out does not apply")
        values["out"] = str(out)
    try:
        return cmd.config_cls(**values)
    except TypeError as exc:  # a required option is missing
        raise ArtifactError(f"{view.path / CONFIG_FILE} cannot rebuild the config: {exc}") from exc
