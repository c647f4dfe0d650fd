"""What the report shows of the written records, gathered from a finished
prep run's staged parts: a sample grid, examples of the top tags, licences
and provenance, image properties and the leaked pairs' thumbnails.

Reads only small columns of every staged part (captions, licence, format)
and the pixels of the few records shown; memory stays bounded by a part.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep.hashtags import Vocabulary, label_captions
from fastprep.images import decode_images, pixels_to_numpy
from fastprep.pipeline.io import arrow_schema, read_arrow

__all__ = ["SAMPLES", "TOP_TAGS", "gather", "staged_rows"]

log = logging.getLogger(__name__)

SAMPLES = 24  # records in the sample grid
TOP_TAGS = 6  # top vocabulary tags with examples
EXAMPLES = 6  # examples per tag
LEAK_PAIRS = 12
MAX_AUTHORS = 100_000  # distinct authors counted (beyond: "at least")
MAX_SIZES = 1_000_000  # records in the resolution/aspect histograms (evenly strided)
LICENSE_COLUMNS = ("license", "licence", "license_name", "LICENSE")
AUTHOR_COLUMNS = ("author", "creator", "photographer")


#: Image columns of encoded stores (re-encoded, or the stripped source).
ENCODED_COLUMNS = ("jpg", "webp", "ppm", "image")
THUMBNAIL = 160


def _thumbnails_of(images: pa.Array) -> list[Any]:
    """Encoded images as ``THUMBNAIL``-square letterboxed arrays (None where
    one does not decode)."""
    decoded = decode_images(images, size=THUMBNAIL, mode="letterbox")
    good = decoded.column("error").is_null().to_pylist()
    arrays = pixels_to_numpy(decoded)
    return [arrays[i].copy() if ok else None for i, ok in enumerate(good)]


def staged_rows(
    parts: list[str], part_rows: list[int], rows: list[int], columns: list[str]
) -> dict[int, dict[str, Any]]:
    """Values of ``columns`` (those a part has) for global staged ``rows``;
    ``pixels`` as ``HxWx3`` arrays. Each part is read once."""
    starts = np.cumsum([0, *part_rows])
    found: dict[int, dict[str, Any]] = {}
    wanted = sorted(set(rows))
    by_part: dict[int, list[int]] = {}
    for row in wanted:
        by_part.setdefault(int(np.searchsorted(starts, row, side="right")) - 1, []).append(row)
    for part, members in by_part.items():
        names = arrow_schema(parts[part]).names
        have = [c for c in columns if c in names]
        # Encoded stores stage what they write: their images stand in for pixels.
        encoded = next((c for c in ENCODED_COLUMNS if c in names), None)
        if "pixels" in columns and "pixels" not in names and encoded:
            have.append(encoded)
        if not have:
            continue
        table = read_arrow(parts[part], columns=have)
        local = pa.array([r - int(starts[part]) for r in members], pa.int64())
        picked = table.take(local)
        values: dict[str, Any] = {}
        for name in have:
            column = picked.column(name).combine_chunks()
            if name == "pixels":
                values[name] = list(column.to_numpy_ndarray())
            elif name == encoded and name not in columns:
                values["pixels"] = _thumbnails_of(column)
            else:
                values[name] = column.to_pylist()
        have = [("pixels" if n == encoded and n not in columns else n) for n in have]
        for i, row in enumerate(members):
            found[row] = {name: values[name][i] for name in have}
    return found


def _container(source: str | None) -> str:
    """The folder, tar shard or Parquet file a record came from (a
    record's ``source`` already names it)."""
    return source or "?"


def _first_column(names: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in names), None)


