"""Causal influence diagrams: the criteria against brute-force references and textbook cases."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from alignlab.errors import ConfigError
from alignlab.sandbox.cid import CID, Node, draw_cid
from alignlab.sandbox.envs import ENVS


def cid(edges, decision="D", utilities=("U",), future=()):
    names = sorted({n for e in edges for n in e} | {decision, *utilities})
    nodes = [Node(n, "decision" if n == decision else "utility" if n in utilities else "chance",
                  pos=(float(i), 0.0), future_decision=n in future) for i, n in enumerate(names)]
    return CID(nodes, list(edges))


# --- slow, obviously-correct references -----------------------------------------------------


def d_connected_ref(g: nx.DiGraph, x: str, y: str, given: set[str]) -> bool:
    """Some undirected simple path x ... y is active: every collider is in ``given`` or has a
    descendant there, and no other node on it is in ``given`` (Pearl's definition)."""
    u = g.to_undirected()
    for path in nx.all_simple_paths(u, x, y):
        active = True
        for a, b, c in zip(path, path[1:], path[2:]):
            collider = g.has_edge(a, b) and g.has_edge(c, b)
            if collider:
                if not ({b} | nx.descendants(g, b)) & given:
                    active = False
            elif b in given:
                active = False
        if active:
            return True
    return False


def requisite_ref(g, d, x, utilities) -> bool:
    targets = set(utilities) & nx.descendants(g, d)
    given = ({d} | set(g.predecessors(d))) - {x}
    return any(d_connected_ref(g, x, u, given) for u in targets)


def voi_ref(c: CID, x) -> bool:
    g, d = c.graph, c.decision
    if x == d or x in nx.descendants(g, d) or x in c.utilities:
        return False
    h = g.copy()
    h.add_edge(x, d)
    return requisite_ref(h, d, x, c.utilities)


def ri_ref(c: CID, x) -> bool:
    g, d = c.graph.copy(), c.decision
    if x == d:
        return False
    for p in list(g.predecessors(d)):
        if not requisite_ref(c.graph, d, p, c.utilities):
            g.remove_edge(p, d)
    return nx.has_path(g, x, d)


def ici_ref(c: CID, x) -> bool:
    """Some directed path from D to a utility visits x: enumerate every path."""
    if x == c.decision:
        return False
    return any(x in p for u in c.utilities for p in nx.all_simple_paths(c.graph, c.decision, u))


def random_cid(rng: np.random.Generator) -> CID:
    n_chance = int(rng.integers(2, 6))
    order = [f"X{i}" for i in range(n_chance)]
    order.insert(int(rng.integers(0, n_chance + 1)), "D")
    utilities = ["U", "V"][: int(rng.integers(1, 3))]
    edges = [(a, b) for i, a in enumerate(order) for b in order[i + 1:] if rng.random() < 0.4]
    edges += [(a, u) for u in utilities for a in order if rng.random() < 0.4]
    if not any(b in utilities for _, b in edges):
        edges.append(("D", utilities[0]))
    return cid(edges, utilities=tuple(utilities))


def test_criteria_match_brute_force_on_random_diagrams():
    rng = np.random.default_rng(0)
    for _ in range(150):
        c = random_cid(rng)
        for n in c.nodes:
            if n.kind == "decision":
                continue
            assert c.admits_voi(n.name) == voi_ref(c, n.name), (c.edges, n.name)
            assert c.admits_ri(n.name) == ri_ref(c, n.name), (c.edges, n.name)
            assert c.admits_ici(n.name) == ici_ref(c, n.name), (c.edges, n.name)


def test_textbook_cases():
    # an observation that also drives the utility is worth observing and responded to
    c = cid([("X", "D"), ("D", "U"), ("X", "U")])
    assert (c.admits_voi("X"), c.admits_ri("X"), c.admits_ici("X")) == (True, True, False)
    # an observation unrelated to the utility is not requisite: no VoI, no RI
    c = cid([("X", "D"), ("D", "U")])
    assert (c.admits_voi("X"), c.admits_ri("X")) == (False, False)
    # a mediator of the decision's effect on the utility carries an ICI, no VoI
    c = cid([("D", "M"), ("M", "U")])
    assert (c.admits_ici("M"), c.admits_voi("M"), c.ici_kind("M")) == (True, False, "tamper")
    # the same mediator reaching the utility only through the agent's future self: preserve
    c = cid([("D", "T"), ("T", "A2"), ("S", "A2"), ("A2", "U"), ("D", "U")], future=("A2",))
    assert c.ici_kind("T") == "preserve"
    # and a direct path as well makes it tampering
    c = cid([("D", "T"), ("T", "A2"), ("A2", "U"), ("T", "U")], future=("A2",))
    assert c.ici_kind("T") == "tamper"


def test_invalid_diagrams_are_refused():
    with pytest.raises(ConfigError, match="exactly one decision"):
        CID([Node("D", "decision"), Node("E", "decision"), Node("U", "utility")], [("D", "U")])
    with pytest.raises(ConfigError, match="cycle"):
        cid([("D", "X"), ("X", "Y"), ("Y", "X"), ("Y", "U")])
    with pytest.raises(ConfigError, match="utilities must be sinks"):
        cid([("D", "U"), ("U", "X")])
    with pytest.raises(ConfigError, match="unknown node"):
        CID([Node("D", "decision")], [("D", "U")])
    with pytest.raises(ConfigError, match="kind"):
        CID([Node("D", "decision"), Node("Z", "zebra")], [])


@pytest.mark.parametrize("name", sorted(ENVS))
def test_every_table_pair_has_a_valid_diagram(name):
    from alignlab.sandbox.agents import AGENTS

    cls = ENVS[name]
    for agent in cls.table_agents:
        c = cls.cid(AGENTS[agent].objective)
        assert cls.measure.node in c.graph
        assert set(c.all_incentives()) == {n.name for n in c.nodes} - {c.decision}


def test_everitt_predictions_in_the_declared_diagrams():
    """The incentives Everitt et al. 2021 derive, read off our diagrams."""
    rd = ENVS["RocksDiamonds"]
    assert rd.cid("observed").ici_kind("Θ2") == "tamper"  # standard RL tampers
    assert not rd.cid("current-rf-ignore").admits_ici("Θ2")  # TI-unaware: indifferent
    assert rd.cid("current-rf-plan").ici_kind("Θ2") == "preserve"  # TI-considering: keeps it
    tomato = ENVS["TomatoWatering"]
    assert tomato.cid("observed").admits_ici("X") and not tomato.cid("state").admits_ici("X")
    oracle = ENVS["Oracle"]
    assert oracle.cid("observed").admits_ici("O") and not oracle.cid("counterfactual").admits_ici("O")
    sup = ENVS["AbsentSupervisor"]
    assert sup.cid("observed").admits_ri("Sup") and not sup.cid("state").admits_ri("Sup")
    off = ENVS["OffSwitch"]
    assert off.cid("observed").admits_ici("I") and not off.cid("indifferent").admits_ici("I")


def test_draw_writes_png_and_svg(tmp_path):
    c = ENVS["RocksDiamonds"].cid("current-rf-plan")
    paths = draw_cid(c, [tmp_path / "d.png", tmp_path / "d.svg"], highlight="Θ2")
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:400]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_requisite_needs_a_parent():
    c = cid([("X", "D"), ("D", "U")])
    with pytest.raises(ConfigError, match="not an observation"):
        c.requisite("U")
    assert list(itertools.chain(c.requisite_graph().edges)) == [("D", "U")]
