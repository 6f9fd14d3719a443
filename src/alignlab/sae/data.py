"""Batches of activation rows for training and evaluating coders, from any source.

The trainer consumes any :class:`ActivationSource`: an object whose ``batches(start)`` yields,
step by step, one :class:`ActivationBatch` per coder name. Sources here: tensors in memory
(synthetic data, tests), a model run on the fly with several sites captured per forward pass
(:class:`ModelSource`), and the activation store (:mod:`alignlab.sae.store_source`). ``start``
lets a resumed run skip the steps it has done without computing them.

Attention sinks. The first position of a sequence, and any token whose activation norm is far
above the rest (on smollm2-135m layer 15 the first token carries 98.5% of the variance), is
marked ``keep=False``: training and the headline metrics leave such rows out, and evaluation
reports them separately (``fvu_all_positions``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ..activations import run_with_sites
from ..activations.sites import expand_sites
from ..errors import ConfigError, DataError
from ..models import LoadedModel

DEFAULT_SINK_FACTOR = 10.0


@dataclass(frozen=True)
class SitePair:
    """Where a coder reads (``input``) and what it predicts (``output``; the same for an SAE)."""

    input: str
    output: str

    @property
    def is_transcoder(self) -> bool:
        return self.input != self.output

    @property
    def name(self) -> str:
        """The coder's name: its site, or ``in->out`` for a transcoder."""
        return self.input if not self.is_transcoder else f"{self.input}->{self.output}"

    @property
    def folder_name(self) -> str:
        return self.input if not self.is_transcoder else f"{self.input}_to_{self.output}"


@dataclass(frozen=True)
class SinkRule:
    """Which rows count as attention sinks (excluded from training and headline metrics)."""

    first_position: bool = True  # position 0 of every sequence
    norm_factor: float = DEFAULT_SINK_FACTOR  # norm above this many times the median (0: off)

    @property
    def enabled(self) -> bool:
        return self.first_position or self.norm_factor > 0


DEFAULT_SINKS = SinkRule()
NO_SINKS = SinkRule(first_position=False, norm_factor=0.0)


@dataclass
class ActivationBatch:
    """Rows of one coder's input (and target), sinks included but marked."""

    x: Tensor  # (N, d_in)
    y: Tensor | None  # (N, d_out) for a transcoder; None: the target is x
    keep: Tensor  # (N,) bool, False on attention-sink rows
    tokens: Tensor | None = None  # (N,) token id of each row, when known

    @property
    def target(self) -> Tensor:
        return self.x if self.y is None else self.y

    @property
    def n_rows(self) -> int:
        return self.x.shape[0]

    def kept(self) -> tuple[Tensor, Tensor]:
        """(x, target) on the non-sink rows."""
        return self.x[self.keep], self.target[self.keep]


class ActivationSource(Protocol):
    """Anything the trainer can draw batches from."""

    n_batches: int | None  # steps available (None: unbounded)

    def batches(self, start: int = 0) -> Iterator[dict[str, ActivationBatch]]:
        """Step ``start``, ``start + 1``, ... as {coder name: batch}."""
        ...


def sink_mask(acts: Tensor, rule: SinkRule) -> Tensor:
    """(B, T) bool, True on attention-sink positions of ``acts`` (B, T, d)."""
    batch, length = acts.shape[:2]
    first = torch.zeros(batch, length, dtype=torch.bool, device=acts.device)
    first[:, 0] = True
    flat = sink_rows(acts.reshape(batch * length, -1), first.reshape(-1), rule)
    return flat.reshape(batch, length)


def sink_rows(x: Tensor, is_first: Tensor, rule: SinkRule) -> Tensor:
    """(N,) bool, True on sink rows of ``x`` (N, d); ``is_first``: rows at position 0.

    A row is a sink if it is a first position (when ``rule.first_position``) or its norm is more
    than ``rule.norm_factor`` times the median norm of the batch's other rows.
    """
    sinks = is_first.clone() if rule.first_position else torch.zeros_like(is_first)
    if rule.norm_factor > 0:
        norms = x.float().norm(dim=-1)  # (N,)
        pool = norms[~is_first] if rule.first_position else norms
        if pool.numel():
            sinks |= norms > rule.norm_factor * pool.median()
    return sinks


