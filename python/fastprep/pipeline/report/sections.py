"""What each section of the report shows, as plain data for its template
(``templates/<section>.html.j2``), in page order.

Each function takes the report's inputs and returns a dict (or None when
the section has nothing to show); figures are written through a
:class:`~fastprep.pipeline.report.figures.Figures` and passed to the
templates as ready ``<img>`` elements. ``mpl`` is
:func:`~fastprep.pipeline.report.charts.load_matplotlib`'s result: None
leaves the charts out and keeps the tables. Escaping is the templates' job
(jinja2's autoescape): strings here are raw.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep.pipeline.report import charts
from fastprep.pipeline.report.figures import Figures
from fastprep.pipeline.report.fmt import pct
from fastprep.pipeline.report.strips import CELL, GAP, pairs_png, strip_png

__all__ = [
    "clusters",
    "coverage",
    "damaged",
    "hashtags",
    "images",
    "leaks",
    "provenance",
    "records",
    "run",
    "samples",
    "tag_examples",
    "tiles",
]

_TOP_TAGS = 30
_MAX_LEAK_ROWS = 50
_MAX_LEAK_PAIRS = 12
_MAX_CLUSTERS = 12
_MAX_STRIP_MEMBERS = 10
_MAX_DAMAGED = 50

#: Drop reasons that mean the file itself is damaged or was refused unread.
DAMAGED_REASONS = ("decode_error", "too_large", "bad_metadata", "source_error", "damaged")
#: Drop reasons of consent and takedowns.
CONSENT_REASONS = ("not_public", "opt_out", "opt_out_list")


# ---------------------------------------------------------------------------
# run: source, versions and the settings, readable


def _readable(name: str, value: Any) -> str:
    """A setting's value as a person reads it."""
    if value is None:
        return "off" if name == "dedup_radius" else "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "consent_rules" and isinstance(value, list):
        rules = []
        for rule in value:
            if isinstance(rule, dict):
                values = ", ".join(json.dumps(v) for v in rule.get("drop_values", []))
                rules.append(f"{rule.get('column')} in ({values}) → {rule.get('reason')}")
        return "; ".join(rules) or "none"
    if name == "opt_out_hashes" and isinstance(value, list):
        return f"{len(value):,} hashes" if value else "none"
    if name == "size" and isinstance(value, list) and len(value) == 2:
        return f"{value[0]} x {value[1]} px"
    if name == "size" and isinstance(value, int):
        return f"{value} x {value} px"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, dict):
        if not value:
            return "—"
        return ", ".join(f"{k}={_readable(k, v)}" for k, v in value.items())
    if isinstance(value, int):
        return f"{value:,}"
    try:
        return str(value) if isinstance(value, (str, float)) else json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def run(manifest: dict) -> dict:
    """Source, versions, engine and the settings (folded: a table)."""
    settings = manifest.get("settings") or {}
    versions = [("fastprep", manifest.get("fastprep", "?"))]
    for name, version in (manifest.get("versions") or {}).items():
        versions.append((name, version))
    if manifest.get("pyarrow"):
        versions.append(("pyarrow", manifest["pyarrow"]))
    engine = manifest.get("engine") or {}
    return {
        "source": manifest.get("source", "?"),
        "versions": versions,
        "engine": ", ".join(f"{k} {v}" for k, v in engine.items()) if engine else None,
        "settings": [(k, _readable(k, v)) for k, v in settings.items()],
    }


def tiles(manifest: dict, coverage: dict) -> list[tuple[str, str, str]]:
    """The headline numbers: ``(label, value, note)``."""
    totals = manifest.get("totals") or {}
    total = int(totals.get("input") or 0)
    written = int(totals.get("written") or 0)
    dropped = sum(int(v) for v in (totals.get("dropped") or {}).values())
    records = int(coverage.get("records") or 0)
    labeled = int(coverage.get("labeled") or 0)
    rps = manifest.get("records_per_second")
    seconds = manifest.get("seconds")
    return [
        ("Input records", f"{total:,}", ""),
        ("Written", f"{written:,}", pct(written, total) + " of input"),
        ("Dropped", f"{dropped:,}", pct(dropped, total) + " of input"),
        ("Throughput", f"{float(rps):,.1f}" if rps is not None else "—", "records/s"),
        ("Wall time", f"{float(seconds):,.2f} s" if seconds is not None else "—", ""),
        ("Vocabulary", f"{int(coverage.get('vocab_size') or 0):,}", "hashtags"),
        ("Labeled", pct(labeled, records), f"{labeled:,} of {records:,}"),
    ]


