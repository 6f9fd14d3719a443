"""Training from an activation store: shuffled, resumable, split across ranks, sinks marked."""

from __future__ import annotations

import pytest
import torch

from alignlab.activations import HarvestConfig, harvest
from alignlab.errors import StoreError
from alignlab.sae import CoderConfig
from alignlab.sae.data import SinkRule, SitePair
from alignlab.sae.store_source import StoreSource
from alignlab.sae.trainer import Trainer, TrainSettings

SEQ, N_SEQ = 32, 24


@pytest.fixture(scope="module")
def store(tiny_llama, tmp_path_factory):
    config = HarvestConfig(
        out=str(tmp_path_factory.mktemp("sae-store") / "store"), model="tiny-llama", tokens=SEQ * N_SEQ,
        seq_len=SEQ, batch_size=4, shard_tokens=8 * SEQ, sites="mlp_in.1,mlp.1,resid.2", dtype="float32",
    )
    return harvest(config, lm=tiny_llama)


def _rows(batches, name):
    return torch.cat([b[name].x for b in batches])


def test_batches_cover_the_store_once_per_epoch_and_resume_exactly(store):
    source = StoreSource(store, [SitePair("resid.2", "resid.2")], batch_size=64, seed=3, epochs=2)
    assert source.n_batches == 2 * (SEQ * N_SEQ // 64)
    every = list(source.batches())
    assert len(every) == source.n_batches
    first_epoch = _rows(every[: source.per_epoch], "resid.2")
    stored = store.rows(range(store.n_rows)).acts["resid.2"].float()
    assert sorted(map(tuple, first_epoch.tolist())) == sorted(map(tuple, stored.tolist()))
    later = list(source.batches(start=7))
    assert all(torch.equal(a["resid.2"].x, b["resid.2"].x) for a, b in zip(every[7:], later))


def test_ranks_take_disjoint_batches(store):
    pairs = [SitePair("resid.2", "resid.2")]
    one = list(StoreSource(store, pairs, batch_size=32, seed=1).batches())
    r0 = list(StoreSource(store, pairs, batch_size=32, seed=1, rank=0, world=2).batches())
    r1 = list(StoreSource(store, pairs, batch_size=32, seed=1, rank=1, world=2).batches())
    assert torch.equal(r0[0]["resid.2"].x, one[0]["resid.2"].x)
    assert torch.equal(r1[0]["resid.2"].x, one[1]["resid.2"].x)


def test_first_positions_are_sinks_and_transcoders_get_both_sites(store):
    source = StoreSource(store, [SitePair("mlp_in.1", "mlp.1")], batch_size=SEQ * N_SEQ, seed=0,
                         sinks=SinkRule(first_position=True, norm_factor=0.0))
    batch = next(iter(source.batches()))["mlp_in.1->mlp.1"]
    assert batch.y is not None and batch.y.shape == batch.x.shape
    assert int((~batch.keep).sum()) == N_SEQ  # one first position per sequence


def test_a_missing_site_is_named(store):
    with pytest.raises(StoreError, match="has no site resid.3"):
        StoreSource(store, [SitePair("resid.3", "resid.3")], batch_size=32)


def test_training_from_the_store(store):
    source = StoreSource(store, [SitePair("resid.2", "resid.2")], batch_size=64, epochs=3)
    cfg = CoderConfig("topk", 64, 128, k=8)
    result = Trainer({"resid.2": cfg}, TrainSettings(n_steps=source.n_batches, lr=3e-3)).fit(source)
    assert result.final["resid.2"].fvu < result.history[0]["resid.2"]["fvu"]
    assert result.tokens + result.sink_rows == source.n_batches * 64
