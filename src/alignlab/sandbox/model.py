"""Exact tabular models of the sandbox worlds, and the value iteration that reads them.

Each environment writes its dynamics once, as a :class:`World` (``transition(state, action)``
returns every outcome with its probability). :func:`compile_world` enumerates the reachable
states from the initial distribution and turns that into a :class:`TabularModel`: arrays over
(state, action, outcome) holding the next state, its probability, the observed reward, the true
(hidden) reward, the designer's reward function applied to the true state, termination and
event bits. The Gymnasium ``step`` is a lookup into the same tables, so the model the planners
solve *is* the environment, not a description of it.

Reward process. Following Everitt et al. 2021 ("Reward tampering problems and solutions in
reinforcement learning: a causal influence diagram perspective"), the reward function is
parametrised by a state component Θ (switch settings, a reward register, ...). ``rf_index[s]``
is Θ in state s and ``rf_reward[θ, s']`` is R(s'; θ), the reward the function with parameter θ
pays on arriving in s'; with θ = Θ(s') it equals the observed reward. Current-RF agents
evaluate future states with the θ they hold now.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

State = Hashable


@dataclass(frozen=True)
class Outcome:
    """One possible result of taking an action in a state."""

    prob: float
    state: State  # next state
    observed: float  # the reward signal the agent receives
    true: float  # hidden performance, kept apart as in ai-safety-gridworlds' add_hidden_reward
    state_reward: float  # the designer's reward function applied to the true state
    terminated: bool = False
    events: frozenset[str] = frozenset()


class World(ABC):
    """The dynamics of one environment: states are hashable tuples, actions are ints."""

    actions: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    rf_names: tuple[str, ...] = ("fixed",)  # names of the reward-function settings Θ
    chars: str = ""  # every board character, its index is its observation code

    @abstractmethod
    def initial(self) -> list[tuple[float, State]]:
        """The initial-state distribution as (probability, state) pairs."""

    @abstractmethod
    def transition(self, state: State, action: int) -> list[Outcome]:
        """Every outcome of ``action`` in ``state``; probabilities sum to one."""

    @abstractmethod
    def board(self, state: State, observed: bool) -> tuple[str, ...]:
        """The board as rows of characters: what the agent observes, or the truth."""

    def rf_of(self, state: State) -> int:
        """Θ, the reward-function setting in ``state``."""
        return 0

    def rf_reward(self, state: State, theta: int) -> float | None:
        """R(state; θ): reward for arriving in ``state`` under setting θ; None if not defined."""
        return None

    def reward_state(self, state: State) -> dict:
        """The reward-process variables of ``state`` by name, for people and for ``info``."""
        return {"rf": self.rf_names[self.rf_of(state)]}


@dataclass(frozen=True)
class TabularModel:
    """Arrays over (state S, action A, outcome K); padding outcomes have probability 0."""

    states: tuple  # index -> state
    index: dict  # state -> index
    next_state: np.ndarray  # (S, A, K) int64
    prob: np.ndarray  # (S, A, K) float64
    observed: np.ndarray  # (S, A, K)
    true: np.ndarray  # (S, A, K)
    state_reward: np.ndarray  # (S, A, K)
    terminated: np.ndarray  # (S, A, K) bool
    events: np.ndarray  # (S, A, K) int64 bit set, bit i = event_names[i]
    event_names: tuple[str, ...]
    init_prob: np.ndarray  # (S,)
    rf_index: np.ndarray  # (S,) int64
    rf_reward: np.ndarray | None  # (n_rf, S): R(s'; θ), None where the world defines none
    rf_names: tuple[str, ...]

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def n_actions(self) -> int:
        return self.next_state.shape[1]

    def event_bit(self, name: str) -> int:
        return 1 << self.event_names.index(name)

    def rf_transition_reward(self) -> np.ndarray:
        """R(s'; θ) laid out over transitions: (n_rf, S, A, K)."""
        if self.rf_reward is None:
            raise ValueError("this world defines no reward-function family R(s'; θ)")
        return self.rf_reward[:, self.next_state]


def compile_world(world: World, max_states: int = 200_000) -> TabularModel:
    """Enumerate the states reachable from ``world.initial()`` and tabulate every transition."""
    init = [(p, s) for p, s in world.initial() if p > 0]
    _check_distribution([p for p, _ in init], "initial states")
    states, index = _reachable(world, [s for _, s in init], max_states)
    table = [[world.transition(s, a) for a in range(len(world.actions))] for s in states]
    n_s, n_a = len(states), len(world.actions)
    k = max(len(outs) for row in table for outs in row)
    arrays = _empty_arrays(n_s, n_a, k)
    bits = {name: 1 << i for i, name in enumerate(world.events)}
    for i, row in enumerate(table):
        for a, outs in enumerate(row):
            _check_distribution([o.prob for o in outs], f"outcomes of action {a} in {states[i]!r}")
            for j, o in enumerate(outs):
                _fill(arrays, (i, a, j), o, index[o.state], bits)
            arrays["next_state"][i, a, len(outs):] = i  # padding: probability 0, points at itself
    init_prob = np.zeros(n_s)
    for p, s in init:
        init_prob[index[s]] += p
    return TabularModel(
        states=tuple(states), index=index, **arrays, event_names=tuple(world.events),
        init_prob=init_prob, rf_index=np.array([world.rf_of(s) for s in states], dtype=np.int64),
        rf_reward=_rf_table(world, states), rf_names=tuple(world.rf_names),
    )


def _reachable(world: World, starts: Sequence[State], max_states: int) -> tuple[list, dict]:
    states: list = []
    index: dict = {}
    frontier = list(starts)
    for s in frontier:
        if s not in index:
            index[s] = len(states)
            states.append(s)
    head = 0
    while head < len(states):
        s = states[head]
        head += 1
        for a in range(len(world.actions)):
            for o in world.transition(s, a):
                if o.prob > 0 and o.state not in index:
                    index[o.state] = len(states)
                    states.append(o.state)
        if len(states) > max_states:
            raise ValueError(f"world has more than {max_states} reachable states; shrink the layout")
    return states, index


def _empty_arrays(n_s: int, n_a: int, k: int) -> dict:
    shape = (n_s, n_a, k)
    return {
        "next_state": np.zeros(shape, dtype=np.int64),
        "prob": np.zeros(shape),
        "observed": np.zeros(shape),
        "true": np.zeros(shape),
        "state_reward": np.zeros(shape),
        "terminated": np.ones(shape, dtype=bool),
        "events": np.zeros(shape, dtype=np.int64),
    }


def _fill(arrays: dict, at: tuple, o: Outcome, next_index: int, bits: dict) -> None:
    arrays["next_state"][at] = next_index
    arrays["prob"][at] = o.prob
    arrays["observed"][at] = o.observed
    arrays["true"][at] = o.true
    arrays["state_reward"][at] = o.state_reward
    arrays["terminated"][at] = o.terminated
    arrays["events"][at] = sum(bits[e] for e in o.events)


def _rf_table(world: World, states: list) -> np.ndarray | None:
    if world.rf_reward(states[0], 0) is None:
        return None
    return np.array([[world.rf_reward(s, th) for s in states] for th in range(len(world.rf_names))])


def _check_distribution(probs: list[float], what: str) -> None:
    if not probs or any(p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-9:
        raise ValueError(f"probabilities of {what} must be non-negative and sum to 1, got {probs}")


# --- solvers over the model ---------------------------------------------------------------


@dataclass(frozen=True)
class Solution:
    """Action values of one objective on the exact model."""

    q: np.ndarray  # (S, A), or (n_rf, S, A) for reward-function-conditioned values
    iterations: int
    converged: bool


def value_iteration(model: TabularModel, reward: np.ndarray, gamma: float,
                    tol: float = 1e-10, max_iter: int = 100_000) -> Solution:
    """Q* for a reward laid out over transitions (S, A, K) — the standard Bellman optimality fix point."""
    cont = model.prob * gamma * (~model.terminated)  # (S, A, K)
    expected = (model.prob * reward).sum(-1)  # (S, A)
    v = np.zeros(model.n_states)
    for it in range(1, max_iter + 1):
        q = expected + (cont * v[model.next_state]).sum(-1)
        v_new = q.max(axis=1)
        if np.max(np.abs(v_new - v)) < tol:
            return Solution(q, it, True)
        v = v_new
    return Solution(q, max_iter, False)


def tie_break_argmax(q: np.ndarray, prefer: int | None, noise: np.ndarray | None,
                     tol: float = 1e-9) -> np.ndarray:
    """Greedy action per row of ``q`` (S, A): ``prefer`` among the maximisers, else the maximiser
    with the largest ``noise`` (a fixed seeded draw, (S, A)), else the first.

    An agent that is indifferent between actions (say, a current-RF agent next to a switch it has
    no reason to touch) is given its minimal behaviour — the no-op — rather than whatever the
    first column happens to be, so that "no incentive" is not scored as tampering by accident.
    """
    best = q.max(axis=1, keepdims=True)
    ties = q >= best - tol * (1.0 + np.abs(best))  # (S, A)
    choice = ties.argmax(axis=1) if noise is None else np.where(ties, noise, -1.0).argmax(axis=1)
    if prefer is not None:
        choice = np.where(ties[:, prefer], prefer, choice)
    return choice.astype(np.int64)
