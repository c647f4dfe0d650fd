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

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import fastprep
from fastprep.dedup import deduplicate, leak_report
from fastprep.hashtags import (
    HashtagCounts,
    HashtagNormalizer,
    build_vocabulary,
    save_vocabulary,
)
from fastprep.pipeline.job import (
    DUPLICATE,
    LEAK,
    NO_LABEL,
    OPT_OUT,
    SHARD_SUFFIX,
    STAGED_SUFFIX,
    STATE_COLUMNS,
    PrepResult,
    ResumeMismatchError,
    arrow_schema,
    atomic_arrow,
    atomic_json,
    atomic_parquet,
    check_options,
    conform,
    drop_table,
    finish_run,
    job_settings,
    opt_out_matches,
    prepare_out_dir,
    process_part,
    read_arrow,
    reason_text,
    write_shard,
)
from fastprep.pipeline.progress import Progress
from fastprep.pipeline.sources import count_records, open_source, prefetch
from fastprep.pipeline.stages import DEFAULT_RULES, ImageStage


def _keys_digest(keys: pa.Array | pa.ChunkedArray) -> str:
    """Fingerprint of a batch's keys: resume checks the source is unchanged."""
    joined = "\x00".join("" if k is None else k for k in keys.to_pylist()).encode()
    return hashlib.blake2b(joined, digest_size=16).hexdigest()


@dataclass
class _Pass1:
    """What pass 1 leaves in memory: per staged record, its key and hashes
    (Arrow arrays, ~100 bytes a record), plus the dropped records."""

    total: int
    state: pa.Table
    dropped: pa.Table
    counts: HashtagCounts
    parts: list[str]  # staged files of this run's source, in order


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
    parts: list[str] = []
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
            staged = read_arrow(base + STAGED_SUFFIX) if done["staged"] else None
            dropped = read_arrow(base + ".dropped" + STAGED_SUFFIX)
        else:
            staged, dropped = process_part(batch, stage, normalizer, consent_rules)
            if staged is not None:
                atomic_arrow(staged, base + STAGED_SUFFIX)
            atomic_arrow(dropped, base + ".dropped" + STAGED_SUFFIX)
            # The marker goes last: a part without it is redone on resume.
            atomic_json(
                {"input": batch.num_rows, "keys": digest, "staged": staged is not None},
                base + ".done",
            )
        total += batch.num_rows
        drops.append(dropped)
        if staged is not None:
            parts.append(base + STAGED_SUFFIX)
            states.append(staged.select(list(STATE_COLUMNS)))
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
    dropped = pa.concat_tables(drops).combine_chunks() if drops else drop_table([], [], [])
    return _Pass1(total, state, dropped, counts, parts)


