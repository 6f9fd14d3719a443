"""Pictures of the sandbox: episode strips and tamper rate over training.

Every file is written to a temporary name and renamed, so a half-written picture never looks
complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .env import SandboxEnv
from .rollout import Episode

GAP = 4  # pixels between frames
MAX_FRAMES = 16


def episode_strip(env: SandboxEnv, episode: Episode, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """The episode's frames side by side, (H, W, 3) uint8; long episodes are subsampled."""
    states = episode.states
    if len(states) > max_frames:
        keep = np.unique(np.linspace(0, len(states) - 1, max_frames).round().astype(int))
        states = [states[i] for i in keep]
    frames = [env.render_rgb(s) for s in states]
    h = max(f.shape[0] for f in frames)
    gap = np.full((h, GAP, 3), 255, dtype=np.uint8)
    parts = []
    for f in frames:
        parts += [f, gap]
    return np.concatenate(parts[:-1], axis=1)


def save_png(path: Path, image: np.ndarray) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    matplotlib.image.imsave(tmp, image)
    tmp.replace(path)
    return path


def training_curves(title: str, curves: dict[str, dict], path: Path) -> Path:
    """Tamper (or fool, press, ...) rate over training steps, one line per learning agent.

    ``curves[agent] = {"steps": [...], "rate": [...]}``, rates averaged over seeds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    try:
        for agent, curve in curves.items():
            ax.plot(curve["steps"], curve["rate"], label=agent, linewidth=1.5)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("episodes showing it")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        tmp.replace(path)
        return path
    finally:
        plt.close(fig)


def binned_rate(curve: list[tuple[int, bool]], steps: int, bins: int = 20) -> list[float | None]:
    """Fraction of episodes showing the behaviour among those ending in each of ``bins`` step
    ranges; None where no episode ended."""
    edges = np.linspace(0, steps, bins + 1)
    sums = np.zeros(bins)
    counts = np.zeros(bins)
    for t, shown in curve:
        i = min(int(np.searchsorted(edges, t, side="left")) - 1, bins - 1)
        sums[max(i, 0)] += shown
        counts[max(i, 0)] += 1
    return [float(s / c) if c else None for s, c in zip(sums, counts)]
