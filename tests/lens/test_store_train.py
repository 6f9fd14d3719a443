"""`lens train --store`: a tuned lens trained from an activation store is the one trained on the fly.

The store holds the residuals the model computes, so reading them instead of recomputing them
changes nothing but rounding: a float32 store harvested in batches of another size differs from
the on-the-fly capture by float32 rounding in the forward pass (~1e-6 relative), and a float16
store by float16 rounding of every residual (~5e-4 relative), which training and evaluation
carry through to the metrics.
"""

import json

import pytest
import torch

from alignlab.activations import ActivationStore
from alignlab.cli import main
from alignlab.lens import ModelRows, StoreRows
from alignlab.lens.pipeline import split_rows

SEQ_LEN, EVAL_TOKENS, TOKENS = 32, 128, 768  # 4 held-out rows, 24 training rows
COMMON = ["--model", "tiny-llama", "--seq-len", SEQ_LEN]
TRAIN = [*COMMON, "--tokens", TOKENS, "--eval-tokens", EVAL_TOKENS, "--batch-size", 4, "--steps", 9]


def _main(*argv):
    return main([str(a) for a in argv])


def _harvest(out, dtype, model="tiny-llama", sites="resid.*"):
    # batch size 5, not the trainer's 4: the rows are computed in other batches than on the fly
    assert _main("harvest", "--model", model, "--seq-len", SEQ_LEN, "--tokens", EVAL_TOKENS + TOKENS,
                 "--dtype", dtype, "--batch-size", 5, "--shard-tokens", 256, "--sites", sites,
                 "--out", out) == 0
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return {dtype: _harvest(root / dtype, dtype) for dtype in ("float32", "float16")}


@pytest.fixture(scope="module")
def on_the_fly(tmp_path_factory):
    out = tmp_path_factory.mktemp("fly") / "run"
    assert _main("lens", "train", *TRAIN, "--out", out) == 0
    return json.loads((out / "metrics.json").read_text())["lens"]


def test_store_rows_are_the_model_rows_in_the_same_order(tiny_llama, stores):
    split = split_rows(tiny_llama, "builtin", SEQ_LEN, EVAL_TOKENS, TOKENS)
    store = ActivationStore.open(stores["float32"])
    n_eval = split.held_out.shape[0]
    seqs = range(n_eval, n_eval + split.train.shape[0])
    ours = StoreRows(store, seqs, tiny_llama.n_layers, tiny_llama.tokenizer, 4, shuffle=True, seed=3)
    fly = ModelRows(tiny_llama, split.train, 4, shuffle=True, seed=3)
    for _ in range(2):  # a second pass has a new order, the same in both
        pairs = list(zip(ours, fly, strict=True))
        assert len(pairs) == 6
        for a, b in pairs:
            assert torch.equal(a.targets, b.targets) and a.n_bytes == b.n_bytes
            torch.testing.assert_close(a.resid, b.resid, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-4), ("float16", 2e-2)])
def test_store_trained_lens_matches_the_on_the_fly_one(stores, on_the_fly, tmp_path, dtype, rtol):
    out = tmp_path / "run"
    assert _main("lens", "train", *TRAIN, "--store", stores[dtype], "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())["lens"]
    assert metrics["train"]["source"] == "store" and on_the_fly["train"]["source"] == "model"
    assert metrics["logit"] == on_the_fly["logit"]  # evaluation runs the model either way
    for key in ("kl", "ce", "entropy"):
        torch.testing.assert_close(torch.tensor(metrics["tuned"][key]),
                                   torch.tensor(on_the_fly["tuned"][key]), rtol=rtol, atol=1e-6)
    assert metrics["train"]["final_loss"] == pytest.approx(on_the_fly["train"]["final_loss"], rel=rtol)
    assert sum(metrics["tuned"]["kl"]) < sum(metrics["logit"]["kl"])


def _error(capsys, *argv):
    assert _main(*argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_store_errors_are_one_line(stores, tmp_path, capsys):
    small = [*COMMON, "--eval-tokens", EVAL_TOKENS, "--batch-size", 4, "--steps", 2]
    store = stores["float32"]
    msg = _error(capsys, "lens", "train", *small, "--tokens", 4 * TOKENS, "--store", store,
                 "--out", tmp_path / "a")
    assert "holds 28 sequences" in msg and "--tokens 768" in msg
    msg = _error(capsys, "lens", "train", *small, "--tokens", TOKENS, "--store", store,
                 "--model", "tiny-qwen2", "--out", tmp_path / "b")
    assert "harvested from 'tiny-llama'" in msg
    assert not (tmp_path / "b" / "config.json").exists()  # refused before the run folder starts
    few_sites = _harvest(tmp_path / "few", "float32", sites="resid.0-2")
    msg = _error(capsys, "lens", "train", *small, "--tokens", TOKENS, "--store", few_sites,
                 "--out", tmp_path / "c")
    assert "lacks resid.3" in msg and "--sites 'resid.*'" in msg
    msg = _error(capsys, "lens", "train", *small, "--tokens", TOKENS, "--store", tmp_path / "none",
                 "--out", tmp_path / "d")
    assert "--store" in msg and "not a folder" in msg