def _first_occurrence(hashes: pa.Array | pa.ChunkedArray, prefer: np.ndarray) -> np.ndarray:
    """For each fixed-size binary hash, the keeper of its copies: the first
    copy with ``prefer`` set, else the first copy."""
    if isinstance(hashes, pa.ChunkedArray):
        hashes = hashes.combine_chunks()
    width = hashes.type.byte_width
    raw = np.frombuffer(hashes.buffers()[1], dtype=np.uint8)
    rows = raw[hashes.offset * width : (hashes.offset + len(hashes)) * width].reshape(-1, width)
    _, group = np.unique(rows, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.lexsort((np.arange(len(group)), ~prefer, group))
    leaders = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    keeper_of_group = np.empty(group.max() + 1 if len(group) else 0, dtype=np.int64)
    keeper_of_group[group[leaders]] = leaders
    return keeper_of_group[group]


def _has_label(parts: list[str], vocab: Any, n: int) -> np.ndarray:
    """Which staged records get a vocabulary label (captions only)."""
    has = np.zeros(n, dtype=bool)
    offset = 0
    for path in parts:
        captions = read_arrow(path, columns=["caption"]).column("caption")
        labels = fastprep.label_captions(captions, vocab)
        has[offset : offset + len(captions)] = labels.column("has_label").to_numpy(
            zero_copy_only=False
        )
        offset += len(captions)
    return has


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
        sink: ``"parquet"`` shards, ``"arrow"`` (Arrow IPC files: the fastest to
            write, memory-mapped by readers, pixels kept as tensors), or
            ``"webdataset"`` tar shards (``key.jpg``
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
    quality = jpeg_quality or quality
    image_format = check_options(
        sink, image_format, quality, records_per_shard, batch_size, row_group_size
    )
    started = time.perf_counter()
    out = os.fspath(out_dir)
    from_path = isinstance(source, (str, os.PathLike))
    settings = job_settings(
        os.path.abspath(os.fspath(source)) if from_path else "<batches>",
        size=size,
        mode=mode,
        records_per_shard=records_per_shard,
        row_group_size=row_group_size,
        dedup_radius=dedup_radius,
        min_quality=min_quality,
        eval_source=eval_source,
        eval_radius=eval_radius,
        opt_out_hashes=opt_out_hashes,
        opt_out_radius=opt_out_radius,
        normalizer=normalizer,
        top_k=top_k,
        min_count=min_count,
        drop_unlabeled=drop_unlabeled,
        image_format=image_format,
        quality=quality,
        sink=sink,
        consent_rules=consent_rules,
        batch_size=batch_size,
        source_options=source_options,
    )
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
    staging = prepare_out_dir(out, settings, resume, overwrite)
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
    vocab = build_vocabulary(first.counts, top_k=top_k, min_count=min_count, normalizer=normalizer)
    # Keepers are chosen among records that will be written: a duplicate group
    # whose first copy has no label keeps a labelled copy instead.
    labelled = _has_label(first.parts, vocab, n) if drop_unlabeled else np.ones(n, dtype=bool)

    # Corpus-wide decisions: the first that applies to a record wins.
    decision = np.zeros(n, dtype=np.int8)
    reference = np.full(n, -1, dtype=np.int64)  # keeper / eval record
    opt_hit = opt_out_matches(state, settings["opt_out_hashes"], opt_out_radius, num_threads)
    decision[opt_hit] = OPT_OUT
    keeper = np.full(n, -1, dtype=np.int64)  # duplicate -> its keeper
    if n:
        first_copy = _first_occurrence(state.column("xxh3_128"), labelled)
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
            # Keeper: labelled first, then the largest, then the earliest.
            rank = area | (labelled.astype(np.uint64) << np.uint64(62))
            records, pairs_table = deduplicate(
                pc.take(state.column("pdq"), pa.array(usable)),
                dedup_radius,
                rank=rank[usable],
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
    decision[is_dup] = DUPLICATE
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
            decision[train[free]] = LEAK
            reference[train[free]] = ev[free]

    save_vocabulary(vocab, os.path.join(out, "vocab.json"))
    counts_table = first.counts.to_arrow()
    atomic_parquet(counts_table, os.path.join(out, "hashtag_counts.parquet"), row_group_size)

    # Pass 2: staged parts -> final shards (deterministic numbering).
    clusters = _cluster_members(np.where(decision == DUPLICATE, reference, -1), top=12)
    wanted = {i for members in clusters for i in members}
    thumbnails: dict[int, np.ndarray] = {}
    shards: list[dict] = []
    pending: list[pa.Table] = []
    pending_rows = 0
    labels_per_record: Counter = Counter()
    labeled = considered = 0

    # A shard is encoded and written in a background thread (Arrow and the
    # encoders release the GIL) while the next one is assembled.
    writers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastprep-shard")
    in_flight: list[Future] = []

    def flush() -> None:
        nonlocal pending, pending_rows
        if not pending_rows:
            return
        name = f"shard-{len(shards):05d}.{SHARD_SUFFIX[sink]}"
        path = os.path.join(out, name)
        if not (resume and os.path.exists(path)):  # a resumed run keeps finished shards
            while in_flight:  # bounded memory: one shard written while the next fills
                in_flight.pop(0).result()
            in_flight.append(
                writers.submit(
                    write_shard,
                    pa.concat_tables(pending),
                    path,
                    sink=sink,
                    image_format=image_format,
                    size=size,
                    quality=quality,
                    row_group_size=row_group_size,
                    num_threads=num_threads,
                )
            )
        shards.append({"file": name, "records": pending_rows})
        pending, pending_rows = [], 0

    try:
        staged = first.parts  # not a glob: a resumed source may have shrunk
        # Batches may carry different metadata columns: every shard gets them all.
        schema = pa.unify_schemas([arrow_schema(path) for path in staged]) if staged else None
        progress2 = Progress("prep 2/2 write", n, enabled=progress)
        offset = 0
        extra_drops: list[pa.Table] = []
        for path in staged:
            table = conform(read_arrow(path), schema)
            rows = np.arange(offset, offset + table.num_rows)
            offset += table.num_rows
            if wanted:
                hit = [int(r) for r in rows if int(r) in wanted]
                if hit:  # copy just these rows' pixels, not the part's
                    local = pa.array(np.array(hit) - int(rows[0]), pa.int64())
                    pixels = pc.take(table.column("pixels"), local).combine_chunks()
                    for r, image in zip(hit, pixels.to_numpy_ndarray()):
                        thumbnails[r] = image
            keep = decision[rows] == 0
            labels = fastprep.label_captions(table.column("caption"), vocab)
            has_label = labels.column("has_label").to_numpy(zero_copy_only=False)
            considered += int(keep.sum())
            labeled += int((keep & has_label).sum())
            if drop_unlabeled:
                unlabeled = keep & ~has_label
                decision[rows[unlabeled]] = NO_LABEL
                keep &= ~unlabeled
            table = table.append_column("labels", labels.column("labels")).append_column(
                "num_labels", labels.column("num_labels")
            )
            if not keep.all():  # a part kept whole stays a view of the mapped file
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
        for job in in_flight:
            job.result()  # re-raises a writer's error here
    finally:
        # Also on errors and Ctrl-C: no write goes on after prep returns.
        writers.shutdown(wait=True, cancel_futures=True)
    progress2.close()
    assert offset == n, "staged parts and corpus state disagree"

    # Every corpus-level drop gets its reason string.
    dropped_rows = np.flatnonzero(decision != 0)
    names = [
        keys[int(reference[i])].as_py()
        if decision[i] == DUPLICATE
        else eval_keys[int(reference[i])]
        if decision[i] == LEAK
        else None
        for i in dropped_rows
    ]
    reasons = [reason_text(int(decision[i]), name) for i, name in zip(dropped_rows, names)]
    extra_drops.append(
        drop_table(
            pc.take(keys, pa.array(dropped_rows, pa.int64())),
            pc.take(state.column("source"), pa.array(dropped_rows, pa.int64())),
            reasons,
        )
    )
    manifest = finish_run(
        out,
        settings,
        total=first.total,
        shards=shards,
        vocab_size=len(vocab),
        dropped=pa.concat_tables([first.dropped, *extra_drops]),
        pairs=pairs_table,
        leaks=leaks,
        seconds=time.perf_counter() - started,
        row_group_size=row_group_size,
        extra={"resume_settings": settings},
    )
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
    atomic_json(manifest, os.path.join(out, "manifest.json"))
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
