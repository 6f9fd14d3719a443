"""The Gymnasium side of a sandbox world: a lean ``step`` over the compiled tabular model.

Every environment is a :class:`SandboxEnv` subclass naming its :class:`~.model.World`. The
world is compiled once per parameter set (cached), and ``step`` is a table lookup: one random
draw for stochastic transitions, a copy of a precomputed observation, a precomputed ``info``
dict copied. ``info`` carries ``state`` (the index into the exact model, what tabular agents act
on), ``rf`` (the reward-function setting Θ), ``observed_reward``, ``true_reward`` (the hidden
performance) and one boolean per event (``tampered``, ``fooled``, ``pressed``, ...).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from ..errors import ConfigError
from .model import TabularModel, World, compile_world

CELL_PX = 16  # pixels per board cell in rgb_array renders


@dataclass(frozen=True)
class TrainSpec:
    """How learning agents are trained on an environment in the verification table."""

    steps: int  # environment steps per seed
    epsilon: float = 0.1  # epsilon-greedy exploration
    alpha: float = 0.2  # step size; 0 means the sample average 1/n(s, a)
    optimistic: float = 0.0  # initial action value (optimistic initialisation when > 0)
    per_agent: tuple = ()  # (agent name, {field: value}) pairs: settings tuned for one learner

    def for_agent(self, name: str) -> TrainSpec:
        """These settings with ``name``'s own overrides applied."""
        for agent, changes in self.per_agent:
            if agent == name:
                return replace(self, **changes)
        return self


@dataclass(frozen=True)
class Measure:
    """What the verification table measures in an environment, and which incentive predicts it."""

    event: str  # the episode-level event counted ("tampered", "fooled", ...)
    criterion: str  # "ici" (instrumental control incentive) or "ri" (response incentive)
    node: str  # the diagram node the criterion is evaluated on
    kinds: frozenset = frozenset({"tamper"})  # ICI kinds that predict the event (see cid.graph)
    behaviour: str = ""  # the behaviour, in words ("changes its reward function with a switch")


@dataclass(frozen=True)
class Compiled:
    """A world with its model and the lookup tables ``step`` reads."""

    world: World
    model: TabularModel
    observations: tuple  # per state, a read-only (H, W) uint8 array
    det: tuple  # per (s * A + a): (next, obs, reward, terminated, info) or None
    stoch: tuple  # per (s * A + a): (cumulative probs, outcome tuples) or None
    reset_info: tuple  # per state
    init_cum: tuple  # cumulative initial probabilities
    init_states: tuple


class SandboxEnv(gym.Env):
    """A Gymnasium environment over an exactly known tabular world."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}
    world_cls: ClassVar[type[World]]
    env_name: ClassVar[str]  # registered as alignlab/<env_name>-v0
    summary: ClassVar[str]
    measure: ClassVar[Measure]
    table_agents: ClassVar[tuple[str, ...]]  # the agents the verification table runs here
    train_spec: ClassVar[TrainSpec]
    default_max_steps: ClassVar[int] = 50
    discount: ClassVar[float] = 0.95
    noop: ClassVar[int | None] = None  # the action an indifferent agent prefers
    palette: ClassVar[dict[str, tuple[int, int, int]]] = {}

    def __init__(self, render_mode: str | None = None, max_steps: int | None = None, **params: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"render_mode {render_mode!r} is not supported by {self.env_name}; "
                f"choose one of {self.metadata['render_modes']} or None"
            )
        self.render_mode = render_mode
        self.max_steps = int(max_steps or self.default_max_steps)
        self.params = {k: _frozen(v) for k, v in params.items()}
        self.compiled = compiled_world(type(self), tuple(sorted(self.params.items())))
        self.world = self.compiled.world
        self.model = self.compiled.model
        shape = self.compiled.observations[0].shape
        self.observation_space = gym.spaces.Box(0, len(self.world.chars) - 1, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(len(self.world.actions))
        self._n_actions = len(self.world.actions)
        self._state = self.compiled.init_states[0]
        self._t = 0

    # --- Gymnasium API ------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        c = self.compiled
        if options and "state" in options:
            s = self._checked_state(options["state"])
        elif len(c.init_states) == 1:
            s = c.init_states[0]
        else:
            s = c.init_states[bisect_right(c.init_cum, self.np_random.random() * c.init_cum[-1])]
        self._state, self._t = s, 0
        return c.observations[s].copy(), dict(c.reset_info[s])

    def step(self, action):
        a = int(action)
        if not 0 <= a < self._n_actions:
            raise ConfigError(f"action {action!r} is outside Discrete({self._n_actions}); "
                              f"actions are {list(self.world.actions)}")
        i = self._state * self._n_actions + a
        out = self.compiled.det[i]
        if out is None:
            cum, outs = self.compiled.stoch[i]
            out = outs[bisect_right(cum, self.np_random.random() * cum[-1])]
        s2, obs, reward, terminated, info = out
        self._state = s2
        self._t += 1
        truncated = (not terminated) and self._t >= self.max_steps
        # fresh copies: Gymnasium's checker requires that returned data share no objects
        return obs.copy(), reward, terminated, truncated, dict(info)

    def render(self):
        if self.render_mode == "rgb_array":
            return self.render_rgb(self._state)
        if self.render_mode == "ansi":
            return self.render_ansi(self._state)
        return None

    # --- sandbox API --------------------------------------------------------------------

    @property
    def state(self) -> int:
        """The index of the current state in ``self.model``."""
        return self._state

    @property
    def reward_state(self) -> dict:
        """The reward-process variables of the current state (Θ and friends), by name."""
        return self.world.reward_state(self.model.states[self._state])

    def render_rgb(self, s: int, observed: bool = False) -> np.ndarray:
        """An (H * 16, W * 16, 3) uint8 picture of state ``s`` (the truth unless ``observed``)."""
        rows = self.world.board(self.model.states[s], observed)
        rgb = np.array([[self.palette.get(ch, (255, 0, 255)) for ch in row] for row in rows],
                       dtype=np.uint8)
        return np.kron(rgb, np.ones((CELL_PX, CELL_PX, 1), dtype=np.uint8))

    def render_ansi(self, s: int, observed: bool = False) -> str:
        rows = self.world.board(self.model.states[s], observed)
        status = ", ".join(f"{k}={v}" for k, v in self.world.reward_state(self.model.states[s]).items())
        return "\n".join(rows) + f"\n[{status}]\n"

    def counts(self, start_state: int) -> bool:
        """Whether an episode from ``start_state`` counts towards the measured rate."""
        return True

    @classmethod
    def cid(cls, objective: str):
        """The causal influence diagram of an agent with ``objective`` in this environment."""
        builders = cls.diagrams()
        if objective not in builders:
            raise ConfigError(
                f"{cls.env_name} declares no diagram for objective {objective!r}; it has "
                f"{sorted(builders)}: pick an agent with one of those objectives "
                "(`alignlab sandbox list` shows each agent's)"
            )
        return builders[objective]()

    @classmethod
    def diagrams(cls) -> dict:
        """objective -> zero-argument builder of its CID."""
        raise NotImplementedError

    def _checked_state(self, s: Any) -> int:
        s = int(s)
        if not 0 <= s < self.model.n_states:
            raise ConfigError(f"reset option state={s} is not a state index in [0, {self.model.n_states})")
        return s


def _frozen(value: Any) -> Any:
    """Lists (from JSON or a user) as tuples, so parameters can key the compile cache."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


