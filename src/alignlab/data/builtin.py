"""The built-in offline corpus: three public-domain English novels shipped in the package.

The texts live in ``alignlab/data/builtin/`` (see ``SOURCES.md`` there for provenance).
Each work is cut into documents at its chapter headings, so a document is a chapter or a
few short chapters: long enough to give a model real context, short enough that the EOS
between documents recurs now and then, as it does in pretraining data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise

BUILTIN_NAME = "builtin"
LICENCE = "public domain (see alignlab/data/builtin/SOURCES.md)"

# Pieces shorter than this (a title page, a one-paragraph chapter) join the next piece.
MIN_DOC_CHARS = 2_000
# Pieces longer than this are cut at paragraph breaks into roughly equal parts.
MAX_DOC_CHARS = 20_000

_CHAPTER = re.compile(r"^(?:CHAPTER|Chapter) [0-9IVXLC]+\b.*$", re.MULTILINE)


@dataclass(frozen=True)
class BuiltinWork:
    """One novel in the built-in corpus."""

    file: str  # file name inside alignlab/data/builtin/
    title: str
    author: str
    year: int  # first publication


WORKS: tuple[BuiltinWork, ...] = (
    BuiltinWork("pride_and_prejudice.txt", "Pride and Prejudice", "Jane Austen", 1813),
    BuiltinWork("persuasion.txt", "Persuasion", "Jane Austen", 1818),
    BuiltinWork("moby_dick.txt", "Moby Dick; or The Whale", "Herman Melville", 1851),
)


def read_work(work: BuiltinWork) -> str:
    """The full text of one shipped work."""
    return (resources.files("alignlab.data") / "builtin" / work.file).read_text(encoding="utf-8")


def builtin_documents() -> list[str]:
    """All documents of the built-in corpus, works in ``WORKS`` order, chapters in order."""
    docs: list[str] = []
    for work in WORKS:
        docs.extend(split_work(read_work(work)))
    return docs


def split_work(text: str) -> list[str]:
    """Cut one work into documents: at chapter headings, then merged or split to size."""
    starts = [m.start() for m in _CHAPTER.finditer(text)]
    cuts = sorted({0, *starts, len(text)})
    chapters = [text[a:b].strip() for a, b in pairwise(cuts)]
    return [doc for piece in _merge_short([c for c in chapters if c]) for doc in _split_long(piece)]


def _merge_short(pieces: list[str]) -> list[str]:
    """Join each too-short piece onto the next one (the last piece joins the one before)."""
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        piece = f"{carry}\n\n\n{piece}" if carry else piece
        carry = piece if len(piece) < MIN_DOC_CHARS else ""
        if not carry:
            merged.append(piece)
    if carry:
        merged[-1:] = [f"{merged[-1]}\n\n\n{carry}"] if merged else [carry]
    return merged


def _split_long(piece: str) -> list[str]:
    """Cut a long chapter at paragraph breaks into about equal parts of <= MAX_DOC_CHARS."""
    if len(piece) <= MAX_DOC_CHARS:
        return [piece]
    target = len(piece) / math.ceil(len(piece) / MAX_DOC_CHARS)
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for para in piece.split("\n\n"):
        # Cut where the part comes closest to the target, so no tiny part is left over.
        if current and size + len(para) / 2 > target:
            parts.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + 2
    parts.append("\n\n".join(current))
    return _merge_short([p.strip() for p in parts if p.strip()])


def builtin_info() -> dict:
    """What the built-in corpus is, for the README, ``alignlab models`` and run configs."""
    texts = [read_work(w) for w in WORKS]
    return {
        "name": BUILTIN_NAME,
        "works": [
            {
                "title": w.title,
                "author": w.author,
                "year": w.year,
                "file": w.file,
                "bytes": len(t.encode("utf-8")),
            }
            for w, t in zip(WORKS, texts, strict=True)
        ],
        "licence": LICENCE,
        "bytes": sum(len(t.encode("utf-8")) for t in texts),
        "n_documents": sum(len(split_work(t)) for t in texts),
    }
