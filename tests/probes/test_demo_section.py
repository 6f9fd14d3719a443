"""The demo's probe section, on a tiny model (the demo itself runs it on smollm2-135m)."""

from alignlab.demo import DemoConfig, DemoContext
from alignlab.probes import demo_section
from alignlab.runs import start_run


def test_quick_demo_section_reports_city_accuracy_and_controls(tiny_llama, tmp_path):
    run = start_run(tmp_path / "demo", "demo", {})
    logs = []
    ctx = DemoContext(DemoConfig(out=str(tmp_path / "demo"), quick=True, model="tiny-llama"),
                      tiny_llama, run, logs.append)
    probe = demo_section(ctx)["probe"]
    assert len(probe["cities"]["lr"]["accuracy"]) == tiny_llama.n_layers + 1
    controls = probe["controls"]["cities"]
    for key in ("shuffled_labels", "random_directions", "distractor", "held_out_templates", "likelihood"):
        assert key in controls
    assert controls["held_out_templates"]["lr"]["held_out_templates"] == [1]
    # the unsupervised methods get the control too: held-out rows come with their negations
    for method in ("ccs", "eigen"):
        assert controls["held_out_templates"][method]["n_held_out"] > 0
    assert any("lr at layer" in line for line in logs)
