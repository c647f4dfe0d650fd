"""The HTML report of the prep job: contents, escaping, embedded PNGs, the
no-matplotlib fallback, and a real render in headless Chromium."""

from __future__ import annotations

import base64
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import fastprep
import numpy as np
import pyarrow as pa
import pytest
from fastprep.pipeline.report import write_report
from PIL import Image

HOSTILE = "<script>alert(1)</script>"
HOSTILE_TAG = "<img src=x onerror=alert(2)>"
DROPS = {"decode_error": 2, "duplicate_of": 57, "eval_leak": 3, "not_public": 1}
CLUSTER_SIZES = [5, 3, 2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _zipf_captions(n: int, n_tags: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_tags + 1)
    p /= p.sum()
    captions = []
    for _ in range(n):
        tags = rng.choice(n_tags, size=rng.integers(0, 6), p=p)
        captions.append("photo " + " ".join(f"#tag{t}" for t in tags))
    return captions


def _thumb(seed: int, h: int = 224, w: int = 224) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (h + w)], axis=-1)
    return np.clip(base + rng.integers(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def inputs():
    counts = fastprep.count_hashtags(_zipf_captions(3_000, 400))
    # a hostile key in the counts, frequent enough to be in the top table
    counts.add(HOSTILE_TAG, 50_000, 40_000)
    table = counts.to_arrow()
    written = 1_000 - sum(DROPS.values())
    per_record = [120, 300, 250, 150, 80, written - 900]
    manifest = {
        "fastprep": fastprep.__version__,
        "pyarrow": pa.__version__,
        "source": "/data/corpus & <friends>",
        "settings": {"size": [224, 224], "mode": "center_crop", "top_k": 100, "min_count": 2},
        "outputs": [
            {"file": "shard-00000.parquet", "records": 600},
            {"file": "shard-00001.parquet", "records": written - 600},
        ],
        "vocabulary": {"file": "vocab.json", "size": 100},
        "totals": {"input": 1_000, "written": written, "dropped": DROPS},
        "seconds": 2.5,
        "records_per_second": 400.0,
    }
    coverage = {
        "records": 1_000 - 2,
        "labeled": written - 120,
        "vocab_size": 100,
        "occurrences_in_vocab": 5_123,
        "occurrences_total": 6_789,
        "labels_per_record": per_record,
    }
    clusters = []
    for c, size in enumerate(CLUSTER_SIZES):
        members = [f"img-{c}-{i}" for i in range(size)]
        if c == 0:
            members[1] = HOSTILE
        thumbs = [_thumb(10 * c + i, 224 - 40 * (i % 2), 224) for i in range(size)]
        clusters.append({"keeper": members[0], "members": members, "thumbnails": thumbs})
    leaks = pa.table(
        {
            "train_index": pa.array([4, 9, 17], pa.int64()),
            "eval_index": pa.array([0, 0, 5], pa.int64()),
            "distance": pa.array([12, 0, 30], pa.int32()),
            "train_key": ["train-4", HOSTILE, "train-17"],
            "eval_key": ["eval-0", "eval-0", "eval-5"],
        }
    )
    return {
        "manifest": manifest,
        "counts": table,
        "coverage": coverage,
        "clusters": clusters,
        "leaks": leaks,
    }


def _img_srcs(page: str) -> list[str]:
    return re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', page)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return width, height


def _decoded_images(page: str) -> list[bytes]:
    out = []
    for src in _img_srcs(page):
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:60]
        out.append(base64.b64decode(src[len(prefix) :], validate=True))
    return out


N_CHARTS = 3  # drops, rank-frequency, labels per record
N_FIGURES = N_CHARTS + len(CLUSTER_SIZES)


@pytest.fixture(scope="module")
def report(inputs, tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("prep-out")
    path = write_report(str(out), **inputs)
    return out, path, open(path, encoding="utf-8").read()


def test_report_numbers_and_tables(report, inputs):
    out, path, page = report
    assert path == os.path.join(str(out), "report.html")
    assert page.startswith("<!DOCTYPE html>")
    totals = inputs["manifest"]["totals"]
    assert f"{totals['input']:,}" in page
    assert f">{totals['written']:,}<" in page
    for reason, n in DROPS.items():
        assert re.search(rf"<td[^>]*>{reason}</td><td[^>]*>{n:,}</td>", page), reason
    assert "400.0" in page  # records/s
    # the most frequent real tag of the Zipf sample is ranked first after the hostile one
    top_rows = re.findall(r'<td class="key">#([^<]*)</td>', page)
    assert top_rows[0] == "&lt;img src=x onerror=alert(2)&gt;"
    assert top_rows[1] == "tag0"
    assert len(top_rows) == 30
    assert "75.5%" in page  # 5,123 of 6,789 occurrences covered by the vocabulary
    assert "shard-00001.parquet" in page
    assert "3 training/evaluation matches (3 training records, 2 evaluation images)" in page
    assert "/data/corpus &amp; &lt;friends&gt;" in page
    assert "pip install" not in page  # matplotlib is available here


def test_report_escapes_untrusted_strings(report):
    _, _, page = report
    assert HOSTILE not in page
    assert HOSTILE_TAG not in page
    assert "onerror=alert(2)>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # the one script element is the page's own figure counter
    assert page.count("<script") == 1


def test_report_images_are_embedded_pngs(report):
    out, _, page = report
    images = _decoded_images(page)
    assert len(images) == N_FIGURES
    fig_dir = out / "report"
    files = sorted(p.name for p in fig_dir.iterdir())
    assert files == sorted(
        ["drops.png", "rank_frequency.png", "labels_per_record.png"]
        + [f"cluster_{i:02d}.png" for i in range(1, len(CLUSTER_SIZES) + 1)]
    )
    on_disk = {(fig_dir / name).read_bytes() for name in files}
    for data in images:
        width, height = _png_size(data)
        assert width > 0 and height > 0
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # the whole stream decodes (CRC, zlib)
            assert im.size == (width, height)
        assert data in on_disk
    assert not [p for p in os.listdir(out) if ".tmp" in p]
    assert not [p for p in os.listdir(fig_dir) if ".tmp" in p]
    assert "http://" not in page and "https://" not in page


def test_cluster_strips_mark_keeper_and_dropped(report):
    out, _, _ = report
    widths = []
    for i, size in enumerate(CLUSTER_SIZES, start=1):
        with Image.open(out / "report" / f"cluster_{i:02d}.png") as im:
            strip = np.asarray(im.convert("RGB"))
        h, w, _ = strip.shape
        widths.append(w)
        cell = h  # cells are square, the strip one cell tall
        step = (w - cell) // (size - 1)
        # the frame's top-left pixel: green for the keeper, red for each dropped one
        assert tuple(strip[1, 1]) == (46, 125, 50)
        for k in range(1, size):
            assert tuple(strip[1, k * step + 1]) == (198, 40, 40)
        # the thumbnail is there (not a flat placeholder)
        inner = strip[10:-10, 10 : cell - 10].astype(np.float64)
        assert inner.std() > 10
    assert widths[0] > widths[1] > widths[2]


def test_without_matplotlib(inputs, tmp_path, monkeypatch):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:  # a first run with charts: the rerun below must remove them
        write_report(str(tmp_path), **inputs)
        assert (tmp_path / "report" / "rank_frequency.png").exists()
    # now as if matplotlib were not installed
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    fewer = dict(inputs, clusters=inputs["clusters"][:1])
    path = write_report(str(tmp_path), **fewer)
    page = open(path, encoding="utf-8").read()
    assert "figures need <code>pip install 'fastprep[report]'</code>" in page
    # tables are all still there
    for reason, n in DROPS.items():
        assert re.search(rf"<td[^>]*>{reason}</td><td[^>]*>{n:,}</td>", page), reason
    assert "tag0" in page and "75.5%" in page and "eval-5" in page
    # only the cluster strip (numpy + our PNG writer) remains; stale charts are removed
    images = _decoded_images(page)
    assert len(images) == 1
    assert sorted(os.listdir(tmp_path / "report")) == ["cluster_01.png"]
    assert HOSTILE not in page


def test_empty_inputs(tmp_path):
    pytest.importorskip("matplotlib")
    manifest = {"source": "x", "totals": {"input": 0, "written": 0, "dropped": {}}}
    path = write_report(
        str(tmp_path),
        manifest=manifest,
        counts=fastprep.count_hashtags([]).to_arrow(),
        coverage={},
        clusters=[],
        leaks=pa.table(
            {"train_key": pa.array([], pa.string()), "distance": pa.array([], pa.int32())}
        ),
    )
    page = open(path, encoding="utf-8").read()
    assert "No record was dropped." in page
    assert "No hashtags were found." in page
    assert "No near-duplicates were found." in page
    assert "No training record matches an evaluation image." in page
    assert _img_srcs(page) == []
    assert os.listdir(tmp_path / "report") == []


def _chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


def _run_chromium(binary: str, profile: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *args,
    ]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:  # e.g. a script in the page opened a dialog
        pytest.fail(f"chromium did not finish in 60 s: {' '.join(args)}")


def test_report_renders_in_chromium(report, tmp_path):
    binary = _chromium()
    if binary is None:
        # scripts/test.sh installs Chromium, so under CI a missing browser is a failure.
        if os.environ.get("CI"):
            pytest.fail("no chromium binary under CI: scripts/test.sh should have installed it")
        pytest.skip("no chromium binary (apt-get install chromium) for the browser test")
    _, path, _ = report
    url = pathlib.Path(path).absolute().as_uri()
    t0 = time.perf_counter()
    dom = _run_chromium(binary, str(tmp_path / "profile1"), "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<body[^>]*\bdata-figures="(\d+)/(\d+)"', dom.stdout)
    assert m, "the page's load handler did not run:\n" + dom.stdout[:500]
    loaded, total = int(m.group(1)), int(m.group(2))
    assert total == N_FIGURES > 0
    assert loaded == total

    # the counter really checks decoding: a copy with one broken image says so
    page = open(path, encoding="utf-8").read()
    src = _img_srcs(page)[0]
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace(src, src[:40] + "AAAA" + src[44:], 1), encoding="utf-8")
    dom = _run_chromium(binary, str(tmp_path / "profile0"), "--dump-dom", broken.as_uri())
    assert f'data-figures="{N_FIGURES - 1}/{N_FIGURES}"' in dom.stdout

    shot = tmp_path / "shot.png"
    res = _run_chromium(
        binary,
        str(tmp_path / "profile2"),
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        url,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1200, 2000)
        pixels = np.asarray(im.convert("RGB")).astype(np.float64)
    assert pixels.mean(axis=2).var() > 200  # not a blank page
    # the charts were painted: some pixels have the chart accent colour (#3559c7)
    accent = np.abs(pixels - np.array([0x35, 0x59, 0xC7])).sum(axis=2) < 30
    assert accent.sum() > 500
    print(f"chromium: {time.perf_counter() - t0:.1f}s for 2 x dump-dom + screenshot")
