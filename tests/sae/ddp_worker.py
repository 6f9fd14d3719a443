"""Run by tests/sae/test_ddp.py under ``torchrun --nproc_per_node 2`` (not a test module itself).

Each rank trains the same coder on its own slice of every batch (gloo on CPU), saves its final
weights as ``rank<r>.safetensors`` in OUT, then runs ``alignlab sae train`` under DDP into OUT/run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from alignlab.cli import main
from alignlab.sae import CoderConfig
from alignlab.sae.data import TensorSource
from alignlab.sae.distributed import init_from_env
from alignlab.sae.synthetic import PlantedConfig, plant_features, sample
from alignlab.sae.trainer import Trainer, TrainSettings


def run(out: Path) -> None:
    torch.set_num_threads(1)
    info = init_from_env()
    x = sample(plant_features(PlantedConfig(d=16, n_features=48, mean_active=3)), 8192).x
    source = TensorSource(x, batch_size=64, rank=info.rank, world=info.world)
    trainer = Trainer({"x": CoderConfig("topk", 16, 64, k=3)}, TrainSettings(n_steps=source.n_batches))
    result = trainer.fit(source)
    save_file({k: v.contiguous() for k, v in result.coders["x"].state_dict().items()},
              str(out / f"rank{info.rank}.safetensors"))
    summary = {"world": info.world, "first_fvu": result.history[0]["x"]["fvu"], "final_fvu": result.final["x"].fvu,
               "tokens": result.tokens, "since_fired": trainer.states["x"].since_fired.tolist()}
    (out / f"rank{info.rank}.json").write_text(json.dumps(summary))
    code = main(["sae", "train", "--model", "tiny-llama", "--site", "resid.2", "--tokens", "4096",
                 "--width", "128", "--k", "8", "--batch-tokens", "1024", "--seq-len", "64",
                 "--eval-tokens", "1024", "--no-browse", "--out", str(out / "run")])
    (out / f"rank{info.rank}.cli").write_text(str(code))


if __name__ == "__main__":
    run(Path(sys.argv[1]))
