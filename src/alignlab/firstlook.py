"""A first look at a model: per-site residual norms and logit-lens top tokens for a prompt."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .activations import expand_sites, run_with_sites
from .config import opt
from .errors import ConfigError
from .models import EMBEDDED_DEFAULT, LoadedModel


@dataclass
class InspectConfig:
    """``alignlab inspect``: what the model predicts at the last position, layer by layer."""

    prompt: list[str] = opt(factory=list, help="prompt text; repeat for several prompts")
    model: str = opt(EMBEDDED_DEFAULT, "built-in name, hub id, local folder or .gguf file")
    revision: str | None = opt(None, "hub revision, or checkpoint subfolder of a local folder")
    sites: str = opt("resid.*", "sites to read, e.g. 'resid.*' or 'resid.10-20,mlp.3'")
    top_k: int = opt(5, "tokens shown per site")
    dtype: str = opt("float32", "model dtype", choices=["float32", "bfloat16", "float16"])
    out: str | None = opt(None, "run folder to write config.json and metrics.json to")

    def __post_init__(self) -> None:
        if isinstance(self.prompt, str):
            self.prompt = [self.prompt]
        if not self.prompt or any(not p.strip() for p in self.prompt):
            raise ConfigError("--prompt must be a non-empty text")
        if self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")


@dataclass
class SiteReadout:
    """One site at the prompt's last position."""

    site: str
    norm: float  # L2 norm of the activation
    top_tokens: list[str]  # logit lens: unembed(final_norm(h)), most likely first
    top_probs: list[float]


@dataclass
class PromptReadout:
    prompt: str
    n_tokens: int
    rows: list[SiteReadout]
    model_top_tokens: list[str]  # the model's own prediction
    model_top_probs: list[float]

    def to_json(self) -> dict:
        return {
            "prompt": self.prompt,
            "n_tokens": self.n_tokens,
            "sites": [r.site for r in self.rows],
            "norm": [r.norm for r in self.rows],
            "top_tokens": [r.top_tokens for r in self.rows],
            "top_probs": [r.top_probs for r in self.rows],
            "model_top_tokens": self.model_top_tokens,
            "model_top_probs": self.model_top_probs,
        }


def _decode_each(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


@torch.no_grad()
def inspect_prompt(lm: LoadedModel, prompt: str, sites: str = "resid.*", top_k: int = 5) -> PromptReadout:
    """Read every requested site at the last position and decode it through the logit lens."""
    resolved = expand_sites(sites, lm.n_layers)
    ids = lm.tokenizer(prompt, return_tensors="pt").input_ids
    captured = run_with_sites(lm, ids, resolved, need_logits=True)
    k = min(top_k, lm.anatomy.d_vocab)
    rows = []
    for site in resolved:
        h = captured.acts[site.name][0, -1].float()  # (d,)
        probs = lm.anatomy.unembed(h.to(lm.anatomy.unembedding.weight.dtype)).float().softmax(-1)
        top = probs.topk(k)
        rows.append(
            SiteReadout(site.name, h.norm().item(), _decode_each(lm.tokenizer, top.indices.tolist()),
                        [round(p, 6) for p in top.values.tolist()])
        )
    final = captured.logits[0, -1].float().softmax(-1).topk(k)
    return PromptReadout(
        prompt, ids.shape[1], rows, _decode_each(lm.tokenizer, final.indices.tolist()),
        [round(p, 6) for p in final.values.tolist()],
    )
