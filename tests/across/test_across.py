"""`alignlab across`: an analysis per checkpoint of a train-tiny run, gathered into series."""

import json

import pytest

from alignlab.across.series import AcrossConfig, plan_across, resolve_checkpoints, step_of
from alignlab.cli import main
from alignlab.errors import ConfigError

TINY = ["--seq-len", "32", "--batch-size", "4", "--d-model", "32", "--n-layers", "2", "--n-heads", "2"]
LENS = "lens train --tokens 512 --eval-tokens 128 --seq-len 32 --steps 6"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("series") / "tiny"
    assert main(["train-tiny", "--steps", "8", "--every", "4", *TINY, "--out", str(out)]) == 0
    return out


def test_resolving_checkpoints(checkpoints):
    assert resolve_checkpoints("all", str(checkpoints)) == ["step0", "step1", "step2", "step4", "step8"]
    assert resolve_checkpoints("step4, step0", None) == ["step4", "step0"]
    assert [step_of(c) for c in ("step0", "step1000", "main")] == [0, 1000, None]
    with pytest.raises(ConfigError, match="twice"):
        resolve_checkpoints("step1,step1", None)
    with pytest.raises(ConfigError, match="step\\* subfolders"):
        resolve_checkpoints("all", "tiny-llama")


def test_across_runs_the_analysis_per_checkpoint_and_gathers_series(checkpoints, tmp_path, capsys):
    out = tmp_path / "across"
    code = main(["across", "--checkpoints", "step0,step8", "--run", f"{LENS} --model {checkpoints}",
                 "--out", str(out)])
    assert code == 0
    data = json.loads((out / "metrics.json").read_text())["across"]
    assert data["command"] == "lens train"
    assert data["checkpoints"] == ["step0", "step8"] and data["steps"] == [0, 8]
    kl = data["series"]["lens.tuned.kl"]
    assert len(kl) == 2 and all(len(per_layer) == 2 for per_layer in kl)
    for checkpoint in ("step0", "step8"):
        run_metrics = json.loads((out / checkpoint / "metrics.json").read_text())["lens"]
        assert run_metrics["revision"] == checkpoint  # recorded in every artifact
        cfg = json.loads((out / checkpoint / "lens" / "cfg.json").read_text())
        assert cfg["model"]["revision"] == checkpoint
    # training the model made its prediction better: the final cross-entropy falls
    ce = data["series"]["lens.final.ce"]
    assert ce[1] < ce[0]
    assert "Across training" in (out / "report.html").read_text()


@pytest.mark.parametrize("run, match", [
    ("lens train --out x", "must not set --out"),
    ("nonsense --model m", "does not start with a command"),
    ("models", "cannot run across checkpoints"),
    ("lens train --bogus 3", "in --run: unrecognized"),
    ("lens train --tokens 1 --seq-len 32", "--tokens 1"),
])
def test_bad_analyses_are_refused_before_anything_runs(tmp_path, run, match):
    with pytest.raises(ConfigError, match=match):
        plan_across(AcrossConfig(out=str(tmp_path / "a"), checkpoints="step0", run=run))
    assert not (tmp_path / "a").exists()


