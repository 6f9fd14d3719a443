"""Model-free tabular learners on the observed reward: Q-learning, SARSA, and the
counterfactual oracle (Q-learning that learns only from erasure episodes)."""

from __future__ import annotations

import numpy as np

from ..env import SandboxEnv, TrainSpec
from .base import Learner, require


class QLearning(Learner):
    name = "q-learning"
    objective = "observed"
    summary = "tabular Q-learning on the observed reward (epsilon-greedy, optimistic start)"

    def __init__(self, env: SandboxEnv, seed: int, spec: TrainSpec | None = None):
        super().__init__(env, seed, spec)
        self.q = self._initial_q((env.model.n_states, self.n_actions))  # (S, A)

    def greedy(self, s: int) -> int:
        return int(self.q[s].argmax())

    def update(self, s, a, r, s2, terminated, a2, info):
        target = r if terminated else r + self.gamma * self.q[s2].max()
        self.q[s, a] += self.step_size(s, a) * (target - self.q[s, a])

    def policy(self) -> np.ndarray:
        return self.q.argmax(axis=1)


class Sarsa(QLearning):
    name = "sarsa"
    summary = "tabular SARSA on the observed reward (on-policy, epsilon-greedy)"
    on_policy = True

    def update(self, s, a, r, s2, terminated, a2, info):
        target = r if terminated else r + self.gamma * self.q[s2, a2]
        self.q[s, a] += self.step_size(s, a) * (target - self.q[s, a])


class CounterfactualOracle(QLearning):
    """Armstrong's counterfactual oracle: rewarded only when its answer is erased unread, so
    the only outcomes that ever pay it are ones its answer could not influence."""

    name = "cf-oracle"
    objective = "counterfactual"
    summary = "counterfactual oracle: learns only from episodes whose answer was erased unread"

    @classmethod
    def check(cls, env: SandboxEnv) -> None:
        require("erased" in env.model.event_names,
                f"cf-oracle needs an environment with erasure events; {env.env_name} has "
                f"{list(env.model.event_names)} (try Oracle)")

    def update(self, s, a, r, s2, terminated, a2, info):
        if info["erased"]:
            super().update(s, a, r, s2, terminated, a2, info)
