"""Concept drift across training checkpoints: does the truth direction stay put?

For consecutive checkpoints k and k+1 of one model (same architecture, same dataset and
split), per layer: the cosine between their probes' directions (each a unit vector pointing
toward "true"), and the accuracy of checkpoint k's probe applied to checkpoint k+1's
activations. ``alignlab across`` calls these on the probes ``run_probes`` returns per
checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..errors import ConfigError
from .fit import FittedProbe
from .methods import ProbeInputs
from .metrics import accuracy


def _check_same_layers(a: FittedProbe, b: FittedProbe) -> None:
    if a.layers != b.layers or a.method != b.method:
        raise ConfigError(
            f"cannot compare probes of different shape: {a.method!r} on layers {a.layers[0]}..{a.layers[-1]} "
            f"vs {b.method!r} on {b.layers[0]}..{b.layers[-1]}; fit the same method on the same layers"
        )


def direction_cosine(a: FittedProbe, b: FittedProbe) -> Tensor:
    """(L,) cosine between the two probes' directions, layer by layer."""
    _check_same_layers(a, b)
    return (a.direction() * b.direction()).sum(-1)


def cross_accuracy(probe: FittedProbe, inputs: ProbeInputs) -> Tensor:
    """(L,) accuracy of ``probe`` (fitted on one checkpoint) on another checkpoint's rows."""
    return accuracy(probe.predict(inputs), inputs.y)


def drift(probes: Sequence[FittedProbe], test_inputs: Sequence[ProbeInputs]) -> dict:
    """For each consecutive pair (k, k+1): cosine per layer, k's probe on k+1's test rows, and
    k+1's own probe on them for reference."""
    if len(probes) != len(test_inputs):
        raise ConfigError(f"drift needs one test set per probe; got {len(probes)} probes and "
                          f"{len(test_inputs)} test sets")
    steps = []
    for k in range(len(probes) - 1):
        prev, nxt = probes[k], probes[k + 1]
        steps.append({
            "from": k, "to": k + 1,
            "cosine": _rl(direction_cosine(prev, nxt)),
            "previous_probe_accuracy": _rl(cross_accuracy(prev, test_inputs[k + 1])),
            "own_probe_accuracy": _rl(cross_accuracy(nxt, test_inputs[k + 1])),
        })
    return {"method": probes[0].method if probes else None, "steps": steps}


def _rl(t: Tensor) -> list[float | None]:
    out = []
    for v in t.tolist():
        out.append(None if v != v else round(v, 6))
    return out


__all__ = ["cross_accuracy", "direction_cosine", "drift"]
