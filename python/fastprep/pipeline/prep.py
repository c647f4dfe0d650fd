"""The `prep` job: raw photo+caption corpus -> deduplicated, labelled shards.

Pass 1 streams the source once: consent filter, then decode + resize + hash
(one decode per record) and hashtag extraction, staging each processed batch
on disk (``_staging/part-N``) and keeping only keys and hashes in memory, as
Arrow arrays. Corpus-wide decisions follow (exact and near-duplicates,
eval-set leaks, opt-out list, vocabulary). Pass 2 re-reads the staged
batches, drops what was decided, adds labels and writes the final shards.

Every file is written under a temporary name and renamed, so an interrupted
run leaves no half-written file. A staged part is complete once its
``.done`` marker exists, and shards are numbered deterministically, so
``resume=True`` skips the staged parts and the shards already written.
Every input record ends up written or dropped with a reason, and the
manifest's totals must add up.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import fastprep
from fastprep import _core
from fastprep.dedup import deduplicate, leak_report, match_hashes
from fastprep.hashtags import (
    HashtagCounts,
    HashtagNormalizer,
    build_vocabulary,
    save_vocabulary,
)
from fastprep.pipeline.progress import Progress
from fastprep.pipeline.sources import count_records, open_source, prefetch
from fastprep.pipeline.stages import DEFAULT_RULES, ImageStage, consent_reasons, hashtag_stage

IMAGE_FORMATS = ("tensor", "jpeg", "webp")
SINKS = ("parquet", "webdataset")
#: Outputs of a run, removed by ``overwrite=True`` (nothing else is touched).
_OUTPUT_PATTERNS = (
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
_STATE_COLUMNS = (
    "key",
    "source",
    "xxh3_128",
    "pdq",
    "pdq_quality",
    "source_width",
    "source_height",
)
# Corpus-level decisions, one per record (0: keep).
_OPT_OUT, _DUPLICATE, _LEAK, _NO_LABEL = 1, 2, 3, 4


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


def _atomic(path: str, write: Callable[[str], None]) -> None:
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


def _atomic_parquet(table: pa.Table | pa.RecordBatch, path: str, row_group_size: int) -> None:
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    _atomic(path, lambda tmp: pq.write_table(table, tmp, row_group_size=row_group_size))


def _atomic_json(data: Any, path: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)

    _atomic(path, write)


def _atomic_tar(table: pa.Table, path: str, image_column: str) -> None:
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

    _atomic(path, write)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order, nulls where missing."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.schema.names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _keys_digest(keys: pa.Array | pa.ChunkedArray) -> str:
    """Fingerprint of a batch's keys: resume checks the source is unchanged."""
    joined = "\x00".join("" if k is None else k for k in keys.to_pylist()).encode()
    return hashlib.blake2b(joined, digest_size=16).hexdigest()


def _prepare_out_dir(out: str, settings: dict, resume: bool, overwrite: bool) -> str:
    """Creates ``out`` and its staging folder; enforces resume/overwrite rules."""
    staging = os.path.join(out, "_staging")
    existing = [p for pattern in _OUTPUT_PATTERNS for p in glob.glob(os.path.join(out, pattern))]
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
    _atomic_json(settings, settings_path)
    return staging


@dataclass
class _Pass1:
    """What pass 1 leaves in memory: per staged record, its key and hashes
    (Arrow arrays, ~100 bytes a record), plus the dropped records."""

    total: int
    state: pa.Table
    dropped: pa.Table
    counts: HashtagCounts


def _drop_table(keys: Any, sources: Any, reasons: Iterable[str]) -> pa.Table:
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "source": pa.array(sources, pa.string()),
            "reason": pa.array(list(reasons), pa.string()),
        }
    )


def _decode_reason(error: str) -> str:
    return (
        f"too_large: {error}" if error.startswith("image too large") else f"decode_error: {error}"
    )


