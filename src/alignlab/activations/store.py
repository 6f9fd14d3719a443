"""The activation store: a folder with ``manifest.json`` and ``shards/*.safetensors``.

Activations are captured once (``alignlab harvest``) and read by every tool. The manifest says
what made the store (harvest arguments, model spec, revision and unembedding hash, data
fingerprint), what it holds (sites and widths, dtype, sequences, tokens), which shards are
finished with their sha256, and per-site statistics. Shards are described in
:mod:`alignlab.activations.shards`; writing them in :mod:`alignlab.activations.harvest`.

Rows are numbered across the store in (sequence, position) order: row ``r`` is position
``r % seq_len`` of sequence ``r // seq_len``, and every row keeps its token id beside it.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import __version__
from ..errors import StoreError
from ..runs import atomic_write_text
from .shards import (
    SHARD_FORMAT,
    SHARDS_DIR,
    ShardFile,
    ShardLayout,
    as_torch,
    sha256_file,
    shard_layout,
    shard_name,
    stats_names,
)
from .stats import SiteStats, site_stats
from .writer import ShardRecord

FORMAT = "alignlab.activation_store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE_DTYPES = ("float16", "bfloat16", "float32")


@dataclass
class StoreManifest:
    """Everything ``manifest.json`` records; shards listed only once finished."""

    harvest: dict  # the arguments that made the store (HarvestConfig without `out`)
    model: dict  # LoadedModel.describe() plus the model's dtype
    data: dict  # corpus, fingerprint (alignlab.data.tokenize_corpus), bos_id
    dtype: str  # dtype of the stored activations
    sites: list[tuple[str, int]]  # (name, width) in forward order
    seq_len: int
    n_seq: int
    seqs_per_shard: int
    shards: dict[int, ShardRecord] = field(default_factory=dict)
    complete: bool = False
    stats: dict[str, dict] | None = None  # site -> SiteStats.to_json(), once complete
    format_version: int = FORMAT_VERSION
    alignlab_version: str = __version__

    @property
    def n_tokens(self) -> int:
        return self.n_seq * self.seq_len

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n_seq / self.seqs_per_shard)

    @property
    def site_names(self) -> list[str]:
        return [name for name, _ in self.sites]

    def shard_range(self, index: int) -> tuple[int, int]:
        """(first sequence, number of sequences) of shard ``index``."""
        first = index * self.seqs_per_shard
        return first, min(self.seqs_per_shard, self.n_seq - first)

    def layout(self, index: int) -> ShardLayout:
        """The exact header and offsets shard ``index`` must have."""
        first, n_seq = self.shard_range(index)
        metadata = {
            "format": SHARD_FORMAT,
            "format_version": str(self.format_version),
            "shard": str(index),
            "first_seq": str(first),
            "n_seq": str(n_seq),
            "seq_len": str(self.seq_len),
            "model": str(self.model.get("model")),
            "unembedding_hash": str(self.model.get("unembedding_hash")),
            "data_fingerprint": str(self.data.get("fingerprint")),
        }
        return shard_layout(self.sites, self.dtype, n_seq, self.seq_len, metadata)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "alignlab_version": self.alignlab_version,
            "complete": self.complete,
            "harvest": self.harvest,
            "model": self.model,
            "data": self.data,
            "dtype": self.dtype,
            "sites": [{"name": n, "width": w} for n, w in self.sites],
            "seq_len": self.seq_len,
            "n_seq": self.n_seq,
            "n_tokens": self.n_tokens,
            "seqs_per_shard": self.seqs_per_shard,
            "n_shards": self.n_shards,
            "completed_shards": sorted(self.shards),
            "shards": [self.shards[i].to_json() for i in sorted(self.shards)],
            "stats": self.stats,
        }

    @classmethod
    def from_json(cls, obj: dict, where: Path) -> StoreManifest:
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise StoreError(f"{where} is not an alignlab activation store manifest")
        if obj.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{where} has store format version {obj.get('format_version')}; this alignlab "
                f"({__version__}) reads version {FORMAT_VERSION}: harvest the store again"
            )
        try:
            return cls(
                harvest=obj["harvest"],
                model=obj["model"],
                data=obj["data"],
                dtype=obj["dtype"],
                sites=[(s["name"], int(s["width"])) for s in obj["sites"]],
                seq_len=int(obj["seq_len"]),
                n_seq=int(obj["n_seq"]),
                seqs_per_shard=int(obj["seqs_per_shard"]),
                shards={r["index"]: ShardRecord.from_json(r) for r in obj["shards"]},
                complete=bool(obj["complete"]),
                stats=obj.get("stats"),
                alignlab_version=obj.get("alignlab_version", "?"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"{where} is malformed ({type(exc).__name__}: {exc}); harvest again"
            ) from exc

    def save(self, folder: Path) -> None:
        """Replace ``manifest.json`` atomically: readers see the old one or the new one."""
        try:
            atomic_write_text(Path(folder) / MANIFEST, _dumps(self.to_json()))
        except OSError as exc:
            raise StoreError(
                f"could not write {Path(folder) / MANIFEST}: {exc.strerror or exc}; finished "
                "shards are kept, so fix the cause and run the same command again to continue"
            ) from exc

    @classmethod
    def load(cls, folder: Path) -> StoreManifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            what = "does not exist" if not Path(folder).exists() else "has no manifest.json"
            raise StoreError(
                f"activation store {str(folder)!r} {what}; make one with `alignlab harvest "
                f"--out {folder} ...`"
            )
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"{path} cannot be read as JSON ({exc}); the store is damaged"
            ) from exc
        return cls.from_json(obj, path)


def _dumps(obj) -> str:
    """Indented JSON with every list of numbers on one line (statistics vectors are long)."""
    packed: list[str] = []

    def pack(o):
        if isinstance(o, dict):
            return {k: pack(v) for k, v in o.items()}
        if isinstance(o, list) and o and all(type(v) in (int, float) for v in o):
            packed.append(json.dumps(o))
            return f"@@{len(packed) - 1}@@"
        return [pack(v) for v in o] if isinstance(o, list) else o

    text = json.dumps(pack(obj), indent=2)
    return re.sub(r'"@@(\d+)@@"', lambda m: packed[int(m.group(1))], text) + "\n"


def sum_shard_stats(folder: Path, manifest: StoreManifest) -> dict[str, SiteStats]:
    """Per-site statistics from the sums every shard keeps, added in shard order."""
    totals: dict[str, list[Tensor]] = {}
    for index in sorted(manifest.shards):
        shard = ShardFile(Path(folder) / manifest.shards[index].file)
        for site in manifest.site_names:
            parts = [shard.tensor(name) for name in stats_names(site)]
            if site in totals:
                totals[site] = [a + b for a, b in zip(totals[site], parts)]
            else:
                totals[site] = parts
    n_rows = sum(r.n_rows for r in manifest.shards.values())
    n_first = sum(r.n_seq for r in manifest.shards.values())
    return {site: site_stats(site, *totals[site], n_rows, n_first) for site in totals}


@dataclass
class ActivationBatch:
    """Rows of activations with what each row was read from."""

    acts: dict[str, Tensor]  # site -> (N, d), in the store dtype
    tokens: Tensor  # (N,) int64 token id at the row's position
    seq: Tensor  # (N,) int64 sequence index in the store
    pos: Tensor  # (N,) int64 position within the sequence

    def __len__(self) -> int:
        return self.tokens.shape[0]


class ActivationStore:
    """A finished store opened for reading; shards are memory-mapped as rows are touched."""

    def __init__(self, path: Path, manifest: StoreManifest, max_open_shards: int = 16):
        self.path = Path(path)
        self.manifest = manifest
        self._open: OrderedDict[int, ShardFile] = OrderedDict()
        self._max_open = max_open_shards
        self._stats: dict[str, SiteStats] | None = None

    @classmethod
    def open(cls, path: str | Path, allow_incomplete: bool = False) -> ActivationStore:
        manifest = StoreManifest.load(Path(path))
        if not manifest.complete and not allow_incomplete:
            raise StoreError(
                f"activation store {str(path)!r} is incomplete ({len(manifest.shards)} of "
                f"{manifest.n_shards} shards); run the same `alignlab harvest` command again "
                "to finish it"
            )
        return cls(Path(path), manifest)

    # --- what the store holds -------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        return self.manifest.site_names

    @property
    def widths(self) -> dict[str, int]:
        return dict(self.manifest.sites)

    @property
    def dtype(self) -> str:
        return self.manifest.dtype

    @property
    def seq_len(self) -> int:
        return self.manifest.seq_len

    @property
    def n_seq(self) -> int:
        return self.manifest.n_seq

    @property
    def n_rows(self) -> int:
        """Rows available: tokens in finished shards."""
        return sum(r.n_rows for r in self.manifest.shards.values())

    @property
    def model(self) -> dict:
        return self.manifest.model

    def stats(self, site: str) -> SiteStats:
        """Mean, per-dimension variance and mean norm of ``site`` over the finished shards."""
        self._check_sites([site])
        return self.all_stats()[site]

    def all_stats(self) -> dict[str, SiteStats]:
        if self._stats is None:
            if self.manifest.stats is not None:
                self._stats = {s: SiteStats.from_json(s, v) for s, v in self.manifest.stats.items()}
            else:  # an unfinished store: add up what its finished shards hold
                self._stats = sum_shard_stats(self.path, self.manifest)
        return self._stats

    # --- exact access ---------------------------------------------------------------------
    def shard(self, index: int) -> ShardFile:
        """Shard ``index``, opened (and kept open among the most recent few)."""
        if index not in self.manifest.shards:
            raise StoreError(f"shard {index} of store {str(self.path)!r} is not finished")
        if index in self._open:
            self._open.move_to_end(index)
            return self._open[index]
        shard = ShardFile(self.path / self.manifest.shards[index].file)
        self._open[index] = shard
        if len(self._open) > self._max_open:
            self._open.popitem(last=False)
        return shard

    def shard_rows(self, index: int) -> tuple[int, int]:
        """(first row, number of rows) of shard ``index`` in store-wide numbering."""
        first, n_seq = self.manifest.shard_range(index)
        return first * self.seq_len, n_seq * self.seq_len

    def rows(self, index, sites: list[str] | str | None = None) -> ActivationBatch:
        """Rows by store-wide index (an int, a list, a range or a 1-D tensor), in that order."""
        sites = self._resolve_sites(sites)
        wanted = np.atleast_1d(np.asarray(index, dtype=np.int64))
        self._check_rows(wanted)
        rows_per_shard = self.manifest.seqs_per_shard * self.seq_len
        shard_of = wanted // rows_per_shard
        acts = {
            s: torch.empty(len(wanted), self.widths[s], dtype=_torch_dtype(self.dtype))
            for s in sites
        }
        tokens = torch.empty(len(wanted), dtype=torch.int64)
        for shard_index in np.unique(shard_of):
            where = np.nonzero(shard_of == shard_index)[0]
            local = wanted[where] - shard_index * rows_per_shard
            self._read_into(int(shard_index), local, torch.from_numpy(where), acts, tokens)
        index_t = torch.from_numpy(wanted)
        return ActivationBatch(acts, tokens, index_t // self.seq_len, index_t % self.seq_len)

    def _read_into(
        self, shard_index: int, local: np.ndarray, where: Tensor, acts: dict, tokens: Tensor
    ) -> None:
        shard = self.shard(shard_index)
        for site, out in acts.items():
            out[where] = as_torch(shard.array(site)[local], self.dtype)  # fancy index: a copy
        tokens[where] = torch.from_numpy(shard.array("tokens").reshape(-1)[local])

    def sequence(self, seq: int) -> Tensor:
        """Token ids of sequence ``seq``: (seq_len,) int64."""
        if not 0 <= seq < self.n_seq:
            raise StoreError(
                f"sequence {seq} is out of range: the store has {self.n_seq} sequences"
            )
        shard_index = seq // self.manifest.seqs_per_shard
        first, _ = self.manifest.shard_range(shard_index)
        return torch.from_numpy(self.shard(shard_index).array("tokens")[seq - first].copy())

    def context(self, seq: int, pos: int, tokenizer, window: int | None = None) -> str:
        """The text the model had read when it produced row (seq, pos), up to ``window`` tokens."""
        ids = self.sequence(seq)[: pos + 1]
        if window is not None:
            ids = ids[-window:]
        return tokenizer.decode(ids.tolist())

    def batches(self, sites: list[str] | str | None = None, batch_size: int = 4096, **kwargs):
        """A :class:`~alignlab.activations.reader.ShuffledReader` over this store."""
        from .reader import ShuffledReader

        return ShuffledReader(self, sites, batch_size, **kwargs)

    def _resolve_sites(self, sites) -> list[str]:
        if sites is None:
            return list(self.sites)
        sites = [s.strip() for s in sites.split(",")] if isinstance(sites, str) else list(sites)
        self._check_sites(sites)
        return sites

    def _check_sites(self, sites: list[str]) -> None:
        missing = [s for s in sites if s not in self.widths]
        if missing:
            raise StoreError(
                f"site(s) {', '.join(missing)} not in store {str(self.path)!r}; it holds "
                f"{', '.join(self.sites)}"
            )

    def _check_rows(self, wanted: np.ndarray) -> None:
        if wanted.size and (wanted.min() < 0 or wanted.max() >= self.manifest.n_tokens):
            raise StoreError(
                f"row {int(wanted.max() if wanted.max() >= 0 else wanted.min())} is out of range: "
                f"store {str(self.path)!r} has rows 0..{self.manifest.n_tokens - 1}"
            )
        rows_per_shard = self.manifest.seqs_per_shard * self.seq_len
        unfinished = set(np.unique(wanted // rows_per_shard).tolist()) - set(self.manifest.shards)
        if unfinished:
            raise StoreError(
                f"rows in unfinished shard(s) {sorted(unfinished)} of {str(self.path)!r}"
            )


def _torch_dtype(name: str) -> torch.dtype:
    from .shards import TORCH_DTYPES

    return TORCH_DTYPES[name]


# --- verify ---------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    """What `alignlab store verify` found: no problems means every byte checks out."""

    path: Path
    n_shards: int
    n_bytes: int
    n_tokens: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(path: str | Path) -> VerifyReport:
    """Check files, sizes, headers and sha256 of every shard against the manifest."""
    path = Path(path)
    manifest = StoreManifest.load(path)
    problems = _file_set_problems(path, manifest)
    n_bytes = 0
    for index in sorted(manifest.shards):
        record = manifest.shards[index]
        problem = _shard_problem(path, manifest, record)
        if problem:
            problems.append(problem)
        else:
            n_bytes += record.bytes
    if not manifest.complete and len(manifest.shards) == manifest.n_shards:
        problems.append(
            "the manifest marks the harvest unfinished; run the same harvest command again"
        )
    return VerifyReport(path, manifest.n_shards, n_bytes, manifest.n_tokens, problems)


_TMP_NOTE = "; a shard whose writing was interrupted"


def _file_set_problems(path: Path, manifest: StoreManifest) -> list[str]:
    expected = {shard_name(i) for i in range(manifest.n_shards)}
    folder = path / SHARDS_DIR
    present = {f"{SHARDS_DIR}/{p.name}" for p in folder.iterdir()} if folder.is_dir() else set()
    problems = [
        f"extra file {name} (not part of this store{_TMP_NOTE if name.endswith('.tmp') else ''})"
        for name in sorted(present - expected)
    ]
    unfinished = [i for i in range(manifest.n_shards) if i not in manifest.shards]
    if unfinished:
        names = ", ".join(shard_name(i) for i in unfinished[:5]) + (
            " ..." if len(unfinished) > 5 else ""
        )
        problems.append(
            f"incomplete store: {len(manifest.shards)} of {manifest.n_shards} shards finished "
            f"(not finished: {names}); run the same harvest command again to finish it"
        )
    return problems


def _shard_problem(path: Path, manifest: StoreManifest, record: ShardRecord) -> str | None:
    file = path / record.file
    if record.file != shard_name(record.index):
        expected = shard_name(record.index)
        return f"manifest names shard {record.index} {record.file!r}, expected {expected}"
    if not file.is_file():
        return f"missing shard {record.file}"
    size = file.stat().st_size
    if size != record.bytes:
        return f"shard {record.file} is damaged: {size} bytes, the manifest says {record.bytes}"
    header = manifest.layout(record.index).header
    with open(file, "rb") as handle:
        if handle.read(len(header)) != header:
            return f"shard {record.file} is damaged: its header does not match the manifest"
    digest = sha256_file(file)
    if digest != record.sha256:
        return (
            f"shard {record.file} is damaged: sha256 {digest[:12]}... does not match the "
            f"manifest's {record.sha256[:12]}..."
        )
    return None
