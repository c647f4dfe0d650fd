"""The sections of the report page, one function each, in page order.

Each returns an HTML fragment; the ones with figures write them through a
:class:`~fastprep.pipeline.report.figures.Figures`. ``mpl`` is
:func:`~fastprep.pipeline.report.charts.load_matplotlib`'s result: None
leaves the charts out and keeps the tables.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep.pipeline.report import charts
from fastprep.pipeline.report.figures import Figures
from fastprep.pipeline.report.fmt import esc, num, pct
from fastprep.pipeline.report.strips import CELL, GAP, strip_png

__all__ = [
    "clusters_section",
    "coverage_section",
    "drops_section",
    "hashtags_section",
    "header",
    "leaks_section",
    "tiles",
]

_TOP_TAGS = 30
_MAX_LEAK_ROWS = 50
_MAX_CLUSTERS = 12
_MAX_STRIP_MEMBERS = 10


# ---------------------------------------------------------------------------
# header and summary tiles


def _setting(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def header(manifest: dict) -> str:
    """The title, source and versions, and the job's settings."""
    versions = [f"fastprep <code>{esc(manifest.get('fastprep', '?'))}</code>"]
    if manifest.get("pyarrow"):
        versions.append(f"pyarrow <code>{esc(manifest['pyarrow'])}</code>")
    settings = manifest.get("settings") or {}
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(_setting(v))}</dd>" for k, v in settings.items())
    settings_html = (
        f'<details open><summary>Settings</summary><dl class="kv">{rows}</dl></details>'
        if rows
        else ""
    )
    return (
        "<header><h1>fastprep · prep report</h1>"
        f'<div class="meta">Source <code>{esc(manifest.get("source", "?"))}</code> · '
        f"{' · '.join(versions)}</div></header>"
        f"<section><h2>Run</h2>{settings_html}</section>"
    )


def _tile(label: str, value: str, sub: str = "") -> str:
    sub_html = f'<div class="s">{sub}</div>' if sub else ""
    return f'<div class="tile"><div class="l">{label}</div><div class="v">{value}</div>{sub_html}</div>'


def tiles(manifest: dict, coverage: dict) -> str:
    """The row of headline numbers: records in, written, dropped, speed, labels."""
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
                _tile("Input records", num(total)),
                _tile("Written", num(written), pct(written, total) + " of input"),
                _tile("Dropped", num(dropped), pct(dropped, total) + " of input"),
                _tile("Throughput", num(float(rps)) if rps is not None else "—", "records/s"),
                _tile("Wall time", f"{float(seconds):,.2f} s" if seconds is not None else "—"),
                _tile("Vocabulary", num(int(coverage.get("vocab_size") or 0)), "hashtags"),
                _tile("Labeled", pct(labeled, records), f"{num(labeled)} of {num(records)}"),
            )
        )
        + "</div>"
    )


# ---------------------------------------------------------------------------
# records: written, dropped by reason, output shards


def _outcomes_table(drops: list[tuple[str, int]], written: int, total: int) -> str:
    dropped = sum(c for _, c in drops)
    rows = [
        f'<tr><td class="key">{esc(r)}</td><td class="num">{num(c)}</td>'
        f'<td class="num">{pct(c, total)}</td></tr>'
        for r, c in drops
    ]
    return (
        '<table><thead><tr><th>outcome</th><th class="num">records</th>'
        '<th class="num">of input</th></tr></thead><tbody>'
        f'<tr><td class="key ok">written</td><td class="num">{num(written)}</td>'
        f'<td class="num">{pct(written, total)}</td></tr>'
        + "".join(rows)
        + f'<tr><td><b>input</b></td><td class="num"><b>{num(total)}</b></td>'
        f'<td class="num">{pct(written + dropped, total)}</td></tr>'
        "</tbody></table>"
    )


