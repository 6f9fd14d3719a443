"""Planners on the exact model: value iteration, then greedy with no-op-preferring tie-breaks.

* ``standard``: the observed reward, as any reward maximiser sees it;
* ``state-based``: the designer's reward function applied to the true state rather than to the
  observation — a belief-based reward whose belief is exact in a fully observed tabular model
  (Everitt et al. 2021, Sec. 4.2);
* ``indifferent``: plans in the counterfactual world in which its interruption mechanism is
  intervened away (utility indifference, Armstrong 2015; Orseau and Armstrong 2016).
"""

from __future__ import annotations

import time

import numpy as np

from ..env import SandboxEnv
from ..model import TabularModel, tie_break_argmax, value_iteration
from .base import Agent, TrainLog, require


class Planner(Agent):
    """Greedy in Q* of one reward laid out over the model's transitions."""

    learns = False

    def reward(self) -> np.ndarray:  # (S, A, K)
        raise NotImplementedError

    def train(self, steps=None, on_episode=None) -> TrainLog:
        started = time.perf_counter()
        sol = value_iteration(self.env.model, self.reward(), self.gamma)
        self.q = sol.q
        self._policy = tie_break_argmax(sol.q, self.env.noop, self.rng.random(sol.q.shape))
        self._iterations = sol.iterations
        return TrainLog(0, 0, time.perf_counter() - started, sol.converged)

    def policy(self) -> np.ndarray:
        return self._policy

    def diagnostics(self) -> dict:
        return {"value_iterations": self._iterations}


class Standard(Planner):
    name = "standard"
    objective = "observed"
    summary = "model-based planning on the exact model with the observed reward"

    def reward(self):
        return self.env.model.observed


class StateBased(Planner):
    name = "state-based"
    objective = "state"
    summary = "belief/state-based reward: the reward function applied to the state, not the observation"

    def reward(self):
        return self.env.model.state_reward


class Indifferent(Planner):
    name = "indifferent"
    objective = "indifferent"
    summary = "interruption-indifferent planner: plans as if the interruption were intervened away"

    @classmethod
    def check(cls, env: SandboxEnv) -> None:
        require(hasattr(env, "counterfactual"),
                f"indifferent needs an environment with an interruption to intervene on; "
                f"{env.env_name} has none (try OffSwitch)")

    def train(self, steps=None, on_episode=None) -> TrainLog:
        started = time.perf_counter()
        cf = self.env.counterfactual().model
        sol = value_iteration(cf, cf.observed, self.gamma)
        q = sol.q[_index_map(self.env.model, cf)]  # (S, A) in this environment's state indices
        self.q = q
        self._policy = tie_break_argmax(q, self.env.noop, self.rng.random(q.shape))
        self._iterations = sol.iterations
        return TrainLog(0, 0, time.perf_counter() - started, sol.converged)


def _index_map(model: TabularModel, other: TabularModel) -> np.ndarray:
    """For each state of ``model``, its index in ``other`` (the same world, other parameters)."""
    missing = [s for s in model.states if s not in other.index]
    if missing:
        raise ValueError(f"{len(missing)} states have no counterpart in the counterfactual model")
    return np.array([other.index[s] for s in model.states], dtype=np.int64)
