"""The report a data team reads (issue 15), on the demo corpus: each section
is there with real content (read as the page's text, section by section),
settings are folded and readable, every figure is an embedded PNG that
decodes, untrusted strings in the new sections are escaped, and the page
renders in headless Chromium."""

from __future__ import annotations

import base64
import io
import os
import re
from html.parser import HTMLParser

import fastprep
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastprep.cli import demo_corpus, demo_eval_set
from fastprep.pipeline import prep
from fastprep.pipeline.report import write_report
from PIL import Image
from test_report import _chromium, _run_chromium

SECTIONS = ("run", "records", "samples", "hashtags", "coverage", "provenance", "images",
            "damaged", "clusters", "leaks", "privacy")  # fmt: skip


class _SectionText(HTMLParser):
    """The visible text of each ``<section id=...>``, and its elements."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, list[str]] = {}
        self.tags: dict[str, list[tuple[str, dict]]] = {}
        self.current: str | None = None
        self.depth = 0
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            if self.current is None:
                self.current = attrs.get("id", "?")
                self.text[self.current] = []
                self.tags[self.current] = []
            self.depth += 1
        if tag in ("style", "script"):
            self.skip += 1
        if self.current is not None:
            self.tags[self.current].append((tag, attrs))

    def handle_endtag(self, tag):
        if tag == "section":
            self.depth -= 1
            if self.depth == 0:
                self.current = None
        if tag in ("style", "script"):
            self.skip -= 1

    def handle_data(self, data):
        if self.current is not None and not self.skip and data.strip():
            self.text[self.current].append(" ".join(data.split()))


def _sections(page: str) -> tuple[dict[str, str], dict[str, list]]:
    parser = _SectionText()
    parser.feed(page)
    return {k: " ".join(v) for k, v in parser.text.items()}, parser.tags


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("demo-report")
    result = prep(demo_corpus(), out, size=64, eval_source=demo_eval_set())
    assert result.report is not None
    page = open(result.report, encoding="utf-8").read()
    return out, result, page


def test_every_section_has_real_content_on_the_demo_corpus(demo_report):
    out, result, page = demo_report
    text, tags = _sections(page)
    assert tuple(text) == SECTIONS, list(text)
    totals = result.manifest["totals"]
    # privacy: redaction counts and the datasheet (issue 18)
    assert "redacted" in text["privacy"] and "Datasheet" in text["privacy"]
    # run: the settings are folded by default, readable (no raw JSON)
    details = [a for t, a in tags["run"] if t == "details"]
    assert details and all("open" not in a for a in details)
    assert "is_public in (false) → not_public" in text["run"]
    assert "64 x 64 px" in text["run"] and '{"' not in text["run"]
    # records: outcomes add up; the shard's size on disk
    assert f"written {totals['written']}" in text["records"]
    shard = result.manifest["outputs"][0]["file"]
    size = os.path.getsize(out / shard)
    shown = f"{size / 1e6:,.1f} MB" if size >= 1e6 else f"{size / 1e3:,.1f} KB"
    assert f"{shard} {totals['written']} {shown}" in text["records"], text["records"]
    # samples: 24 written images, each captioned with its key and labels
    written = {r["key"] for r in pq.read_table(out / shard, columns=["key"]).to_pylist()}
    figures = [a for t, a in tags["samples"] if t == "figure"]
    assert len(figures) == min(24, totals["written"])
    sample_keys = {a["title"].split(":")[0] for a in figures}
    assert sample_keys <= written and len(sample_keys) == len(figures)
    assert "#" in text["samples"]
    # hashtags: the top tags, and examples of them that are written records
    assert "#photooftheday" in text["hashtags"] and "Examples of the top tags" in text["hashtags"]
    assert "espresso_morning" in text["hashtags"] or "chelsea_cat" in text["hashtags"]
    # coverage
    assert "records labelled" in text["coverage"] and "%" in text["coverage"]
    # provenance: licences of the written records add up to what was written
    licences = re.findall(r"(CC-BY-4\.0|CC0-1\.0|public-domain|MIT|CC-BY-2\.0|"
                          r"no-known-copyright-restrictions) (\d+)", text["provenance"])  # fmt: skip
    assert sum(int(n) for _, n in licences) == totals["written"], text["provenance"]
    assert "not_public 2" in text["provenance"] and "opt_out 1" in text["provenance"]
    assert "distinct authors" in text["provenance"]
    # images: formats of the written records add up too
    formats = re.findall(r"\b(jpeg|png|webp|gif|bmp) (\d+)", text["images"])
    assert sum(int(n) for _, n in formats) == totals["written"], text["images"]
    assert "shorter side" in text["images"] and "landscape" in text["images"]
    # damaged: the two planted broken files, with reasons, and the full table linked
    assert "broken_upload" in text["damaged"] and "not_an_image" in text["damaged"]
    assert "decode_error" in text["damaged"] and "dropped.parquet" in text["damaged"]
    assert ("a", {"href": "dropped.parquet"}) in tags["damaged"]
    # clusters and leaks as thumbnails
    assert "espresso_morning_repost" in text["clusters"]
    assert "rocket_launchpad" in text["leaks"] and "launch_night" in text["leaks"]
    assert any(t == "img" for t, _ in tags["leaks"])
    assert "1 training record, 1 evaluation image" in text["leaks"]


def test_every_figure_is_an_embedded_png_that_decodes(demo_report):
    out, _, page = demo_report
    srcs = re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', page)
    files = sorted(p.name for p in (out / "report").iterdir())
    assert len(srcs) == len(files) >= 30
    on_disk = {(out / "report" / f).read_bytes() for f in files}
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data in on_disk
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    for name in ("resolution.png", "aspect.png", "formats.png", "leaks.png", "samples_01.png",
                 "tag_01.png", "drops.png", "rank_frequency.png"):  # fmt: skip
        assert name in files, name
    assert "http://" not in page and "https://" not in page
    assert page.count("<script") == 1


HOSTILE = "<script>alert(3)</script>"


def test_new_sections_escape_untrusted_strings(tmp_path):
    thumb = np.full((40, 60, 3), 128, np.uint8)
    manifest = {
        "source": "x",
        "settings": {"consent_rules": [{"column": HOSTILE, "drop_values": [False],
                                        "reason": "not_public", "drop_missing": False}]},
        "totals": {"input": 3, "written": 1, "dropped": {"decode_error": 2}},
        "outputs": [{"file": "shard-00000.parquet", "records": 1}],
    }  # fmt: skip
    dropped = pa.table({"key": [HOSTILE, "ok"], "source": ["s", "s"],
                        "reason": [f"decode_error: {HOSTILE}", "not_public"]})  # fmt: skip
    path = write_report(
        str(tmp_path), manifest=manifest, counts=fastprep.count_hashtags(["#a"]).to_arrow(),
        coverage={}, clusters=[], leaks=None, dropped=dropped,
        samples=[{"key": HOSTILE, "labels": [HOSTILE], "thumbnail": thumb}],
        tag_examples=[{"tag": HOSTILE, "images": 1, "examples": [{"key": HOSTILE,
                                                                  "thumbnail": thumb}]}],
        provenance={"licenses": [(HOSTILE, 1)], "sources": [(HOSTILE, 1)], "n_sources": 1},
        images={"width": [60], "height": [40], "format": [HOSTILE]},
    )  # fmt: skip
    page = open(path, encoding="utf-8").read()
    assert HOSTILE not in page
    assert page.count("&lt;script&gt;alert(3)&lt;/script&gt;") >= 8
    text, _ = _sections(page)
    assert "1 record dropped for the file itself (decode_error: 1)" in text["damaged"]


def test_demo_report_renders_in_chromium(demo_report, tmp_path):
    binary = _chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium binary under CI: scripts/test.sh should have installed it")
        pytest.skip("no chromium binary (apt-get install chromium) for the browser test")
    out, _, page = demo_report
    url = (out / "report.html").absolute().as_uri()
    dom = _run_chromium(binary, str(tmp_path / "p1"), "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<body[^>]*\bdata-figures="(\d+)/(\d+)"', dom.stdout)
    assert m, dom.stdout[:500]
    assert int(m.group(1)) == int(m.group(2)) == len(re.findall(r"<img\b", page))
    shot = tmp_path / "shot.png"
    res = _run_chromium(binary, str(tmp_path / "p2"), f"--screenshot={shot}",
                        "--window-size=1200,3000", url)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB")).astype(np.float64)
    assert pixels.mean(axis=2).var() > 200  # not a blank page


def test_count_axes_have_whole_number_ticks(monkeypatch):
    """Small counts (1-3 records) gave ticks at 0.5 steps; counts are whole."""
    mpl = pytest.importorskip("matplotlib")
    from fastprep.pipeline.report import charts
    from matplotlib.figure import Figure

    loaded = charts.load_matplotlib()
    axes = {}

    def capture(_mpl, _size, draw):
        fig = Figure()
        ax = fig.add_subplot()
        draw(ax)
        axes["ax"] = ax
        return b""

    monkeypatch.setattr(charts, "_render", capture)
    cases = [
        (lambda: charts.drops_figure(loaded, [("a", 3), ("b", 1)], 10), "x"),
        (lambda: charts.labels_figure(loaded, [0, 1, 3, 2]), "y"),
        (lambda: charts.formats_figure(loaded, [("jpeg", 2), ("png", 1)]), "y"),
        (
            lambda: charts.resolution_figure(
                loaded, np.array([300.0, 310, 320]), np.array([200.0, 210, 400])
            ),
            "y",
        ),
    ]
    for make, which in cases:
        make()
        ax = axes["ax"]
        lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
        ticks = ax.get_xticks() if which == "x" else ax.get_yticks()
        shown = [t for t in ticks if lo <= t <= hi]
        assert len(shown) >= 2
        assert all(float(t).is_integer() for t in shown), ticks
    # without the integer locator the same data would get fractional ticks
    fig = Figure()
    ax = fig.add_subplot()
    ax.bar([0, 1], [1, 2])
    assert not all(float(t).is_integer() for t in ax.get_yticks())
    assert mpl is not None
