"""The activation store: round trip against direct capture, statistics against a slow
reference, the manifest, verify, resume bookkeeping and every error a user can cause."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from alignlab.activations import (
    ActivationStore,
    HarvestConfig,
    harvest,
    run_with_sites,
    verify_store,
)
from alignlab.activations import writer as writer_module
from alignlab.cli import main
from alignlab.data import read_corpus, tokenize_corpus
from alignlab.errors import ConfigError, StoreError

# 32 sequences of 32 tokens, 8 per shard (4 shards), two batches of 4 per shard.
ARGS = dict(model="tiny-llama", tokens=1024, seq_len=32, batch_size=4, shard_tokens=256)


def make_store(lm, out, **overrides):
    return harvest(HarvestConfig(out=str(out), **{**ARGS, **overrides}), lm=lm)


def checksums(store_path):
    return {p.name: p.read_bytes() for p in sorted((store_path / "shards").iterdir())}


def token_rows(lm, n_tokens=1024, seq_len=32):
    return tokenize_corpus(read_corpus("builtin"), lm.tokenizer, seq_len, n_tokens).tokens


@pytest.fixture(scope="module")
def f32_store(tiny_llama, tmp_path_factory):
    return make_store(
        tiny_llama, tmp_path_factory.mktemp("f32") / "store", dtype="float32", sites="*"
    )


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- round trip -----------------------------------------------------------------------------


def test_float32_rows_equal_direct_capture_of_the_same_batches(tiny_llama, f32_store):
    tokens = token_rows(tiny_llama)
    assert f32_store.sites == [s.name for s in _all_sites(tiny_llama)]
    for first in range(0, 32, 4):  # the harvest's own batches: 4 sequences from each shard start
        ids = tokens[first : first + 4]
        direct = run_with_sites(tiny_llama, ids, "*")
        rows = f32_store.rows(range(first * 32, (first + 4) * 32))
        for site in f32_store.sites:
            expected = direct.acts[site].reshape(-1, tiny_llama.d_model)
            assert torch.equal(rows.acts[site], expected), site
        assert torch.equal(rows.tokens, ids.reshape(-1))


def _all_sites(lm):
    from alignlab.activations import expand_sites

    return expand_sites("*", lm.n_layers)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_rows_are_the_rounded_capture(tiny_llama, tmp_path, dtype):
    store = make_store(tiny_llama, tmp_path / "s", dtype=dtype, sites="resid.1,mlp.2")
    ids = token_rows(tiny_llama)[8:12]  # shard 1's first batch
    direct = run_with_sites(tiny_llama, ids, "resid.1,mlp.2")
    rows = store.rows(range(8 * 32, 12 * 32))
    for site in ("resid.1", "mlp.2"):
        expected = direct.acts[site].reshape(-1, 64).to(getattr(torch, dtype))
        assert rows.acts[site].dtype == getattr(torch, dtype)
        assert torch.equal(rows.acts[site], expected)


def test_shards_are_plain_safetensors(f32_store):
    """safetensors' own reader (the reference) sees the same rows, tokens and positions."""
    shard = f32_store.path / "shards" / "shard-00002.safetensors"
    with safe_open(shard, "pt") as f:
        assert f.metadata()["shard"] == "2" and f.metadata()["first_seq"] == "16"
        seq_index = f.get_tensor("seq_index")
        assert seq_index.tolist() == list(range(16, 24))
        resid = f.get_tensor("resid.3")  # (8 * 32, 64)
        tokens = f.get_tensor("tokens")  # (8, 32)
    rows = f32_store.rows(range(16 * 32, 24 * 32), ["resid.3"])
    assert torch.equal(rows.acts["resid.3"], resid)
    assert torch.equal(rows.tokens, tokens.reshape(-1))
    assert torch.equal(rows.seq, seq_index.repeat_interleave(32))


# --- statistics -----------------------------------------------------------------------------


