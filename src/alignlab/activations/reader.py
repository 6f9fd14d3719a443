"""Shuffled batches from an activation store with bounded memory, deterministic under a seed.

Rows are read in chunks (by default one sequence each) from memory-mapped shards, chunks in a
seeded random order across the whole store, into a buffer of ``buffer_rows`` rows. When the
buffer is full it is permuted and its first half is handed out as batches; the rest stays to mix
with later chunks (the mixing buffer of SAELens' ``ActivationsStore``). Memory is the buffer
and the batch being handed out, whatever the store's size. With ``shuffle=False`` rows come in
store order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from .shards import TORCH_DTYPES, as_torch
from .store import ActivationBatch, ActivationStore

DEFAULT_BUFFER_BYTES = 256 << 20


@dataclass(frozen=True)
class _Chunk:
    shard: int
    start: int  # first row within the shard
    stop: int


class ShuffledReader:
    """Iterate ``ActivationBatch`` es of ``batch_size`` rows for ``sites``.

    ``seed`` fixes the order (iterating twice gives the same batches; pass ``epoch`` to
    :meth:`epoch_iter` for a different order per epoch). ``buffer_rows`` bounds memory: at most
    ``buffer_rows`` rows (default: about 256 MB of them) are buffered at once.
    """

    def __init__(
        self,
        store: ActivationStore,
        sites: list[str] | str | None = None,
        batch_size: int = 4096,
        shuffle: bool = True,
        seed: int = 0,
        buffer_rows: int | None = None,
        chunk_rows: int | None = None,
        drop_last: bool = False,
    ):
        self.store = store
        self.sites = store._resolve_sites(sites)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.chunk_rows = chunk_rows or store.seq_len
        self.buffer_rows = buffer_rows or self._default_buffer_rows()
        self.drop_last = drop_last
        self.peak_buffered_rows = 0  # the most rows held at once in the last iteration
        self._check()

    def __iter__(self) -> Iterator[ActivationBatch]:
        return self.epoch_iter(0)

    def __len__(self) -> int:
        n = self.store.n_rows
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_iter(self, epoch: int) -> Iterator[ActivationBatch]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        buffer = _Buffer(self.store, self.sites, self.buffer_rows)
        self.peak_buffered_rows = 0
        for chunk in self._chunk_order(gen):
            size = chunk.stop - chunk.start
            if buffer.fill + size > self.buffer_rows:
                yield from self._drain(buffer, gen, room=size)
            buffer.add(chunk)
            self.peak_buffered_rows = max(self.peak_buffered_rows, buffer.fill)
        yield from self._drain(buffer, gen, room=None)

    def _drain(
        self, buffer: _Buffer, gen: torch.Generator, room: int | None
    ) -> Iterator[ActivationBatch]:
        """Hand out batches: everything at the end (``room`` None), else about half the buffer
        and at least enough that ``room`` more rows fit; the rest stays to mix with new chunks."""
        fill, bs = buffer.fill, self.batch_size
        order = torch.randperm(fill, generator=gen) if self.shuffle else torch.arange(fill)
        if room is None:
            n_out = fill
        else:
            wanted = max(fill // 2, fill + room - self.buffer_rows) if self.shuffle else fill
            n_out = min(-(-wanted // bs) * bs, fill // bs * bs)
        for start in range(0, n_out, bs):
            stop = min(start + bs, n_out)
            if stop - start < bs and self.drop_last:
                break
            yield buffer.take(order[start:stop])
        buffer.keep(order[n_out:])

    def _chunk_order(self, gen: torch.Generator) -> list[_Chunk]:
        chunks = []
        for index in sorted(self.store.manifest.shards):
            _, n_rows = self.store.shard_rows(index)
            chunks += [
                _Chunk(index, s, min(s + self.chunk_rows, n_rows))
                for s in range(0, n_rows, self.chunk_rows)
            ]
        if self.shuffle:
            chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=gen).tolist()]
        return chunks

    def _default_buffer_rows(self) -> int:
        itemsize = TORCH_DTYPES[self.store.dtype].itemsize
        row_bytes = sum(self.store.widths[s] for s in self.sites) * itemsize + 24
        return max(2 * self.batch_size, 2 * self.chunk_rows, DEFAULT_BUFFER_BYTES // row_bytes)

    def _check(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be at least 1, got {self.chunk_rows}")
        if self.buffer_rows < 2 * max(self.batch_size, self.chunk_rows):
            raise ConfigError(
                f"buffer_rows ({self.buffer_rows}) must be at least twice batch_size "
                f"({self.batch_size}) and chunk_rows ({self.chunk_rows}), so a batch can mix chunks"
            )


class _Buffer:
    """Preallocated rows for every site, plus each row's token, sequence and position."""

    def __init__(self, store: ActivationStore, sites: list[str], capacity: int):
        self.store = store
        dtype = TORCH_DTYPES[store.dtype]
        self.acts = {s: torch.empty(capacity, store.widths[s], dtype=dtype) for s in sites}
        self.meta = torch.empty(capacity, 3, dtype=torch.int64)  # token, seq, pos
        self.fill = 0

    def add(self, chunk: _Chunk) -> None:
        shard = self.store.shard(chunk.shard)
        n = chunk.stop - chunk.start
        dest = slice(self.fill, self.fill + n)
        for site, buf in self.acts.items():
            buf[dest] = as_torch(shard.array(site)[chunk.start : chunk.stop], self.store.dtype)
        first_row, _ = self.store.shard_rows(chunk.shard)
        rows = torch.arange(chunk.start, chunk.stop) + first_row
        tokens = shard.array("tokens").reshape(-1)[chunk.start : chunk.stop]
        self.meta[dest, 0] = torch.from_numpy(np.ascontiguousarray(tokens))
        self.meta[dest, 1] = rows // self.store.seq_len
        self.meta[dest, 2] = rows % self.store.seq_len
        self.fill += n

    def take(self, index: torch.Tensor) -> ActivationBatch:
        """The rows at ``index`` (a copy)."""
        acts = {s: buf[index] for s, buf in self.acts.items()}
        meta = self.meta[index]
        return ActivationBatch(acts, meta[:, 0], meta[:, 1], meta[:, 2])

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the rows at ``index``, moved to the front."""
        rest = len(index)
        for buf in self.acts.values():
            buf[:rest] = buf[index]
        self.meta[:rest] = self.meta[index]
        self.fill = rest
