"""Run folders: ``config.json`` (enough to run again), ``metrics.json``, artifacts, ``report.html``.

A run folder is written in place but only *marked complete* by ``metrics.json``, which is
written last and atomically: a folder without it is an unfinished run, never a result.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import OutputError


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) or raise an :class:`OutputError` that says why not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {str(path)!r} exists and is a file; give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputError(
            f"cannot write to output folder {str(path)!r}: {exc.strerror or exc}; "
            "choose a folder you can write to"
        ) from exc
    return path


@dataclass
class Run:
    """One run folder."""

    path: Path
    command: str

    def artifact(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: dict) -> None:
        atomic_write_json(
            self.path / "config.json",
            {"command": self.command, "alignlab_version": __version__, "config": config},
        )

    def write_metrics(self, metrics: dict) -> None:
        """Written last: its presence marks the run complete."""
        atomic_write_json(self.path / "metrics.json", metrics)

    def read_metrics(self) -> dict:
        return json.loads((self.path / "metrics.json").read_text(encoding="utf-8"))


def start_run(out: str | Path, command: str, config: dict) -> Run:
    """Make (or reuse) the folder, drop any stale ``metrics.json``, and record the config."""
    path = ensure_writable_dir(Path(out))
    (path / "metrics.json").unlink(missing_ok=True)
    run = Run(path, command)
    run.write_config(config)
    return run
