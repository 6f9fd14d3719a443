"""The demo's SAE section, run on a tiny model through the same DemoContext the demo uses."""

from __future__ import annotations

from alignlab.demo import DemoConfig, DemoContext
from alignlab.runs import start_run
from alignlab.sae import demo


def test_demo_section_trains_an_sae_into_the_run(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "QUICK", demo.DemoBudget(tokens=4096, expansion=2, eval_tokens=1024,
                                                       browse_tokens=1024, batch_tokens=512, lr=3e-3))
    run = start_run(tmp_path, "demo", {})
    ctx = DemoContext(DemoConfig(out=str(tmp_path), quick=True, model="tiny-llama"), tiny_llama, run,
                      log=lambda msg: None)
    metrics = demo.demo_section(ctx)
    entry = metrics["sae"]["resid.2"]
    assert {"fvu", "l0", "loss_recovered", "browser"} <= set(entry)
    assert entry["k"] == 32 and entry["width"] == 128
    assert (tmp_path / "saes" / "resid.2" / "cfg.json").is_file()
    assert (tmp_path / entry["browser"]).is_file()
