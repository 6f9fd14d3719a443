"""SAE training throughput and held-out FVU: alignlab vs EleutherAI sparsify and SAELens.

Setting (issue 6): smollm2-135m, resid.15 (the output of block 14, sparsify's ``layers.14``),
TopK with k=32, width 16 x d_model = 9216, the same token rows and the same token budget for
every trainer, batches of ``--batch-seqs`` sequences (sparsify's default, 32). Each trainer runs
with its own defaults otherwise:

- alignlab: schedule-free sign descent, AuxK, inputs scaled to E||x||^2 = d, first position and
  attention sinks left out;
- sparsify 1.3 (its ``Trainer`` driven through its Python API on alignlab's CPU model, because
  its CLI loads models onto CUDA; nothing else of it is changed): signum, no AuxK
  (``auxk_alpha=0``); the BOS token is given to its own ``exclude_tokens`` option so that it,
  like the others, does not train on the first position (98.5% of the variance at this layer);
- SAELens 6 (its ``SAETrainer`` fed the rows alignlab captured, as it would read a cached
  activation store; its LLM runner needs TransformerLens, which cannot load the GGUF model):
  Adam at 3e-4, AuxK, its TopK defaults.

Reported per trainer:

- end-to-end tokens/s over the budget (all tokens through the model, first positions counted):
  alignlab and SAELens train from rows harvested once by alignlab (the harvest time is added to
  both, as for a store); sparsify captures on the fly and runs the whole model each step;
- SAE-update tokens/s: the coder steps alone (alignlab times them inside its trainer; for
  sparsify and SAELens, their update code timed on the harvested rows);
- held-out FVU about the mean, first position and sinks excluded, on text after the training
  text, computed by alignlab's evaluator for every SAE after importing it with alignlab's
  sparsify / SAELens import.

Run with the peers environment (``make peers``); without sparsify or SAELens their rows say so:

    .venv-peers/bin/python benchmarks/sae.py                    # 81,920 tokens (~15 min on 2 cores)
    .venv-peers/bin/python benchmarks/sae.py --tokens 204800    # the issue's 200k budget
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download

from alignlab.data import read_corpus, tokenize_corpus  # noqa: E402
from alignlab.sae import CoderConfig  # noqa: E402
from alignlab.sae.data import DEFAULT_SINKS, ActivationBatch, ModelSource, SitePair, TensorSource  # noqa: E402
from alignlab.sae.evaluate import evaluate_reconstruction  # noqa: E402
from alignlab.sae.trainer import Trainer, TrainSettings  # noqa: E402

MODEL, SITE, HOOKPOINT, K, EXPANSION = "smollm2-135m", "resid.15", "layers.14", 32, 16


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=81_920, help="training tokens per trainer")
    parser.add_argument("--eval-tokens", type=int, default=8192, help="held-out tokens for FVU")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-seqs", type=int, default=32, help="sequences per step (sparsify's default)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip", nargs="*", default=[], choices=["sparsify", "saelens"],
                        help="trainers to leave out")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


@dataclass
class Harvest:
    """Rows of resid.15 captured by alignlab, in token order."""

    x: torch.Tensor  # (N, d)
    keep: torch.Tensor  # (N,) False on first positions and sinks
    seconds: float
    cpu_seconds: float  # process CPU time, all threads
    rows_per_step: int


def token_rows(lm, args) -> tuple[torch.Tensor, torch.Tensor]:
    n_train = math.ceil(args.tokens / (args.seq_len * args.batch_seqs)) * args.batch_seqs
    n_eval = math.ceil(args.eval_tokens / args.seq_len)
    blocks = tokenize_corpus(read_corpus("builtin"), lm.tokenizer, args.seq_len,
                             (n_train + n_eval) * args.seq_len)
    return blocks.tokens[:n_train], blocks.tokens[n_train:]  # (n_seq, T) each


def harvest(lm, rows: torch.Tensor, batch_seqs: int) -> Harvest:
    batch_seqs = min(batch_seqs, rows.shape[0])
    source = ModelSource(lm, rows, [SitePair(SITE, SITE)], batch_seqs, DEFAULT_SINKS)
    started, cpu = time.perf_counter(), time.process_time()
    xs, keeps = [], []
    with torch.no_grad():
        for batch in source.batches():
            xs.append(batch[SITE].x)
            keeps.append(batch[SITE].keep)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Harvest(torch.cat(xs), torch.cat(keeps), seconds, cpu, source.tokens_per_batch)


def kept_batches(data: Harvest):
    """The non-sink rows of each step, as every trainer's step sees them."""
    for start in range(0, data.x.shape[0], data.rows_per_step):
        rows = slice(start, start + data.rows_per_step)
        yield data.x[rows][data.keep[rows]]  # (<= rows_per_step, d)


