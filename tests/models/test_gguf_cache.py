import pytest
import torch

from alignlab.models import gguf_cache, load_model


@pytest.mark.slow
def test_dequantised_gguf_is_cached_and_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("ALIGNLAB_NO_CACHE", raising=False)
    first = load_model("smollm2-135m")
    entries = list((tmp_path / "gguf").iterdir())
    assert len(entries) == 1 and (entries[0] / "complete").is_file()
    second = load_model("smollm2-135m")
    ids = first.tokenizer("The capital of France is", return_tensors="pt").input_ids
    assert torch.equal(ids, second.tokenizer("The capital of France is", return_tensors="pt").input_ids)
    with torch.no_grad():
        torch.testing.assert_close(first.model(ids).logits, second.model(ids).logits, atol=0, rtol=0)
    assert first.anatomy.unembedding_hash() == second.anatomy.unembedding_hash()


def test_incomplete_cache_entry_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNLAB_CACHE", str(tmp_path))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    entry = gguf_cache._entry(gguf)
    entry.mkdir(parents=True)
    (entry / "config.json").write_text("{}")  # a crash mid-write leaves no 'complete' marker
    assert gguf_cache.lookup(gguf) is None
    (entry / "complete").write_text("x")
    assert gguf_cache.lookup(gguf) == entry
    monkeypatch.setenv("ALIGNLAB_NO_CACHE", "1")
    assert gguf_cache.lookup(gguf) is None
