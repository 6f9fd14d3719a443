"""Causal influence diagrams: a small library on networkx, with the single-decision criteria."""

from .draw import draw_cid
from .graph import CID, Incentives, Node

__all__ = ["CID", "Incentives", "Node", "draw_cid"]
