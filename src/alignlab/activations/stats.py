"""Per-site running statistics: mean, per-dimension variance and mean L2 norm.

Each shard keeps float64 sums (of x, of x*x, of ||x||) over two groups of rows: every position,
and position 0 alone. Sums combine exactly across shards and ranks, and "excluding position 0"
is the difference of the two, so no second pass is needed. Position 0 is singled out because
attention-sink tokens carry norms far above the rest (Xiao et al. 2023, "Efficient Streaming
Language Models with Attention Sinks"), which would otherwise dominate a per-layer mean norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .shards import stats_names


class ShardStats:
    """The sums one shard accumulates, batch by batch, for each site."""

    def __init__(self, widths: dict[str, int]):
        self.sums = {s: torch.zeros(2, w, dtype=torch.float64) for s, w in widths.items()}
        self.sumsqs = {s: torch.zeros(2, w, dtype=torch.float64) for s, w in widths.items()}
        self.norms = {s: torch.zeros(2, dtype=torch.float64) for s in widths}

    @torch.no_grad()
    def add(self, site: str, x: Tensor) -> None:
        """Add one batch ``x`` (B, T, d) as the model produced it (before any dtype change)."""
        x = x.float()
        rows = x.reshape(-1, x.shape[-1])  # (B*T, d)
        square = rows.square()
        # Batch partials in float32 (a few thousand rows), accumulated across batches in float64.
        norms = square.sum(1).sqrt_()  # (B*T,)
        first = x[:, 0]  # (B, d)
        self.sums[site] += torch.stack([rows.sum(0), first.sum(0)]).to("cpu", torch.float64)
        self.sumsqs[site] += torch.stack([square.sum(0), first.square().sum(0)]).to(
            "cpu", torch.float64
        )
        first_norms = norms.view(x.shape[0], x.shape[1])[:, 0]
        self.norms[site] += torch.stack([norms.sum(), first_norms.sum()]).to("cpu", torch.float64)

    def tensors(self) -> dict[str, Tensor]:
        """The sums under their shard tensor names."""
        out = {}
        for site in self.sums:
            s_sum, s_sq, s_norm = stats_names(site)
            out[s_sum], out[s_sq], out[s_norm] = (
                self.sums[site],
                self.sumsqs[site],
                self.norms[site],
            )
        return out


@dataclass
class SiteStats:
    """One site's statistics over a whole store."""

    site: str
    count: int  # rows
    mean: Tensor  # (d,)
    var: Tensor  # (d,) population variance per dimension
    mean_norm: float  # mean L2 norm of a row
    count_excl_first: int  # rows at positions >= 1
    mean_excl_first: Tensor | None  # (d,); None when every row is position 0
    var_excl_first: Tensor | None
    mean_norm_excl_first: float | None

    @property
    def mean_var(self) -> float:
        """Average per-dimension variance (trace of the covariance / d)."""
        return float(self.var.mean())

    def to_json(self) -> dict:
        return {
            "count": self.count,
            "mean_norm": self.mean_norm,
            "mean_var": self.mean_var,
            "count_excl_first": self.count_excl_first,
            "mean_norm_excl_first": self.mean_norm_excl_first,
            "mean_var_excl_first": (
                None if self.var_excl_first is None else float(self.var_excl_first.mean())
            ),
            "mean": _rounded(self.mean),
            "var": _rounded(self.var),
            "mean_excl_first": _rounded(self.mean_excl_first),
            "var_excl_first": _rounded(self.var_excl_first),
        }

    @classmethod
    def from_json(cls, site: str, obj: dict) -> SiteStats:
        def vec(key):
            return None if obj.get(key) is None else torch.tensor(obj[key], dtype=torch.float64)

        return cls(
            site,
            int(obj["count"]),
            vec("mean"),
            vec("var"),
            float(obj["mean_norm"]),
            int(obj["count_excl_first"]),
            vec("mean_excl_first"),
            vec("var_excl_first"),
            obj.get("mean_norm_excl_first"),
        )


def _rounded(vector: Tensor | None) -> list[float] | None:
    """8 significant digits: float32 precision, and a manifest a third the size."""
    return None if vector is None else [float(f"{v:.8g}") for v in vector.tolist()]


def site_stats(
    site: str, total: Tensor, total_sq: Tensor, norm: Tensor, n_rows: int, n_first: int
) -> SiteStats:
    """Statistics from summed ``stats.<site>.*`` tensors (rows: all, position 0)."""
    mean, var = _moments(total[0], total_sq[0], n_rows)
    rest = n_rows - n_first
    if rest > 0:
        mean_x, var_x = _moments(total[0] - total[1], total_sq[0] - total_sq[1], rest)
        norm_x = float((norm[0] - norm[1]) / rest)
    else:
        mean_x = var_x = norm_x = None
    return SiteStats(site, n_rows, mean, var, float(norm[0] / n_rows), rest, mean_x, var_x, norm_x)


def _moments(total: Tensor, total_sq: Tensor, n: int) -> tuple[Tensor, Tensor]:
    mean = total / n
    var = (total_sq / n - mean.square()).clamp_min(0.0)  # float64 sums keep cancellation small
    return mean, var
