"""Run a model with a site's activation replaced: the coder's output spliced into the forward pass.

``replacing(lm, pair, fn)`` hooks the output site so that, during the block, its activation
``y`` (B, T, d_out) becomes ``fn(x, y)``, where ``x`` is the input site's activation from the
same forward pass (``x is y`` for an SAE). Hooks always come off, in ``finally``. The module a
site names is the same one ``alignlab.activations.capturing`` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from ..activations.sites import Site, forward_order, parse_site
from ..errors import SiteError
from ..models import LoadedModel
from .data import SitePair

ReplaceFn = Callable[[Tensor, Tensor], Tensor]  # (x (B,T,d_in), y (B,T,d_out)) -> (B,T,d_out)


def _site_module(lm: LoadedModel, site: Site) -> tuple[nn.Module, bool]:
    """(module, is_pre_hook): where ``site`` is read, as in ``activations.capture``."""
    anatomy = lm.anatomy
    if site.kind == "resid":
        if site.layer == 0:
            return anatomy.blocks[0], True
        return anatomy.blocks[site.layer - 1], False
    if site.kind == "attn":
        return anatomy.attn(site.layer), False
    if site.kind == "mlp":
        return anatomy.mlp(site.layer), False
    return anatomy.mlp(site.layer), True  # mlp_in: the MLP's input


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def _with_first(value, tensor: Tensor):
    return (tensor, *value[1:]) if isinstance(value, tuple) else tensor


@contextmanager
def replacing(lm: LoadedModel, pair: SitePair, fn: ReplaceFn) -> Iterator[None]:
    """Inside the block, every forward pass of ``lm`` has ``pair.output`` replaced by ``fn``."""
    in_site = parse_site(pair.input, lm.n_layers)
    out_site = parse_site(pair.output, lm.n_layers)
    if forward_order(in_site) > forward_order(out_site):
        raise SiteError(
            f"transcoder input {pair.input} comes after its output {pair.output} in the forward "
            "pass, so it cannot be spliced; the input site must come first"
        )
    seen: dict[str, Tensor] = {}
    handles = []
    try:
        if in_site != out_site:
            handles.append(_register(lm, in_site, lambda t: seen.__setitem__("x", t)))

        def replace(y: Tensor) -> Tensor:
            return fn(seen.get("x", y), y)

        handles.append(_register(lm, out_site, replace))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _register(lm: LoadedModel, site: Site, fn: Callable[[Tensor], Tensor | None]):
    """Hook ``site``; ``fn`` sees its tensor and may return a replacement (None keeps it)."""
    module, pre = _site_module(lm, site)
    if pre:
        def pre_hook(_module, args, kwargs):
            tensor = args[0] if args else kwargs["hidden_states"]
            new = fn(tensor)
            if new is None:
                return None
            if args:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(_module, _args, output):
        new = fn(_first(output))
        return None if new is None else _with_first(output, new)

    return module.register_forward_hook(hook)
