"""``alignlab sandbox list|run|cid`` in process, and the report section for sandbox metrics."""

from __future__ import annotations

import json

import pytest

from alignlab.cli import main
from alignlab.sandbox.envs import ENVS, gym_id


def test_list_shows_every_environment_and_agent(capsys):
    assert main(["sandbox", "list"]) == 0
    out = capsys.readouterr().out
    for name in ENVS:
        assert gym_id(name) in out
    assert "current-rf-plan-mf" in out and "cf-oracle" in out


def test_run_trains_and_writes_a_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sandbox", "run", "Wirehead", "--agent", "q-learning", "--seed", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "#A" in printed or "A " in printed  # the board, as text
    metrics = json.loads((out / "metrics.json").read_text())
    pair = metrics["sandbox"]["Wirehead"]["q-learning"]
    assert pair["tamper_rate"] == 1.0 and pair["predicted_incentive"] is True
    assert pair["episode"]["observed_return"] > pair["episode"]["true_return"]
    assert all((out / f).is_file() for f in metrics["sandbox"]["figures"])


def test_run_without_a_diagram_for_the_objective_still_runs(tmp_path):
    out = tmp_path / "run"
    assert main(["sandbox", "run", "TomatoWatering", "--agent", "current-rf-plan", "--out", str(out)]) == 0
    pair = json.loads((out / "metrics.json").read_text())["sandbox"]["TomatoWatering"]["current-rf-plan"]
    assert pair["predicted_incentive"] is None


def test_cid_lists_incentives_and_draws(tmp_path, capsys):
    out = tmp_path / "cid"
    assert main(["sandbox", "cid", "RocksDiamondsUser", "--agent", "current-rf-plan", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ICI (preserve)" in printed and "predicted" in printed
    assert (out / "cid_RocksDiamondsUser__current-rf-plan.png").is_file()
    assert (out / "cid_RocksDiamondsUser__current-rf-plan.svg").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["sandbox"]["cid"]["RocksDiamondsUser"]["current-rf-plan"]
    assert entry["incentives"]["Θ2"] == {"voi": False, "ri": False, "ici": True, "ici_kind": "preserve"}
    assert entry["predicted_incentive"] is True


@pytest.mark.parametrize(("argv", "message"), [
    (["sandbox", "run", "NoSuchWorld"], "unknown sandbox environment"),
    (["sandbox", "run", "Oracle", "--agent", "current-rf-ignore"], "reward-function family"),
    (["sandbox", "cid", "Oracle", "--agent", "current-rf-plan"], "declares no diagram"),
    (["sandbox", "run", "Wirehead", "--steps", "0"], "--steps must be at least 1"),
])
def test_bad_input_is_one_error_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_report_section_shows_the_table_and_figures(tmp_path):
    from alignlab.report.sections.sandbox import sandbox_section
    from alignlab.runs import read_run

    out = tmp_path / "run"
    assert main(["sandbox", "run", "Wirehead", "--agent", "current-rf-ignore", "--out", str(out)]) == 0
    run = read_run(out)
    section = sandbox_section(run, json.loads((out / "metrics.json").read_text()))
    kinds = [b.kind for b in section.blocks]
    assert "table" in kinds and "figure" in kinds
    table = next(b for b in section.blocks if b.kind == "table")
    assert table.rows[0][:2] == ["Wirehead", "current-rf-ignore"]
    assert sandbox_section(run, {"inspect": {}}) is None


def test_report_section_shows_only_pictures_inside_the_run_folder(tmp_path):
    from alignlab.report.sections.sandbox import sandbox_section
    from alignlab.runs import read_run

    out = tmp_path / "run"
    assert main(["sandbox", "cid", "Wirehead", "--out", str(out)]) == 0
    (tmp_path / "secret.png").write_bytes(b"\x89PNG secret")
    metrics = {"sandbox": {"figures": ["../secret.png", str(tmp_path / "secret.png"), "nope.png"]}}
    section = sandbox_section(read_run(out), metrics)
    assert [b.kind for b in section.blocks] == ["heading", "paragraph", "paragraph", "paragraph"]
    assert "outside the run folder" in section.blocks[1].text and "missing" in section.blocks[3].text
