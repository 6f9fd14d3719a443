"""``alignlab lens train`` and ``alignlab lens eval``: corpus -> rows -> lenses -> run folder.

Held-out rows are the *first* ``eval_tokens`` of the tokenized corpus and training rows come
after them, so runs with different training budgets are scored on the same text, and
``lens eval`` with the same corpus, ``seq_len`` and ``eval_tokens`` scores exactly the
positions ``lens train`` held out.

``metrics.json`` (all lists indexed by layer: resid.0 .. resid.{L-1}; see ``metrics.py``)::

    lens.model, lens.revision, lens.sites
    lens.logit.{kl, kl_bits_per_byte, ce, entropy, top1_agreement}
    lens.tuned.{...}                      (when a tuned lens was trained or given)
    lens.final.{ce, ce_bits_per_byte, entropy}   (the model's own prediction)
    lens.n_tokens, lens.n_bytes, lens.eval_seconds
    lens.train.{steps, seconds, final_loss, tokens, optimizer, lr}   (lens train only)
    lens.trajectory.{logit, tuned}        (the prompt decoded at every layer)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..config import config_to_dict, opt
from ..data import read_corpus, tokenize_corpus
from ..errors import ConfigError
from ..models import EMBEDDED_DEFAULT, LoadedModel, load_model
from ..runs import Run, ensure_writable_dir, start_run
from .batches import ModelRows
from .io import read_lens, save_lens
from .logit import Lens, LogitLens
from .metrics import LensEvaluation, evaluate_lenses
from .plots import kl_by_layer_png, prediction_trajectory, save_png, trajectory_png
from .train import MATMUL_DTYPES, OPTIMIZERS, TrainResult, TrainSettings, train_tuned_lens

DEFAULT_PROMPT = ("It is a truth universally acknowledged, that a single man in possession "
                  "of a good fortune, must be in want of a wife.")
LENS_FOLDER = "lens"


def _check_common(seq_len: int, eval_tokens: int, batch_size: int, skip_first: int) -> None:
    if seq_len < skip_first + 2:
        raise ConfigError(f"--seq-len {seq_len} leaves no position to score after --skip-first "
                          f"{skip_first}; use --seq-len of at least {skip_first + 2}")
    if eval_tokens < seq_len:
        raise ConfigError(f"--eval-tokens {eval_tokens} is less than one row of --seq-len {seq_len}")
    if batch_size < 1 or skip_first < 0:
        raise ConfigError("--batch-size must be at least 1 and --skip-first at least 0")


@dataclass
class LensTrainConfig:
    """``alignlab lens train``: fit a tuned lens and score it against the logit lens."""

    out: str = opt(help="run folder to write (the lens goes to OUT/lens)")
    model: str = opt(EMBEDDED_DEFAULT, "built-in name, hub id, local folder or .gguf file")
    revision: str | None = opt(None, "hub revision, or checkpoint subfolder of a local folder")
    corpus: str = opt("builtin", "builtin, a .txt/.jsonl/.parquet file, or a datasets name")
    tokens: int = opt(32768, "training tokens (rows of --seq-len after the held-out rows)")
    eval_tokens: int = opt(2048, "held-out tokens for the metrics (the corpus's first rows)")
    seq_len: int = opt(128, "tokens per row, BOS first")
    batch_size: int = opt(4, "rows per training step")
    steps: int | None = opt(None, "optimizer steps (default: one pass over the training rows)")
    optimizer: str = opt("adam", "optimizer", choices=list(OPTIMIZERS))
    lr: float | None = opt(None, "learning rate (default: 1e-3 for adam, 1.0 for sgd)")
    weight_decay: float = opt(1e-3, "weight decay, towards the logit lens")
    matmul_dtype: str = opt("auto", "unembedding product while training (metrics: float32)",
                            choices=list(MATMUL_DTYPES))
    skip_first: int = opt(1, "positions left out at the start of each row (BOS / attention sink)")
    seed: int = opt(0, "seed for the order of training rows")
    prompt: str = opt(DEFAULT_PROMPT, "prompt for the prediction-trajectory pictures")

    def __post_init__(self) -> None:
        _check_common(self.seq_len, self.eval_tokens, self.batch_size, self.skip_first)
        if self.tokens < self.seq_len:
            raise ConfigError(f"--tokens {self.tokens} is less than one row of --seq-len {self.seq_len}")
        self.settings()  # validates steps, lr, optimizer, dtype

    def n_train_rows(self) -> int:
        return self.tokens // self.seq_len

    def settings(self) -> TrainSettings:
        steps = self.steps if self.steps is not None else math.ceil(self.n_train_rows() / self.batch_size)
        return TrainSettings(steps=steps, optimizer=self.optimizer, lr=self.lr,
                             weight_decay=self.weight_decay, matmul_dtype=self.matmul_dtype)


@dataclass
class LensEvalConfig:
    """``alignlab lens eval``: score the logit lens, and a saved tuned lens if given."""

    out: str = opt(help="run folder to write")
    model: str = opt(EMBEDDED_DEFAULT, "built-in name, hub id, local folder or .gguf file")
    revision: str | None = opt(None, "hub revision, or checkpoint subfolder of a local folder")
    lens: str | None = opt(None, "tuned lens folder (alignlab's, or the tuned-lens package's)")
    corpus: str = opt("builtin", "builtin, a .txt/.jsonl/.parquet file, or a datasets name")
    eval_tokens: int = opt(2048, "held-out tokens (the corpus's first rows, as in lens train)")
    seq_len: int = opt(128, "tokens per row, BOS first")
    batch_size: int = opt(4, "rows per forward pass")
    skip_first: int = opt(1, "positions left out at the start of each row (BOS / attention sink)")
    prompt: str = opt(DEFAULT_PROMPT, "prompt for the prediction-trajectory pictures")

    def __post_init__(self) -> None:
        _check_common(self.seq_len, self.eval_tokens, self.batch_size, self.skip_first)
        if self.lens is not None and not Path(self.lens).is_dir():
            raise ConfigError(f"--lens {self.lens!r} is not a folder; give the lens folder "
                              "`alignlab lens train` wrote (RUN/lens)")


@dataclass
class Split:
    held_out: Tensor  # (n_eval, T)
    train: Tensor  # (n_train, T)


def split_rows(lm: LoadedModel, corpus: str, seq_len: int, eval_tokens: int, train_tokens: int = 0) -> Split:
    """The first ``eval_tokens // seq_len`` rows held out, the next rows for training."""
    n_eval, n_train = eval_tokens // seq_len, train_tokens // seq_len
    blocks = tokenize_corpus(read_corpus(corpus), lm.tokenizer, seq_len, (n_eval + n_train) * seq_len)
    return Split(blocks.tokens[:n_eval], blocks.tokens[n_eval:])


