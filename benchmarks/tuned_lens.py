"""Tuned lens against logit lens on the embedded default: held-out KL per layer, and wall time.

    .venv/bin/python benchmarks/tuned_lens.py [--model smollm2-135m] [--steps 12] [--batch-size 2]

Trains alignlab's tuned lens on the built-in corpus (rows after the held-out ones, captured
from the model on the fly) and prints, for every layer, the held-out KL(final || lens) of the
logit lens and of the tuned lens, which layers the tuned lens fails to improve, and the wall
and CPU time of training and of evaluation. Issue 4's target: the tuned lens is better at
every layer.

The comparison with the tuned-lens package (same tokens, same held-out set; it needs that
package and patches for current torch/transformers) is not part of this script yet: it
reports alignlab alone.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time

from alignlab.lens import LogitLens, ModelRows, TrainSettings, evaluate_lenses, train_tuned_lens
from alignlab.lens.pipeline import split_rows
from alignlab.models import EMBEDDED_DEFAULT, load_model


def _distribution_installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=EMBEDDED_DEFAULT)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=2, help="rows of --seq-len per step")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--eval-rows", type=int, default=2)
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    parser.add_argument("--lr", type=float, default=None)
    args = parser.parse_args()

    lm = load_model(args.model)
    split = split_rows(lm, "builtin", args.seq_len, args.eval_rows * args.seq_len,
                       args.steps * args.batch_size * args.seq_len)
    settings = TrainSettings(steps=args.steps, optimizer=args.optimizer, lr=args.lr)
    source = ModelRows(lm, split.train, args.batch_size, shuffle=True, seed=0)
    result, train_wall, train_cpu = _timed(lambda: train_tuned_lens(lm, source, settings))
    held_out = ModelRows(lm, split.held_out, args.batch_size)
    ev, eval_wall, eval_cpu = _timed(lambda: evaluate_lenses(lm, [LogitLens(), result.lens], held_out))

    logit, tuned = ev.lenses["logit"].kl, ev.lenses["tuned"].kl
    print(f"{lm.spec}: {args.steps} steps x {args.batch_size} x {args.seq_len} tokens "
          f"({settings.optimizer}, lr {settings.effective_lr}); {ev.n_tokens} held-out positions")
    print(f"{'layer':>6} {'logit KL':>10} {'tuned KL':>10}")
    for i, (g, t) in enumerate(zip(logit, tuned)):
        print(f"{i:>6} {g:>10.3f} {t:>10.3f}{'' if t < g else '   <- not better'}")
    worse = [i for i, (g, t) in enumerate(zip(logit, tuned)) if t >= g]
    print(f"mean KL: logit {sum(logit) / len(logit):.3f}, tuned {sum(tuned) / len(tuned):.3f} nats; "
          f"tuned better at {len(logit) - len(worse)} of {len(logit)} layers")
    print(f"train: {train_wall:.1f}s wall, {train_cpu:.1f}s CPU; "
          f"eval (both lenses): {eval_wall:.1f}s wall, {eval_cpu:.1f}s CPU")
    installed = _distribution_installed("tuned-lens")  # not find_spec: this file is tuned_lens.py
    print(f"tuned-lens package {'installed' if installed else 'not installed'}; this script "
          "measures alignlab only (the peer run is not part of it)")


if __name__ == "__main__":
    main()
