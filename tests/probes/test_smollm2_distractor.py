"""The distractor check on the embedded model's real activations (issue 5's target): an
unsupervised method is flagged when the injected feature is more prominent than truth and
passes when it is less. (On planted data, tests/probes/test_controls.py.)"""

import pytest

from alignlab.probes import controls as ctl
from alignlab.probes.datasets import load_dataset
from alignlab.probes.methods import MethodSettings
from alignlab.probes.prepare import prepare_features

LAYERS = [6, 10, 14, 18, 22]  # every fourth middle layer: the check's verdict is per layer too
QUICK_CCS = MethodSettings(ccs_tries=3, ccs_epochs=120, ccs_lr=1e-2)  # the quick demo's


@pytest.fixture(scope="module")
def city_pairs(smollm2):
    feats = prepare_features(smollm2, [load_dataset("cities")], [0], pairs="negation",
                             held_out=False, layers=LAYERS)["cities"]
    return ctl.Splits(*(feats.inputs.take(feats.split_index(s)) for s in ("train", "val", "test")))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ccs", "eigen"])
def test_distractor_check_on_smollm2_cities(city_pairs, method):
    weaker = ctl.distractor_check(method, city_pairs, LAYERS, QUICK_CCS, ratio=0.5)
    stronger = ctl.distractor_check(method, city_pairs, LAYERS, QUICK_CCS, ratio=2.0)
    assert not weaker["flagged"] and weaker["truth_auroc_distance"] > 0.3, weaker
    assert stronger["flagged"], stronger
    # not a verdict at one lucky layer: the stronger distractor wins most of them
    assert stronger["layers_won_by_distractor"] > weaker["layers_won_by_distractor"], (weaker, stronger)
    assert stronger["layers_won_by_distractor"] >= len(LAYERS) - 1, stronger
