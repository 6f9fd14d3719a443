"""Lens pictures: PNG bytes, and trajectories whose numbers are the lens's own."""

import pytest
import torch

from alignlab.errors import ConfigError
from alignlab.lens import LogitLens, TunedLens
from alignlab.lens.plots import (
    Trajectory,
    _cell_text,
    kl_by_layer_png,
    prediction_trajectory,
    save_png,
    trajectory_png,
)

PNG = b"\x89PNG\r\n\x1a\n"


def test_kl_by_layer_png(tmp_path):
    png = kl_by_layer_png({"logit": [3.0, 2.0, 0.5], "tuned": [1.0, 0.5, 0.1]})
    assert png[:8] == PNG
    path = save_png(png, tmp_path / "kl.png")
    assert path.read_bytes() == png and not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ConfigError):
        kl_by_layer_png({})


def test_trajectory_rows_are_layers_and_the_last_is_the_model(tiny_llama):
    lm = tiny_llama
    traj = prediction_trajectory(lm, LogitLens(), "The capital of France is", max_tokens=8)
    assert traj.layers == [f"resid.{i}" for i in range(lm.n_layers)] + ["output"]
    assert len(traj.tokens) == 8 and all(len(row) == 8 for row in traj.top_tokens)
    ids = lm.tokenizer("The capital of France is", return_tensors="pt").input_ids[:, -8:]
    model_top = lm.model(ids).logits[0].argmax(-1).tolist()
    assert traj.top_tokens[-1] == [lm.tokenizer.decode([i]) for i in model_top]
    assert max(traj.kl[-1]) == pytest.approx(0.0, abs=1e-5)
    assert all(0 <= e <= torch.log(torch.tensor(258.0)) + 1e-4 for row in traj.entropy for e in row)
    # an untrained tuned lens draws the same picture
    tuned = prediction_trajectory(lm, TunedLens.for_model(lm), "The capital of France is", max_tokens=8)
    assert tuned.top_tokens == traj.top_tokens and tuned.lens == "tuned"
    for color_by in ("entropy", "kl"):
        assert trajectory_png(traj, color_by)[:8] == PNG
    assert trajectory_png(Trajectory(**traj.to_json()))[:8] == PNG  # from metrics.json
    with pytest.raises(ConfigError, match="color_by"):
        trajectory_png(traj, "probability")


def test_cell_text_escapes_what_cannot_be_drawn():
    assert _cell_text("\n\x16 a") == "\\n\\x16␣a"
    assert _cell_text("abcdefghijkl", 8) == "abcdefg…"