def held_out(coder, held: Harvest) -> dict:
    m = evaluate_reconstruction(coder, [ActivationBatch(held.x, None, held.keep)])
    return {"fvu": m.fvu, "fvu_all_positions": m.fvu_all_positions, "l0": m.l0,
            "dead_fraction": m.dead_fraction}


def import_error(theirs, coder, held: Harvest) -> float:
    """Max relative difference between a peer's own reconstruction and alignlab's import of it."""
    x = held.x[held.keep][:512]
    with torch.no_grad():
        a, b = theirs(x).float(), coder(x)
    return float((a - b).norm(dim=1).max() / x.norm(dim=1).min())


def _row(name, tokens, e2e_seconds, update_seconds, cpu: tuple[float, float], metrics, note="",
         import_err=0.0) -> dict:
    """Throughput by the wall clock (what the issue asks) and per CPU-second of this process
    (``cpu``: end-to-end and update CPU seconds), which other users' load on a shared machine
    disturbs far less."""
    return {"trainer": name, "tokens": tokens, "seconds": e2e_seconds,
            "end_to_end_tokens_per_s": tokens / e2e_seconds,
            "update_tokens_per_s": tokens / update_seconds if update_seconds else None,
            "end_to_end_tokens_per_cpu_s": tokens / cpu[0], "update_tokens_per_cpu_s": tokens / cpu[1],
            **metrics, "import_error": import_err, "note": note}


# ----- alignlab ------------------------------------------------------------------------------
def run_alignlab(lm, data: Harvest, held: Harvest, args) -> dict:
    source = TensorSource(data.x, data.rows_per_step, keep=data.keep, name=SITE)
    cfg = CoderConfig("topk", lm.d_model, EXPANSION * lm.d_model, k=K)
    trainer = Trainer({SITE: cfg}, TrainSettings(n_steps=source.n_batches))
    started, cpu = time.perf_counter(), time.process_time()
    result = trainer.fit(source)
    fit_seconds, fit_cpu = time.perf_counter() - started, time.process_time() - cpu
    tokens = data.x.shape[0]
    return _row("alignlab", tokens, data.seconds + fit_seconds, result.update_seconds,
                (data.cpu_seconds + fit_cpu, fit_cpu), held_out(result.coders[SITE], held),
                "harvest + training from the rows")


# ----- sparsify ------------------------------------------------------------------------------
def run_sparsify(lm, rows: torch.Tensor, data: Harvest, held: Harvest, args) -> dict:
    """sparsify's own Trainer on alignlab's CPU model (its base model, as its CLI loads
    ``AutoModel`` for the FVU loss) and the same token rows."""
    from datasets import Dataset
    from sparsify import SaeConfig, SparseCoder, TrainConfig
    from sparsify import Trainer as SparsifyTrainer

    from alignlab.data.tokens import resolve_bos_id
    from alignlab.sae.io import import_sparsify

    dataset = Dataset.from_dict({"input_ids": rows.tolist()}).with_format("torch")
    base = lm.model.base_model  # LlamaModel: what sparsify's CLI loads with AutoModel
    with tempfile.TemporaryDirectory() as save_dir:
        cfg = TrainConfig(
            SaeConfig(k=K, num_latents=EXPANSION * lm.d_model), batch_size=args.batch_seqs,
            hookpoints=[HOOKPOINT], exclude_tokens=[resolve_bos_id(lm.tokenizer)],
            log_to_wandb=False, save_dir=save_dir, run_name="bench",
        )
        started, cpu = time.perf_counter(), time.process_time()
        SparsifyTrainer(cfg, dataset, base).fit()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        folder = Path(save_dir) / "bench" / HOOKPOINT
        coder = import_sparsify(folder, site=SITE).coder
        theirs = SparseCoder.load_from_disk(folder, device="cpu")
        check = import_error(lambda x: theirs(x).sae_out, coder, held)
    update_seconds, update_cpu = sparsify_update_seconds(data, lm.d_model)
    return _row("sparsify", rows.numel(), seconds, update_seconds, (cpu, update_cpu), held_out(coder, held),
                "on the fly, whole model each step; updates timed on the harvested rows", check)


