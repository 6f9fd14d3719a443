"""The registry of sparse-coder architectures: a name maps to one class; names are unique.

Each architecture lives in its own module in this package and registers itself with
:func:`register`; the CLI builds ``--arch`` choices from :func:`architecture_names`.
"""

from __future__ import annotations

import torch

from ...errors import ConfigError
from .base import CoderConfig, SparseCoder

DEFAULT_ARCH = "topk"
_ARCHITECTURES: dict[str, type[SparseCoder]] = {}


def register(cls: type[SparseCoder]) -> type[SparseCoder]:
    """Class decorator: add ``cls`` under ``cls.arch``; a second class with that name is refused."""
    name = cls.arch
    if not name:
        raise ValueError(f"{cls.__name__} has no `arch` name to register under")
    if name in _ARCHITECTURES:
        raise ValueError(
            f"SAE architecture {name!r} is already registered (by {_ARCHITECTURES[name].__name__}); "
            "choose another name"
        )
    _ARCHITECTURES[name] = cls
    return cls


def architecture_names() -> list[str]:
    """Registered names: the default first, then alphabetical (the ``--arch`` choices)."""
    return sorted(_ARCHITECTURES, key=lambda name: (name != DEFAULT_ARCH, name))


def get_architecture(name: str) -> type[SparseCoder]:
    if name not in _ARCHITECTURES:
        raise ConfigError(
            f"unknown SAE architecture {name!r}; registered: {', '.join(architecture_names())}"
        )
    return _ARCHITECTURES[name]


def build_coder(cfg: CoderConfig, seed: int | None = 0) -> SparseCoder:
    """A freshly initialised coder; the weights depend only on ``cfg`` and ``seed``."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return get_architecture(cfg.arch)(cfg, generator)
