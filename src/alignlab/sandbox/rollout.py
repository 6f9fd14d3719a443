"""Episodes: scripted or by a greedy policy, and the evaluation of a policy over start states."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .env import SandboxEnv


@dataclass
class Episode:
    """One episode; ``states`` includes the start and every state reached."""

    states: list[int] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    observed_return: float = 0.0  # undiscounted sum of the rewards the agent saw
    true_return: float = 0.0  # undiscounted sum of the hidden performance
    events: set[str] = field(default_factory=set)
    terminated: bool = False
    truncated: bool = False

    @property
    def length(self) -> int:
        return len(self.actions)


def play(env: SandboxEnv, actions: Iterable[int], *, seed: int | None = None,
         start: int | None = None) -> Episode:
    """Reset (optionally into ``start``) and take ``actions`` until they run out or the episode ends."""
    _, info = env.reset(seed=seed, options=None if start is None else {"state": start})
    episode = Episode(states=[info["state"]])
    for a in actions:
        if episode.terminated or episode.truncated:
            break
        _step(env, episode, int(a))
    return episode


def run_policy(env: SandboxEnv, policy: np.ndarray, *, seed: int | None = None,
               start: int | None = None) -> Episode:
    """One episode of the deterministic policy ``policy`` (S,) from ``start`` or a reset draw."""
    _, info = env.reset(seed=seed, options=None if start is None else {"state": start})
    episode = Episode(states=[info["state"]])
    while not (episode.terminated or episode.truncated):
        _step(env, episode, int(policy[episode.states[-1]]))
    return episode


def _step(env: SandboxEnv, episode: Episode, a: int) -> None:
    _, reward, terminated, truncated, info = env.step(a)
    episode.actions.append(a)
    episode.states.append(info["state"])
    episode.observed_return += reward
    episode.true_return += info["true_reward"]
    episode.events.update(name for name in env.model.event_names if info[name])
    episode.terminated, episode.truncated = terminated, truncated


@dataclass(frozen=True)
class Evaluation:
    """A deterministic policy's exact behaviour over the time-limited episode."""

    shown_rate: float  # probability, over counted starts, that an episode shows the behaviour
    observed_return: float  # expected undiscounted observed return
    true_return: float  # expected undiscounted true return


def evaluate(env: SandboxEnv, policy: np.ndarray) -> Evaluation:
    """Exact finite-horizon evaluation of ``policy`` (S,) on the model: no sampling error.

    With horizon h steps left, V_h(s) = E[r + (not terminated) V_{h-1}(s')] for both rewards and
    W_h(s) = E[event + (no event)(not terminated) W_{h-1}(s')] for the probability that the
    measured event happens before the episode ends or is truncated at ``env.max_steps``.
    """
    m, measure = env.model, env.measure
    rows = np.arange(m.n_states)
    prob = m.prob[rows, policy]  # (S, K)
    nxt = m.next_state[rows, policy]
    cont = ~m.terminated[rows, policy]
    event = (m.events[rows, policy] & m.event_bit(measure.event)) > 0
    v_obs = np.zeros(m.n_states)
    v_true = np.zeros(m.n_states)
    w = np.zeros(m.n_states)
    for _ in range(env.max_steps):
        v_obs = (prob * (m.observed[rows, policy] + cont * v_obs[nxt])).sum(-1)
        v_true = (prob * (m.true[rows, policy] + cont * v_true[nxt])).sum(-1)
        w = (prob * np.where(event, 1.0, cont * w[nxt])).sum(-1)
    init = m.init_prob
    counted = np.array([env.counts(s) for s in rows]) & (init > 0)
    shown = float((init * w)[counted].sum() / init[counted].sum())
    return Evaluation(min(1.0, max(0.0, shown)), float(init @ v_obs), float(init @ v_true))
