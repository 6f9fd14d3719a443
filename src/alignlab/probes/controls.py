"""Controls that keep probe results honest; the run reports them beside every result.

* shuffled labels: a supervised method fitted on permuted labels must score chance on test;
* random directions: the AUROC distribution of many random directions per layer (the floor);
* distractor (Farquhar et al. 2023): inject a known feature that flips between the halves of
  each contrast pair, with a given strength relative to truth, and ask whether an unsupervised
  method found truth or the distractor;
* held-out templates: a probe fitted on some wordings, tested on others;
* likelihood: does the probe only track how probable the sentence is?

Every choice (layer, sign, calibration) is made on train/validation rows as in the main run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .fit import FittedProbe, fit_probe
from .methods import MethodSettings, ProbeInputs
from .methods.base import standardize_stats
from .methods.random import random_directions
from .metrics import accuracy, auroc

N_RANDOM_DIRECTIONS = 100
DISTRACTOR_RATIOS = (0.5, 2.0)  # distractor strength / truth strength: one weaker, one stronger


def _r(v) -> float | None:
    v = float(v)
    return None if v != v else round(v, 6)


def _rl(t: Tensor) -> list[float | None]:
    return [_r(v) for v in t]


@dataclass
class Splits:
    """The three splits of one dataset's probe rows."""

    train: ProbeInputs
    val: ProbeInputs
    test: ProbeInputs


def permuted(inputs: ProbeInputs, generator: torch.Generator) -> ProbeInputs:
    """Random labels with the same positive rate, drawn within each true class so that they are
    uncorrelated with truth in this very sample.

    A plain permutation is uncorrelated only in expectation: on smollm2's cities one seed's
    permuted train and validation labels agreed with truth on 48% of rows, and the probe, for
    which truth is the easiest direction to fit, learned anti-truth from that 4% and scored test
    AUROC 0.37 instead of ~0.5.
    """
    y = inputs.y
    rate = float(y.mean())
    labels = torch.empty_like(y)
    for cls in (0.0, 1.0):
        rows = torch.nonzero(y == cls).squeeze(1)
        rows = rows[torch.randperm(rows.numel(), generator=generator)]
        ones = round(rate * rows.numel())
        labels[rows] = (torch.arange(rows.numel()) < ones).to(y.dtype)
    return inputs.with_labels(labels)


def shuffled_labels(method: str, splits: Splits, layers: list[int], settings: MethodSettings,
                    seed: int = 0) -> dict:
    """Fit on permuted train/val labels; evaluate on the true test labels (expect ~0.5)."""
    g = torch.Generator().manual_seed(seed + 1)
    probe = fit_probe(method, permuted(splits.train, g), permuted(splits.val, g), layers, settings)
    logits = probe.logits(splits.test)
    auc = auroc(logits, splits.test.y)
    acc = accuracy((logits > 0).float(), splits.test.y)
    i = probe.best_index
    return {"layer": probe.best_layer, "accuracy": _r(acc[i]), "auroc": _r(auc[i]),
            "auroc_by_layer": _rl(auc), "max_auroc": _r(auc.max())}


def random_direction_aurocs(train: ProbeInputs, test: ProbeInputs, n: int = N_RANDOM_DIRECTIONS,
                            seed: int = 0) -> Tensor:
    """(n, L) test AUROC of ``n`` random directions per layer, each oriented on train."""
    mean, std = standardize_stats(train.x)
    dirs = random_directions(train.n_layers, train.d, n, seed + 2)  # (n, L, d)
    z_train = (train.x - mean[:, None]) / std[:, None]
    z_test = (test.x - mean[:, None]) / std[:, None]
    sign = torch.where(auroc(torch.einsum("lnd,kld->kln", z_train, dirs), train.y) < 0.5, -1.0, 1.0)
    return auroc(sign[..., None] * torch.einsum("lnd,kld->kln", z_test, dirs), test.y)


def random_directions_summary(aucs: Tensor) -> dict:
    return {"n_directions": aucs.shape[0], "auroc_mean": _rl(aucs.mean(0)),
            "auroc_p95": _rl(aucs.quantile(0.95, dim=0)), "auroc_max": _rl(aucs.amax(0))}


# ---------------------------------------------------------------------------------------------
# Distractor (Farquhar et al. 2023: CCS finds any prominent feature that flips between halves)


@dataclass(frozen=True)
class Distractor:
    """A feature z = +-1 per row added to x+ and subtracted from x- along ``direction``."""

    direction: Tensor  # (L, d) unit, orthogonal to the truth direction of the pair difference
    separation: Tensor  # (L,) distance between the z = +1 and z = -1 means of x+ - x-
    noise: Tensor  # (L,) std of the Gaussian jitter added along the direction


def truth_geometry(train: ProbeInputs) -> tuple[Tensor, Tensor, Tensor]:
    """Truth in the pair difference x+ - x-: unit direction (L, d), class-mean separation (L,),
    within-class std along it (L,)."""
    diff = train.x_pos - train.x_neg  # (L, N, d)
    pos = train.y.bool()
    delta = diff[:, pos].mean(1) - diff[:, ~pos].mean(1)  # (L, d)
    sep = delta.norm(dim=-1)
    unit = delta / sep[:, None].clamp_min(1e-12)
    proj = torch.einsum("lnd,ld->ln", diff, unit)
    within = torch.cat([proj[:, pos] - proj[:, pos].mean(1, keepdim=True),
                        proj[:, ~pos] - proj[:, ~pos].mean(1, keepdim=True)], dim=1).std(dim=1)
    return unit, sep, within


