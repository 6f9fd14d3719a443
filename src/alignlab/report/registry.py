"""The registry of report sections: each turns part of ``metrics.json`` into a :class:`Section`.

A feature adds its section in ``alignlab/report/sections/<name>.py`` with :func:`register` and
one import line in ``alignlab/report/sections/__init__.py``. A section *claims* the top-level
metrics keys it shows (by default its own name); keys nobody claims are still listed, so a
report never hides a result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..runs import RunView
from .blocks import Section

SectionBuilder = Callable[[RunView, dict], "Section | None"]


@dataclass(frozen=True)
class SectionSpec:
    name: str
    build: SectionBuilder  # (run, metrics) -> Section, or None when the metrics have nothing for it
    claims: tuple[str, ...]  # top-level metrics keys this section presents
    order: int  # smaller comes first; ties keep registration order


_SECTIONS: dict[str, SectionSpec] = {}


def register(name: str, *, claims: tuple[str, ...] | None = None, order: int = 100):
    """Decorator: register ``build(run, metrics) -> Section | None`` as the section ``name``."""

    def decorate(build: SectionBuilder) -> SectionBuilder:
        if name in _SECTIONS:
            raise ValueError(f"report section {name!r} is registered twice")
        _SECTIONS[name] = SectionSpec(name, build, tuple(claims) if claims else (name,), order)
        return build

    return decorate


def registered_sections() -> list[SectionSpec]:
    """Every registered section, in report order."""
    from . import sections  # noqa: F401  (importing it registers the built-in sections)

    return sorted(_SECTIONS.values(), key=lambda spec: spec.order)
