"""alignlab's tuned lens against the tuned-lens package's: held-out KL per layer, and wall time.

    .venv-peers/bin/python benchmarks/tuned_lens.py [--model smollm2-135m] [--steps 12]
        [--batch-size 2] [--seq-len 128] [--eval-rows 4] [--threads 1] [--source model|store]
        [--peer-optimizer sgd] [--no-peer]

Run it with the peers venv (``make peers``): it needs the tuned-lens package (0.2.0) and
torchdata 0.9 beside alignlab. One model, loaded once with alignlab's loader (for
smollm2-135m the GGUF file of the embedded default; nothing is downloaded), is handed to both:

- the logit lens (no training);
- alignlab's tuned lens, ``train_tuned_lens`` on rows captured from the model on the fly;
- the tuned-lens package's tuned lens, trained by its own ``Train.execute`` (its training loop,
  optimizer, schedule and loss, at its defaults: Nesterov SGD, lr 1, KL loss, clip 1) on the
  same training rows, ``--steps`` steps of ``--batch-size`` rows each, so the same tokens and
  token budget; the package saves its lens and alignlab imports it (``import_tuned_lens``).

With ``--source store`` alignlab's rows are first harvested into an activation store
(``resid.*``, ``--store-dtype``) and read back with ``StoreRows``; the harvest counts in its
training time.

All three are scored by the same code (``evaluate_lenses``) on the same held-out rows (the
corpus's first ``--eval-rows`` rows; training rows come after them). Training time is wall time
end to end: for alignlab, ``train_tuned_lens`` including the model's forward passes; for the
package, building its ``Train`` and running ``execute`` (its setup, data loader, forward passes
and saving). Loading the model is shared and not counted.

The package needs patches to run on current torch/transformers; they live here only, applied
for the duration of its run (``peer_patches``):

- its loader calls ``from_pretrained(..., load_in_8bit=False)``, which transformers 5 rejects,
  and its data loader downloads a dataset: both are replaced, handing it alignlab's model and
  the training rows as a ``datasets.Dataset``;
- it trains under ``torch.autocast(bfloat16)`` even on CPU, about 26x slower there: on CPU the
  autocast is replaced by no autocast, so it trains in float32;
- it imports ``torchdata.dataloader2``, which torchdata 0.9 still has (the peers venv pins it).
  (Its eval CLI rejects ``--lens_types``; the eval CLI is not used: metrics are alignlab's.)

Issue 4's target: alignlab's KL no worse than the package's at every layer, in at most a
third of its wall time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# This file is named tuned_lens.py: drop its folder from the path, or `import tuned_lens` finds it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no downloads
os.environ.setdefault("TQDM_DISABLE", "1")  # the package's progress bar

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from alignlab.activations import HarvestConfig, harvest  # noqa: E402
from alignlab.lens import (  # noqa: E402
    LogitLens,
    ModelRows,
    StoreRows,
    TrainSettings,
    TunedLens,
    evaluate_lenses,
    import_tuned_lens,
    rows_from_tokens,
    train_tuned_lens,
)
from alignlab.lens.pipeline import Split, split_rows  # noqa: E402
from alignlab.models import EMBEDDED_DEFAULT, LoadedModel, load_model  # noqa: E402


@dataclass
class Trained:
    lens: TunedLens
    seconds: float  # wall time, end to end


class Renamed:
    """A lens under another name, so two tuned lenses can be scored side by side."""

    def __init__(self, lens: TunedLens, name: str):
        self.lens, self.name = lens, name

    def transform(self, h: Tensor, layer: int) -> Tensor:
        return self.lens.transform(h, layer)


def train_alignlab(lm: LoadedModel, split: Split, args, tmp: Path) -> Trained:
    """alignlab's lens on the training rows, from the model on the fly or through a store."""
    settings = TrainSettings(steps=args.steps, optimizer=args.optimizer, lr=args.lr)
    start = time.perf_counter()
    if args.source == "store":
        source = harvested_rows(lm, split, args, tmp / "store")
    else:
        source = ModelRows(lm, split.train, args.batch_size, shuffle=True, seed=args.seed)
    result = train_tuned_lens(lm, source, settings)
    return Trained(result.lens, time.perf_counter() - start)