def _shards(manifest: dict) -> str:
    outputs = manifest.get("outputs") or []
    shard_rows = "".join(
        f'<tr><td class="key">{esc(o.get("file", "?"))}</td>'
        f'<td class="num">{num(o.get("records"))}</td></tr>'
        for o in outputs
    )
    vocab = manifest.get("vocabulary") or {}
    # a long list of shards starts folded
    return (
        f"<details{' open' if len(outputs) <= 8 else ''}><summary>{len(outputs):,} output "
        f"shard{'s' if len(outputs) != 1 else ''}"
        + (f" · vocabulary <code>{esc(vocab.get('file'))}</code>" if vocab.get("file") else "")
        + '</summary><table><thead><tr><th>file</th><th class="num">records</th></tr></thead>'
        f"<tbody>{shard_rows}</tbody></table></details>"
    )


def drops_section(manifest: dict, figs: Figures, mpl: Any) -> str:
    """Records written and dropped per reason (table and bar chart), and the
    output shards."""
    totals = manifest.get("totals") or {}
    total = int(totals.get("input") or 0)
    written = int(totals.get("written") or 0)
    by_reason = sorted(
        ((str(k), int(v)) for k, v in (totals.get("dropped") or {}).items()),
        key=lambda kv: (-kv[1], kv[0]),
    )
    table = _outcomes_table(by_reason, written, total)
    chart = ""
    if by_reason and mpl is not None:
        png = charts.drops_figure(mpl, by_reason, total)
        chart = figs.img("drops.png", png, "drops by reason")
    elif not by_reason:
        chart = '<p class="empty">No record was dropped.</p>'
    return (
        '<section><h2>Records</h2><div class="grid2">'
        f"<div>{table}{_shards(manifest)}</div><div>{chart}</div></div></section>"
    )


# ---------------------------------------------------------------------------
# hashtags and label coverage


def _counts_table(counts: Any) -> pa.Table | None:
    """The hashtag counts as a table, or None when there are none."""
    if counts is None:
        return None
    if isinstance(counts, pa.RecordBatch):
        counts = pa.Table.from_batches([counts])
    if not isinstance(counts, pa.Table) or counts.num_rows == 0:
        return None
    return counts


