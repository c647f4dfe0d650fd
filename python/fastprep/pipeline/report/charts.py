"""The matplotlib charts of the report, imported lazily: without matplotlib
the page keeps its tables and strips and says the charts are missing."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from fastprep.pipeline.report.strips import DROP_RGB

__all__ = [
    "HIDPI",
    "aspect_figure",
    "drops_figure",
    "formats_figure",
    "labels_figure",
    "load_matplotlib",
    "rank_frequency_figure",
    "resolution_figure",
    "shard_bytes_figure",
]

ACCENT = "#3559c7"  # also the page's --accent (the browser test looks for it)
ACCENT_2 = "#e08a1e"
MUTED = "#9aa3b2"
DROP_HEX = "#{:02x}{:02x}{:02x}".format(*DROP_RGB)  # the strips' red
HIDPI = 2  # charts are rendered at twice their CSS size

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


def load_matplotlib() -> Any:
    """``(matplotlib, Figure, FigureCanvasAgg)`` or None when not installed.

    The Agg canvas is used directly, never pyplot, so the caller's backend
    and global figure state are left alone. Imported on each call (cheap
    once loaded) so that a test can hide matplotlib.
    """
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return matplotlib, Figure, FigureCanvasAgg


def _render(mpl: Any, size: tuple[float, float], draw: Callable[[Any], None]) -> bytes:
    """A one-axes figure of ``size`` inches, drawn by ``draw(ax)``, as PNG."""
    matplotlib, Figure, FigureCanvasAgg = mpl
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=size, dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig.add_subplot())
        buf = io.BytesIO()
        # twice the displayed resolution: sharp on high-density screens;
        # no Software tag, so the bytes do not depend on matplotlib's version
        fig.savefig(buf, format="png", dpi=100 * HIDPI, metadata={"Software": None})
    return buf.getvalue()


def _integer_axis(axis: Any) -> None:
    """Ticks at whole numbers only: counts have no fractions."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _mpl_text(text: str) -> str:
    """Plain text for matplotlib: ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


def drops_figure(mpl: Any, drops: list[tuple[str, int]], total: int) -> bytes:
    """Horizontal bars of the dropped records per reason, largest first."""
    rows = list(reversed(drops))  # largest at the top

    def draw(ax: Any) -> None:
        y = np.arange(len(rows))
        values = [c for _, c in rows]
        ax.barh(y, values, color=DROP_HEX, height=0.6)
        ax.set_yticks(y, [_mpl_text(r) for r, _ in rows])
        ax.grid(axis="y", visible=False)
        top = max(values) if values else 1
        for yi, v in zip(y, values):
            ax.text(v + top * 0.01, yi, f"{v:,}", va="center", fontsize=9, color="#2b303a")
        ax.set_xlim(0, top * 1.15)
        _integer_axis(ax.xaxis)
        ax.set_xlabel("records")
        dropped = sum(values)
        ax.set_title(f"Dropped by reason: {dropped:,} of {total:,}", loc="left")

    return _render(mpl, (5.0, 1.3 + 0.32 * len(rows)), draw)


def rank_frequency_figure(
    mpl: Any, images: np.ndarray, occurrences: np.ndarray, vocab: int
) -> bytes:
    """Log-log rank-frequency curves (images and occurrences per tag), with
    the vocabulary's cut-off marked."""
    ranks = np.arange(1, len(images) + 1)
    # At most ~2,000 log-spaced points: a curve of millions of tags stays cheap.
    if len(ranks) > 2_000:
        pick = np.unique(np.geomspace(1, len(ranks), 2_000).astype(np.int64)) - 1
    else:
        pick = ranks - 1

    def draw(ax: Any) -> None:
        # images solid and wide, occurrences dashed on top: where the two
        # coincide (one use of a tag per caption) both stay visible
        ax.loglog(ranks[pick], images[pick], color=ACCENT, lw=2.6, label="images", zorder=2)
        ax.loglog(
            ranks[pick], occurrences[pick], color=ACCENT_2, lw=1.4, ls=(0, (4, 2)),
            label="occurrences", zorder=3,
        )  # fmt: skip
        if 0 < vocab < len(ranks):
            ax.axvspan(1, vocab, color=ACCENT, alpha=0.07, lw=0)
            ax.axvline(vocab, color=ACCENT, ls="--", lw=1)
            ax.text(
                vocab,
                ax.get_ylim()[1],
                f" vocabulary: top {vocab:,}",
                va="top",
                ha="left",
                fontsize=9,
                color=ACCENT,
            )
        ax.set_xlabel("rank (by images per tag)")
        ax.set_ylabel("count")
        ax.set_title(f"Hashtag rank-frequency ({len(ranks):,} distinct tags)", loc="left")
        ax.legend(frameon=False, loc="lower left")
        ax.grid(True, which="major")

    return _render(mpl, (8.5, 4.0), draw)


