"""Report sections, one module each; importing this package registers them all.

To add one: write ``sections/<name>.py`` with ``@register("<name>")`` over
``build(run: RunView, metrics: dict) -> Section | None`` and add one import line below
(``from .<name> import <builder>``, kept in alphabetical order so ruff's isort passes).
"""

from ..blocks import Figure, Heading, Paragraph, Preformatted, Section, Table
from ..registry import register
from .across import across_section  # noqa: F401
from .harvest import harvest_section  # noqa: F401
from .inspect import inspect_section  # noqa: F401
from .lens import lens_section  # noqa: F401
from .sandbox import sandbox_section  # noqa: F401

__all__ = ["Figure", "Heading", "Paragraph", "Preformatted", "Section", "Table", "register"]
