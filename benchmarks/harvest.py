"""Harvest-to-disk throughput against bare forward passes, on the same batches, in one run.

    .venv/bin/python benchmarks/harvest.py [--model smollm2-135m] [--repeats 3]

Bare forward: ``model(input_ids)`` under ``torch.inference_mode`` (what a user runs to get
logits). Harvest: ``alignlab.activations.harvest`` of every residual site (``resid.*``) into a
fresh store on disk, float16 by default, given the same token rows: the unembedding hash and
manifest, forward passes stopped after the last block (no final norm, no unembedding), capture
hooks, statistics, a background writer thread, fsync and sha256 of every shard. Phases
alternate (bare, harvest, harvest, bare, ...) to spread drift in a shared machine's load over
both. Peak memory is the peak resident set size during each phase above
the resident size when it started (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``).
CPU time (all threads) is printed beside wall time: on a shared machine it is the steadier one.

Prints tokens/s per phase (median over repeats) and the ratio harvest / bare forward; the
target is >= 0.95. TransformerLens / nnsight are compared only when installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from alignlab.activations import HarvestConfig, harvest
from alignlab.data import read_corpus, tokenize_corpus
from alignlab.models import EMBEDDED_DEFAULT, LoadedModel, load_model


@dataclass
class Phase:
    """One timed pass over all batches."""

    seconds: float  # wall clock
    cpu_seconds: float  # every thread of the process, so a busy shared machine shows less
    peak_extra_mb: float  # peak RSS during the phase minus RSS at its start
    marks: list[float] = field(default_factory=list)  # harvest: when progress was reported


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measured(fn: Callable[[list[float]], None]) -> Phase:
    """Run ``fn(marks)`` and return its wall and CPU time, and the peak RSS it added."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    start_rss = _status_kb("VmRSS") or 0
    marks: list[float] = []
    cpu, started = time.process_time(), time.perf_counter()
    fn(marks)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = _status_kb("VmHWM") or 0
    return Phase(seconds, cpu, max(0, peak - start_rss) / 1024, [m - started for m in marks])


def bare_forward(lm: LoadedModel, batches: list[torch.Tensor], _marks=None) -> None:
    with torch.inference_mode():
        for ids in batches:
            lm.model(input_ids=ids, use_cache=False)


def harvest_to_disk(
    lm: LoadedModel, blocks, args, folder: Path, rep: int, marks: list[float]
) -> None:
    out = folder / f"store-{rep}"
    config = HarvestConfig(
        out=str(out),
        tokens=args.batches * args.batch_size * args.seq_len,
        model=lm.spec,
        sites=args.sites,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        dtype=args.dtype,
        shard_tokens=args.shard_tokens,
    )
    # The rows are passed in, as the bare forward passes get them: neither phase tokenizes.
    harvest(
        config, lm=lm, blocks=blocks, progress=lambda done, total: marks.append(time.perf_counter())
    )


def peers_note() -> str:
    found = [name for name in ("transformer_lens", "nnsight") if importlib.util.find_spec(name)]
    if not found:
        return "TransformerLens / nnsight: not installed, not compared"
    return (
        f"{', '.join(found)} installed, but this script does not drive them yet: "
        "their capture of every residual layer was not measured"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=EMBEDDED_DEFAULT)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sites", default="resid.*")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    # A real harvest writes many shards, so the last shard's flush and hash (not overlapped
    # with any forward pass) is a small part of it; with only 8 batches, 2-batch shards keep
    # that tail as small a part here as it is there.
    parser.add_argument("--shard-tokens", type=int, default=2048)
    parser.add_argument("--dir", default=None, help="where the stores go (default: a temp folder)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    n_tokens = args.batches * args.batch_size * args.seq_len
    blocks = tokenize_corpus(read_corpus("builtin"), lm.tokenizer, args.seq_len, n_tokens)
    batches = list(blocks.tokens.split(args.batch_size))  # the same rows harvest() reads, in order
    folder = Path(tempfile.mkdtemp(prefix="alignlab-bench-", dir=args.dir))
    print(
        f"{args.model}: {len(batches)} batches x {args.batch_size} x {args.seq_len} tokens, "
        f"{args.threads} threads; harvest of {args.sites} as {args.dtype} into {folder}"
    )
    bare_forward(lm, batches[:1])  # warm up kernels and allocator
    bare, harv = [], []
    try:
        for rep in range(args.repeats):
            order = [("bare", bare), ("harvest", harv)]
            for name, results in order if rep % 2 == 0 else order[::-1]:
                if name == "bare":
                    results.append(measured(lambda m: bare_forward(lm, batches)))
                else:
                    results.append(
                        measured(lambda m, r=rep: harvest_to_disk(lm, blocks, args, folder, r, m))
                    )
                    shutil.rmtree(folder / f"store-{rep}")
                p = results[-1]
                print(
                    f"  rep {rep} {name:8s} {n_tokens / p.seconds:8.1f} tok/s, "
                    f"{n_tokens / p.cpu_seconds:8.1f} tok/cpu-s, peak +{p.peak_extra_mb:.0f} MB"
                    + (_breakdown(p) if p.marks else "")
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(bare, harv, n_tokens)


def _breakdown(p: Phase) -> str:
    """Setup (model hash, tokenizing, manifest) / batches / last shard's flush and hash."""
    setup, loop = p.marks[0], p.marks[-1] - p.marks[0]
    return f"  [setup {setup:.1f}s, batches {loop:.1f}s, finish {p.seconds - p.marks[-1]:.1f}s]"


def report(bare: list[Phase], harv: list[Phase], n_tokens: int) -> None:
    bare_tps = statistics.median(n_tokens / p.seconds for p in bare)
    harv_tps = statistics.median(n_tokens / p.seconds for p in harv)
    bare_cpu = statistics.median(n_tokens / p.cpu_seconds for p in bare)
    harv_cpu = statistics.median(n_tokens / p.cpu_seconds for p in harv)
    # Each repeat's two phases ran back to back, so their ratio is the least touched by drift.
    paired = statistics.median(b.seconds / h.seconds for b, h in zip(bare, harv))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"bare forward      {bare_tps:8.1f} tok/s, {bare_cpu:8.1f} tok/cpu-s (medians of {len(bare)}), "
        f"peak +{max(p.peak_extra_mb for p in bare):.0f} MB"
    )
    print(
        f"harvest to disk   {harv_tps:8.1f} tok/s, {harv_cpu:8.1f} tok/cpu-s (medians of {len(harv)}), "
        f"peak +{max(p.peak_extra_mb for p in harv):.0f} MB"
    )
    print(
        f"ratio harvest / bare forward: {paired:.3f} (median of per-repeat ratios; medians: "
        f"{harv_tps / bare_tps:.3f} wall clock, {harv_cpu / bare_cpu:.3f} CPU time; target >= 0.95)"
    )
    print(f"process peak RSS: {peak_rss_mb:.0f} MB (model included)")
    print(peers_note())


if __name__ == "__main__":
    main()