def make_distractor(train: ProbeInputs, ratio: float, seed: int) -> Distractor:
    """A distractor ``ratio`` times as separable as truth: its class-mean separation is ratio x
    truth's and its jitter equals truth's within-class spread, so d' scales by ``ratio``."""
    unit, sep, within = truth_geometry(train)
    g = torch.Generator().manual_seed(seed + 3)
    d = torch.randn(unit.shape, generator=g)
    d = d - (d * unit).sum(-1, keepdim=True) * unit
    d = d / d.norm(dim=-1, keepdim=True)
    return Distractor(d, ratio * sep, within)


def inject(inputs: ProbeInputs, distractor: Distractor, z: Tensor, seed: int) -> ProbeInputs:
    """x+ += s/2 * u, x- -= s/2 * u with s = z * separation / 2 + jitter, per row."""
    g = torch.Generator().manual_seed(seed + 4)
    jitter = torch.randn(distractor.noise.shape[0], inputs.n, generator=g) * distractor.noise[:, None]
    s = z[None, :] * distractor.separation[:, None] / 2 + jitter  # (L, N)
    shift = 0.5 * s[..., None] * distractor.direction[:, None, :]  # (L, N, d)
    return ProbeInputs(inputs.x, inputs.y, inputs.x_pos + shift, inputs.x_neg - shift)


def balanced_signs(n: int, generator: torch.Generator) -> Tensor:
    """(n,) a random +-1 per row, half of each, independent of the labels."""
    z = torch.ones(n)
    z[: n // 2] = -1
    return z[torch.randperm(n, generator=generator)]


def distractor_check(method: str, splits: Splits, layers: list[int], settings: MethodSettings,
                     ratio: float, seed: int = 0) -> dict:
    """Fit ``method`` on pairs carrying a distractor; did it find truth or the distractor?"""
    distractor = make_distractor(splits.train, ratio, seed)
    g = torch.Generator().manual_seed(seed + 5)
    zs = {name: balanced_signs(getattr(splits, name).n, g) for name in ("train", "val", "test")}
    injected = {name: inject(getattr(splits, name), distractor, zs[name], seed + i)
                for i, name in enumerate(("train", "val", "test"))}
    probe = fit_probe(method, injected["train"], injected["val"], layers, settings)
    logits = probe.logits(injected["test"])
    truth = (auroc(logits, splits.test.y) - 0.5).abs()  # (L,)
    distract = (auroc(logits, (zs["test"] > 0).float()) - 0.5).abs()
    i = probe.best_index
    found = "distractor" if distract[i] > truth[i] else "truth"
    return {"ratio": ratio, "layer": probe.best_layer, "found": found, "flagged": found == "distractor",
            "truth_auroc_distance": _r(truth[i]), "distractor_auroc_distance": _r(distract[i]),
            "layers_won_by_distractor": int((distract > truth).sum())}


# ---------------------------------------------------------------------------------------------


def held_out_templates(probe: FittedProbe, same_template_test: ProbeInputs, held_out: ProbeInputs,
                       trained: list[int], held: list[int]) -> dict:
    """The probe as fitted (on ``trained`` templates) applied to test rows of ``held``."""
    i = probe.best_index
    same = accuracy(probe.predict(same_template_test), same_template_test.y)
    logits = probe.logits(held_out)
    acc = accuracy((logits > 0).float(), held_out.y)
    auc = auroc(logits, held_out.y)
    return {"trained_templates": trained, "held_out_templates": held, "layer": probe.best_layer,
            "same_template_accuracy": _r(same[i]), "held_out_accuracy": _r(acc[i]),
            "held_out_auroc": _r(auc[i]), "held_out_accuracy_by_layer": _rl(acc), "n_held_out": held_out.n}


def likelihood_control(logits: Tensor, logprob: Tensor, y: Tensor) -> dict:
    """Does the probe track the statement's log-probability? On test rows, at one layer.

    ``logprob_auroc``: log P(statement) alone as a truth score; ``correlation``: Pearson r of
    the probe's logit with it; ``partial_auroc``: the probe's AUROC after the least-squares fit
    on log-probability is removed from its logit (on these same rows: a description, not a
    model choice).
    """
    keep = ~torch.isnan(logprob)
    s, lp, yy = logits[keep].double(), logprob[keep].double(), y[keep]
    lp_c, s_c = lp - lp.mean(), s - s.mean()
    denom = (lp_c.norm() * s_c.norm()).clamp_min(1e-12)
    beta = (lp_c * s_c).sum() / (lp_c * lp_c).sum().clamp_min(1e-12)
    residual = s_c - beta * lp_c
    return {"n": int(keep.sum()), "logprob_auroc": _r(auroc(lp.float(), yy)),
            "correlation": _r((lp_c * s_c).sum() / denom), "probe_auroc": _r(auroc(s.float(), yy)),
            "partial_auroc": _r(auroc(residual.float(), yy))}
