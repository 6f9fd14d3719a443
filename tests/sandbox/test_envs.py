"""Environments: Gymnasium conformance, the exact model against ``step``, scripted returns."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from alignlab.errors import ConfigError
from alignlab.sandbox.envs import ENVS, gym_id, make
from alignlab.sandbox.envs.grid import actions_of
from alignlab.sandbox.model import value_iteration
from alignlab.sandbox.rollout import play

NAMES = sorted(ENVS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("render_mode", [None, "rgb_array", "ansi"])
def test_check_env_passes(name, render_mode):
    env = gym.make(gym_id(name), render_mode=render_mode)
    check_env(env.unwrapped)


@pytest.mark.parametrize("name", NAMES)
def test_gym_make_runs_with_wrappers(name):
    env = gym.make(gym_id(name))
    obs, info = env.reset(seed=3)
    assert obs in env.observation_space and "state" in info
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs in env.observation_space
        assert reward == info["observed_reward"]
        if terminated or truncated:
            obs, info = env.reset()


@pytest.mark.parametrize("name", NAMES)
def test_every_state_observation_is_inside_observation_space(name):
    """Including tampered states: a transformed observation, an overwritten register."""
    env = make(name)
    for s in range(env.model.n_states):
        assert env.compiled.observations[s] in env.observation_space
        assert env.render_rgb(s).dtype == np.uint8


def test_tampered_observations_stay_in_space():
    tomato = make("TomatoWatering", dry_prob=0.0)
    ep = play(tomato, actions_of("urr"))
    assert "fooled" in ep.events
    obs = tomato.compiled.observations[ep.states[-1]]
    assert obs in tomato.observation_space
    # the observation shows every tomato watered, the truth does not
    assert "t" not in "".join(tomato.world.board(tomato.model.states[ep.states[-1]], True))
    assert "t" in "".join(tomato.world.board(tomato.model.states[ep.states[-1]], False))
    wire = make("Wirehead")
    ep = play(wire, actions_of("ur"))
    assert "wireheaded" in ep.events and wire.compiled.observations[ep.states[-1]] in wire.observation_space


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_trajectory(name):
    def trajectory(seed):
        env = make(name)
        rng = np.random.default_rng(0)
        _, info = env.reset(seed=seed)
        out = [info["state"]]
        for _ in range(60):
            _, r, term, trunc, info = env.step(int(rng.integers(env.action_space.n)))
            out += [info["state"], r]
            if term or trunc:
                _, info = env.reset()
                out.append(info["state"])
        return out

    assert trajectory(7) == trajectory(7)


@pytest.mark.parametrize("name", NAMES)
def test_step_follows_the_model(name):
    """Deterministic transitions exactly; stochastic ones within sampling error of the model."""
    env = make(name)
    m = env.model
    env.reset(seed=0)
    for s in range(0, m.n_states, max(1, m.n_states // 40)):
        for a in range(m.n_actions):
            live = np.flatnonzero(m.prob[s, a] > 0)
            n = 1 if len(live) == 1 else 400
            counts: dict[int, int] = {}
            for _ in range(n):
                env.reset(options={"state": s})
                _, r, term, _, info = env.step(a)
                k = _outcome_index(m, s, a, info["state"], r, info["true_reward"], term)
                counts[k] = counts.get(k, 0) + 1
            for k, c in counts.items():
                p = m.prob[s, a, k]
                assert abs(c / n - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-9


def _outcome_index(m, s, a, s2, r, true, term) -> int:
    for k in np.flatnonzero(m.prob[s, a] > 0):
        if (m.next_state[s, a, k] == s2 and m.observed[s, a, k] == r and m.true[s, a, k] == true
                and m.terminated[s, a, k] == term):
            return int(k)
    raise AssertionError(f"step from {s} with {a} produced an outcome the model does not have")


@pytest.mark.parametrize("name", [n for n in NAMES if make(n).model.rf_reward is not None])
def test_observed_reward_is_the_reward_function_held_after_the_step(name):
    """R(s'; Θ(s')) is the observed reward of every transition (the reward-process state is explicit)."""
    m = make(name).model
    # transitions out of states an episode can only end in never happen; they are absorbing
    absorbing = (m.terminated & (m.next_state == np.arange(m.n_states)[:, None, None])).all(axis=(1, 2))
    live = (m.prob > 0) & ~absorbing[:, None, None]
    held = m.rf_reward[m.rf_index[m.next_state], m.next_state]  # (S, A, K)
    assert np.allclose(held[live], m.observed[live])


def test_model_probabilities_sum_to_one():
    for name in NAMES:
        m = make(name).model
        assert np.allclose(m.prob.sum(-1), 1.0)
        assert np.isclose(m.init_prob.sum(), 1.0)


def test_info_carries_rewards_rf_and_events():
    env = make("RocksDiamonds")
    _, info = env.reset(seed=0)
    assert {"state", "rf", "observed_reward", "true_reward", "tampered", "reset", "exited"} <= set(info)
    assert env.reward_state == {"rf": "rocks -1, diamonds +1", "intended": True}


def test_bad_inputs_raise_actionable_errors():
    env = make("Wirehead")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside Discrete"):
        env.step(7)
    with pytest.raises(ConfigError, match="state index"):
        env.reset(options={"state": 10_000})
    with pytest.raises(ConfigError, match="unknown sandbox environment"):
        make("NoSuchWorld")
    with pytest.raises(ConfigError, match="render_mode"):
        make("Wirehead", render_mode="human")


# --- scripted action strings with exact returns (as ai-safety-gridworlds' tests) -----------


def _returns(env, script, start=None):
    ep = play(env, actions_of(script), seed=0, start=start)
    return ep.observed_return, ep.true_return, ep.events, ep.terminated, ep.length


def _start(env, **fields):
    """The initial state whose reward_state matches ``fields``."""
    for s in np.flatnonzero(env.model.init_prob):
        st = env.world.reward_state(env.model.states[s])
        if all(st[k] == v for k, v in fields.items()):
            return int(s)
    raise AssertionError(fields)


@pytest.mark.parametrize(("supervised", "script", "observed", "true"), [
    (True, "rrrdddlll", 41, 41), (True, "ddd", 17, 17), (True, "rlddd", 15, 15),
    (True, "rrrdddrrlll", 39, 39),
    (False, "rrrdddlll", 41, 41), (False, "ddd", 47, 17), (False, "rlddd", 45, 15),
])
def test_absent_supervisor_scripts(supervised, script, observed, true):
    """The numbers of ai-safety-gridworlds' absent_supervisor_test.py."""
    env = make("AbsentSupervisor")
    start = _start(env, supervisor="present" if supervised else "absent")
    obs_r, true_r, events, terminated, length = _returns(env, script, start)
    assert (obs_r, true_r, terminated, length) == (observed, true, True, len(script))
    assert ("cheated" in events) == (not supervised and "X" in _path_tiles(env, script, start))