def _process_part(
    batch: pa.RecordBatch,
    stage: ImageStage,
    normalizer: HashtagNormalizer,
    consent_rules: tuple,
) -> tuple[pa.Table | None, pa.Table]:
    """One source batch -> (staged records or None, dropped records)."""
    reasons = consent_reasons(batch, consent_rules)
    refused = np.flatnonzero(reasons != None)  # noqa: E711 (elementwise)
    drops = [
        _drop_table(
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
        _drop_table(
            bad.column("key"),
            bad.column("source"),
            (_decode_reason(e) for e in bad.column("error").to_pylist()),
        )
    )
    ok = processed.filter(pc.invert(failed))
    if ok.num_rows == 0:
        return None, pa.concat_tables(drops)
    table = pa.Table.from_batches([ok]).append_column("hashtags", hashtag_stage(ok, normalizer))
    return table.drop_columns(["error"]), pa.concat_tables(drops)


def _pass1(
    batches: Iterator[pa.RecordBatch],
    staging: str,
    stage: ImageStage,
    normalizer: HashtagNormalizer,
    consent_rules: tuple,
    resume: bool,
    progress: Progress,
    num_threads: int | None,
) -> _Pass1:
    total = 0
    states: list[pa.Table] = []
    drops: list[pa.Table] = []
    counts = HashtagCounts()
    for part, batch in enumerate(batches):
        base = os.path.join(staging, f"part-{part:06d}")
        digest = _keys_digest(batch.column("key"))
        if resume and os.path.exists(base + ".done"):
            with open(base + ".done", encoding="utf-8") as f:
                done = json.load(f)
            if done["keys"] != digest or done["input"] != batch.num_rows:
                raise ResumeMismatchError(
                    f"cannot resume: source batch {part} differs from the interrupted run's"
                )
            staged = pq.read_table(base + ".parquet") if done["staged"] else None
            dropped = pq.read_table(base + ".dropped.parquet")
        else:
            staged, dropped = _process_part(batch, stage, normalizer, consent_rules)
            if staged is not None:
                _atomic_parquet(staged, base + ".parquet", 1 << 20)
            _atomic_parquet(dropped, base + ".dropped.parquet", 1 << 20)
            # The marker goes last: a part without it is redone on resume.
            _atomic_json(
                {"input": batch.num_rows, "keys": digest, "staged": staged is not None},
                base + ".done",
            )
        total += batch.num_rows
        drops.append(dropped)
        if staged is not None:
            states.append(staged.select(list(_STATE_COLUMNS)))
            counts.update(staged.column("caption"), normalizer, num_threads)
        progress.update(batch.num_rows)
    progress.close()
    state_schema = pa.schema(
        [
            ("key", pa.string()),
            ("source", pa.string()),
            ("xxh3_128", pa.binary(16)),
            ("pdq", pa.binary(32)),
            ("pdq_quality", pa.uint8()),
            ("source_width", pa.uint32()),
            ("source_height", pa.uint32()),
        ]
    )
    state = (
        pa.concat_tables([s.cast(state_schema) for s in states]).combine_chunks()
        if states
        else state_schema.empty_table()
    )
    dropped = pa.concat_tables(drops).combine_chunks() if drops else _drop_table([], [], [])
    return _Pass1(total, state, dropped, counts)


def _first_occurrence(hashes: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """For each fixed-size binary hash, the index of its first occurrence."""
    if isinstance(hashes, pa.ChunkedArray):
        hashes = hashes.combine_chunks()
    width = hashes.type.byte_width
    raw = np.frombuffer(hashes.buffers()[1], dtype=np.uint8)
    rows = raw[hashes.offset * width : (hashes.offset + len(hashes)) * width].reshape(-1, width)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def _opt_out_matches(
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


def _cluster_members(keeper: np.ndarray, top: int) -> list[list[int]]:
    """The ``top`` largest duplicate clusters, keeper first then members."""
    dups = np.flatnonzero(keeper >= 0)
    if not len(dups):
        return []
    groups: dict[int, list[int]] = {}
    for i in dups:
        groups.setdefault(int(keeper[i]), []).append(int(i))
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    return [[k, *members] for k, members in ranked]


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
    opt_out_radius: int = 31,
    normalizer: HashtagNormalizer | None = None,
    top_k: int | None = None,
    min_count: int = 1,
    drop_unlabeled: bool = True,
    image_format: str = "tensor",
    quality: int = 90,
    jpeg_quality: int | None = None,
    sink: str = "parquet",
    consent_rules: tuple = DEFAULT_RULES,
    batch_size: int = 256,
    source_options: dict | None = None,
    num_threads: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    report: bool = True,
    progress: bool = False,
) -> PrepResult:
    """Runs the whole job (see the module docstring) and returns the manifest.

    Args:
        source: folder, tar shard(s) or Parquet (see :func:`open_source`), or
            any iterable of record batches with ``key``, ``source``, ``image``
            and ``caption`` columns.
        out_dir: output folder. It must not hold a run already unless
            ``resume`` (continue an interrupted run with the same settings and
            source: staged parts and written shards are kept) or ``overwrite``.
        image_format: ``"tensor"`` keeps pixels as a fixed-shape tensor column
            ``pixels``; ``"jpeg"`` / ``"webp"`` re-encode them at ``quality``
            (column ``jpg`` / ``webp``) with libjpeg-turbo / libwebp, which
            write no EXIF, XMP, IPTC, GPS or comments.
        sink: ``"parquet"`` shards, or ``"webdataset"`` tar shards (``key.jpg``
            or ``key.webp``, ``key.txt``, ``key.json``; implies JPEG unless
            ``"webp"`` is asked).
        opt_out_hashes: hex xxh3-128 (exact copy) or PDQ hashes (within
            ``opt_out_radius`` bits) of takedown requests.
        consent_rules: :class:`ConsentRule` s checked before any decoding.
        source_options: passed to :func:`parquet_source` (``image_column``,
            ``caption_column``, ``key_column``).
        report: write ``report.html`` (figures need ``fastprep[report]``).
        progress: show records/s and ETA on stderr.
    """
    if sink not in SINKS:
        raise ValueError(f"sink must be one of {SINKS}, got {sink!r}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if not 1 <= (jpeg_quality or quality) <= 100:
        raise ValueError("quality must be within 1-100")
    if records_per_shard < 1 or batch_size < 1 or row_group_size < 1:
        raise ValueError("records_per_shard, batch_size and row_group_size must be positive")
    quality = jpeg_quality or quality
    if sink == "webdataset" and image_format == "tensor":
        image_format = "jpeg"
    started = time.perf_counter()
    out = os.fspath(out_dir)
    from_path = isinstance(source, (str, os.PathLike))
    settings = {
        "source": os.path.abspath(os.fspath(source)) if from_path else "<batches>",
        "size": size,
        "mode": mode,
        "records_per_shard": records_per_shard,
        "row_group_size": row_group_size,
        "dedup_radius": dedup_radius,
        "min_quality": min_quality,
        "eval_source": os.fspath(eval_source)
        if isinstance(eval_source, (str, os.PathLike))
        else None,
        "eval_radius": eval_radius,
        "opt_out_hashes": sorted(h.strip().lower() for h in opt_out_hashes),
        "opt_out_radius": opt_out_radius,
        "normalizer": None
        if normalizer is None
        else {"canonical": sorted(normalizer.canonical), "stoplist": sorted(normalizer.stoplist)},
        "top_k": top_k,
        "min_count": min_count,
        "drop_unlabeled": drop_unlabeled,
        "image_format": image_format,
        "quality": quality,
        "sink": sink,
        "consent_rules": [vars(rule) for rule in consent_rules],
        "batch_size": batch_size,
        "source_options": source_options or {},
        "fastprep": fastprep.__version__,
    }
    settings = json.loads(json.dumps(settings))  # as it reads back from settings.json
    if (
        resume
        and os.path.exists(os.path.join(out, "manifest.json"))
        and not os.path.isdir(os.path.join(out, "_staging"))
    ):
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("resume_settings") == settings:
            return PrepResult(out, manifest)  # already complete
    os.makedirs(out, exist_ok=True)
    staging = _prepare_out_dir(out, settings, resume, overwrite)
    normalizer = normalizer or HashtagNormalizer()
    batches = (
        open_source(source, batch_size=batch_size, **(source_options or {}))
        if from_path
        else iter(source)
    )
    stage = ImageStage(size=size, mode=mode, hashes=("xxh3", "pdq"), num_threads=num_threads)

    first = _pass1(
        prefetch(batches),
        staging,
        stage,
        normalizer,
        consent_rules,
        resume,
        Progress(
            "prep 1/2 decode+hash", count_records(source) if from_path else None, enabled=progress
        ),
        num_threads,
    )
    state, n = first.state, first.state.num_rows
    keys = state.column("key")

    # Corpus-wide decisions: the first that applies to a record wins.
    decision = np.zeros(n, dtype=np.int8)
    reference = np.full(n, -1, dtype=np.int64)  # keeper / eval record
    opt_hit = _opt_out_matches(state, settings["opt_out_hashes"], opt_out_radius, num_threads)
    decision[opt_hit] = _OPT_OUT
    keeper = np.full(n, -1, dtype=np.int64)  # duplicate -> its keeper
    if n:
        first_copy = _first_occurrence(state.column("xxh3_128"))
        exact = first_copy != np.arange(n)
        keeper[exact] = first_copy[exact]
    pairs_table = None
    if dedup_radius is not None and n:
        # Low-quality PDQ hashes (flat images) match noise: left out.
        usable = np.flatnonzero(state.column("pdq_quality").to_numpy() >= min_quality)
        if len(usable) > 1:
            area = state.column("source_width").to_numpy().astype(np.uint64) * state.column(
                "source_height"
            ).to_numpy().astype(np.uint64)
            records, pairs_table = deduplicate(
                pc.take(state.column("pdq"), pa.array(usable)),
                dedup_radius,
                rank=area[usable],
                num_threads=num_threads,
            )
            local = records.column("duplicate_of")
            near = pc.is_valid(local).to_numpy(zero_copy_only=False)
            target = usable[near]
            chosen = usable[pc.fill_null(local, 0).to_numpy()[near]]
            # An exact copy keeps pointing at its first copy.
            free = keeper[target] < 0
            keeper[target[free]] = chosen[free]
            pairs_table = pairs_table.append_column(
                "key_a", pc.take(keys, pa.array(usable[pairs_table.column("a").to_numpy()]))
            ).append_column(
                "key_b", pc.take(keys, pa.array(usable[pairs_table.column("b").to_numpy()]))
            )
    is_dup = (keeper >= 0) & (decision == 0)
    decision[is_dup] = _DUPLICATE
    reference[is_dup] = keeper[is_dup]
    leaks = None
    eval_keys: list[str] = []
    if eval_source is not None and n:
        eval_batches = (
            open_source(eval_source) if isinstance(eval_source, (str, os.PathLike)) else eval_source
        )
        eval_pdq = []
        for batch in eval_batches:
            hashed = fastprep.hash_images(
                batch.column("image"), hashes=["pdq"], num_threads=num_threads
            )
            good = pc.is_null(hashed.column("error"))
            eval_keys.extend(pc.filter(batch.column("key"), good).to_pylist())
            eval_pdq.extend(pc.filter(hashed.column("pdq"), good).to_pylist())
        if eval_pdq:
            leaks = leak_report(
                state.column("pdq"),
                pa.array(eval_pdq, pa.binary(32)),
                eval_radius,
                train_keys=keys,
                eval_keys=eval_keys,
                num_threads=num_threads,
            )
            train = leaks.column("train_index").to_numpy()
            ev = leaks.column("eval_index").to_numpy()
            free = decision[train] == 0
            decision[train[free]] = _LEAK
            reference[train[free]] = ev[free]

    vocab = build_vocabulary(first.counts, top_k=top_k, min_count=min_count, normalizer=normalizer)
    save_vocabulary(vocab, os.path.join(out, "vocab.json"))
    counts_table = first.counts.to_arrow()
    _atomic_parquet(counts_table, os.path.join(out, "hashtag_counts.parquet"), row_group_size)

    # Pass 2: staged parts -> final shards (deterministic numbering).
    clusters = _cluster_members(np.where(decision == _DUPLICATE, reference, -1), top=12)
    wanted = {i for members in clusters for i in members}
    thumbnails: dict[int, np.ndarray] = {}
    image_column = {"tensor": "pixels", "jpeg": "jpg", "webp": "webp"}[image_format]
    shards: list[dict] = []
    pending: list[pa.Table] = []
    pending_rows = 0
    labels_per_record: Counter = Counter()
    labeled = considered = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if not pending_rows:
            return
        suffix = "tar" if sink == "webdataset" else "parquet"
        name = f"shard-{len(shards):05d}.{suffix}"
        path = os.path.join(out, name)
        if not (resume and os.path.exists(path)):  # a resumed run keeps finished shards
            table = pa.concat_tables(pending)
            if image_format != "tensor":
                pixels = table.column("pixels")
                encoded = _core.encode_images(
                    pa.chunked_array(
                        [c.storage for c in pixels.chunks], type=pixels.type.storage_type
                    ),
                    size,
                    size,
                    image_format,
                    quality,
                    num_threads,
                )
                table = table.drop_columns(["pixels"]).append_column(image_column, encoded)
            if sink == "webdataset":
                _atomic_tar(table, path, image_column)
            else:
                _atomic_parquet(table, path, row_group_size)
        shards.append({"file": name, "records": pending_rows})
        pending, pending_rows = [], 0

    staged = sorted(glob.glob(os.path.join(staging, "part-*[0-9].parquet")))
    # Batches may carry different metadata columns: every shard gets them all.
    schema = pa.unify_schemas([pq.read_schema(path) for path in staged]) if staged else None
    progress2 = Progress("prep 2/2 write", n, enabled=progress)
    offset = 0
    extra_drops: list[pa.Table] = []
    for path in staged:
        table = _conform(pq.read_table(path), schema)
        rows = np.arange(offset, offset + table.num_rows)
        offset += table.num_rows
        if wanted:
            hit = [r for r in rows if int(r) in wanted]
            if hit:
                pixels = table.column("pixels").combine_chunks().to_numpy_ndarray()
                for r in hit:
                    thumbnails[int(r)] = pixels[r - rows[0]]
        keep = decision[rows] == 0
        labels = fastprep.label_captions(table.column("caption"), vocab)
        has_label = labels.column("has_label").to_numpy(zero_copy_only=False)
        considered += int(keep.sum())
        labeled += int((keep & has_label).sum())
        if drop_unlabeled:
            unlabeled = keep & ~has_label
            decision[rows[unlabeled]] = _NO_LABEL
            keep &= ~unlabeled
        table = table.append_column("labels", labels.column("labels")).append_column(
            "num_labels", labels.column("num_labels")
        )
        table = table.filter(pa.array(keep))
        labels_per_record.update(table.column("num_labels").to_numpy().tolist())
        start = 0
        while start < table.num_rows:
            take = min(records_per_shard - pending_rows, table.num_rows - start)
            pending.append(table.slice(start, take))
            pending_rows += take
            start += take
            if pending_rows >= records_per_shard:
                flush()
        progress2.update(len(rows))
    flush()
    progress2.close()
    assert offset == n, "staged parts and corpus state disagree"

    # Every corpus-level drop gets its reason string.
    dropped_rows = np.flatnonzero(decision != 0)
    reason_text = []
    for i in dropped_rows:
        code, ref = decision[i], reference[i]
        if code == _OPT_OUT:
            reason_text.append("opt_out_list")
        elif code == _DUPLICATE:
            reason_text.append(f"duplicate_of: {keys[int(ref)].as_py()}")
        elif code == _LEAK:
            reason_text.append(f"eval_leak: {eval_keys[int(ref)]}")
        else:
            reason_text.append("no_label")
    extra_drops.append(
        _drop_table(
            pc.take(keys, pa.array(dropped_rows, pa.int64())),
            pc.take(state.column("source"), pa.array(dropped_rows, pa.int64())),
            reason_text,
        )
    )
    dropped_table = pa.concat_tables([first.dropped, *extra_drops])
    _atomic_parquet(dropped_table, os.path.join(out, "dropped.parquet"), row_group_size)
    reasons = Counter(r.split(":")[0] for r in dropped_table.column("reason").to_pylist())
    if pairs_table is not None:
        _atomic_parquet(pairs_table, os.path.join(out, "duplicate_pairs.parquet"), row_group_size)
    if leaks is not None:
        _atomic_parquet(leaks, os.path.join(out, "eval_leaks.parquet"), row_group_size)
    written = sum(s["records"] for s in shards)
    elapsed = time.perf_counter() - started
    manifest = {
        "fastprep": fastprep.__version__,
        "versions": {"pyarrow": pa.__version__, "numpy": np.__version__},
        "source": settings["source"],
        "settings": {k: v for k, v in settings.items() if k not in ("source", "fastprep")},
        "outputs": shards,
        "vocabulary": {"file": "vocab.json", "size": len(vocab)},
        "tables": {
            "hashtag_counts": "hashtag_counts.parquet",
            "dropped": "dropped.parquet",
            "duplicate_pairs": "duplicate_pairs.parquet" if pairs_table is not None else None,
            "eval_leaks": "eval_leaks.parquet" if leaks is not None else None,
        },
        "totals": {
            "input": first.total,
            "written": written,
            "dropped": dict(sorted(reasons.items())),
        },
        "seconds": round(elapsed, 3),
        "records_per_second": round(first.total / elapsed, 1) if elapsed else None,
        "resume_settings": settings,
    }
    if first.total != written + sum(reasons.values()):
        raise AssertionError(f"accounting mismatch: {manifest['totals']}")
    if report:
        manifest["report"] = _write_report(
            out,
            manifest,
            counts_table,
            vocab,
            {
                "records": considered,
                "labeled": labeled,
                "labels_per_record": [
                    labels_per_record.get(k, 0)
                    for k in range(max(labels_per_record, default=0) + 1)
                ],
            },
            [
                {
                    "keeper": keys[m[0]].as_py(),
                    "members": [keys[i].as_py() for i in m],
                    "thumbnails": [thumbnails[i] for i in m if i in thumbnails],
                }
                for m in clusters
            ],
            leaks,
        )
    _atomic_json(manifest, os.path.join(out, "manifest.json"))
    shutil.rmtree(staging, ignore_errors=True)
    return PrepResult(out, manifest)


def _write_report(
    out: str,
    manifest: dict,
    counts: pa.Table,
    vocab: Any,
    coverage: dict,
    clusters: list[dict],
    leaks: pa.Table | None,
) -> str | None:
    """Writes report.html; returns its name (relative to ``out``)."""
    from fastprep.pipeline.report import write_report

    in_vocab = set(vocab.tags)
    occurrences = counts.column("occurrences").to_numpy()
    mask = np.array([t in in_vocab for t in counts.column("tag").to_pylist()], dtype=bool)
    coverage = coverage | {
        "vocab_size": len(vocab),
        "occurrences_in_vocab": int(occurrences[mask].sum()) if len(mask) else 0,
        "occurrences_total": int(occurrences.sum()),
    }
    path = write_report(
        out, manifest=manifest, counts=counts, coverage=coverage, clusters=clusters, leaks=leaks
    )
    return os.path.relpath(path, out)
