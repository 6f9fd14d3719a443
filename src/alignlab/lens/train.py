"""Training a tuned lens: all translators together, loss KL(final || lens) at every layer.

Follows the tuned-lens package's ``train_loop`` (Belrose et al. 2023): the target is the
model's own next-token distribution at the same position (``unembed(resid.L)``), every
layer's KL is back-propagated and the gradients add up; gradients are clipped to norm 1
before each step. Layers go through the unembedding a few at a time (as many as fit in
``memory_mb``; the package does one at a time), with a hand-written backward pass
(``_UnembedKL``) that makes few passes over vocabulary-sized tensors.

The default optimizer is Adam (lr 1e-3, AMSGrad, 10% linear warmup, then linear decay),
not the package's Nesterov SGD (lr 1, scaled by 1 - momentum): on smollm2-135m with 12 steps
of 2 x 128 tokens, Adam reached a lower held-out KL at every one of the 30 layers (mean 6.9
against 8.7 nats; logit lens 12.3). Adam at lr 3e-3 went further on early layers but overshot
the last one, whose logit lens is already good. Both are available (``optimizer``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..models import Anatomy, LoadedModel
from .batches import ResidRows
from .logit import unembed
from .tuned import TunedLens

OPTIMIZERS = ("sgd", "adam")
MATMUL_DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class TrainSettings:
    """How a tuned lens is fitted; the command configs build one of these."""

    steps: int = 200  # optimizer steps; one batch of ResidRows per step
    optimizer: str = "adam"  # "adam" (AMSGrad) or "sgd" (Nesterov), see the module docstring
    lr: float | None = None  # None: 1.0 for sgd (scaled by 1 - momentum), 1e-3 for adam
    momentum: float = 0.9  # SGD momentum, or Adam's beta1
    weight_decay: float = 1e-3  # towards A = 0, b = 0, i.e. towards the logit lens
    warmup_steps: int | None = None  # None: 0 for sgd, steps // 10 for adam
    grad_clip: float = 1.0
    matmul_dtype: str = "auto"  # unembedding product during training (metrics use float32)
    memory_mb: int = 512  # for the (layers, rows, vocab) tensors of one backward pass

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0 or self.grad_clip <= 0:
            raise ConfigError("weight_decay must be >= 0 and grad_clip > 0")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps < self.steps:
            raise ConfigError(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        if self.memory_mb < 1:
            raise ConfigError(f"memory_mb must be at least 1, got {self.memory_mb}")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ConfigError(f"unknown matmul_dtype {self.matmul_dtype!r}; choose one of {', '.join(MATMUL_DTYPES)}")

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else (1.0 if self.optimizer == "sgd" else 1e-3)


@dataclass
class TrainResult:
    lens: TunedLens
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # per step: mean over layers of KL (nats)

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last 10 steps (or all, if fewer): less noisy than one."""
        tail = self.losses[-10:]
        return sum(tail) / len(tail)


class _UnembedKL(torch.autograd.Function):
    """Per-row KL(p || softmax(x W^T + c)) and its gradient with respect to ``x`` (G, N, d).

    ``x`` holds ``G`` layers' lens outputs (after the final norm) at the same ``N`` positions,
    so one (G·N, d) x (d, vocab) product serves them all: on CPU a product of ~2000 rows runs
    about twice as fast per row as one of ~250. The gradient of the KL with respect to the
    logits is ``softmax(z) - p``, so the backward pass is one subtraction over the vocabulary
    and one (G·N, vocab) x (vocab, d) product. Everything else avoids passes over (G, N, vocab)
    tensors, which on CPU cost as much as the products: ``sum_v p z`` is ``(p W) · x + p · c``
    with ``p W`` computed once per batch (:class:`Target`), and the log-normaliser is read off
    the softmax at the target's most likely token (:func:`_log_normaliser`).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, target: Target) -> Tensor:
        z = nn.functional.linear(x, weight, bias)  # (G, N, vocab) in x's dtype
        q = z.softmax(-1)
        lse = _log_normaliser(z, q, target.top)  # (G, N) float32
        del z
        ctx.save_for_backward(q.sub_(target.p), weight)  # dKL/dz = softmax(z) - p, in place
        # KL = sum p log p - sum p z + logsumexp(z), since sum p = 1
        wide = _wide(x)
        p_dot_z = torch.linalg.vecdot(target.p_weight.to(wide.dtype), wide) + target.p_bias  # (G, N)
        return target.p_logp - p_dot_z + lse

    @staticmethod
    def backward(ctx, grad: Tensor):
        q_minus_p, weight = ctx.saved_tensors
        grad_x = q_minus_p @ weight  # (G, N, d)
        return grad_x * grad[..., None].to(grad_x.dtype), None, None, None


def _log_normaliser(z: Tensor, q: Tensor, top: Tensor) -> Tensor:
    """``logsumexp(z)`` over the vocabulary (G, N), from ``q = softmax(z)`` without another pass.

    For any token k, ``log q_k = z_k - logsumexp(z)``; k is the target's most likely token
    (``top``, (N,)), where the lens's probability is usually far from underflow, and q's
    rounding (2^-9 relative in bfloat16) moves the result by ~0.002 nats at most. Rows where
    ``q_k`` is below 1e-30 (a lens far from the target, e.g. early in training) are recomputed
    with ``logsumexp``.
    """
    index = top.expand(z.shape[:-1]).unsqueeze(-1)  # (G, N, 1)
    q_top = _wide(q.gather(-1, index).squeeze(-1))
    lse = _wide(z.gather(-1, index).squeeze(-1)) - q_top.log()
    far = q_top < 1e-30
    if far.any():
        lse[far] = torch.logsumexp(z[far].float(), -1)
    return lse


def _wide(t: Tensor) -> Tensor:
    """At least float32, for the few per-row numbers of the loss."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


