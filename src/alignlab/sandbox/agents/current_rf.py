"""Current-RF optimisation (Everitt et al. 2021, Sec. 4.1, Algs. 2-3), model-based and model-free.

A current-RF agent holding reward parameter θ_t at time t scores every future state with
R(·; θ_t), the reward function it holds *now*, rather than with the reward the signal will
report then. Two ways to treat the fact that future selves will hold their own Θ_k:

* TI-unaware — "ignore" — assumes its future self also optimises θ_t (Q_θ is the ordinary
  optimal value of R(·; θ)); it has no incentive to change Θ, nor to keep it;
* TI-considering — "plan around" — knows its future self will optimise whatever Θ_k it then
  holds, and evaluates that future behaviour with θ_t; it has an incentive to keep Θ as it is.

Model-based versions solve these on the exact model. The model-free versions learn a
reward-function-conditioned table Q[θ, s, a] from experience, relabelling every transition with
R(s'; θ) for *all* θ (the reward family is known; the dynamics are not), bootstrapping with the
current θ's own greedy action (ignore) or with the action the future self holding Θ(s') would
take (plan around).
"""

from __future__ import annotations

import time

import numpy as np

from ..env import SandboxEnv, TrainSpec
from ..model import TabularModel, tie_break_argmax, value_iteration
from .base import Agent, Learner, TrainLog, require


def _check_rf(cls, env: SandboxEnv) -> None:
    require(env.model.rf_reward is not None,
            f"{cls.name} needs a reward-function family R(s'; θ); {env.env_name} defines none "
            "(try RocksDiamonds, RocksDiamondsUser, Wirehead or TomatoWatering)")


def held_values(q: np.ndarray, model: TabularModel) -> np.ndarray:
    """Q[Θ(s), s, :] for every s: the values under the reward function each state holds. (S, A)"""
    return q[model.rf_index, np.arange(model.n_states)]


class CurrentRFIgnore(Agent):
    name = "current-rf-ignore"
    objective = "current-rf-ignore"
    learns = False
    summary = "current-RF optimisation, TI-unaware (ignores future reward-function changes), model-based"

    @classmethod
    def check(cls, env):
        _check_rf(cls, env)

    def train(self, steps=None, on_episode=None) -> TrainLog:
        started = time.perf_counter()
        model = self.env.model
        rewards = model.rf_transition_reward()  # (n_rf, S, A, K)
        sols = [value_iteration(model, rewards[th], self.gamma) for th in range(len(rewards))]
        self.q = np.stack([s.q for s in sols])  # (n_rf, S, A)
        held = held_values(self.q, model)
        self._policy = tie_break_argmax(held, self.env.noop, self.rng.random(held.shape))
        self._iterations = max(s.iterations for s in sols)
        return TrainLog(0, 0, time.perf_counter() - started, all(s.converged for s in sols))

    def policy(self):
        return self._policy

    def diagnostics(self):
        return {"value_iterations": self._iterations}


class CurrentRFPlan(Agent):
    name = "current-rf-plan"
    objective = "current-rf-plan"
    learns = False
    summary = "current-RF optimisation, TI-considering (plans around future reward-function changes), model-based"

    @classmethod
    def check(cls, env):
        _check_rf(cls, env)

    def train(self, steps=None, on_episode=None) -> TrainLog:
        started = time.perf_counter()
        result = ti_considering_values(self.env.model, self.gamma, self.env.noop, self.rng)
        self.q, self._policy, self._iterations, converged = result
        return TrainLog(0, 0, time.perf_counter() - started, converged)

    def policy(self):
        return self._policy

    def diagnostics(self):
        return {"value_iterations": self._iterations}


