"""The sandbox agents, by name."""

from __future__ import annotations

from ...errors import ConfigError
from .base import Agent, Learner, TrainLog
from .current_rf import CurrentRFIgnore, CurrentRFIgnoreMF, CurrentRFPlan, CurrentRFPlanMF
from .planners import Indifferent, Standard, StateBased
from .tabular import CounterfactualOracle, QLearning, Sarsa

AGENTS: dict[str, type[Agent]] = {}


def register(cls: type[Agent]) -> type[Agent]:
    if cls.name in AGENTS:
        raise ValueError(f"agent {cls.name!r} is registered twice")
    AGENTS[cls.name] = cls
    return cls


for _cls in (QLearning, Sarsa, Standard, StateBased, CurrentRFIgnore, CurrentRFPlan,
             CurrentRFIgnoreMF, CurrentRFPlanMF, CounterfactualOracle, Indifferent):
    register(_cls)


def agent_class(name: str) -> type[Agent]:
    if name not in AGENTS:
        raise ConfigError(f"unknown sandbox agent {name!r}; choose one of {sorted(AGENTS)}")
    return AGENTS[name]


__all__ = ["AGENTS", "Agent", "Learner", "TrainLog", "agent_class", "register"]