@dataclass
class Target:
    """The model's own next-token distribution for one batch, and what the loss reuses of it."""

    p: Tensor  # (N, vocab) probabilities, in the training matmul dtype
    p_logp: Tensor  # (N,) float32 sum_v p log p
    top: Tensor  # (N,) int64 the most likely token
    p_weight: Tensor  # (N, d) float32 p W: sum_v p_v z_v = p_weight . x + p_bias for z = W x + c
    p_bias: Tensor  # (N,) float32 p . c (zeros without an unembedding bias)


class KLReadout:
    """KL(final || lens) through the final norm and the unembedding, product in ``dtype``.

    Targets are computed in float32. With ``dtype`` bfloat16 the lens logits are rounded to
    ~2^-9 of their size, which is noise in the gradient (the tuned-lens package autocasts its
    training the same way) and ~4x faster on CPUs with AMX; metrics never use this path.
    """

    def __init__(self, anatomy: Anatomy, dtype: torch.dtype):
        self.anatomy, self.dtype = anatomy, dtype
        linear = anatomy.unembedding
        self.weight = linear.weight.detach().to(dtype)  # (vocab, d)
        self.bias = None if linear.bias is None else linear.bias.detach().to(dtype)

    @torch.no_grad()
    def target(self, h_last: Tensor) -> Target:
        logp = unembed(self.anatomy, h_last).log_softmax(-1)  # (N, vocab) float32
        p = logp.exp()
        # with the weights the lens logits are computed with (rounded to the matmul dtype)
        p_weight = p @ self.weight.to(p.dtype)  # (N, d)
        p_bias = p @ self.bias.to(p.dtype) if self.bias is not None else p.new_zeros(p.shape[0])
        return Target(p.to(self.dtype), torch.linalg.vecdot(p, logp), p.argmax(-1),
                      p_weight.float(), p_bias.float())

    def kl(self, h: Tensor, target: Target) -> Tensor:
        """Per-row KL (..., N) for residuals ``h`` (..., N, d), differentiable in ``h``.

        ``h`` may stack several layers' lens outputs (G, N, d) at the same positions.
        """
        normed = self.anatomy.final_norm(h.to(self.anatomy.unembedding.weight.dtype))
        return _UnembedKL.apply(normed.to(self.dtype), self.weight, self.bias, target)


def resolve_matmul_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on GPUs and on CPUs with AMX tiles, else float32."""
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return torch.bfloat16 if device.type == "cpu" and has_amx else torch.float32


def make_optimizer(lens: TunedLens, settings: TrainSettings) -> torch.optim.Optimizer:
    """The tuned-lens package's defaults: Nesterov SGD, or Adam with AMSGrad."""
    params = list(lens.parameters())
    if settings.optimizer == "sgd":
        # PyTorch's momentum scales the step by 1 / (1 - beta); tuned-lens undoes it so that
        # lr = 1 is the natural setting (ingredients.py, Optimizer.create_optim).
        lr = settings.effective_lr * (1 - settings.momentum)
        return torch.optim.SGD(params, lr=lr, momentum=settings.momentum, nesterov=True,
                               weight_decay=settings.weight_decay)
    return torch.optim.Adam(params, lr=settings.effective_lr, betas=(settings.momentum, 0.999),
                            amsgrad=True, weight_decay=settings.weight_decay)


