"""Renders ``report.html`` from its jinja2 templates (``templates/``), with
the stylesheet and the script inlined from ``static/`` so the page needs no
other file. Autoescaping is on: every string from the data (keys, hashtags,
captions, paths) is escaped by the templates."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2

from fastprep.pipeline.report import sections
from fastprep.pipeline.report.figures import Figures
from fastprep.pipeline.report.strips import CELL, GAP

__all__ = ["render_page"]


@cache
def static_text(name: str) -> str:
    """A file of the package's ``static/`` folder as text.

    Read through :mod:`importlib.resources`, so it also works when the
    package is not a plain directory (a zip import).
    """
    static = resources.files(__package__).joinpath("static")
    return static.joinpath(name).read_text(encoding="utf-8")


def _template_source(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def _num(value: Any) -> str:
    """A count with thousands separators (``—`` for None)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    try:
        return f"{int(value):,}"  # numpy integers
    except (TypeError, ValueError):
        return str(value)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = _num
    return env


_TOC = (
    ("run", "Run"),
    ("records", "Records"),
    ("samples", "Samples"),
    ("hashtags", "Hashtags"),
    ("coverage", "Labels"),
    ("provenance", "Licences & consent"),
    ("images", "Images"),
    ("damaged", "Damaged files"),
    ("clusters", "Duplicates"),
    ("leaks", "Eval leaks"),
)


def render_page(
    *,
    out_dir: str,
    manifest: dict,
    counts: Any,
    coverage: dict,
    clusters: list[dict],
    leaks: Any,
    figs: Figures,
    mpl: Any,
    samples: list[dict] | None = None,
    tag_examples: list[dict] | None = None,
    provenance: dict | None = None,
    images: dict | None = None,
    dropped: Any = None,
    leak_pairs: list[dict] | None = None,
) -> str:
    """The report page as a string; its figures are written through ``figs``
    in page order. ``mpl`` is
    :func:`~fastprep.pipeline.report.charts.load_matplotlib`'s result: None
    leaves the charts out and puts a note at the top."""
    context: dict[str, Any] = {
        "run": sections.run(manifest),
        "tiles": sections.tiles(manifest, coverage),
        "charts": mpl is not None,
        "cell": CELL,
        "gap": GAP,
    }
    # the sections write their figures as they are built, in page order
    context["records"] = sections.records(manifest, out_dir, figs, mpl)
    context["samples"] = sections.samples(samples, figs)
    context["hashtags"] = sections.hashtags(counts, coverage, figs, mpl)
    context["tag_examples"] = sections.tag_examples(tag_examples, figs)
    context["coverage"] = sections.coverage(coverage, figs, mpl)
    context["provenance"] = sections.provenance(manifest, provenance)
    context["images"] = sections.images(images, figs, mpl)
    context["damaged"] = sections.damaged(dropped, manifest)
    context["clusters"] = sections.clusters(clusters, figs)
    context["leaks"] = sections.leaks(leaks, leak_pairs, figs)
    present = {k for k in ("samples", "images", "damaged") if context[k]}
    context["toc"] = [
        (i, t) for i, t in _TOC if i not in ("samples", "images", "damaged") or i in present
    ]
    context["n_figures"] = len(figs.written)
    context["css"] = static_text("report.css")
    context["js"] = static_text("report.js")
    return environment().get_template("page.html.j2").render(context)
