"""Pieces of the prep job that every engine shares: option checks, the
settings record, the staged per-batch step, drop reasons, atomic writers,
and the tables and manifest that end a run. :mod:`.prep` runs them in one
process, :mod:`fastprep.ray` on a cluster; both write the same outputs.
"""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import fastprep
from fastprep import _core
from fastprep.dedup import match_hashes
from fastprep.hashtags import HashtagNormalizer
from fastprep.pipeline.stages import ImageStage, consent_reasons, hashtag_stage

IMAGE_FORMATS = ("tensor", "jpeg", "webp")
SINKS = ("parquet", "arrow", "webdataset")
#: Staged parts are Arrow IPC files: written and memory-mapped back at copy
#: speed (a Parquet round trip of 224x224 pixel tensors cost ~8 ms a record).
STAGED_SUFFIX = ".arrow"
SHARD_SUFFIX = {"parquet": "parquet", "arrow": "arrow", "webdataset": "tar"}
#: Outputs of a run, removed by ``overwrite=True`` (nothing else is touched).
OUTPUT_PATTERNS = (
    "shard-*",
    "manifest.json",
    "vocab.json",
    "hashtag_counts.parquet",
    "dropped.parquet",
    "duplicate_pairs.parquet",
    "eval_leaks.parquet",
    "report.html",
    "report",
    "_staging",
)
STATE_COLUMNS = (
    "key",
    "source",
    "xxh3_128",
    "pdq",
    "pdq_quality",
    "source_width",
    "source_height",
)
# Corpus-level decisions, one per record (0: keep).
OPT_OUT, DUPLICATE, LEAK, NO_LABEL = 1, 2, 3, 4


@dataclass
class PrepResult:
    out_dir: str
    manifest: dict

    @property
    def written(self) -> int:
        return self.manifest["totals"]["written"]

    @property
    def dropped(self) -> dict:
        return self.manifest["totals"]["dropped"]

    @property
    def report(self) -> str | None:
        name = self.manifest.get("report")
        return os.path.join(self.out_dir, name) if name else None


class OutputExistsError(FileExistsError):
    """The output folder already holds a run and neither resume nor overwrite was asked."""


class ResumeMismatchError(ValueError):
    """``resume=True`` on a run with other settings or another source."""


def atomic(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)`` then rename to ``path``; the temporary file is removed
    if writing fails or is interrupted (Ctrl-C)."""
    tmp = path + ".tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _bulky(field: pa.Field) -> bool:
    """Pixel and image-bytes columns: dictionaries and statistics only cost there."""
    kind = field.type.storage_type if isinstance(field.type, pa.ExtensionType) else field.type
    return (
        pa.types.is_fixed_size_list(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or (pa.types.is_fixed_size_binary(kind) and kind.byte_width > 64)
    )


def atomic_parquet(table: pa.Table | pa.RecordBatch, path: str, row_group_size: int) -> None:
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    small = [f.name for f in table.schema if not _bulky(f)]
    pixels = {
        f.name: "PLAIN"
        for f in table.schema
        if _bulky(f) and not pa.types.is_binary(getattr(f.type, "storage_type", f.type))
    }
    options = {
        "row_group_size": row_group_size,
        "use_dictionary": small,
        "write_statistics": small,
        # Pixel lists: plain pages (measured 4.3x faster to write than the
        # default dictionary attempt, and as small: pixels do not repeat).
        "column_encoding": pixels or None,
    }
    atomic(path, lambda tmp: pq.write_table(table, tmp, **options))


def atomic_arrow(table: pa.Table | pa.RecordBatch, path: str) -> None:
    """An Arrow IPC file: the fastest to write, and memory-mapped on read."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])

    def write(tmp: str) -> None:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    atomic(path, write)


def read_arrow(path: str, columns: list[str] | None = None) -> pa.Table:
    """An Arrow IPC file, memory-mapped: no copy of its buffers."""
    with pa.memory_map(path) as source:
        table = pa.ipc.open_file(source).read_all()
    return table.select(columns) if columns else table


def arrow_schema(path: str) -> pa.Schema:
    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).schema


def atomic_json(data: Any, path: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)

    atomic(path, write)