def make_schedule(opt: torch.optim.Optimizer, settings: TrainSettings):
    """Linear warmup, then linear decay to zero at the last step."""
    warmup = settings.warmup_steps
    if warmup is None:
        warmup = 0 if settings.optimizer == "sgd" else settings.steps // 10
    total = settings.steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def cycle(source: Iterable[ResidRows], steps: int) -> Iterator[ResidRows]:
    """``steps`` batches, passing over ``source`` again as often as needed."""
    done = 0
    while done < steps:
        yielded = False
        for rows in source:
            yielded = True
            yield rows
            done += 1
            if done == steps:
                return
        if not yielded:
            raise DataError(
                f"the training batches ran out after {done} of {steps} steps (the source "
                "yielded nothing on a new pass); give a re-iterable source or fewer steps"
            )


def layers_per_pass(n_rows: int, d_vocab: int, dtype: torch.dtype, memory_mb: int) -> int:
    """How many layers share one unembedding product: their (G, N, vocab) logits and
    probabilities, alive together until the backward pass, stay within ``memory_mb``."""
    per_layer = 2 * n_rows * d_vocab * dtype.itemsize
    return max(1, (memory_mb << 20) // max(1, per_layer))


def train_step(lens: TunedLens, readout: KLReadout, rows: ResidRows, memory_mb: int) -> float:
    """Back-propagate every layer's KL for one batch; returns the mean over layers (nats).

    Layers go through the unembedding in groups (:func:`layers_per_pass`); the summed
    gradient is the same as one layer at a time, since each layer's loss has its own
    translator and the gradients add up.
    """
    h = rows.resid.to(lens.device)  # (L+1, N, d)
    target = readout.target(h[-1])
    group = layers_per_pass(h.shape[1], readout.weight.shape[0], readout.dtype, memory_mb)
    total = 0.0
    for first in range(0, lens.n_layers, group):
        layers = range(first, min(first + group, lens.n_layers))
        lensed = torch.stack([lens.transform(h[i], i) for i in layers])  # (G, N, d)
        loss = readout.kl(lensed, target).mean(-1).sum()  # sum over layers of the mean over rows
        loss.backward()
        total += loss.item()
    return total / lens.n_layers


def train_tuned_lens(lm: LoadedModel, source: Iterable[ResidRows], settings: TrainSettings,
                     lens: TunedLens | None = None,
                     log: Callable[[str], None] | None = None) -> TrainResult:
    """Fit ``lens`` (a fresh zero-initialised one by default) on batches from ``source``.

    ``source`` is any re-iterable of :class:`ResidRows` (``ModelRows`` captures them from the
    model on the fly); each batch is one optimizer step. Deterministic given the source.
    """
    lens = lens if lens is not None else TunedLens.for_model(lm)
    opt = make_optimizer(lens, settings)
    schedule = make_schedule(opt, settings)
    readout = KLReadout(lm.anatomy, resolve_matmul_dtype(settings.matmul_dtype, lm.device))
    losses: list[float] = []
    start = time.perf_counter()
    for step, rows in enumerate(cycle(source, settings.steps)):
        losses.append(train_step(lens, readout, rows, settings.memory_mb))
        torch.nn.utils.clip_grad_norm_(lens.parameters(), settings.grad_clip)
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=False)
        if log is not None and _should_log(step, settings.steps):
            log(f"lens train: step {step + 1}/{settings.steps}  KL {losses[-1]:.4f} nats")
    if not all(math.isfinite(x) for x in losses):
        raise DataError("tuned-lens training diverged (non-finite loss); try a smaller --lr")
    return TrainResult(lens, settings.steps, time.perf_counter() - start, losses)


def _should_log(step: int, total: int) -> bool:
    return step == 0 or step + 1 == total or (step + 1) % max(1, total // 10) == 0


def demo_section(ctx) -> dict:
    """The demo's lens section: ``ctx`` is an ``alignlab.demo.DemoContext``.

    Trains a tuned lens on ``ctx.lm`` and scores both lenses on held-out text, within about
    3 minutes on 2 CPU cores with ``ctx.config.quick``; returns ``{"lens": {...}}`` as
    ``alignlab lens train`` writes it, and saves the lens and pictures in the run folder.
    """
    from .pipeline import demo_lens

    return demo_lens(ctx.lm, ctx.run.path, ctx.config.quick, ctx.log)
