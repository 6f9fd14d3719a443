"""The demo's lens section, on a tiny model (the demo itself runs it on smollm2-135m)."""

from alignlab.demo import DemoConfig, DemoContext
from alignlab.lens.train import demo_section
from alignlab.runs import start_run


def test_demo_section_returns_per_layer_kl_for_both_lenses(tiny_llama, tmp_path):
    run = start_run(tmp_path / "demo", "demo", {})
    logs = []
    ctx = DemoContext(DemoConfig(out=str(tmp_path / "demo"), quick=True, model="tiny-llama"),
                      tiny_llama, run, logs.append)
    metrics = demo_section(ctx)["lens"]
    for name in ("logit", "tuned"):
        assert len(metrics[name]["kl"]) == tiny_llama.n_layers
    assert (run.path / "lens" / "cfg.json").is_file()
    assert (run.path / "lens_kl_by_layer.png").is_file()
    assert any("lower held-out KL" in line for line in logs)
