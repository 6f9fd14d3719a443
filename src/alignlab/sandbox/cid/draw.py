"""Drawing a CID the way the literature does: decisions as blue squares, utilities as yellow
diamonds, chance nodes as white circles (Everitt et al. 2021; pycid's ``CID.draw``). The agent's
future decisions, analysed as chance nodes, are dashed blue squares. Nodes that admit an
incentive get a tag under them; the measured node gets a red outline.
"""

from __future__ import annotations

from pathlib import Path

from .graph import CID

DECISION = "#a6cee3"
UTILITY = "#ffd92f"
CHANCE = "#ffffff"
HIGHLIGHT = "#d62728"
SIZE = 0.34  # half-width of a node in axis units


def draw_cid(cid: CID, paths: list[Path], highlight: str | None = None) -> list[Path]:
    """Draw ``cid`` to each of ``paths`` (.png / .svg); returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=_figsize(cid))
    try:
        incentives = cid.all_incentives()
        for a, b in cid.graph.edges:
            _edge(ax, cid.node(a), cid.node(b), [n for n in cid.nodes if n.name not in (a, b)])
        for n in cid.nodes:
            tags = incentives[n.name].names() if n.name in incentives else []
            _node(ax, n, tags, red=n.name == highlight)
        _legend(ax)
        ax.set_title(cid.title, fontsize=10)
        ax.text(0.5, -0.1, "red tags: incentives the diagram admits on a node (VoI, RI, ICI); "
                "red outline: the node the verification table measures",
                transform=ax.transAxes, ha="center", va="top", fontsize=7, color="#555555")
        ax.set_aspect("equal")
        ax.axis("off")
        ax.autoscale_view()
        xs = [n.pos[0] for n in cid.nodes]
        ys = [n.pos[1] for n in cid.nodes]
        ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
        ax.set_ylim(min(ys) - 0.9, max(ys) + 0.6)
        written = []
        for p in paths:
            tmp = p.with_name(f".{p.name}.tmp{p.suffix}")
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
            tmp.replace(p)
            written.append(p)
        return written
    finally:
        plt.close(fig)


def _figsize(cid: CID) -> tuple[float, float]:
    xs = [n.pos[0] for n in cid.nodes]
    ys = [n.pos[1] for n in cid.nodes]
    return (1.6 + 1.3 * (max(xs) - min(xs)), 1.8 + 1.2 * (max(ys) - min(ys)))


def _node(ax, n, tags: list[str], red: bool) -> None:
    from matplotlib.patches import Circle, Polygon, Rectangle

    x, y = n.pos
    edge = HIGHLIGHT if red else "black"
    width = 2.2 if red else 1.0
    if n.kind == "decision" or n.future_decision:
        patch = Rectangle((x - SIZE, y - SIZE), 2 * SIZE, 2 * SIZE, facecolor=DECISION, zorder=2,
                          edgecolor=edge, linewidth=width, linestyle="--" if n.future_decision else "-")
    elif n.kind == "utility":
        r = SIZE * 1.25
        patch = Polygon([(x, y + r), (x + r, y), (x, y - r), (x - r, y)], closed=True,
                        facecolor=UTILITY, edgecolor=edge, linewidth=width, zorder=2)
    else:
        patch = Circle((x, y), SIZE, facecolor=CHANCE, edgecolor=edge, linewidth=width, zorder=2)
    ax.add_patch(patch)
    ax.text(x, y, n.name, ha="center", va="center", fontsize=9, zorder=5)
    if tags:
        ax.text(x, y - SIZE - 0.14, " ".join(tags), ha="center", va="top", fontsize=7,
                color=HIGHLIGHT, zorder=5)


def _edge(ax, a, b, others) -> None:
    """An arrow between node boundaries; curved when the straight line would cross a node."""
    import numpy as np
    from matplotlib.patches import FancyArrowPatch

    pa, pb = np.array(a.pos, float), np.array(b.pos, float)
    d = (pb - pa) / np.linalg.norm(pb - pa)
    start, end = pa + d * _reach(a, d), pb - d * _reach(b, -d)
    blocked = any(_near_segment(np.array(n.pos, float), pa, pb) for n in others)
    ax.add_patch(FancyArrowPatch(tuple(start), tuple(end), arrowstyle="-|>", mutation_scale=12,
                                 shrinkA=0, shrinkB=0, color="#444444", linewidth=1.0, zorder=3,
                                 connectionstyle=f"arc3,rad={0.3 if blocked else 0.0}"))


def _reach(n, d) -> float:
    """Distance from a node's centre to its outline along the unit direction ``d``."""
    dx, dy = abs(d[0]), abs(d[1])
    if n.kind == "decision" or n.future_decision:
        return SIZE / max(dx, dy)
    if n.kind == "utility":
        return SIZE * 1.25 / (dx + dy)
    return SIZE


def _near_segment(p, a, b) -> bool:
    import numpy as np

    t = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0.0, 1.0)
    return float(np.linalg.norm(a + t * (b - a) - p)) < SIZE * 1.1


def _legend(ax) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="s", markersize=9, linestyle="", markerfacecolor=DECISION,
               markeredgecolor="black", label="decision"),
        Line2D([], [], marker="o", markersize=9, linestyle="", markerfacecolor=CHANCE,
               markeredgecolor="black", label="chance"),
        Line2D([], [], marker="D", markersize=8, linestyle="", markerfacecolor=UTILITY,
               markeredgecolor="black", label="utility"),
        Line2D([], [], marker="s", markersize=9, linestyle="", markerfacecolor=DECISION,
               markeredgecolor="black", markeredgewidth=0.8, label="future self (dashed; chance)"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=4,
              fontsize=7, frameon=False)
