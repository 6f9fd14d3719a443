"""Pictures of lenses: KL by layer, and a prompt's prediction trajectory (Belrose et al. 2023, fig. 1).

Figures are drawn on matplotlib's Agg canvas without pyplot (no global state, no display) and
returned as PNG bytes; ``save_png`` writes them atomically into a run folder.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..activations import run_with_sites
from ..activations.sites import Site
from ..errors import ConfigError
from ..models import LoadedModel
from .io import atomic_write_bytes
from .logit import Lens, lens_logits, unembed

COLOR_BY = ("entropy", "kl")
_LENS_STYLE = {"logit": ("tab:orange", "logit lens"), "tuned": ("tab:blue", "tuned lens")}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Tokens in scripts the default font lacks are drawn as boxes; that is expected.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def save_png(data: bytes, path: str | Path) -> Path:
    """Write PNG bytes to ``path`` atomically (no half-written image is left behind)."""
    return atomic_write_bytes(path, data)


def kl_by_layer_png(kl: Mapping[str, Sequence[float]], title: str = "") -> bytes:
    """One curve per lens: KL(final || lens) in nats at resid.0 .. resid.{L-1}, log scale."""
    if not kl or not all(len(v) for v in kl.values()):
        raise ConfigError("kl_by_layer_png needs at least one lens with one layer")
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    for name, values in kl.items():
        color, label = _LENS_STYLE.get(name, (None, name))
        ax.plot(range(len(values)), [max(v, 1e-6) for v in values], marker="o", ms=3,
                color=color, label=label)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (resid.i)")
    ax.set_ylabel("KL(final || lens), nats")
    ax.set_title(title or "held-out KL to the model's prediction, by layer")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _png(fig)


@dataclass
class Trajectory:
    """A prompt decoded by one lens at every layer: rows are layers, columns positions."""

    lens: str
    tokens: list[str]  # the input tokens, as text
    layers: list[str]  # "resid.0" .. "resid.{L-1}", then "output" (the model itself)
    top_tokens: list[list[str]]  # [layer][position] the lens's most likely next token
    top_probs: list[list[float]]
    entropy: list[list[float]]  # nats
    kl: list[list[float]]  # KL(final || lens), nats

    def to_json(self) -> dict:
        return asdict(self)


def _token_text(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id])


@torch.no_grad()
def prediction_trajectory(lm: LoadedModel, lens: Lens, prompt: str, max_tokens: int = 16) -> Trajectory:
    """Decode the last ``max_tokens`` positions of ``prompt`` at every layer through ``lens``."""
    if not prompt.strip():
        raise ConfigError("the trajectory prompt must be a non-empty text")
    ids = lm.tokenizer(prompt, return_tensors="pt").input_ids[:, -max_tokens:]  # (1, T)
    sites = [Site("resid", i) for i in range(lm.n_layers + 1)]
    acts = run_with_sites(lm, ids, sites).acts
    final = unembed(lm.anatomy, acts[sites[-1].name][0]).log_softmax(-1)  # (T, V)
    rows = [lens_logits(lm.anatomy, lens, acts[s.name][0], s.layer).float().log_softmax(-1)
            for s in sites[:-1]] + [final]
    tok = lm.tokenizer
    logq = torch.stack(rows)  # (L+1, T, V): small, one prompt
    top = logq.max(-1)
    return Trajectory(
        lens=lens.name,
        tokens=[_token_text(tok, i) for i in ids[0].tolist()],
        layers=[s.name for s in sites[:-1]] + ["output"],
        top_tokens=[[_token_text(tok, i) for i in row] for row in top.indices.tolist()],
        top_probs=top.values.exp().tolist(),
        entropy=(-(logq.exp() * logq).sum(-1)).tolist(),
        kl=(final.exp() * (final - logq)).sum(-1).clamp_min(0).tolist(),
    )


def _cell_text(text: str, width: int = 8) -> str:
    """A token as drawable text: control characters escaped, long tokens cut."""
    shown = "".join(ch if ch.isprintable() and ch != " " else "␣" if ch == " " else ascii(ch)[1:-1]
                    for ch in text)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def trajectory_png(traj: Trajectory, color_by: str = "entropy") -> bytes:
    """The layer x position grid of top tokens, cells coloured by entropy or KL to the output."""
    if color_by not in COLOR_BY:
        raise ConfigError(f"color_by must be one of {', '.join(COLOR_BY)}, got {color_by!r}")
    values = torch.tensor(traj.entropy if color_by == "entropy" else traj.kl)  # (L+1, T)
    n_layers, n_pos = values.shape
    fig = Figure(figsize=(1.0 + 0.85 * n_pos, 1.2 + 0.26 * n_layers))
    ax = fig.add_subplot()
    image = ax.imshow(values.numpy(), aspect="auto", origin="lower", cmap="magma_r")
    fig.colorbar(image, ax=ax, label=f"{color_by} (nats)", fraction=0.04)
    for layer in range(n_layers):
        for pos in range(n_pos):
            ax.text(pos, layer, _cell_text(traj.top_tokens[layer][pos]), ha="center",
                    va="center", fontsize=6, color="black" if values[layer, pos] < values.max() * 0.6 else "white")
    ax.set_yticks(range(n_layers), traj.layers, fontsize=6)
    ax.set_xticks(range(n_pos), [_cell_text(t, 10) for t in traj.tokens], rotation=60, fontsize=7,
                  ha="right")
    ax.set_title(f"prediction trajectory, {traj.lens} lens (top token; colour: {color_by})",
                 fontsize=9)
    return _png(fig)
