"""The `prep` job: raw photo+caption corpus -> deduplicated, labelled shards.

Pass 1 streams the source once: consent filter, then decode + resize + hash
(one decode per record) and hashtag extraction, staging processed batches on
disk and keeping only keys and hashes in memory. Corpus-wide decisions follow
(exact and near-duplicates, eval-set leaks, opt-out list, vocabulary). Pass 2
re-reads the staged batches, drops what was decided, adds labels and writes
the final shards atomically. Every input record ends up written or dropped
with a reason, and the manifest's totals add up.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import fastprep
from fastprep import _core
from fastprep.dedup import deduplicate, leak_report
from fastprep.hashtags import (
    HashtagCounts,
    HashtagNormalizer,
    build_vocabulary,
    save_vocabulary,
)
from fastprep.pipeline.sources import open_source
from fastprep.pipeline.stages import DEFAULT_RULES, ImageStage, consent_reasons, hashtag_stage


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


def _atomic_parquet(table: pa.Table | pa.RecordBatch, path: str, row_group_size: int) -> None:
    """Writes under a temporary name, then renames: never a half-written file."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    tmp = path + ".tmp"
    pq.write_table(table, tmp, row_group_size=row_group_size)
    os.replace(tmp, path)


def _atomic_tar(table: pa.Table, path: str) -> None:
    """A WebDataset shard: ``key.jpg``, ``key.txt`` (caption), ``key.json``
    (everything else that is JSON-friendly), written then renamed."""
    meta_columns = [n for n in table.schema.names if n not in ("jpg", "caption")]
    rows = table.select(meta_columns).to_pylist()
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        for row, jpg, caption in zip(
            rows, table.column("jpg").to_pylist(), table.column("caption").to_pylist()
        ):
            key = str(row["key"]).replace("/", "_").replace(".", "_")
            meta = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in row.items()}
            for suffix, data in (
                ("jpg", jpg or b""),
                ("txt", (caption or "").encode()),
                ("json", json.dumps(meta).encode()),
            ):
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order, nulls where missing."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.schema.names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def prep(
    source: str | os.PathLike | Iterable[pa.RecordBatch],
    out_dir: str | os.PathLike,
    *,
    size: int = 224,
    mode: str = "center_crop",
    records_per_shard: int = 10_000,
    row_group_size: int = 1_000,
    dedup_radius: int | None = 31,
    min_quality: int = 50,
    eval_source: Any = None,
    eval_radius: int = 31,
    opt_out_hashes: Iterable[str] = (),
    normalizer: HashtagNormalizer | None = None,
    top_k: int | None = None,
    min_count: int = 1,
    drop_unlabeled: bool = True,
    image_format: str = "tensor",
    jpeg_quality: int = 90,
    sink: str = "parquet",
    consent_rules: tuple = DEFAULT_RULES,
    batch_size: int = 256,
    num_threads: int | None = None,
) -> PrepResult:
    """Runs the whole job; see the module docstring. Returns the manifest.

    ``image_format``: ``"tensor"`` keeps pixels as a fixed-shape tensor column;
    ``"jpeg"`` re-encodes them (column ``jpg``) with libjpeg-turbo, which writes
    no EXIF, XMP, IPTC, GPS or comments. ``sink``: ``"parquet"`` shards, or
    ``"webdataset"`` tar shards (``key.jpg``, ``key.txt``, ``key.json``; implies
    JPEG).
    """
    if sink not in ("parquet", "webdataset"):
        raise ValueError("sink must be 'parquet' or 'webdataset'")
    if image_format not in ("tensor", "jpeg"):
        raise ValueError("image_format must be 'tensor' or 'jpeg'")
    if sink == "webdataset":
        image_format = "jpeg"
    started = time.perf_counter()
    out = os.fspath(out_dir)
    staging = os.path.join(out, "_staging")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging, exist_ok=True)
    normalizer = normalizer or HashtagNormalizer()
    batches = (
        open_source(source, batch_size=batch_size)
        if isinstance(source, (str, os.PathLike))
        else source
    )
    stage = ImageStage(size=size, mode=mode, hashes=("xxh3", "pdq"), num_threads=num_threads)

    dropped: list[tuple[str, str, str]] = []  # key, source, reason
    keys: list[str] = []
    sources: list[str] = []
    xxh3: list[bytes] = []
    pdq: list[bytes] = []
    quality: list[int] = []
    area: list[int] = []
    counts = HashtagCounts()
    total = 0
    for part, batch in enumerate(batches):
        total += batch.num_rows
        reasons = consent_reasons(batch, consent_rules)
        for i in np.flatnonzero(reasons != None):  # noqa: E711
            dropped.append(
                (batch.column("key")[i].as_py(), batch.column("source")[i].as_py(), reasons[i])
            )
        consented = batch.filter(pa.array(reasons == None))  # noqa: E711
        if consented.num_rows == 0:
            continue
        processed = stage(consented)
        errors = processed.column("error").to_pylist()
        for i, error in enumerate(errors):
            if error is not None:
                dropped.append(
                    (
                        processed.column("key")[i].as_py(),
                        processed.column("source")[i].as_py(),
                        f"decode_error: {error}",
                    )
                )
        ok = processed.filter(pc.is_null(processed.column("error")))
        if ok.num_rows == 0:
            continue
        tags = hashtag_stage(ok, normalizer)
        counts.update(pa.chunked_array([ok.column("caption")]), normalizer, num_threads)
        table = pa.Table.from_batches([ok]).append_column("hashtags", tags)
        table = table.append_column(
            "record", pa.array(np.arange(len(keys), len(keys) + ok.num_rows), pa.int64())
        )
        pq.write_table(table, os.path.join(staging, f"part-{part:06d}.parquet"))
        keys.extend(ok.column("key").to_pylist())
        sources.extend(ok.column("source").to_pylist())
        xxh3.extend(ok.column("xxh3_128").to_pylist())
        pdq.extend(ok.column("pdq").to_pylist())
        quality.extend(ok.column("pdq_quality").to_pylist())
        area.extend(
            (
                np.asarray(ok.column("source_width")) * np.asarray(ok.column("source_height"))
            ).tolist()
        )

    # Corpus-wide decisions, one reason per record (first that applies).
    n = len(keys)
    decision: list[str | None] = [None] * n
    optout = {h.lower() for h in opt_out_hashes}
    for i in range(n):
        if xxh3[i].hex() in optout or pdq[i].hex() in optout:
            decision[i] = "opt_out_list"
    first_of: dict[bytes, int] = {}
    for i, h in enumerate(xxh3):  # exact copies: the first one stays
        if h in first_of and decision[i] is None:
            decision[i] = f"duplicate_of: {keys[first_of[h]]}"
        first_of.setdefault(h, i)
    pairs_table = None
    if dedup_radius is not None and n:
        usable = np.asarray(quality) >= min_quality  # low-quality PDQ hashes match noise
        index = np.flatnonzero(usable)
        if len(index) > 1:
            records, pairs_table = deduplicate(
                pa.array([pdq[i] for i in index], pa.binary(32)),
                dedup_radius,
                rank=np.asarray(area)[index],
                num_threads=num_threads,
            )
            for local, keeper in enumerate(records.column("duplicate_of").to_pylist()):
                i = index[local]
                if keeper is not None and decision[i] is None:
                    decision[i] = f"duplicate_of: {keys[index[keeper]]}"
    leaks = None
    if eval_source is not None and n:
        eval_batches = (
            open_source(eval_source) if isinstance(eval_source, (str, os.PathLike)) else eval_source
        )
        eval_keys, eval_pdq = [], []
        for batch in eval_batches:
            hashed = fastprep.hash_images(
                batch.column("image"), hashes=["pdq"], num_threads=num_threads
            )
            good = pc.is_null(hashed.column("error"))
            eval_keys.extend(pc.filter(batch.column("key"), good).to_pylist())
            eval_pdq.extend(pc.filter(hashed.column("pdq"), good).to_pylist())
        if eval_pdq:
            leaks = leak_report(
                pa.array(pdq, pa.binary(32)),
                pa.array(eval_pdq, pa.binary(32)),
                eval_radius,
                train_keys=keys,
                eval_keys=eval_keys,
                num_threads=num_threads,
            )
            for row in leaks.to_pylist():
                if decision[row["train_index"]] is None:
                    decision[row["train_index"]] = f"eval_leak: {row['eval_key']}"

    vocab = build_vocabulary(counts, top_k=top_k, min_count=min_count, normalizer=normalizer)
    os.makedirs(out, exist_ok=True)
    save_vocabulary(vocab, os.path.join(out, "vocab.json"))
    _atomic_parquet(counts.to_arrow(), os.path.join(out, "hashtag_counts.parquet"), row_group_size)

    # Pass 2: staged batches -> final shards.
    shards: list[dict] = []
    pending: list[pa.Table] = []
    pending_rows = 0
    written = 0

    def flush() -> None:
        nonlocal pending, pending_rows, written
        if not pending_rows:
            return
        table = pa.concat_tables(pending)
        if image_format == "jpeg":
            pixels = table.column("pixels")
            encoded = _core.encode_jpeg(
                pa.chunked_array([c.storage for c in pixels.chunks], type=pixels.type.storage_type),
                size,
                size,
                jpeg_quality,
                num_threads,
            )
            table = table.drop_columns(["pixels"]).append_column("jpg", encoded)
        if sink == "webdataset":
            name = f"shard-{len(shards):05d}.tar"
            _atomic_tar(table, os.path.join(out, name))
        else:
            name = f"shard-{len(shards):05d}.parquet"
            _atomic_parquet(table, os.path.join(out, name), row_group_size)
        shards.append({"file": name, "records": table.num_rows})
        written += table.num_rows
        pending, pending_rows = [], 0

    staged = sorted(os.listdir(staging))
    # Batches may carry different metadata columns: every shard gets them all.
    schema = (
        pa.unify_schemas([pq.read_schema(os.path.join(staging, name)) for name in staged])
        if staged
        else None
    )
    for name in staged:
        table = _conform(pq.read_table(os.path.join(staging, name)), schema)
        labels = fastprep.label_captions(table.column("caption"), vocab)
        record = table.column("record").to_numpy()
        keep = np.array([decision[r] is None for r in record], dtype=bool)
        if drop_unlabeled:
            unlabeled = keep & ~labels.column("has_label").to_numpy()
            for r in record[unlabeled]:
                decision[r] = "no_label"
            keep &= ~unlabeled
        for r in record[~keep]:
            dropped.append((keys[r], sources[r], decision[r]))
        table = table.append_column("labels", labels.column("labels")).append_column(
            "num_labels", labels.column("num_labels")
        )
        table = table.drop_columns(["record", "error"]).filter(pa.array(keep))
        start = 0
        while start < table.num_rows:
            take = min(records_per_shard - pending_rows, table.num_rows - start)
            pending.append(table.slice(start, take))
            pending_rows += take
            start += take
            if pending_rows >= records_per_shard:
                flush()
    flush()
    shutil.rmtree(staging, ignore_errors=True)

    reasons = Counter(reason.split(":")[0] for _, _, reason in dropped)
    dropped_table = pa.table(
        {
            "key": [d[0] for d in dropped],
            "source": [d[1] for d in dropped],
            "reason": [d[2] for d in dropped],
        }
    )
    _atomic_parquet(dropped_table, os.path.join(out, "dropped.parquet"), row_group_size)
    if pairs_table is not None:
        _atomic_parquet(pairs_table, os.path.join(out, "duplicate_pairs.parquet"), row_group_size)
    if leaks is not None:
        _atomic_parquet(leaks, os.path.join(out, "eval_leaks.parquet"), row_group_size)
    elapsed = time.perf_counter() - started
    manifest = {
        "fastprep": fastprep.__version__,
        "pyarrow": pa.__version__,
        "source": os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<batches>",
        "settings": {
            "image_format": image_format,
            "sink": sink,
            "size": size,
            "mode": mode,
            "records_per_shard": records_per_shard,
            "dedup_radius": dedup_radius,
            "min_quality": min_quality,
            "eval_radius": eval_radius,
            "drop_unlabeled": drop_unlabeled,
            "top_k": top_k,
            "min_count": min_count,
        },
        "outputs": shards,
        "vocabulary": {"file": "vocab.json", "size": len(vocab)},
        "totals": {"input": total, "written": written, "dropped": dict(sorted(reasons.items()))},
        "seconds": round(elapsed, 3),
        "records_per_second": round(total / elapsed, 1) if elapsed else None,
    }
    if manifest["totals"]["input"] != written + sum(reasons.values()):
        raise AssertionError(f"accounting mismatch: {manifest['totals']}")
    with open(os.path.join(out, "manifest.json.tmp"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    os.replace(os.path.join(out, "manifest.json.tmp"), os.path.join(out, "manifest.json"))
    return PrepResult(out, manifest)
