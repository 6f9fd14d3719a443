"""What every sandbox agent is: a greedy policy over the model's states, trained or planned.

Agents act on ``info["state"]``, the index of the Markov state in the environment's exact
model (tabular, fully observed); the reward they optimise is what distinguishes them, and it is
named by ``objective``, the key of the causal influence diagram the environment declares for
them. Learning agents interact with the environment through ``reset``/``step`` only; planners
read the exact model.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ...errors import ConfigError
from ..env import SandboxEnv, TrainSpec

# (environment steps so far, behaviour shown in the finished episode, episode counts)
EpisodeHook = Callable[[int, bool, bool], None]


@dataclass
class TrainLog:
    steps: int  # environment steps taken (0 for planners)
    episodes: int
    seconds: float
    converged: bool = True  # planners: the fixed point was reached
    curve: list[tuple[int, bool]] = field(default_factory=list)  # (step, shown) per counted episode


class Agent(ABC):
    """A tabular agent for one environment and seed."""

    name: ClassVar[str]
    objective: ClassVar[str]  # which diagram: observed, state, current-rf-ignore, ...
    learns: ClassVar[bool]  # from experience (True) or by planning on the exact model
    summary: ClassVar[str]

    def __init__(self, env: SandboxEnv, seed: int, spec: TrainSpec | None = None):
        self.check(env)
        self.env = env
        self.seed = int(seed)
        self.spec = spec or env.train_spec.for_agent(self.name)
        self.gamma = env.discount
        self.rng = np.random.default_rng(self.seed)

    @classmethod
    def check(cls, env: SandboxEnv) -> None:
        """Raise :class:`ConfigError` if this agent cannot run on ``env`` (all agents but a few can)."""
        return None

    @abstractmethod
    def train(self, steps: int | None = None, on_episode: EpisodeHook | None = None) -> TrainLog:
        """Learn (or plan); afterwards :meth:`policy` is the greedy policy."""

    @abstractmethod
    def policy(self) -> np.ndarray:
        """The greedy action in every state of ``env.model``: (S,) int64."""

    def diagnostics(self) -> dict:
        """Numbers that explain a surprising behaviour (coverage, optimism, convergence)."""
        return {}


class Learner(Agent):
    """Tabular value learning with an epsilon-greedy behaviour policy."""

    learns = True
    on_policy: ClassVar[bool] = False

    def __init__(self, env: SandboxEnv, seed: int, spec: TrainSpec | None = None):
        super().__init__(env, seed, spec)
        self.py_rng = random.Random(self.seed)
        self.n_actions = env.model.n_actions
        self.visits = np.zeros((env.model.n_states, self.n_actions), dtype=np.int64)
        self.alpha = self.spec.alpha

    def _initial_q(self, shape: tuple) -> np.ndarray:
        """Optimistic or zero values, plus a little seeded noise that breaks ties at random."""
        return self.spec.optimistic + 1e-6 * self.rng.random(shape)

    @abstractmethod
    def greedy(self, s: int) -> int: ...

    @abstractmethod
    def update(self, s: int, a: int, r: float, s2: int, terminated: bool, a2: int, info: dict) -> None: ...

    def begin_episode(self) -> None:
        """Called at every reset during training."""

    def behave(self, s: int) -> int:
        if self.py_rng.random() < self.spec.epsilon:
            return self.py_rng.randrange(self.n_actions)
        return self.greedy(s)

    def step_size(self, s: int, a: int) -> float:
        """The constant step size, or 1/n(s, a) (a sample average) when alpha is 0."""
        self.visits[s, a] += 1
        return self.alpha if self.alpha > 0 else 1.0 / self.visits[s, a]

    def train(self, steps: int | None = None, on_episode: EpisodeHook | None = None) -> TrainLog:
        steps = int(self.spec.steps if steps is None else steps)
        env, measure = self.env, self.env.measure
        started = time.perf_counter()
        log = TrainLog(steps, 0, 0.0)
        _, info = env.reset(seed=self.seed)
        s = start = info["state"]
        happened = False
        self.begin_episode()
        a = self.behave(s)
        for t in range(1, steps + 1):
            _, r, terminated, truncated, info = env.step(a)
            s2 = info["state"]
            happened = happened or info[measure.event]
            a2 = self.behave(s2) if self.on_policy and not terminated else 0
            self.update(s, a, r, s2, terminated, a2, info)
            if not self.on_policy:
                a2 = self.behave(s2)
            if terminated or truncated:
                self._episode_done(log, t, happened, env.counts(start), on_episode)
                _, info = env.reset()
                s = start = info["state"]
                happened = False
                self.begin_episode()
                a = self.behave(s)
            else:
                s, a = s2, a2
        log.seconds = time.perf_counter() - started
        return log

    @staticmethod
    def _episode_done(log: TrainLog, t: int, shown: bool, counts: bool, hook: EpisodeHook | None):
        log.episodes += 1
        if counts:
            log.curve.append((t, shown))
        if hook is not None:
            hook(t, shown, counts)

    def diagnostics(self) -> dict:
        model = self.env.model
        visited = self.visits.sum(axis=1) > 0
        policy = self.policy()
        on_path = _greedy_path_pairs(self.env, policy)
        return {
            "visited_state_fraction": float(visited.mean()),
            "visited_by_rf": {name: float(visited[model.rf_index == i].mean())
                              for i, name in enumerate(model.rf_names)
                              if (model.rf_index == i).any()},
            "greedy_pairs_never_updated": int(sum(self.visits[s, a] == 0 for s, a in on_path)),
            "epsilon": self.spec.epsilon,
            "optimistic_init": self.spec.optimistic,
            "steps": self.spec.steps,
        }


def _greedy_path_pairs(env: SandboxEnv, policy: np.ndarray, limit: int = 200) -> set[tuple[int, int]]:
    """(state, action) pairs the greedy policy can take from any start, following every outcome."""
    model = env.model
    frontier = [int(s) for s in np.flatnonzero(model.init_prob)]
    seen: set[int] = set(frontier)
    pairs = set()
    while frontier and len(pairs) < limit:
        s = frontier.pop()
        a = int(policy[s])
        pairs.add((s, a))
        live = (model.prob[s, a] > 0) & ~model.terminated[s, a]
        for s2 in model.next_state[s, a][live]:
            if int(s2) not in seen:
                seen.add(int(s2))
                frontier.append(int(s2))
    return pairs


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
