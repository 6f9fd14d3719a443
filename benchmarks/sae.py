"""SAE training throughput and held-out FVU: alignlab, and sparsify / SAELens when installed.

Same activations (smollm2-135m, resid.15 = the output of block 14), same width (16 x d_model),
same k (32) and the same token budget for every trainer. Reported per trainer:

- end-to-end tokens/s: capture from the model plus SAE updates, for the whole budget;
- SAE-update tokens/s: the optimiser steps alone (alignlab times them inside its trainer);
- held-out FVU about the mean, first position and attention sinks excluded, on text after the
  training text, measured by alignlab's evaluator for every trainer's SAE.

sparsify (EleutherAI) is optional: its CLI loads models onto CUDA, so this script builds its
``Trainer`` directly around the already-loaded CPU model (nothing else of sparsify is changed).
It needs ``pip install sparsify datasets``; without them its rows say "not installed".
SAELens is not run: its trainer pulls in TransformerLens, which has no GGUF loader for the
embedded model.

    .venv/bin/python benchmarks/sae.py --tokens 20000          # a small budget
    .venv/bin/python benchmarks/sae.py --tokens 200000         # the issue's budget
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from alignlab.data import read_corpus, tokenize_corpus
from alignlab.sae import CoderConfig
from alignlab.sae.data import DEFAULT_SINKS, ModelSource, SitePair
from alignlab.sae.evaluate import evaluate_reconstruction
from alignlab.sae.trainer import Trainer, TrainSettings

MODEL, SITE, K, EXPANSION = "smollm2-135m", "resid.15", 32, 16


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000, help="training tokens per trainer")
    parser.add_argument("--eval-tokens", type=int, default=8192, help="held-out tokens for FVU")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-tokens", type=int, default=2048, help="tokens per optimiser step")
    parser.add_argument("--lr", type=float, default=None,
                        help="alignlab's Adam learning rate (default: the width rule, as sparsify's Adam)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def token_rows(lm, args):
    n_train = math.ceil(args.tokens / args.seq_len)
    n_eval = math.ceil(args.eval_tokens / args.seq_len)
    blocks = tokenize_corpus(read_corpus("builtin"), lm.tokenizer, args.seq_len, (n_train + n_eval) * args.seq_len)
    return blocks.tokens[:n_train], blocks.tokens[n_train:]


def held_out_fvu(lm, coder, rows, batch_seqs) -> dict:
    pair = SitePair(SITE, SITE)
    source = ModelSource(lm, rows, [pair], batch_seqs, DEFAULT_SINKS)
    metrics = evaluate_reconstruction(coder, [b[SITE] for b in source.batches()])
    return {"fvu": metrics.fvu, "fvu_all_positions": metrics.fvu_all_positions, "l0": metrics.l0,
            "dead_fraction": metrics.dead_fraction}


def run_alignlab(lm, train, held, args) -> dict:
    batch_seqs = max(1, args.batch_tokens // args.seq_len)
    source = ModelSource(lm, train, [SitePair(SITE, SITE)], batch_seqs, DEFAULT_SINKS)
    cfg = CoderConfig("topk", lm.d_model, EXPANSION * lm.d_model, k=K)
    trainer = Trainer({SITE: cfg}, TrainSettings(n_steps=source.n_batches, lr=args.lr))
    started = time.perf_counter()
    result = trainer.fit(source)
    seconds = time.perf_counter() - started
    budget = source.n_batches * source.tokens_per_batch  # every token captured, sinks included
    return {
        "trainer": "alignlab", "tokens": budget, "seconds": seconds,
        "end_to_end_tokens_per_s": budget / seconds,
        "update_tokens_per_s": budget / result.update_seconds,
        **held_out_fvu(lm, result.coders[SITE], held, batch_seqs),
    }


def run_sparsify(lm, train, held, args) -> dict:
    """sparsify's own Trainer on the same CPU model and token rows (hookpoint layers.14).

    Not run here (sparsify is not installed in this environment): written against sparsify
    1.x's documented ``TrainConfig`` / ``Trainer(cfg, dataset, model).fit()``.
    """
    missing = [m for m in ("sparsify", "datasets") if importlib.util.find_spec(m) is None]
    if missing:
        return {"trainer": "sparsify", "skipped": f"not installed ({', '.join(missing)})"}
    from datasets import Dataset
    from sparsify import SaeConfig, TrainConfig
    from sparsify import Trainer as SparsifyTrainer

    from alignlab.sae.io import import_sparsify

    hookpoint = f"layers.{int(SITE.split('.')[1]) - 1}"
    batch_seqs = max(1, args.batch_tokens // args.seq_len)
    dataset = Dataset.from_dict({"input_ids": train.tolist()}).with_format("torch")
    with tempfile.TemporaryDirectory() as save_dir:
        cfg = TrainConfig(  # sparsify's own defaults for everything but the shared settings
            SaeConfig(k=K, num_latents=EXPANSION * lm.d_model), batch_size=batch_seqs,
            hookpoints=[hookpoint], log_to_wandb=False, save_dir=save_dir, run_name="bench",
        )
        trainer = SparsifyTrainer(cfg, dataset, lm.model)
        started = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - started
        coder = import_sparsify(Path(save_dir) / "bench" / hookpoint, site=SITE).coder
        budget = len(dataset) // batch_seqs * batch_seqs * args.seq_len
        return {"trainer": "sparsify", "tokens": budget, "seconds": seconds,
                "end_to_end_tokens_per_s": budget / seconds, "update_tokens_per_s": None,
                **held_out_fvu(lm, coder, held, batch_seqs)}


def run_saelens(lm, train, held, args) -> dict:
    if importlib.util.find_spec("sae_lens") is None:
        return {"trainer": "SAELens", "skipped": "not installed"}
    return {"trainer": "SAELens", "skipped": "TransformerLens cannot load the embedded GGUF model"}


def print_table(rows: list[dict]) -> None:
    cols = ["trainer", "tokens", "seconds", "end_to_end_tokens_per_s", "update_tokens_per_s", "fvu",
            "fvu_all_positions", "l0", "dead_fraction"]
    print(" | ".join(cols))
    for row in rows:
        if "skipped" in row:
            print(f"{row['trainer']} | skipped: {row['skipped']}")
            continue
        print(" | ".join(_fmt(row.get(c)) for c in cols))
    ours = rows[0]
    for row in rows[1:]:
        if "skipped" not in row:
            ratio = ours["end_to_end_tokens_per_s"] / row["end_to_end_tokens_per_s"]
            print(f"alignlab / {row['trainer']} end-to-end throughput: {ratio:.2f}x; "
                  f"FVU {ours['fvu']:.4f} vs {row['fvu']:.4f}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from alignlab.models import load_model

    lm = load_model(MODEL)
    train, held = token_rows(lm, args)
    print(f"{MODEL} {SITE}: k={K}, width={EXPANSION * lm.d_model}, {args.tokens} training tokens, "
          f"{args.eval_tokens} held-out, batches of {args.batch_tokens} tokens, lr {args.lr or 'width rule'}, "
          f"{args.threads} thread(s)", flush=True)
    rows = [run_alignlab(lm, train, held, args), run_sparsify(lm, train, held, args),
            run_saelens(lm, train, held, args)]
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
