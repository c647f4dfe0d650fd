"""The HTML report of a ``prep`` job: one self-contained page.

:func:`write_report` writes ``report.html`` (inline CSS, every image embedded
as a ``data:`` URI, no network access) and the same PNG figures as files in
``report/``. Charts need matplotlib (``pip install 'fastprep[report]'``);
without it the page still has every table and the duplicate-cluster strips,
which are composed in numpy and encoded by a small PNG writer here.

Keys, hashtags and captions come from untrusted data: every one is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep import _core
from fastprep.pipeline.io import atomic

__all__ = ["write_report"]

#: Figure files this module writes into ``report/``; stale ones are removed.
_FIGURE_PREFIXES = ("rank_frequency", "drops", "labels_per_record", "cluster_")

_TOP_TAGS = 30
_MAX_LEAK_ROWS = 50
_MAX_CLUSTERS = 12
_MAX_STRIP_MEMBERS = 10
_THUMB = 96  # thumbnail box in the strips, pixels
_BORDER = 4
_GAP = 6
_CELL = _THUMB + 2 * _BORDER
_KEEP_RGB = (46, 125, 50)  # green: the record that is kept
_DROP_RGB = (198, 40, 40)  # red: dropped as a near-duplicate
_MISSING_RGB = (200, 200, 200)

_ACCENT = "#3559c7"
_ACCENT_2 = "#e08a1e"
_MUTED = "#9aa3b2"
_DROP_RGB_HEX = "#{:02x}{:02x}{:02x}".format(*_DROP_RGB)
_HIDPI = 2  # charts are rendered at twice their CSS size

_NO_MATPLOTLIB = (
    "Charts are missing: figures need <code>pip install 'fastprep[report]'</code> (matplotlib)."
)


# ---------------------------------------------------------------------------
# small helpers


def _e(value: Any) -> str:
    """Escapes any value for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _n(value: Any) -> str:
    """Formats a count with thousands separators."""
    if value is None:
        return "—"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.1f}"
    return _e(value)


def _pct(part: float, whole: float) -> str:
    if not whole:
        return "—"
    return f"{100.0 * part / whole:.1f}%"


def _atomic_write(path: str, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic(path, write)


def _png(rgb: np.ndarray) -> bytes:
    """Encodes an ``HxWx3`` uint8 array as PNG (the Rust core's encoder)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    pixels = pa.FixedSizeListArray.from_arrays(pa.array(rgb.reshape(-1)), h * w * 3)
    return _core.encode_images(pa.chunked_array([pixels]), h, w, "png")[0].as_py()


def _as_rgb(image: Any) -> np.ndarray | None:
    """A thumbnail as ``HxWx3`` uint8, or None when it is missing or unusable."""
    if image is None:
        return None
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] not in (1, 3, 4):
        return None
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` box-filter (area-average) resampling weights."""
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    i = np.arange(n_in, dtype=np.float64)[None, :]
    w = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0.0, None)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _fit(rgb: np.ndarray, box: int) -> np.ndarray:
    """Resizes to fit in ``box x box`` keeping the aspect ratio (area averaging)."""
    h, w, _ = rgb.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (h, w):
        return rgb
    out = np.einsum(
        "yh,hwc,xw->yxc",
        _area_weights(h, nh),
        rgb.astype(np.float32),
        _area_weights(w, nw),
        optimize=True,
    )
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _strip(thumbnails: Sequence[Any], n: int) -> np.ndarray:
    """One row of ``n`` cells: the keeper framed green, the dropped ones red."""
    width = n * _CELL + (n - 1) * _GAP
    strip = np.full((_CELL, width, 3), 255, dtype=np.uint8)
    for i in range(n):
        x0 = i * (_CELL + _GAP)
        cell = strip[:, x0 : x0 + _CELL]
        cell[:] = _KEEP_RGB if i == 0 else _DROP_RGB
        inner = cell[_BORDER:-_BORDER, _BORDER:-_BORDER]
        inner[:] = 238
        rgb = _as_rgb(thumbnails[i]) if i < len(thumbnails) else None
        if rgb is None:
            inner[:] = _MISSING_RGB
            continue
        small = _fit(rgb, _THUMB)
        y = (_THUMB - small.shape[0]) // 2
        x = (_THUMB - small.shape[1]) // 2
        inner[y : y + small.shape[0], x : x + small.shape[1]] = small
    return strip


