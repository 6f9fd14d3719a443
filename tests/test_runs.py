"""Run folders: config.json first, report.html, then metrics.json last and atomically."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from alignlab import __version__, runs
from alignlab.errors import ArtifactError
from alignlab.report import Section, registry
from alignlab.runs import read_run, start_run

INSPECT = {"inspect": {"model": "m", "prompts": [{
    "prompt": "hi", "n_tokens": 2, "sites": ["resid.0", "resid.1"], "norm": [1.0, 2.0],
    "top_tokens": [["a"], ["b"]], "top_probs": [[0.9], [0.8]],
    "model_top_tokens": ["b"], "model_top_probs": [0.8],
}]}}


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_start_run_records_config_and_clears_stale_results(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "report.html").write_text("old")
    run = start_run(tmp_path, "inspect", {"model": "m", "top_k": 3})
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["command"] == "inspect" and record["config"] == {"model": "m", "top_k": 3}
    assert record["alignlab_version"] == __version__ and record["started_at"].endswith("+00:00")
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "report.html").exists()
    view = read_run(run.path)
    assert (view.command, view.config, view.finished) == ("inspect", {"model": "m", "top_k": 3}, False)


def test_write_and_read_metrics_still_work(tmp_path):
    run = start_run(tmp_path, "inspect", {})
    run.write_metrics({"x": np.arange(3)})
    assert run.read_metrics() == {"x": [0, 1, 2]}


def test_finish_writes_report_then_metrics(tmp_path, monkeypatch):
    run = start_run(tmp_path / "run", "inspect", {"model": "m"})
    order = []
    real_replace = os.replace

    def recording_replace(src, dst):
        order.append((os.path.basename(dst), (run.path / "metrics.json").exists()))
        real_replace(src, dst)

    monkeypatch.setattr(runs.os, "replace", recording_replace)
    run.finish(INSPECT)
    assert order == [("report.html", False), ("metrics.json", False)]
    assert json.loads((run.path / "metrics.json").read_text()) == INSPECT
    assert read_run(run.path).read_metrics() == INSPECT
    assert _leftovers(run.path) == []


def test_failing_report_leaves_no_metrics(tmp_path, monkeypatch):
    registry.registered_sections()
    monkeypatch.setattr(registry, "_SECTIONS", dict(registry._SECTIONS))

    @registry.register("broken")
    def broken(run, metrics) -> Section:
        raise RuntimeError("section bug")

    run = start_run(tmp_path / "run", "inspect", {"model": "m"})
    with pytest.raises(RuntimeError, match="section bug"):
        run.finish(INSPECT)
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json"]


def test_finish_reports_what_metrics_json_holds(tmp_path):
    """numpy values are written as JSON; the report at finish equals a rebuild from disk."""
    from alignlab.report import rebuild_report

    metrics = {"inspect": INSPECT["inspect"], "extra": {"values": np.array([1.5, 2.5])}}
    run = start_run(tmp_path / "run", "inspect", {"model": "m"})
    run.finish(metrics)
    first = (run.path / "report.html").read_text()
    rebuild_report(run.path)
    second = (run.path / "report.html").read_text()

    def without_build_time(html):
        return [line for line in html.splitlines() if "report built" not in line]

    assert without_build_time(first) == without_build_time(second)
    assert "1.5" in first and json.loads((run.path / "metrics.json").read_text())["extra"] == {"values": [1.5, 2.5]}


@pytest.mark.parametrize(
    "setup, fragment",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("x"), "is a file, not a folder"),
        (lambda p: p.mkdir(), "has no config.json, so it is not a run folder"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text('{"command": "inspect", ')), "not valid JSON"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("[1, 2]")), "expected a JSON object, found list"),
        (lambda p: (p.mkdir(), (p / "config.json").write_bytes(b"\xff\xfe{}")), "not UTF-8"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text('{"config": {}}')), "needs a string 'command'"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text('{"command": "inspect", "config": 3}')),
         "an object 'config'"),
    ],
)
def test_read_run_errors(tmp_path, setup, fragment):
    folder = tmp_path / "run"
    setup(folder)
    with pytest.raises(ArtifactError, match=fragment):
        read_run(folder)


def test_unfinished_and_garbled_metrics(tmp_path):
    run = start_run(tmp_path, "inspect", {})
    with pytest.raises(ArtifactError, match="is not a finished run folder"):
        read_run(tmp_path).read_metrics()
    (run.path / "metrics.json").write_text("{oops")
    with pytest.raises(ArtifactError, match="metrics.json is garbled"):
        read_run(tmp_path).read_metrics()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        runs.atomic_write_json(target, {"bad": object()})
    assert target.read_text() == "old" and _leftovers(tmp_path) == []