def _top_tags_table(top: list[dict], vocab: int, total_occ: int) -> str:
    rows = "".join(
        f'<tr><td class="num">{i}</td><td class="key">#{esc(r["tag"])}</td>'
        f'<td class="num">{num(int(r["images"]))}</td>'
        f'<td class="num">{num(int(r["occurrences"]))}</td>'
        f'<td class="num">{pct(int(r["occurrences"]), total_occ)}</td>'
        f"<td>{'<span class=ok>✓</span>' if i <= vocab else ''}</td></tr>"
        for i, r in enumerate(top, start=1)
    )
    return (
        f"<h3>Top {len(top)} hashtags</h3>"
        '<table><thead><tr><th class="num">#</th><th>tag</th><th class="num">images</th>'
        '<th class="num">occurrences</th><th class="num">share</th><th>vocab</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def hashtags_section(counts: Any, coverage: dict, figs: Figures, mpl: Any) -> str:
    """The rank-frequency chart and the top hashtags, marking those in the
    vocabulary. ``counts`` is ``HashtagCounts.to_arrow()`` (or None)."""
    counts = _counts_table(counts)
    if counts is None:
        return '<section><h2>Hashtags</h2><p class="empty">No hashtags were found.</p></section>'
    order = pc.sort_indices(
        counts,
        sort_keys=[("images", "descending"), ("occurrences", "descending"), ("tag", "ascending")],
    )
    ranked = counts.take(order)
    images = ranked.column("images").to_numpy().astype(np.int64)
    # sorted on their own: the curve is the occurrence distribution, not per tag
    occurrences = np.sort(counts.column("occurrences").to_numpy().astype(np.int64))[::-1]
    vocab = int(coverage.get("vocab_size") or 0)
    total_occ = int(occurrences.sum())
    table = _top_tags_table(ranked.slice(0, _TOP_TAGS).to_pylist(), vocab, total_occ)
    chart = ""
    if mpl is not None:
        chart = figs.img(
            "rank_frequency.png",
            charts.rank_frequency_figure(mpl, images, occurrences, vocab),
            "hashtag rank-frequency, log-log",
        )
    summary = (
        f"<p>{num(len(images))} distinct hashtags, {num(total_occ)} occurrences. "
        "The vocabulary is the top tags by image count.</p>"
    )
    return f"<section><h2>Hashtags</h2>{summary}{chart}{table}</section>"


def _coverage_stats(coverage: dict, mean: float | None) -> str:
    records = int(coverage.get("records") or 0)
    labeled = int(coverage.get("labeled") or 0)
    in_vocab = int(coverage.get("occurrences_in_vocab") or 0)
    occ_total = int(coverage.get("occurrences_total") or 0)
    return (
        "<table><tbody>"
        f'<tr><td>records labelled</td><td class="num">{num(labeled)} of {num(records)}</td>'
        f'<td class="num"><b>{pct(labeled, records)}</b></td></tr>'
        f"<tr><td>tag occurrences covered by the vocabulary</td>"
        f'<td class="num">{num(in_vocab)} of {num(occ_total)}</td>'
        f'<td class="num"><b>{pct(in_vocab, occ_total)}</b></td></tr>'
        f'<tr><td>vocabulary size</td><td class="num">{num(int(coverage.get("vocab_size") or 0))}'
        "</td><td></td></tr>"
        f"<tr><td>mean labels per written record</td>"
        f'<td class="num">{"—" if mean is None else f"{mean:.2f}"}</td><td></td></tr>'
        "</tbody></table>"
    )


def _labels_table(per_record: list[int], n_written: int) -> str:
    if not per_record:
        return ""
    rows = "".join(
        f'<tr><td class="num">{k}</td><td class="num">{num(c)}</td>'
        f'<td class="num">{pct(c, n_written)}</td></tr>'
        for k, c in enumerate(per_record)
    )
    return (
        "<details><summary>Labels per record, as a table</summary>"
        '<table><thead><tr><th class="num">labels</th><th class="num">records</th>'
        f'<th class="num">share</th></tr></thead><tbody>{rows}</tbody></table></details>'
    )


def coverage_section(coverage: dict, figs: Figures, mpl: Any) -> str:
    """How many records got a label and how many tags the vocabulary covers,
    and the labels-per-record histogram."""
    per_record = [int(x) for x in (coverage.get("labels_per_record") or [])]
    n_written = sum(per_record)
    mean = sum(k * c for k, c in enumerate(per_record)) / n_written if n_written else None
    stats = _coverage_stats(coverage, mean)
    hist = _labels_table(per_record, n_written)
    chart = ""
    if n_written and mpl is not None:
        png = charts.labels_figure(mpl, per_record)
        chart = figs.img("labels_per_record.png", png, "labels per record")
    return (
        f'<section><h2>Label coverage</h2><div class="grid2"><div>{stats}{hist}</div>'
        f"<div>{chart}</div></div></section>"
    )


# ---------------------------------------------------------------------------
# near-duplicate clusters


def _cluster(index: int, cluster: dict, figs: Figures) -> str:
    """One cluster: its strip, a caption under each cell, the rest folded."""
    members = [str(m) for m in (cluster.get("members") or [])]
    keeper = str(cluster.get("keeper", members[0] if members else ""))
    if not members or members[0] != keeper:  # the strip's first cell is the keeper
        members = [keeper, *[m for m in members if m != keeper]]
    thumbnails = list(cluster.get("thumbnails") or [])
    shown = min(len(members), _MAX_STRIP_MEMBERS)
    img = figs.img(
        f"cluster_{index:02d}.png",
        strip_png(thumbnails, shown),
        f"cluster {index}: {len(members)} images",
        css="strip",
        scale=1,
    )
    caps = "".join(
        f'<div class="{"k" if i == 0 else "d"}" title="{"kept" if i == 0 else "dropped"}: '
        f'{esc(m)}">{esc(m)}</div>'
        for i, m in enumerate(members[:shown])
    )
    more = ""
    if len(members) > shown:
        rest = "".join(f"<li><code>{esc(m)}</code></li>" for m in members[shown:])
        more = (
            f"<details><summary>{len(members) - shown:,} more dropped</summary>"
            f"<ul>{rest}</ul></details>"
        )
    # the caption grid has the strip's cell pitch, so each caption sits under its image
    return (
        f'<div class="cluster"><h3>Cluster {index} · {len(members):,} images · kept '
        f"<code>{esc(keeper)}</code></h3>"
        f'<div class="scroll"><div class="strip">{img}</div>'
        f'<div class="caps" style="grid-template-columns:repeat({shown}, {CELL}px);'
        f'column-gap:{GAP}px">{caps}</div></div>{more}</div>'
    )


def clusters_section(clusters: list[dict], figs: Figures) -> str:
    """The largest near-duplicate clusters, one strip each (keeper first)."""
    largest = list(clusters or [])[:_MAX_CLUSTERS]
    head = (
        "<section><h2>Largest near-duplicate clusters</h2>"
        '<p class="legend">Each strip is one cluster, keeper first:'
        '<span style="background:var(--keep)"></span>kept'
        '<span style="background:var(--drop)"></span>dropped as a duplicate</p>'
    )
    if not largest:
        return head + '<p class="empty">No near-duplicates were found.</p></section>'
    body = "".join(_cluster(i, c, figs) for i, c in enumerate(largest, start=1))
    return head + body + "</section>"


# ---------------------------------------------------------------------------
# eval-set leaks


def _leaks_summary(leaks: pa.Table, train: str, evalc: str) -> str:
    names = leaks.schema.names
    n = leaks.num_rows
    n_eval = len(pc.unique(leaks.column(evalc))) if evalc in names else None
    n_train = len(pc.unique(leaks.column(train))) if train in names else None
    detail = [f"{num(n_train)} training records"] if n_train is not None else []
    if n_eval is not None:
        detail.append(f"{num(n_eval)} evaluation images")
    return (
        f'<p class="bad">{num(n)} training/evaluation match{"es" if n != 1 else ""}'
        + (f" ({', '.join(detail)})" if detail else "")
        + ". Leaked training records are dropped.</p>"
    )


def _leaks_table(shown: pa.Table, cols: list[str], has_distance: bool) -> str:
    data = {c: shown.column(c).to_pylist() for c in cols}
    dist = shown.column("distance").to_pylist() if has_distance else [None] * shown.num_rows
    rows = "".join(
        "<tr>"
        + "".join(f'<td class="key">{esc(data[c][i])}</td>' for c in cols)
        + (f'<td class="num">{esc(dist[i])}</td>' if has_distance else "")
        + "</tr>"
        for i in range(shown.num_rows)
    )
    header = "".join(f"<th>{esc(c)}</th>" for c in cols) + (
        '<th class="num">distance</th>' if has_distance else ""
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"


def leaks_section(leaks: Any) -> str:
    """The training records that match an evaluation image, closest first.

    ``leaks`` is the leak table (keys when it has them, else indices) or None
    when no evaluation set was given.
    """
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
        leaks = leaks.take(pc.sort_indices(leaks, sort_keys=[("distance", "ascending")]))
    shown = leaks.slice(0, _MAX_LEAK_ROWS)
    cols = [c for c in (train, evalc) if c in names]
    table = _leaks_table(shown, cols, has_distance)
    more = (
        f'<p class="empty">Showing the {shown.num_rows} closest of {num(n)}.</p>'
        if n > shown.num_rows
        else ""
    )
    return f"{head}{_leaks_summary(leaks, train, evalc)}{table}{more}</section>"