def ti_considering_values(model: TabularModel, gamma: float, prefer: int | None,
                          rng: np.random.Generator, tol: float = 1e-10, max_iter: int = 100_000):
    """Backward induction for the TI-considering agent (Everitt et al. 2021, Alg. 3).

    Q_θ(s, a) = E[R(s'; θ) + γ Q_θ(s', π(s'))] with π(s') = argmax Q_{Θ(s')}(s', ·): every value
    is scored with θ, but the future is the policy of the future selves, each optimising the Θ
    it will hold. Iterated from Q = 0 (a finite-horizon backward induction whose horizon grows
    until the policy and values stop changing). Returns (Q (n_rf, S, A), π (S,), iterations,
    converged).
    """
    rewards = model.rf_transition_reward()  # (n_rf, S, A, K)
    expected = (model.prob * rewards).sum(-1)  # (n_rf, S, A)
    cont = model.prob * gamma * (~model.terminated)  # (S, A, K)
    rows = np.arange(model.n_states)
    noise = rng.random((model.n_states, model.n_actions))  # fixed, so ties break the same way
    v = np.zeros((len(rewards), model.n_states))
    policy = np.full(model.n_states, -1)
    for it in range(1, max_iter + 1):
        q = expected + (cont * v[:, model.next_state]).sum(-1)
        new_policy = tie_break_argmax(q[model.rf_index, rows], prefer, noise)
        v_new = q[:, rows, new_policy]  # (n_rf, S): each θ's value of what the future selves do
        done = np.max(np.abs(v_new - v)) < tol and np.array_equal(new_policy, policy)
        v, policy = v_new, new_policy
        if done:
            return q, policy, it, True
    return q, policy, max_iter, False


class _RFConditioned(Learner):
    """Q[θ, s, a] learned with relabelling over every reward-function setting θ."""

    @classmethod
    def check(cls, env):
        _check_rf(cls, env)

    def __init__(self, env: SandboxEnv, seed: int, spec: TrainSpec | None = None):
        super().__init__(env, seed, spec)
        model = env.model
        self.rf = model.rf_index
        self.rf_reward = model.rf_reward  # (n_rf, S): R(s'; θ)
        self.q = self._initial_q((len(model.rf_names), model.n_states, self.n_actions))
        # Optimism drives exploration only through the values of the setting a state holds.
        # The others are learned purely by relabelling, from actions chosen for another reward
        # function; left optimistic, every action rarely tried there would look good to every
        # other setting. They start at 0, the value of an episode that pays nothing.
        not_held = np.arange(len(model.rf_names))[:, None] != self.rf[None, :]  # (n_rf, S)
        self.q[not_held] -= self.spec.optimistic
        self.n_rf = len(model.rf_names)
        self.practice: int | None = None

    def begin_episode(self) -> None:
        """Half the training episodes practise a reward-function setting drawn at random.

        The values of a setting are only as good as the coverage of the states and actions its
        greedy policy would visit; an agent that only ever behaves for the setting it holds
        learns the others from actions chosen for something else. Practising each setting now
        and then is off-policy exploration (Q-learning's targets are unchanged) that covers them.
        """
        self.practice = self.py_rng.randrange(self.n_rf) if self.py_rng.random() < 0.5 else None

    def greedy(self, s: int) -> int:
        theta = self.rf[s] if self.practice is None else self.practice
        return int(self.q[theta, s].argmax())

    def policy(self) -> np.ndarray:
        return held_values(self.q, self.env.model).argmax(axis=1)

    def _bootstrap(self, s2: int) -> np.ndarray:  # (n_rf,)
        raise NotImplementedError

    def update(self, s, a, r, s2, terminated, a2, info):
        target = self.rf_reward[:, s2]
        if not terminated:
            target = target + self.gamma * self._bootstrap(s2)
        self.q[:, s, a] += self.step_size(s, a) * (target - self.q[:, s, a])


class CurrentRFIgnoreMF(_RFConditioned):
    name = "current-rf-ignore-mf"
    objective = "current-rf-ignore"
    summary = "current-RF, TI-unaware, model-free: RF-conditioned Q-learning with relabelling"

    def _bootstrap(self, s2):
        return self.q[:, s2].max(axis=1)  # each θ assumes a future self optimising θ


class CurrentRFPlanMF(_RFConditioned):
    name = "current-rf-plan-mf"
    objective = "current-rf-plan"
    summary = "current-RF, TI-considering, model-free: RF-conditioned Q with the future self's action"

    def _bootstrap(self, s2):
        future = self.q[self.rf[s2], s2].argmax()  # what the self holding Θ(s') will do
        return self.q[:, s2, future]
