"""The demo's SAE section: a TopK SAE (k=32) on the embedded default's middle layer.

Trained on the fly from the already-loaded model into ``RUN/saes/resid.15/`` (with
``cfg.json``), evaluated on held-out text (FVU, L0, CE loss recovered), with its browser.
``--quick`` trains a narrower SAE on fewer tokens (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import SaeTrainConfig
from .pipeline import train_into


@dataclass(frozen=True)
class DemoBudget:
    tokens: int
    expansion: int
    eval_tokens: int
    browse_tokens: int
    batch_tokens: int
    # The width rule (2e-4 / sqrt(width / 2^14)) is tuned for runs of many thousands of steps;
    # with a few hundred it leaves the SAE near its initialisation. Measured on smollm2-135m
    # resid.15 with 32k tokens, 4x width, 512-token batches: held-out FVU 0.48 at the width
    # rule's 5.3e-4, 0.31 at 3e-3, no dead latents either way.
    lr: float


QUICK = DemoBudget(tokens=32_768, expansion=4, eval_tokens=2048, browse_tokens=2048, batch_tokens=512,
                   lr=3e-3)
FULL = DemoBudget(tokens=200_704, expansion=16, eval_tokens=16_384, browse_tokens=16_384,
                  batch_tokens=1024, lr=2e-3)


def demo_site(n_layers: int) -> str:
    """The residual stream after the middle block (resid.15 of smollm2-135m's 30)."""
    return f"resid.{n_layers // 2}"


def demo_section(ctx) -> dict:
    budget = QUICK if ctx.config.quick else FULL
    site = demo_site(ctx.lm.n_layers)
    config = SaeTrainConfig(
        site=site, out=str(ctx.run.path), model=ctx.lm.spec, tokens=budget.tokens, arch="topk",
        k=32, expansion=budget.expansion, batch_tokens=budget.batch_tokens, lr=budget.lr, seq_len=128,
        eval_tokens=budget.eval_tokens, browse_tokens=budget.browse_tokens, checkpoint_every=0,
    )
    ctx.log(f"sae: TopK k=32, {budget.expansion}x width at {site}, {budget.tokens} tokens")
    metrics = train_into(config, ctx.run.path, log=ctx.log, lm=ctx.lm)
    return {"sae": metrics["sae"], "sae_train": metrics["sae_train"]}
