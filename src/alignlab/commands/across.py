"""``train-tiny`` (a small GPT-NeoX checkpointed like Pythia) and ``across`` (an analysis per checkpoint)."""

from __future__ import annotations

from rich.console import Console

from ..across.series import AcrossConfig
from ..across.tiny import TrainTinyConfig
from .registry import command


@command("train-tiny", "train a small GPT-NeoX on a corpus, saving checkpoints on a log-spaced schedule",
         TrainTinyConfig, computes=True)
def run_train_tiny(config: TrainTinyConfig, console: Console) -> int:
    from ..across.tiny import train_tiny

    result = train_tiny(config, log=lambda msg: console.print(msg, soft_wrap=True))
    names = ", ".join(f"step{s}" for s in result.checkpoints)
    console.print(f"{len(result.checkpoints)} checkpoints in {result.run.path}: {names} "
                  f"({result.seconds:.1f}s, final loss {result.losses[-1]:.3f})", soft_wrap=True)
    return 0


@command("across", "run an analysis on each checkpoint of a training run and follow its metrics by step",
         AcrossConfig, computes=True)
def run_across(config: AcrossConfig, console: Console) -> int:
    from ..across.series import finish_across, plan_across
    from ..config import config_to_dict
    from ..runs import start_run
    from .registry import COMMANDS

    plan = plan_across(config)  # every checkpoint's config is built (and checked) first
    run = start_run(config.out, "across", config_to_dict(config))
    for checkpoint, inner in zip(plan.checkpoints, plan.configs):
        console.print(f"across: `{plan.command}` on {checkpoint}", soft_wrap=True)
        COMMANDS[plan.command].run(inner, console)
    metrics = finish_across(run, plan)["across"]
    console.print(f"{len(plan.checkpoints)} checkpoints, {len(metrics['series'])} metric series: "
                  f"{run.path}/metrics.json", soft_wrap=True)
    if config.warm_start:
        series = metrics["series"]
        for name, saved, kl in zip(plan.checkpoints, series.get("lens.warm_start.steps_saved", []),
                                   series.get("lens.warm_start.kl_mean_saving", [])):
            if kl is not None:
                console.print(f"warm start on {name}: {saved if saved is not None else 'no'} steps saved, "
                              f"mean held-out KL {kl:+.4f} nats lower than from the logit lens")
    return 0