def _counts_table(counts: Any) -> pa.Table | None:
    if counts is None:
        return None
    if isinstance(counts, pa.RecordBatch):
        counts = pa.Table.from_batches([counts])
    if not isinstance(counts, pa.Table) or counts.num_rows == 0:
        return None
    return counts


# ---------------------------------------------------------------------------
# figures (matplotlib, imported lazily)


def _matplotlib() -> Any:
    """``(matplotlib, Figure, FigureCanvasAgg)`` or None when not installed.

    The Agg canvas is used directly, never pyplot, so the caller's backend
    and global figure state are left alone.
    """
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return matplotlib, Figure, FigureCanvasAgg


_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#56606e",
    "axes.labelcolor": "#2b303a",
    "xtick.color": "#56606e",
    "ytick.color": "#56606e",
    "axes.grid": True,
    "grid.color": "#e3e6eb",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
}


def _render(mpl: Any, size: tuple[float, float], draw: Any) -> bytes:
    matplotlib, Figure, FigureCanvasAgg = mpl
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=size, dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig.add_subplot())
        buf = io.BytesIO()
        # twice the displayed resolution: sharp on high-density screens
        fig.savefig(buf, format="png", dpi=100 * _HIDPI, metadata={"Software": None})
    return buf.getvalue()


