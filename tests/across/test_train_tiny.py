"""`alignlab train-tiny`: a Pythia-like checkpoint schedule, loadable checkpoints, determinism."""

import json

import pytest
import torch

from alignlab.across import checkpoint_steps
from alignlab.cli import main
from alignlab.models import load_model

SMALL = ["--seq-len", "32", "--batch-size", "4", "--d-model", "32", "--n-layers", "2", "--n-heads", "2"]


def test_checkpoint_schedule_is_log_spaced_plus_regular_plus_last():
    assert checkpoint_steps(300, 100) == [0, 1, 2, 4, 8, 16, 32, 64, 100, 128, 200, 256, 300]
    assert checkpoint_steps(1, 100) == [0, 1]
    assert checkpoint_steps(20, 10) == [0, 1, 2, 4, 8, 10, 16, 20]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["train-tiny", "--steps", "20", "--every", "10", *SMALL, "--out", str(out)]) == 0
    return out


def test_checkpoints_follow_the_schedule_and_load(tiny_run):
    names = sorted(p.name for p in tiny_run.iterdir() if p.name.startswith("step"))
    assert names == sorted(f"step{s}" for s in [0, 1, 2, 4, 8, 10, 16, 20])
    assert not list(tiny_run.glob(".step*"))  # no temporary folders left behind
    metrics = json.loads((tiny_run / "metrics.json").read_text())["train_tiny"]
    assert metrics["checkpoint_steps"] == [0, 1, 2, 4, 8, 10, 16, 20]
    assert metrics["final_loss"] < metrics["losses"][0]
    first, last = load_model(str(tiny_run), revision="step0"), load_model(str(tiny_run), revision="step20")
    assert first.n_layers == 2 and first.d_model == 32 and first.anatomy.family.name == "gpt_neox"
    ids = first.tokenizer("Call me Ishmael.", return_tensors="pt").input_ids
    assert not torch.equal(first.model(ids).logits, last.model(ids).logits)


def test_training_is_deterministic_under_the_seed(tiny_run, tmp_path):
    again = tmp_path / "again"
    assert main(["train-tiny", "--steps", "20", "--every", "10", *SMALL, "--out", str(again)]) == 0
    a = load_model(str(tiny_run), revision="step20").model.state_dict()
    b = load_model(str(again), revision="step20").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_are_one_error_line(tiny_run, capsys, tmp_path):
    for argv, fragment in [
        (["--steps", "0", "--out", str(tmp_path / "x")], "--steps must be at least 1"),
        (["--d-model", "30", "--n-heads", "4", "--out", str(tmp_path / "y")], "divisible"),
        (["--steps", "2", *SMALL, "--out", str(tiny_run)], "already holds step"),
    ]:
        assert main(["train-tiny", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0]
