"""``alignlab demo``: every section on the embedded default, into one run folder.

Each section is a function ``(DemoContext) -> dict`` of metrics; later capabilities append
their sections to ``SECTIONS``. ``--quick`` runs every section at reduced size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .config import opt
from .firstlook import inspect_prompt
from .models import EMBEDDED_DEFAULT, LoadedModel, load_model
from .runs import Run, start_run

DEMO_PROMPTS = [
    "The capital of France is",
    "The Eiffel Tower is located in the city of",
    "One, two, three, four,",
    "To be or not to be, that is the",
]


@dataclass
class DemoConfig:
    """``alignlab demo``: a tour of every tool on the embedded default model."""

    out: str = opt("runs/demo", "run folder to write")
    quick: bool = opt(False, "every section at reduced size (minutes on 2 CPU cores)")
    model: str = opt(EMBEDDED_DEFAULT, "model to run the demo on")


@dataclass
class DemoContext:
    config: DemoConfig
    lm: LoadedModel
    run: Run
    log: Callable[[str], None] = print
    metrics: dict = field(default_factory=dict)


def section_inspect(ctx: DemoContext) -> dict:
    prompts = DEMO_PROMPTS[:2] if ctx.config.quick else DEMO_PROMPTS
    readouts = [inspect_prompt(ctx.lm, p, "resid.*", top_k=5) for p in prompts]
    for r in readouts:
        ctx.log(f"inspect: {r.prompt!r} -> {r.model_top_tokens[0]!r}")
    return {"inspect": {"model": ctx.lm.spec, "prompts": [r.to_json() for r in readouts]}}


def section_harvest(ctx: DemoContext) -> dict:
    from .activations.harvest import demo_section

    return demo_section(ctx)


def section_lens(ctx: DemoContext) -> dict:
    from .lens.train import demo_section

    return demo_section(ctx)


def section_probe(ctx: DemoContext) -> dict:
    from .probes import demo_section

    return demo_section(ctx)


def section_sae(ctx: DemoContext) -> dict:
    from .sae.demo import demo_section

    return demo_section(ctx)


def section_sandbox(ctx: DemoContext) -> dict:
    from .sandbox.verify import demo_section

    return demo_section(ctx)


SECTIONS: list[tuple[str, Callable[[DemoContext], dict]]] = [
    ("inspect", section_inspect),
    ("harvest", section_harvest),
    ("lens", section_lens),
    ("probe", section_probe),
    ("sae", section_sae),
    ("sandbox", section_sandbox),
]


def run_demo(config: DemoConfig, log: Callable[[str], None] = print) -> Run:
    from .config import config_to_dict

    run = start_run(config.out, "demo", config_to_dict(config))
    lm = load_model(config.model)
    ctx = DemoContext(config, lm, run, log)
    for name, section in SECTIONS:
        log(f"demo: {name}")
        ctx.metrics.update(section(ctx))
    run.finish(ctx.metrics)
    return run
