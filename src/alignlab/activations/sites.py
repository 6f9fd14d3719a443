"""Site names: where in the model an activation is read.

``resid.{i}``: the residual stream after block i (``resid.0`` is the embedding output as it
enters block 0, ``resid.{L}`` the last block's output before the final norm);
``attn.{i}`` / ``mlp.{i}``: block i's attention and MLP outputs; ``mlp_in.{i}``: the MLP input.
Patterns: ``resid.*``, ``mlp.3-5``, and comma-separated lists of either.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from ..errors import SiteError

KINDS = ("resid", "attn", "mlp", "mlp_in")


@dataclass(frozen=True, order=True)
class Site:
    """One named read-out point."""

    kind: str
    layer: int

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.layer}"

    def __str__(self) -> str:
        return self.name

    @property
    def block(self) -> int:
        """The block whose forward pass produces this site (resid.i comes from block i-1)."""
        return self.layer - 1 if self.kind == "resid" else self.layer


def layer_range(kind: str, n_layers: int) -> range:
    return range(n_layers + 1) if kind == "resid" else range(n_layers)


def all_sites(n_layers: int) -> list[Site]:
    return [Site(kind, i) for kind in KINDS for i in layer_range(kind, n_layers)]


def _valid_ranges(n_layers: int) -> str:
    return f"resid.0..resid.{n_layers}, attn/mlp/mlp_in.0..{n_layers - 1}"


def parse_site(name: str, n_layers: int) -> Site:
    """Parse one exact site name, checking its layer against the model's depth."""
    match = re.fullmatch(r"([a-z_]+)\.(-?\d+)", name.strip())
    if not match or match.group(1) not in KINDS:
        raise SiteError(
            f"unknown site {name!r}; sites are {', '.join(k + '.<layer>' for k in KINDS)} "
            f"(this model: {_valid_ranges(n_layers)}); patterns like 'resid.*' expand"
        )
    kind, layer = match.group(1), int(match.group(2))
    valid = layer_range(kind, n_layers)
    if layer not in valid:
        raise SiteError(
            f"layer {layer} is out of range for {kind!r}: this model has {n_layers} blocks, so "
            f"{kind} layers are {valid.start}..{valid.stop - 1}"
        )
    return Site(kind, layer)


def expand_sites(patterns: str | list[str], n_layers: int) -> list[Site]:
    """Expand ``'resid.*,mlp.2'``-style patterns into sites, in model order, without repeats."""
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",")]
    chosen: list[Site] = []
    for pattern in (p.strip() for p in patterns):
        if not pattern:
            continue
        for site in _expand_one(pattern, n_layers):
            if site not in chosen:
                chosen.append(site)
    if not chosen:
        raise SiteError(f"no sites given; e.g. 'resid.*' (this model: {_valid_ranges(n_layers)})")
    return sorted(chosen, key=forward_order)


def forward_order(site: Site) -> tuple[int, int]:
    """Sort key in the order a forward pass produces sites (resid.i opens block i)."""
    return site.layer, ("resid", "attn", "mlp_in", "mlp").index(site.kind)


def _expand_one(pattern: str, n_layers: int) -> list[Site]:
    span = re.fullmatch(r"([a-z_]+)\.(\d+)-(\d+)", pattern)
    if span:
        first, last = int(span.group(2)), int(span.group(3))
        parse_site(f"{span.group(1)}.{first}", n_layers)
        parse_site(f"{span.group(1)}.{last}", n_layers)
        return [Site(span.group(1), i) for i in range(first, last + 1)]
    if any(ch in pattern for ch in "*?["):
        names = [s for s in all_sites(n_layers) if fnmatch.fnmatchcase(s.name, pattern)]
        if not names:
            raise SiteError(
                f"site pattern {pattern!r} matches nothing; this model has {_valid_ranges(n_layers)}"
            )
        return names
    return [parse_site(pattern, n_layers)]
