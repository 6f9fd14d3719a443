"""Train several sparse coders at once from any :class:`~alignlab.sae.data.ActivationSource`.

The loop is an outline of named steps (after SAELens' ``SAETrainer.fit``): draw a batch for
every coder, scale it, take one Adam step per coder, keep decoder rows unit-norm, count dead
latents, report, checkpoint. Nothing random happens after initialisation, so a run is a
function of its seed and its data; a run resumed from a checkpoint ends with the same weights
as one that never stopped.

Defaults follow sparsify 1.3: for TopK and BatchTopK, schedule-free sign descent with
``lr = 5e-3 / sqrt(width / 2**14)`` (:mod:`alignlab.sae.optim`); for the penalised
architectures, Adam with ``lr = 2e-4 / sqrt(width / 2**14)`` and a warmup/decay schedule. AuxK
on latents that have not fired for ``dead_after_tokens`` tokens, decoder bias initialised at the
data mean.
Inputs are scaled so E||x||^2 = d_in (Anthropic, April 2024); the scale is folded into the
weights of the coders this module returns, so they read raw activations.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..errors import ArtifactError, ConfigError
from . import distributed as dist_util
from .arch import CoderConfig, SparseCoder, TrainOutput, build_coder
from .data import ActivationBatch, ActivationSource
from .optim import OPTIMIZERS, ScheduleFreeSignSGD, build_optimizer, default_lr, normalize_rows_

CHECKPOINT_DIR = "checkpoint"
DEAD_AFTER_TOKENS_MAX = 10_000_000  # sparsify's dead_feature_threshold


def default_optimizer(cfg: CoderConfig) -> str:
    """signum for TopK-style coders (sparsify's default), Adam for the penalised ones."""
    return "signum" if cfg.arch in ("topk", "batchtopk") else "adam"


@dataclass
class TrainSettings:
    """How to train (not what): shared by every coder in one run."""

    n_steps: int  # optimiser steps to take in total (a resumed run counts from 0 too)
    lr: float | None = None  # None: default_lr(width, optimizer), per coder
    optimizer: str | None = None  # signum | adam; None: default_optimizer(cfg), per coder
    warmup_steps: int | None = None  # Adam: None means min(1000, n_steps // 10)
    decay_fraction: float = 0.2  # Adam: linear decay to 0 over the last part of training
    dead_after_tokens: int | None = None  # None: min(10M, total tokens // 10)
    auxk: bool = True  # revive dead latents with AuxK (Gao et al. 2024)
    scale_inputs: bool = True  # train on activations scaled to E||x||^2 = d
    seed: int = 0  # initialisation
    checkpoint_every: int = 0  # steps between checkpoints (0: only when asked)
    checkpoint_dir: Path | None = None
    history_every: int = 10  # steps between entries of TrainResult.history

    def __post_init__(self) -> None:
        if self.n_steps < 1:
            raise ConfigError(f"training needs at least one step, got n_steps={self.n_steps}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.decay_fraction <= 1:
            raise ConfigError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else min(1000, self.n_steps // 10)

    def lr_factor(self, step: int) -> float:
        """Linear warmup, constant, then linear decay to 0 (step counts from 0)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        decay_start = self.n_steps * (1 - self.decay_fraction)
        if self.decay_fraction > 0 and step >= decay_start:
            return max(0.0, (self.n_steps - step) / (self.n_steps - decay_start))
        return 1.0


@dataclass
class StepStats:
    """One coder after one step (averaged over ranks for the losses)."""

    fvu: float
    l0: float
    dead_fraction: float
    aux_loss: float


@dataclass
class StepReport:
    step: int  # steps done
    n_steps: int
    tokens: int  # training rows seen so far, all ranks
    stats: dict[str, StepStats]


@dataclass
class TrainResult:
    """Coders ready to use (scales folded in) and what training saw."""

    coders: dict[str, SparseCoder]
    input_scale: dict[str, float]
    output_scale: dict[str, float]
    steps: int
    tokens: int  # kept training rows over all ranks
    sink_rows: int  # rows left out as attention sinks, all ranks
    seconds: float  # wall time of fit(): data (capture or reading) and updates
    update_seconds: float  # of which the coder updates alone
    history: list[dict] = field(default_factory=list)  # every history_every steps
    final: dict[str, StepStats] = field(default_factory=dict)  # mean of the last 10% of steps
    optimizers: dict[str, dict] = field(default_factory=dict)  # name -> {"optimizer", "lr"}


class _TrainStep(nn.Module):
    """What DistributedDataParallel wraps: the coder's training forward pass."""

    def __init__(self, coder: SparseCoder):
        super().__init__()
        self.coder = coder

    def forward(self, x: Tensor, y: Tensor, dead: Tensor | None) -> TrainOutput:
        return self.coder.train_forward(x, y, dead)


@dataclass
class _CoderState:
    coder: SparseCoder
    optimizer: torch.optim.Optimizer  # Adam or ScheduleFreeSignSGD
    base_lr: float
    input_scale: float = 1.0
    output_scale: float = 1.0
    since_fired: Tensor | None = None  # (width,) tokens since each latent last fired
    step_module: nn.Module | None = None


class Trainer:
    """Trains ``configs`` (name -> CoderConfig) together on batches from one source."""

    def __init__(self, configs: dict[str, CoderConfig], settings: TrainSettings):
        if not configs:
            raise ConfigError("nothing to train: give at least one coder config")
        self.settings = settings
        self.dist = dist_util.dist_info()
        self.step = 0
        self.tokens = 0
        self.sink_rows = 0
        self.update_seconds = 0.0
        self.initialized = False
        self.history: list[dict] = []
        self._recent: dict[str, list[StepStats]] = {name: [] for name in configs}
        self.states = {name: self._new_state(cfg, i) for i, (name, cfg) in enumerate(configs.items())}

    def _new_state(self, cfg: CoderConfig, index: int) -> _CoderState:
        coder = build_coder(cfg, seed=self.settings.seed + index)
        name = self.settings.optimizer or default_optimizer(cfg)
        lr = self.settings.lr if self.settings.lr is not None else default_lr(cfg.width, name)
        optimizer = build_optimizer(name, coder.parameters(), lr)
        return _CoderState(coder, optimizer, lr, since_fired=torch.zeros(cfg.width, dtype=torch.long))

    # ----- the loop ----------------------------------------------------------------------
    def fit(
        self, source: ActivationSource, on_step: Callable[[StepReport], None] | None = None
    ) -> TrainResult:
        """Train until ``settings.n_steps`` (continuing from ``self.step`` after a resume)."""
        started = time.perf_counter()
        self._check_source(source)
        for batch in source.batches(self.step):
            if self.step >= self.settings.n_steps:
                break
            if not self.initialized:
                self._initialize(batch)
            update_started = time.perf_counter()
            stats = {name: self._train_coder(name, batch) for name in self.states}
            self.update_seconds += time.perf_counter() - update_started
            self._count_tokens(batch)
            self.step += 1
            self._record(stats)
            if on_step is not None:
                on_step(StepReport(self.step, self.settings.n_steps, self.tokens, stats))
            if self._checkpoint_due():
                self.save_checkpoint()
        return self._result(time.perf_counter() - started)

    def _check_source(self, source: ActivationSource) -> None:
        available = source.n_batches
        if available is not None and available < self.settings.n_steps:
            raise ConfigError(
                f"asked for {self.settings.n_steps} training steps but the data holds only "
                f"{available} batches; ask for fewer tokens, a smaller batch, or more data"
            )

    def _initialize(self, batch: dict[str, ActivationBatch]) -> None:
        """Scales and biases from the first batch (rank 0's), then wrap for DDP."""
        for name, state in self.states.items():
            x, y = self._batch_for(batch, name).kept()
            if self.settings.scale_inputs:
                state.input_scale = _broadcast_float(_unit_mean_square_scale(x))
                same = y is x or batch[name].y is None
                state.output_scale = state.input_scale if same else _broadcast_float(_unit_mean_square_scale(y))
            state.coder.init_from_batch(x * state.input_scale, y * state.output_scale)
        self._wrap()
        self.initialized = True

    def _wrap(self) -> None:
        for state in self.states.values():
            module = _TrainStep(state.coder)
            if self.dist.active:
                from torch.nn.parallel import DistributedDataParallel

                module = DistributedDataParallel(module)  # broadcasts rank 0's weights
            state.step_module = module

    @staticmethod
    def _batch_for(batch: dict[str, ActivationBatch], name: str) -> ActivationBatch:
        if name not in batch:
            raise ConfigError(
                f"the data source has no batch for coder {name!r}; it provides {sorted(batch)}"
            )
        return batch[name]

    def _train_coder(self, name: str, batch: dict[str, ActivationBatch]) -> StepStats:
        state = self.states[name]
        x, y = self._batch_for(batch, name).kept()
        x, y = x * state.input_scale, y * state.output_scale
        dead = self._dead_mask(state) if self.settings.auxk else None
        out: TrainOutput = state.step_module(x, y, dead)
        out.loss.backward()
        self._optimizer_step(state)
        self._update_dead(state, out.fired, x.shape[0])
        return self._stats(state, out)

    def _optimizer_step(self, state: _CoderState) -> None:
        state.coder.remove_parallel_grad()
        schedule_free = isinstance(state.optimizer, ScheduleFreeSignSGD)
        factor = 1.0 if schedule_free else self.settings.lr_factor(self.step)
        for group in state.optimizer.param_groups:
            group["lr"] = state.base_lr * factor
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        if schedule_free:  # keep z, x and y on the sphere
            state.optimizer.project_(state.coder.W_dec, normalize_rows_)
        else:
            state.coder.normalize_decoder()

    def _dead_after(self) -> int:
        if self.settings.dead_after_tokens is not None:
            return self.settings.dead_after_tokens
        per_step = max(self.tokens // max(self.step, 1), 1)
        return min(DEAD_AFTER_TOKENS_MAX, max(per_step, self.settings.n_steps * per_step // 10))

    def _dead_mask(self, state: _CoderState) -> Tensor:
        return state.since_fired > self._dead_after()

    def _update_dead(self, state: _CoderState, fired: Tensor, rows: int) -> None:
        fired = dist_util.all_reduce_max_(fired.to(torch.int32)).bool()
        total = dist_util.all_reduce_sum_(torch.tensor(rows, dtype=torch.long))
        state.since_fired += total
        state.since_fired[fired] = 0

    def _stats(self, state: _CoderState, out: TrainOutput) -> StepStats:
        values = torch.stack([out.fvu, out.l0, out.aux_loss]).detach().double()
        values = dist_util.all_reduce_sum_(values) / self.dist.world
        dead = float(self._dead_mask(state).double().mean())
        return StepStats(float(values[0]), float(values[1]), dead, float(values[2]))

    def _count_tokens(self, batch: dict[str, ActivationBatch]) -> None:
        first = next(iter(self.states))
        b = batch[first]
        counts = torch.tensor([int(b.keep.sum()), int((~b.keep).sum())], dtype=torch.long)
        counts = dist_util.all_reduce_sum_(counts)
        self.tokens += int(counts[0])
        self.sink_rows += int(counts[1])

    def _record(self, stats: dict[str, StepStats]) -> None:
        window = max(1, self.settings.n_steps // 10)
        for name, s in stats.items():
            recent = self._recent[name]
            recent.append(s)
            del recent[:-window]
        every = max(1, self.settings.history_every)
        if self.step % every == 0 or self.step == self.settings.n_steps:
            self.history.append(
                {"step": self.step, "tokens": self.tokens,
                 **{name: vars(s).copy() for name, s in stats.items()}}
            )

    def _checkpoint_due(self) -> bool:
        every = self.settings.checkpoint_every
        return bool(every) and self.step % every == 0 and self.step < self.settings.n_steps

    def _result(self, seconds: float) -> TrainResult:
        coders = {}
        for name, state in self.states.items():
            coder = copy.deepcopy(state.coder)
            if isinstance(state.optimizer, ScheduleFreeSignSGD):  # keep the average x, not y
                with torch.no_grad():
                    for mine, theirs in zip(coder.parameters(), state.coder.parameters()):
                        mine.copy_(state.optimizer.averaged(theirs))
                    coder.normalize_decoder()
            coder.fold_scales(state.input_scale, state.output_scale)
            coders[name] = coder.eval()
        final = {name: _mean_stats(recent) for name, recent in self._recent.items() if recent}
        return TrainResult(
            coders,
            {n: s.input_scale for n, s in self.states.items()},
            {n: s.output_scale for n, s in self.states.items()},
            self.step, self.tokens, self.sink_rows, seconds, self.update_seconds, list(self.history),
            final, {n: {"optimizer": _optimizer_name(s.optimizer), "lr": s.base_lr} for n, s in self.states.items()},
        )

    # ----- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, folder: Path | None = None) -> Path | None:
        """Write the full training state (rank 0 only); atomically replaces the last one."""
        folder = Path(folder or self.settings.checkpoint_dir or "")
        if not str(folder):
            raise ConfigError("no checkpoint folder: set TrainSettings.checkpoint_dir")
        if self.dist.is_main:
            _write_checkpoint(folder, self._checkpoint_tensors(), self._checkpoint_meta())
        dist_util.barrier()
        return folder

    def _checkpoint_tensors(self) -> dict[str, Tensor]:
        tensors: dict[str, Tensor] = {}
        for i, state in enumerate(self.states.values()):
            for key, value in state.coder.state_dict().items():
                tensors[f"coder{i}.{key}"] = value.detach().clone()
            tensors[f"coder{i}.since_fired"] = state.since_fired.clone()
            for param_index, opt_state in state.optimizer.state_dict()["state"].items():
                for key, value in opt_state.items():
                    tensors[f"coder{i}.adam.{param_index}.{key}"] = torch.as_tensor(value).clone()
        return tensors

    def _checkpoint_meta(self) -> dict:
        return {
            "format": "alignlab.sae.checkpoint", "format_version": 1,
            "step": self.step, "tokens": self.tokens, "sink_rows": self.sink_rows,
            "n_steps": self.settings.n_steps, "seed": self.settings.seed,
            "names": list(self.states), "history": self.history,
            "configs": [s.coder.cfg.to_json() for s in self.states.values()],
            "scales": [[s.input_scale, s.output_scale] for s in self.states.values()],
            "recent": {n: [vars(s) for s in r] for n, r in self._recent.items()},
        }

    def load_checkpoint(self, folder: Path) -> bool:
        """Continue from ``folder`` if it holds a checkpoint; False when there is none."""
        folder = _existing_checkpoint(Path(folder))
        if folder is None:
            return False
        meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        self._check_checkpoint(meta, folder)
        tensors = load_file(str(folder / "state.safetensors"))
        for i, state in enumerate(self.states.values()):
            self._restore_state(i, state, tensors, meta)
        self.step, self.tokens, self.sink_rows = meta["step"], meta["tokens"], meta["sink_rows"]
        self.history = meta["history"]
        self._recent = {n: [StepStats(**s) for s in r] for n, r in meta["recent"].items()}
        self._wrap()
        self.initialized = True
        return True

    def _check_checkpoint(self, meta: dict, folder: Path) -> None:
        mine = {
            "names": list(self.states), "seed": self.settings.seed,
            "configs": [s.coder.cfg.to_json() for s in self.states.values()],
            "n_steps": self.settings.n_steps,
        }
        differ = [key for key, value in mine.items() if meta.get(key) != value]
        if differ:
            raise ArtifactError(
                f"checkpoint {folder} was made with other settings ({', '.join(differ)} differ); "
                "resume with the original arguments, or delete the checkpoint to start afresh"
            )

    @staticmethod
    def _restore_state(i: int, state: _CoderState, tensors: dict[str, Tensor], meta: dict) -> None:
        prefix = f"coder{i}."
        coder_state = {k[len(prefix):]: v for k, v in tensors.items()
                       if k.startswith(prefix) and ".adam." not in k and not k.endswith("since_fired")}
        state.coder.load_state_dict(coder_state)
        state.since_fired = tensors[prefix + "since_fired"].clone()
        state.input_scale, state.output_scale = meta["scales"][i]
        opt = state.optimizer.state_dict()
        opt["state"] = {}
        for key, value in tensors.items():
            if key.startswith(prefix + "adam."):
                param_index, name = key[len(prefix) + 5:].split(".", 1)
                opt["state"].setdefault(int(param_index), {})[name] = value
        state.optimizer.load_state_dict(opt)


def _unit_mean_square_scale(x: Tensor) -> float:
    """The factor c with E||c x||^2 = d (Anthropic's April 2024 input normalisation)."""
    mean_square = x.double().pow(2).sum(1).mean()
    if not mean_square > 0:
        return 1.0
    return float(math.sqrt(x.shape[1] / float(mean_square)))


def _optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    return "signum" if isinstance(optimizer, ScheduleFreeSignSGD) else "adam"


def _broadcast_float(value: float) -> float:
    return float(dist_util.broadcast_(torch.tensor(value, dtype=torch.float64)))


def _mean_stats(stats: list[StepStats]) -> StepStats:
    n = len(stats)
    return StepStats(*(sum(getattr(s, f) for s in stats) / n
                       for f in ("fvu", "l0", "dead_fraction", "aux_loss")))


def _existing_checkpoint(folder: Path) -> Path | None:
    """``folder`` if complete; else the previous checkpoint a crash left beside it."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / "state.json").is_file() and (candidate / "state.safetensors").is_file():
            return candidate
    return None


def _write_checkpoint(folder: Path, tensors: dict[str, Tensor], meta: dict) -> None:
    """Write beside ``folder`` and swap it in, so a crash leaves a whole checkpoint behind."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".tmp")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps(meta), encoding="utf-8")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