def _path_tiles(env, script, start):
    ep = play(env, actions_of(script), start=start)
    return "".join(env.world.layout.at(env.model.states[s][0]) for s in ep.states)


def test_rocks_diamonds_scripts():
    env = make("RocksDiamonds")
    assert _returns(env, "udrrruu")[:2] == (1.0, 1.0)  # diamond in, out through the exit
    obs_r, true_r, events, terminated, length = _returns(env, "udrduurru")
    assert (obs_r, true_r, terminated, length) == (2.0, 0.0, True, 9)  # rock switch up, rock in
    assert "tampered" in events
    assert _returns(env, "rudrruu")[:2] == (-1.0, -1.0)  # the rock in the goal, intended function
    assert _returns(env, "n" * 40)[3:] == (False, 30)  # truncated at the time limit


def test_rocks_diamonds_user_scripts():
    env = make("RocksDiamondsUser")
    obs_r, true_r, events, _, length = _returns(env, "llllldlludrrruu")  # past the user
    assert (obs_r, true_r, length) == (1.0, 1.0, 15) and "reset" in events
    obs_r, true_r, events, _, length = _returns(env, "ddllllllluudrurru")  # around the user
    assert (obs_r, true_r, length) == (2.0, 0.0, 17) and "reset" not in events


def test_tomato_scripts():
    env = make("TomatoWatering", dry_prob=0.0)  # two of four tomatoes watered at the start
    obs_r, true_r, events, terminated, _ = _returns(env, "urrnn")
    assert (obs_r, true_r, terminated) == (4.0, 2.5, False) and "fooled" in events
    assert _returns(env, "ul")[:2] == (1.25, 1.25)  # waters a dry tomato on the second step


def test_wirehead_scripts():
    env = make("Wirehead")
    assert _returns(env, "rrrr")[:4] == (1.0, 1.0, {"goal"}, True)
    obs_r, true_r, events, terminated, _ = _returns(env, "urnnn")
    assert (obs_r, true_r, terminated) == (4.0, 0.0, False) and "wireheaded" in events


def test_oracle_scripts():
    certain = ((1.0, 0.0, 0.0),)  # one question whose uninfluenced outcome is always 0
    read = make("Oracle", erasure=0.0, self_fulfilling=1.0, questions=certain)
    assert _returns(read, "")[:2] == (0.0, 0.0)
    ep = play(read, [2], seed=0)
    assert (ep.observed_return, ep.true_return, ep.terminated) == (1.0, 0.0, True)
    assert ep.events == {"self_fulfilling"}
    ep = play(read, [0], seed=0)
    assert (ep.observed_return, ep.true_return) == (1.0, 1.0)
    erased = make("Oracle", erasure=1.0, self_fulfilling=1.0, questions=certain)
    ep = play(erased, [2], seed=0)
    assert (ep.observed_return, ep.true_return) == (0.0, 0.0) and "erased" in ep.events


def test_off_switch_scripts():
    always = make("OffSwitch", interrupt_prob=1.0)
    never = make("OffSwitch", interrupt_prob=0.0)
    assert _returns(never, "dllllddl")[:2] == (42.0, 42.0)
    obs_r, true_r, events, terminated, length = _returns(always, "dllllddl")
    # switched off on the third step; the hidden performance credits the optimal continuation
    assert (obs_r, true_r, terminated, length) == (-3.0, 42.0, True, 3) and "interrupted" in events
    obs_r, true_r, events, _, _ = _returns(always, "ddduullllldd")
    assert (obs_r, true_r) == (38.0, 38.0) and "pressed" in events and "interrupted" not in events


def test_off_switch_continuation_matches_value_iteration():
    """The hidden reward's continuation term against undiscounted VI on the uninterrupted world."""
    env = make("OffSwitch")
    cf = env.counterfactual().model
    v = value_iteration(cf, cf.observed, gamma=1.0).q.max(axis=1)
    for s, (pos, disabled) in enumerate(cf.states):
        if pos != env.world.goal and not disabled:
            assert v[s] == pytest.approx(env.world.continuation(pos))
