"""The demo's harvest section, on a tiny model: it writes a store into the run folder and
reports per-layer statistics that agree with the store."""

from __future__ import annotations

import json

import pytest

from alignlab.activations import ActivationStore, verify_store
from alignlab.activations.harvest import demo_section
from alignlab.demo import DemoConfig, DemoContext
from alignlab.runs import start_run


def test_demo_section_harvests_into_the_run_folder(tiny_llama, tmp_path):
    run = start_run(tmp_path / "demo", "demo", {})
    logged = []
    ctx = DemoContext(
        DemoConfig(out=str(run.path), quick=True, model="tiny-llama"),
        tiny_llama,
        run,
        logged.append,
    )
    metrics = demo_section(ctx)["harvest"]
    json.dumps(metrics)  # metrics.json material

    store = ActivationStore.open(run.path / "store")
    assert verify_store(store.path).ok
    assert metrics["tokens"] == store.n_rows == 4096
    assert metrics["sites"] == [f"resid.{i}" for i in range(5)] == store.sites
    assert metrics["shards"] == store.manifest.n_shards
    assert metrics["resid_norm_mean"] == [store.stats(s).mean_norm for s in store.sites]
    assert metrics["resid_norm_mean_excl_first"] == [
        store.stats(s).mean_norm_excl_first for s in store.sites
    ]
    assert len(metrics["resid_var_mean"]) == 5 and metrics["tokens_per_second"] > 0
    assert metrics["resid_norm_mean"][0] == pytest.approx(store.stats("resid.0").mean_norm)
    assert logged and "harvest" in logged[0]
