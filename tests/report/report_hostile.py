"""Metrics with hostile strings in every place data can reach a report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# each sets window.__pwned if it ever runs; together they cover element, attribute and
# tag-breaking contexts
HOSTILE = [
    "<script>window.__pwned=1;alert(1)</script>",
    '<img src=x onerror="window.__pwned=2">',
    '"><svg onload="window.__pwned=3">',
    "'><img src=x onerror=window.__pwned=4>",
]
MATHTEXT = r"costs $5 \undefinedcmd{ and $6"  # breaks matplotlib unless its $ are escaped


@dataclass(frozen=True)
class HostileRun:
    path: Path
    strings: list[str]


def hostile_metrics() -> dict:
    n_layers = 4
    prompts = []
    for i, text in enumerate([*HOSTILE, MATHTEXT]):
        sites = [f"resid.{j}" for j in range(n_layers + 1)]
        tokens = [[HOSTILE[(i + j + k) % len(HOSTILE)] for k in range(3)] for j in range(len(sites))]
        prompts.append({
            "prompt": text,
            "n_tokens": 7 + i,
            "sites": sites,
            "norm": [1.0 + 0.5 * j + 0.1 * i for j in range(len(sites))],
            "top_tokens": tokens,
            "top_probs": [[0.5, 0.3, 0.1] for _ in sites],
            "model_top_tokens": [HOSTILE[i % len(HOSTILE)], " Paris", "\n"],
            "model_top_probs": [0.6, 0.2, 0.1],
        })
    return {
        "inspect": {"model": HOSTILE[2], "prompts": prompts},
        "harvest": {
            "resid_norm_mean": [2.0, 3.0, 5.0, 8.0, 13.0],
            "resid_norm_mean_excl_first": [1.5, 2.5, 4.0, 6.5, 10.0],
            "tokens": 4096,
            "corpus": HOSTILE[1],
        },
        HOSTILE[0]: {"note": HOSTILE[3], "values": [1, 2, 3]},
    }


def make_hostile_run(folder: Path) -> HostileRun:
    """A finished run folder (config.json, report.html, metrics.json) full of hostile strings."""
    from alignlab.runs import start_run

    config = {"prompt": [*HOSTILE, MATHTEXT], "model": HOSTILE[1], "out": str(folder)}
    run = start_run(folder, "inspect", config)
    run.finish(hostile_metrics())
    return HostileRun(run.path, [*HOSTILE, MATHTEXT])
