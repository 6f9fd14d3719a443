"""What a report section is made of. Sections hold data, never HTML: the template escapes it."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str
    kind: ClassVar[str] = "heading"


@dataclass(frozen=True)
class Paragraph:
    text: str
    kind: ClassVar[str] = "paragraph"


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[Any]]  # cells: str, int, float (shown to 4 significant digits) or None
    caption: str = ""
    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class Figure:
    """A plot, inlined into the report as a ``data:`` URI (the report loads nothing else)."""

    png: bytes
    alt: str  # what the plot shows, for readers who cannot see it
    caption: str = ""
    kind: ClassVar[str] = "figure"

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class Preformatted:
    text: str
    kind: ClassVar[str] = "pre"


Block = Heading | Paragraph | Table | Figure | Preformatted


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def format_cell(value: Any) -> str:
    """One table cell as text: floats to 4 significant digits, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
