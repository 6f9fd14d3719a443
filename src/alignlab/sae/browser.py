"""The feature browser: static HTML pages, every string escaped, one section per latent.

For each latent: its top-activating contexts (the token where it peaks highlighted, the tokens
around it shaded by the latent's activation), its activation density, and the tokens its
decoder direction promotes and suppresses through the unembedding (``W_U (gamma * d_i)``, the
final norm's gain applied and its data-dependent scale left out: the direct path, as in the
logit lens). ``index.html`` lists every latent with a search box; the latents' sections live on
pages of :data:`LATENTS_PER_PAGE`. Pages load nothing from elsewhere (a Content-Security-Policy
forbids it) and hold no text that is not escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..activations import run_with_sites
from ..activations.sites import expand_sites
from ..models import LoadedModel
from ..runs import atomic_write_text
from .arch import SparseCoder
from .data import DEFAULT_SINKS, SinkRule, SitePair, sink_mask

LATENTS_PER_PAGE = 100
BEFORE, AFTER = 10, 3  # context tokens shown around the peak
SHADES = 6
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@dataclass
class FeatureExamples:
    """The top contexts of every latent, over the tokens browsed."""

    values: Tensor  # (width, n) peak activation of each example, descending; 0: no example
    tokens: Tensor  # (width, n, W) token ids of each window (-1: outside the sequence)
    acts: Tensor  # (width, n, W) the latent's activation along each window
    density: Tensor  # (width,) fraction of non-sink tokens it fires on
    n_tokens: int  # non-sink tokens browsed


@dataclass
class BrowserResult:
    index: Path
    n_latents: int
    n_pages: int


@torch.no_grad()
def collect_examples(
    lm: LoadedModel,
    coder: SparseCoder,
    pair: SitePair,
    token_batches: Iterable[Tensor],
    n_examples: int = 8,
    sinks: SinkRule = DEFAULT_SINKS,
) -> FeatureExamples:
    """One pass over ``token_batches`` (B, T), keeping each latent's ``n_examples`` best contexts."""
    width, window = coder.width, BEFORE + AFTER + 1
    best = _Best(width, n_examples, window)
    fires = torch.zeros(width, dtype=torch.float64)
    n_tokens = 0
    sites = expand_sites([pair.input], lm.n_layers)
    for ids in token_batches:
        x = run_with_sites(lm, ids, sites).acts[pair.input].float().cpu()  # (B, T, d)
        codes = coder.encode(x.reshape(-1, x.shape[-1])).reshape(*ids.shape, width)  # (B, T, w)
        codes = codes * (~sink_mask(x, sinks))[..., None]
        fires += (codes != 0).sum((0, 1)).double()
        n_tokens += int((~sink_mask(x, sinks)).sum())
        best.merge(*_batch_candidates(codes, ids.cpu(), n_examples))
    return FeatureExamples(best.values, best.tokens, best.acts, fires / max(n_tokens, 1), n_tokens)


