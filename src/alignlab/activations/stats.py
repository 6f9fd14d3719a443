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

# Sites whose statistics are computed in one go: few, large tensor ops rather than many small
# ones, since every op is a parallel region whose start-up dominates on a busy CPU. Bounded so
# the float32 temporaries stay near 64 MB (two of 32 MB).
_CHUNK_ELEMENTS = 8 << 20


class ShardStats:
    """The sums one shard accumulates, batch by batch, for every site at once."""

    def __init__(self, sites: list[str], width: int, device: torch.device | str = "cpu"):
        self.sites = list(sites)
        n = len(self.sites)
        self.sum = torch.zeros(n, 2, width, dtype=torch.float64, device=device)  # (S, 2, d)
        self.sumsq = torch.zeros(n, 2, width, dtype=torch.float64, device=device)  # (S, 2, d)
        self.norm = torch.zeros(n, 2, dtype=torch.float64, device=device)  # (S, 2)

    @torch.no_grad()
    def add(self, x: Tensor) -> None:
        """Add one batch of every site, ``x`` (S, B, T, d), as it is stored."""
        per_site = x[0].numel()
        step = max(1, _CHUNK_ELEMENTS // max(per_site, 1))
        for start in range(0, x.shape[0], step):
            self._add_chunk(slice(start, start + step), x[start : start + step])

    def _add_chunk(self, where: slice, x: Tensor) -> None:
        x = x.float()  # (s, B, T, d); batch partials in float32, accumulated in float64
        square = x.square()
        norms = square.sum(-1).sqrt_()  # (s, B, T)
        sums = torch.stack([x.flatten(1, 2).sum(1), x[:, :, 0].sum(1)], 1)  # (s, 2, d)
        sumsqs = torch.stack([square.flatten(1, 2).sum(1), square[:, :, 0].sum(1)], 1)
        norm_sums = torch.stack([norms.sum((1, 2)), norms[:, :, 0].sum(1)], 1)  # (s, 2)
        self.sum[where] += sums.double()
        self.sumsq[where] += sumsqs.double()
        self.norm[where] += norm_sums.double()

    def tensors(self) -> dict[str, Tensor]:
        """The sums under their shard tensor names, on the CPU."""
        out = {}
        for i, site in enumerate(self.sites):
            s_sum, s_sq, s_norm = stats_names(site)
            out[s_sum], out[s_sq], out[s_norm] = (
                self.sum[i].cpu(),
                self.sumsq[i].cpu(),
                self.norm[i].cpu(),
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
