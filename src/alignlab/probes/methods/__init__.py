"""Probe methods, one module each; importing this package registers them all in ``METHODS``."""

from . import ccs, eigen, lda, lr, mean_diff, random  # noqa: F401
from .base import METHODS, MethodSettings, ProbeInputs, ProbeMethod, get_method, register

__all__ = ["METHODS", "MethodSettings", "ProbeInputs", "ProbeMethod", "get_method", "register"]
