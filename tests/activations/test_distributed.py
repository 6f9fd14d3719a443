"""Under torchrun (gloo, CPU, 2 ranks) a harvest equals a one-process harvest of the same data:
each shard byte for byte, and so every row in the same order once read back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from alignlab.activations import ActivationStore, verify_store
from alignlab.cli import main

ARGS = [
    "harvest",
    "--model",
    "tiny-gptneox",
    "--tokens",
    "2048",
    "--seq-len",
    "32",
    "--batch-size",
    "3",
    "--shard-tokens",
    "256",
    "--sites",
    "resid.*,attn.2",
    "--dtype",
    "float32",
]  # 8 shards


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).parent / "torchrun"),
        "--nproc_per_node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "alignlab.cli",
        *argv,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def _one_process(out: Path) -> None:
    """The reference, with the same per-process thread count torchrun gives each rank."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*ARGS, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)


def test_two_ranks_equal_one_process(tmp_path):
    result = torchrun(*ARGS, "--out", str(tmp_path / "ranks"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("store ") == 1  # only rank 0 reports
    _one_process(tmp_path / "single")

    ranks, single = tmp_path / "ranks", tmp_path / "single"
    names = sorted(p.name for p in (single / "shards").iterdir())
    assert len(names) == 8 and names == sorted(p.name for p in (ranks / "shards").iterdir())
    for name in names:
        assert (ranks / "shards" / name).read_bytes() == (single / "shards" / name).read_bytes(), (
            name
        )
    m_ranks = json.loads((ranks / "manifest.json").read_text())
    m_single = json.loads((single / "manifest.json").read_text())
    for key in (
        "shards",
        "completed_shards",
        "stats",
        "sites",
        "data",
        "model",
        "harvest",
        "complete",
    ):
        assert m_ranks[key] == m_single[key], key
    assert verify_store(ranks).ok

    a, b = ActivationStore.open(ranks), ActivationStore.open(single)
    for x, y in zip(
        a.batches(batch_size=500, shuffle=False), b.batches(batch_size=500, shuffle=False)
    ):
        assert (
            torch.equal(x.seq, y.seq)
            and torch.equal(x.pos, y.pos)
            and torch.equal(x.tokens, y.tokens)
        )
        for site in a.sites:
            assert torch.equal(x.acts[site], y.acts[site])


def test_two_ranks_resume_a_one_process_store_and_refuse_other_arguments(tmp_path):
    _one_process(tmp_path / "single")
    store = tmp_path / "single"
    reference = {p.name: p.read_bytes() for p in (store / "shards").iterdir()}
    m = json.loads((store / "manifest.json").read_text())
    m["shards"], m["completed_shards"], m["complete"], m["stats"] = (
        m["shards"][:2],
        [0, 1],
        False,
        None,
    )
    (store / "manifest.json").write_text(json.dumps(m))
    for index in (2, 3, 6):
        (store / "shards" / f"shard-{index:05d}.safetensors").unlink()

    result = torchrun(*ARGS, "--out", str(store))
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p.name: p.read_bytes() for p in (store / "shards").iterdir()} == reference
    assert verify_store(store).ok

    refused = torchrun(
        *[a if a != "float32" else "float16" for a in ARGS], "--out", str(store), timeout=180
    )
    assert refused.returncode != 0
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    # torchrun stops the other rank once one exits, so it may not get to print its line
    assert 1 <= len(errors) <= 2
    assert all("--dtype float32 (store) vs float16 (now)" in e for e in errors)
