"""What every sparse coder shares: parameters, encode/decode, AuxK, unit-norm decoder, folding.

A *sparse coder* maps an activation ``x`` (d_in) to ``width`` latents and decodes them to an
output (d_out). An autoencoder (SAE) reconstructs ``x`` itself (d_out == d_in, and ``b_dec`` is
subtracted from the input before encoding, as in Bricken et al. 2023); a transcoder predicts
another site's activation ``y`` from ``x`` (Dunefsky et al. 2024), optionally with a linear skip
``W_skip x`` (Paulo et al. 2025, "skip transcoders").

Parameter layout (names follow SAELens; shapes follow ``nn.Linear`` for the encoder, as in
sparsify, so a latent's encoder row is contiguous):

- ``W_enc`` (width, d_in) — the transpose of SAELens' ``W_enc``
- ``b_enc`` (width,)
- ``W_dec`` (width, d_out) — rows are unit-norm during training
- ``b_dec`` (d_out,)
- ``W_skip`` (d_out, d_in), transcoders with ``skip`` only

Training runs on *scaled* activations (``x * input_scale``, ``y * output_scale``, chosen so
E||x||^2 = d_in, per Anthropic's April 2024 update). :meth:`SparseCoder.fold_scales` folds the
scales into biases and thresholds so the saved coder reads raw activations while its decoder
rows stay unit-norm: the latents shrink by ``1/output_scale`` instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ..optim import normalize_rows_

# OpenAI's TopK SAE paper (Gao et al. 2024, appendix B.1): AuxK uses the top d_in/2 dead
# latents to model the residual, weighted 1/32.
AUXK_ALPHA = 1 / 32


@dataclass(frozen=True)
class CoderConfig:
    """The shape and sparsity mechanism of one coder; saved in ``cfg.json``."""

    arch: str  # registry name: topk, batchtopk, jumprelu, relu_l1
    d_in: int  # width of the input site
    width: int  # number of latents
    d_out: int | None = None  # width of the output site; None: d_in (autoencoder)
    transcoder: bool = False  # predict another site instead of reconstructing the input
    skip: bool = False  # transcoders: add a learned linear skip W_skip x
    k: int = 32  # topk: active latents per row; batchtopk: per row on average over a batch
    l1_coeff: float = 5.0  # relu_l1: L1 penalty (Anthropic's units, inputs scaled to E||x||^2=d)
    l0_coeff: float = 1e-3  # jumprelu: L0 penalty per active latent, in FVU units
    bandwidth: float = 0.05  # jumprelu: width of the straight-through kernel (Rajamanoharan 2024)
    init_threshold: float = 0.05  # jumprelu: initial threshold on scaled pre-activations

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.width < 1:
            raise ConfigError(f"d_in and width must be positive, got d_in={self.d_in}, width={self.width}")
        if self.d_out is not None and self.d_out < 1:
            raise ConfigError(f"d_out must be positive, got {self.d_out}")
        if self.skip and not self.transcoder:
            raise ConfigError("skip is for transcoders only; drop --skip or give --site-out")
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")

    @property
    def out_dim(self) -> int:
        return self.d_out if self.d_out is not None else self.d_in

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CoderConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class TrainOutput(NamedTuple):
    """One training forward pass on a batch of (scaled) rows."""

    recon: Tensor  # (N, d_out)
    fired: Tensor  # (width,) bool: latents active on any row
    l0: Tensor  # () mean active latents per row
    fvu: Tensor  # () sum of squared error / total variance about the batch mean
    aux_loss: Tensor  # () AuxK loss (0 without dead latents)
    sparsity_loss: Tensor  # () the architecture's own penalty (0 for topk)

    @property
    def loss(self) -> Tensor:
        return self.fvu + AUXK_ALPHA * self.aux_loss + self.sparsity_loss


class _GatherPreacts(torch.autograd.Function):
    """``pre[n, idx[n, j]]`` with a backward that touches only the selected latents.

    ``pre = x @ W.T + b`` is computed without a graph; the backward is then a sparse matmul
    instead of a dense (width x N) one, which is what makes TopK training cheap (the same idea
    as sparsify's fused encoder, written here with ``torch.sparse.mm``).
    """

    @staticmethod
    def forward(ctx, pre: Tensor, x: Tensor, weight: Tensor, bias: Tensor, idx: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight, idx)
        return pre.gather(1, idx)  # (N, m)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, idx = ctx.saved_tensors
        n, m = idx.shape
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_x = F.embedding_bag(idx, weight, per_sample_weights=grad.to(weight.dtype), mode="sum")
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            flat_idx, flat_grad = idx.reshape(-1), grad.reshape(-1).to(weight.dtype)
            if ctx.needs_input_grad[2]:
                rows = torch.arange(n, device=idx.device).repeat_interleave(m)
                coo = torch.sparse_coo_tensor(
                    torch.stack([flat_idx, rows]), flat_grad, (weight.shape[0], n),
                    check_invariants=False,
                )
                grad_w = torch.sparse.mm(coo, x.to(weight.dtype))  # (width, d_in)
            if ctx.needs_input_grad[3]:
                grad_b = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
                grad_b.index_add_(0, flat_idx, flat_grad)
        return None, grad_x, grad_w, grad_b, None


def gather_preacts(pre: Tensor, x: Tensor, weight: Tensor, bias: Tensor, idx: Tensor) -> Tensor:
    """Selected pre-activations ``(x @ weight.T + bias).gather(1, idx)`` with a sparse backward."""
    return _GatherPreacts.apply(pre, x, weight, bias, idx)


def sparse_decode(values: Tensor, idx: Tensor, W_dec: Tensor) -> Tensor:
    """``sum_j values[n, j] * W_dec[idx[n, j]]`` -> (N, d_out), without a dense (N, width) code."""
    return F.embedding_bag(idx, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")


def total_variance(y: Tensor) -> Tensor:
    """Sum of squared deviations from the batch mean: FVU's denominator (about the mean, not 0)."""
    return (y - y.mean(0)).pow(2).sum().clamp_min(torch.finfo(y.dtype).tiny)


class SparseCoder(nn.Module):
    """Base class: subclasses implement :meth:`activate` (pre-activations -> dense codes)."""

    arch: ClassVar[str] = ""
    uses_k: ClassVar[bool] = False  # sparsity set by cfg.k (topk, batchtopk)
    saelens_arch: ClassVar[str | None] = None  # SAELens architecture for SAEs (None: none)
    saelens_transcoder_arch: ClassVar[str | None] = None  # ... for transcoders without skip
    encoder_init_norm: ClassVar[float] = 1.0  # norm of the tied encoder rows at initialisation

    def __init__(self, cfg: CoderConfig, generator: torch.Generator | None = None):
        super().__init__()
        if cfg.arch != self.arch:
            raise ConfigError(f"config is for architecture {cfg.arch!r}, not {self.arch!r}")
        if self.uses_k and cfg.k > cfg.width:
            raise ConfigError(f"k must be at most the width ({cfg.width}), got {cfg.k}")
        self.cfg = cfg
        d_in, d_out, width = cfg.d_in, cfg.out_dim, cfg.width
        W_dec = torch.randn(width, d_out, generator=generator)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        if cfg.transcoder or d_in != d_out:
            W_enc = torch.randn(width, d_in, generator=generator) / math.sqrt(d_in)
        else:
            W_enc = W_dec * self.encoder_init_norm  # tied directions (Conerly et al. 2024; sparsify)
        self.W_enc = nn.Parameter(W_enc)  # (width, d_in)
        self.b_enc = nn.Parameter(torch.zeros(width))
        self.W_dec = nn.Parameter(W_dec)  # (width, d_out)
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_out, d_in)) if cfg.skip else None

    # ----- inference ---------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self.cfg.width

    def encoder_input(self, x: Tensor) -> Tensor:
        """An SAE encodes ``x - b_dec``; a transcoder encodes ``x`` (b_dec lives in y's space)."""
        return x if self.cfg.transcoder else x - self.b_dec

    def preacts(self, x: Tensor) -> Tensor:
        return F.linear(self.encoder_input(x), self.W_enc, self.b_enc)  # (N, width)

    def activate(self, pre: Tensor) -> Tensor:
        """Dense codes (N, width) from pre-activations, as used at inference."""
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        return self.activate(self.preacts(x))  # (N, width)

    def decode(self, codes: Tensor) -> Tensor:
        return codes @ self.W_dec + self.b_dec  # (N, d_out)

    def skip_term(self, x: Tensor) -> Tensor | float:
        return x @ self.W_skip.T if self.W_skip is not None else 0.0

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction (SAE) or prediction (transcoder) of a batch of rows (N, d_in)."""
        return self.decode(self.encode(x)) + self.skip_term(x)

    # ----- training ----------------------------------------------------------------------
    def train_codes(self, pre: Tensor, tv: Tensor) -> tuple[Tensor, Tensor]:
        """(codes, sparsity loss) while training, the loss in FVU units (``tv``: FVU's denominator).

        Default: the inference codes and no penalty.
        """
        return self.activate(pre), pre.new_zeros(())

    def train_forward(self, x: Tensor, y: Tensor, dead: Tensor | None = None) -> TrainOutput:
        """Losses on one batch of scaled rows ``x`` (N, d_in) with targets ``y`` (N, d_out)."""
        pre = self.preacts(x)
        tv = total_variance(y)
        codes, penalty = self.train_codes(pre, tv)
        recon = self.decode(codes) + self.skip_term(x)
        err = y - recon
        aux = self.auxk_loss(pre, err, dead, tv, gather=lambda idx: pre.gather(1, idx))
        active = codes != 0
        return TrainOutput(
            recon, active.any(0), active.sum(1).float().mean(), err.pow(2).sum() / tv, aux, penalty
        )

    def auxk_loss(self, pre: Tensor, err: Tensor, dead: Tensor | None, tv: Tensor, gather) -> Tensor:
        """AuxK (Gao et al. 2024): the top d_in/2 dead latents model the live latents' residual."""
        n_dead = int(dead.sum()) if dead is not None else 0
        if n_dead == 0:
            return err.new_zeros(())
        k_aux = min(max(self.cfg.out_dim // 2, 1), n_dead)
        scale = min(n_dead / max(self.cfg.out_dim // 2, 1), 1.0)  # fewer dead: a smaller loss
        with torch.no_grad():  # top-k among the dead columns only: cheap when few are dead
            dead_idx = dead.nonzero().squeeze(1)  # (n_dead,)
            local = pre.detach().index_select(1, dead_idx).topk(k_aux, dim=1, sorted=False).indices
            idx = dead_idx[local]  # (N, k_aux)
        values = gather(idx).relu()
        err_hat = sparse_decode(values, idx, self.W_dec)
        return scale * (err_hat - err.detach()).pow(2).sum() / tv

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        normalize_rows_(self.W_dec)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the gradient component along each decoder row, so a step keeps norms near 1."""
        if self.W_dec.grad is None:
            return
        along = (self.W_dec.grad * self.W_dec).sum(1, keepdim=True)  # (width, 1)
        self.W_dec.grad.sub_(along * self.W_dec)

    @torch.no_grad()
    def init_from_batch(self, x: Tensor, y: Tensor) -> None:
        """Centre the decoder bias on the targets' mean, and a transcoder's pre-activations."""
        self.b_dec.copy_(y.mean(0))
        if self.cfg.transcoder:
            self.b_enc.copy_(-(x.mean(0) @ self.W_enc.T))

    # ----- scaling -----------------------------------------------------------------------
    @torch.no_grad()
    def fold_scales(self, input_scale: float, output_scale: float) -> None:
        """Make a coder trained on ``x*input_scale -> y*output_scale`` read raw ``x`` and write raw ``y``.

        Latents become ``f / output_scale`` (TopK picks the same ones: the order is kept), so
        ``W_dec`` keeps unit rows; encoder input weights absorb ``input_scale / output_scale``.
        """
        ratio = input_scale / output_scale
        self.W_enc.mul_(ratio)
        self.b_enc.div_(output_scale)
        self.b_dec.div_(output_scale)
        if self.W_skip is not None:
            self.W_skip.mul_(ratio)
        self._fold_thresholds(output_scale)

    def _fold_thresholds(self, output_scale: float) -> None:
        """Architectures with thresholds on pre-activations divide them by ``output_scale``."""

    # ----- SAELens -----------------------------------------------------------------------
    def saelens_state(self) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
        """(architecture, tensors, extra cfg keys) in SAELens' layout; see :mod:`alignlab.sae.io`."""
        arch = self._saelens_arch_name()
        tensors = {
            "W_enc": self.W_enc.detach().T.contiguous(),  # SAELens: (d_in, d_sae)
            "b_enc": self.b_enc.detach().clone(),
            "W_dec": self.W_dec.detach().clone(),  # (d_sae, d_out)
            "b_dec": self.b_dec.detach().clone(),
        }
        if self.W_skip is not None:
            tensors["W_skip"] = self.W_skip.detach().clone()
        return arch, tensors, {}

    def _saelens_arch_name(self) -> str:
        from ...errors import ArtifactError

        if not self.cfg.transcoder:
            name = self.saelens_arch
        else:
            name = self.saelens_transcoder_arch
            if name is not None and self.cfg.skip:
                name = name.replace("transcoder", "skip_transcoder")
        if name is None:
            kind = "transcoder" if self.cfg.transcoder else "autoencoder"
            raise ArtifactError(
                f"SAELens has no architecture for a {self.arch} {kind}; export it as native "
                f"(--format native), or train a relu_l1/jumprelu/batchtopk transcoder for SAELens"
            )
        return name

    def load_saelens_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of :meth:`saelens_state` for the tensors this class owns."""
        with torch.no_grad():
            self.W_enc.copy_(tensors["W_enc"].T)
            self.b_enc.copy_(tensors["b_enc"])
            self.W_dec.copy_(tensors["W_dec"])
            self.b_dec.copy_(tensors["b_dec"])
            if self.W_skip is not None:
                self.W_skip.copy_(tensors["W_skip"])
