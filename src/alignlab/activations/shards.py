"""One shard of an activation store: a safetensors file with every site's rows for a run of
sequences, their token ids, and the shard's own running statistics.

Tensors in a shard (in file order; the 8-byte types first so every tensor is aligned):

- ``stats.<site>.sum`` / ``stats.<site>.sumsq``: (2, d) float64, sums of x and x*x per
  dimension; row 0 over every position, row 1 over position 0 only (attention sinks carry huge
  norms, so statistics are also reported without them).
- ``stats.<site>.norm``: (2,) float64, the sum of row L2 norms, same two groups.
- ``tokens``: (n_seq, T) int64, the token ids; ``seq_index``: (n_seq,) int64, the store-wide
  index of each sequence.
- ``<site>``: (n_seq * T, d) in the store dtype; row r is sequence ``seq_index[r // T]``,
  position ``r % T``.

The header is known before the first row is computed, so a writer can reserve the whole file
and fill it batch by batch (:mod:`alignlab.activations.writer`); the bytes depend only on the
data, never on timing. The file is plain safetensors: ``safetensors.safe_open`` reads it too.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import StoreError

SHARD_FORMAT = "alignlab.activation_shard"
SHARDS_DIR = "shards"
TMP_SUFFIX = ".tmp"

# store dtype name -> (safetensors code, bytes per element, numpy dtype used to map the bytes)
DTYPES: dict[str, tuple[str, int, np.dtype]] = {
    "float16": ("F16", 2, np.dtype("<f2")),
    "bfloat16": ("BF16", 2, np.dtype("<u2")),  # numpy has no bfloat16: map bits, view in torch
    "float32": ("F32", 4, np.dtype("<f4")),
    "float64": ("F64", 8, np.dtype("<f8")),
    "int64": ("I64", 8, np.dtype("<i8")),
}
_CODE_TO_NAME = {code: name for name, (code, _, _) in DTYPES.items()}
TORCH_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int64": torch.int64,
}


def shard_name(index: int) -> str:
    """``shards/shard-00003.safetensors``: relative to the store folder."""
    return f"{SHARDS_DIR}/shard-{index:05d}.safetensors"


def temp_name(index: int) -> str:
    """Where a shard is written before it is complete (hidden, so it never looks finished)."""
    return f"{SHARDS_DIR}/.shard-{index:05d}.safetensors{TMP_SUFFIX}"


@dataclass(frozen=True)
class TensorSpec:
    """One tensor's place in the file's data section."""

    name: str
    dtype: str  # store dtype name, e.g. "float16"
    shape: tuple[int, ...]
    begin: int  # byte offset within the data section

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * DTYPES[self.dtype][1]

    @property
    def end(self) -> int:
        return self.begin + self.nbytes


@dataclass(frozen=True)
class ShardLayout:
    """Every tensor's dtype, shape and offset, and the header bytes that describe them."""

    tensors: dict[str, TensorSpec]
    metadata: dict[str, str]
    header: bytes  # 8-byte length, JSON, space padding to a multiple of 8

    @property
    def data_start(self) -> int:
        return len(self.header)

    @property
    def total_bytes(self) -> int:
        return self.data_start + max((t.end for t in self.tensors.values()), default=0)

    def offset(self, name: str) -> int:
        """Absolute file offset of tensor ``name``."""
        return self.data_start + self.tensors[name].begin


def build_layout(
    specs: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str]
) -> ShardLayout:
    """Lay ``(name, dtype, shape)`` tensors out back to back, in the order given."""
    tensors: dict[str, TensorSpec] = {}
    begin = 0
    for name, dtype, shape in specs:
        spec = TensorSpec(name, dtype, tuple(int(s) for s in shape), begin)
        tensors[name] = spec
        begin = spec.end
    header = {"__metadata__": metadata}
    for spec in tensors.values():
        header[spec.name] = {
            "dtype": DTYPES[spec.dtype][0],
            "shape": list(spec.shape),
            "data_offsets": [spec.begin, spec.end],
        }
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # as safetensors pads, so the data section starts aligned
    return ShardLayout(tensors, dict(metadata), struct.pack("<Q", len(text)) + text)


def stats_names(site: str) -> tuple[str, str, str]:
    return f"stats.{site}.sum", f"stats.{site}.sumsq", f"stats.{site}.norm"