def harvested_rows(lm: LoadedModel, split: Split, args, out: Path) -> StoreRows:
    """Harvest ``resid.*`` of the corpus's first rows (held-out ones included: a store starts
    at the corpus's start), and read the training rows back from the store."""
    n_eval, n_train = split.held_out.shape[0], args.steps * args.batch_size
    config = HarvestConfig(out=str(out), tokens=(n_eval + n_train) * args.seq_len, model=lm.spec,
                           seq_len=args.seq_len, dtype=args.store_dtype, batch_size=args.batch_size)
    store = harvest(config, lm=lm)
    return StoreRows(store, range(n_eval, n_eval + n_train), lm.n_layers, lm.tokenizer,
                     args.batch_size, shuffle=True, seed=args.seed)


# --- the tuned-lens package ------------------------------------------------------------------


def _no_cpu_autocast(real_autocast):
    """``torch.autocast`` that does nothing on CPU (the package asks for bf16 there too)."""

    def autocast(device_type, *args, **kwargs):
        if str(device_type) == "cpu":
            return contextlib.nullcontext()
        return real_autocast(device_type, *args, **kwargs)

    return autocast


@contextlib.contextmanager
def peer_patches(lm: LoadedModel, dataset, nats_to_bpb: float):
    """The package's model and data loading replaced, and no bf16 autocast on CPU."""
    from tuned_lens.scripts import ingredients as ing

    def load_model_(self, device, must_use_cache=False):
        lm.model.eval()
        return lm.model, lm.tokenizer

    def load_data(self, tokenizer):
        return dataset, nats_to_bpb

    saved = ing.Model.load, ing.Data.load, torch.autocast
    ing.Model.load, ing.Data.load = load_model_, load_data
    torch.autocast = _no_cpu_autocast(torch.autocast)
    try:
        yield
    finally:
        ing.Model.load, ing.Data.load, torch.autocast = saved


def train_peer(lm: LoadedModel, train: Tensor, n_bytes: int, args, out: Path) -> Trained:
    """The package's ``Train.execute`` on ``train`` (n, T): ``args.steps`` x ``args.batch_size`` rows."""
    import datasets
    from tuned_lens.scripts import ingredients as ing
    from tuned_lens.scripts.train_loop import Train

    start = time.perf_counter()
    rows = train[: args.steps * args.batch_size]
    dataset = datasets.Dataset.from_dict({"input_ids": rows.tolist()}).with_format("torch")
    nats_to_bpb = rows.numel() / n_bytes / math.log(2)
    trainer = Train(
        model=ing.Model(name=lm.spec),
        data=ing.Data(name=["alignlab training rows"], max_length=rows.shape[1]),
        opt=ing.Optimizer(optimizer=ing.OptimizerOption(args.peer_optimizer)),
        dist=ing.Distributed(per_gpu_batch_size=args.batch_size),
        output=out,
        seed=args.seed,
        num_steps=args.steps,
        tokens_per_step=args.batch_size * rows.shape[1],
    )
    with peer_patches(lm, dataset, nats_to_bpb):
        trainer.execute()
    seconds = time.perf_counter() - start
    return Trained(import_tuned_lens(out, lm), seconds)


def check_peer_reads_same_residuals(lm: LoadedModel, tokens: Tensor) -> float:
    """Largest gap between the HF ``hidden_states[:-1]`` the package trains on and resid.0..L-1.

    The package's translator ``i`` reads ``output.hidden_states[i]``; alignlab's reads
    ``resid.i``. They must be the same tensors for the two lenses to be comparable.
    """
    with torch.no_grad():
        hidden = lm.model(tokens, output_hidden_states=True).hidden_states[:-1]
    ours = rows_from_tokens(lm, tokens, skip_first=0).resid[:-1]  # (L, N, d) positions 0..T-2
    theirs = torch.stack([h[:, :-1].reshape(-1, h.shape[-1]) for h in hidden]).float()
    if theirs.shape != ours.shape:
        raise SystemExit(f"hidden_states give {tuple(theirs.shape)}, resid {tuple(ours.shape)}")
    return (theirs - ours).abs().max().item()


# --- report ----------------------------------------------------------------------------------


