"""Assembles ``report.html`` from its sections, with the stylesheet and the
script inlined from ``static/`` so the page needs no other file."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from fastprep.pipeline.report import sections
from fastprep.pipeline.report.figures import Figures
from fastprep.pipeline.report.fmt import esc

__all__ = ["render_page"]

_NO_MATPLOTLIB = (
    "Charts are missing: figures need <code>pip install 'fastprep[report]'</code> (matplotlib)."
)


@cache
def static_text(name: str) -> str:
    """A file of the package's ``static/`` folder as text.

    Read through :mod:`importlib.resources`, so it also works when the
    package is not a plain directory (a zip import).
    """
    static = resources.files(__package__).joinpath("static")
    return static.joinpath(name).read_text(encoding="utf-8")


def _document(manifest: dict, body: str, n_figures: int) -> str:
    """The whole page around ``body``: head, inline CSS, footer and script."""
    # The newline after <style> and <script> is kept from when the CSS and JS
    # were Python strings: the same inputs still give the same bytes.
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>fastprep report · {esc(manifest.get('source', ''))}</title>"
        f"<style>\n{static_text('report.css')}</style></head><body><main>"
        + body
        + f"<footer>Written by fastprep {esc(manifest.get('fastprep', ''))} · "
        f"{n_figures} figure{'s' if n_figures != 1 else ''}</footer>"
        f"</main><script>\n{static_text('report.js')}</script></body></html>\n"
    )


def render_page(
    *,
    manifest: dict,
    counts: Any,
    coverage: dict,
    clusters: list[dict],
    leaks: Any,
    figs: Figures,
    mpl: Any,
) -> str:
    """The report page as a string; its figures are written through ``figs``.

    ``mpl`` is :func:`~fastprep.pipeline.report.charts.load_matplotlib`'s
    result: None leaves the charts out and puts a note at the top.
    """
    note = "" if mpl is not None else f'<p class="note" id="no-figures">{_NO_MATPLOTLIB}</p>'
    # in page order; the sections write their figures as they are built
    body = [
        sections.header(manifest),
        sections.tiles(manifest, coverage),
        note,
        sections.drops_section(manifest, figs, mpl),
        sections.hashtags_section(counts, coverage, figs, mpl),
        sections.coverage_section(coverage, figs, mpl),
        sections.clusters_section(clusters, figs),
        sections.leaks_section(leaks),
    ]
    return _document(manifest, "".join(body), len(figs.written))