def gather(
    *,
    parts: list[str],
    part_rows: list[int],
    keep: np.ndarray,
    state: pa.Table,
    vocab: Vocabulary,
    leaks: pa.Table | None,
    eval_source: Any,
    size: Any,
    mode: str,
) -> dict[str, Any]:
    """The optional inputs of :func:`~fastprep.pipeline.report.write_report`
    (``samples``, ``tag_examples``, ``provenance``, ``images``,
    ``leak_pairs``) for a run; ``keep`` marks the written staged records."""
    starts = np.cumsum([0, *part_rows])
    kept = np.flatnonzero(keep)
    tags = list(vocab.tags)
    top = list(range(min(TOP_TAGS, len(tags))))
    examples: dict[int, list[int]] = {t: [] for t in top}
    licenses: Counter[str] = Counter()
    authors: set[str] = set()
    formats: Counter[str] = Counter()
    license_column = None
    any_author = False
    # one pass over the small columns of every part
    for part, path in enumerate(parts):
        mask = keep[starts[part] : starts[part + 1]]
        if not mask.any():
            continue
        names = arrow_schema(path).names
        lic = _first_column(names, LICENSE_COLUMNS)
        author = _first_column(names, AUTHOR_COLUMNS)
        license_column = license_column or lic
        columns = [c for c in ("caption", "format", lic, author) if c is not None and c in names]
        table = read_arrow(path, columns=columns).filter(pa.array(mask))
        rows = np.flatnonzero(mask) + int(starts[part])
        if "format" in columns:
            formats.update(str(f) for f in table.column("format").to_pylist())
        if lic is not None:
            licenses.update(
                str(v) if v not in (None, "") else "unknown" for v in table.column(lic).to_pylist()
            )
        else:
            licenses["unknown"] += table.num_rows
        if author is not None and len(authors) < MAX_AUTHORS:
            any_author = True
            authors.update(str(v) for v in table.column(author).to_pylist() if v)
        if top and any(len(v) < EXAMPLES for v in examples.values()) and "caption" in columns:
            labels = label_captions(table.column("caption"), vocab).column("labels").to_pylist()
            for row, ids in zip(rows, labels):
                for t in ids or ():
                    if t in examples and len(examples[t]) < EXAMPLES:
                        examples[t].append(int(row))
    pick = sorted(
        {
            int(kept[i])
            for i in np.linspace(0, len(kept) - 1, min(SAMPLES, len(kept))).round().astype(int)
        }
        if len(kept)
        else set()
    )
    leak_rows = _leak_rows(leaks)
    shown = (
        pick + [r for rows in examples.values() for r in rows] + [t for t, _, _, _, _ in leak_rows]
    )
    values = staged_rows(parts, part_rows, shown, ["key", "caption", "pixels"])
    sample_labels = (
        label_captions(pa.array([values[r].get("caption") for r in pick], pa.string()), vocab)
        .column("labels")
        .to_pylist()
        if pick
        else []
    )
    samples = [
        {
            "key": values[r].get("key"),
            "labels": [tags[i] for i in (ids or [])],
            "thumbnail": values[r].get("pixels"),
        }
        for r, ids in zip(pick, sample_labels)
    ]
    tag_examples = [
        {
            "tag": tags[t],
            "images": int(vocab.images[t]),
            "examples": [
                {"key": values[r].get("key"), "thumbnail": values[r].get("pixels")}
                for r in examples[t]
            ],
        }
        for t in top
    ]
    sources = (
        Counter(
            _container(s)
            for s in pc.take(state.column("source"), pa.array(kept, pa.int64())).to_pylist()
        )
        if len(kept)
        else Counter()
    )
    sized = kept[:: max(1, len(kept) // MAX_SIZES)] if len(kept) > MAX_SIZES else kept
    width = pc.take(state.column("source_width"), pa.array(sized, pa.int64())).to_numpy()
    height = pc.take(state.column("source_height"), pa.array(sized, pa.int64())).to_numpy()
    eval_pixels = _eval_thumbnails(eval_source, {e for _, _, e, _, _ in leak_rows}, size, mode)
    leak_pairs = [
        {
            "train_key": train_key,
            "eval_key": eval_key,
            "distance": distance,
            "train": values.get(train, {}).get("pixels"),
            "eval": eval_pixels.get(eval_key),
        }
        for train, train_key, eval_key, _, distance in leak_rows
    ]
    return {
        "samples": samples,
        "tag_examples": tag_examples,
        "provenance": {
            "licenses": licenses.most_common(),
            "license_column": license_column,
            "authors": len(authors) if any_author else None,
            "sources": sources.most_common(10),
            "n_sources": len(sources),
        },
        "images": {"width": width, "height": height, "formats": dict(formats)},
        "leak_pairs": leak_pairs,
    }


def _leak_rows(leaks: pa.Table | None) -> list[tuple[int, str, str, int, int]]:
    """The closest leaks: ``(train row, train key, eval key, eval index, distance)``."""
    if leaks is None or leaks.num_rows == 0 or "train_index" not in leaks.schema.names:
        return []
    ordered = leaks.take(pc.sort_indices(leaks, sort_keys=[("distance", "ascending")]))
    rows = ordered.slice(0, LEAK_PAIRS).to_pylist()
    return [
        (
            int(r["train_index"]),
            str(r.get("train_key", r["train_index"])),
            str(r.get("eval_key", r.get("eval_index"))),
            int(r.get("eval_index") or 0),
            int(r.get("distance") or 0),
        )
        for r in rows
    ]


def _eval_thumbnails(source: Any, keys: set[str], size: Any, mode: str) -> dict[str, np.ndarray]:
    """Decoded thumbnails of the named eval-set records (a path source only)."""
    if not keys or not isinstance(source, (str, os.PathLike)):
        return {}
    from fastprep.pipeline.sources import open_source

    found: dict[str, np.ndarray] = {}
    try:
        for batch in open_source(source, batch_size=256):
            batch_keys = batch.column("key").to_pylist()
            rows = [i for i, k in enumerate(batch_keys) if k in keys and k not in found]
            if not rows:
                continue
            images = pc.take(batch.column("image"), pa.array(rows, pa.int64()))
            decoded = decode_images(images, size=size, mode=mode)
            errors = decoded.column("error").to_pylist()
            good = [j for j, e in enumerate(errors) if e is None]
            if not good:
                continue
            pixels = decoded.column("pixels").take(pa.array(good, pa.int64())).to_numpy_ndarray()
            for j, array in zip(good, pixels):
                found[batch_keys[rows[j]]] = array
            if len(found) == len(keys):
                break
    except (OSError, pa.ArrowException, ValueError) as error:  # the report still gets written
        log.warning("eval thumbnails for the report: %s", error)
    return found