def test_bad_across_input_is_one_error_line(capsys, tmp_path):
    assert main(["across", "--checkpoints", "", "--run", "lens train", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --checkpoints is empty")


WARM_LENS = "lens train --tokens 1024 --eval-tokens 128 --seq-len 32 --batch-size 2 --steps 24"


def test_warm_start_starts_from_the_previous_lens_and_reports_the_saving(checkpoints, tmp_path, capsys):
    out = tmp_path / "warm"
    code = main(["across", "--checkpoints", "step4,step8", "--warm-start",
                 "--run", f"{WARM_LENS} --model {checkpoints}", "--out", str(out)])
    assert code == 0
    assert "warm start on step8" in capsys.readouterr().out
    first = json.loads((out / "step4" / "metrics.json").read_text())["lens"]
    assert "warm_start" not in first and "cold" not in first  # the first starts from the logit lens
    second = json.loads((out / "step8" / "metrics.json").read_text())["lens"]
    saving = second["warm_start"]
    assert saving["init_lens"] == str(out / "step4" / "lens")
    # The comparison lens is exactly what a plain `lens train` on that checkpoint makes.
    plain = tmp_path / "plain"
    assert main([*WARM_LENS.split(), "--model", str(checkpoints), "--revision", "step8",
                 "--out", str(plain)]) == 0
    assert second["cold"] == json.loads((plain / "metrics.json").read_text())["lens"]["tuned"]
    assert saving["kl_mean_cold"] == pytest.approx(sum(second["cold"]["kl"]) / 2)
    # Neighbouring checkpoints: the previous lens is a better start than the logit lens.
    assert saving["kl_mean_saving"] > 0
    assert saving["steps_to_cold_final_loss"] is not None and saving["steps_saved"] > 0
    series = json.loads((out / "metrics.json").read_text())["across"]["series"]
    assert series["lens.warm_start.steps_saved"] == [None, saving["steps_saved"]]


def test_warm_start_is_refused_for_other_analyses(tmp_path):
    with pytest.raises(ConfigError, match="--warm-start applies to `lens train`"):
        plan_across(AcrossConfig(out=str(tmp_path / "a"), checkpoints="step0,step1", warm_start=True,
                                 run="lens eval --model m"))


PROBE = ("probe --methods lr,mean-diff --pairs none --no-controls --no-causal --no-baseline "
         "--bootstrap 20 --batch-size 16")


def _surface_csv(path, n=120):
    """Labels any model's last-token state can see: which word the sentence holds."""
    lines = ["statement,label"] + [f"Number {i} goes with the {('apple', 'stone')[i % 2]} here.,{1 - i % 2}"
                                   for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_probe_across_checkpoints_reports_concept_drift(checkpoints, tmp_path):
    """Per consecutive pair and layer: the cosine of the probe directions and the earlier
    probe's accuracy on the later checkpoint's test states, checked against a per-layer loop
    over the saved artifacts."""
    import torch

    from alignlab.probes import load_probe
    from alignlab.probes.io import load_test_states

    data = _surface_csv(tmp_path / "surface.csv")
    out = tmp_path / "drift"
    names = ["step0", "step4", "step8"]
    assert main(["across", "--checkpoints", ",".join(names), "--run",
                 f"{PROBE} --model {checkpoints} --dataset {data}", "--out", str(out)]) == 0
    drift = json.loads((out / "metrics.json").read_text())["across"]["probe_drift"]
    assert sorted(drift) == ["surface"] and sorted(drift["surface"]) == ["lr", "mean-diff"]
    for method, d in drift["surface"].items():
        assert d["pairs"] == ["step0->step4", "step4->step8"]
        assert d["layers"] == [0, 1, 2]
        assert d["best_layer"] == [load_probe(out / c / "probes" / "surface" / method).best_layer
                                   for c in ("step4", "step8")]
        for k, pair in enumerate(d["pairs"]):
            earlier, later = (out / c / "probes" / "surface" for c in pair.split("->"))
            a, b = load_probe(earlier / method), load_probe(later / method)
            states = load_test_states(later)
            for layer in range(len(a.layers)):
                wa, wb = a.direction()[layer], b.direction()[layer]
                if wa.norm() > 0 and wb.norm() > 0:
                    assert d["cosine"][k][layer] == pytest.approx(float(wa @ wb), abs=1e-5)
                else:  # a constant layer (resid.0 of the final "." here) has no direction
                    assert d["cosine"][k][layer] is None
                hits = sum(int((float(a.logits(states)[layer, i]) > 0) == bool(states.y[i]))
                           for i in range(states.n))
                assert d["previous_probe_accuracy"][k][layer] == pytest.approx(hits / states.n, abs=1e-6)
                scores = a.logits(states)[layer]
                pos, neg = scores[states.y == 1], scores[states.y == 0]
                wins = sum(float(p > q) + 0.5 * float(p == q) for p in pos for q in neg)
                assert d["previous_probe_auroc"][k][layer] == pytest.approx(wins / (len(pos) * len(neg)), abs=1e-6)
        # training moved the model: the checkpoints' probes are not all the same direction
        assert min(c for c in d["cosine"][0][1:] if c is not None) < 0.99
        own = torch.tensor(d["own_probe_accuracy"][-1][1:])
        assert float(own.max()) > 0.9  # the surface word is readable at the last checkpoint
    report = (out / "report.html").read_text()
    assert "Concept drift" in report and "earlier probe accuracy" in report
