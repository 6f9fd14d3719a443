"""Starting a tuned lens from another one (`--init-lens`), and counting the steps it saved."""

import pytest
import torch

from alignlab.errors import ArtifactError
from alignlab.lens import TunedLens, save_lens
from alignlab.lens.pipeline import starting_lens, steps_to_reach


def test_steps_to_reach_uses_trailing_ten_step_means():
    losses = [5.0] * 10 + [1.0] * 10
    # the trailing mean after n steps is (5 * (20 - n) + 1 * (n - 10)) / 10 for n in 10..20
    assert steps_to_reach(losses, 3.0) == 15
    assert steps_to_reach(losses, 5.0) == 1
    assert steps_to_reach(losses, 0.5) is None
    assert steps_to_reach([4.0, 2.0], 3.0) == 2  # fewer than ten steps: the mean so far


def test_starting_lens_copies_the_weights_and_records_the_new_model(tiny_models, tmp_path):
    lm = tiny_models["tiny-llama"]
    lens = TunedLens.for_model(lm)
    gen = torch.Generator().manual_seed(0)
    lens.load_stacked(torch.randn(lm.n_layers, lm.d_model, lm.d_model, generator=gen),
                      torch.randn(lm.n_layers, lm.d_model, generator=gen))
    lens.model_info["revision"] = "another-checkpoint"
    save_lens(lens, tmp_path / "lens")
    start = starting_lens(lm, str(tmp_path / "lens"))
    for a, b in zip(start.stacked(), lens.stacked()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert start.model_info["revision"] == lm.revision
    zero = starting_lens(lm, None)
    assert all(not t.any() for t in zero.stacked())


def test_starting_lens_refuses_another_architecture(tiny_models, tmp_path):
    lm = tiny_models["tiny-llama"]
    save_lens(TunedLens(lm.n_layers - 1, lm.d_model, {"model": "other"}), tmp_path / "lens")
    with pytest.raises(ArtifactError, match="start from a lens of this architecture"):
        starting_lens(lm, str(tmp_path / "lens"))
    with pytest.raises(ArtifactError, match="does not exist"):
        starting_lens(lm, str(tmp_path / "missing"))
