"""Every CLI verb, one module per group; importing this package registers them all."""

from . import across  # noqa: F401
from . import basic  # noqa: F401
from . import lens  # noqa: F401
from . import probe  # noqa: F401
from . import report  # noqa: F401
from . import sae  # noqa: F401
from . import sandbox  # noqa: F401
from . import store  # noqa: F401
from .registry import COMMANDS, Command, command

__all__ = ["COMMANDS", "Command", "command"]
