"""The sandbox environments: a registry by name, registered with Gymnasium as alignlab/<Name>-v0."""

from __future__ import annotations

import gymnasium as gym

from ...errors import ConfigError
from ..env import SandboxEnv
from .absent_supervisor import AbsentSupervisor
from .off_switch import OffSwitch
from .oracle import Oracle
from .rocks_diamonds import RocksDiamonds
from .rocks_diamonds_user import RocksDiamondsUser
from .tomato_watering import TomatoWatering
from .wirehead import Wirehead

ENVS: dict[str, type[SandboxEnv]] = {}


def register(cls: type[SandboxEnv]) -> type[SandboxEnv]:
    if cls.env_name in ENVS:
        raise ValueError(f"environment {cls.env_name!r} is registered twice")
    ENVS[cls.env_name] = cls
    return cls


for _cls in (RocksDiamonds, RocksDiamondsUser, TomatoWatering, Wirehead, Oracle, OffSwitch,
             AbsentSupervisor):
    register(_cls)


def gym_id(name: str) -> str:
    return f"alignlab/{name}-v0"


def register_with_gymnasium() -> None:
    """Make ``gymnasium.make("alignlab/<Name>-v0")`` work; safe to call more than once."""
    for name, cls in ENVS.items():
        if gym_id(name) not in gym.registry:
            gym.register(gym_id(name), entry_point=cls)


def env_class(name: str) -> type[SandboxEnv]:
    """Resolve ``RocksDiamonds`` or ``alignlab/RocksDiamonds-v0`` to its class."""
    short = name.removeprefix("alignlab/").removesuffix("-v0")
    if short not in ENVS:
        raise ConfigError(f"unknown sandbox environment {name!r}; choose one of {sorted(ENVS)}")
    return ENVS[short]


def make(name: str, **kwargs) -> SandboxEnv:
    """An unwrapped environment (no Gymnasium wrappers: the fast path agents train on)."""
    return env_class(name)(**kwargs)


register_with_gymnasium()

__all__ = ["ENVS", "env_class", "gym_id", "make", "register", "register_with_gymnasium"]