def labels_figure(mpl: Any, per_record: list[int]) -> bytes:
    """Bars of written records per label count (``per_record[k]``: records
    with ``k`` labels); the unlabelled bar is grey."""

    def draw(ax: Any) -> None:
        k = np.arange(len(per_record))
        colors = [MUTED if i == 0 else ACCENT for i in k]
        ax.bar(k, per_record, color=colors, width=0.8)
        ax.set_xlabel("labels per written record")
        ax.set_ylabel("records")
        ax.grid(axis="x", visible=False)
        _integer_axis(ax.yaxis)
        if len(k) <= 30:
            ax.set_xticks(k)
        else:
            _integer_axis(ax.xaxis)
        ax.set_title("Labels per record (grey: no label)", loc="left")

    return _render(mpl, (5.0, 3.0), draw)


def shard_bytes_figure(mpl: Any, files: list[str], sizes: list[int]) -> bytes:
    """Bars of each shard's size on disk (MB)."""

    def draw(ax: Any) -> None:
        x = np.arange(len(files))
        ax.bar(x, np.asarray(sizes, dtype=np.float64) / 1e6, color=ACCENT, width=0.7)
        ax.set_xlabel("shard")
        ax.set_ylabel("MB")
        ax.grid(axis="x", visible=False)
        _integer_axis(ax.xaxis)
        ax.set_title(f"Bytes per shard ({sum(sizes) / 1e6:,.1f} MB in all)", loc="left")

    return _render(mpl, (5.0, 2.6), draw)


def _histogram(ax: Any, values: np.ndarray, bins: Any, color: str) -> None:
    ax.hist(values, bins=bins, color=color, edgecolor="white", linewidth=0.6)
    ax.grid(axis="x", visible=False)
    _integer_axis(ax.yaxis)
    ax.set_ylabel("records")


def resolution_figure(mpl: Any, width: np.ndarray, height: np.ndarray) -> bytes:
    """Histogram of the shorter side (pixels, before resizing)."""
    shorter = np.minimum(width, height)

    def draw(ax: Any) -> None:
        lo, hi = max(float(shorter.min()), 1.0), max(float(shorter.max()), 2.0)
        bins = np.geomspace(lo, hi * 1.0001, 16) if hi / lo > 4 else 15
        _histogram(ax, shorter, bins, ACCENT)
        if hi / lo > 4:
            ax.set_xscale("log")
        ax.set_xlabel("shorter side (px, as decoded)")
        ax.set_title("Resolution", loc="left")

    return _render(mpl, (3.6, 2.6), draw)


def aspect_figure(mpl: Any, aspect: np.ndarray) -> bytes:
    """Histogram of width / height (log scale: 1/2 and 2 equally far from 1)."""

    def draw(ax: Any) -> None:
        from matplotlib.ticker import NullFormatter, NullLocator

        lo, hi = min(float(aspect.min()), 0.9), max(float(aspect.max()), 1.1)
        _histogram(ax, aspect, np.geomspace(lo, hi, 16), ACCENT_2)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        named = [(1 / 3, "1:3"), (1 / 2, "1:2"), (2 / 3, "2:3"), (3 / 4, "3:4"), (1.0, "1:1"),
                 (4 / 3, "4:3"), (3 / 2, "3:2"), (2.0, "2:1"), (3.0, "3:1")]  # fmt: skip
        shown = [(v, t) for v, t in named if lo <= v <= hi] or [(1.0, "1:1")]
        ax.set_xticks([v for v, _ in shown], [t for _, t in shown])
        ax.axvline(1.0, color=MUTED, lw=1, ls="--")
        ax.set_xlabel("aspect ratio (width / height)")
        ax.set_title("Aspect ratio", loc="left")

    return _render(mpl, (3.6, 2.6), draw)


def formats_figure(mpl: Any, formats: list[tuple[str, int]]) -> bytes:
    """Bars of records per source image format."""

    def draw(ax: Any) -> None:
        x = np.arange(len(formats))
        ax.bar(x, [c for _, c in formats], color=MUTED, width=0.6)
        ax.set_xticks(x, [_mpl_text(f) for f, _ in formats])
        ax.grid(axis="x", visible=False)
        _integer_axis(ax.yaxis)
        ax.set_ylabel("records")
        ax.set_title("Source format", loc="left")

    return _render(mpl, (3.0, 2.6), draw)
