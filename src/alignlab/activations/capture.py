"""Capture activations at named sites with hooks that always come off.

When logits are not needed, the forward pass stops as soon as the last requested site has
been read (early exit), so capturing ``resid.3`` of a 30-layer model costs 3 blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..models.loader import LoadedModel
from .sites import Site, expand_sites


class _StopForward(Exception):
    """Raised inside a hook once every requested site is captured."""


@dataclass
class Captured:
    """What one forward pass produced: activations by site name, and logits if asked."""

    acts: dict[str, Tensor] = field(default_factory=dict)  # name -> (B, T, d)
    logits: Tensor | None = None  # (B, T, vocab)
    stopped_early: bool = False


def _output_tensor(output) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def capturing(
    lm: LoadedModel,
    sites: list[Site],
    early_exit: bool = True,
    detach: bool = True,
    transform: Callable[[str, Tensor], Tensor] | None = None,
) -> Iterator[Captured]:
    """Register hooks for ``sites`` on ``lm``; inside the block, run the model yourself.

    With ``early_exit``, the forward raises once all sites are captured: call through
    :func:`run_with_sites` (or catch nothing yourself: the context manager swallows the stop).
    ``transform(name, tensor)``, when given, runs inside the hook and its result is kept instead
    of the tensor (a harvest converts to the store dtype there, so full-precision copies of
    every site are never held at once).
    """
    result = Captured()
    wanted = {s.name for s in sites}
    handles = []

    def store(name: str, tensor: Tensor) -> None:
        tensor = tensor.detach() if detach else tensor
        result.acts[name] = transform(name, tensor) if transform is not None else tensor
        if early_exit and wanted.issubset(result.acts):
            result.stopped_early = True
            raise _StopForward

    def forward_hook(name: str):
        return lambda _module, _args, output: store(name, _output_tensor(output))

    def pre_hook(name: str):
        return lambda _module, args, kwargs: store(name, args[0] if args else kwargs["hidden_states"])

    anatomy = lm.anatomy
    try:
        for site in sites:
            if site.kind == "resid" and site.layer == 0:
                handles.append(anatomy.blocks[0].register_forward_pre_hook(pre_hook(site.name), with_kwargs=True))
            elif site.kind == "resid":
                handles.append(anatomy.blocks[site.layer - 1].register_forward_hook(forward_hook(site.name)))
            elif site.kind == "attn":
                handles.append(anatomy.attn(site.layer).register_forward_hook(forward_hook(site.name)))
            elif site.kind == "mlp":
                handles.append(anatomy.mlp(site.layer).register_forward_hook(forward_hook(site.name)))
            else:  # mlp_in
                handles.append(anatomy.mlp(site.layer).register_forward_pre_hook(pre_hook(site.name), with_kwargs=True))
        try:
            yield result
        except _StopForward:
            pass
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def run_with_sites(
    lm: LoadedModel,
    input_ids: Tensor,
    sites: str | list[str] | list[Site],
    attention_mask: Tensor | None = None,
    need_logits: bool = False,
) -> Captured:
    """Run one batch ``input_ids`` (B, T) and return the requested sites as (B, T, d) tensors."""
    if sites and isinstance(sites, list) and isinstance(sites[0], Site):
        resolved = list(sites)
    else:
        resolved = expand_sites(sites, lm.n_layers)
    input_ids = input_ids.to(lm.device)
    if attention_mask is not None:
        attention_mask = attention_mask.to(lm.device)
    with capturing(lm, resolved, early_exit=not need_logits) as captured:
        out = lm.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        captured.logits = out.logits if need_logits else None
    return captured