def evaluate(lm: LoadedModel, lenses: list[Lens], held_out: Tensor, batch_size: int,
             skip_first: int) -> tuple[LensEvaluation, float]:
    start = time.perf_counter()
    ev = evaluate_lenses(lm, lenses, ModelRows(lm, held_out, batch_size, skip_first))
    return ev, time.perf_counter() - start


def lens_metrics(lm: LoadedModel, ev: LensEvaluation, eval_seconds: float) -> dict:
    return {"model": lm.spec, "revision": lm.revision,
            "sites": [f"resid.{i}" for i in range(lm.n_layers)],
            **ev.to_json(), "eval_seconds": eval_seconds}


def train_metrics(result: TrainResult, settings: TrainSettings, tokens: int) -> dict:
    return {"steps": result.steps, "seconds": result.seconds, "final_loss": result.final_loss,
            "tokens": tokens, "optimizer": settings.optimizer, "lr": settings.effective_lr}


def write_pictures(run_path: Path, lm: LoadedModel, lenses: list[Lens], ev: LensEvaluation,
                   prompt: str) -> dict:
    """KL-by-layer and trajectory PNGs into the run folder; returns the trajectories' data."""
    save_png(kl_by_layer_png({k: m.kl for k, m in ev.lenses.items()}, f"{lm.spec}: held-out KL by layer"),
             run_path / "lens_kl_by_layer.png")
    trajectories = {}
    for lens in lenses:
        traj = prediction_trajectory(lm, lens, prompt)
        save_png(trajectory_png(traj, "entropy"), run_path / f"lens_trajectory_{lens.name}.png")
        trajectories[lens.name] = traj.to_json()
    return trajectories


