"""`alignlab lens train|eval` in-process: run folders, metrics keys, and one-line errors."""

import json

import pytest

from alignlab.cli import main
from alignlab.lens.io import export_tuned_lens, load_lens
from alignlab.models import load_model

FAST = ["--tokens", "1024", "--eval-tokens", "128", "--seq-len", "32", "--batch-size", "4"]
METRIC_KEYS = {"kl", "kl_bits_per_byte", "ce", "entropy", "top1_agreement"}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lens") / "run"
    assert main(["lens", "train", "--model", "tiny-gptneox", *FAST, "--steps", "12", "--out", str(out)]) == 0
    return out


def test_lens_train_writes_metrics_lens_pictures_and_report(trained):
    metrics = json.loads((trained / "metrics.json").read_text())["lens"]
    n_layers = 4
    assert metrics["sites"] == [f"resid.{i}" for i in range(n_layers)]
    for name in ("logit", "tuned"):
        assert set(metrics[name]) == METRIC_KEYS
        assert all(len(metrics[name][k]) == n_layers for k in METRIC_KEYS)
    assert set(metrics["train"]) >= {"steps", "seconds", "final_loss"} and metrics["train"]["steps"] == 12
    assert metrics["n_tokens"] == 4 * 30  # 4 held-out rows, positions 1..30 of 0..31
    assert metrics["final"]["ce"] > 0
    assert sum(metrics["tuned"]["kl"]) < sum(metrics["logit"]["kl"])
    for png in ("lens_kl_by_layer.png", "lens_trajectory_logit.png", "lens_trajectory_tuned.png"):
        assert (trained / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(metrics["trajectory"]["tuned"]["layers"]) == n_layers + 1
    report = (trained / "report.html").read_text()
    assert "Lenses: the prediction layer by layer" in report
    config = json.loads((trained / "config.json").read_text())
    assert config["command"] == "lens train" and config["config"]["model"] == "tiny-gptneox"
    assert load_lens(trained / "lens", load_model("tiny-gptneox")).n_layers == n_layers


def test_lens_eval_scores_the_same_held_out_positions(trained, tmp_path, capsys):
    out = tmp_path / "eval"
    code, stdout, _ = _run(capsys, "lens", "eval", "--model", "tiny-gptneox", "--lens", trained / "lens",
                           "--eval-tokens", "128", "--seq-len", "32", "--out", out)
    assert code == 0 and "tuned KL" in stdout
    got = json.loads((out / "metrics.json").read_text())["lens"]
    want = json.loads((trained / "metrics.json").read_text())["lens"]
    for name in ("logit", "tuned"):
        assert got[name]["kl"] == pytest.approx(want[name]["kl"], rel=1e-5)


def test_lens_eval_without_a_lens_is_the_logit_lens_only(tmp_path, capsys):
    out = tmp_path / "eval"
    code, _, _ = _run(capsys, "lens", "eval", "--model", "tiny-llama", "--eval-tokens", "64",
                      "--seq-len", "32", "--out", out)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())["lens"]
    assert "logit" in metrics and "tuned" not in metrics


def test_lens_eval_reads_a_tuned_lens_package_folder(trained, tmp_path, capsys):
    lm = load_model("tiny-gptneox")
    peer = export_tuned_lens(load_lens(trained / "lens", lm), tmp_path / "peer")
    out = tmp_path / "eval"
    code, _, _ = _run(capsys, "lens", "eval", "--model", "tiny-gptneox", "--lens", peer,
                      "--eval-tokens", "128", "--seq-len", "32", "--out", out)
    assert code == 0
    got = json.loads((out / "metrics.json").read_text())["lens"]["tuned"]["kl"]
    want = json.loads((trained / "metrics.json").read_text())["lens"]["tuned"]["kl"]
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("argv, fragment", [
    (["lens", "train", "--model", "tiny-llama", "--tokens", "16", "--seq-len", "32"], "--tokens 16"),
    (["lens", "train", "--model", "tiny-llama", "--seq-len", "1"], "--seq-len 1"),
    (["lens", "train", "--model", "tiny-llama", "--steps", "0"], "steps"),
    (["lens", "train", "--model", "tiny-llama", "--optimizer", "lbfgs"], "invalid choice"),
    (["lens", "train", "--model", "tiny-llama", "--lr", "-1"], "lr must be positive"),
    (["lens", "train", "--model", "no-such-model", *FAST], "unknown model"),
    (["lens", "eval", "--model", "tiny-llama", "--lens", "/no/such/lens"], "is not a folder"),
])
def test_bad_inputs_are_one_error_line(capsys, tmp_path, argv, fragment):
    code, _, err = _run(capsys, *argv, "--out", tmp_path / "run")
    assert code == 2
    assert fragment in _one_error_line(err)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_lens_for_another_model_is_one_error_line(trained, capsys, tmp_path):
    code, _, err = _run(capsys, "lens", "eval", "--model", "tiny-llama", "--lens", trained / "lens",
                        "--eval-tokens", "64", "--seq-len", "32", "--out", tmp_path / "run")
    assert code == 2
    assert "trained on 'tiny-gptneox'" in _one_error_line(err)
