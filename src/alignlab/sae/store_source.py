"""Training batches from an activation store (``alignlab harvest``), shuffled and resumable.

Rows come from :class:`alignlab.activations.ShuffledReader` (seeded, so the order is a function
of the seed); under ``torchrun`` rank r takes every world-th batch. A resumed run reads and
skips the batches it has already trained on, so it sees exactly the rows an uninterrupted run
would. Attention sinks are found from the stored positions (position 0) and norms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..activations import ActivationBatch as StoreRows
from ..activations import ActivationStore, ShuffledReader
from ..errors import ConfigError, DataError, StoreError
from .data import DEFAULT_SINKS, ActivationBatch, SinkRule, SitePair, sink_rows


@dataclass
class StoreSource:
    store: ActivationStore
    pairs: list[SitePair]
    batch_size: int  # rows per rank per step
    seed: int = 0
    sinks: SinkRule = DEFAULT_SINKS
    epochs: int = 1
    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError(f"batch_size and epochs must be positive, got {self.batch_size}, {self.epochs}")
        wanted = sorted({s for p in self.pairs for s in (p.input, p.output)})
        missing = [s for s in wanted if s not in self.store.sites]
        if missing:
            raise StoreError(
                f"store {self.store.path} has no site {', '.join(missing)}; it holds "
                f"{', '.join(self.store.sites)}. Harvest those sites, or train on one of these"
            )
        self.sites = wanted
        self.per_epoch = self.store.n_rows // self.batch_size // self.world
        if self.per_epoch == 0:
            raise DataError(
                f"store {self.store.path} holds {self.store.n_rows} rows, fewer than one batch of "
                f"{self.batch_size} x {self.world} ranks; use a smaller --batch-tokens"
            )
        self.n_batches = self.per_epoch * self.epochs

    def batches(self, start: int = 0) -> Iterator[dict[str, ActivationBatch]]:
        reader = ShuffledReader(self.store, self.sites, self.batch_size, shuffle=True,
                                seed=self.seed, drop_last=True)
        first_epoch = start // self.per_epoch
        for epoch in range(first_epoch, self.epochs):
            for i, rows in enumerate(reader.epoch_iter(epoch)):
                local = i // self.world
                if local >= self.per_epoch:
                    break
                step = epoch * self.per_epoch + local
                if i % self.world != self.rank or step < start:
                    continue
                yield {p.name: self._pair_batch(rows, p) for p in self.pairs}

    def _pair_batch(self, rows: StoreRows, pair: SitePair) -> ActivationBatch:
        is_first = rows.pos == 0
        x = rows.acts[pair.input].float()
        sinks = sink_rows(x, is_first, self.sinks)
        y = None
        if pair.is_transcoder:
            y = rows.acts[pair.output].float()
            sinks |= sink_rows(y, is_first, self.sinks)
        return ActivationBatch(x, y, ~sinks, rows.tokens)


def open_store(path: str) -> ActivationStore:
    """Open a finished store, or say why it cannot be trained on."""
    try:
        return ActivationStore.open(path)
    except StoreError:
        raise
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot open activation store {path!r}: {exc}") from exc
