"""``alignlab sandbox cid``: the diagram an environment declares for an agent, its incentives,
and a drawing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import opt
from .agents import AGENTS, agent_class
from .cid import CID, Incentives, draw_cid
from .envs import env_class
from .verify import Prediction, predict


@dataclass
class CidConfig:
    """``alignlab sandbox cid ENV --agent A``: list the incentives and draw the diagram."""

    env: str = opt(help="environment (see `alignlab sandbox list`)", positional=True)
    agent: str = opt("standard", "agent whose objective picks the diagram", choices=sorted(AGENTS))
    out: str = opt("runs/sandbox-cid", "run folder for the drawing (PNG and SVG) and metrics.json")

    def __post_init__(self):
        env_class(self.env)
        agent_class(self.agent)


@dataclass(frozen=True)
class DiagramReport:
    env: str
    agent: str
    objective: str
    cid: CID
    incentives: dict[str, Incentives]  # per node
    prediction: Prediction
    measured_node: str
    behaviour: str

    def to_json(self) -> dict:
        return {
            "objective": self.objective,
            "nodes": {n.name: {"kind": n.kind, "label": n.label, "future_decision": n.future_decision,
                               "parents": self.cid.parents(n.name)} for n in self.cid.nodes},
            "incentives": {k: {"voi": v.voi, "ri": v.ri, "ici": v.ici, "ici_kind": v.ici_kind}
                           for k, v in self.incentives.items()},
            "measured_node": self.measured_node,
            "behaviour": self.behaviour,
            "predicted_incentive": self.prediction.incentive,
            "criterion": self.prediction.criterion,
            "incentive_reason": self.prediction.reason,
        }


def explain(env: str, agent: str) -> DiagramReport:
    env_cls = env_class(env)
    objective = agent_class(agent).objective
    cid = env_cls.cid(objective)
    return DiagramReport(env_cls.env_name, agent, objective, cid, cid.all_incentives(),
                         predict(env_cls, objective), env_cls.measure.node, env_cls.measure.behaviour)


def run_cid(config: CidConfig) -> tuple[DiagramReport, list[Path]]:
    from ..config import config_to_dict
    from ..runs import start_run
    from .train import finish_run

    report = explain(config.env, config.agent)
    run = start_run(config.out, "sandbox cid", config_to_dict(config))
    stem = Path(run.path) / f"cid_{report.env}__{report.objective}"
    paths = draw_cid(report.cid, [stem.with_suffix(".png"), stem.with_suffix(".svg")],
                     highlight=report.measured_node)
    figures = [str(p.relative_to(run.path)) for p in paths]
    finish_run(run, {"sandbox": {"cid": {report.env: {report.agent: report.to_json()}},
                                 "figures": figures}})
    return report, paths
