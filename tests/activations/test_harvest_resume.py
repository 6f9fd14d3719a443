"""A harvest killed with SIGKILL mid-shard and run again ends byte-identical to an
uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from alignlab.activations import verify_store
from alignlab.cli import main

# 64 sequences of 32 tokens: 8 shards of 8 sequences, 4 batches of 2 per shard.
ARGS = [
    "harvest",
    "--model",
    "tiny-llama",
    "--tokens",
    "2048",
    "--seq-len",
    "32",
    "--batch-size",
    "2",
    "--shard-tokens",
    "256",
    "--sites",
    "resid.*,mlp.1",
]


def shard_bytes(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((store / "shards").iterdir())}


def _wait_until_mid_shard(proc: subprocess.Popen, shards: Path, timeout: float = 180.0) -> None:
    """Until at least two shards are finished and the next one is half-written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = list(shards.glob("shard-*.safetensors")) if shards.is_dir() else []
        writing = list(shards.glob(".shard-*.tmp")) if shards.is_dir() else []
        if len(finished) >= 2 and writing:
            return
        if proc.poll() is not None:
            raise AssertionError(f"harvest ended before it could be killed: {proc.communicate()}")
        time.sleep(0.01)
    raise AssertionError("harvest never reached its third shard")


def test_sigkill_mid_shard_then_rerun_matches_an_uninterrupted_harvest(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "reference")]) == 0
    out = tmp_path / "store"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ALIGNLAB_HARVEST_BATCH_DELAY": "0.05"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alignlab.cli", *ARGS, "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until_mid_shard(proc, out / "shards")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and len(manifest["completed_shards"]) < 8
    assert list((out / "shards").glob(".shard-*.tmp"))  # killed mid-shard
    assert not verify_store(out).ok

    assert main([*ARGS, "--out", str(out)]) == 0
    assert shard_bytes(out) == shard_bytes(tmp_path / "reference")
    assert verify_store(out).ok
    final = json.loads((out / "manifest.json").read_text())
    reference = json.loads((tmp_path / "reference" / "manifest.json").read_text())
    assert final["shards"] == reference["shards"] and final["stats"] == reference["stats"]
