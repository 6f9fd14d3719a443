"""The report's HTML: data is escaped, nothing is fetched, every result is shown."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from alignlab.errors import ArtifactError
from alignlab.report import CSP, Heading, Paragraph, Section, build_report, registry
from alignlab.report.builder import build_sections, unclaimed_section
from alignlab.runs import RunView

from .report_hostile import HOSTILE, hostile_metrics

ACTIVE_TAGS = {"script", "svg", "iframe", "object", "embed", "link", "base", "form", "math"}


class Scan(HTMLParser):
    """Every tag with its attributes, and the visible text, as a browser's parser sees them."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def active_markup(self) -> list[str]:
        """Tags or attributes that could run code or fetch something."""
        found = [tag for tag, _ in self.tags if tag in ACTIVE_TAGS]
        found += [f"{tag} {name}" for tag, attrs in self.tags for name in attrs if name.startswith("on")]
        found += [f"img {a.get('src')!r}" for tag, a in self.tags
                  if tag == "img" and not (a.get("src") or "").startswith("data:image/png;base64,")]
        return found

    def images(self) -> list[dict]:
        return [attrs for tag, attrs in self.tags if tag == "img"]


def _view(tmp_path, config=None) -> RunView:
    return RunView(tmp_path, "inspect", config or {"model": "tiny-llama"}, "0.1.0", "2026-01-01T00:00:00+00:00")


@pytest.fixture
def isolated_sections(monkeypatch):
    """Sections registered inside a test do not leak into other tests."""
    registry.registered_sections()  # the built-ins first
    monkeypatch.setattr(registry, "_SECTIONS", dict(registry._SECTIONS))


def test_scanner_sees_unescaped_markup():
    # the checks below can fail: naive interpolation of the same data is caught
    naive = "".join(f"<p>{s}</p>" for s in HOSTILE)
    assert {"script", "svg", "img onerror", "img 'x'"} <= set(Scan(naive).active_markup())


def test_hostile_strings_are_text_not_markup(hostile_run):
    html = (hostile_run.path / "report.html").read_text(encoding="utf-8")
    scan = Scan(html)
    assert scan.active_markup() == []
    text = "".join(scan.text)
    for s in HOSTILE:
        assert s in text
    assert "<script" not in html.lower()


def test_self_contained_with_csp(hostile_run):
    html = (hostile_run.path / "report.html").read_text(encoding="utf-8")
    assert re.search(r"https?://", html, re.IGNORECASE) is None
    assert "url(" not in html and "@import" not in html
    metas = [a for tag, a in Scan(html).tags if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert [m["content"] for m in metas] == [CSP]
    assert "default-src 'none'" in CSP and "script-src" not in CSP and "img-src data:" in CSP
    # the policy must come before anything it governs
    assert html.index("Content-Security-Policy") < html.index("<style>") < html.index("<body>")


def test_sections_and_plots(hostile_run):
    html = (hostile_run.path / "report.html").read_text(encoding="utf-8")
    scan = Scan(html)
    headings = [t.strip() for t in scan.text if t.strip()]
    for title in ("Config", "Inspect: norms and logit lens at the last position",
                  "Harvest: activation store statistics", "Other metrics"):
        assert title in headings
    images = scan.images()
    assert len(images) == 2  # inspect's norm plot, harvest's per-layer plot
    for attrs in images:
        png = base64.b64decode(attrs["src"].split(",", 1)[1])
        width, height = Image.open(io.BytesIO(png)).size
        assert width >= 300 and height >= 150 and attrs["alt"]
    text = "".join(scan.text)
    assert "resid.4" in text and "4096" in text  # harvest per-layer table and summary


def test_inspect_table_shows_every_site(tmp_path):
    metrics = hostile_metrics()
    html = build_report(_view(tmp_path), {"inspect": metrics["inspect"]})
    prompt = metrics["inspect"]["prompts"][1]
    text = "".join(Scan(html).text)
    for site, norm in zip(prompt["sites"], prompt["norm"]):
        assert site in text and f"{norm:.4g}" in text
    assert "Other metrics" not in text and "Harvest" not in text


def test_unclaimed_keys_are_listed(tmp_path):
    metrics = {"inspect": hostile_metrics()["inspect"], "mystery": {"answer": 42},
               "long": list(range(20_000))}
    text = "".join(Scan(build_report(_view(tmp_path), metrics)).text)
    assert "mystery" in text and '"answer": 42' in text
    assert "long" in text and "more characters in metrics.json" in text
    assert "Other metrics" in text


def test_empty_metrics_still_make_a_report(tmp_path):
    scan = Scan(build_report(_view(tmp_path, {"model": HOSTILE[0]}), {}))
    assert scan.active_markup() == [] and scan.images() == []
    assert HOSTILE[0] in "".join(scan.text)


def test_registered_section_claims_and_order(tmp_path, isolated_sections):
    @registry.register("first", claims=("a", "b"), order=1)
    def first(run, metrics):
        return Section("First section", [Paragraph(f"a={metrics['a']}")])

    @registry.register("absent", claims=("c",))
    def absent(run, metrics):
        return None  # claims nothing: its keys are still listed

    metrics = {"a": 1, "b": 2, "c": 3, "inspect": hostile_metrics()["inspect"]}
    built = build_sections(_view(tmp_path), metrics)
    assert [s.title for s in built.sections] == ["First section", "Inspect: norms and logit lens at the last position"]
    assert built.claimed == {"a", "b", "inspect"}
    leftover = unclaimed_section(metrics, built.claimed)
    assert [b.text for b in leftover.blocks if isinstance(b, Heading)] == ["c"]
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("first")(first)


def test_unreadable_metrics_name_the_section(tmp_path):
    with pytest.raises(ArtifactError, match="report section 'inspect' cannot read .*KeyError"):
        build_report(_view(tmp_path), {"inspect": {"prompts": [{"prompt": "x"}]}})


def test_config_values_shown(tmp_path):
    config = {"model": "tiny-llama", "prompt": ["one", "two"], "top_k": 5, "revision": None}
    text = "".join(Scan(build_report(_view(tmp_path, config), {})).text)
    assert json.dumps(["one", "two"]) in text and "null" in text and "tiny-llama" in text


def test_harvest_section_tolerates_gaps_and_long_values(tmp_path):
    harvest = {"resid_norm_mean": [1.0, 2.0, 4.0], "resid_norm_mean_excl_first": [None, 1.5, 3.0],
               "sites": {"resid.0": {"mean": list(range(600))}}, "seq_len": 128}
    scan = Scan(build_report(_view(tmp_path), {"harvest": harvest}))
    assert len(scan.images()) == 1
    text = "".join(scan.text)
    assert "the whole value is in metrics.json" in text and "128" in text
    assert "Other metrics" not in text
