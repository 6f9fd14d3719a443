"""Data-parallel training under torchrun: 2 ranks on CPU (gloo) end with identical weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_train_one_coder(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
         str(_free_port()), str(WORKER), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # gradients averaged, updates identical
    s0, s1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert s0["world"] == 2 and s0["tokens"] == 8192  # both ranks' rows counted
    assert s0["since_fired"] == s1["since_fired"]  # dead-latent counts agree
    assert s0["final_fvu"] < s0["first_fvu"]
    # the CLI under DDP: rank 0 alone wrote the run, and both ranks finished
    assert (tmp_path / "rank0.cli").read_text() == "0" and (tmp_path / "rank1.cli").read_text() == "0"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["sae_train"]["tokens"] + metrics["sae_train"]["sink_tokens"] == 4096
