"""How good is a coder: reconstruction metrics on held-out rows, and downstream next-token loss.

Reconstruction (over non-sink rows; sinks are reported separately as ``fvu_all_positions``):

- ``fvu``: sum ||y - y_hat||^2 / sum ||y - mean(y)||^2, the variance about the *mean* (SAELens
  once divided by the variance about zero, which flatters every coder); ``explained_variance``
  is 1 - fvu.
- ``mse``: mean squared error per element; ``cosine``: mean cosine of y_hat with y.
- ``l0``: mean active latents per row; ``dead_fraction``: latents that never fired;
  ``dense_fraction``: latents firing on more than ``dense_threshold`` of rows.
- ``shrinkage``: the relative reconstruction bias gamma of Rajamanoharan et al. 2024 (Gated
  SAEs, sec. 5): the gamma minimising E||y_hat / gamma - y||^2, i.e. E[y_hat.y_hat] / E[y_hat.y];
  below 1 means the coder shrinks its output. ``l2_ratio``: mean ||y_hat|| / ||y||.

Downstream (:func:`downstream_metrics`): the model's mean next-token cross-entropy clean, with
the coder's output spliced in at the output site, and with that site zero-ablated; the KL
divergence of the spliced and zero-ablated next-token distributions from the clean one; and
``loss_recovered = (ce_zero - ce_spliced) / (ce_zero - ce_clean)`` (SAELens' CE loss score).
Sink positions are left clean in the spliced and ablated runs, matching training.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from ..models import LoadedModel
from .arch import SparseCoder
from .data import DEFAULT_SINKS, ActivationBatch, SinkRule, SitePair, sink_mask
from .splice import replacing

DENSE_THRESHOLD = 0.1  # a latent firing on more than 10% of tokens counts as dense
EVAL_CHUNK_ROWS = 2048


@dataclass
class ReconstructionMetrics:
    fvu: float
    explained_variance: float
    mse: float
    cosine: float
    l0: float
    dead_fraction: float
    dense_fraction: float
    shrinkage: float
    l2_ratio: float
    n_rows: int  # rows the metrics above are over (non-sink)
    fvu_all_positions: float  # FVU over every row, sinks included
    n_sink_rows: int
    sink_fraction: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class DownstreamMetrics:
    ce_loss_clean: float
    ce_loss: float  # with the coder spliced in
    ce_loss_zero_ablation: float
    loss_recovered: float
    kl: float  # KL(clean || spliced), nats per token
    kl_zero_ablation: float
    n_tokens: int  # predictions averaged over

    def to_json(self) -> dict:
        return asdict(self)


class _FvuSums:
    """Streaming sums for FVU about the mean (float64, so long runs do not drift)."""

    def __init__(self, dim: int):
        self.n = 0
        self.sum_y = torch.zeros(dim, dtype=torch.float64)
        self.sum_y2 = 0.0
        self.sum_err2 = 0.0

    def add(self, y: Tensor, err: Tensor) -> None:
        y = y.double()
        self.n += y.shape[0]
        self.sum_y += y.sum(0)
        self.sum_y2 += float(y.pow(2).sum())
        self.sum_err2 += float(err.double().pow(2).sum())

    def fvu(self) -> float:
        if self.n == 0:
            return float("nan")
        centred = self.sum_y2 - float(self.sum_y.pow(2).sum()) / self.n
        return self.sum_err2 / centred if centred > 0 else float("nan")


class _RowSums:
    """Everything else, over non-sink rows."""

    def __init__(self, width: int, dim: int):
        self.fvu = _FvuSums(dim)
        self.cos = 0.0
        self.l0 = 0.0
        self.dot = 0.0  # sum y_hat . y
        self.hat2 = 0.0  # sum ||y_hat||^2
        self.l2_ratio = 0.0
        self.fires = torch.zeros(width, dtype=torch.float64)

    def add(self, y: Tensor, y_hat: Tensor, codes: Tensor) -> None:
        self.fvu.add(y, y - y_hat)
        y, y_hat = y.double(), y_hat.double()
        self.cos += float(F.cosine_similarity(y_hat, y, dim=1, eps=1e-12).sum())
        active = codes != 0
        self.l0 += float(active.sum())
        self.fires += active.sum(0).double()
        self.dot += float((y_hat * y).sum())
        self.hat2 += float(y_hat.pow(2).sum())
        self.l2_ratio += float((y_hat.norm(dim=1) / y.norm(dim=1).clamp_min(1e-12)).sum())


@torch.no_grad()
def evaluate_reconstruction(
    coder: SparseCoder, batches: Iterable[ActivationBatch], dense_threshold: float = DENSE_THRESHOLD
) -> ReconstructionMetrics:
    """Reconstruction metrics of ``coder`` over every batch (sinks reported separately)."""
    kept = _RowSums(coder.width, coder.cfg.out_dim)
    every = _FvuSums(coder.cfg.out_dim)
    n_sink = 0
    for batch in batches:
        for rows in _chunks(batch):
            codes = coder.encode(rows.x)  # (n, width)
            y_hat = coder.decode(codes) + coder.skip_term(rows.x)
            y = rows.target
            every.add(y, y - y_hat)
            kept.add(y[rows.keep], y_hat[rows.keep], codes[rows.keep])
            n_sink += int((~rows.keep).sum())
    return _finish(kept, every, n_sink, dense_threshold)


def _chunks(batch: ActivationBatch) -> Iterable[ActivationBatch]:
    for start in range(0, batch.n_rows, EVAL_CHUNK_ROWS):
        rows = slice(start, start + EVAL_CHUNK_ROWS)
        y = batch.y[rows] if batch.y is not None else None
        yield ActivationBatch(batch.x[rows].float(), None if y is None else y.float(), batch.keep[rows])


def _finish(kept: _RowSums, every: _FvuSums, n_sink: int, dense_threshold: float) -> ReconstructionMetrics:
    n = kept.fvu.n
    if n == 0:
        raise DataError("no evaluation rows left after excluding attention sinks; give more tokens")
    dim = kept.fvu.sum_y.numel()
    fvu = kept.fvu.fvu()
    density = kept.fires / n
    return ReconstructionMetrics(
        fvu=fvu,
        explained_variance=1 - fvu,
        mse=kept.fvu.sum_err2 / (n * dim),
        cosine=kept.cos / n,
        l0=kept.l0 / n,
        dead_fraction=float((density == 0).double().mean()),
        dense_fraction=float((density > dense_threshold).double().mean()),
        shrinkage=kept.hat2 / kept.dot if kept.dot != 0 else float("nan"),
        l2_ratio=kept.l2_ratio / n,
        n_rows=n,
        fvu_all_positions=every.fvu(),
        n_sink_rows=n_sink,
        sink_fraction=n_sink / (n + n_sink),
    )


# ----- downstream ------------------------------------------------------------------------

class _LossSums:
    def __init__(self):
        self.n = 0
        self.ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
        self.kl = {"spliced": 0.0, "zero": 0.0}


@torch.no_grad()
def downstream_metrics(
    lm: LoadedModel,
    coder: SparseCoder,
    pair: SitePair,
    token_batches: Iterable[Tensor],
    sinks: SinkRule = DEFAULT_SINKS,
) -> DownstreamMetrics:
    """Next-token CE and KL with ``pair.output`` replaced by the coder's output, and zeroed."""
    sums = _LossSums()
    for ids in token_batches:
        ids = ids.to(lm.device)
        clean = _log_probs(lm, ids)  # (B, T-1, V)
        runs = {
            "spliced": _spliced_log_probs(lm, ids, pair, _coder_fn(coder, sinks)),
            "zero": _spliced_log_probs(lm, ids, pair, _zero_fn(sinks, pair)),
        }
        targets = ids[:, 1:]
        sums.n += targets.numel()
        sums.ce["clean"] += float(_nll_sum(clean, targets))
        for name, lp in runs.items():
            sums.ce[name] += float(_nll_sum(lp, targets))
            sums.kl[name] += float(_kl_sum(clean, lp))
    if sums.n == 0:
        raise DataError("no token batches to evaluate downstream loss on; give more tokens")
    ce = {k: v / sums.n for k, v in sums.ce.items()}
    gap = ce["zero"] - ce["clean"]
    return DownstreamMetrics(
        ce_loss_clean=ce["clean"],
        ce_loss=ce["spliced"],
        ce_loss_zero_ablation=ce["zero"],
        loss_recovered=(ce["zero"] - ce["spliced"]) / gap if gap != 0 else float("nan"),
        kl=sums.kl["spliced"] / sums.n,
        kl_zero_ablation=sums.kl["zero"] / sums.n,
        n_tokens=sums.n,
    )


