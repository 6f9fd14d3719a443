"""The ``alignlab sae`` verbs, in-process: train (on the fly and from a store), eval, export, browse."""

from __future__ import annotations

import json

import pytest
import torch

from alignlab.cli import main

SMALL = ["--model", "tiny-llama", "--width", "128", "--k", "8", "--batch-tokens", "1024",
         "--seq-len", "64", "--eval-tokens", "2048", "--browse-tokens", "1024"]

SAE_KEYS = {"fvu", "fvu_all_positions", "explained_variance", "l0", "dead_fraction", "dense_fraction",
            "mse", "cosine", "shrinkage", "l2_ratio", "ce_loss", "ce_loss_clean", "ce_loss_zero_ablation",
            "loss_recovered", "kl", "kl_zero_ablation", "arch", "width", "k", "site", "folder", "browser"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("sae-cli") / "run"
    code = main(["sae", "train", "--site", "resid.2,resid.3", "--tokens", "8192", "--out", str(run), *SMALL])
    assert code == 0
    return run


def test_train_writes_saes_metrics_report_and_browser(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics["sae"]) == {"resid.2", "resid.3"}
    entry = metrics["sae"]["resid.2"]
    assert SAE_KEYS <= set(entry), SAE_KEYS - set(entry)
    assert 0 < entry["fvu"] < 1.5 and entry["l0"] <= 8
    assert (trained / entry["folder"] / "cfg.json").is_file()
    assert (trained / entry["browser"]).is_file()
    assert metrics["sae_train"]["tokens"] > 0 and metrics["sae_train"]["tokens_per_second"] > 0
    assert metrics["sae_train"]["optimizers"]["resid.2"]["optimizer"] == "signum"  # topk's default
    assert "Sparse autoencoders and transcoders" in (trained / "report.html").read_text()
    assert not (trained / "checkpoint").exists()  # removed once training finished
    config = json.loads((trained / "config.json").read_text())
    assert config["command"] == "sae train" and config["config"]["site"] == "resid.2,resid.3"


def test_eval_export_and_browse_a_trained_sae(trained, tmp_path, capsys):
    sae = trained / "saes" / "resid.2"
    assert main(["sae", "eval", str(sae), "--out", str(tmp_path / "ev"), "--tokens", "1024",
                 "--skip-tokens", "20000", "--seq-len", "64"]) == 0
    evaluated = json.loads((tmp_path / "ev" / "metrics.json").read_text())["sae"]["resid.2"]
    assert {"fvu", "l0", "loss_recovered", "kl"} <= set(evaluated)

    assert main(["sae", "export", str(sae), "--format", "saelens", "--out", str(tmp_path / "sl")]) == 0
    assert (tmp_path / "sl" / "sae_weights.safetensors").is_file()
    # the export evaluates the same as the original (import of SAELens' layout)
    assert main(["sae", "eval", str(tmp_path / "sl"), "--out", str(tmp_path / "ev2"), "--tokens", "1024",
                 "--skip-tokens", "20000", "--seq-len", "64", "--model", "tiny-llama"]) == 0
    again = json.loads((tmp_path / "ev2" / "metrics.json").read_text())["sae"]["resid.2"]
    assert again["fvu"] == pytest.approx(evaluated["fvu"], rel=1e-5)

    assert main(["sae", "browse", str(trained), "--tokens", "512", "--seq-len", "64"]) == 0
    assert "resid.3" in capsys.readouterr().out


def test_a_transcoder_with_a_skip_connection(tmp_path):
    run = tmp_path / "tc"
    assert main(["sae", "train", "--site", "mlp_in.1", "--site-out", "mlp.1", "--skip", "--arch", "relu_l1",
                 "--tokens", "4096", "--out", str(run), "--no-browse", *SMALL]) == 0
    entry = json.loads((run / "metrics.json").read_text())["sae"]["mlp_in.1->mlp.1"]
    assert entry["transcoder"] and entry["skip"] and entry["site_out"] == "mlp.1"
    assert (run / "saes" / "mlp_in.1_to_mlp.1" / "cfg.json").is_file()


def test_training_from_a_store(tmp_path):
    store = tmp_path / "store"
    assert main(["harvest", "--model", "tiny-llama", "--tokens", "4096", "--sites", "resid.2",
                 "--seq-len", "64", "--out", str(store), "--dtype", "float32"]) == 0
    run = tmp_path / "run"
    assert main(["sae", "train", "--store", str(store), "--site", "resid.2", "--width", "128", "--k", "8",
                 "--batch-tokens", "512", "--eval-tokens", "1024", "--no-browse", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["sae_train"]["source"] == "store"
    assert metrics["sae_train"]["tokens"] + metrics["sae_train"]["sink_tokens"] == 4096
    assert "fvu" in metrics["sae"]["resid.2"]


@pytest.mark.parametrize("argv,message", [
    (["sae", "train", "--site", "resid.1", "--out", "X"], "give --store STORE, or --tokens N"),
    (["sae", "train", "--site", "resid.1", "--tokens", "10", "--out", "X", "--arch", "gated"], "invalid choice"),
    (["sae", "train", "--site", "resid.9", "--tokens", "1000", "--out", "X", "--model", "tiny-llama"],
     "out of range"),
    (["sae", "train", "--site", "resid.1", "--tokens", "1000", "--out", "X", "--skip"], "--skip is for transcoders"),
    (["sae", "export", "/nonexistent/sae", "--out", "X"], "does not exist"),
])
def test_bad_input_is_one_error_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err


def test_eval_refuses_an_sae_on_another_model(trained, tmp_path, capsys):
    assert main(["sae", "eval", str(trained / "saes" / "resid.2"), "--model", "tiny-gpt2",
                 "--out", str(tmp_path / "x"), "--tokens", "256"]) == 2
    assert "trained on model 'tiny-llama'" in capsys.readouterr().err


def test_an_interrupted_run_resumes_to_the_same_sae(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from alignlab.sae import pipeline
    from alignlab.sae.trainer import Trainer

    args = ["sae", "train", "--site", "resid.2", "--tokens", "6144", "--checkpoint-every", "2",
            "--eval-tokens", "0", "--no-browse", "--model", "tiny-llama", "--width", "128", "--k", "8",
            "--batch-tokens", "512", "--seq-len", "64"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0

    class Interrupted(Trainer):
        def _record(self, stats):
            super()._record(stats)
            if self.step == 5:
                raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "Trainer", Interrupted)
    assert main([*args, "--out", str(tmp_path / "resumed")]) == 130
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    assert (tmp_path / "resumed" / "checkpoint" / "state.json").is_file()
    monkeypatch.setattr(pipeline, "Trainer", Trainer)
    assert main([*args, "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    a = load_file(str(tmp_path / "straight" / "saes" / "resid.2" / "sae.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "saes" / "resid.2" / "sae.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
