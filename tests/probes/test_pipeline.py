"""run_probes end to end on a tiny model, the CLI in-process, artifacts, and concept drift."""

import json

import pytest
import torch

from alignlab.cli import main
from alignlab.errors import ArtifactError
from alignlab.models import load_model
from alignlab.probes import ProbeConfig, drift, load_probe, run_probes

FAST = dict(ccs_tries=2, ccs_epochs=60, bootstrap=50, random_directions=20, causal_statements=8)


def surface_csv(path, n=120, words=("apple", "stone")):
    """Labels that a random model's last-token state can see: which word the sentence holds."""
    lines = ["statement,label"]
    for i in range(n):
        word = words[i % 2]
        lines.append(f"Number {i} goes with the {word} here.,{int(word == words[0])}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_models):
    path = surface_csv(tmp_path_factory.mktemp("data") / "surface.csv")
    config = ProbeConfig(dataset=[str(path)], **FAST)
    return run_probes(tiny_models["tiny-llama"], config), path


def test_metrics_keys_per_method_and_layer(tiny_run, tiny_llama):
    results, _ = tiny_run
    probe = results.to_metrics()["probe"]
    n_layers = tiny_llama.n_layers + 1
    data = probe["surface"]
    assert data["pairs"] == "burns"  # no negations in the file: Yes/No questions
    for method in ("lr", "mean-diff", "lda", "ccs", "eigen", "random"):
        m = data[method]
        for key in ("accuracy", "auroc", "auroc_ci_low", "auroc_ci_high", "ece", "accuracy_ci_low"):
            assert len(m[key]) == n_layers, (method, key)
        assert 0 <= m["best_layer"] <= tiny_llama.n_layers
        lows, highs, mids = m["auroc_ci_low"], m["auroc_ci_high"], m["auroc"]
        assert all(lo <= mid + 1e-9 and mid <= hi + 1e-9 for lo, mid, hi in zip(lows, mids, highs))
    assert data["lr"]["best"]["accuracy"] > 0.9  # the surface word is linearly readable
    assert set(data["lm_baseline"]) >= {"accuracy", "auroc", "auroc_ci_low", "ece", "calibrated_accuracy"}
    controls = probe["controls"]["surface"]
    assert set(controls) == {"shuffled_labels", "random_directions", "distractor", "held_out_templates", "likelihood"}
    assert controls["shuffled_labels"]["lr"]["auroc"] < 0.8
    assert set(controls["distractor"]) == {"ccs", "eigen"}
    assert len(controls["random_directions"]["auroc_p95"]) == n_layers
    assert set(data["causal"]) == {"lr", "mean-diff"}
    json.dumps(results.to_metrics())  # serialisable as is


def test_cli_writes_run_and_probes_round_trip(tmp_path, capsys, tiny_run, tiny_models):
    _, path = tiny_run
    out = tmp_path / "run"
    code = main(["probe", "--model", "tiny-llama", "--dataset", str(path), "--methods", "lr,mean-diff",
                 "--no-controls", "--no-causal", "--bootstrap", "20", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["probe"]["surface"]["lr"]["best_layer"] >= 0
    assert json.loads((out / "config.json").read_text())["command"] == "probe"
    report = (out / "report.html").read_text()
    assert "Truth probes" in report and "data:image/png;base64," in report
    lm = tiny_models["tiny-llama"]
    probe = load_probe(out / "probes" / "surface" / "lr", lm)
    assert probe.method == "lr" and probe.best_layer == metrics["probe"]["surface"]["lr"]["best_layer"]
    with pytest.raises(ArtifactError, match="not on"):
        load_probe(out / "probes" / "surface" / "lr", tiny_models["tiny-gpt2"])
    with pytest.raises(ArtifactError, match="not a probe folder"):
        load_probe(out / "probes")


def test_damaged_probe_artifacts_raise_artifact_errors(tiny_run, tmp_path):
    import shutil

    from alignlab.probes.io import (
        CFG,
        TEST_STATES,
        WEIGHTS,
        load_test_states,
        save_probe,
        save_test_states,
    )

    results, _ = tiny_run
    probe = results.datasets["surface"].probes["lr"]
    good = save_probe(probe, tmp_path / "good", results.model, "surface")
    save_test_states(results.test_inputs("surface"), tmp_path / "good")
    assert load_test_states(tmp_path / "good").x.shape == results.test_inputs("surface").x.shape

    def damaged(name, change):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        change(folder)
        return folder

    truncated = damaged("truncated", lambda f: (f / WEIGHTS).write_bytes((f / WEIGHTS).read_bytes()[:40]))
    with pytest.raises(ArtifactError, match="not a readable safetensors file.*fit the probe again"):
        load_probe(truncated)
    no_layers = damaged("no_layers", lambda f: (f / CFG).write_text(json.dumps(
        {k: v for k, v in json.loads((f / CFG).read_text()).items() if k != "layers"})))
    with pytest.raises(ArtifactError, match="lacks layers"):
        load_probe(no_layers)
    states = damaged("states", lambda f: (f / TEST_STATES).write_bytes(b"\x00" * 16))
    with pytest.raises(ArtifactError, match="not a readable safetensors file.*--save-test-states"):
        load_test_states(states)
    with pytest.raises(ArtifactError, match="is missing"):
        load_test_states(tmp_path / "nowhere")


def test_saved_probe_scores_like_the_fitted_one(tiny_run, tmp_path):
    from alignlab.probes.io import save_probe

    results, _ = tiny_run
    for method in ("lr", "ccs"):
        probe = results.datasets["surface"].probes[method]
        folder = save_probe(probe, tmp_path / method, results.model, "surface")
        again = load_probe(folder)
        test = results.test_inputs("surface")
        torch.testing.assert_close(again.logits(test), probe.logits(test))


@pytest.mark.parametrize("argv, needle", [
    (["--methods", "lr,svm"], "unknown ['svm']"),
    (["--layers", "9-99"], "outside this model"),
    (["--templates", "x"], "--templates"),
    (["--dataset", "nope_dataset"], "unknown built-in dataset"),
    (["--methods", "ccs,eigen", "--pairs", "none"], "all need contrast pairs"),
    (["--dataset", "cities", "--templates", "0,9"], "--templates names templates [9]"),
    (["--dataset", "cities", "--held-out", "1,7"], "--held-out names templates [7]"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, needle):
    code = main(["probe", "--model", "tiny-llama", "--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


def test_transfer_matrix_over_two_datasets(tmp_path, tiny_llama):
    a = surface_csv(tmp_path / "fruit.csv")
    b = surface_csv(tmp_path / "other.csv", words=("apple", "brick"))
    config = ProbeConfig(dataset=[str(a), str(b)], methods="lr,mean-diff", pairs="none",
                         controls=False, causal=False, baseline=False, **FAST)
    results = run_probes(tiny_llama, config)
    transfer = results.to_metrics()["probe"]["transfer"]
    assert transfer["datasets"] == ["fruit", "other"]
    acc = transfer["methods"]["lr"]["accuracy"]
    assert len(acc) == 2 and len(acc[0]) == 2
    diagonal = results.to_metrics()["probe"]["fruit"]["lr"]["best"]["accuracy"]
    assert acc[0][0] == pytest.approx(diagonal)


def test_drift_between_checkpoints_of_different_seeds(tmp_path):
    """Checkpoints made with seeds 1, 1, 2: the repeat is identical, the new seed is not."""
    path = surface_csv(tmp_path / "surface.csv")
    config = ProbeConfig(dataset=[str(path)], methods="lr", pairs="none", controls=False, causal=False,
                         baseline=False, **FAST)
    runs = [run_probes(load_model("tiny-llama", seed=s), config) for s in (1, 1, 2)]
    probes = [r.datasets["surface"].probes["lr"] for r in runs]
    tests = [r.test_inputs("surface") for r in runs]
    out = drift(probes, tests)
    same, changed = out["steps"]
    deep = slice(1, None)  # resid.0 (the "." embedding) is constant: no direction there
    assert same["cosine"][deep] == pytest.approx([1.0] * (len(same["cosine"]) - 1), abs=1e-5)
    assert same["previous_probe_accuracy"] == same["own_probe_accuracy"]
    assert max(abs(c) for c in changed["cosine"][deep]) < 0.9  # another random model: another basis
    own = changed["own_probe_accuracy"][-1]
    assert own > 0.9 and changed["previous_probe_accuracy"][-1] < own


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["probe", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--dataset", "--methods", "--pairs", "--no-controls", "--bootstrap", "--ccs-epochs"):
        assert flag in out


def test_report_shows_transfer_heatmap_controls_and_gap(tmp_path, capsys):
    a = surface_csv(tmp_path / "fruit.csv")
    b = surface_csv(tmp_path / "other.csv", words=("apple", "brick"))
    out = tmp_path / "run"
    code = main(["probe", "--model", "tiny-llama", "--dataset", str(a), "--dataset", str(b),
                 "--methods", "lr,mean-diff,ccs", "--no-causal", "--bootstrap", "20", "--ccs-tries", "2",
                 "--ccs-epochs", "60", "--random-directions", "20", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    probe = json.loads((out / "metrics.json").read_text())["probe"]
    report = (out / "report.html").read_text()
    assert "heatmaps of test accuracy, train dataset by test dataset" in report
    for row in ("shuffled labels", "random directions", "distractor x2 truth", "likelihood"):
        assert row in report, row
    # gap recovered: (method AUROC - the model's own AUROC) / (lr's - the model's), at the best layers
    data = probe["fruit"]
    lm_auc, ceiling = data["lm_baseline"]["auroc"], data["lr"]["best"]["auroc"]
    assert data["gap_recovered"]["ceiling_method"] == "lr"
    for method in ("lr", "mean-diff", "ccs"):
        expected = (data[method]["best"]["auroc"] - lm_auc) / (ceiling - lm_auc)
        assert data["gap_recovered"][method] == pytest.approx(expected, abs=1e-5)


def test_test_labels_never_reach_the_fitted_probe(tmp_path, tiny_llama):
    """The same statements with every test label flipped: the probes (normalisation, sign,
    layer, calibration) are bit-identical and only the test accuracy changes, to 1 - a."""
    from alignlab.probes.datasets import read_csv

    plain = read_csv(surface_csv(tmp_path / "plain.csv"))
    splits = plain.column("split")
    assert "test" in splits

    def write(name, flip_test):
        rows = [f"{t},{1 - y if flip_test and s == 'test' else y},{s}"
                for t, y, s in zip(plain.statements, plain.labels, splits)]
        (tmp_path / f"{name}.csv").write_text("\n".join(["statement,label,split", *rows]) + "\n", encoding="utf-8")

    write("plain_split", flip_test=False)
    write("flipped", flip_test=True)
    runs = {}
    for name in ("plain_split", "flipped"):
        config = ProbeConfig(dataset=[str(tmp_path / f"{name}.csv")], methods="lr,mean-diff,lda,ccs,eigen",
                             controls=False, causal=False, baseline=False, **FAST)
        runs[name] = run_probes(tiny_llama, config)
    for method in ("lr", "mean-diff", "lda", "ccs", "eigen"):
        a = runs["plain_split"].datasets["plain_split"].probes[method]
        b = runs["flipped"].datasets["flipped"].probes[method]
        assert a.best_layer == b.best_layer
        assert a.state.keys() == b.state.keys()
        for key in a.state:
            assert torch.equal(a.state[key], b.state[key]), (method, key)
        acc_a = runs["plain_split"].datasets["plain_split"].evaluations[method].at_best()["accuracy"]
        acc_b = runs["flipped"].datasets["flipped"].evaluations[method].at_best()["accuracy"]
        assert acc_b == pytest.approx(1 - acc_a, abs=1e-6)


def test_dataset_builtin_means_every_builtin_dataset(capsys, tmp_path):
    from alignlab.probes.datasets import builtin_names

    specs = ProbeConfig(dataset=["builtin"]).dataset_specs()
    assert specs == builtin_names() and {"cities", "neg_cities", "larger_than"} <= set(specs)
    assert ProbeConfig(dataset=["builtin", "my.csv"]).dataset_specs()[-1] == "my.csv"
    code = main(["probe", "--model", "tiny-llama", "--dataset", "cities", "--dataset", "builtin",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --dataset names a dataset twice")
    assert not (tmp_path / "run").exists()