@dataclass
class TensorSource:
    """Rows in memory, cut into consecutive batches (for synthetic data and tests).

    With ``world > 1`` each rank takes its own slice of every global batch.
    """

    x: Tensor  # (N, d_in)
    batch_size: int
    y: Tensor | None = None  # (N, d_out)
    keep: Tensor | None = None  # (N,) bool
    name: str = "x"
    rank: int = 0
    world: int = 1
    epochs: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        per_epoch = self.x.shape[0] // (self.batch_size * self.world)
        if per_epoch == 0:
            raise DataError(
                f"{self.x.shape[0]} rows are fewer than one batch of {self.batch_size} x "
                f"{self.world} ranks; give more rows or a smaller batch"
            )
        self.n_batches = per_epoch * self.epochs

    def batches(self, start: int = 0) -> Iterator[dict[str, ActivationBatch]]:
        per_epoch = self.n_batches // self.epochs
        for step in range(start, self.n_batches):
            first = ((step % per_epoch) * self.world + self.rank) * self.batch_size
            rows = slice(first, first + self.batch_size)
            keep = self.keep[rows] if self.keep is not None else torch.ones(
                self.batch_size, dtype=torch.bool
            )
            y = self.y[rows] if self.y is not None else None
            yield {self.name: ActivationBatch(self.x[rows], y, keep)}


@dataclass
class ModelSource:
    """Activations captured on the fly: one forward pass per step serves every coder.

    ``tokens`` (n_seq, T) are taken ``batch_seqs`` sequences at a time, in order (shuffle the
    rows beforehand for a shuffled run). The forward pass stops after the deepest site needed.
    """

    lm: LoadedModel
    tokens: Tensor  # (n_seq, T)
    pairs: list[SitePair]
    batch_seqs: int
    sinks: SinkRule = DEFAULT_SINKS
    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.batch_seqs < 1:
            raise ConfigError(f"batch_seqs must be at least 1, got {self.batch_seqs}")
        names = [s for p in self.pairs for s in (p.input, p.output)]
        self.sites = expand_sites(sorted(set(names)), self.lm.n_layers)
        self.n_batches = self.tokens.shape[0] // (self.batch_seqs * self.world)
        if self.n_batches == 0:
            raise DataError(
                f"{self.tokens.shape[0]} sequences are fewer than one batch of {self.batch_seqs} "
                f"x {self.world} ranks; ask for more tokens or a smaller batch"
            )

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_seqs * self.tokens.shape[1]

    def token_batch(self, step: int) -> Tensor:
        first = (step * self.world + self.rank) * self.batch_seqs
        return self.tokens[first : first + self.batch_seqs]  # (B, T)

    def batches(self, start: int = 0) -> Iterator[dict[str, ActivationBatch]]:
        for step in range(start, self.n_batches):
            yield self.capture(self.token_batch(step))

    def capture(self, ids: Tensor) -> dict[str, ActivationBatch]:
        acts = run_with_sites(self.lm, ids, self.sites).acts  # name -> (B, T, d)
        return {p.name: pair_batch(acts, p, ids, self.sinks) for p in self.pairs}


def pair_batch(acts: dict[str, Tensor], pair: SitePair, ids: Tensor, sinks: SinkRule) -> ActivationBatch:
    """Flatten one site pair's (B, T, d) activations into rows with a sink mask."""
    x = acts[pair.input]
    mask = sink_mask(x, sinks)
    y = None
    if pair.is_transcoder:
        y = acts[pair.output]
        mask |= sink_mask(y, sinks)
    flat = lambda t: t.reshape(-1, t.shape[-1]).float().cpu()  # noqa: E731  (B*T, d)
    return ActivationBatch(
        flat(x), flat(y) if y is not None else None, ~mask.reshape(-1).cpu(), ids.reshape(-1).cpu()
    )
