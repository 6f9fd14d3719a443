"""`alignlab report RUN` and `alignlab rerun RUN` in-process, on tiny-llama."""

from __future__ import annotations

import json
import shutil

import pytest

from alignlab.cli import main

PROMPTS = ["The capital of France is", "a <b>bold</b> & 'quoted' prompt"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def inspect_run(tmp_path_factory):
    """One finished `inspect` run on tiny-llama; tests copy it before changing anything."""
    folder = tmp_path_factory.mktemp("inspect") / "run"
    argv = ["inspect", "--model", "tiny-llama", "--sites", "resid.*", "--top-k", "3", "--out", str(folder)]
    for p in PROMPTS:
        argv += ["--prompt", p]
    assert main(argv) == 0
    return folder


@pytest.fixture
def run_copy(inspect_run, tmp_path):
    return shutil.copytree(inspect_run, tmp_path / "copy")


def test_inspect_writes_report(inspect_run):
    html = (inspect_run / "report.html").read_text(encoding="utf-8")
    assert "a &lt;b&gt;bold&lt;/b&gt; &amp; " in html and "<b>bold" not in html
    metrics = json.loads((inspect_run / "metrics.json").read_text())
    for norm in metrics["inspect"]["prompts"][0]["norm"]:
        assert f">{norm:.4g}<" in html


def test_report_rebuilds_without_touching_metrics(capsys, run_copy):
    metrics_before = (run_copy / "metrics.json").read_bytes()
    (run_copy / "report.html").unlink()
    code, out, _ = _run(capsys, "report", str(run_copy))
    assert code == 0 and "report.html" in out
    assert "The capital of France is" in (run_copy / "report.html").read_text(encoding="utf-8")
    assert (run_copy / "metrics.json").read_bytes() == metrics_before


def test_rerun_reproduces_metrics(capsys, inspect_run, tmp_path):
    again = tmp_path / "again"
    code, out, _ = _run(capsys, "rerun", str(inspect_run), "--out", str(again))
    assert code == 0 and "rerunning `alignlab inspect`" in out
    assert (again / "metrics.json").read_bytes() == (inspect_run / "metrics.json").read_bytes()
    old = json.loads((inspect_run / "config.json").read_text())
    new = json.loads((again / "config.json").read_text())
    assert new["command"] == "inspect" and new["config"] == {**old["config"], "out": str(again)}
    assert (again / "report.html").exists()


def test_rerun_in_place(capsys, run_copy):
    metrics_before = (run_copy / "metrics.json").read_bytes()
    (run_copy / "report.html").unlink()
    code, _, _ = _run(capsys, "rerun", str(run_copy))
    assert code == 0
    assert (run_copy / "metrics.json").read_bytes() == metrics_before
    assert json.loads((run_copy / "config.json").read_text())["config"]["out"] == str(run_copy)
    assert (run_copy / "report.html").exists()


def _set_config(folder, text):
    (folder / "config.json").write_text(text)


@pytest.mark.parametrize(
    "verb, damage, fragment",
    [
        ("report", lambda f: shutil.rmtree(f), "does not exist"),
        ("report", lambda f: (f / "metrics.json").unlink(), "is not a finished run folder"),
        ("report", lambda f: _set_config(f, "{not json"), "config.json is garbled: not valid JSON"),
        ("report", lambda f: (f / "metrics.json").write_text('{"inspect": {"prompts": [{}]}}'),
         "report section 'inspect' cannot read"),
        ("rerun", lambda f: shutil.rmtree(f), "does not exist"),
        ("rerun", lambda f: (f / "config.json").unlink(), "has no config.json"),
        ("rerun", lambda f: _set_config(f, "{not json"), "config.json is garbled: not valid JSON"),
        ("rerun", lambda f: _set_config(f, '{"config": {}}'), "needs a string 'command'"),
        ("rerun", lambda f: _set_config(f, '{"command": "frobnicate", "config": {}}'),
         "names command 'frobnicate', which this alignlab cannot rerun"),
        ("rerun", lambda f: _set_config(f, '{"command": "models", "config": {}}'), "cannot rerun"),
        ("rerun", lambda f: _set_config(f, '{"command": "inspect", "config": {"prompt": ["x"], "tempo": 1}}'),
         "has options ['tempo'] that `alignlab inspect` does not take"),
        ("rerun", lambda f: _set_config(f, '{"command": "inspect", "config": {"prompt": []}}'),
         "--prompt must be a non-empty text"),
        ("rerun", lambda f: _set_config(f, '{"command": "inspect", "config": {"prompt": ["x"], "top_k": "3"}}'),
         "cannot rebuild the config"),
    ],
)
def test_errors_are_one_line(capsys, run_copy, verb, damage, fragment):
    damage(run_copy)
    code, _, err = _run(capsys, verb, str(run_copy))
    assert code == 2
    assert fragment in _one_error_line(err)


def test_rerun_to_unwritable_out(capsys, run_copy, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "rerun", str(run_copy), "--out", str(blocker))
    assert code == 2 and "exists and is a file" in _one_error_line(err)


def test_rerun_and_report_need_a_folder(capsys):
    for verb in ("rerun", "report"):
        code, _, err = _run(capsys, verb)
        assert code == 2 and "required: RUN" in _one_error_line(err)