def test_statistics_match_a_float64_reference(tiny_llama, f32_store):
    tokens = token_rows(tiny_llama)
    captured = [run_with_sites(tiny_llama, tokens[i : i + 4], "resid.*") for i in range(0, 32, 4)]
    for site in ("resid.0", "resid.2", "resid.4"):
        x = np.concatenate([c.acts[site].double().numpy() for c in captured])  # (32, 32, 64)
        rest = x[:, 1:].reshape(-1, 64)
        flat = x.reshape(-1, 64)
        stats = f32_store.stats(site)
        assert stats.count == flat.shape[0] and stats.count_excl_first == rest.shape[0]
        np.testing.assert_allclose(stats.mean.numpy(), flat.mean(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats.var.numpy(), flat.var(0), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(
            stats.mean_excl_first.numpy(), rest.mean(0), rtol=1e-6, atol=1e-9
        )
        np.testing.assert_allclose(stats.var_excl_first.numpy(), rest.var(0), rtol=1e-5, atol=1e-9)
        assert stats.mean_norm == pytest.approx(np.linalg.norm(flat, axis=1).mean(), rel=1e-6)
        assert stats.mean_norm_excl_first == pytest.approx(
            np.linalg.norm(rest, axis=1).mean(), rel=1e-6
        )


# --- manifest ---------------------------------------------------------------------------------


def test_manifest_records_what_made_the_store(tiny_llama, f32_store):
    m = json.loads((f32_store.path / "manifest.json").read_text())
    assert m["format"] == "alignlab.activation_store" and m["format_version"] == 1
    assert m["complete"] is True and m["alignlab_version"]
    assert m["model"]["model"] == "tiny-llama"
    assert m["model"]["unembedding_hash"] == tiny_llama.anatomy.unembedding_hash()
    assert (
        m["data"]["fingerprint"]
        == tokenize_corpus(read_corpus("builtin"), tiny_llama.tokenizer, 32, 1024).fingerprint
    )
    assert m["harvest"] == {
        **ARGS,
        "corpus": "builtin",
        "revision": None,
        "sites": "*",
        "dtype": "float32",
        "bos": True,
        "device": "cpu",
    }
    assert m["n_tokens"] == 1024 and m["seq_len"] == 32 and m["n_shards"] == 4
    assert m["completed_shards"] == [0, 1, 2, 3]
    assert {s["width"] for s in m["sites"]} == {64}
    for record in m["shards"]:
        assert record["sha256"] == _sha256(f32_store.path / record["file"])
    assert set(m["stats"]) == set(f32_store.sites)
    assert not list(f32_store.path.glob("**/*.tmp"))


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rerun_of_a_complete_store_changes_nothing(tiny_llama, small_store):
    store = ActivationStore.open(small_store)
    before = {p: p.stat().st_mtime_ns for p in (small_store / "shards").iterdir()}
    again = make_store(tiny_llama, small_store)
    assert {p: p.stat().st_mtime_ns for p in (small_store / "shards").iterdir()} == before
    assert again.manifest.to_json() == store.manifest.to_json()


def test_finished_shards_missing_from_the_manifest_are_adopted(
    tiny_llama, pristine_store, tmp_path
):
    """A kill between a shard's rename and the manifest update (or on rank > 0)."""
    reference = ActivationStore.open(pristine_store)
    shutil.copytree(pristine_store, tmp_path / "s")
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    m["shards"], m["completed_shards"], m["complete"], m["stats"] = (
        m["shards"][:1],
        [0],
        False,
        None,
    )
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    (tmp_path / "s" / "shards" / "shard-00003.safetensors").unlink()  # never finished: redone
    (tmp_path / "s" / "shards" / ".shard-00003.safetensors.tmp").write_bytes(b"half a shard")
    store = make_store(tiny_llama, tmp_path / "s")
    assert checksums(tmp_path / "s") == checksums(pristine_store)
    assert store.manifest.to_json() == reference.manifest.to_json()


def test_different_arguments_on_an_existing_store_are_refused(tiny_llama, small_store):
    before = checksums(small_store), (small_store / "manifest.json").read_text()
    with pytest.raises(StoreError) as exc:
        make_store(tiny_llama, small_store, tokens=2048, dtype="float32")
    message = str(exc.value)
    assert "--tokens 1024 (store) vs 2048 (now)" in message
    assert "--dtype float16 (store) vs float32 (now)" in message
    assert "--seq-len" not in message and "\n" not in message
    with pytest.raises(StoreError, match="--sites"):
        make_store(tiny_llama, small_store, sites="resid.1")
    assert (checksums(small_store), (small_store / "manifest.json").read_text()) == before


def test_a_folder_that_is_not_a_store_is_refused(tiny_llama, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an activation store"):
        make_store(tiny_llama, tmp_path / "s")
    assert (tmp_path / "s" / "notes.txt").read_text() == "mine"


def test_config_validation():
    with pytest.raises(ConfigError, match="--shard-tokens"):
        HarvestConfig(out="x", tokens=10, seq_len=64, shard_tokens=32)
    with pytest.raises(ConfigError, match="--tokens"):
        HarvestConfig(out="x", tokens=0)
    with pytest.raises(ConfigError, match="--dtype"):
        HarvestConfig(out="x", tokens=10, dtype="int8")


def test_loaded_model_must_match_the_config(tiny_models, tmp_path):
    with pytest.raises(ConfigError, match="loaded model is 'tiny-gpt2'"):
        make_store(tiny_models["tiny-gpt2"], tmp_path / "s")


# --- disk full --------------------------------------------------------------------------------


def test_disk_full_is_a_clear_error_and_the_store_resumes(
    tiny_llama, pristine_store, tmp_path, monkeypatch
):
    real, headers = writer_module._pwrite_all, []

    def full_after_a_while(fd, data, offset):
        if offset == 0:
            headers.append(fd)  # a new shard begins with its header
        elif len(headers) == 2:  # the disk fills up in shard 1's first batch
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, offset)

    monkeypatch.setattr(writer_module, "_pwrite_all", full_after_a_while)
    with pytest.raises(StoreError) as exc:
        make_store(tiny_llama, tmp_path / "s")
    message = str(exc.value)
    assert "No space left on device (the disk is full)" in message
    assert (
        "shard shards/shard-00001.safetensors" in message
        and "run the same command again" in message
    )
    assert not list((tmp_path / "s" / "shards").glob(".*"))  # the unfinished shard is removed
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["completed_shards"] == [0] and m["complete"] is False
    report = verify_store(tmp_path / "s")
    assert not report.ok and "incomplete store: 1 of 4 shards" in report.problems[0]

    monkeypatch.setattr(writer_module, "_pwrite_all", real)
    make_store(tiny_llama, tmp_path / "s")
    assert checksums(tmp_path / "s") == checksums(pristine_store)
    assert verify_store(tmp_path / "s").ok


def test_disk_full_through_the_cli_is_one_error_line(tmp_path, capsys, monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_module, "_pwrite_all", full)
    code, _, err = _cli(
        capsys,
        "harvest",
        "--model",
        "tiny-llama",
        "--tokens",
        "256",
        "--seq-len",
        "32",
        "--out",
        str(tmp_path / "s"),
    )
    assert code == 2 and "disk is full" in _one_error(err)


# --- verify and info --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine_store(tiny_llama, tmp_path_factory):
    return make_store(tiny_llama, tmp_path_factory.mktemp("pristine") / "s").path


@pytest.fixture
def small_store(pristine_store, tmp_path):
    """A fresh copy of a float16 store of every residual site, for a test to damage."""
    return Path(shutil.copytree(pristine_store, tmp_path / "s"))


def test_verify_ok_is_one_line(small_store, capsys):
    code, out, err = _cli(capsys, "store", "verify", str(small_store))
    assert code == 0 and err == ""
    assert out.strip().startswith("OK:") and len(out.strip().splitlines()) == 1


def test_verify_names_a_shard_with_a_flipped_byte(small_store, capsys):
    shard = small_store / "shards" / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    code, _, err = _cli(capsys, "store", "verify", str(small_store))
    line = _one_error(err)
    assert code == 2
    assert "shard shards/shard-00001.safetensors is damaged: sha256" in line
    assert "shard-00000" not in line and "shard-00002" not in line


def test_verify_names_extra_missing_and_truncated_files(small_store, capsys):
    (small_store / "shards" / "stray.bin").write_bytes(b"x")
    (small_store / "shards" / "shard-00002.safetensors").unlink()
    shard3 = small_store / "shards" / "shard-00003.safetensors"
    shard3.write_bytes(shard3.read_bytes()[:-10])
    code, _, err = _cli(capsys, "store", "verify", str(small_store))
    line = _one_error(err)
    assert code == 2
    assert "extra file shards/stray.bin" in line
    assert "missing shard shards/shard-00002.safetensors" in line
    assert "shard shards/shard-00003.safetensors is damaged" in line


def test_verify_reports_an_incomplete_store(small_store, capsys):
    m = json.loads((small_store / "manifest.json").read_text())
    m["shards"], m["completed_shards"], m["complete"] = m["shards"][:2], [0, 1], False
    (small_store / "manifest.json").write_text(json.dumps(m))
    (small_store / "shards" / "shard-00003.safetensors").unlink()
    code, _, err = _cli(capsys, "store", "verify", str(small_store))
    line = _one_error(err)
    assert code == 2 and "incomplete store: 2 of 4 shards" in line
    assert "extra file shards/shard-00002.safetensors" not in line  # expected, just unlisted


def test_verify_and_info_of_something_that_is_not_a_store(tmp_path, capsys):
    code, _, err = _cli(capsys, "store", "verify", str(tmp_path / "nothing"))
    assert code == 2 and "does not exist" in _one_error(err)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text("{not json")
    code, _, err = _cli(capsys, "store", "info", str(tmp_path / "m"))
    assert code == 2 and "cannot be read as JSON" in _one_error(err)


def test_info_shows_model_sites_and_statistics(small_store, capsys):
    code, out, _ = _cli(capsys, "store", "info", str(small_store))
    assert code == 0
    for fragment in (
        "tiny-llama",
        "1024 (32 sequences x 32)",
        "resid.0, resid.1",
        "float16",
        "4 of 4 finished",
        "64 (every site)",
        "mean norm",
        "excl. pos 0",
    ):
        assert fragment in out, fragment
    stats = ActivationStore.open(small_store).stats("resid.4")
    assert f"{stats.mean_norm:.3g}" in out


def test_opening_an_incomplete_store_for_reading_is_refused(small_store):
    m = json.loads((small_store / "manifest.json").read_text())
    m["complete"] = False
    (small_store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match="incomplete"):
        ActivationStore.open(small_store)
    assert ActivationStore.open(small_store, allow_incomplete=True).n_rows == 1024


# --- CLI errors ---------------------------------------------------------------------------------


def _harvest_cli(capsys, tmp_path, *extra):
    return _cli(
        capsys,
        "harvest",
        "--model",
        "tiny-llama",
        "--tokens",
        "256",
        "--seq-len",
        "32",
        "--out",
        str(tmp_path / "store"),
        *extra,
    )


def test_cli_harvest_writes_a_store(tmp_path, capsys):
    code, out, err = _harvest_cli(capsys, tmp_path, "--shard-tokens", "64")
    assert code == 0 and err == ""
    assert "256 tokens x 5 sites (float16), 4 shards" in out
    assert verify_store(tmp_path / "store").ok


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--corpus", "{tmp}/missing.txt"], "does not exist"),
        (["--corpus", "{tmp}/empty.txt"], "has no text"),
        (["--sites", "resid.9"], "layer 9 is out of range"),
        (["--sites", "bogus.1"], "unknown site 'bogus.1'"),
        (["--shard-tokens", "8"], "--shard-tokens (8) must hold at least one sequence"),
        (["--dtype", "int8"], "invalid choice: 'int8'"),
        (["--tokens", "99999999"], "asked for 99999999 tokens"),
    ],
)
def test_cli_harvest_bad_inputs(tmp_path, capsys, extra, fragment):
    (tmp_path / "empty.txt").write_text("  \n")
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    code, _, err = _harvest_cli(capsys, tmp_path, *extra)
    assert code == 2
    assert fragment in _one_error(err)


def test_cli_harvest_into_an_unwritable_place(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    code, _, err = _cli(
        capsys,
        "harvest",
        "--model",
        "tiny-llama",
        "--tokens",
        "64",
        "--seq-len",
        "32",
        "--out",
        str(tmp_path / "a_file" / "store"),
    )
    assert code == 2 and "cannot write to output folder" in _one_error(err)
    code, _, err = _cli(
        capsys,
        "harvest",
        "--model",
        "tiny-llama",
        "--tokens",
        "64",
        "--seq-len",
        "32",
        "--out",
        str(tmp_path / "a_file"),
    )
    assert code == 2 and "exists and is a file" in _one_error(err)