def run_lens_train(config: LensTrainConfig, log: Callable[[str], None] = print) -> Run:
    """Train a tuned lens on ``config.model`` and write the run folder ``config.out``."""
    ensure_writable_dir(config.out)  # fail before the slow model load
    lm = load_model(config.model, revision=config.revision)
    split = split_rows(lm, config.corpus, config.seq_len, config.eval_tokens, config.tokens)
    run = start_run(config.out, "lens train", config_to_dict(config))
    settings = config.settings()
    log(f"lens train: {lm.spec}, {split.train.shape[0]} training rows x {config.seq_len} tokens, "
        f"{settings.steps} steps")
    source = ModelRows(lm, split.train, config.batch_size, config.skip_first, shuffle=True, seed=config.seed)
    result = train_tuned_lens(lm, source, settings, log=log)
    save_lens(result.lens, run.path / LENS_FOLDER, extra={"train": train_metrics(result, settings, config.tokens)})
    lenses: list[Lens] = [LogitLens(), result.lens]
    ev, seconds = evaluate(lm, lenses, split.held_out, config.batch_size, config.skip_first)
    metrics = lens_metrics(lm, ev, seconds)
    metrics["train"] = train_metrics(result, settings, config.tokens)
    metrics["trajectory"] = write_pictures(run.path, lm, lenses, ev, config.prompt)
    run.finish({"lens": metrics})
    return run


def run_lens_eval(config: LensEvalConfig, log: Callable[[str], None] = print) -> Run:
    """Score the logit lens (and ``config.lens``, if given) on the held-out rows."""
    ensure_writable_dir(config.out)
    lm = load_model(config.model, revision=config.revision)
    lenses: list[Lens] = [LogitLens()]
    if config.lens is not None:
        lenses.append(read_lens(config.lens, lm))
    split = split_rows(lm, config.corpus, config.seq_len, config.eval_tokens)
    run = start_run(config.out, "lens eval", config_to_dict(config))
    log(f"lens eval: {lm.spec}, {split.held_out.shape[0]} rows x {config.seq_len} tokens, "
        f"lenses: {', '.join(lens.name for lens in lenses)}")
    ev, seconds = evaluate(lm, lenses, split.held_out, config.batch_size, config.skip_first)
    metrics = lens_metrics(lm, ev, seconds)
    if config.lens is not None:
        metrics["lens_path"] = str(config.lens)
    metrics["trajectory"] = write_pictures(run.path, lm, lenses, ev, config.prompt)
    run.finish({"lens": metrics})
    return run


@dataclass(frozen=True)
class DemoBudget:
    """How much the demo's lens section trains and scores (seq_len 128)."""

    train_rows: int
    eval_rows: int
    batch_size: int
    steps: int


DEMO_QUICK = DemoBudget(train_rows=24, eval_rows=2, batch_size=2, steps=12)
DEMO_FULL = DemoBudget(train_rows=256, eval_rows=16, batch_size=4, steps=64)
DEMO_SEQ_LEN = 128


def demo_lens(lm: LoadedModel, run_path: Path, quick: bool, log: Callable[[str], None]) -> dict:
    """Both lenses on ``lm`` within the demo's budget; pictures into ``run_path``."""
    budget = DEMO_QUICK if quick else DEMO_FULL
    split = split_rows(lm, "builtin", DEMO_SEQ_LEN, budget.eval_rows * DEMO_SEQ_LEN,
                       budget.train_rows * DEMO_SEQ_LEN)
    settings = TrainSettings(steps=budget.steps, optimizer="adam")
    log(f"lens: training a tuned lens, {budget.steps} steps of {budget.batch_size} x {DEMO_SEQ_LEN} tokens")
    source = ModelRows(lm, split.train, budget.batch_size, shuffle=True, seed=0)
    result = train_tuned_lens(lm, source, settings, log=log)
    save_lens(result.lens, run_path / LENS_FOLDER)
    lenses: list[Lens] = [LogitLens(), result.lens]
    ev, seconds = evaluate(lm, lenses, split.held_out, budget.batch_size, skip_first=1)
    metrics = lens_metrics(lm, ev, seconds)
    metrics["train"] = train_metrics(result, settings, budget.train_rows * DEMO_SEQ_LEN)
    metrics["trajectory"] = write_pictures(run_path, lm, lenses, ev, DEFAULT_PROMPT)
    better = sum(t < g for t, g in zip(ev.lenses["tuned"].kl, ev.lenses["logit"].kl))
    log(f"lens: tuned lens has lower held-out KL than the logit lens at {better} of {lm.n_layers} layers")
    return {"lens": metrics}