def _batch_candidates(codes: Tensor, ids: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each latent's top ``n`` positions in this batch, with their token and activation windows."""
    batch, length, width = codes.shape
    n = min(n, batch * length)
    values, flat = codes.reshape(-1, width).topk(n, dim=0)  # (n, width)
    b, t = flat // length, flat % length
    offsets = torch.arange(-BEFORE, AFTER + 1)  # (W,)
    pos = t[..., None] + offsets + BEFORE  # (n, width, W), into the padded sequence
    ids_pad = torch.nn.functional.pad(ids, (BEFORE, AFTER), value=-1)  # (B, T + W - 1)
    codes_pad = torch.nn.functional.pad(codes, (0, 0, BEFORE, AFTER))  # (B, T + W - 1, width)
    tokens = ids_pad[b[..., None], pos]  # (n, width, W)
    latent = torch.arange(width)[None, :, None]
    acts = codes_pad[b[..., None], pos, latent]  # (n, width, W)
    return values.T, tokens.transpose(0, 1), acts.transpose(0, 1)  # (width, n[, W])


class _Best:
    """A running top-n per latent."""

    def __init__(self, width: int, n: int, window: int):
        self.values = torch.zeros(width, n)
        self.tokens = torch.full((width, n, window), -1, dtype=torch.long)
        self.acts = torch.zeros(width, n, window)

    def merge(self, values: Tensor, tokens: Tensor, acts: Tensor) -> None:
        all_values = torch.cat([self.values, values], dim=1)  # (width, n + m)
        keep = all_values.topk(self.values.shape[1], dim=1).indices  # (width, n)
        self.values = all_values.gather(1, keep)
        index = keep[..., None].expand(-1, -1, self.tokens.shape[2])
        self.tokens = torch.cat([self.tokens, tokens], dim=1).gather(1, index)
        self.acts = torch.cat([self.acts, acts], dim=1).gather(1, index)


@torch.no_grad()
def logit_effects(lm: LoadedModel, coder: SparseCoder, top: int = 8, chunk: int = 512) -> tuple[Tensor, Tensor]:
    """(promoted, suppressed): (width, top) token ids with the largest / smallest W_U (g * d_i)."""
    W_U = lm.anatomy.unembedding.weight.detach().float().cpu()  # (vocab, d)
    gain = getattr(lm.anatomy.final_norm, "weight", None)
    if gain is not None:
        W_U = W_U * gain.detach().float().cpu()
    promoted, suppressed = [], []
    for start in range(0, coder.width, chunk):
        logits = coder.W_dec[start : start + chunk].detach().float() @ W_U.T  # (c, vocab)
        promoted.append(logits.topk(top, dim=1).indices)
        suppressed.append((-logits).topk(top, dim=1).indices)
    return torch.cat(promoted), torch.cat(suppressed)


# ----- HTML --------------------------------------------------------------------------------

class _Tokens:
    """Token id -> shown text, decoded once each."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            text = self.tokenizer.decode([token_id])
            text = text.replace("\n", "\u23ce").replace("\t", "\u21e5")
            text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
            self.cache[token_id] = text or "\u2205"
        return self.cache[token_id]


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def write_browser(
    lm: LoadedModel,
    coder: SparseCoder,
    examples: FeatureExamples,
    out: str | Path,
    title: str,
    max_pages: int | None = None,
) -> BrowserResult:
    """Write ``index.html`` and ``features/*.html`` into ``out`` (the index last)."""
    out = Path(out)
    (out / "features").mkdir(parents=True, exist_ok=True)
    text = _Tokens(lm.tokenizer)
    promoted, suppressed = logit_effects(lm, coder)
    pages = range(0, coder.width, LATENTS_PER_PAGE)
    if max_pages is not None:
        pages = pages[:max_pages]
    for start in pages:
        latents = range(start, min(start + LATENTS_PER_PAGE, coder.width))
        body = "".join(_latent_section(i, examples, promoted, suppressed, text) for i in latents)
        atomic_write_text(out / "features" / _page_name(start), _page(f"{title}: latents {start}-{latents[-1]}", body))
    shown = len(pages) * LATENTS_PER_PAGE
    atomic_write_text(out / "index.html", _index(title, coder, examples, promoted, text, shown))
    return BrowserResult(out / "index.html", coder.width, len(pages))


def _page_name(start: int) -> str:
    return f"{start:06d}.html"


def _page(title: str, body: str, script: str = "") -> str:
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>{body}{script}</body></html>\n"
    )


def _latent_section(i: int, ex: FeatureExamples, promoted: Tensor, suppressed: Tensor, text: _Tokens) -> str:
    density = float(ex.density[i])
    head = (f'<section id="f{i}"><h2>latent {i}</h2><p>density {_e(f"{density:.3%}")} of '
            f"{ex.n_tokens} tokens; max activation {_e(f'{float(ex.values[i, 0]):.4g}')}</p>")
    effects = (f"<p>promotes: {_token_list(promoted[i], text)}</p>"
               f"<p>suppresses: {_token_list(suppressed[i], text)}</p>")
    rows = [_context(ex, i, r, text) for r in range(ex.values.shape[1]) if ex.values[i, r] > 0]
    contexts = "<ol class=ctx>" + "".join(rows) + "</ol>" if rows else "<p>never fired on these tokens</p>"
    return head + effects + contexts + "</section>"


def _token_list(ids: Tensor, text: _Tokens) -> str:
    return " ".join(f"<code>{_e(text(int(t)))}</code>" for t in ids)


def _context(ex: FeatureExamples, i: int, r: int, text: _Tokens) -> str:
    peak = float(ex.values[i, r])
    spans = []
    for j, (tok, act) in enumerate(zip(ex.tokens[i, r].tolist(), ex.acts[i, r].tolist())):
        if tok < 0:
            continue
        shade = min(SHADES - 1, int(SHADES * max(act, 0.0) / peak)) if peak > 0 else 0
        tag = "mark" if j == BEFORE else "span"
        spans.append(f'<{tag} class=a{shade} title="{_e(f"{act:.3g}")}">{_e(text(tok))}</{tag}>')
    return f"<li><span class=v>{_e(f'{peak:.3g}')}</span> {''.join(spans)}</li>"


def _index(title: str, coder: SparseCoder, ex: FeatureExamples, promoted: Tensor, text: _Tokens,
           shown: int) -> str:
    rows = []
    for i in range(coder.width):
        peak_tokens = [text(int(ex.tokens[i, r, BEFORE])) for r in range(ex.values.shape[1])
                       if ex.values[i, r] > 0][:5]
        promotes = [text(int(t)) for t in promoted[i][:5]]
        label = f'<a href="features/{_page_name(i // LATENTS_PER_PAGE * LATENTS_PER_PAGE)}#f{i}">{i}</a>' \
            if i < shown else str(i)
        search = " ".join([str(i), *peak_tokens, *promotes])
        rows.append(
            f'<tr data-search="{_e(search.lower())}"><td>{label}</td>'
            f"<td>{_e(f'{float(ex.density[i]):.3%}')}</td><td>{_e(f'{float(ex.values[i, 0]):.3g}')}</td>"
            f"<td>{' '.join(f'<code>{_e(t)}</code>' for t in peak_tokens)}</td>"
            f"<td>{' '.join(f'<code>{_e(t)}</code>' for t in promotes)}</td></tr>"
        )
    summary = (f"<p>{coder.width} latents ({_e(coder.arch)}, k={coder.cfg.k}); "
               f"{ex.n_tokens} tokens browsed.</p>")
    search_box = ('<p><label>search latents (id, token): <input id=q type=search autocomplete=off>'
                  '</label> <span id=n></span></p>')
    table = ("<table id=t><thead><tr><th>latent</th><th>density</th><th>max</th>"
             "<th>top-activating tokens</th><th>promotes</th></tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>")
    return _page(title, summary + search_box + table, f"<script>{_SEARCH_JS}</script>")


# The search only compares the typed text with data-search attributes and hides rows: it never
# writes HTML, so what is typed cannot become markup.
_SEARCH_JS = """
const q = document.getElementById('q'), n = document.getElementById('n');
const rows = Array.from(document.querySelectorAll('#t tbody tr'));
q.addEventListener('input', () => {
  const want = q.value.trim().toLowerCase();
  let shown = 0;
  for (const row of rows) {
    const hit = !want || row.dataset.search.includes(want);
    row.hidden = !hit; shown += hit;
  }
  n.textContent = shown + ' shown';
});
"""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:70em}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
code{background:#f3f3f3;padding:0 3px;white-space:pre}
ol.ctx li{font-family:monospace;white-space:pre-wrap;margin:2px 0}
.v{color:#666;display:inline-block;min-width:4em}
mark{outline:2px solid #c60;background:#fc8}
.a0{background:none}.a1{background:#fee}.a2{background:#fcc}.a3{background:#faa}
.a4{background:#f88}.a5{background:#f66}
"""
