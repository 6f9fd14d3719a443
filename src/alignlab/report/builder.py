"""Build ``report.html``: one self-contained file (CSS and plots inline, nothing fetched).

Every string reaches the page through a jinja2 template with autoescape on, so a token such as
``<script>alert(1)</script>`` renders as text; a Content-Security-Policy that allows no script
and only ``data:`` images is a second line of defence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from .. import __version__
from ..errors import ArtifactError
from ..runs import REPORT_FILE, RunView, atomic_write_text, read_run
from .blocks import Heading, Preformatted, Section, format_cell
from .registry import SectionSpec, registered_sections

# no script at all; styles only from the inline <style>; images only as data: URIs
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
PREVIEW_CHARS = 20_000  # longest value shown for a metrics key no section claims


@dataclass(frozen=True)
class BuiltSections:
    sections: list[Section]
    claimed: set[str]  # top-level metrics keys some section presented


def build_report(run: RunView, metrics: dict) -> str:
    """The report's HTML for a run folder and its metrics."""
    built = build_sections(run, metrics)
    sections = list(built.sections)
    leftover = unclaimed_section(metrics, built.claimed)
    if leftover is not None:
        sections.append(leftover)
    return _environment().get_template("report.html.j2").render(
        run=run, header=_header(run), config_rows=_config_rows(run.config),
        sections=sections, csp=CSP,
    )


def write_report(run: RunView, metrics: dict) -> Path:
    """Build the report and write it atomically to ``RUN/report.html``."""
    path = run.path / REPORT_FILE
    atomic_write_text(path, build_report(run, metrics))
    return path


def rebuild_report(folder: str | Path) -> Path:
    """``alignlab report RUN``: rebuild ``report.html`` from a finished run folder."""
    run = read_run(folder)
    return write_report(run, run.read_metrics())


def build_sections(run: RunView, metrics: dict) -> BuiltSections:
    sections, claimed = [], set()
    for spec in registered_sections():
        section = _build_one(spec, run, metrics)
        if section is not None:
            sections.append(section)
            claimed.update(spec.claims)
    return BuiltSections(sections, claimed)


def _build_one(spec: SectionSpec, run: RunView, metrics: dict) -> Section | None:
    try:
        return spec.build(run, metrics)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # metrics.json is a file a person can edit; say which part does not fit
        raise ArtifactError(
            f"report section {spec.name!r} cannot read {run.path}/metrics.json "
            f"({type(exc).__name__}: {exc}); rerun the command (`alignlab rerun {run.path}`)"
        ) from exc


def unclaimed_section(metrics: dict, claimed: set[str]) -> Section | None:
    """Every top-level metrics key no section presented, as JSON, so nothing is hidden."""
    keys = [key for key in metrics if key not in claimed]
    if not keys:
        return None
    blocks = []
    for key in keys:
        text = json.dumps(metrics[key], indent=2, ensure_ascii=False)
        if len(text) > PREVIEW_CHARS:
            more = len(text) - PREVIEW_CHARS
            text = text[:PREVIEW_CHARS] + f"\n… ({more} more characters in metrics.json)"
        blocks += [Heading(key), Preformatted(text)]
    return Section("Other metrics", blocks)


def _header(run: RunView) -> list[tuple[str, str]]:
    built = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return [
        ("command", f"alignlab {run.command}"),
        ("model", str(run.config.get("model", "—"))),
        ("alignlab version", run.alignlab_version or "unknown"),
        ("started", run.started_at or "unknown"),
        ("report built", f"{built} (alignlab {__version__})"),
        ("folder", str(run.path)),
    ]


def _config_rows(config: dict) -> list[tuple[str, str]]:
    return [(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
            for key, value in config.items()]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("alignlab.report", "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = format_cell
    return env
