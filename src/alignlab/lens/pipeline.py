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
    lens.train.{steps, seconds, final_loss, tokens, optimizer, lr, source}   (lens train only;
                                          source: "model" on the fly, or "store")
    lens.trajectory.{logit, tuned}        (the prompt decoded at every layer)
    lens.cold.{...}, lens.warm_start.{init_lens, warm_final_loss, cold_final_loss,
        steps_to_cold_final_loss, steps_saved, kl_mean_warm, kl_mean_cold, kl_mean_saving,
        warm_seconds, cold_seconds}       (lens train --init-lens L --compare-cold only)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..activations import ActivationStore
from ..config import config_to_dict, opt
from ..data import read_corpus, tokenize_corpus
from ..errors import ArtifactError, ConfigError, StoreError
from ..models import EMBEDDED_DEFAULT, LoadedModel, load_model
from ..runs import Run, ensure_writable_dir, start_run
from .batches import ModelRows, StoreRows
from .io import read_lens, save_lens
from .logit import Lens, LogitLens
from .metrics import LensEvaluation, evaluate_lenses
from .plots import kl_by_layer_png, prediction_trajectory, save_png, trajectory_png
from .train import MATMUL_DTYPES, OPTIMIZERS, TrainResult, TrainSettings, train_tuned_lens
from .tuned import TunedLens

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
    store: str | None = opt(None, "read training residuals from this activation store (`alignlab "
                            "harvest --sites 'resid.*'` of the same model and corpus) instead of "
                            "running the model")
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
    init_lens: str | None = opt(None, "start from this tuned lens folder (e.g. another checkpoint's) "
                                "instead of the logit lens")
    compare_cold: bool = opt(False, "also train from the logit lens on the same batches, score it as "
                             "lens.cold and report what --init-lens saved (lens.warm_start)")

    def __post_init__(self) -> None:
        _check_common(self.seq_len, self.eval_tokens, self.batch_size, self.skip_first)
        if self.tokens < self.seq_len:
            raise ConfigError(f"--tokens {self.tokens} is less than one row of --seq-len {self.seq_len}")
        self.settings()  # validates steps, lr, optimizer, dtype
        if self.store is not None and not Path(self.store).is_dir():
            raise ConfigError(f"--store {self.store!r} is not a folder; give the folder "
                              "`alignlab harvest --out` wrote")

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


def train_metrics(result: TrainResult, settings: TrainSettings, tokens: int,
                  source: str = "model") -> dict:
    return {"steps": result.steps, "seconds": result.seconds, "final_loss": result.final_loss,
            "tokens": tokens, "optimizer": settings.optimizer, "lr": settings.effective_lr,
            "source": source}


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


def training_rows(lm: LoadedModel, config: LensTrainConfig, split: Split) -> ModelRows | StoreRows:
    """The training batches: captured on the fly, or read from ``config.store``."""
    if config.store is None:
        return ModelRows(lm, split.train, config.batch_size, config.skip_first, shuffle=True,
                         seed=config.seed)
    store = ActivationStore.open(config.store)
    seqs = store_sequences(store, lm, split, config.seq_len)
    return StoreRows(store, seqs, lm.n_layers, lm.tokenizer, config.batch_size, config.skip_first,
                     shuffle=True, seed=config.seed)


def store_sequences(store: ActivationStore, lm: LoadedModel, split: Split, seq_len: int) -> range:
    """The store's sequences that are ``split.train``, checked token for token.

    The held-out rows are the corpus's first ones, so a store harvested from the start of the
    same corpus holds them first and the training rows after them; those are the ones used.
    """
    if store.model.get("unembedding_hash") != lm.anatomy.unembedding_hash():
        raise StoreError(f"store {str(store.path)!r} was harvested from {store.model.get('model')!r}, "
                         f"not from the loaded {lm.spec!r}; give the model it was harvested from")
    if store.seq_len != seq_len:
        raise ConfigError(f"store {str(store.path)!r} has sequences of {store.seq_len} tokens; "
                          f"pass --seq-len {store.seq_len}")
    n_eval, n_train = split.held_out.shape[0], split.train.shape[0]
    if store.n_seq < n_eval + n_train:
        raise ConfigError(
            f"store {str(store.path)!r} holds {store.n_seq} sequences, but the {n_eval} held-out "
            f"and {n_train} training rows need {n_eval + n_train}; pass --tokens "
            f"{max(0, store.n_seq - n_eval) * seq_len} or less, or harvest more tokens")
    seqs = range(n_eval, n_eval + n_train)
    for row, seq in zip(split.train, seqs):
        if not torch.equal(store.sequence(seq), row):
            raise StoreError(
                f"sequence {seq} of store {str(store.path)!r} is not training row {seq - n_eval} of "
                f"corpus {store.manifest.data.get('corpus')!r} as tokenized here; harvest the same "
                "--corpus (with BOS) from its start")
    return seqs


