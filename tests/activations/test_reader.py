"""Reading a store back: exact rows with their tokens and positions, and the shuffled reader."""

from __future__ import annotations

import pytest
import torch

from alignlab.activations import ActivationStore, HarvestConfig, ShuffledReader, harvest
from alignlab.data import read_corpus, tokenize_corpus
from alignlab.errors import ConfigError, StoreError

SEQ, N_SEQ = 32, 48  # 48 sequences in 6 shards of 8


@pytest.fixture(scope="module")
def store(tiny_llama, tmp_path_factory) -> ActivationStore:
    config = HarvestConfig(
        out=str(tmp_path_factory.mktemp("reader") / "store"),
        model="tiny-llama",
        tokens=SEQ * N_SEQ,
        seq_len=SEQ,
        batch_size=4,
        shard_tokens=8 * SEQ,
        sites="resid.1,resid.3",
        dtype="float32",
    )
    return harvest(config, lm=tiny_llama)


@pytest.fixture(scope="module")
def tokens(tiny_llama):
    return tokenize_corpus(read_corpus("builtin"), tiny_llama.tokenizer, SEQ, SEQ * N_SEQ).tokens


def all_rows(store):
    return store.rows(range(store.n_rows))


# --- exact access ---------------------------------------------------------------------------------


def test_rows_carry_their_token_sequence_and_position(store, tokens):
    wanted = [0, 1, SEQ - 1, SEQ, 9 * SEQ + 5, store.n_rows - 1, 3]  # any order, across shards
    rows = store.rows(wanted)
    assert rows.seq.tolist() == [i // SEQ for i in wanted]
    assert rows.pos.tolist() == [i % SEQ for i in wanted]
    assert rows.tokens.tolist() == [int(tokens[i // SEQ, i % SEQ]) for i in wanted]
    everything = all_rows(store)
    for k, i in enumerate(wanted):
        for site in store.sites:
            assert torch.equal(rows.acts[site][k], everything.acts[site][i])


def test_single_row_and_site_selection(store):
    one = store.rows(SEQ + 2, "resid.3")
    assert list(one.acts) == ["resid.3"] and one.acts["resid.3"].shape == (1, 64)
    assert one.seq.tolist() == [1] and one.pos.tolist() == [2]


def test_context_decodes_the_text_up_to_the_row(store, tokens, tiny_llama):
    text = store.context(5, 10, tiny_llama.tokenizer)
    assert text == tiny_llama.tokenizer.decode(tokens[5, :11].tolist())
    assert store.context(5, 10, tiny_llama.tokenizer, window=3) == tiny_llama.tokenizer.decode(
        tokens[5, 8:11].tolist()
    )
    assert torch.equal(store.sequence(47), tokens[47])


def test_bad_row_requests(store):
    with pytest.raises(StoreError, match="out of range"):
        store.rows([store.n_rows])
    with pytest.raises(StoreError, match="out of range"):
        store.rows([-1])
    with pytest.raises(StoreError, match="site.*resid.2.*not in store.*resid.1, resid.3"):
        store.rows([0], "resid.2")
    with pytest.raises(StoreError, match="out of range"):
        store.sequence(N_SEQ)


# --- shuffled reader ------------------------------------------------------------------------


def _ids(batches) -> list[int]:
    return [i for b in batches for i in (b.seq * SEQ + b.pos).tolist()]


def test_in_order_reading_gives_the_store_order(store):
    batches = list(store.batches(batch_size=100, shuffle=False))
    assert [len(b) for b in batches] == [100] * 15 + [36]
    assert _ids(batches) == list(range(store.n_rows))
    everything = all_rows(store)
    assert torch.equal(torch.cat([b.acts["resid.1"] for b in batches]), everything.acts["resid.1"])


def test_shuffled_batches_are_a_permutation_with_rows_intact(store):
    reader = ShuffledReader(store, batch_size=100, seed=3, buffer_rows=8 * SEQ)
    batches = list(reader)
    ids = _ids(batches)
    assert sorted(ids) == list(range(store.n_rows))  # every row exactly once
    assert ids != sorted(ids)
    everything = all_rows(store)
    for b in batches[:3]:
        index = b.seq * SEQ + b.pos
        for site in store.sites:
            assert torch.equal(b.acts[site], everything.acts[site][index])  # sites stay aligned
        assert torch.equal(b.tokens, everything.tokens[index])


def test_shuffle_is_deterministic_under_a_seed(store):
    def order(seed, epoch=0):
        return _ids(
            ShuffledReader(store, batch_size=64, seed=seed, buffer_rows=6 * SEQ).epoch_iter(epoch)
        )

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1, epoch=1) != order(1)
    first = list(ShuffledReader(store, batch_size=64, seed=1, buffer_rows=6 * SEQ))[0]
    again = list(ShuffledReader(store, batch_size=64, seed=1, buffer_rows=6 * SEQ))[0]
    assert torch.equal(first.acts["resid.3"], again.acts["resid.3"])


def test_buffer_is_bounded_and_still_mixes_shards(store):
    reader = ShuffledReader(store, batch_size=32, seed=0, buffer_rows=4 * SEQ)
    batches = list(reader)
    assert 0 < reader.peak_buffered_rows <= 4 * SEQ
    assert sum(len(b) for b in batches) == store.n_rows
    shards_in_first = {int(s) // 8 for s in batches[0].seq}
    assert len(shards_in_first) > 1  # chunks come from across the store, not shard by shard
    assert len(set(batches[0].seq.tolist())) > 1


def test_drop_last_and_chunk_size(store):
    reader = ShuffledReader(
        store, batch_size=100, seed=0, buffer_rows=400, chunk_rows=8, drop_last=True
    )
    batches = list(reader)
    assert (
        all(len(b) == 100 for b in batches) and len(batches) == len(reader) == store.n_rows // 100
    )
    assert len(set(_ids(batches))) == 1500


def test_reader_settings_are_checked(store):
    with pytest.raises(ConfigError, match="buffer_rows"):
        ShuffledReader(store, batch_size=64, buffer_rows=64)
    with pytest.raises(ConfigError, match="batch_size"):
        ShuffledReader(store, batch_size=0)
