"""Read a text corpus from a spec: ``builtin``, a local file, or a Hugging Face datasets name.

File formats and what a document is in each:

- ``.txt``: the whole file is one document (a book or an essay reads on without an EOS
  in the middle; use ``.jsonl`` for many short texts).
- ``.jsonl``: one JSON object per line, the document in its ``text`` field; blank lines
  are skipped.
- ``.parquet``: one document per row of the ``text`` column; null rows are skipped.

Documents with no non-whitespace text are dropped everywhere, so an empty line in a jsonl
file never becomes a lone EOS token. A corpus with no text at all is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alignlab.data.builtin import BUILTIN_NAME, builtin_documents
from alignlab.errors import DataError

FILE_SUFFIXES = (".txt", ".jsonl", ".parquet")
# Suffixes that mark a spec as a file the user meant, so a typo is reported as a missing
# file rather than as an unknown Hugging Face dataset.
_FILE_LIKE_SUFFIXES = (*FILE_SUFFIXES, ".json", ".csv", ".tsv", ".text", ".md", ".gz", ".zst")
_SPEC_HELP = "give a .txt/.jsonl/.parquet path, 'builtin', or a datasets name"


@dataclass(frozen=True, eq=False)
class Corpus:
    """Documents in a fixed order, with a hash that changes whenever any text changes."""

    name: str  # the spec it was read from
    documents: list[str]
    source_fingerprint: str  # sha256 over the document texts, in order

    @property
    def n_chars(self) -> int:
        return sum(len(d) for d in self.documents)


def read_corpus(spec: str) -> Corpus:
    """Read ``builtin``, a ``.txt``/``.jsonl``/``.parquet`` path, or a datasets name."""
    if spec == BUILTIN_NAME:
        return _make_corpus(spec, builtin_documents())
    path = Path(spec).expanduser()
    if path.exists():
        return _make_corpus(spec, _read_file(spec, path))
    if path.suffix.lower() in _FILE_LIKE_SUFFIXES or spec.startswith((".", "/", "~")):
        raise DataError(f"corpus file {spec!r} does not exist; {_SPEC_HELP}")
    return _make_corpus(spec, _read_hf(spec))


def documents_fingerprint(documents: Iterable[str]) -> str:
    """sha256 over the documents in order; each is length-prefixed so boundaries count."""
    h = hashlib.sha256()
    for doc in documents:
        data = doc.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _make_corpus(name: str, documents: Iterable[str]) -> Corpus:
    kept = [d for d in documents if d.strip()]
    if not kept:
        raise DataError(
            f"corpus {name!r} has no text (it is empty or only whitespace); {_SPEC_HELP}"
        )
    return Corpus(name=name, documents=kept, source_fingerprint=documents_fingerprint(kept))


def _read_file(spec: str, path: Path) -> list[str]:
    if path.is_dir():
        raise DataError(f"corpus {spec!r} is a directory; {_SPEC_HELP}")
    readers = {".txt": _read_txt, ".jsonl": _read_jsonl, ".parquet": _read_parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataError(
            f"corpus file {spec!r} has extension {path.suffix or '(none)'!r}, which alignlab "
            f"cannot read; convert it to .txt, .jsonl (a 'text' field per line) or .parquet "
            f"(a 'text' column)"
        )
    return reader(spec, path)


def _read_text(spec: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"corpus file {spec!r} is not UTF-8 text ({e}); re-encode it as UTF-8"
        ) from e


def _read_txt(spec: str, path: Path) -> list[str]:
    return [_read_text(spec, path)]


def _read_jsonl(spec: str, path: Path) -> list[str]:
    docs = []
    for number, line in enumerate(_read_text(spec, path).splitlines(), start=1):
        if line.strip():
            docs.append(_jsonl_text(spec, number, line))
    return docs


def _jsonl_text(spec: str, number: int, line: str) -> str:
    """The ``text`` of one jsonl line, or an error that names the line."""
    where = f"corpus file {spec!r} line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{where} is not valid JSON ({e.msg}); each line must be an object like "
            f'{{"text": "..."}}'
        ) from e
    if not isinstance(record, dict) or "text" not in record:
        keys = ", ".join(map(str, record)) if isinstance(record, dict) else type(record).__name__
        raise DataError(
            f"{where} has no 'text' field (found: {keys or 'nothing'}); "
            f'each line must be an object like {{"text": "..."}}'
        )
    text = record["text"]
    if not isinstance(text, str):
        raise DataError(f"{where}: 'text' is a {type(text).__name__}, not a string")
    return text


def _read_parquet(spec: str, path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"corpus file {spec!r} could not be read as parquet: {e}") from e
    if "text" not in schema.names:
        raise DataError(
            f"corpus file {spec!r} has no 'text' column (columns: {', '.join(schema.names)}); "
            f"rename the column that holds the documents to 'text'"
        )
    column_type = schema.field("text").type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise DataError(f"corpus file {spec!r}: column 'text' holds {column_type}, not strings")
    column = pq.read_table(path, columns=["text"]).column("text")
    return [t for t in column.to_pylist() if t is not None]


def _parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """``name``, ``name:config`` or ``name:config:split`` (split defaults to train)."""
    parts = spec.split(":")
    if len(parts) > 3 or not all(parts[:1]):
        raise DataError(f"datasets spec {spec!r} must be 'name' or 'name:config:split'")
    name, config, split = (parts + [None, None])[:3]
    return name, config or None, split or "train"


def _read_hf(spec: str) -> list[str]:
    """Load a Hugging Face dataset's ``text`` column; ``datasets`` is an optional extra."""
    name, config, split = _parse_hf_spec(spec)
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            f"corpus {spec!r} is not 'builtin' or an existing file, so it was taken as a "
            f"Hugging Face datasets name, but the 'datasets' package is not installed: "
            f"pip install 'alignlab[hf]' (or {_SPEC_HELP})"
        ) from e
    dataset = _load_hf(datasets, spec, name, config, split)
    if "text" not in dataset.column_names:
        raise DataError(
            f"datasets corpus {spec!r} has no 'text' column "
            f"(columns: {', '.join(dataset.column_names)})"
        )
    return list(dataset["text"])


def _load_hf(datasets, spec: str, name: str, config: str | None, split: str):
    # datasets itself honours HF_HUB_OFFLINE / HF_DATASETS_OFFLINE; we only explain failures.
    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many types; all mean "could not load"
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
        hint = (
            " (HF offline mode is on, so only datasets already in the cache load)"
            if offline
            else ""
        )
        raise DataError(
            f"could not load datasets corpus {name!r} (config {config}, split {split!r}){hint}: "
            f"{type(e).__name__}: {e}; {_SPEC_HELP}"
        ) from e
