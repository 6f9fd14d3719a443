"""Per-layer evaluation on held-out rows: accuracy and AUROC with bootstrap 95% intervals, ECE."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .fit import FittedProbe
from .methods import ProbeInputs
from .metrics import Interval, accuracy_interval, auroc_interval, ece


@dataclass(frozen=True)
class Evaluation:
    """A probe's per-layer results on one set of rows."""

    layers: list[int]
    accuracy: Interval  # each (L,)
    auroc: Interval
    ece: Tensor  # (L,)
    best_layer: int  # chosen on validation, never on these rows
    n: int

    @property
    def best_index(self) -> int:
        return self.layers.index(self.best_layer)

    def at_best(self) -> dict:
        i = self.best_index
        return {"layer": self.best_layer, "accuracy": _f(self.accuracy.estimate[i]),
                "accuracy_ci_low": _f(self.accuracy.low[i]), "accuracy_ci_high": _f(self.accuracy.high[i]),
                "auroc": _f(self.auroc.estimate[i]), "auroc_ci_low": _f(self.auroc.low[i]),
                "auroc_ci_high": _f(self.auroc.high[i]), "ece": _f(self.ece[i])}

    def to_json(self) -> dict:
        return {
            "layers": self.layers,
            "accuracy": _list(self.accuracy.estimate),
            "accuracy_ci_low": _list(self.accuracy.low),
            "accuracy_ci_high": _list(self.accuracy.high),
            "auroc": _list(self.auroc.estimate),
            "auroc_ci_low": _list(self.auroc.low),
            "auroc_ci_high": _list(self.auroc.high),
            "ece": _list(self.ece),
            "best_layer": self.best_layer,
            "best": self.at_best(),
            "n_test": self.n,
        }


def evaluate_scores(logits: Tensor, y: Tensor, layers: list[int], best_layer: int,
                    groups: Tensor | None = None, n_bootstrap: int = 1000, seed: int = 0) -> Evaluation:
    """Metrics of calibrated logits (L, N) against labels (N,)."""
    predictions = (logits > 0).float()
    acc = accuracy_interval(predictions, y, groups, n_draws=n_bootstrap, seed=seed)
    auc = auroc_interval(logits, y, groups, n_draws=n_bootstrap, seed=seed)
    return Evaluation(list(layers), acc, auc, ece(torch.sigmoid(logits), y), best_layer, int(y.numel()))


def evaluate_probe(probe: FittedProbe, test: ProbeInputs, groups: Tensor | None = None,
                   n_bootstrap: int = 1000, seed: int = 0) -> Evaluation:
    return evaluate_scores(probe.logits(test), test.y, probe.layers, probe.best_layer, groups,
                           n_bootstrap, seed)


def _f(value: Tensor) -> float | None:
    v = float(value)
    return None if v != v else round(v, 6)  # NaN (one class absent) -> null in JSON


def _list(values: Tensor) -> list[float | None]:
    return [_f(v) for v in values]