def _mpl_text(text: str) -> str:
    """Plain text for matplotlib: ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


def _drops_figure(mpl: Any, drops: list[tuple[str, int]], total: int) -> bytes:
    rows = list(reversed(drops))  # largest at the top

    def draw(ax: Any) -> None:
        y = np.arange(len(rows))
        values = [c for _, c in rows]
        ax.barh(y, values, color=_DROP_RGB_HEX, height=0.6)
        ax.set_yticks(y, [_mpl_text(r) for r, _ in rows])
        ax.grid(axis="y", visible=False)
        top = max(values) if values else 1
        for yi, v in zip(y, values):
            ax.text(v + top * 0.01, yi, f"{v:,}", va="center", fontsize=9, color="#2b303a")
        ax.set_xlim(0, top * 1.15)
        ax.set_xlabel("records")
        dropped = sum(values)
        ax.set_title(f"Dropped by reason: {dropped:,} of {total:,}", loc="left")

    return _render(mpl, (5.0, 1.3 + 0.32 * len(rows)), draw)


def _rank_frequency_figure(mpl: Any, images: np.ndarray, occurrences: np.ndarray, vocab: int):
    ranks = np.arange(1, len(images) + 1)
    # At most ~2,000 log-spaced points: a curve of millions of tags stays cheap.
    if len(ranks) > 2_000:
        pick = np.unique(np.geomspace(1, len(ranks), 2_000).astype(np.int64)) - 1
    else:
        pick = ranks - 1

    def draw(ax: Any) -> None:
        ax.loglog(ranks[pick], occurrences[pick], color=_ACCENT_2, lw=1.6, label="occurrences")
        ax.loglog(ranks[pick], images[pick], color=_ACCENT, lw=1.8, label="images")
        if 0 < vocab < len(ranks):
            ax.axvspan(1, vocab, color=_ACCENT, alpha=0.07, lw=0)
            ax.axvline(vocab, color=_ACCENT, ls="--", lw=1)
            ax.text(
                vocab,
                ax.get_ylim()[1],
                f" vocabulary: top {vocab:,}",
                va="top",
                ha="left",
                fontsize=9,
                color=_ACCENT,
            )
        ax.set_xlabel("rank (by images per tag)")
        ax.set_ylabel("count")
        ax.set_title(f"Hashtag rank-frequency ({len(ranks):,} distinct tags)", loc="left")
        ax.legend(frameon=False, loc="lower left")
        ax.grid(True, which="major")

    return _render(mpl, (8.5, 4.0), draw)


def _labels_figure(mpl: Any, per_record: list[int]) -> bytes:
    def draw(ax: Any) -> None:
        k = np.arange(len(per_record))
        colors = [_MUTED if i == 0 else _ACCENT for i in k]
        ax.bar(k, per_record, color=colors, width=0.8)
        ax.set_xlabel("labels per written record")
        ax.set_ylabel("records")
        ax.grid(axis="x", visible=False)
        if len(k) <= 30:
            ax.set_xticks(k)
        ax.set_title("Labels per record (grey: no label)", loc="left")

    return _render(mpl, (5.0, 3.0), draw)


# ---------------------------------------------------------------------------
# the page

_CSS = """
:root { --fg:#1f2430; --muted:#646c7a; --line:#e3e6eb; --bg:#f5f6f8; --card:#fff;
  --accent:#3559c7; --keep:#2e7d32; --drop:#c62828; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font:14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1120px; margin:0 auto; padding:28px 24px 60px; }
header h1 { margin:0 0 4px; font-size:24px; }
header .meta { color:var(--muted); }
header .meta code { color:var(--fg); }
h2 { font-size:18px; margin:0 0 12px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
  padding:18px 20px; margin:18px 0; }
.tiles { display:grid; grid-template-columns:repeat(auto-fit, minmax(128px, 1fr)); gap:12px;
  margin:18px 0; }
.tile { background:var(--card); border:1px solid var(--line); border-radius:10px;
  padding:12px 14px; }
.tile .v { font-size:22px; font-weight:600; }
.tile .l { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.tile .s { color:var(--muted); font-size:12px; }
table { border-collapse:collapse; width:100%; margin:6px 0 10px; }
th, td { text-align:left; padding:5px 10px; border-bottom:1px solid var(--line);
  vertical-align:top; }
th { font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:.03em; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.key { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12.5px;
  word-break:break-all; }
code { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12.5px; }
.grid2 { display:grid; grid-template-columns:minmax(0, 1fr) minmax(0, 1fr); gap:18px; }
@media (max-width: 860px) { .grid2 { grid-template-columns:1fr; } }
img.fig { display:block; max-width:100%; height:auto; margin:8px 0; }
.note { background:#fff6e5; border:1px solid #f0d39a; border-radius:8px; padding:8px 12px; }
.empty { color:var(--muted); font-style:italic; }
.ok { color:var(--keep); font-weight:600; }
.bad { color:var(--drop); font-weight:600; }
.cluster { margin:14px 0 18px; }
.cluster h3 { font-size:14px; margin:0 0 6px; font-weight:600; }
.scroll { overflow-x:auto; padding-bottom:4px; }
.strip img { display:block; max-width:none; }
.caps { display:grid; margin-top:3px; }
.caps div { font:11px/1.3 ui-monospace, Menlo, Consolas, monospace; overflow:hidden;
  word-break:break-all; display:-webkit-box; -webkit-line-clamp:2; -webkit-box-orient:vertical; }
.caps .k { color:var(--keep); font-weight:600; }
.caps .d { color:var(--drop); }
.legend span { display:inline-block; width:11px; height:11px; border-radius:2px;
  vertical-align:-1px; margin:0 4px 0 10px; }
details summary { cursor:pointer; color:var(--accent); }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; margin:8px 0 0; }
dl.kv dt { color:var(--muted); }
dl.kv dd { margin:0; font-family:ui-monospace, Menlo, Consolas, monospace; font-size:12.5px;
  word-break:break-all; }
footer { color:var(--muted); font-size:12px; text-align:center; }
"""

_JS = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  }
  document.body.dataset.figures = ok + "/" + imgs.length;
});
"""


class _Figures:
    """Collects PNG figures: written to ``report/`` and embedded in the page."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.written: list[str] = []

    def img(self, name: str, png: bytes, alt: str, css: str = "fig", scale: int = _HIDPI) -> str:
        _atomic_write(os.path.join(self.directory, name), png)
        self.written.append(name)
        width, height = (v // scale for v in struct.unpack(">II", png[16:24]))
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return f'<img class="{css}" src="{uri}" width="{width}" height="{height}" alt="{_e(alt)}">'

    def remove_stale(self) -> None:
        for name in os.listdir(self.directory):
            if (
                name.endswith(".png")
                and name.startswith(_FIGURE_PREFIXES)
                and name not in self.written
            ):
                os.remove(os.path.join(self.directory, name))


def _tile(label: str, value: str, sub: str = "") -> str:
    sub_html = f'<div class="s">{sub}</div>' if sub else ""
    return f'<div class="tile"><div class="l">{label}</div><div class="v">{value}</div>{sub_html}</div>'


def _setting(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _header(manifest: dict) -> str:
    versions = [f"fastprep <code>{_e(manifest.get('fastprep', '?'))}</code>"]
    if manifest.get("pyarrow"):
        versions.append(f"pyarrow <code>{_e(manifest['pyarrow'])}</code>")
    settings = manifest.get("settings") or {}
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_setting(v))}</dd>" for k, v in settings.items())
    settings_html = (
        f'<details open><summary>Settings</summary><dl class="kv">{rows}</dl></details>'
        if rows
        else ""
    )
    return (
        "<header><h1>fastprep · prep report</h1>"
        f'<div class="meta">Source <code>{_e(manifest.get("source", "?"))}</code> · '
        f"{' · '.join(versions)}</div></header>"
        f"<section><h2>Run</h2>{settings_html}</section>"
    )


def _tiles(manifest: dict, coverage: dict) -> str:
    totals = manifest.get("totals") or {}
    total = int(totals.get("input") or 0)
    written = int(totals.get("written") or 0)
    dropped = sum(int(v) for v in (totals.get("dropped") or {}).values())
    records = int(coverage.get("records") or 0)
    labeled = int(coverage.get("labeled") or 0)
    rps = manifest.get("records_per_second")
    seconds = manifest.get("seconds")
    return (
        '<div class="tiles">'
        + "".join(
            (
                _tile("Input records", _n(total)),
                _tile("Written", _n(written), _pct(written, total) + " of input"),
                _tile("Dropped", _n(dropped), _pct(dropped, total) + " of input"),
                _tile(
                    "Throughput",
                    _n(float(rps)) if rps is not None else "—",
                    "records/s",
                ),
                _tile("Wall time", f"{float(seconds):,.2f} s" if seconds is not None else "—"),
                _tile("Vocabulary", _n(int(coverage.get("vocab_size") or 0)), "hashtags"),
                _tile("Labeled", _pct(labeled, records), f"{_n(labeled)} of {_n(records)}"),
            )
        )
        + "</div>"
    )


def _drops_section(manifest: dict, figs: _Figures, mpl: Any) -> str:
    totals = manifest.get("totals") or {}
    total = int(totals.get("input") or 0)
    written = int(totals.get("written") or 0)
    drops = sorted(
        ((str(k), int(v)) for k, v in (totals.get("dropped") or {}).items()),
        key=lambda kv: (-kv[1], kv[0]),
    )
    dropped = sum(c for _, c in drops)
    rows = [
        f'<tr><td class="key">{_e(r)}</td><td class="num">{_n(c)}</td>'
        f'<td class="num">{_pct(c, total)}</td></tr>'
        for r, c in drops
    ]
    table = (
        '<table><thead><tr><th>outcome</th><th class="num">records</th>'
        '<th class="num">of input</th></tr></thead><tbody>'
        f'<tr><td class="key ok">written</td><td class="num">{_n(written)}</td>'
        f'<td class="num">{_pct(written, total)}</td></tr>'
        + "".join(rows)
        + f'<tr><td><b>input</b></td><td class="num"><b>{_n(total)}</b></td>'
        f'<td class="num">{_pct(written + dropped, total)}</td></tr>'
        "</tbody></table>"
    )
    chart = ""
    if drops and mpl is not None:
        chart = figs.img("drops.png", _drops_figure(mpl, drops, total), "drops by reason")
    elif not drops:
        chart = '<p class="empty">No record was dropped.</p>'
    outputs = manifest.get("outputs") or []
    shard_rows = "".join(
        f'<tr><td class="key">{_e(o.get("file", "?"))}</td>'
        f'<td class="num">{_n(o.get("records"))}</td></tr>'
        for o in outputs
    )
    vocab = manifest.get("vocabulary") or {}
    shards = (
        f"<details{' open' if len(outputs) <= 8 else ''}><summary>{len(outputs):,} output "
        f"shard{'s' if len(outputs) != 1 else ''}"
        + (f" · vocabulary <code>{_e(vocab.get('file'))}</code>" if vocab.get("file") else "")
        + '</summary><table><thead><tr><th>file</th><th class="num">records</th></tr></thead>'
        f"<tbody>{shard_rows}</tbody></table></details>"
    )
    return f'<section><h2>Records</h2><div class="grid2"><div>{table}{shards}</div><div>{chart}</div></div></section>'


def _hashtag_section(counts: pa.Table | None, coverage: dict, figs: _Figures, mpl: Any) -> str:
    if counts is None:
        return '<section><h2>Hashtags</h2><p class="empty">No hashtags were found.</p></section>'
    order = pc.sort_indices(
        counts,
        sort_keys=[("images", "descending"), ("occurrences", "descending"), ("tag", "ascending")],
    )
    ranked = counts.take(order)
    images = ranked.column("images").to_numpy().astype(np.int64)
    occurrences = np.sort(counts.column("occurrences").to_numpy().astype(np.int64))[::-1]
    vocab = int(coverage.get("vocab_size") or 0)
    total_occ = int(occurrences.sum())
    top = ranked.slice(0, _TOP_TAGS).to_pylist()
    rows = "".join(
        f'<tr><td class="num">{i}</td><td class="key">#{_e(r["tag"])}</td>'
        f'<td class="num">{_n(int(r["images"]))}</td>'
        f'<td class="num">{_n(int(r["occurrences"]))}</td>'
        f'<td class="num">{_pct(int(r["occurrences"]), total_occ)}</td>'
        f"<td>{'<span class=ok>✓</span>' if i <= vocab else ''}</td></tr>"
        for i, r in enumerate(top, start=1)
    )
    table = (
        f"<h3>Top {len(top)} hashtags</h3>"
        '<table><thead><tr><th class="num">#</th><th>tag</th><th class="num">images</th>'
        '<th class="num">occurrences</th><th class="num">share</th><th>vocab</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    chart = ""
    if mpl is not None:
        chart = figs.img(
            "rank_frequency.png",
            _rank_frequency_figure(mpl, images, occurrences, vocab),
            "hashtag rank-frequency, log-log",
        )
    summary = (
        f"<p>{_n(len(images))} distinct hashtags, {_n(total_occ)} occurrences. "
        "The vocabulary is the top tags by image count.</p>"
    )
    return f"<section><h2>Hashtags</h2>{summary}{chart}{table}</section>"


def _coverage_section(coverage: dict, figs: _Figures, mpl: Any) -> str:
    records = int(coverage.get("records") or 0)
    labeled = int(coverage.get("labeled") or 0)
    in_vocab = int(coverage.get("occurrences_in_vocab") or 0)
    occ_total = int(coverage.get("occurrences_total") or 0)
    per_record = [int(x) for x in (coverage.get("labels_per_record") or [])]
    n_written = sum(per_record)
    mean = sum(k * c for k, c in enumerate(per_record)) / n_written if n_written else None
    stats = (
        "<table><tbody>"
        f'<tr><td>records labelled</td><td class="num">{_n(labeled)} of {_n(records)}</td>'
        f'<td class="num"><b>{_pct(labeled, records)}</b></td></tr>'
        f"<tr><td>tag occurrences covered by the vocabulary</td>"
        f'<td class="num">{_n(in_vocab)} of {_n(occ_total)}</td>'
        f'<td class="num"><b>{_pct(in_vocab, occ_total)}</b></td></tr>'
        f'<tr><td>vocabulary size</td><td class="num">{_n(int(coverage.get("vocab_size") or 0))}'
        "</td><td></td></tr>"
        f"<tr><td>mean labels per written record</td>"
        f'<td class="num">{"—" if mean is None else f"{mean:.2f}"}</td><td></td></tr>'
        "</tbody></table>"
    )
    hist_rows = "".join(
        f'<tr><td class="num">{k}</td><td class="num">{_n(c)}</td>'
        f'<td class="num">{_pct(c, n_written)}</td></tr>'
        for k, c in enumerate(per_record)
    )
    hist = (
        "<details><summary>Labels per record, as a table</summary>"
        '<table><thead><tr><th class="num">labels</th><th class="num">records</th>'
        f'<th class="num">share</th></tr></thead><tbody>{hist_rows}</tbody></table></details>'
        if per_record
        else ""
    )
    chart = ""
    if n_written and mpl is not None:
        chart = figs.img(
            "labels_per_record.png", _labels_figure(mpl, per_record), "labels per record"
        )
    return (
        f'<section><h2>Label coverage</h2><div class="grid2"><div>{stats}{hist}</div>'
        f"<div>{chart}</div></div></section>"
    )


def _clusters_section(clusters: list[dict], figs: _Figures) -> str:
    clusters = list(clusters or [])[:_MAX_CLUSTERS]
    head = (
        "<section><h2>Largest near-duplicate clusters</h2>"
        '<p class="legend">Each strip is one cluster, keeper first:'
        '<span style="background:var(--keep)"></span>kept'
        '<span style="background:var(--drop)"></span>dropped as a duplicate</p>'
    )
    if not clusters:
        return head + '<p class="empty">No near-duplicates were found.</p></section>'
    parts = [head]
    for index, cluster in enumerate(clusters, start=1):
        members = [str(m) for m in (cluster.get("members") or [])]
        keeper = str(cluster.get("keeper", members[0] if members else ""))
        if not members or members[0] != keeper:
            members = [keeper, *[m for m in members if m != keeper]]
        thumbnails = list(cluster.get("thumbnails") or [])
        shown = min(len(members), _MAX_STRIP_MEMBERS)
        png = _png(_strip(thumbnails, shown))
        img = figs.img(
            f"cluster_{index:02d}.png",
            png,
            f"cluster {index}: {len(members)} images",
            css="strip",
            scale=1,
        )
        caps = "".join(
            f'<div class="{"k" if i == 0 else "d"}" title="{"kept" if i == 0 else "dropped"}: '
            f'{_e(m)}">{_e(m)}</div>'
            for i, m in enumerate(members[:shown])
        )
        more = ""
        if len(members) > shown:
            rest = "".join(f"<li><code>{_e(m)}</code></li>" for m in members[shown:])
            more = (
                f"<details><summary>{len(members) - shown:,} more dropped</summary>"
                f"<ul>{rest}</ul></details>"
            )
        parts.append(
            f'<div class="cluster"><h3>Cluster {index} · {len(members):,} images · kept '
            f"<code>{_e(keeper)}</code></h3>"
            f'<div class="scroll"><div class="strip">{img}</div>'
            f'<div class="caps" style="grid-template-columns:repeat({shown}, {_CELL}px);'
            f'column-gap:{_GAP}px">{caps}</div></div>{more}</div>'
        )
    parts.append("</section>")
    return "".join(parts)


def _leaks_section(leaks: Any) -> str:
    head = "<section><h2>Eval-set leaks</h2>"
    if leaks is None:
        return head + '<p class="empty">No evaluation set was given.</p></section>'
    if isinstance(leaks, pa.RecordBatch):
        leaks = pa.Table.from_batches([leaks])
    n = leaks.num_rows
    if n == 0:
        return head + '<p class="ok">No training record matches an evaluation image.</p></section>'
    names = leaks.schema.names
    train = "train_key" if "train_key" in names else "train_index"
    evalc = "eval_key" if "eval_key" in names else "eval_index"
    has_distance = "distance" in names
    if has_distance:
        order = pc.sort_indices(leaks, sort_keys=[("distance", "ascending")])
        leaks = leaks.take(order)
    shown = leaks.slice(0, _MAX_LEAK_ROWS)
    cols = [c for c in (train, evalc) if c in names]
    n_eval = len(pc.unique(leaks.column(evalc))) if evalc in names else None
    n_train = len(pc.unique(leaks.column(train))) if train in names else None
    data = {c: shown.column(c).to_pylist() for c in cols}
    dist = shown.column("distance").to_pylist() if has_distance else [None] * shown.num_rows
    rows = "".join(
        "<tr>"
        + "".join(f'<td class="key">{_e(data[c][i])}</td>' for c in cols)
        + (f'<td class="num">{_e(dist[i])}</td>' if has_distance else "")
        + "</tr>"
        for i in range(shown.num_rows)
    )
    header = "".join(f"<th>{_e(c)}</th>" for c in cols) + (
        '<th class="num">distance</th>' if has_distance else ""
    )
    detail = [f"{_n(n_train)} training records"] if n_train is not None else []
    if n_eval is not None:
        detail.append(f"{_n(n_eval)} evaluation images")
    summary = (
        f'<p class="bad">{_n(n)} training/evaluation match{"es" if n != 1 else ""}'
        + (f" ({', '.join(detail)})" if detail else "")
        + ". Leaked training records are dropped.</p>"
    )
    more = (
        f'<p class="empty">Showing the {shown.num_rows} closest of {_n(n)}.</p>'
        if n > shown.num_rows
        else ""
    )
    return (
        f"{head}{summary}<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
        f"{more}</section>"
    )


def write_report(
    out_dir: str,
    *,
    manifest: dict,
    counts: pa.Table,
    coverage: dict,
    clusters: list[dict],
    leaks: pa.Table | None,
) -> str:
    """Writes ``out_dir/report.html`` and its figures in ``out_dir/report/``.

    ``manifest`` is the job's manifest (as in ``manifest.json``), ``counts``
    the hashtag counts (``HashtagCounts.to_arrow()``: ``tag, images,
    occurrences``), ``coverage`` the label coverage (``records, labeled,
    vocab_size, occurrences_in_vocab, occurrences_total, labels_per_record``),
    ``clusters`` the largest near-duplicate clusters (``keeper``, ``members``
    keeper first, ``thumbnails`` one ``HxWx3`` uint8 array per member) and
    ``leaks`` the eval-set leak table (or None without an eval set). Returns
    the path of ``report.html``. Charts need matplotlib; without it the page
    says so and keeps every table and the cluster strips.
    """
    out_dir = os.fspath(out_dir)
    fig_dir = os.path.join(out_dir, "report")
    os.makedirs(fig_dir, exist_ok=True)
    coverage = coverage or {}
    manifest = manifest or {}
    mpl = _matplotlib()
    figs = _Figures(fig_dir)

    body = [
        _header(manifest),
        _tiles(manifest, coverage),
        ("" if mpl is not None else f'<p class="note" id="no-figures">{_NO_MATPLOTLIB}</p>'),
        _drops_section(manifest, figs, mpl),
        _hashtag_section(_counts_table(counts), coverage, figs, mpl),
        _coverage_section(coverage, figs, mpl),
        _clusters_section(clusters, figs),
        _leaks_section(leaks),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>fastprep report · {_e(manifest.get('source', ''))}</title>"
        f"<style>{_CSS}</style></head><body><main>"
        + "".join(body)
        + f"<footer>Written by fastprep {_e(manifest.get('fastprep', ''))} · "
        f"{len(figs.written)} figure{'s' if len(figs.written) != 1 else ''}</footer>"
        f"</main><script>{_JS}</script></body></html>\n"
    )
    figs.remove_stale()
    path = os.path.join(out_dir, "report.html")
    _atomic_write(path, page.encode("utf-8"))
    return path