def run_lens_train(config: LensTrainConfig, log: Callable[[str], None] = print) -> Run:
    """Train a tuned lens on ``config.model`` and write the run folder ``config.out``."""
    ensure_writable_dir(config.out)  # fail before the slow model load
    lm = load_model(config.model, revision=config.revision)
    start = starting_lens(lm, config.init_lens)  # a bad --init-lens or --store fails before
    split = split_rows(lm, config.corpus, config.seq_len, config.eval_tokens, config.tokens)
    source = training_rows(lm, config, split)  # the run folder is started
    run = start_run(config.out, "lens train", config_to_dict(config))
    settings = config.settings()
    log(f"lens train: {lm.spec}, {split.train.shape[0]} training rows x {config.seq_len} tokens, "
        f"{settings.steps} steps{'' if config.init_lens is None else ', from ' + config.init_lens}")
    result = train_tuned_lens(lm, source, settings, lens=start, log=log)
    trained = train_metrics(result, settings, config.tokens, "store" if config.store else "model")
    save_lens(result.lens, run.path / LENS_FOLDER, extra={"train": trained})
    lenses: list[Lens] = [LogitLens(), result.lens]
    cold = None
    if config.compare_cold:
        log("lens train: the same training from the logit lens (zero init), for comparison")
        cold = train_tuned_lens(lm, training_rows(lm, config, split), settings, log=log)
    scored = lenses if cold is None else [*lenses, NamedLens(cold.lens, "cold")]
    ev, seconds = evaluate(lm, scored, split.held_out, config.batch_size, config.skip_first)
    metrics = lens_metrics(lm, ev, seconds)
    metrics["train"] = trained
    if cold is not None:
        metrics["warm_start"] = warm_start_metrics(result, cold, ev, config.init_lens)
    metrics["trajectory"] = write_pictures(run.path, lm, lenses, ev, config.prompt)
    run.finish({"lens": metrics})
    return run


def starting_lens(lm: LoadedModel, init_lens: str | None) -> TunedLens:
    """A zero-initialised lens (the logit lens), or the lens in ``init_lens`` restamped for ``lm``.

    The start may come from another checkpoint of the same architecture (``alignlab across
    --warm-start``), whose unembedding differs, so only the sizes are checked; the lens trained
    from it records ``lm``.
    """
    lens = TunedLens.for_model(lm)
    if init_lens is None:
        return lens
    start = read_lens(init_lens, lm, check_model=False)
    if (start.n_layers, start.d_model) != (lens.n_layers, lens.d_model):
        raise ArtifactError(
            f"--init-lens {init_lens!r} has {start.n_layers} layers of width {start.d_model}, but "
            f"{lm.spec!r} has {lens.n_layers} of width {lens.d_model}; start from a lens of this "
            "architecture, or leave --init-lens out")
    lens.load_stacked(*start.stacked())
    return lens


class NamedLens:
    """A lens scored under another name (the zero-initialised comparison lens is ``cold``)."""

    def __init__(self, lens: Lens, name: str):
        self.lens, self.name = lens, name

    def transform(self, h: Tensor, layer: int) -> Tensor:
        return self.lens.transform(h, layer)


def steps_to_reach(losses: list[float], target: float, window: int = 10) -> int | None:
    """First step count after which the trailing ``window``-step mean loss is <= ``target``.

    ``TrainResult.final_loss`` is the mean of the last 10 steps, so comparing trailing means
    compares like with like; both runs see the same batches in the same order.
    """
    for n in range(1, len(losses) + 1):
        tail = losses[max(0, n - window) : n]
        if sum(tail) / len(tail) <= target:
            return n
    return None


def warm_start_metrics(warm: TrainResult, cold: TrainResult, ev: LensEvaluation,
                       init_lens: str | None) -> dict:
    """What starting from ``init_lens`` saved against starting from the logit lens."""
    reach = steps_to_reach(warm.losses, cold.final_loss)
    tuned, zero = ev.lenses["tuned"].kl, ev.lenses["cold"].kl
    return {
        "init_lens": init_lens,
        "warm_final_loss": warm.final_loss,
        "cold_final_loss": cold.final_loss,
        "steps_to_cold_final_loss": reach,  # None: the warm run never got there
        "steps_saved": None if reach is None else warm.steps - reach,
        "kl_mean_warm": sum(tuned) / len(tuned),
        "kl_mean_cold": sum(zero) / len(zero),
        "kl_mean_saving": (sum(zero) - sum(tuned)) / len(zero),  # > 0: warm is better, same steps
        "warm_seconds": warm.seconds,
        "cold_seconds": cold.seconds,
    }


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