def _log_probs(lm: LoadedModel, ids: Tensor) -> Tensor:
    logits = lm.model(input_ids=ids, use_cache=False).logits[:, :-1]  # (B, T-1, V)
    return logits.float().log_softmax(-1)


def _spliced_log_probs(lm: LoadedModel, ids: Tensor, pair: SitePair, fn) -> Tensor:
    with replacing(lm, pair, fn):
        return _log_probs(lm, ids)


def _nll_sum(log_probs: Tensor, targets: Tensor) -> Tensor:
    return -log_probs.gather(-1, targets[..., None]).sum()


def _kl_sum(clean: Tensor, other: Tensor) -> Tensor:
    """sum over positions of KL(clean || other)."""
    return (clean.exp() * (clean - other)).sum()


def _keep_positions(x: Tensor, y: Tensor, sinks: SinkRule, transcoder: bool) -> Tensor:
    mask = sink_mask(y, sinks)
    if transcoder:
        mask |= sink_mask(x, sinks)
    return ~mask  # (B, T)


def _coder_fn(coder: SparseCoder, sinks: SinkRule):
    transcoder = coder.cfg.transcoder

    def replace(x: Tensor, y: Tensor) -> Tensor:
        keep = _keep_positions(x, y, sinks, transcoder)
        rows = x.reshape(-1, x.shape[-1]).float()  # (B*T, d_in)
        out = coder(rows).reshape(*y.shape[:-1], -1).to(y.dtype)  # (B, T, d_out)
        return torch.where(keep[..., None], out, y)

    return replace


def _zero_fn(sinks: SinkRule, pair: SitePair):
    def replace(x: Tensor, y: Tensor) -> Tensor:
        keep = _keep_positions(x, y, sinks, pair.is_transcoder)
        return torch.where(keep[..., None], torch.zeros_like(y), y)

    return replace
