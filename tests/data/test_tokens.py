"""Packing corpora into rows, checked against a slow pure-Python reference."""

from __future__ import annotations

import pytest
import torch

from alignlab.data import iter_batches, read_corpus, tokenize_corpus
from alignlab.data.corpus import Corpus, documents_fingerprint
from alignlab.data.tokens import token_stream
from alignlab.errors import ConfigError, DataError
from alignlab.models.tokenizer import byte_tokenizer

BOS, EOS = 256, 257


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


def make_corpus(docs: list[str], name: str = "test") -> Corpus:
    return Corpus(name=name, documents=docs, source_fingerprint=documents_fingerprint(docs))


DOCS = [f"Document number {i}: " + "the quick brown fox " * (i % 7 + 1) for i in range(60)]


def reference_rows(docs: list[str], seq_len: int, bos: bool) -> list[list[int]]:
    """Obviously-correct packing: bytes of each doc, then EOS; rows cut one by one."""
    stream: list[int] = []
    for doc in docs:
        stream.extend(doc.encode("utf-8"))
        stream.append(EOS)
    body = seq_len - 1 if bos else seq_len
    rows = []
    for start in range(0, len(stream) - body + 1, body):
        rows.append(([BOS] if bos else []) + stream[start : start + body])
    return rows


@pytest.mark.parametrize("bos", [True, False])
@pytest.mark.parametrize("seq_len", [2, 7, 64])
def test_rows_match_reference(tok, seq_len, bos):
    blocks = tokenize_corpus(make_corpus(DOCS), tok, seq_len=seq_len, bos=bos)
    assert blocks.tokens.dtype == torch.int64
    assert blocks.tokens.tolist() == reference_rows(DOCS, seq_len, bos)
    assert blocks.seq_len == seq_len and blocks.bos_id == (BOS if bos else None)


def test_every_row_starts_with_bos(tok):
    blocks = tokenize_corpus(make_corpus(DOCS), tok, seq_len=32)
    assert (blocks.tokens[:, 0] == BOS).all()
    assert not (blocks.tokens[:, 1:] == BOS).any()


def test_non_ascii_text_is_tokenized_as_utf8_bytes(tok):
    docs = ["naïve café — “quoted” 😀 " * 5]
    blocks = tokenize_corpus(make_corpus(docs), tok, seq_len=16)
    assert blocks.tokens.tolist() == reference_rows(docs, 16, bos=True)


def test_n_tokens_keeps_the_first_rows(tok):
    full = tokenize_corpus(make_corpus(DOCS), tok, seq_len=32)
    part = tokenize_corpus(make_corpus(DOCS), tok, seq_len=32, n_tokens=100)
    assert part.n_seq == 4  # ceil(100 / 32)
    assert part.n_tokens == 128
    assert torch.equal(part.tokens, full.tokens[:4])


def test_stream_stops_early_once_enough_tokens(tok, monkeypatch):
    monkeypatch.setattr("alignlab.data.tokens.CHUNK_CHARS", 100)
    docs = ["x" * 60] * 1000
    stream = token_stream(docs, tok, need=500)
    assert 500 <= stream.size < 1000  # a few chunks, not all 61k tokens


def test_too_many_tokens_is_an_error(tok):
    corpus = make_corpus(["abc " * 50], name="small")  # 201 stream tokens -> 6 rows of 32
    with pytest.raises(
        DataError, match=r"asked for 1000 tokens but corpus 'small' has only 192 \(6 rows of 32\)"
    ):
        tokenize_corpus(corpus, tok, seq_len=32, n_tokens=1000)


def test_corpus_shorter_than_one_row_is_an_error(tok):
    with pytest.raises(DataError, match="fewer than one row"):
        tokenize_corpus(make_corpus(["hi"]), tok, seq_len=64)


def test_bad_sizes_are_config_errors(tok):
    with pytest.raises(ConfigError, match="seq_len"):
        tokenize_corpus(make_corpus(DOCS), tok, seq_len=1)
    with pytest.raises(ConfigError, match="n_tokens"):
        tokenize_corpus(make_corpus(DOCS), tok, seq_len=8, n_tokens=0)


def test_tokenizer_without_bos_or_eos(tok, monkeypatch):
    class NoSpecials:
        bos_token_id = None
        eos_token_id = None

        def __call__(self, docs, **kwargs):
            return {"input_ids": [list(d.encode()) for d in docs]}

        def get_vocab(self):
            return {chr(i): i for i in range(256)}

    with pytest.raises(DataError, match="no BOS or EOS.*bos=False"):
        tokenize_corpus(make_corpus(DOCS), NoSpecials(), seq_len=8)
    blocks = tokenize_corpus(make_corpus(["abcdefgh"]), NoSpecials(), seq_len=4, bos=False)
    assert blocks.tokens.tolist() == [[97, 98, 99, 100], [101, 102, 103, 104]]  # no EOS added


def test_fingerprint_is_deterministic_and_sensitive(tok):
    corpus = make_corpus(DOCS)
    base = tokenize_corpus(corpus, tok, seq_len=16).fingerprint
    assert tokenize_corpus(make_corpus(list(DOCS)), tok, seq_len=16).fingerprint == base
    changed_text = make_corpus(DOCS[:-1] + [DOCS[-1] + "!"])
    others = {
        tokenize_corpus(changed_text, tok, seq_len=16).fingerprint,
        tokenize_corpus(corpus, tok, seq_len=17).fingerprint,
        tokenize_corpus(corpus, tok, seq_len=16, bos=False).fingerprint,
        tokenize_corpus(corpus, tok, seq_len=16, n_tokens=64).fingerprint,
    }
    assert base not in others and len(others) == 4


def test_iter_batches_in_order(tok):
    blocks = tokenize_corpus(make_corpus(DOCS), tok, seq_len=16)
    batches = list(iter_batches(blocks, 7))
    assert [b.shape[0] for b in batches[:-1]] == [7] * (len(batches) - 1)
    assert 1 <= batches[-1].shape[0] <= 7
    assert torch.equal(torch.cat(batches), blocks.tokens)
    with pytest.raises(ConfigError):
        next(iter_batches(blocks, 0))


def test_builtin_tokenizes_to_many_tokens(tok):
    blocks = tokenize_corpus(read_corpus("builtin"), tok, seq_len=1024, n_tokens=200_000)
    assert blocks.n_tokens >= 200_000
    assert blocks.tokens.shape == (196, 1024)
    assert tok.decode(blocks.tokens[0, 1:20]) == "PRIDE AND PREJUDICE"
