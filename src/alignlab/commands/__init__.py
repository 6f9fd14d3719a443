"""Every CLI verb, one module per group; importing this package registers them all."""

from . import basic, report  # noqa: F401  (each module registers its verbs)
from .registry import COMMANDS, Command, command

__all__ = ["COMMANDS", "Command", "command"]
