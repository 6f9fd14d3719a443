"""``lens``: KL by layer for the logit and tuned lenses, per-layer metrics, trajectories."""

from __future__ import annotations

from ...runs import RunView
from ..blocks import Figure, Heading, Paragraph, Section, Table
from ..registry import register

METRICS = ("kl", "kl_bits_per_byte", "ce", "entropy", "top1_agreement")
LENSES = ("logit", "tuned")


@register("lens", order=30)
def lens_section(run: RunView, metrics: dict) -> Section | None:
    from ...lens.plots import Trajectory, kl_by_layer_png, trajectory_png

    data = metrics.get("lens")
    lenses = [n for n in LENSES if isinstance(data, dict) and isinstance(data.get(n), dict)]
    if not lenses:
        return None
    blocks: list = [Paragraph(_intro(data))]
    kl = {n: data[n]["kl"] for n in lenses if data[n].get("kl")}
    if kl:
        blocks.append(Figure(kl_by_layer_png(kl, f"{data.get('model', '?')}: held-out KL by layer"),
                             alt="held-out KL from the model's prediction to each lens, against layer",
                             caption="KL(final || lens) in nats by layer, log scale."))
    blocks.append(_layer_table(data, lenses))
    if isinstance(data.get("train"), dict):
        blocks.append(Table(["training", "value"], [[k, v] for k, v in data["train"].items()]))
    for name, traj in (data.get("trajectory") or {}).items():
        blocks.append(Heading(f"Prediction trajectory: {name} lens"))
        png = trajectory_png(Trajectory(**traj), "entropy")
        blocks.append(Figure(png, alt=f"top token at each layer and position through the {name} lens",
                             caption="Each cell: the lens's most likely next token at that layer "
                                     "(row) and position (column); colour: its entropy in nats."))
    return Section("Lenses: the prediction layer by layer", blocks)


def _intro(data: dict) -> str:
    final = data.get("final") or {}
    return (
        f"Model {data.get('model', '?')}, {data.get('n_tokens', '?')} held-out positions. Each "
        "layer's residual is decoded with the model's final norm and unembedding, directly "
        "(logit lens) or after a learned affine translator (tuned lens; Belrose et al. 2023). "
        "KL is from the model's own next-token distribution to the lens's; ce is against the "
        "actual next token; the model's own ce is "
        f"{final.get('ce', float('nan')):.3f} nats ({final.get('ce_bits_per_byte', float('nan')):.3f} "
        "bits per byte)."
    )


def _layer_table(data: dict, lenses: list[str]) -> Table:
    headers = ["site"] + [f"{n} {m}" for n in lenses for m in METRICS]
    sites = data.get("sites") or [f"resid.{i}" for i in range(len(data[lenses[0]]["kl"]))]
    rows = [[site, *(_at(data[n].get(m), i) for n in lenses for m in METRICS)]
            for i, site in enumerate(sites)]
    return Table(headers, rows, caption="Per-layer metrics on held-out positions (nats; "
                                        "kl_bits_per_byte in bits per UTF-8 byte).")


def _at(values, i):
    return values[i] if isinstance(values, list) and i < len(values) else None
