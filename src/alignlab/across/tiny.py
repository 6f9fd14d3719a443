"""``alignlab train-tiny``: a small GPT-NeoX trained offline, checkpointed like Pythia.

Pythia saved ``step0``, then ``step1, 2, 4, ..., 512`` (log-spaced) and every 1000 steps
(Biderman et al. 2023, section 2). :func:`checkpoint_steps` makes the same kind of schedule
for a short run: 0, the powers of two below ``steps``, every ``every`` steps, and the last.
Each checkpoint is a Hugging Face folder ``OUT/step{N}/`` (safetensors weights and the byte
tokenizer), written under a temporary name and renamed when complete, so
``load_model(OUT, revision="step{N}")`` loads it. ``OUT`` is also the run folder
(``config.json``, then ``metrics.json`` last).

The run is deterministic under ``seed``: the initial weights come from a forked RNG seeded
with it, the row order from a generator seeded with it, and training runs on one intra-op
thread, so the floating-point sums do not depend on the machine's core count. One thread is
also the fast choice at this size: on a shared 2-core machine a step took 0.04 CPU-seconds on
one thread and 1.1 on two, the second thread spending its time waiting to synchronise.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ..config import config_to_dict, opt
from ..data import read_corpus, tokenize_corpus
from ..errors import ConfigError, DataError, OutputError
from ..models.tokenizer import BYTE_VOCAB, byte_tokenizer
from ..runs import Run, ensure_writable_dir, start_run


@dataclass
class TrainTinyConfig:
    """``alignlab train-tiny``: a small GPT-NeoX on a corpus, with a Pythia-like checkpoint schedule."""

    out: str = opt(help="folder for the checkpoints (OUT/step{N}) and the run's metrics")
    corpus: str = opt("builtin", "builtin, a .txt/.jsonl/.parquet file, or a datasets name")
    steps: int = opt(300, "optimizer steps")
    every: int = opt(100, "a regular checkpoint every EVERY steps, besides the log-spaced ones")
    seq_len: int = opt(128, "tokens per row (bytes; BOS first)")
    batch_size: int = opt(8, "rows per step")
    d_model: int = opt(64, "hidden size")
    n_layers: int = opt(4, "transformer blocks")
    n_heads: int = opt(4, "attention heads")
    lr: float = opt(3e-3, "peak AdamW learning rate (linear warmup over 10% of steps, cosine decay)")
    seed: int = opt(0, "seed for the initial weights and the row order")

    def __post_init__(self) -> None:
        for name in ("steps", "every", "batch_size", "d_model", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ConfigError(f"--seq-len must be at least 2, got {self.seq_len}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"--d-model {self.d_model} must be divisible by --n-heads {self.n_heads}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")


def checkpoint_steps(steps: int, every: int) -> list[int]:
    """0, 1, 2, 4, ... (powers of two below ``steps``), every ``every``-th step, and ``steps``."""
    log_spaced = {0} | {2**k for k in range(int(math.log2(steps)) + 1) if 2**k < steps}
    regular = set(range(every, steps, every))
    return sorted(log_spaced | regular | {steps})


def tiny_config(config: TrainTinyConfig) -> GPTNeoXConfig:
    """The ``tiny-gptneox`` registry layout (parallel residual, partial rotary), sized by ``config``."""
    tok = byte_tokenizer()
    return GPTNeoXConfig(
        vocab_size=BYTE_VOCAB, hidden_size=config.d_model, intermediate_size=4 * config.d_model,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads, rotary_pct=0.25,
        max_position_embeddings=max(512, config.seq_len), use_parallel_residual=True,
        tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )


def build_model(config: TrainTinyConfig) -> GPTNeoXForCausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return GPTNeoXForCausalLM(tiny_config(config))


@dataclass
class TinyResult:
    run: Run
    checkpoints: list[int]
    losses: list[float]  # per step, training cross-entropy (nats per token)
    seconds: float


def lr_factor(step: int, steps: int) -> float:
    """Linear warmup over the first 10% of steps, then cosine decay to 10% of the peak."""
    warmup = max(1, steps // 10)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def save_checkpoint(model: GPTNeoXForCausalLM, tokenizer, out: Path, step: int) -> Path:
    """``out/step{step}``, written as ``out/.step{step}.tmp`` and renamed when complete."""
    final, tmp = out / f"step{step}", out / f".step{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def _batches(tokens: Tensor, batch_size: int, seed: int):
    """Rows in a fresh seeded order each pass, ``batch_size`` at a time, forever."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(tokens.shape[0], generator=gen)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield tokens[order[start : start + batch_size]]  # (B, T)


def _rows(config: TrainTinyConfig, tokenizer) -> Tensor:
    """Enough rows for about two passes' worth of distinct text, capped by the corpus size."""
    want = min(config.steps * config.batch_size, 4096) * config.seq_len
    corpus = read_corpus(config.corpus)
    try:
        return tokenize_corpus(corpus, tokenizer, config.seq_len, want).tokens
    except DataError:  # a small corpus: take every whole row it has
        blocks = tokenize_corpus(corpus, tokenizer, config.seq_len)
        if blocks.n_seq < config.batch_size:
            raise ConfigError(f"corpus {config.corpus!r} has {blocks.n_seq} rows of {config.seq_len} "
                              f"tokens, fewer than --batch-size {config.batch_size}") from None
        return blocks.tokens


def train_tiny(config: TrainTinyConfig, log: Callable[[str], None] = print) -> TinyResult:
    """Train and checkpoint on the schedule; ``metrics.json`` is written last."""
    out = ensure_writable_dir(Path(config.out))
    if any(out.glob("step*")):
        raise OutputError(f"{str(out)!r} already holds step* checkpoints; give an empty or new --out folder")
    tokenizer = byte_tokenizer()
    tokens = _rows(config, tokenizer)
    run = start_run(out, "train-tiny", config_to_dict(config))
    model = build_model(config)
    model.train()
    opt_ = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt_, lambda s: lr_factor(s, config.steps))
    plan = checkpoint_steps(config.steps, config.every)
    losses: list[float] = []
    start = time.perf_counter()
    batches = _batches(tokens, config.batch_size, config.seed)
    with _one_thread():
        for step in range(config.steps + 1):
            if step in plan:
                save_checkpoint(model, tokenizer, out, step)
            if step == config.steps:
                break
            losses.append(_train_step(model, next(batches), opt_, schedule))
            if (step + 1) % max(1, config.steps // 10) == 0:
                log(f"train-tiny: step {step + 1}/{config.steps}  loss {losses[-1]:.3f}")
    seconds = time.perf_counter() - start
    run.finish({"train_tiny": _metrics(config, model, plan, losses, seconds, tokens)})
    return TinyResult(run, plan, losses, seconds)


@contextmanager
def _one_thread():
    """torch's intra-op threads set to 1 for the block, and put back after (see module docstring)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_step(model, batch: Tensor, opt_, schedule) -> float:
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt_.step()
    schedule.step()
    opt_.zero_grad(set_to_none=True)
    return loss.item()


def _metrics(config, model, plan, losses, seconds, tokens) -> dict:
    return {
        "steps": config.steps,
        "checkpoints": [f"step{s}" for s in plan],
        "checkpoint_steps": plan,
        # the training loss of the step just before each checkpoint (None for step 0)
        "loss_at_checkpoint": [losses[s - 1] if s > 0 else None for s in plan],
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        "losses": losses,
        "seconds": seconds,
        "n_params": sum(p.numel() for p in model.parameters()),
        "train_tokens_seen": config.steps * config.batch_size * config.seq_len,
        "distinct_rows": int(tokens.shape[0]),
    }
