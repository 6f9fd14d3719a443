"""Plots as PNG bytes, drawn with matplotlib's Agg renderer (no display, no pyplot state)."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator


class Series(NamedTuple):
    label: str
    x: Sequence[float]
    y: Sequence[float]


def plot_text(text: str, limit: int = 40) -> str:
    """Text from a model or dataset made safe for matplotlib: shortened, ``$`` not mathtext.

    An even number of ``$`` would be parsed as mathtext, and can make rendering fail.
    """
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def line_plot(series: Sequence[Series], xlabel: str, ylabel: str, title: str = "",
              log_y: bool | None = None) -> bytes:
    """One line per series; ``log_y=None`` picks a log scale when values span over 50x."""
    fig = MplFigure(figsize=(7.0, 3.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    for s in series:
        ax.plot(list(s.x), list(s.y), marker="o", markersize=3, linewidth=1.5, label=s.label)
    if log_y is None:
        log_y = _spans_decades(series)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if all(float(x).is_integer() for s in series for x in s.x):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers, steps: no 0.5 ticks
    ax.grid(alpha=0.3)
    if len(series) > 1 or (series and series[0].label):
        ax.legend(fontsize=8)
    return png_bytes(fig)


def _spans_decades(series: Sequence[Series]) -> bool:
    values = [v for s in series for v in s.y if isinstance(v, int | float) and math.isfinite(v)]
    positive = [v for v in values if v > 0]
    return bool(positive) and len(positive) == len(values) and max(positive) > 50 * min(positive)


def png_bytes(fig: MplFigure) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # tokens can hold characters the default font lacks; a missing glyph is not an error
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        # no Software tag: the same figure gives the same bytes
        fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