# ---------------------------------------------------------------------------
# records: outcomes, shards and their bytes


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{n} B"


def records(manifest: dict, out_dir: str, figs: Figures, mpl: Any) -> dict:
    """Records written and dropped per reason (table, chart), and the shards
    with their sizes on disk (table, chart)."""
    totals = manifest.get("totals") or {}
    total = int(totals.get("input") or 0)
    written = int(totals.get("written") or 0)
    by_reason = sorted(
        ((str(k), int(v)) for k, v in (totals.get("dropped") or {}).items()),
        key=lambda kv: (-kv[1], kv[0]),
    )
    chart = None
    if by_reason and mpl is not None:
        chart = figs.img("drops.png", charts.drops_figure(mpl, by_reason, total), "drops by reason")
    shards = []
    for output in manifest.get("outputs") or []:
        name = str(output.get("file", "?"))
        path = os.path.join(out_dir, name)
        size = os.path.getsize(path) if os.path.isfile(path) else None
        n = output.get("records")
        shards.append(
            {
                "file": name,
                "records": n,
                "bytes": size,
                "size": _human_bytes(size) if size is not None else "—",
                "per_record": _human_bytes(size // n) if size and n else "—",
            }
        )
    sized = [s for s in shards if s["bytes"] is not None]
    shard_chart = None
    if len(sized) > 1 and mpl is not None:  # one bar says nothing the table does not
        shard_chart = figs.img(
            "shard_bytes.png",
            charts.shard_bytes_figure(mpl, [s["file"] for s in sized], [s["bytes"] for s in sized]),
            "bytes per shard",
        )
    total_bytes = sum(s["bytes"] for s in sized)
    return {
        "total": total,
        "written": written,
        "drops": [(r, c, pct(c, total)) for r, c in by_reason],
        "dropped": sum(c for _, c in by_reason),
        "written_pct": pct(written, total),
        "accounted_pct": pct(written + sum(c for _, c in by_reason), total),
        "chart": chart,
        "shards": shards,
        "shard_chart": shard_chart,
        "total_size": _human_bytes(total_bytes) if sized else None,
        "vocab_file": (manifest.get("vocabulary") or {}).get("file"),
    }


# ---------------------------------------------------------------------------
# hashtags and label coverage


def _counts_table(counts: Any) -> pa.Table | None:
    if counts is None:
        return None
    if isinstance(counts, pa.RecordBatch):
        counts = pa.Table.from_batches([counts])
    if not isinstance(counts, pa.Table) or counts.num_rows == 0:
        return None
    return counts


def hashtags(counts: Any, coverage: dict, figs: Figures, mpl: Any) -> dict | None:
    """The rank-frequency chart and the top hashtags (those in the vocabulary marked)."""
    table = _counts_table(counts)
    if table is None:
        return None
    order = pc.sort_indices(
        table,
        sort_keys=[("images", "descending"), ("occurrences", "descending"), ("tag", "ascending")],
    )
    ranked = table.take(order)
    images = ranked.column("images").to_numpy().astype(np.int64)
    # sorted on their own: the curve is the occurrence distribution, not per tag
    occurrences = np.sort(table.column("occurrences").to_numpy().astype(np.int64))[::-1]
    vocab = int(coverage.get("vocab_size") or 0)
    total_occ = int(occurrences.sum())
    chart = None
    if mpl is not None:
        chart = figs.img(
            "rank_frequency.png",
            charts.rank_frequency_figure(mpl, images, occurrences, vocab),
            "hashtag rank-frequency, log-log",
        )
    top = [
        {
            "rank": i,
            "tag": r["tag"],
            "images": int(r["images"]),
            "occurrences": int(r["occurrences"]),
            "share": pct(int(r["occurrences"]), total_occ),
            "in_vocab": i <= vocab,
        }
        for i, r in enumerate(ranked.slice(0, _TOP_TAGS).to_pylist(), start=1)
    ]
    return {"distinct": len(images), "occurrences": total_occ, "chart": chart, "top": top}


def coverage(cov: dict, figs: Figures, mpl: Any) -> dict:
    """How many records got a label, how many tag occurrences the
    vocabulary covers, and the labels-per-record histogram."""
    per_record = [int(x) for x in (cov.get("labels_per_record") or [])]
    n_written = sum(per_record)
    mean = sum(k * c for k, c in enumerate(per_record)) / n_written if n_written else None
    records_ = int(cov.get("records") or 0)
    labeled = int(cov.get("labeled") or 0)
    in_vocab = int(cov.get("occurrences_in_vocab") or 0)
    occ_total = int(cov.get("occurrences_total") or 0)
    chart = None
    if n_written and mpl is not None:
        chart = figs.img(
            "labels_per_record.png", charts.labels_figure(mpl, per_record), "labels per record"
        )
    return {
        "records": records_,
        "labeled": labeled,
        "labeled_pct": pct(labeled, records_),
        "in_vocab": in_vocab,
        "occ_total": occ_total,
        "in_vocab_pct": pct(in_vocab, occ_total),
        "vocab_size": int(cov.get("vocab_size") or 0),
        "mean": "—" if mean is None else f"{mean:.2f}",
        "per_record": [(k, c, pct(c, n_written)) for k, c in enumerate(per_record)],
        "chart": chart,
    }


# ---------------------------------------------------------------------------
# what was written: a sample grid and examples of the top tags


def samples(items: list[dict] | None, figs: Figures) -> dict | None:
    """A grid of written images, each with its key and labels."""
    if not items:
        return None
    cells = []
    for i, s in enumerate(items, start=1):
        key = str(s.get("key"))
        img = figs.img(
            f"samples_{i:02d}.png",
            strip_png([s.get("thumbnail")], 1, frames=False),
            key,
            css="thumb",
            scale=1,
        )
        cells.append({"key": key, "labels": list(s.get("labels") or []), "img": img})
    return {"cells": cells, "cell": CELL}


def tag_examples(items: list[dict] | None, figs: Figures) -> list[dict]:
    """For each of the top vocabulary tags, a strip of written images carrying it."""
    found = []
    for i, item in enumerate(items or [], start=1):
        examples = list(item.get("examples") or [])
        if not examples:
            continue
        img = figs.img(
            f"tag_{i:02d}.png",
            strip_png([e.get("thumbnail") for e in examples], len(examples), frames=False),
            f"#{item.get('tag')}: {len(examples)} examples",
            css="strip",
            scale=1,
        )
        found.append(
            {
                "tag": str(item.get("tag")),
                "images": item.get("images"),
                "img": img,
                "members": [str(e.get("key")) for e in examples],
                "n": len(examples),
            }
        )
    return found


# ---------------------------------------------------------------------------
# licences, consent and provenance


def provenance(manifest: dict, prov: dict | None) -> dict:
    """Licences of the written records, consent and takedown drops, where
    the records came from."""
    prov = prov or {}
    totals = manifest.get("totals") or {}
    dropped = totals.get("dropped") or {}
    written = int(totals.get("written") or 0)
    licenses = [(str(k), int(v), pct(int(v), written)) for k, v in prov.get("licenses") or []]
    settings = manifest.get("settings") or {}
    rules = settings.get("consent_rules") or []
    consent = [(r, int(dropped.get(r, 0))) for r in CONSENT_REASONS]
    consent += [
        (str(rule.get("reason")), int(dropped.get(str(rule.get("reason")), 0)))
        for rule in rules
        if isinstance(rule, dict) and rule.get("reason") not in CONSENT_REASONS
    ]
    return {
        "licenses": licenses,
        "license_column": prov.get("license_column"),
        "authors": prov.get("authors"),
        "rules": _readable("consent_rules", rules) if rules else "none",
        "consent": consent,
        "takedowns": len(settings.get("opt_out_hashes") or []),
        "sources": [(str(k), int(v)) for k, v in prov.get("sources") or []],
        "n_sources": prov.get("n_sources"),
        "source": manifest.get("source", "?"),
    }


# ---------------------------------------------------------------------------
# image properties


def images(props: dict | None, figs: Figures, mpl: Any) -> dict | None:
    """Resolution, aspect-ratio and format distributions of the written
    records (before resizing)."""
    if not props:
        return None
    width = np.asarray(props.get("width", []), dtype=np.float64)
    height = np.asarray(props.get("height", []), dtype=np.float64)
    formats = Counter({str(k): int(v) for k, v in (props.get("formats") or {}).items()})
    formats.update(str(f) for f in props.get("format") or [])
    if not len(width) and not formats:
        return None
    out: dict[str, Any] = {
        "n": sum(formats.values()) or len(width),
        "formats": sorted(formats.items(), key=lambda kv: -kv[1]),
    }
    if len(width):
        shorter = np.minimum(width, height)
        aspect = width / np.maximum(height, 1)
        out.update(
            median=f"{int(np.median(width)):,} x {int(np.median(height)):,} px",
            shorter=(f"{int(shorter.min()):,}", f"{int(np.median(shorter)):,}",
                     f"{int(shorter.max()):,}"),
            portrait=int((aspect < 0.95).sum()),
            square=int(((aspect >= 0.95) & (aspect <= 1.05)).sum()),
            landscape=int((aspect > 1.05).sum()),
        )  # fmt: skip
    if mpl is not None:
        if len(width):
            out["resolution_chart"] = figs.img(
                "resolution.png", charts.resolution_figure(mpl, width, height), "resolution"
            )
            out["aspect_chart"] = figs.img(
                "aspect.png", charts.aspect_figure(mpl, width / np.maximum(height, 1)), "aspect"
            )
        if formats:
            out["format_chart"] = figs.img(
                "formats.png", charts.formats_figure(mpl, out["formats"]), "formats"
            )
    return out


# ---------------------------------------------------------------------------
# damaged and refused files


def damaged(dropped: pa.Table | None, manifest: dict | None = None) -> dict | None:
    """The first records dropped for what their file (or sidecar) is, with
    the reason; the full list is ``dropped.parquet``. With the manifest,
    also the written records that decoded with warnings (``on_damaged=keep``)."""
    if dropped is None:
        return None
    kept = ((manifest or {}).get("damaged") or {}).get("written_with_warnings") or {}
    reasons = dropped.column("reason").to_pylist()
    rows = [
        i for i, r in enumerate(reasons) if r is not None and r.split(":")[0] in DAMAGED_REASONS
    ]
    keys = dropped.column("key").to_pylist()
    sources = dropped.column("source").to_pylist() if "source" in dropped.schema.names else None
    shown = [
        {
            "key": keys[i],
            "source": sources[i] if sources else "",
            "kind": reasons[i].split(":")[0],
            "detail": reasons[i].split(":", 1)[1].strip() if ":" in reasons[i] else "",
        }
        for i in rows[:_MAX_DAMAGED]
    ]
    kinds = Counter(reasons[i].split(":")[0] for i in rows)
    return {
        "total": len(rows),
        "rows": shown,
        "kinds": sorted(kinds.items()),
        "kept_warnings": sorted(kept.items()),
    }


# ---------------------------------------------------------------------------
# near-duplicate clusters


def _cluster(index: int, cluster: dict, figs: Figures) -> dict:
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
    return {
        "index": index,
        "keeper": keeper,
        "size": len(members),
        "img": img,
        "shown": members[:shown],
        "n_shown": shown,
        "rest": members[shown:],
        "cell": CELL,
        "gap": GAP,
    }


def clusters(items: list[dict] | None, figs: Figures) -> list[dict]:
    """The largest near-duplicate clusters, one strip each (keeper first)."""
    return [_cluster(i, c, figs) for i, c in enumerate(list(items or [])[:_MAX_CLUSTERS], 1)]


# ---------------------------------------------------------------------------
# eval-set leaks


def leaks(table: Any, pairs: list[dict] | None, figs: Figures) -> dict | None:
    """The training records that match an evaluation image, closest first,
    and the closest pairs side by side (training | evaluation)."""
    if table is None:
        return None
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    n = table.num_rows
    names = table.schema.names
    train = "train_key" if "train_key" in names else "train_index"
    evalc = "eval_key" if "eval_key" in names else "eval_index"
    has_distance = "distance" in names
    if n and has_distance:
        table = table.take(pc.sort_indices(table, sort_keys=[("distance", "ascending")]))
    shown = table.slice(0, _MAX_LEAK_ROWS)
    cols = [c for c in (train, evalc) if c in names]
    data = {c: shown.column(c).to_pylist() for c in cols}
    dist = shown.column("distance").to_pylist() if has_distance else [None] * shown.num_rows
    img = None
    pairs = list(pairs or [])[:_MAX_LEAK_PAIRS]
    if pairs:
        img = figs.img(
            "leaks.png",
            pairs_png([(p.get("train"), p.get("eval")) for p in pairs]),
            f"{len(pairs)} closest leaks",
            css="strip",
            scale=1,
        )
    return {
        "n": n,
        "n_train": len(pc.unique(table.column(train))) if train in names and n else None,
        "n_eval": len(pc.unique(table.column(evalc))) if evalc in names and n else None,
        "columns": cols,
        "rows": [([data[c][i] for c in cols], dist[i]) for i in range(shown.num_rows)],
        "has_distance": has_distance,
        "more": n - shown.num_rows,
        "img": img,
        "pairs": [
            (str(p.get("train_key")), str(p.get("eval_key")), p.get("distance")) for p in pairs
        ],
        "cell": CELL,
        "gap": GAP,
    }
