"""Causal check: push the residual stream along the probe direction and watch P("True").

At the probe's layer ``resid.{l}``, every position of the zero-shot baseline's prompt
("<statement> This statement is", then P(" true") against P(" false")) gets ``+alpha * u`` or
``-alpha * u`` added, with ``u`` the probe's unit direction (pointing toward "true") and
``alpha`` the distance between the true and false training statements' means along ``u`` times
``scale`` (Marks & Tegmark 2023 steer with the mass-mean difference, and find mass-mean
directions more causal than logistic-regression ones). If the model uses the direction,
P(true) rises with + and falls with -. The hook comes off in ``finally``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from ..errors import SiteError
from ..models.loader import LoadedModel
from .datasets import ZERO_SHOT_ANSWERS, ZERO_SHOT_PROMPT
from .features import answer_probability
from .fit import FittedProbe
from .methods import ProbeInputs


@contextmanager
def steering(lm: LoadedModel, layer: int, vector: Tensor) -> Iterator[None]:
    """Add ``vector`` (d,) to ``resid.{layer}`` at every position while the block is open."""
    if not 0 <= layer <= lm.n_layers:
        raise SiteError(f"resid layer {layer} is out of range; this model has resid.0..resid.{lm.n_layers}")
    blocks = lm.anatomy.blocks

    def add_to_output(_module, _args, output):
        if isinstance(output, tuple):
            return (output[0] + vector.to(output[0]), *output[1:])
        return output + vector.to(output)

    def add_to_input(_module, args, kwargs):
        if args:
            return (args[0] + vector.to(args[0]), *args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = kwargs["hidden_states"] + vector.to(kwargs["hidden_states"])
        return args, kwargs

    if layer == 0:
        handle = blocks[0].register_forward_pre_hook(add_to_input, with_kwargs=True)
    else:
        handle = blocks[layer - 1].register_forward_hook(add_to_output)
    try:
        yield
    finally:
        handle.remove()


def steering_size(direction: Tensor, train_x: Tensor, train_y: Tensor) -> float:
    """Distance between true and false training means along ``direction`` (d,), at one layer."""
    pos = train_y.bool()
    return float(((train_x[pos].mean(0) - train_x[~pos].mean(0)) * direction).sum().abs())


@torch.no_grad()
def causal_check(lm: LoadedModel, probe: FittedProbe, statements: Sequence[str], labels: Tensor,
                 train: ProbeInputs, scale: float = 3.0, batch_size: int = 32,
                 base: Tensor | None = None) -> dict:
    """Mean P(True) of the zero-shot prompt without and with +-alpha*u at the probe's layer."""
    i = probe.best_index
    u = probe.direction()[i]  # (d,)
    alpha = scale * steering_size(u, train.x[i], train.y)
    prompts = [ZERO_SHOT_PROMPT.format(statement=s) for s in statements]
    if base is None:
        base = answer_probability(lm, prompts, ZERO_SHOT_ANSWERS, batch_size)
    with steering(lm, probe.best_layer, alpha * u):
        plus = answer_probability(lm, prompts, ZERO_SHOT_ANSWERS, batch_size)
    with steering(lm, probe.best_layer, -alpha * u):
        minus = answer_probability(lm, prompts, ZERO_SHOT_ANSWERS, batch_size)
    true = labels.bool()
    return {
        "layer": probe.best_layer, "alpha": round(alpha, 6), "scale": scale, "n": len(prompts),
        "mean_resid_norm": round(float(train.x[i].norm(dim=-1).mean()), 6),
        "p_true_base": _m(base), "p_true_plus": _m(plus), "p_true_minus": _m(minus),
        "delta_plus": _m(plus - base), "delta_minus": _m(minus - base),
        "delta_plus_false_statements": _m((plus - base)[~true]),
        "delta_minus_true_statements": _m((minus - base)[true]),
    }


def _m(t: Tensor) -> float | None:
    return round(float(t.mean()), 6) if t.numel() else None
