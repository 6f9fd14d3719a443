"""Training a tuned lens: all translators together, loss KL(final || lens) at every layer.

Follows the tuned-lens package's ``train_loop`` (Belrose et al. 2023): the target is the
model's own next-token distribution at the same position (``unembed(resid.L)``), each
layer's KL is back-propagated on its own (so only one layer's logits are alive at a time)
and the gradients add up; gradients are clipped to norm 1 before each step.

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
    """Per-row KL(p || softmax(x W^T + c)) and its gradient with respect to ``x`` (N, d).

    The gradient of the KL with respect to the logits is ``softmax(z) - p``; written out with
    the unembedding product inside, the backward pass is one subtraction over the vocabulary
    and one (N, vocab) x (vocab, d) product, with the per-row scale applied to the small
    (N, d) result. Autograd's log_softmax chain would make several more passes over (N, vocab)
    tensors, which on CPU cost more than the products themselves.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, p: Tensor,
                p_logp: Tensor) -> Tensor:
        z = nn.functional.linear(x, weight, bias)  # (N, vocab) in x's dtype
        q = z.softmax(-1)
        # log-normaliser from the largest logit: max q = exp(max z - lse) >= 1/vocab, so its log
        # never underflows (two max-reductions are cheaper than logsumexp or argmax on CPU)
        lse = _wide(z.amax(-1)) - _wide(q.amax(-1)).log()
        ctx.save_for_backward(q, p, weight)
        # KL = sum p log p - sum p z + logsumexp(z), since sum p = 1
        return p_logp - _wide(torch.linalg.vecdot(p, z)) + lse

    @staticmethod
    def backward(ctx, grad: Tensor):
        q, p, weight = ctx.saved_tensors
        grad_x = (q - p) @ weight  # (N, d)
        return grad_x * grad[:, None].to(grad_x.dtype), None, None, None, None


def _wide(t: Tensor) -> Tensor:
    """At least float32, for the few per-row numbers of the loss."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


@dataclass
class Target:
    """The model's own next-token distribution for one batch."""

    p: Tensor  # (N, vocab) probabilities, in the training matmul dtype
    p_logp: Tensor  # (N,) float32 sum_v p log p


class KLReadout:
    """KL(final || lens) through the final norm and the unembedding, product in ``dtype``.

    Targets are computed in float32. With ``dtype`` bfloat16 the lens logits are rounded to
    ~2^-9 of their size, which is noise in the gradient (the tuned-lens package autocasts its
    training the same way) and ~8x faster on CPUs with AMX; metrics never use this path.
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
        return Target(p.to(self.dtype), torch.linalg.vecdot(p, logp))

    def kl(self, h: Tensor, target: Target) -> Tensor:
        """Per-row KL (N,) for residuals ``h`` (N, d), differentiable with respect to ``h``."""
        normed = self.anatomy.final_norm(h.to(self.anatomy.unembedding.weight.dtype))
        return _UnembedKL.apply(normed.to(self.dtype), self.weight, self.bias, target.p, target.p_logp)


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


def train_step(lens: TunedLens, readout: KLReadout, rows: ResidRows) -> float:
    """Back-propagate every layer's KL for one batch; returns the mean over layers (nats)."""
    h = rows.resid.to(lens.device)  # (L+1, N, d)
    target = readout.target(h[-1])
    total = 0.0
    for layer in range(lens.n_layers):
        loss = readout.kl(lens.transform(h[layer], layer), target).mean()
        loss.backward()  # one layer's (N, vocab) tensors at a time
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
        losses.append(train_step(lens, readout, rows))
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
