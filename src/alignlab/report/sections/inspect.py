"""``inspect``: per prompt, each site's norm and logit-lens top tokens; norm across depth."""

from __future__ import annotations

from ...runs import RunView
from ..blocks import Figure, Heading, Paragraph, Section, Table
from ..plots import Series, line_plot, plot_text
from ..registry import register


@register("inspect", order=10)
def inspect_section(run: RunView, metrics: dict) -> Section | None:
    data = metrics.get("inspect")
    if not isinstance(data, dict) or not data.get("prompts"):
        return None
    prompts = data["prompts"]
    blocks = [Paragraph(
        f"Model {data.get('model', '?')}. At each prompt's last position: the L2 norm of the "
        "activation at each site, and the logit lens's most likely next tokens (the final norm "
        "and the unembedding applied to that site's residual). The last row is the model's own "
        "prediction. Tokens are shown quoted, so spaces and newlines are visible."
    )]
    figure = _norm_figure(prompts)
    if figure is not None:
        blocks.append(figure)
    for i, prompt in enumerate(prompts, 1):
        blocks.append(Heading(f"Prompt {i}: {prompt['prompt']!r} ({prompt['n_tokens']} tokens)"))
        blocks.append(_prompt_table(prompt))
    return Section("Inspect: norms and logit lens at the last position", blocks)


def _prompt_table(prompt: dict) -> Table:
    k = max((len(t) for t in prompt["top_tokens"]), default=len(prompt["model_top_tokens"]))
    headers = ["site", "norm"] + [f"top {j}" for j in range(1, k + 1)]
    rows = [
        [site, norm, *_tops(tokens, probs)]
        for site, norm, tokens, probs in zip(
            prompt["sites"], prompt["norm"], prompt["top_tokens"], prompt["top_probs"]
        )
    ]
    rows.append(["model", None, *_tops(prompt["model_top_tokens"], prompt["model_top_probs"])])
    return Table(headers, rows)


def _tops(tokens: list[str], probs: list[float]) -> list[str]:
    return [f"{token!r} {prob:.3f}" for token, prob in zip(tokens, probs)]


def _norm_figure(prompts: list[dict]) -> Figure | None:
    """Residual norm against depth, one line per prompt (``resid.i`` sites only)."""
    series = []
    for i, prompt in enumerate(prompts, 1):
        layers = [(int(s.split(".")[1]), n) for s, n in zip(prompt["sites"], prompt["norm"])
                  if s.startswith("resid.")]
        if layers:
            label = f"{i}: {plot_text(prompt['prompt'])}"
            series.append(Series(label, [x for x, _ in layers], [y for _, y in layers]))
    if not series:
        return None
    png = line_plot(series, "layer (resid.i: after block i; 0 = embedding)",
                    "residual L2 norm at last position")
    return Figure(png, alt="residual stream norm at the last position against layer, one line per prompt",
                  caption="Residual norm by layer at each prompt's last position.")