def shard_layout(
    sites: list[tuple[str, int]], dtype: str, n_seq: int, seq_len: int, metadata: dict[str, str]
) -> ShardLayout:
    """The layout of a shard with ``n_seq`` sequences of ``sites`` ``[(name, width)]``."""
    specs: list[tuple[str, str, tuple[int, ...]]] = []
    for site, width in sites:
        s_sum, s_sq, s_norm = stats_names(site)
        specs += [
            (s_sum, "float64", (2, width)),
            (s_sq, "float64", (2, width)),
            (s_norm, "float64", (2,)),
        ]
    specs += [("tokens", "int64", (n_seq, seq_len)), ("seq_index", "int64", (n_seq,))]
    specs += [(site, dtype, (n_seq * seq_len, width)) for site, width in sites]
    return build_layout(specs, metadata)


class ShardFile:
    """A shard opened for reading: its header parsed, its bytes memory-mapped on demand.

    The map is private (copy-on-write), so arrays made from it are writable for torch without
    any write ever reaching the file; pages are read from disk only when rows are touched.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.layout = read_layout(self.path)
        self._map: mmap.mmap | None = None

    @property
    def metadata(self) -> dict[str, str]:
        return self.layout.metadata

    def array(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a memory-mapped numpy array (bfloat16 as raw uint16 bits)."""
        spec = self._spec(name)
        if self._map is None:
            with open(self.path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        np_dtype = DTYPES[spec.dtype][2]
        count = spec.nbytes // np_dtype.itemsize
        flat = np.frombuffer(self._map, np_dtype, count, self.layout.offset(name))
        return flat.reshape(spec.shape)

    def tensor(self, name: str) -> torch.Tensor:
        """A copy of tensor ``name``, in its own dtype."""
        return as_torch(self.array(name).copy(), self._spec(name).dtype)

    def dtype(self, name: str) -> str:
        return self._spec(name).dtype

    def _spec(self, name: str) -> TensorSpec:
        if name not in self.layout.tensors:
            raise StoreError(
                f"shard {self.path.name} has no tensor {name!r}; it holds: "
                f"{', '.join(n for n in self.layout.tensors if not n.startswith('stats.'))}"
            )
        return self.layout.tensors[name]


def as_torch(array: np.ndarray, dtype: str) -> torch.Tensor:
    """A numpy array from a shard as a torch tensor (sharing memory), bfloat16 reinterpreted."""
    tensor = torch.from_numpy(array)
    return tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor


def read_layout(path: Path) -> ShardLayout:
    """Parse and check a shard's header; a malformed file raises a StoreError naming it."""
    try:
        with open(path, "rb") as handle:
            size_bytes = handle.read(8)
            if len(size_bytes) < 8:
                raise StoreError(f"shard {path} is truncated (shorter than a safetensors header)")
            (length,) = struct.unpack("<Q", size_bytes)
            if length > 100_000_000:
                raise StoreError(f"shard {path} has a corrupt header (claims {length} bytes)")
            text = handle.read(length)
        header = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"shard {path} cannot be read as safetensors: {exc}") from exc
    return _layout_from_header(path, header, size_bytes + text)


def _layout_from_header(path: Path, header: dict, raw: bytes) -> ShardLayout:
    if not isinstance(header, dict):
        raise StoreError(f"shard {path} has a malformed header")
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    try:
        for name, info in header.items():
            begin, end = (int(v) for v in info["data_offsets"])
            spec = TensorSpec(name, _CODE_TO_NAME[info["dtype"]], tuple(info["shape"]), begin)
            if spec.end != end:
                raise ValueError(f"tensor {name!r} offsets do not match its shape")
            tensors[name] = spec
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"shard {path} has a malformed header: {exc}") from exc
    layout = ShardLayout(tensors, metadata, raw)
    actual = path.stat().st_size
    if actual != layout.total_bytes:
        raise StoreError(
            f"shard {path} is {actual} bytes but its header describes {layout.total_bytes}; "
            "it is truncated or damaged"
        )
    return layout


def sha256_file(path: Path, chunk_bytes: int = 8 << 20) -> str:
    """sha256 of a file, read in chunks (hashlib releases the GIL while it hashes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()
