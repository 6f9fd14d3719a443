"""``sandbox list``, ``sandbox run``, ``sandbox cid`` and ``sandbox verify``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..sandbox.diagram import CidConfig
from ..sandbox.train import TrainConfig
from ..sandbox.verify import VerifyConfig
from .registry import command


@command("sandbox list", "the sandbox environments (alignlab/<Name>-v0) and agents")
def run_list(_config, console: Console) -> int:
    from ..sandbox.agents import AGENTS
    from ..sandbox.envs import ENVS, gym_id

    envs = Table(title="environments")
    for column in ("gymnasium id", "states", "measured event", "predicted by"):
        envs.add_column(column, no_wrap=column == "gymnasium id")
    for name, cls in ENVS.items():
        m = cls.measure
        envs.add_row(gym_id(name), str(cls().model.n_states), m.event, f"{m.criterion.upper()} on {m.node}")
    console.print(envs)
    for name, cls in ENVS.items():
        console.print(f"[bold]{name}[/bold]: {cls.summary}. Measures whether the agent "
                      f"{cls.measure.behaviour}. Table agents: {', '.join(cls.table_agents)}.")
    agents = Table(title="agents")
    for column in ("agent", "objective (diagram)", "what it is"):
        agents.add_column(column, no_wrap=column == "agent")
    for name, cls in AGENTS.items():
        agents.add_row(name, cls.objective, cls.summary)
    console.print(agents)
    return 0


@command("sandbox run", "train one agent on one sandbox environment and show a greedy episode",
         TrainConfig, computes=True)
def run_run(config: TrainConfig, console: Console) -> int:
    from ..sandbox.train import run_train

    result, folder = run_train(config)
    frames = result.ascii
    shown = frames if len(frames) <= 4 else [frames[0], "...\n", frames[-1]]
    console.print("".join(shown), markup=False, highlight=False)
    table = Table(title=f"{result.env} / {result.agent} (seed {result.seed})")
    for column in ("train steps", "seconds", "behaviour rate", "observed return", "true return",
                   "episode actions", "episode events"):
        table.add_column(column)
    table.add_row(str(result.steps), f"{result.seconds:.2f}", f"{result.shown_rate:.2f}",
                  f"{result.observed_return:.3f}", f"{result.true_return:.3f}",
                  str(len(result.episode.actions)), ", ".join(sorted(result.episode.events)) or "-")
    console.print(table)
    if folder is not None:
        console.print(f"wrote {folder}/metrics.json")
    return 0


@command("sandbox cid", "the causal influence diagram of an agent in an environment: incentives and a drawing",
         CidConfig, computes=True)
def run_cid(config: CidConfig, console: Console) -> int:
    from ..sandbox.diagram import run_cid as draw

    report, paths = draw(config)
    table = Table(title=f"{report.env} / {report.agent}: objective {report.objective}")
    for column in ("node", "kind", "what it is", "incentives"):
        table.add_column(column)
    for n in report.cid.nodes:
        inc = report.incentives.get(n.name)
        tags = ", ".join(inc.names()) if inc else ""
        if inc and inc.ici_kind:
            tags += f" ({inc.ici_kind})"
        kind = "chance (future self)" if n.future_decision else n.kind
        table.add_row(n.name, kind, n.label, tags or "-")
    console.print(table)
    p = report.prediction
    console.print(f"measured: {report.behaviour} -> {p.criterion}: "
                  f"{'predicted' if p.incentive else 'not predicted'} ({p.reason})", markup=False)
    console.print("drew " + ", ".join(str(x) for x in paths))
    return 0


@command("sandbox verify", "train every agent on every environment and check the diagrams' predictions",
         VerifyConfig, computes=True)
def run_verify(config: VerifyConfig, console: Console) -> int:
    from ..sandbox.verify import run_verify as verify

    run, metrics = verify(config, log=lambda msg: console.print(msg, markup=False, highlight=False,
                                                            soft_wrap=True))
    summary = metrics["sandbox"]["summary"]
    console.print(f"{summary['agree']} of {summary['pairs']} pairs agree with the diagram "
                  f"({summary['seeds']} seeds, {summary['seconds']:.0f} s); wrote {run.path}/metrics.json")
    return 0
