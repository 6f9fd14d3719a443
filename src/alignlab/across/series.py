"""``alignlab across``: one analysis run on each checkpoint of a training run, metrics by step.

The analysis is any registered command that takes ``--revision`` and ``--out`` (``lens
train``, ``lens eval``, ...), given as its own command line. For each checkpoint (a hub
revision such as Pythia's ``step1000``, or a subfolder of a local model folder such as
``alignlab train-tiny`` writes) it runs into ``OUT/<checkpoint>/`` (a complete run folder,
its artifacts recording the revision), then gathers every numeric metric of those runs into
one series per key: ``across.series["lens.tuned.kl"][i]`` is checkpoint i's per-layer list.

With ``--warm-start`` (``lens train`` only) each checkpoint's tuned lens starts from the previous
checkpoint's and is compared with one trained from the logit lens on the same batches; the
saving is in the series as ``lens.warm_start.*`` (``steps_saved``, ``kl_mean_saving``, ...).

With ``probe`` as the analysis, each checkpoint's run also saves its test rows' states, and
``across.probe_drift`` holds, per dataset and method and for each consecutive pair of
checkpoints, the per-layer cosine between their probe directions and the accuracy and AUROC
of the earlier checkpoint's probe on the later one's test states (beside the later one's own).
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..config import add_config_arguments, config_from_namespace, opt
from ..errors import ConfigError
from ..runs import Run, read_run

CHECKPOINT_STEP = re.compile(r"step(\d+)$")


@dataclass
class AcrossConfig:
    """``alignlab across``: run an analysis on each checkpoint and follow its metrics over training."""

    out: str = opt(help="run folder: OUT/<checkpoint>/ per checkpoint, and the series")
    checkpoints: str = opt(help="comma-separated revisions (e.g. step0,step100), or 'all': every "
                                "step* subfolder of the analysis's local --model folder")
    run: str = opt(help="the analysis command line, without --out and --revision, e.g. "
                        "\"lens train --model runs/tiny --tokens 4096\"")
    warm_start: bool = opt(False, "lens train only: start each checkpoint's tuned lens from the one "
                                  "before it (in --checkpoints order), also train it from the logit "
                                  "lens, and report the saving (lens.warm_start.*)")

    def __post_init__(self) -> None:
        if not self.checkpoints.strip():
            raise ConfigError("--checkpoints is empty; give e.g. step0,step100 or 'all'")
        if not shlex.split(self.run or ""):
            raise ConfigError("--run is empty; give an analysis such as \"lens train --model DIR\"")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError(f"in --run: {message}")


@dataclass
class Plan:
    """The analysis to repeat, and one config of it per checkpoint."""

    command: str  # registered name, e.g. "lens train"
    checkpoints: list[str]
    steps: list[int | None]  # parsed from names like step100
    configs: list[Any]  # the command's config dataclass, one per checkpoint


def _split_command(argv: list[str]):
    from ..commands import COMMANDS

    for n_words in (2, 1):
        name = " ".join(argv[:n_words])
        if name in COMMANDS:
            return COMMANDS[name], argv[n_words:]
    usable = sorted(n for n, c in COMMANDS.items() if c.config_cls and _takes_revision(c.config_cls))
    raise ConfigError(f"--run {shlex.join(argv)!r} does not start with a command; analyses that take "
                      f"checkpoints: {', '.join(usable)}")


def _takes_revision(cls) -> bool:
    names = {f.name for f in fields(cls)}
    return {"revision", "out"} <= names


def _parse_inner(cmd, args: list[str]):
    if any(a.split("=")[0] in ("--out", "--revision") for a in args):
        raise ConfigError("--run must not set --out or --revision: `alignlab across` sets them per checkpoint")
    parser = _Parser(prog=f"alignlab {cmd.name}", add_help=False)
    add_config_arguments(parser, cmd.config_cls)
    return parser.parse_args([*args, "--out", "."])


def resolve_checkpoints(spec: str, model: str | None) -> list[str]:
    """``spec``'s names, or with ``all`` every ``step*`` subfolder of ``model``, by step."""
    if spec.strip() != "all":
        names = [s.strip() for s in spec.split(",") if s.strip()]
        if len(set(names)) != len(names):
            raise ConfigError(f"--checkpoints {spec!r} names a checkpoint twice")
        return names
    folder = Path(model or "")
    found = [p.name for p in folder.iterdir() if p.is_dir() and CHECKPOINT_STEP.fullmatch(p.name)] \
        if model and folder.is_dir() else []
    if not found:
        raise ConfigError(f"--checkpoints all needs a local --model folder with step* subfolders; "
                          f"{model!r} has none (make one with `alignlab train-tiny`)")
    return sorted(found, key=lambda name: int(CHECKPOINT_STEP.fullmatch(name).group(1)))