def atomic_tar(table: pa.Table, path: str, image_column: str) -> None:
    """A WebDataset shard: ``key.<jpg|webp>``, ``key.txt`` (caption) and
    ``key.json`` (every other column that is JSON-friendly)."""
    meta_columns = [n for n in table.schema.names if n not in (image_column, "caption")]
    rows = table.select(meta_columns).to_pylist()
    images = table.column(image_column).to_pylist()
    captions = table.column("caption").to_pylist()

    def write(tmp: str) -> None:
        with tarfile.open(tmp, "w") as tar:
            for row, image, caption in zip(rows, images, captions):
                key = str(row["key"]).replace("/", "_").replace(".", "_")
                meta = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in row.items()}
                for suffix, data in (
                    (image_column, image or b""),
                    ("txt", (caption or "").encode()),
                    ("json", json.dumps(meta).encode()),
                ):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))

    atomic(path, write)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order, nulls where missing."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.schema.names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def prepare_out_dir(out: str, settings: dict, resume: bool, overwrite: bool) -> str:
    """Creates ``out`` and its staging folder; enforces resume/overwrite rules."""
    staging = os.path.join(out, "_staging")
    existing = [p for pattern in OUTPUT_PATTERNS for p in glob.glob(os.path.join(out, pattern))]
    if existing and overwrite:
        for path in existing:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        existing = []
    if existing and not resume:
        raise OutputExistsError(
            f"{out} already holds a fastprep run; pass resume=True (--resume) to continue it "
            "or overwrite=True (--overwrite) to replace it"
        )
    for leftover in glob.glob(os.path.join(out, "**", "*.tmp"), recursive=True):
        os.remove(leftover)  # a write interrupted before its rename
    os.makedirs(staging, exist_ok=True)
    settings_path = os.path.join(staging, "settings.json")
    if resume and os.path.exists(settings_path):
        with open(settings_path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise ResumeMismatchError(
                f"cannot resume {out}: settings differ from the interrupted run ({', '.join(changed)})"
            )
    elif resume and os.path.exists(os.path.join(out, "manifest.json")):
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            if json.load(f).get("resume_settings") != settings:
                raise ResumeMismatchError(
                    f"cannot resume {out}: it holds a run with other settings"
                )
    atomic_json(settings, settings_path)
    return staging


def drop_table(keys: Any, sources: Any, reasons: Iterable[str]) -> pa.Table:
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "source": pa.array(sources, pa.string()),
            "reason": pa.array(list(reasons), pa.string()),
        }
    )


def decode_reason(error: str) -> str:
    return (
        f"too_large: {error}" if error.startswith("image too large") else f"decode_error: {error}"
    )


def process_part(
    batch: pa.RecordBatch,
    stage: ImageStage,
    normalizer: HashtagNormalizer,
    consent_rules: tuple,
) -> tuple[pa.Table | None, pa.Table]:
    """One source batch -> (staged records or None, dropped records)."""
    reasons = consent_reasons(batch, consent_rules)
    if "record_error" in batch.schema.names:
        # Unreadable metadata (consent unknown: never kept blind) or an
        # unreadable part of the source: dropped with the source's reason.
        errors = batch.column("record_error").to_numpy(zero_copy_only=False)
        bad = np.array([e is not None for e in errors], dtype=bool)
        reasons[bad] = errors[bad]
        batch = batch.drop_columns(["record_error"])
    refused = np.flatnonzero(reasons != None)  # noqa: E711 (elementwise)
    drops = [
        drop_table(
            pc.take(batch.column("key"), pa.array(refused, pa.int64())),
            pc.take(batch.column("source"), pa.array(refused, pa.int64())),
            reasons[refused],
        )
    ]
    consented = batch.filter(pa.array(reasons == None))  # noqa: E711
    if consented.num_rows == 0:
        return None, drops[0]
    processed = stage(consented)
    failed = pc.is_valid(processed.column("error"))
    bad = processed.filter(failed)
    drops.append(
        drop_table(
            bad.column("key"),
            bad.column("source"),
            (decode_reason(e) for e in bad.column("error").to_pylist()),
        )
    )
    ok = processed.filter(pc.invert(failed))
    if ok.num_rows == 0:
        return None, pa.concat_tables(drops)
    table = pa.Table.from_batches([ok]).append_column("hashtags", hashtag_stage(ok, normalizer))
    return table.drop_columns(["error"]), pa.concat_tables(drops)


def opt_out_matches(
    state: pa.Table, opt_out_hashes: Iterable[str], radius: int, num_threads: int | None
) -> np.ndarray:
    """Records whose xxh3 equals, or whose PDQ is within ``radius`` of, a
    listed hash (hex: 32 digits = xxh3-128, 64 digits = PDQ)."""
    exact, perceptual = [], []
    for text in opt_out_hashes:
        text = text.strip().lower()
        if len(text) == 32:
            exact.append(bytes.fromhex(text))
        elif len(text) == 64:
            perceptual.append(bytes.fromhex(text))
        elif text:
            raise ValueError(f"opt-out hash {text!r} is neither xxh3-128 (32 hex) nor PDQ (64 hex)")
    hit = np.zeros(state.num_rows, dtype=bool)
    if exact:
        values = pa.array(exact, pa.binary(16))
        hit |= pc.is_in(state.column("xxh3_128"), value_set=values).to_numpy(zero_copy_only=False)
    if perceptual and state.num_rows:
        pairs = match_hashes(
            state.column("pdq"),
            pa.array(perceptual, pa.binary(32)),
            radius,
            num_threads=num_threads,
        )
        hit[pairs.column("query").to_numpy()] = True
    return hit


