"""Write shards on a background thread, so disk I/O overlaps the next forward pass.

A shard is reserved at its full size under a hidden temporary name, filled batch by batch with
``pwrite`` at offsets fixed by its layout (no copy of the shard is held in memory), flushed to
disk, hashed, and only then renamed to its final name. A shard under its final name is therefore
always complete, and its bytes depend only on the data written into it, never on timing.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import StoreError
from .shards import ShardLayout, sha256_file


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard, as the manifest lists it."""

    index: int
    file: str  # relative to the store folder
    first_seq: int
    n_seq: int
    n_rows: int
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, obj: dict) -> ShardRecord:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ShardJob:
    """What the writer needs to know to write one shard."""

    store: Path
    index: int
    file: str  # final name, relative to the store
    temp: str  # temporary name, relative to the store
    layout: ShardLayout
    first_seq: int
    n_seq: int
    n_rows: int


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# Flush to disk in the background every this many bytes, so the flush before a shard's rename
# (on the critical path at the end of a harvest) has little left to do.
SYNC_EVERY_BYTES = 32 << 20


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is written (it may write less than asked)."""
    while len(data):
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def tensor_bytes(tensor: Tensor) -> memoryview:
    """The raw bytes of a CPU tensor, without a copy when it is already contiguous."""
    tensor = tensor.contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)  # numpy has no bfloat16; the bits are what we write
    return memoryview(np.ascontiguousarray(tensor.numpy())).cast("B")


class ShardWriter:
    """A background thread that owns every open shard file.

    The main thread calls :meth:`begin`, :meth:`write` (per batch) and :meth:`end` (per shard);
    the queue between them holds at most ``max_pending`` items, so memory stays bounded when the
    disk is slower than the model. A failure is raised in the main thread at its next call,
    as a :class:`StoreError`, with the unfinished shard's temporary file removed.
    """

    def __init__(self, on_done: Callable[[ShardRecord], None], max_pending: int = 2):
        self._on_done = on_done
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._abandon = False
        self._job: ShardJob | None = None
        self._store: Path | None = None  # the last store written to, for error messages
        self._fd: int | None = None
        self._unsynced = 0  # bytes written since the last fdatasync
        self._thread = threading.Thread(
            target=self._loop, name="alignlab-shard-writer", daemon=True
        )
        self._thread.start()

    def begin(self, job: ShardJob) -> None:
        self._put(("begin", job))

    def write(self, row_start: int, acts: dict[str, Tensor]) -> None:
        """Rows ``row_start:row_start + n`` of every site, each (n, d) in the store dtype."""
        self._put(("rows", row_start, acts))

    def end(self, extra: dict[str, Tensor]) -> None:
        """The shard's remaining tensors (tokens, sequence indices, statistics); then finish it."""
        self._put(("end", extra))

    def close(self) -> None:
        """Wait for every queued write; raise the writer's error if it had one."""
        self._queue.put(None)
        self._thread.join()
        self._raise_error()

    def abandon(self) -> None:
        """Stop after an error in the main thread: drop queued work and the unfinished shard."""
        self._abandon = True
        self._queue.put(None)
        self._thread.join()

    def _put(self, item) -> None:
        self._raise_error()
        self._queue.put(item)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None or self._abandon:
                continue  # keep draining so the main thread never blocks on a full queue
            try:
                self._handle(item)
            except BaseException as exc:  # noqa: BLE001 -- handed to the main thread
                self._error = self._explain(exc)
                self._discard()
        if self._abandon:
            self._discard()

    def _handle(self, item) -> None:
        kind = item[0]
        if kind == "begin":
            self._open(item[1])
        elif kind == "rows":
            self._write_rows(item[1], item[2])
        else:
            self._finish(item[1])

    def _open(self, job: ShardJob) -> None:
        path = job.store / job.temp
        self._job, self._store = job, job.store
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self._fd, job.layout.total_bytes)
        _pwrite_all(self._fd, memoryview(job.layout.header), 0)

    def _write_rows(self, row_start: int, acts: dict[str, Tensor]) -> None:
        layout = self._job.layout
        for site, rows in acts.items():
            row_bytes = layout.tensors[site].nbytes // layout.tensors[site].shape[0]
            data = tensor_bytes(rows)
            _pwrite_all(self._fd, data, layout.offset(site) + row_start * row_bytes)
            self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY_BYTES:
            os.fdatasync(self._fd)
            self._unsynced = 0

    def _finish(self, extra: dict[str, Tensor]) -> None:
        job, fd = self._job, self._fd
        for name, tensor in extra.items():
            _pwrite_all(fd, tensor_bytes(tensor), job.layout.offset(name))
        os.fsync(fd)  # the rename below must never name a file whose bytes are not on disk
        self._unsynced = 0
        os.close(fd)
        self._fd = None
        temp, final = job.store / job.temp, job.store / job.file
        digest = sha256_file(temp)
        os.replace(temp, final)
        self._job = None
        size = job.layout.total_bytes
        self._on_done(
            ShardRecord(job.index, job.file, job.first_seq, job.n_seq, job.n_rows, size, digest)
        )

    def _discard(self) -> None:
        """Close and delete the unfinished shard, so only complete shards have final names."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._job is not None:
            (self._job.store / self._job.temp).unlink(missing_ok=True)
            self._job = None

    def _explain(self, exc: BaseException) -> BaseException:
        if not isinstance(exc, OSError):
            return exc
        job = self._job
        where = (
            f"shard {job.file} of store {str(job.store)!r}"
            if job
            else f"store {str(self._store)!r}"
        )
        why = exc.strerror or str(exc)
        if exc.errno in _DISK_FULL:
            why += " (the disk is full)"
        return StoreError(
            f"could not write {where}: {why}; finished shards are kept, so free space (or fix "
            "the cause) and run the same command again to continue"
        )