def print_table(kl: dict[str, list[float]]) -> None:
    names = list(kl)
    print(f"{'layer':>5} " + " ".join(f"{n + ' KL':>12}" for n in names)
          + (f" {'alignlab-peer':>14}" if "peer" in kl else ""))
    for i in range(len(kl[names[0]])):
        row = f"{i:>5} " + " ".join(f"{kl[n][i]:>12.4f}" for n in names)
        if "peer" in kl:
            diff = kl["alignlab"][i] - kl["peer"][i]
            row += f" {diff:>+14.4f}" + ("   <- alignlab worse" if diff > 0 else "")
        print(row)
    print(f"{'mean':>5} " + " ".join(f"{sum(v) / len(v):>12.4f}" for v in kl.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=EMBEDDED_DEFAULT)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps, for both")
    parser.add_argument("--batch-size", type=int, default=2, help="rows of --seq-len per step")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--eval-rows", type=int, default=4)
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="alignlab's")
    parser.add_argument("--lr", type=float, default=None, help="alignlab's (default: its own)")
    parser.add_argument("--peer-optimizer", default="sgd", choices=["sgd", "adam"],
                        help="the package's (its default: sgd)")
    parser.add_argument("--source", default="model", choices=["model", "store"],
                        help="alignlab's training rows: captured on the fly, or harvested into an "
                             "activation store first (the harvest counts in its time)")
    parser.add_argument("--store-dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--seed", type=int, default=0, help="order of the training rows")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, 0 for torch's default; on the shared 2-core machine two "
                             "threads made the model's forward pass 12x slower than one (each "
                             "operation waits for a thread that another process holds)")
    parser.add_argument("--no-peer", action="store_true", help="alignlab and the logit lens only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    lm = load_model(args.model)
    print(f"loaded {lm.spec} ({lm.n_layers} layers, d {lm.d_model}, vocab {lm.anatomy.d_vocab}) "
          f"in {time.perf_counter() - start:.1f}s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    n_train = args.steps * args.batch_size
    split = split_rows(lm, "builtin", args.seq_len, args.eval_rows * args.seq_len, n_train * args.seq_len)
    if split.train.shape[0] < n_train:
        raise SystemExit(f"the built-in corpus has only {split.train.shape[0]} training rows of "
                         f"{args.seq_len} tokens after the held-out ones; {n_train} are needed")
    print(f"training: {args.steps} steps x {args.batch_size} rows x {args.seq_len} tokens = "
          f"{n_train * args.seq_len} tokens; held out: {split.held_out.shape[0]} rows")

    lenses: list = [LogitLens()]
    with tempfile.TemporaryDirectory(prefix="tuned-lens-bench-") as tmp:
        ours = train_alignlab(lm, split, args, Path(tmp))
        lenses.append(Renamed(ours.lens, "alignlab"))
        print(f"alignlab: trained in {ours.seconds:.1f}s ({args.optimizer}, rows from the "
              f"{'store, harvest included' if args.source == 'store' else 'model on the fly'})")
        peer = None
        if not args.no_peer:
            gap = check_peer_reads_same_residuals(lm, split.train[:1])
            print(f"package's hidden_states[:-1] vs alignlab's resid.0..L-1: max |diff| {gap:.2e}")
            n_bytes = rows_from_tokens(lm, split.train[:n_train], skip_first=0).n_bytes
            peer = train_peer(lm, split.train, n_bytes, args, Path(tmp) / "peer-lens")
            lenses.append(Renamed(peer.lens, "peer"))
            print(f"tuned-lens package: trained in {peer.seconds:.1f}s ({args.peer_optimizer})")

    held_out = ModelRows(lm, split.held_out, args.batch_size)
    ev = evaluate_lenses(lm, lenses, held_out)
    kl = {name: m.kl for name, m in ev.lenses.items()}
    print(f"\nheld-out KL(final || lens), nats, {ev.n_tokens} positions (BOS left out):")
    print_table(kl)
    if peer is None:
        return
    worse = [i for i, (a, p) in enumerate(zip(kl["alignlab"], kl["peer"])) if a > p]
    ratio = peer.seconds / ours.seconds
    print(f"\ntime: alignlab {ours.seconds:.1f}s, package {peer.seconds:.1f}s; "
          f"package / alignlab = {ratio:.2f}x")
    print(f"KL: alignlab no worse than the package at {lm.n_layers - len(worse)} of {lm.n_layers} "
          f"layers{'' if not worse else ' (worse at ' + ', '.join(map(str, worse)) + ')'}")
    met = not worse and ratio >= 3
    print(f"target (no worse at every layer, in at most 1/3 of the time): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