def check_options(
    sink: str,
    image_format: str,
    quality: int,
    records_per_shard: int,
    batch_size: int,
    row_group_size: int,
) -> str:
    """Rejects bad values before any work; returns the image format to write
    (WebDataset shards hold encoded images, JPEG unless WebP is asked)."""
    if sink not in SINKS:
        raise ValueError(f"sink must be one of {SINKS}, got {sink!r}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if not 1 <= quality <= 100:
        raise ValueError("quality must be within 1-100")
    if records_per_shard < 1 or batch_size < 1 or row_group_size < 1:
        raise ValueError("records_per_shard, batch_size and row_group_size must be positive")
    return "jpeg" if sink == "webdataset" and image_format == "tensor" else image_format


def job_settings(
    source_label: str,
    *,
    eval_source: Any,
    opt_out_hashes: Iterable[str],
    normalizer: HashtagNormalizer | None,
    consent_rules: tuple,
    source_options: dict | None,
    **options: Any,
) -> dict:
    """The settings record of a run (manifest, resume check), exactly as it
    reads back from JSON."""
    settings = {
        "source": source_label,
        **options,
        "eval_source": os.fspath(eval_source)
        if isinstance(eval_source, (str, os.PathLike))
        else None,
        "opt_out_hashes": sorted(h.strip().lower() for h in opt_out_hashes),
        "normalizer": None
        if normalizer is None
        else {"canonical": sorted(normalizer.canonical), "stoplist": sorted(normalizer.stoplist)},
        "consent_rules": [vars(rule) for rule in consent_rules],
        "source_options": source_options or {},
        "fastprep": fastprep.__version__,
    }
    return json.loads(json.dumps(settings))


def reason_text(code: int, name: str | None) -> str:
    """The ``dropped.parquet`` reason of a corpus-level decision; ``name`` is
    the keeper's key (duplicates) or the eval record's key (leaks)."""
    if code == OPT_OUT:
        return "opt_out_list"
    if code == DUPLICATE:
        return f"duplicate_of: {name}"
    if code == LEAK:
        return f"eval_leak: {name}"
    return "no_label"


def finish_run(
    out: str,
    settings: dict,
    *,
    total: int,
    shards: list[dict],
    vocab_size: int,
    dropped: pa.Table,
    pairs: pa.Table | None,
    leaks: pa.Table | None,
    seconds: float,
    row_group_size: int,
    extra: dict | None = None,
) -> dict:
    """Writes the drop, pair and leak tables; returns the manifest after
    checking that every input record is written or dropped."""
    atomic_parquet(dropped, os.path.join(out, "dropped.parquet"), row_group_size)
    if pairs is not None:
        atomic_parquet(pairs, os.path.join(out, "duplicate_pairs.parquet"), row_group_size)
    if leaks is not None:
        atomic_parquet(leaks, os.path.join(out, "eval_leaks.parquet"), row_group_size)
    reasons = Counter(r.split(":")[0] for r in dropped.column("reason").to_pylist())
    written = sum(s["records"] for s in shards)
    manifest = {
        "fastprep": fastprep.__version__,
        "versions": {"pyarrow": pa.__version__, "numpy": np.__version__},
        "source": settings["source"],
        "settings": {k: v for k, v in settings.items() if k not in ("source", "fastprep")},
        "outputs": shards,
        "vocabulary": {"file": "vocab.json", "size": vocab_size},
        "tables": {
            "hashtag_counts": "hashtag_counts.parquet",
            "dropped": "dropped.parquet",
            "duplicate_pairs": "duplicate_pairs.parquet" if pairs is not None else None,
            "eval_leaks": "eval_leaks.parquet" if leaks is not None else None,
        },
        "totals": {"input": total, "written": written, "dropped": dict(sorted(reasons.items()))},
        "seconds": round(seconds, 3),
        "records_per_second": round(total / seconds, 1) if seconds else None,
        **(extra or {}),
    }
    if total != written + sum(reasons.values()):
        raise AssertionError(f"accounting mismatch: {manifest['totals']}")
    return manifest


IMAGE_COLUMN = {"tensor": "pixels", "jpeg": "jpg", "webp": "webp"}


def write_shard(
    table: pa.Table,
    path: str,
    *,
    sink: str,
    image_format: str,
    size: int | tuple[int, int],
    quality: int,
    row_group_size: int,
    num_threads: int | None,
) -> None:
    """One output shard: pixels kept as a tensor or re-encoded (no metadata),
    then written atomically in the sink's format."""
    image_column = IMAGE_COLUMN[image_format]
    if image_format != "tensor":
        height, width = (size, size) if isinstance(size, int) else size
        pixels = table.column("pixels")
        encoded = _core.encode_images(
            pa.chunked_array([c.storage for c in pixels.chunks], type=pixels.type.storage_type),
            height,
            width,
            image_format,
            quality,
            num_threads,
        )
        table = table.drop_columns(["pixels"]).append_column(image_column, encoded)
    if sink == "webdataset":
        atomic_tar(table, path, image_column)
    elif sink == "arrow":
        atomic_arrow(table, path)
    else:
        atomic_parquet(table, path, row_group_size)
