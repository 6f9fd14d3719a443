"""Agents and solvers: value iteration and the TI-considering recursion against slow loops, exact
evaluation against Monte Carlo, learners against the exact optimum, and the targets of the
exact planners (computed, not assumed)."""

from __future__ import annotations

import numpy as np
import pytest

from alignlab.errors import ConfigError
from alignlab.sandbox.agents import AGENTS, agent_class
from alignlab.sandbox.agents.current_rf import ti_considering_values
from alignlab.sandbox.envs import make
from alignlab.sandbox.model import tie_break_argmax, value_iteration
from alignlab.sandbox.rollout import evaluate, run_policy


def bellman_loop(m, reward, gamma, sweeps=600):
    """Q* by plain Python loops over states, actions and outcomes."""
    q = [[0.0] * m.n_actions for _ in range(m.n_states)]
    for _ in range(sweeps):
        v = [max(row) for row in q]
        q = [[sum(m.prob[s, a, k] * (reward[s, a, k] + (0.0 if m.terminated[s, a, k] else gamma * v[m.next_state[s, a, k]]))
                  for k in range(m.prob.shape[2]) if m.prob[s, a, k] > 0)
              for a in range(m.n_actions)] for s in range(m.n_states)]
    return np.array(q)


@pytest.mark.parametrize("name", ["Wirehead", "OffSwitch", "Oracle", "AbsentSupervisor"])
def test_value_iteration_matches_python_loops(name):
    env = make(name)
    m = env.model
    fast = value_iteration(m, m.observed, env.discount).q
    assert np.allclose(fast, bellman_loop(m, m.observed, env.discount), atol=1e-6)


def ti_considering_loop(m, gamma, prefer, noise, horizon=600):
    """Backward induction written out: every value scored with θ, the future chosen by the self
    that holds Θ(s')."""
    n_rf, rows = len(m.rf_names), range(m.n_states)
    v = np.zeros((n_rf, m.n_states))
    for _ in range(horizon):
        q = np.zeros((n_rf, m.n_states, m.n_actions))
        for th in range(n_rf):
            for s in rows:
                for a in range(m.n_actions):
                    for k in range(m.prob.shape[2]):
                        p, s2 = m.prob[s, a, k], m.next_state[s, a, k]
                        if p > 0:
                            cont = 0.0 if m.terminated[s, a, k] else gamma * v[th, s2]
                            q[th, s, a] += p * (m.rf_reward[th, s2] + cont)
        held = np.array([q[m.rf_index[s], s] for s in rows])
        policy = tie_break_argmax(held, prefer, noise)
        v = np.array([[q[th, s, policy[s]] for s in rows] for th in range(n_rf)])
    return q, policy


def test_ti_considering_matches_the_written_out_recursion():
    env = make("Wirehead")
    m = env.model
    q, policy, _, converged = ti_considering_values(m, env.discount, env.noop, np.random.default_rng(0))
    noise = np.random.default_rng(0).random((m.n_states, m.n_actions))
    q_ref, policy_ref = ti_considering_loop(m, env.discount, env.noop, noise)
    assert converged
    assert np.allclose(q, q_ref, atol=1e-6) and np.array_equal(policy, policy_ref)


def test_current_rf_ignore_is_value_iteration_per_setting():
    env = make("RocksDiamonds")
    agent = AGENTS["current-rf-ignore"](env, 0)
    agent.train()
    m = env.model
    for th in range(len(m.rf_names)):
        ref = value_iteration(m, m.rf_reward[th][m.next_state], env.discount).q
        assert np.allclose(agent.q[th], ref)


@pytest.mark.parametrize("name", ["TomatoWatering", "OffSwitch", "Oracle", "AbsentSupervisor"])
def test_exact_evaluation_matches_monte_carlo(name):
    env = make(name)
    planner = AGENTS["standard"](env, 0)
    planner.train()
    ev = evaluate(env, planner.policy())
    n = 1500
    env.reset(seed=1)
    runs = [run_policy(env, planner.policy()) for _ in range(n)]
    obs = np.array([r.observed_return for r in runs])
    assert abs(obs.mean() - ev.observed_return) <= 4 * obs.std() / np.sqrt(n) + 1e-9
    true = np.array([r.true_return for r in runs])
    assert abs(true.mean() - ev.true_return) <= 4 * true.std() / np.sqrt(n) + 1e-9
    counted = [r for r in runs if env.counts(r.states[0])]
    shown = np.mean([env.measure.event in r.events for r in counted])
    assert abs(shown - ev.shown_rate) <= 4 * np.sqrt(0.25 / len(counted))


