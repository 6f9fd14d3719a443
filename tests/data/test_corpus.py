"""Reading corpora: every file format, every error a user can hit, and the built-in corpus."""

from __future__ import annotations

import json
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alignlab.data import builtin_info, read_corpus
from alignlab.data.corpus import documents_fingerprint
from alignlab.errors import DataError

DOCS = ["The first document.\nIt has two lines.", "Second: ünïcode — and “quotes”.", "Third."]


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def write_parquet(path, columns):
    pq.write_table(pa.table(columns), path)
    return path


def test_txt_is_one_document(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("Para one.\n\nPara two.\n", encoding="utf-8")
    corpus = read_corpus(str(path))
    assert corpus.documents == ["Para one.\n\nPara two.\n"]
    assert corpus.name == str(path)


def test_jsonl_round_trips(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": d, "id": i} for i, d in enumerate(DOCS)])
    assert read_corpus(str(path)).documents == DOCS


def test_jsonl_skips_blank_lines_and_whitespace_documents(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "   "}\n{"text": "b"}\n', encoding="utf-8")
    assert read_corpus(str(path)).documents == ["a", "b"]


def test_parquet_round_trips(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", {"text": DOCS, "n": [1, 2, 3]})
    assert read_corpus(str(path)).documents == DOCS


def test_same_documents_give_same_fingerprint_in_every_format(tmp_path):
    jsonl = write_jsonl(tmp_path / "c.jsonl", [{"text": d} for d in DOCS])
    parquet = write_parquet(tmp_path / "c.parquet", {"text": DOCS})
    fingerprints = {read_corpus(str(p)).source_fingerprint for p in (jsonl, parquet)}
    assert fingerprints == {documents_fingerprint(DOCS)}


def test_fingerprint_sees_text_and_boundaries():
    base = documents_fingerprint(["ab", "c"])
    assert documents_fingerprint(["ab", "c"]) == base
    assert documents_fingerprint(["ab", "d"]) != base
    assert documents_fingerprint(["a", "bc"]) != base  # same characters, other boundary
    assert documents_fingerprint(["c", "ab"]) != base  # order counts


def test_missing_file_says_what_to_give(tmp_path):
    with pytest.raises(DataError, match=r"'x\.txt' does not exist; give a \.txt/\.jsonl/\.parquet"):
        read_corpus("x.txt")
    with pytest.raises(DataError, match="does not exist"):
        read_corpus(str(tmp_path / "nope.parquet"))


@pytest.mark.parametrize("content", ["", "  \n\n\t \n"])
def test_empty_txt_is_an_error(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="has no text"):
        read_corpus(str(path))


def test_empty_jsonl_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="has no text"):
        read_corpus(str(path))


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        read_corpus(str(path))


def test_jsonl_line_without_text_lists_its_keys(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "ok"}, {"body": "x", "id": 2}])
    with pytest.raises(DataError, match=r"line 2 has no 'text' field \(found: body, id\)"):
        read_corpus(str(path))


def test_jsonl_non_string_text_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": 5}])
    with pytest.raises(DataError, match="line 1: 'text' is a int"):
        read_corpus(str(path))


def test_parquet_without_text_column_lists_columns(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", {"body": ["x"], "id": [1]})
    with pytest.raises(DataError, match=r"no 'text' column \(columns: body, id\)"):
        read_corpus(str(path))


def test_parquet_skips_null_rows(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", {"text": ["a", None, "b"]})
    assert read_corpus(str(path)).documents == ["a", "b"]


def test_corrupt_parquet_is_a_data_error(tmp_path):
    path = tmp_path / "c.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="could not be read as parquet"):
        read_corpus(str(path))


def test_unknown_extension_says_what_to_convert_to(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"extension '\.csv'.*convert it to \.txt, \.jsonl"):
        read_corpus(str(path))


def test_non_utf8_file_is_an_error(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"caf\xe9 latin-1")
    with pytest.raises(DataError, match="not UTF-8"):
        read_corpus(str(path))


def test_datasets_name_without_datasets_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DataError, match=r"pip install 'alignlab\[hf\]'"):
        read_corpus("someone/some-corpus")


def fake_datasets(columns: dict, calls: list):
    """A stand-in ``datasets`` module whose load_dataset records its arguments."""

    class FakeDataset:
        column_names = list(columns)

        def __getitem__(self, key):
            return columns[key]

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        return FakeDataset()

    return types.SimpleNamespace(load_dataset=load_dataset)


def test_datasets_spec_forms(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets({"text": DOCS}, calls))
    assert read_corpus("org/name").documents == DOCS
    read_corpus("wikitext:wikitext-2-raw-v1:validation")
    assert calls == [("org/name", None, "train"), ("wikitext", "wikitext-2-raw-v1", "validation")]


def test_datasets_without_text_column(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets({"content": DOCS}, []))
    with pytest.raises(DataError, match=r"no 'text' column \(columns: content\)"):
        read_corpus("org/name")


def test_datasets_load_failure_is_a_data_error(monkeypatch):
    def load_dataset(name, config, split):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="offline mode is on.*no network"):
        read_corpus("org/name")


def test_builtin_is_english_prose():
    corpus = read_corpus("builtin")
    text = "\n".join(corpus.documents)
    assert len(text.encode("utf-8")) > 1_000_000
    words = text.lower().split()
    for common in ("the", "and", "of", "to", "was", "her", "whale"):
        assert words.count(common) > 100, common
    assert "gutenberg" not in text.lower()  # licence boilerplate was stripped
    assert text.startswith("PRIDE AND PREJUDICE")


def test_builtin_documents_are_chapter_sized_and_stable():
    corpus = read_corpus("builtin")
    sizes = [len(d) for d in corpus.documents]
    assert len(sizes) > 100
    assert min(sizes) >= 2_000 and max(sizes) <= 20_000
    assert read_corpus("builtin").source_fingerprint == corpus.source_fingerprint


def test_builtin_info_describes_the_works():
    info = builtin_info()
    assert info["name"] == "builtin"
    assert "public domain" in info["licence"]
    assert {w["author"] for w in info["works"]} == {"Jane Austen", "Herman Melville"}
    assert info["bytes"] == sum(w["bytes"] for w in info["works"]) > 1_000_000
    assert info["n_documents"] == len(read_corpus("builtin").documents)