def step_of(checkpoint: str) -> int | None:
    match = CHECKPOINT_STEP.search(checkpoint)
    return int(match.group(1)) if match else None


def plan_across(config: AcrossConfig) -> Plan:
    """Resolve the command and the checkpoints, and build (and so validate) every config."""
    cmd, args = _split_command(shlex.split(config.run))
    if cmd.config_cls is None or not cmd.computes or not _takes_revision(cmd.config_cls):
        raise ConfigError(f"`alignlab {cmd.name}` takes no --revision and --out, so it cannot run "
                          "across checkpoints")
    ns = _parse_inner(cmd, args)
    base = config_from_namespace(cmd.config_cls, ns)
    checkpoints = resolve_checkpoints(config.checkpoints, getattr(base, "model", None))
    out = Path(config.out)
    configs = [replace(base, revision=c, out=str(out / c)) for c in checkpoints]
    if config.warm_start:
        configs = warm_started(cmd.name, configs)
    if cmd.name == "probe":  # drift needs every checkpoint's probes and test states on disk
        configs = [replace(c, save_probes=True, save_test_states=True) for c in configs]
    return Plan(cmd.name, checkpoints, [step_of(c) for c in checkpoints], configs)


def warm_started(command: str, configs: list[Any]) -> list[Any]:
    """Each ``lens train`` after the first starts from the lens the one before it writes.

    The checkpoints run in order, so the previous lens exists by the time it is read; every
    warm-started run also trains from the logit lens on the same batches (``compare_cold``),
    which is what its ``lens.warm_start`` saving is measured against.
    """
    if command != "lens train":
        raise ConfigError(f"--warm-start applies to `lens train`, not `{command}`")
    if configs and configs[0].init_lens is not None:
        raise ConfigError("--run sets --init-lens; with --warm-start the first checkpoint starts "
                          "from the logit lens and each later one from the one before")
    from ..lens.pipeline import LENS_FOLDER

    chained = [configs[0]]
    for before, config in zip(configs, configs[1:]):
        chained.append(replace(config, init_lens=str(Path(before.out) / LENS_FOLDER),
                               compare_cold=True))
    return chained


def _numeric_leaves(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of numbers and of lists of numbers (per-layer values) in a metrics dict."""
    found: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.update(_numeric_leaves(value, f"{prefix}{key}."))
    elif isinstance(obj, bool):
        pass
    elif isinstance(obj, int | float):
        found[prefix[:-1]] = obj
    elif isinstance(obj, list) and obj and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in obj):
        found[prefix[:-1]] = obj
    return found


def gather_series(plan: Plan, out: Path) -> dict:
    """Every numeric metric of the checkpoint runs, as one list over checkpoints per key."""
    per_run = [_numeric_leaves(read_run(out / c).read_metrics()) for c in plan.checkpoints]
    keys = sorted({k for leaves in per_run for k in leaves})
    return {
        "command": plan.command,
        "checkpoints": plan.checkpoints,
        "steps": plan.steps,
        "runs": [str(out / c) for c in plan.checkpoints],
        "series": {k: [leaves.get(k) for leaves in per_run] for k in keys},
    }


def finish_across(run: Run, plan: Plan) -> dict:
    """Gather the series into ``OUT/metrics.json`` (and report) once every checkpoint ran."""
    metrics = {"across": gather_series(plan, run.path)}
    if plan.command == "probe":
        from ..probes.across import drift_between_runs

        metrics["across"]["probe_drift"] = drift_between_runs(
            [run.path / c for c in plan.checkpoints], plan.checkpoints)
    run.finish(metrics)
    return metrics
