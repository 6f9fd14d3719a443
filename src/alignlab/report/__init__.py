"""The HTML report of a run folder: templated, every string escaped, plots inline."""

from .blocks import Figure, Heading, Paragraph, Preformatted, Section, Table
from .builder import CSP, build_report, rebuild_report, write_report
from .registry import register, registered_sections

__all__ = [
    "CSP", "Figure", "Heading", "Paragraph", "Preformatted", "Section", "Table",
    "build_report", "rebuild_report", "register", "registered_sections", "write_report",
]
