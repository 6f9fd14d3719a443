"""The demo's probe section: truth probes on the embedded model, at demo size.

``--quick`` fits every method on the built-in city dataset (1,000 statements, the issue's
target) with CCS at 3 restarts of 120 epochs (learning rate 1e-2 instead of Burns's 1,000 at
1e-3), one held-out template and a smaller causal check; the full demo runs CCS as Burns did
(10 restarts of 1,000 epochs at 1e-3) and adds the negated cities and the numeric comparisons,
so the transfer matrix has something to say.
"""

from __future__ import annotations

from .run import ProbeConfig, run_probes

CITY_DATASET = "cities"


def demo_config(quick: bool) -> ProbeConfig:
    if quick:
        return ProbeConfig(dataset=[CITY_DATASET], ccs_tries=3, ccs_epochs=120, ccs_lr=1e-2, held_out="1",
                           causal_statements=32, save_probes=False)
    return ProbeConfig(dataset=[CITY_DATASET, "neg_cities", "larger_than"], save_probes=False)


def demo_section(ctx) -> dict:
    """``{"probe": ...}`` for ``alignlab demo`` (ctx: ``alignlab.demo.DemoContext``)."""
    from . import report  # noqa: F401  (registers the report section the demo's report.html shows)

    config = demo_config(ctx.config.quick)
    results = run_probes(ctx.lm, config, log=ctx.log)
    metrics = results.to_metrics()
    lr = metrics["probe"][CITY_DATASET].get("lr")
    if lr is not None:
        best = lr["best"]
        ctx.log(f"probe: {CITY_DATASET}: lr at layer {best['layer']}: test accuracy {best['accuracy']:.3f}, "
                f"AUROC {best['auroc']:.3f}")
    return metrics
