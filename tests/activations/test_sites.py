import pytest

from alignlab.activations import Site, expand_sites, parse_site
from alignlab.errors import SiteError


def test_parse_and_names():
    assert parse_site("resid.4", 4) == Site("resid", 4)
    assert parse_site("mlp_in.0", 4).name == "mlp_in.0"
    assert Site("resid", 3).block == 2 and Site("attn", 3).block == 3


def test_patterns_expand_in_model_order():
    assert [s.name for s in expand_sites("resid.*", 2)] == ["resid.0", "resid.1", "resid.2"]
    names = [s.name for s in expand_sites("mlp.1,resid.1-2,attn.1", 3)]
    assert names == ["resid.1", "attn.1", "mlp.1", "resid.2"]
    assert len(expand_sites("*", 2)) == 3 + 2 * 3
    assert [s.name for s in expand_sites("resid.1,resid.1", 2)] == ["resid.1"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("resid.5", "layer 5 is out of range for 'resid'.*resid layers are 0..4"),
        ("mlp.4", "layer 4 is out of range for 'mlp'.*mlp layers are 0..3"),
        ("resid.-1", "out of range"),
        ("resd.1", "unknown site 'resd.1'.*resid.<layer>"),
        ("resid", "unknown site"),
        ("foo.*", "matches nothing"),
        ("resid.2-9", "layer 9 is out of range"),
        ("", "no sites given"),
    ],
)
def test_bad_sites_name_the_valid_range(spec, message):
    with pytest.raises(SiteError, match=message):
        expand_sites(spec, 4)
