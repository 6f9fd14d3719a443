"""Turn a corpus into fixed-length rows of token ids, deterministically.

The layout follows the usual pretraining packing (as in tuned-lens' ``chunk_and_tokenize``):
documents are tokenized in order without special tokens, each is followed by EOS, the
results are concatenated into one stream, and the stream is cut into rows. With ``bos`` each
row is ``[BOS] + seq_len - 1`` stream tokens, so every row starts the way the model saw
sequences start in training; the ragged tail is dropped. Nothing is shuffled: row i is always
the same text, which is what lets an activation store resume and be verified.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from alignlab.data.corpus import Corpus
from alignlab.errors import ConfigError, DataError

FINGERPRINT_VERSION = 1
# Documents go to the tokenizer in groups of about this many characters: big enough for the
# fast tokenizer's batch call to pay off, small enough to stop soon after n_tokens is reached.
CHUNK_CHARS = 1_000_000


@dataclass(frozen=True, eq=False)
class TokenBlocks:
    """Rows of token ids cut from a corpus, and a hash of everything that made them."""

    tokens: Tensor  # (n_seq, seq_len) int64
    fingerprint: str  # sha256 of corpus, tokenizer, seq_len, bos flag and the ids themselves
    seq_len: int
    bos_id: int | None  # the id at position 0 of every row, or None when bos=False
    corpus_name: str

    @property
    def n_seq(self) -> int:
        return self.tokens.shape[0]

    @property
    def n_tokens(self) -> int:
        return self.tokens.numel()


def tokenize_corpus(
    corpus: Corpus, tokenizer, seq_len: int, n_tokens: int | None = None, bos: bool = True
) -> TokenBlocks:
    """Pack ``corpus`` into rows of ``seq_len`` ids; with ``n_tokens``, only the first rows."""
    _check_sizes(seq_len, n_tokens, bos)
    bos_id = resolve_bos_id(tokenizer) if bos else None
    body_len = seq_len - 1 if bos else seq_len  # stream tokens per row
    n_rows = math.ceil(n_tokens / seq_len) if n_tokens is not None else None
    need = n_rows * body_len if n_rows is not None else None
    stream = token_stream(corpus.documents, tokenizer, need)
    rows = _cut_rows(stream, body_len, n_rows, corpus, seq_len, n_tokens)
    if bos_id is not None:
        rows = np.concatenate([np.full((rows.shape[0], 1), bos_id, dtype=np.int64), rows], axis=1)
    tokens = torch.from_numpy(np.ascontiguousarray(rows))  # (n_seq, seq_len)
    fingerprint = _fingerprint(corpus, tokenizer, seq_len, bos, tokens)
    return TokenBlocks(tokens, fingerprint, seq_len, bos_id, corpus.name)


def iter_batches(blocks: TokenBlocks, batch_size: int) -> Iterator[Tensor]:
    """Rows in order, ``batch_size`` at a time; the last batch may be smaller."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, blocks.n_seq, batch_size):
        yield blocks.tokens[start : start + batch_size]  # (<= batch_size, seq_len)


def resolve_bos_id(tokenizer) -> int:
    """The tokenizer's BOS id, or its EOS id when it has no BOS (as GPT-2 does)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise DataError(
        f"tokenizer {type(tokenizer).__name__} has no BOS or EOS token to start rows with; "
        f"pass bos=False (--no-bos) to pack rows without one"
    )


def token_stream(documents: Sequence[str], tokenizer, need: int | None = None) -> np.ndarray:
    """Ids of the documents in order, each followed by EOS; stops once ``need`` ids exist."""
    eos = tokenizer.eos_token_id
    pieces: list[np.ndarray] = []
    total = 0
    for chunk in _chunks(documents):
        for ids in _encode(tokenizer, chunk):
            piece = np.asarray(ids + ([eos] if eos is not None else []), dtype=np.int64)
            pieces.append(piece)
            total += piece.size
        if need is not None and total >= need:
            break
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


def _encode(tokenizer, docs: list[str]) -> list[list[int]]:
    # verbose=False: documents longer than model_max_length are expected here, since they
    # are cut into rows afterwards, so transformers' length warning would only be noise.
    encoded = tokenizer(docs, add_special_tokens=False, return_attention_mask=False, verbose=False)
    return encoded["input_ids"]


def _chunks(documents: Sequence[str]) -> Iterator[list[str]]:
    """Consecutive groups of documents, each about CHUNK_CHARS characters (at least one doc)."""
    chunk: list[str] = []
    size = 0
    for doc in documents:
        chunk.append(doc)
        size += len(doc)
        if size >= CHUNK_CHARS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _cut_rows(
    stream: np.ndarray,
    body_len: int,
    n_rows: int | None,
    corpus: Corpus,
    seq_len: int,
    n_tokens: int | None,
) -> np.ndarray:
    """Whole rows of ``body_len`` stream ids, the first ``n_rows`` of them when given."""
    available = stream.size // body_len
    if n_rows is not None and available < n_rows:
        raise DataError(
            f"asked for {n_tokens} tokens but corpus {corpus.name!r} has only "
            f"{available * seq_len} ({available} rows of {seq_len}); ask for fewer tokens, "
            f"a shorter seq_len, or a bigger corpus"
        )
    if available == 0:
        raise DataError(
            f"corpus {corpus.name!r} has {stream.size} tokens, fewer than one row of "
            f"{seq_len}; use a shorter seq_len or a bigger corpus"
        )
    keep = n_rows if n_rows is not None else available
    return stream[: keep * body_len].reshape(keep, body_len)  # (n_seq, body_len)


def _check_sizes(seq_len: int, n_tokens: int | None, bos: bool) -> None:
    smallest = 2 if bos else 1
    if seq_len < smallest:
        raise ConfigError(f"seq_len must be at least {smallest} with bos={bos}, got {seq_len}")
    if n_tokens is not None and n_tokens < 1:
        raise ConfigError(f"n_tokens must be positive or None (the whole corpus), got {n_tokens}")


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the vocabulary and special ids: equal for tokenizers that map text alike."""
    vocab = sorted(tokenizer.get_vocab().items())
    h = hashlib.sha256()
    h.update(json.dumps([len(vocab), tokenizer.bos_token_id, tokenizer.eos_token_id]).encode())
    h.update(json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def _fingerprint(corpus: Corpus, tokenizer, seq_len: int, bos: bool, tokens: Tensor) -> str:
    header = {
        "version": FINGERPRINT_VERSION,
        "source": corpus.source_fingerprint,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "seq_len": seq_len,
        "bos": bos,
        "shape": list(tokens.shape),
    }
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    h.update(tokens.numpy().astype("<i8", copy=False).tobytes())
    return h.hexdigest()
