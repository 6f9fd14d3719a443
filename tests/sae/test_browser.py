"""The feature browser: the right top contexts (against brute force), escaped static pages, search."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from alignlab.activations import run_with_sites
from alignlab.sae import CoderConfig, build_coder
from alignlab.sae.browser import BEFORE, collect_examples, logit_effects, write_browser
from alignlab.sae.data import SinkRule, SitePair

NASTY = '<img src=x onerror="alert(1)">&</script>'


@pytest.fixture(scope="module")
def setup(tiny_llama):
    coder = build_coder(CoderConfig("topk", 64, 120, k=6), seed=0)
    ids = torch.randint(0, 256, (6, 24), generator=torch.Generator().manual_seed(0))
    pair = SitePair("resid.2", "resid.2")
    rule = SinkRule(first_position=True, norm_factor=0.0)
    examples = collect_examples(tiny_llama, coder, pair, [ids[:3], ids[3:]], n_examples=4, sinks=rule)
    return coder, ids, pair, examples


def test_top_contexts_match_brute_force(setup, tiny_llama):
    coder, ids, pair, ex = setup
    with torch.no_grad():
        x = run_with_sites(tiny_llama, ids, [pair.input]).acts[pair.input]
        codes = coder.encode(x.reshape(-1, 64)).reshape(6, 24, -1)
    codes[:, 0] = 0  # sinks are never shown
    for latent in (0, 7, 55, 119):
        flat = codes[..., latent].reshape(-1)
        expected = flat.topk(4).values
        assert torch.allclose(ex.values[latent], expected, atol=1e-6)
        for r in range(4):
            if expected[r] > 0:
                where = (codes[..., latent] == ex.values[latent, r]).nonzero()[0]
                assert int(ex.tokens[latent, r, BEFORE]) == int(ids[where[0], where[1]])
                assert float(ex.acts[latent, r, BEFORE]) == pytest.approx(float(ex.values[latent, r]))
        density = float((codes[..., latent] != 0).sum()) / (6 * 23)
        assert float(ex.density[latent]) == pytest.approx(density)


def test_logit_effects_are_the_decoder_through_the_unembedding(setup, tiny_llama):
    coder = setup[0]
    promoted, suppressed = logit_effects(tiny_llama, coder, top=3)
    W_U = tiny_llama.anatomy.unembedding.weight * tiny_llama.anatomy.final_norm.weight
    logits = coder.W_dec[5].detach() @ W_U.detach().T
    assert promoted[5].tolist() == logits.topk(3).indices.tolist()
    assert suppressed[5].tolist() == (-logits).topk(3).indices.tolist()


class _NastyTokenizer:
    def decode(self, ids):
        return NASTY + str(ids[0])


def test_pages_are_escaped_static_and_searchable(setup, tiny_llama, tmp_path):
    coder, _, _, ex = setup
    lm = dataclasses.replace(tiny_llama, tokenizer=_NastyTokenizer())
    result = write_browser(lm, coder, ex, tmp_path, title=NASTY)
    assert result.n_pages == 2
    index = (tmp_path / "index.html").read_text()
    pages = [p.read_text() for p in sorted((tmp_path / "features").glob("*.html"))]
    for page in [index, *pages]:
        assert NASTY not in page and "onerror=\"alert" not in page
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&lt;/script&gt;" in page
        assert 'http-equiv="Content-Security-Policy"' in page
        assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing loaded from elsewhere
    assert index.count("<tr data-search=") == coder.width
    assert '<input id=q type=search' in index and index.count("<script>") == 1
    assert 'href="features/000100.html#f105"' in index
    assert pages[0].count("<section id=") == 100 and pages[1].count("<section id=") == 20
    assert "<mark" in pages[0]
