"""Per-layer lens metrics on held-out positions, with bounded memory.

For each lens and each layer ``i`` in ``0..L-1`` (read from ``resid.i``), averaged over
positions (Belrose et al. 2023, section 3; the tuned-lens package's ``eval_loop``):

- ``kl``: KL(final || lens) in nats, where "final" is the model's own next-token
  distribution (``unembed(resid.L)``);
- ``kl_bits_per_byte``: the same divergence summed over positions, / ln 2 / the number of
  UTF-8 bytes of the text the predicted tokens decode to;
- ``ce``: cross-entropy of the lens against the actual next token, in nats;
- ``entropy``: entropy of the lens distribution, in nats;
- ``top1_agreement``: how often the lens's most likely token is the model's.

Layer ``L`` (``resid.L``) is not in the lists: there every lens is the identity and equals
the model, so KL is 0 and top-1 agreement 1; the model's own ``ce`` and ``entropy`` are
reported separately under ``final``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ..models import LoadedModel
from .batches import ResidRows
from .logit import Lens, lens_logits, unembed

STATS = ("kl", "ce", "entropy", "top1")
# Peak extra memory of the evaluation, in bytes (see ``rows_per_chunk``).
DEFAULT_MEMORY_BYTES = 256 * 2**20
# Full-vocabulary float32 tensors alive at once per chunk: final log-probs and probs, lens
# logits, lens log-probs, and up to four elementwise temporaries.
_LIVE_TENSORS = 8


def rows_per_chunk(d_vocab: int, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> int:
    """Positions decoded at once so that the peak extra memory stays under ``memory_bytes``.

    The bound is ``_LIVE_TENSORS * rows * d_vocab * 4`` bytes: one layer of one lens at a
    time, for a chunk of positions, so a ``[layers, batch, pos, vocab]`` tensor never exists
    and memory does not grow with depth, batch or sequence length.
    """
    return max(1, memory_bytes // (_LIVE_TENSORS * d_vocab * 4))


@dataclass
class Final:
    """The model's own prediction at the same positions (float32)."""

    logp: Tensor  # (n, vocab) log-probabilities
    p: Tensor  # (n, vocab) probabilities
    top: Tensor  # (n,) most likely token
    p_logp: Tensor  # (n,) sum_v p log p, minus the entropy


def final_distribution(final_logits: Tensor) -> Final:
    logp = final_logits.float().log_softmax(-1)
    p = logp.exp()
    return Final(logp, p, logp.argmax(-1), torch.linalg.vecdot(p, logp))


def distribution_sums(logits: Tensor, final: Final, targets: Tensor) -> Tensor:
    """Sums over positions of (KL(final || lens), CE, entropy, top-1 agreement): shape (4,).

    Log-probabilities from a fused log_softmax are finite for finite logits, so the plain
    dot products below never meet 0 · (-inf); a non-finite logit shows up as a NaN sum,
    which :func:`evaluate_lenses` reports.
    """
    logq = logits.float().log_softmax(-1)  # (n, vocab)
    kl = final.p_logp - torch.linalg.vecdot(final.p, logq)
    ce = -logq.gather(-1, targets[:, None]).squeeze(-1)
    entropy = -torch.linalg.vecdot(logq.exp(), logq)
    top1 = (logq.argmax(-1) == final.top).float()
    return torch.stack([kl.sum(), ce.sum(), entropy.sum(), top1.sum()]).double()


@dataclass
class LensMetrics:
    """One lens: each list is indexed by layer (``resid.0`` .. ``resid.{L-1}``)."""

    kl: list[float]
    kl_bits_per_byte: list[float]
    ce: list[float]
    entropy: list[float]
    top1_agreement: list[float]

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class FinalMetrics:
    """The model's own next-token prediction on the same positions."""

    ce: float
    ce_bits_per_byte: float
    entropy: float


@dataclass
class LensEvaluation:
    lenses: dict[str, LensMetrics]  # by lens name ("logit", "tuned")
    final: FinalMetrics
    n_tokens: int  # positions evaluated
    n_bytes: int  # UTF-8 bytes their next tokens decode to

    def to_json(self) -> dict:
        out = {name: m.to_json() for name, m in self.lenses.items()}
        out["final"] = asdict(self.final)
        out["n_tokens"], out["n_bytes"] = self.n_tokens, self.n_bytes
        return out


@dataclass
class _Totals:
    """Running sums while batches stream past."""

    lenses: dict[str, Tensor]  # name -> (L, 4) float64 sums of STATS
    final: Tensor  # (2,) float64 sums of the model's CE and entropy
    n_tokens: int = 0
    n_bytes: int = 0


@torch.no_grad()
def evaluate_lenses(lm: LoadedModel, lenses: Sequence[Lens], batches: Iterable[ResidRows],
                    memory_bytes: int = DEFAULT_MEMORY_BYTES) -> LensEvaluation:
    """Every metric for every lens at every layer, streamed over ``batches``.

    Memory beyond the batches themselves is bounded by ``memory_bytes`` (see
    :func:`rows_per_chunk`).
    """
    n_layers = lm.n_layers
    totals = _Totals({lens.name: torch.zeros(n_layers, len(STATS), dtype=torch.float64)
                      for lens in lenses}, torch.zeros(2, dtype=torch.float64))
    chunk = rows_per_chunk(lm.anatomy.d_vocab, memory_bytes)
    for rows in batches:
        for start in range(0, rows.n_rows, chunk):
            h = rows.resid[:, start : start + chunk].to(lm.device)  # (L+1, c, d)
            targets = rows.targets[start : start + chunk].to(lm.device)  # (c,)
            _accumulate_chunk(lm, lenses, h, targets, totals)
        totals.n_tokens += rows.n_rows
        totals.n_bytes += rows.n_bytes
    return _finish(totals)


def _accumulate_chunk(lm: LoadedModel, lenses: Sequence[Lens], h: Tensor, targets: Tensor,
                      totals: _Totals) -> None:
    final = final_distribution(unembed(lm.anatomy, h[-1]))
    ce = -final.logp.gather(-1, targets[:, None]).sum()
    totals.final += torch.stack([ce, -final.p_logp.sum()]).double().cpu()
    for lens in lenses:
        for layer in range(lm.n_layers):
            logits = lens_logits(lm.anatomy, lens, h[layer], layer)
            totals.lenses[lens.name][layer] += distribution_sums(logits, final, targets).cpu()


def _finish(totals: _Totals) -> LensEvaluation:
    n, to_bpb = max(totals.n_tokens, 1), 1 / math.log(2) / max(totals.n_bytes, 1)
    lenses = {}
    for name, sums in totals.lenses.items():
        kl, ce, entropy, top1 = (sums[:, j] for j in range(len(STATS)))
        lenses[name] = LensMetrics(
            kl=(kl / n).tolist(), kl_bits_per_byte=(kl * to_bpb).tolist(), ce=(ce / n).tolist(),
            entropy=(entropy / n).tolist(), top1_agreement=(top1 / n).tolist(),
        )
    ce, entropy = totals.final.tolist()
    final = FinalMetrics(ce=ce / n, ce_bits_per_byte=ce * to_bpb, entropy=entropy / n)
    return LensEvaluation(lenses, final, totals.n_tokens, totals.n_bytes)