def sparsify_update_seconds(data: Harvest, d_model: int) -> tuple[float, float]:
    """sparsify's step (its SparseCoder, signum + schedule-free, decoder kept unit-norm) alone."""
    from schedulefree import ScheduleFreeWrapper
    from sparsify import SaeConfig, SparseCoder
    from sparsify.sign_sgd import SignSGD

    torch.manual_seed(0)
    sae = SparseCoder(d_model, SaeConfig(k=K, num_latents=EXPANSION * d_model), "cpu", dtype=torch.float32)
    lr = 5e-3 / (sae.num_latents / 2**14) ** 0.5  # sparsify's signum default
    opt = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(), "lr": lr}]), momentum=0.95)
    opt.train()
    started, cpu = time.perf_counter(), time.process_time()
    for i, x in enumerate(kept_batches(data)):
        if i == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        sae(x, x).fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - started, time.process_time() - cpu


# ----- SAELens -------------------------------------------------------------------------------
def run_saelens(lm, data: Harvest, held: Harvest, args) -> dict:
    from sae_lens import SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    from alignlab.sae.io import import_saelens

    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(
        d_in=lm.d_model, d_sae=EXPANSION * lm.d_model, k=K, dtype="float32", device="cpu"))
    kept = int(data.keep.sum())
    trainer_cfg = SAETrainerConfig(  # lr_end: what its runner config sets (lr / 10)
        total_training_samples=kept, train_batch_size_samples=data.rows_per_step, lr=3e-4, lr_end=3e-5)
    trainer = SAETrainer(trainer_cfg, sae, iter(kept_batches(data)))
    started, cpu = time.perf_counter(), time.process_time()
    trainer.fit()
    update_seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    with tempfile.TemporaryDirectory() as folder:
        sae.save_inference_model(folder)
        coder = import_saelens(folder, site=SITE).coder
    check = import_error(sae, coder, held)
    tokens = data.x.shape[0]
    return _row("SAELens", tokens, data.seconds + update_seconds, update_seconds,
                (data.cpu_seconds + cpu, cpu), held_out(coder, held), "harvest (alignlab's) + SAETrainer on the rows", check)


# ----- report --------------------------------------------------------------------------------
COLUMNS = ["trainer", "tokens", "seconds", "end_to_end_tokens_per_s", "update_tokens_per_s",
           "end_to_end_tokens_per_cpu_s", "update_tokens_per_cpu_s", "fvu",
           "fvu_all_positions", "l0", "dead_fraction", "import_error"]


def print_table(rows: list[dict]) -> None:
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        if "skipped" in row:
            print(f"| {row['trainer']} | skipped: {row['skipped']} |")
            continue
        print("| " + " | ".join(_fmt(row.get(c)) for c in COLUMNS) + " |")
    ours = rows[0]
    for row in rows[1:]:
        if "skipped" in row:
            continue
        ratio = {key: ours[key] / row[key] for key in COLUMNS[3:7]}
        print(f"alignlab / {row['trainer']}: end-to-end {ratio['end_to_end_tokens_per_s']:.2f}x "
              f"(per CPU-second {ratio['end_to_end_tokens_per_cpu_s']:.2f}x), SAE updates "
              f"{ratio['update_tokens_per_s']:.2f}x (per CPU-second {ratio['update_tokens_per_cpu_s']:.2f}x); "
              f"held-out FVU {ours['fvu']:.4f} vs {row['fvu']:.4f}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _missing(*modules: str) -> str | None:
    gone = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed ({', '.join(gone)}); run `make peers`" if gone else None


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from alignlab.models import load_model

    lm = load_model(MODEL)
    train_rows, held_rows = token_rows(lm, args)
    print(f"{MODEL} {SITE}: k={K}, width={EXPANSION * lm.d_model}, {train_rows.numel()} training "
          f"tokens, {held_rows.numel()} held-out, {args.batch_seqs} x {args.seq_len} tokens per step, "
          f"{args.threads} thread(s)", flush=True)
    data = harvest(lm, train_rows, args.batch_seqs)
    held = harvest(lm, held_rows, args.batch_seqs)
    print(f"harvest: {data.x.shape[0] / data.seconds:.0f} tokens/s", flush=True)
    rows = [run_alignlab(lm, data, held, args)]
    print(f"alignlab done: {rows[-1]}", flush=True)
    if "saelens" in args.skip or _missing("sae_lens"):
        saelens = {"trainer": "SAELens", "skipped": _missing("sae_lens") or "--skip"}
    else:
        saelens = run_saelens(lm, data, held, args)
        print(f"SAELens done: {saelens}", flush=True)
    if "sparsify" in args.skip or _missing("sparsify", "datasets", "schedulefree"):
        rows.append({"trainer": "sparsify", "skipped": _missing("sparsify", "datasets") or "--skip"})
    else:
        rows.append(run_sparsify(lm, train_rows, data, held, args))
        print(f"sparsify done: {rows[-1]}", flush=True)
    rows.append(saelens)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
