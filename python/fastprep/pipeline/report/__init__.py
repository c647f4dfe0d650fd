"""The HTML report of a ``prep`` job: one self-contained page.

:func:`write_report` writes ``report.html`` (inline CSS, every image embedded
as a ``data:`` URI, no network access) and the same PNG figures as files in
``report/``. Charts need matplotlib (``pip install 'fastprep[report]'``);
without it the page still has every table and the duplicate-cluster strips,
which are composed in numpy and encoded by the Rust core's PNG encoder.

Keys, hashtags and captions come from untrusted data: every one is escaped.

The modules, by concept: :mod:`.page` renders the jinja2 templates
(``templates/page.html.j2`` and one template per section, autoescaped) with
what :mod:`.sections` computes for each section, :mod:`.charts` draws the
matplotlib figures, :mod:`.strips` composes the thumbnail strips and grids,
:mod:`.figures` writes and embeds the PNGs, :mod:`.fmt` escapes and formats;
the stylesheet and script are ``static/report.css`` and ``static/report.js``.
"""

from __future__ import annotations

import os

import pyarrow as pa

from fastprep.pipeline.report.charts import load_matplotlib
from fastprep.pipeline.report.figures import Figures, atomic_write
from fastprep.pipeline.report.page import render_page

__all__ = ["write_report"]


def write_report(
    out_dir: str,
    *,
    manifest: dict,
    counts: pa.Table,
    coverage: dict,
    clusters: list[dict],
    leaks: pa.Table | None,
    samples: list[dict] | None = None,
    tag_examples: list[dict] | None = None,
    provenance: dict | None = None,
    images: dict | None = None,
    dropped: pa.Table | None = None,
    leak_pairs: list[dict] | None = None,
) -> str:
    """Writes ``out_dir/report.html`` and its figures in ``out_dir/report/``.

    ``manifest`` is the job's manifest (as in ``manifest.json``; shard sizes
    are read from ``out_dir``), ``counts`` the hashtag counts
    (``HashtagCounts.to_arrow()``: ``tag, images, occurrences``),
    ``coverage`` the label coverage (``records, labeled, vocab_size,
    occurrences_in_vocab, occurrences_total, labels_per_record``),
    ``clusters`` the largest near-duplicate clusters (``keeper``, ``members``
    keeper first, ``thumbnails`` one ``HxWx3`` uint8 array per member) and
    ``leaks`` the eval-set leak table (or None without an eval set).

    Optional, each adding its section: ``samples`` (written records:
    ``key``, ``labels`` (tags), ``thumbnail``), ``tag_examples`` (per top
    tag: ``tag``, ``images``, ``examples`` of ``key``/``thumbnail``),
    ``provenance`` (``licenses``: ``(licence, records)`` pairs,
    ``license_column``, ``authors``, ``sources``: ``(container, records)``,
    ``n_sources``), ``images`` (``width``, ``height`` per written record, or
    an even sample of them, and ``formats``: records per format, or
    ``format``: one per record), ``dropped`` (the drop table: damaged and refused files are
    listed) and ``leak_pairs`` (``train_key``, ``eval_key``, ``distance``,
    ``train`` and ``eval`` thumbnails). Returns the path of ``report.html``.
    Charts need matplotlib; without it the page says so and keeps every
    table and the thumbnail strips.
    """
    out_dir = os.fspath(out_dir)
    fig_dir = os.path.join(out_dir, "report")
    os.makedirs(fig_dir, exist_ok=True)
    figs = Figures(fig_dir)
    page = render_page(
        out_dir=out_dir,
        manifest=manifest or {},
        counts=counts,
        coverage=coverage or {},
        clusters=clusters,
        leaks=leaks,
        figs=figs,
        mpl=load_matplotlib(),
        samples=samples,
        tag_examples=tag_examples,
        provenance=provenance,
        images=images,
        dropped=dropped,
        leak_pairs=leak_pairs,
    )
    # after the page is built, so a rerun without matplotlib drops the old charts
    figs.remove_stale()
    path = os.path.join(out_dir, "report.html")
    atomic_write(path, page.encode("utf-8"))
    return path
