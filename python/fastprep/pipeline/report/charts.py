"""The matplotlib charts of the report, imported lazily: without matplotlib
the page keeps its tables and strips and says the charts are missing."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from fastprep.pipeline.report.strips import DROP_RGB

__all__ = ["HIDPI", "drops_figure", "labels_figure", "load_matplotlib", "rank_frequency_figure"]

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
        ax.loglog(ranks[pick], occurrences[pick], color=ACCENT_2, lw=1.6, label="occurrences")
        ax.loglog(ranks[pick], images[pick], color=ACCENT, lw=1.8, label="images")
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
        if len(k) <= 30:
            ax.set_xticks(k)
        ax.set_title("Labels per record (grey: no label)", loc="left")

    return _render(mpl, (5.0, 3.0), draw)
