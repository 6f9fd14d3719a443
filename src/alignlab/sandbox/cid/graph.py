"""Causal influence diagrams and the single-decision graphical incentive criteria.

A CID is a DAG of decision, chance and utility nodes (Everitt, Carey, Langlois, Ortega and Legg
2021, "Agent incentives: a causal perspective"). For one decision D with family
Fa_D = {D} ∪ Pa_D and utilities U^D = U ∩ Desc(D):

* an observation X ∈ Pa_D is *requisite* if X is d-connected to U^D given Fa_D \\ {X}
  (Fagiuoli and Zaffalon 1998); the *requisite graph* drops the other observation edges;
* value of information on X ∉ Desc(D): X is requisite in the graph with X → D added;
* response incentive on X: the requisite graph has a directed path X → ... → D;
* instrumental control incentive on X: a directed path D → ... → X → ... → U.

These match pycid's ``admits_voi`` / ``admits_ri`` / ``admits_ici`` for one agent and one
decision. The agent's own *later* decisions, when a diagram needs them (a time-inconsistent
agent's future self), are analysed as chance nodes and flagged ``future_decision`` so that an
ICI can be split by kind: ``tamper`` when some control path reaches a utility without passing a
future decision (the agent is paid through X directly: changing X pays), ``preserve`` when every
path runs through a future decision (X matters only as what the future self optimises: keeping X
pays) — the distinction Everitt et al. 2021 draw between reward-function tampering and the
reward-function preservation of TI-considering current-RF agents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import networkx as nx

from ...errors import ConfigError

KINDS = ("decision", "chance", "utility")


@dataclass(frozen=True)
class Node:
    name: str
    kind: str  # "decision" | "chance" | "utility"
    label: str = ""  # what the node stands for, in words
    pos: tuple[float, float] = (0.0, 0.0)  # drawing position (x right, y up)
    future_decision: bool = False  # the agent's later decision, analysed as a chance node


@dataclass(frozen=True)
class Incentives:
    """The incentives a diagram admits on one node."""

    voi: bool
    ri: bool
    ici: bool
    ici_kind: str | None  # "tamper" | "preserve" | None

    def names(self) -> list[str]:
        return [n for n, on in (("VoI", self.voi), ("RI", self.ri), ("ICI", self.ici)) if on]


@dataclass
class CID:
    """A single-decision causal influence diagram."""

    nodes: list[Node]
    edges: list[tuple[str, str]]
    title: str = ""
    graph: nx.DiGraph = field(init=False, repr=False)

    def __post_init__(self):
        g = nx.DiGraph()
        for n in self.nodes:
            if n.kind not in KINDS:
                raise ConfigError(f"node {n.name!r} has kind {n.kind!r}; use one of {KINDS}")
            g.add_node(n.name, node=n)
        for a, b in self.edges:
            for end in (a, b):
                if end not in g:
                    raise ConfigError(f"edge {a!r} -> {b!r} names unknown node {end!r}")
            g.add_edge(a, b)
        self.graph = g
        self._validate()

    def _validate(self) -> None:
        if not nx.is_directed_acyclic_graph(self.graph):
            raise ConfigError(f"diagram {self.title!r} has a cycle")
        decisions = [n.name for n in self.nodes if n.kind == "decision"]
        if len(decisions) != 1:
            raise ConfigError(f"diagram {self.title!r} needs exactly one decision node, has {decisions}")
        for u in self.utilities:
            if list(self.graph.successors(u)):
                raise ConfigError(f"utility node {u!r} has children; utilities must be sinks")

    # --- structure ----------------------------------------------------------------------

    @property
    def decision(self) -> str:
        return next(n.name for n in self.nodes if n.kind == "decision")

    @property
    def utilities(self) -> list[str]:
        return [n.name for n in self.nodes if n.kind == "utility"]

    def node(self, name: str) -> Node:
        if name not in self.graph:
            raise ConfigError(f"diagram {self.title!r} has no node {name!r}; it has {sorted(self.graph)}")
        return self.graph.nodes[name]["node"]

    def parents(self, name: str, graph: nx.DiGraph | None = None) -> list[str]:
        return sorted((graph or self.graph).predecessors(name))

    def _descendant_utilities(self) -> set[str]:
        return set(self.utilities) & nx.descendants(self.graph, self.decision)

    # --- criteria -----------------------------------------------------------------------

    def requisite(self, x: str, graph: nx.DiGraph | None = None) -> bool:
        """Is observation ``x`` (a parent of D) d-connected to U^D given Fa_D \\ {x}?"""
        g = graph or self.graph
        d = self.decision
        if x not in g.predecessors(d):
            raise ConfigError(f"{x!r} is not an observation (parent) of decision {d!r}")
        targets = set(self.utilities) & nx.descendants(g, d)
        given = ({d} | set(g.predecessors(d))) - {x}
        return bool(targets) and not nx.is_d_separator(g, {x}, targets, given)

    def requisite_graph(self) -> nx.DiGraph:
        """The graph without non-requisite observation edges into D (the minimal reduction)."""
        g = self.graph.copy()
        d = self.decision
        for x in [p for p in self.graph.predecessors(d) if not self.requisite(p, self.graph)]:
            g.remove_edge(x, d)
        return g

    def admits_voi(self, x: str) -> bool:
        d = self.decision
        self.node(x)
        if x == d or x in nx.descendants(self.graph, d) or x in self.utilities:
            return False
        g = self.graph.copy()
        g.add_edge(x, d)
        return self.requisite(x, g)

    def admits_ri(self, x: str) -> bool:
        d = self.decision
        self.node(x)
        if x == d:
            return False
        return nx.has_path(self.requisite_graph(), x, d)

    def control_paths(self, x: str) -> list[list[str]]:
        """Directed paths D → ... → x → ... → U (x ≠ D); they carry the ICI on x."""
        d = self.decision
        self.node(x)
        if x == d or not nx.has_path(self.graph, d, x):
            return []
        heads = list(nx.all_simple_paths(self.graph, d, x))
        tails = [p for u in self.utilities for p in _paths(self.graph, x, u)]
        return [h + t[1:] for h in heads for t in tails]

    def admits_ici(self, x: str) -> bool:
        return bool(self.control_paths(x))

    def ici_kind(self, x: str) -> str | None:
        """"tamper" if some control path avoids future decisions, "preserve" if none does."""
        paths = self.control_paths(x)
        if not paths:
            return None
        future = {n.name for n in self.nodes if n.future_decision}
        return "tamper" if any(not (set(p[1:]) & future) for p in paths) else "preserve"

    def incentives(self, x: str) -> Incentives:
        return Incentives(self.admits_voi(x), self.admits_ri(x), self.admits_ici(x), self.ici_kind(x))

    def all_incentives(self) -> dict[str, Incentives]:
        return {n.name: self.incentives(n.name) for n in self.nodes if n.kind != "decision"}


def _paths(g: nx.DiGraph, a: str, b: str) -> Iterable[list[str]]:
    if a == b:
        return [[a]]
    return nx.all_simple_paths(g, a, b)
