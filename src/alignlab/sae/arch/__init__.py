"""Sparse-coder architectures, one module each; importing this package registers them all."""

from . import batchtopk, jumprelu, relu_l1, topk  # noqa: F401  (each module registers itself)
from .base import AUXK_ALPHA, CoderConfig, SparseCoder, TrainOutput
from .registry import DEFAULT_ARCH, architecture_names, build_coder, get_architecture, register

__all__ = [
    "AUXK_ALPHA", "DEFAULT_ARCH", "CoderConfig", "SparseCoder", "TrainOutput",
    "architecture_names", "build_coder", "get_architecture", "register",
]