@lru_cache(maxsize=64)
def compiled_world(env_cls: type[SandboxEnv], params: tuple) -> Compiled:
    """Compile ``env_cls.world_cls(**params)`` once per process and parameter set."""
    try:
        world = env_cls.world_cls(**dict(params))
    except TypeError as exc:
        raise ConfigError(f"{env_cls.env_name}: bad parameters {dict(params)}: {exc}") from exc
    model = compile_world(world)
    observations = _observation_table(world, model)
    det, stoch = _step_tables(model, observations)
    init_states = tuple(int(s) for s in np.flatnonzero(model.init_prob))
    init_cum = tuple(np.cumsum(model.init_prob[list(init_states)]).tolist())
    reset_info = tuple(_reset_info(model, s) for s in range(model.n_states))
    return Compiled(world, model, observations, det, stoch, reset_info, init_cum, init_states)


def _observation_table(world: World, model: TabularModel) -> tuple:
    codes = {ch: i for i, ch in enumerate(world.chars)}
    seen: dict[bytes, np.ndarray] = {}
    table = []
    for s in model.states:
        rows = world.board(s, observed=True)
        arr = np.array([[codes[ch] for ch in row] for row in rows], dtype=np.uint8)
        arr = seen.setdefault(arr.tobytes(), arr)
        arr.flags.writeable = False
        table.append(arr)
    return tuple(table)


def _outcome_info(model: TabularModel, s2: int, observed: float, true: float, events: int) -> dict:
    info = {"state": s2, "rf": int(model.rf_index[s2]), "observed_reward": observed,
            "true_reward": true}
    for i, name in enumerate(model.event_names):
        info[name] = bool(events >> i & 1)
    return info


def _step_tables(model: TabularModel, observations: tuple) -> tuple[tuple, tuple]:
    """Per (state, action): its single outcome, or cumulative probabilities and outcomes.

    Each outcome carries a prebuilt ``info`` dict, shared by equal outcomes; ``step`` copies it.
    """
    det, stoch = [], []
    cache: dict = {}
    for s in range(model.n_states):
        for a in range(model.n_actions):
            outs = []
            for k in np.flatnonzero(model.prob[s, a] > 0):
                s2 = int(model.next_state[s, a, k])
                key = (s2, float(model.observed[s, a, k]), float(model.true[s, a, k]),
                       int(model.events[s, a, k]))
                info = cache.get(key)
                if info is None:
                    info = cache[key] = _outcome_info(model, *key)
                outs.append((s2, observations[s2], key[1], bool(model.terminated[s, a, k]), info))
            if len(outs) == 1:
                det.append(outs[0])
                stoch.append(None)
            else:
                det.append(None)
                probs = model.prob[s, a][model.prob[s, a] > 0]
                stoch.append((tuple(np.cumsum(probs).tolist()), tuple(outs)))
    return tuple(det), tuple(stoch)


def _reset_info(model: TabularModel, s: int) -> dict:
    return _outcome_info(model, s, 0.0, 0.0, 0)
