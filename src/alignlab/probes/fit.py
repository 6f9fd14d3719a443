"""Fit a method on every layer, then fix its sign, calibration and layer on train/val only.

A method's raw score becomes a calibrated logit ``a * raw + b`` per layer. For methods whose
score is already a probability (LR, CCS) ``a`` is the sign alone (+1, or -1 when the training
accuracy is below one half, which can only happen for an unsupervised method) and ``b = 0``;
for the others (a, b) is Platt scaling fitted on training labels. The layer reported as best
is the one with the highest validation accuracy (ties: higher validation AUROC, then the
shallower layer). Test labels are never read here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import ConfigError
from .methods import MethodSettings, ProbeInputs, get_method
from .methods.base import logistic_newton_1d
from .metrics import accuracy, auroc


@dataclass
class FittedProbe:
    """One method fitted on every layer, with its calibration and chosen layer."""

    method: str
    state: dict[str, Tensor]  # the method's tensors plus "calib_a", "calib_b" (L,)
    layers: list[int]  # resid layer of each row
    best_layer: int  # resid layer chosen on validation
    info: dict = field(default_factory=dict)  # settings, validation curve, fit time

    @property
    def best_index(self) -> int:
        return self.layers.index(self.best_layer)

    def logits(self, inputs: ProbeInputs) -> Tensor:
        """Calibrated logit of P(true): (L, N)."""
        raw = get_method(self.method).raw_scores(self.state, inputs)
        return self.state["calib_a"][:, None] * raw + self.state["calib_b"][:, None]

    def proba(self, inputs: ProbeInputs) -> Tensor:
        return torch.sigmoid(self.logits(inputs))

    def predict(self, inputs: ProbeInputs) -> Tensor:
        return (self.logits(inputs) > 0).float()

    def direction(self) -> Tensor:
        """(L, d) unit vectors in raw activation space, pointing toward "true"."""
        raw = get_method(self.method).direction(self.state)
        oriented = raw * self.state["calib_a"].sign()[:, None]
        return oriented / oriented.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def check_inputs(method: str, train: ProbeInputs) -> None:
    m = get_method(method)
    if m.uses_pairs and not train.has_pairs:
        raise ConfigError(f"method {method!r} needs contrast pairs, and none were built; "
                          "use --pairs negation or burns")
    if train.y.min() == train.y.max():
        raise ConfigError(f"the training split has only {'true' if train.y[0] else 'false'} "
                          "statements; a probe needs both")


def fit_probe(method: str, train: ProbeInputs, val: ProbeInputs, layers: list[int],
              settings: MethodSettings | None = None, refit: bool = True) -> FittedProbe:
    """Fit ``method`` on all layers and choose its hyperparameters and layer on validation.

    With ``refit`` a supervised method's chosen hyperparameters are then frozen and it is
    fitted again on train + validation (the usual last step of model selection: more data,
    same choices), and calibrated on those rows too. Unsupervised methods are not refitted:
    CCS is non-convex, and a second fit can land on another solution than the one whose
    validation accuracy chose the layer. Test rows are never seen.
    """
    settings = settings or MethodSettings()
    check_inputs(method, train)
    m = get_method(method)
    start = time.perf_counter()
    state = calibrate(m, m.fit(train, val, settings), train)
    probe = FittedProbe(method, state, list(layers), layers[0])
    choice = choose_layer(probe, val)
    probe.best_layer = layers[choice.index]
    refit = refit and m.uses_labels
    if refit:
        both = concat_inputs(train, val)
        probe.state = calibrate(m, m.fit(both, val, settings, fixed=state), both)
    probe.info = {"fit_seconds": time.perf_counter() - start, "refit_on_train_and_val": refit,
                  "val_accuracy": _finite(choice.accuracy), "val_auroc": _finite(choice.auroc),
                  "settings": _settings_json(settings)}
    return probe


def calibrate(m, state: dict[str, Tensor], rows: ProbeInputs) -> dict[str, Tensor]:
    """Add ``calib_a``/``calib_b``: the sign (probabilistic methods) or Platt scaling."""
    raw = m.raw_scores(state, rows)
    if m.native_probability:
        a, b = orientation(raw, rows.y), torch.zeros(raw.shape[0])
    else:
        a, b = logistic_newton_1d(raw, rows.y)
    return {**state, "calib_a": a, "calib_b": b}


def concat_inputs(a: ProbeInputs, b: ProbeInputs) -> ProbeInputs:
    def cat(s: Tensor | None, t: Tensor | None) -> Tensor | None:
        return None if s is None or t is None else torch.cat([s, t], dim=1)

    return ProbeInputs(torch.cat([a.x, b.x], dim=1), torch.cat([a.y, b.y]),
                       cat(a.x_pos, b.x_pos), cat(a.x_neg, b.x_neg))


def orientation(raw: Tensor, y: Tensor) -> Tensor:
    """+1 per layer where thresholding the raw logit at 0 agrees with y at least half the time."""
    agree = accuracy((raw > 0).float(), y)
    return torch.where(agree < 0.5, -1.0, 1.0)


@dataclass(frozen=True)
class LayerChoice:
    index: int
    accuracy: Tensor  # (L,) validation accuracy
    auroc: Tensor  # (L,)


def choose_layer(probe: FittedProbe, val: ProbeInputs) -> LayerChoice:
    logits = probe.logits(val)
    acc = accuracy((logits > 0).float(), val.y)
    auc = auroc(logits, val.y)
    # highest accuracy; among equal accuracies the highest AUROC; then the shallowest layer
    # (argmax returns the first of equal values)
    tied = acc == acc.max()
    key = torch.where(tied, torch.nan_to_num(auc, nan=-1.0), torch.full_like(auc, -2.0))
    return LayerChoice(int(key.argmax()), acc, auc)


def _finite(values: Tensor) -> list[float | None]:
    """A JSON-safe list: NaN (a class absent) becomes None."""
    return [None if v != v else v for v in values.tolist()]


def _settings_json(settings: MethodSettings) -> dict:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