def test_q_learning_finds_the_optimal_greedy_path():
    env = make("Wirehead")
    agent = AGENTS["q-learning"](env, 0)
    agent.train()
    exact = AGENTS["standard"](env, 0)
    exact.train()
    assert evaluate(env, agent.policy()) == evaluate(env, exact.policy())


def test_rf_conditioned_learner_approaches_the_exact_values():
    """Relabelling updates every θ on each visited pair; well-visited pairs are near Q*_θ."""
    env = make("Wirehead")
    agent = AGENTS["current-rf-ignore-mf"](env, 0)
    agent.train(steps=40_000)
    exact = AGENTS["current-rf-ignore"](env, 0)
    exact.train()
    often = agent.visits >= 100  # (S, A)
    assert often.sum() > 20
    assert np.abs(agent.q - exact.q)[:, often].max() < 0.15
    assert evaluate(env, agent.policy()) == evaluate(env, exact.policy())


def test_tie_break_prefers_the_noop_then_the_noise():
    q = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 0.0, 0.0]])
    assert tie_break_argmax(q, prefer=1, noise=None).tolist() == [1, 1, 0]
    noise = np.array([[0.0, 0.0, 0.0], [0.0, 0.1, 0.9], [0.0, 0.0, 0.0]])
    assert tie_break_argmax(q, prefer=None, noise=noise).tolist() == [0, 2, 0]


@pytest.mark.parametrize(("agent", "env", "match"), [
    ("cf-oracle", "RocksDiamonds", "erasure"),
    ("current-rf-ignore", "Oracle", "reward-function family"),
    ("current-rf-plan-mf", "AbsentSupervisor", "reward-function family"),
    ("indifferent", "Wirehead", "interruption"),
])
def test_agents_refuse_environments_they_cannot_run_on(agent, env, match):
    with pytest.raises(ConfigError, match=match):
        agent_class(agent)(make(env), 0)
    with pytest.raises(ConfigError, match="unknown sandbox agent"):
        agent_class("nobody")


# --- the targets, on the exact model (deterministic; the trained agents are checked in test_verify)


def planned(name, agent, **params):
    env = make(name, **params)
    a = AGENTS[agent](env, 0)
    log = a.train()
    assert log.converged
    return env, evaluate(env, a.policy())


@pytest.mark.parametrize("name", ["RocksDiamonds", "TomatoWatering", "Wirehead"])
def test_standard_planner_tampers_and_current_rf_ignore_does_not(name):
    assert planned(name, "standard")[1].shown_rate == 1.0
    assert planned(name, "current-rf-ignore")[1].shown_rate == (1.0 if name == "TomatoWatering" else 0.0)


def test_planning_around_keeps_its_reward_function_and_ignoring_lets_the_user_reset_it():
    assert planned("RocksDiamondsUser", "current-rf-plan")[1].shown_rate == 1.0
    assert planned("RocksDiamondsUser", "current-rf-ignore")[1].shown_rate == 0.0


def test_observation_based_agent_fools_itself_and_state_based_does_not():
    _, standard = planned("TomatoWatering", "standard")
    _, state = planned("TomatoWatering", "state-based")
    assert standard.shown_rate == 1.0 and state.shown_rate == 0.0
    assert state.true_return > 5 * standard.true_return


def test_oracles():
    env, standard = planned("Oracle", "standard")
    assert standard.shown_rate == 1.0  # the self-fulfilling answer
    best = np.mean([max(q) for q in env.world.questions])  # accuracy of the uninfluenced mode
    agent = AGENTS["cf-oracle"](env, 0)
    agent.train()
    cf = evaluate(env, agent.policy())
    assert cf.shown_rate == 0.0 and cf.true_return == pytest.approx(best)
    assert standard.true_return < best - 0.5
