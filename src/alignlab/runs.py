"""Run folders: ``config.json`` (enough to run again), ``metrics.json``, artifacts, ``report.html``.

A run folder is written in place but only *marked complete* by ``metrics.json``, which is
written last and atomically (:meth:`Run.finish` writes ``report.html`` first): a folder without
it is an unfinished run, never a result. :func:`read_run` reads a folder back for
``alignlab report`` and ``alignlab rerun``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ArtifactError, OutputError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_beside(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary name beside ``path``, then rename it over, so
    nothing half-written is ever at ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """A safetensors file written through :func:`write_beside`."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    write_beside(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, _dumps(obj))


def read_tensors(path: Path, remedy: str) -> dict:
    """A safetensors file's tensors, or an ArtifactError naming the file and ``remedy``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ArtifactError(f"{path} is missing; {remedy}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable safetensors file ({exc}); {remedy}") from exc


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


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
    """One run folder being written."""

    path: Path
    command: str

    def artifact(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: dict) -> None:
        atomic_write_json(
            self.path / CONFIG_FILE,
            {
                "command": self.command,
                "alignlab_version": __version__,
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": config,
            },
        )

    def write_metrics(self, metrics: dict) -> None:
        """Written last: its presence marks the run complete. Prefer :meth:`finish`."""
        atomic_write_json(self.path / METRICS_FILE, metrics)

    def finish(self, metrics: dict) -> None:
        """Write ``report.html``, then ``metrics.json`` (which marks the run complete).

        The report is built from the metrics exactly as they will read back from disk, so
        ``alignlab report RUN`` rebuilds the same report. If the report cannot be built the
        exception propagates and no ``metrics.json`` is written.
        """
        from .report import write_report

        text = _dumps(metrics)
        write_report(read_run(self.path), json.loads(text))
        atomic_write_text(self.path / METRICS_FILE, text)

    def read_metrics(self) -> dict:
        return json.loads((self.path / METRICS_FILE).read_text(encoding="utf-8"))


def start_run(out: str | Path, command: str, config: dict) -> Run:
    """Make (or reuse) the folder, drop any stale results, and record the config."""
    path = ensure_writable_dir(Path(out))
    (path / METRICS_FILE).unlink(missing_ok=True)  # first: the folder reads as unfinished
    (path / REPORT_FILE).unlink(missing_ok=True)
    run = Run(path, command)
    run.write_config(config)
    return run


@dataclass(frozen=True)
class RunView:
    """A run folder read back: which command ran, with which config, and its metrics."""

    path: Path
    command: str
    config: dict  # the command's config dataclass as a dict
    alignlab_version: str | None  # the version that ran it
    started_at: str | None  # ISO 8601, UTC; absent in folders written before it was recorded

    @property
    def finished(self) -> bool:
        return (self.path / METRICS_FILE).is_file()

    def read_metrics(self) -> dict:
        """The metrics of a finished run, or an :class:`ArtifactError` that says what is wrong."""
        if not self.finished:
            raise ArtifactError(
                f"{self.path} is not a finished run folder (no {METRICS_FILE}: a run writes it "
                f"last, so this one stopped early or is still running); "
                f"run it again with `alignlab rerun {self.path}`"
            )
        return _read_json_object(self.path / METRICS_FILE)


def read_run(path: str | Path) -> RunView:
    """Read ``config.json`` of a run folder; raise :class:`ArtifactError` if it is not one."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise ArtifactError(f"run folder {path} {what}; give the folder a command wrote with --out")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ArtifactError(
            f"{path} has no {CONFIG_FILE}, so it is not a run folder; "
            "give the folder a command wrote with --out"
        )
    record = _read_json_object(config_path)
    return _view_from_record(path, record)


def _view_from_record(path: Path, record: dict) -> RunView:
    command, config = record.get("command"), record.get("config")
    if not isinstance(command, str) or not isinstance(config, dict):
        raise ArtifactError(
            f"{path / CONFIG_FILE} is garbled: it needs a string 'command' and an object 'config' "
            f"(found keys {sorted(record)}); run the original command again to rewrite it"
        )
    return RunView(path, command, config, record.get("alignlab_version"), record.get("started_at"))


def _read_json_object(file: Path) -> dict:
    try:
        obj = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{file} is garbled: not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"{file} is garbled: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "run the original command again to rewrite it"
        ) from exc
    except OSError as exc:
        raise ArtifactError(f"cannot read {file}: {exc.strerror or exc}") from exc
    if not isinstance(obj, dict):
        raise ArtifactError(
            f"{file} is garbled: expected a JSON object, found {type(obj).__name__}; "
            "run the original command again to rewrite it"
        )
    return obj
