"""Sparse autoencoders and transcoders: architectures, trainer, evaluation, formats, browser."""

from .arch import (
    DEFAULT_ARCH,
    CoderConfig,
    SparseCoder,
    architecture_names,
    build_coder,
    get_architecture,
)

__all__ = [
    "DEFAULT_ARCH", "CoderConfig", "SparseCoder", "architecture_names", "build_coder",
    "get_architecture",
]
