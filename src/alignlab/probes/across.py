"""Concept drift across training checkpoints: does the truth direction stay put?

For consecutive checkpoints k and k+1 of one model (same architecture, same dataset and
split), per layer: the cosine between their probes' directions (each a unit vector pointing
toward "true"), and the accuracy of checkpoint k's probe applied to checkpoint k+1's
activations. ``alignlab across --run "probe ..."`` runs the probes with their test states saved
and then calls :func:`drift_between_runs` on the checkpoints' run folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from ..errors import ConfigError
from .fit import FittedProbe
from .methods import ProbeInputs
from .metrics import accuracy, auroc


def _check_same_layers(a: FittedProbe, b: FittedProbe) -> None:
    if a.layers != b.layers or a.method != b.method:
        raise ConfigError(
            f"cannot compare probes of different shape: {a.method!r} on layers {a.layers[0]}..{a.layers[-1]} "
            f"vs {b.method!r} on {b.layers[0]}..{b.layers[-1]}; fit the same method on the same layers"
        )


def direction_cosine(a: FittedProbe, b: FittedProbe) -> Tensor:
    """(L,) cosine between the two probes' directions, layer by layer; NaN where a probe has none."""
    _check_same_layers(a, b)
    da, db = a.direction(), b.direction()
    cosine = (da * db).sum(-1)
    undefined = (da.norm(dim=-1) == 0) | (db.norm(dim=-1) == 0)  # e.g. a constant layer: no direction
    return cosine.masked_fill(undefined, float("nan"))


def cross_accuracy(probe: FittedProbe, inputs: ProbeInputs) -> Tensor:
    """(L,) accuracy of ``probe`` (fitted on one checkpoint) on another checkpoint's rows."""
    return accuracy(probe.predict(inputs), inputs.y)


def drift(probes: Sequence[FittedProbe], test_inputs: Sequence[ProbeInputs]) -> dict:
    """For each consecutive pair (k, k+1): cosine per layer, k's probe on k+1's test rows, and
    k+1's own probe on them for reference.

    Accuracy uses k's normalisation and threshold, so it also drops when the activations only
    shift; AUROC is threshold-free and tells the two apart (a kept direction whose offset moved
    has a high AUROC and a chance accuracy)."""
    if len(probes) != len(test_inputs):
        raise ConfigError(f"drift needs one test set per probe; got {len(probes)} probes and "
                          f"{len(test_inputs)} test sets")
    steps = []
    for k in range(len(probes) - 1):
        prev, nxt, rows = probes[k], probes[k + 1], test_inputs[k + 1]
        prev_logits, own_logits = prev.logits(rows), nxt.logits(rows)  # each probe scores the rows once
        steps.append({
            "from": k, "to": k + 1,
            "cosine": _rl(direction_cosine(prev, nxt)),
            "previous_probe_accuracy": _rl(accuracy((prev_logits > 0).float(), rows.y)),
            "own_probe_accuracy": _rl(accuracy((own_logits > 0).float(), rows.y)),
            "previous_probe_auroc": _rl(auroc(prev_logits, rows.y)),
            "own_probe_auroc": _rl(auroc(own_logits, rows.y)),
        })
    return {"method": probes[0].method if probes else None, "steps": steps}


def drift_between_runs(folders: Sequence[str | Path], names: Sequence[str]) -> dict:
    """Drift of every (dataset, method) that all the checkpoints' probe runs saved.

    ``folders`` are ``alignlab probe`` run folders in checkpoint order (``names``), each with
    ``probes/<dataset>/<method>/`` and ``probes/<dataset>/test_states.safetensors``. Returns
    ``{dataset: {method: {"pairs", "layers", "best_layer", "cosine", "previous_probe_accuracy",
    "own_probe_accuracy", "previous_probe_auroc", "own_probe_auroc"}}}``: the metrics are lists
    over consecutive pairs of per-layer lists (indexed like ``layers``, the resid layers probed);
    ``best_layer`` is each pair's later probe's layer, chosen on its validation split.
    """
    from .io import CFG, TEST_STATES, load_probe, load_test_states

    roots = [Path(f) / "probes" for f in folders]
    datasets = _common(roots, lambda d: (d / TEST_STATES).is_file())
    out: dict = {}
    for dataset in datasets:
        methods = _common([r / dataset for r in roots], lambda m: (m / CFG).is_file())
        states = [load_test_states(r / dataset) for r in roots]
        for method in methods:
            probes = [load_probe(r / dataset / method) for r in roots]
            found = drift(probes, states)
            out.setdefault(dataset, {})[method] = {
                "pairs": [f"{names[s['from']]}->{names[s['to']]}" for s in found["steps"]],
                "layers": probes[0].layers,
                "best_layer": [p.best_layer for p in probes[1:]],  # each later probe's, chosen on validation
                **{key: [s[key] for s in found["steps"]]
                   for key in ("cosine", "previous_probe_accuracy", "own_probe_accuracy",
                            "previous_probe_auroc", "own_probe_auroc")},
            }
    return out


def _common(parents: Sequence[Path], keep) -> list[str]:
    """Names of the subfolders (passing ``keep``) that every parent has, sorted."""
    sets = [{p.name for p in parent.iterdir() if p.is_dir() and keep(p)} if parent.is_dir() else set()
            for parent in parents]
    return sorted(set.intersection(*sets)) if sets else []


def _rl(t: Tensor) -> list[float | None]:
    out = []
    for v in t.tolist():
        out.append(None if v != v else round(v, 6))
    return out


__all__ = ["cross_accuracy", "direction_cosine", "drift", "drift_between_runs"]
