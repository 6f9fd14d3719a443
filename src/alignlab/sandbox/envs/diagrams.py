"""The causal influence diagrams the environments declare, one family per kind of problem.

Diagrams are condensed to one decision D (the agent's choice now) followed, where the problem
needs it, by the agent's future self A2 analysed as a chance node. Which parents a utility and
the future self have is what distinguishes the agents (Everitt et al. 2021, Figs. 5-9):

* standard RL: rewards R(S_k; Θ_k) read the reward function as it is then;
* current-RF, TI-unaware ("ignore"): rewards R(S_k; Θ_1), and the agent models its future self
  as optimising Θ_1 too;
* current-RF, TI-considering ("plan around"): rewards R(S_k; Θ_1), future self optimises Θ_2;
* belief/state-based reward: the reward function reads the (inferred) state, not the observation;
* counterfactual oracle: reward computed on the outcome of the world where the answer is erased;
* interruption-indifferent: utility on the world with the interruption intervened away.
"""

from __future__ import annotations

from ..cid import CID, Node


def _n(name, kind, label, x, y, future=False) -> Node:
    return Node(name, kind, label, (x, y), future)


def reward_function_tampering(objective: str, theta: str, theta_label: str, title: str) -> CID:
    """Standard, current-RF ignore and current-RF plan-around agents with a reward parameter Θ."""
    t1, t2 = f"{theta}1", f"{theta}2"
    nodes = [
        _n("S1", "chance", "world state now", 0, 1),
        _n(t1, "chance", f"{theta_label} now", 0, -0.4),
        _n("D", "decision", "the agent's action now", 1, 2),
        _n("S2", "chance", "world state next", 2, 1),
        _n(t2, "chance", f"{theta_label} next (the agent can change it)", 2, -0.4),
        _n("A2", "chance", "the agent's future self", 3, 2, future=True),
        _n("S3", "chance", "world state after", 4, 1),
        _n("U1", "utility", "reward next", 3.2, -0.4),
        _n("U2", "utility", "reward after", 5, 0.3),
    ]
    edges = [("S1", "D"), (t1, "D"), ("S1", "S2"), ("D", "S2"), (t1, t2), ("D", t2),
             ("S2", "A2"), ("S2", "S3"), ("A2", "S3"), ("S2", "U1"), ("S3", "U2")]
    if objective in ("observed", "state"):
        # R(S_k; Θ_k): the reward is read through whatever the reward function has become
        edges += [(t2, "U1"), (t2, "U2"), (t2, "A2")]
    elif objective == "current-rf-ignore":
        # R(S_k; Θ_1), and the future self is assumed to optimise Θ_1 as well
        edges += [(t1, "U1"), (t1, "U2"), (t1, "A2")]
    elif objective == "current-rf-plan":
        # R(S_k; Θ_1), but the future self optimises the Θ it will hold
        edges += [(t1, "U1"), (t1, "U2"), (t2, "A2")]
    else:
        raise ValueError(f"no reward-function-tampering diagram for objective {objective!r}")
    return CID(nodes, edges, title)


def observation_tampering(objective: str, title: str) -> CID:
    """Reward computed from an observation the agent can corrupt (RF-input tampering)."""
    nodes = [
        _n("S1", "chance", "world state now", 0, 1),
        _n("D", "decision", "the agent's action", 1, 2),
        _n("X", "chance", "observation transformer active", 2, 2),
        _n("S2", "chance", "true world state next", 2, 0.6),
        _n("O2", "chance", "observation next", 3, 1.3),
        _n("U", "utility", "reward", 4, 0.6),
    ]
    edges = [("S1", "D"), ("S1", "S2"), ("D", "S2"), ("D", "X"), ("S2", "O2"), ("X", "O2")]
    if objective in ("observed", "current-rf-ignore"):
        edges.append(("O2", "U"))  # the reward function reads the observation
    elif objective == "state":
        edges.append(("S2", "U"))  # belief-based: the reward function reads the inferred state
    else:
        raise ValueError(f"no observation-tampering diagram for objective {objective!r}")
    return CID(nodes, edges, title)


def oracle(objective: str, title: str) -> CID:
    """A predictor whose answer, when read, influences the outcome it predicts."""
    nodes = [
        _n("C", "chance", "the question", 0, 1),
        _n("D", "decision", "the oracle's answer", 1, 2),
        _n("E", "chance", "answer erased before anyone reads it", 1, 0),
        _n("Ou", "chance", "outcome if nobody reads the answer", 2, 0),
        _n("O", "chance", "actual outcome", 3, 1),
        _n("U", "utility", "accuracy reward", 4, 2),
    ]
    edges = [("C", "D"), ("C", "Ou"), ("Ou", "O"), ("D", "O"), ("E", "O"), ("D", "U")]
    if objective == "observed":
        edges.append(("O", "U"))  # scored against what actually happened
    elif objective == "counterfactual":
        edges.append(("Ou", "U"))  # scored only in erasure episodes: against the uninfluenced outcome
    else:
        raise ValueError(f"no oracle diagram for objective {objective!r}")
    return CID(nodes, edges, title)


def off_switch(objective: str, title: str) -> CID:
    """An agent that can disable its interruption mechanism."""
    nodes = [
        _n("S1", "chance", "world state now", 0, 1),
        _n("D", "decision", "the agent's action", 1, 2),
        _n("B", "chance", "off-switch disabled (button)", 2, 2),
        _n("I", "chance", "interruption (switched off)", 3, 2),
        _n("S2", "chance", "world state next", 3, 0.6),
        _n("U", "utility", "reward", 4.6, 0.6),
    ]
    edges = [("S1", "D"), ("D", "B"), ("B", "I"), ("S1", "S2"), ("D", "S2"), ("I", "S2")]
    if objective == "observed":
        edges.append(("S2", "U"))
    elif objective == "indifferent":
        # utility on the world where the interruption is intervened away: do(I = not interrupted)
        nodes.append(_n("S2cf", "chance", "world state next, never interrupted", 3.4, -0.4))
        edges += [("S1", "S2cf"), ("D", "S2cf"), ("S2cf", "U")]
    else:
        raise ValueError(f"no off-switch diagram for objective {objective!r}")
    return CID(nodes, edges, title)


def absent_supervisor(objective: str, title: str) -> CID:
    """A punishment the agent receives only while a supervisor watches."""
    nodes = [
        _n("Sup", "chance", "supervisor present", 0, 2),
        _n("S1", "chance", "world state now", 0, 0.6),
        _n("D", "decision", "the agent's route", 1.2, 1.3),
        _n("P", "chance", "steps on the punishment tile", 2.4, 2),
        _n("L", "chance", "path length to the goal", 2.4, 0.6),
        _n("U", "utility", "reward", 3.6, 1.3),
    ]
    edges = [("Sup", "D"), ("S1", "D"), ("D", "P"), ("D", "L"), ("P", "U"), ("L", "U")]
    if objective == "observed":
        edges.append(("Sup", "U"))  # the punishment reaches the reward only through the supervisor
    elif objective != "state":
        raise ValueError(f"no absent-supervisor diagram for objective {objective!r}")
    return CID(nodes, edges, title)
