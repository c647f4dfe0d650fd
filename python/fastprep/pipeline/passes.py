"""The per-part steps of a prep run, the same on every engine: each is a
plain function of picklable arguments, run by an engine wherever it runs
things (a thread here, a Ray task, a Spark task) on files under the run's
``_staging`` folder (a path every worker can reach).

* :func:`stage_part` (pass 1): consent filter, decode + resize + hash,
  hashtags; stages the part as Arrow IPC with a ``.done`` marker written
  last, so a resumed run skips it.
* :func:`label_part`: vocabulary labels per staged record.
* :func:`write_planned_shard` (pass 2): one final shard from pieces of
  staged parts; a resumed run keeps shards already written.
* :func:`hash_eval_part`: the eval set's PDQ hashes.
* :func:`stream_part` (single pass): pass 1's work on one source batch plus
  its labels, returned to the driver (no pixels staged), which decides and
  writes shards from it (:func:`write_shard_table`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep import distributed
from fastprep.errors import ResumeMismatchError
from fastprep.hashtags import HashtagCounts, HashtagNormalizer, Vocabulary, label_captions
from fastprep.images import hash_images
from fastprep.pipeline.decisions import ShardPlan, decode_reason
from fastprep.pipeline.io import (
    STAGED_SUFFIX,
    atomic_arrow,
    atomic_json,
    conform,
    read_arrow,
    write_shard,
)
from fastprep.pipeline.outputs import DROP_SCHEMA, drop_table
from fastprep.pipeline.settings import ENCODER, PrepSettings, ShardSpec
from fastprep.pipeline.stages import ImageStage, consent_reasons, hashtag_stage
from fastprep.privacy.accounts import account_consent
from fastprep.privacy.shards import PrivacySpec, privatize

#: Per staged record, what the driver keeps for the corpus-wide decisions
#: (~100 bytes a record).
STATE_SCHEMA = pa.schema(
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


#: Columns prep computes itself: a source that has them (a prep output read
#: again, e.g. its WebDataset JSON) has them recomputed, not duplicated.
RECOMPUTED = (
    "xxh3_128", "pdq", "pdq_quality", "hashtags", "labels", "num_labels", "warnings",
)  # fmt: skip


def as_batch(data: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
    """One record batch (zero-copy when every column has a single chunk)."""
    if isinstance(data, pa.RecordBatch):
        return data
    data = data.combine_chunks()
    batches = data.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=data.schema)


def part_path(staging: str, part: int) -> str:
    return os.path.join(staging, f"part-{part:06d}{STAGED_SUFFIX}")


def _keys_digest(keys: pa.Array | pa.ChunkedArray) -> str:
    """Fingerprint of a batch's keys: resume checks the source is unchanged."""
    joined = "\x00".join("" if k is None else k for k in keys.to_pylist()).encode()
    return hashlib.blake2b(joined, digest_size=16).hexdigest()


# ---------------------------------------------------------------------- pass 1


@dataclass(frozen=True)
class PassContext:
    """What every per-part step needs (sent once to each task)."""

    staging: str
    settings: PrepSettings
    resume: bool = False
    num_threads: int | None = None
    source_name: str = "<batches>"
    #: Single pass, resumed: parts before this one were decided before the
    #: interruption and are only fingerprinted (the driver replays them).
    resume_from: int = 0


@dataclass
class PartResult:
    """What pass 1 returns to the driver for one part."""

    part: int
    input: int
    staged: bool
    state: pa.Table
    dropped: pa.Table
    counts: bytes
    #: Single pass: the processed records with ``labels`` and ``num_labels``.
    table: pa.Table | None = None
    #: Single pass: the fingerprint of the source batch's keys (resume checks it).
    keys: str = ""


def process_part(
    batch: pa.RecordBatch,
    stage: ImageStage,
    normalizer: HashtagNormalizer,
    consent_rules: tuple,
    on_damaged: str = "keep",
) -> tuple[pa.Table | None, pa.Table]:
    """One source batch -> (staged records or None, dropped records). Images
    that decoded with warnings are dropped as ``damaged`` when
    ``on_damaged="drop"``, else kept with their ``warnings``."""
    reasons = consent_reasons(batch, consent_rules)
    if "record_error" in batch.schema.names:
        # Unreadable metadata (consent unknown: never kept blind) or an
        # unreadable part of the source: dropped with the source's reason.
        errors = batch.column("record_error").to_numpy(zero_copy_only=False)
        bad = np.array([e is not None for e in errors], dtype=bool)
        reasons[bad] = errors[bad]
        batch = batch.drop_columns(["record_error"])
    refused = pa.array(np.flatnonzero(reasons != None), pa.int64())  # noqa: E711 (elementwise)
    drops = [
        drop_table(
            pc.take(batch.column("key"), refused),
            pc.take(batch.column("source"), refused),
            reasons[refused.to_numpy()],
        )
    ]
    consented = batch.filter(pa.array(reasons == None))  # noqa: E711
    if consented.num_rows == 0:
        return None, drops[0]
    processed = stage(consented)
    failed = pc.is_valid(processed.column("error"))
    bad = processed.filter(failed)
    kinds = (
        bad.column("error_kind").to_pylist()
        if "error_kind" in bad.schema.names
        else [None] * bad.num_rows
    )
    why = [decode_reason(e, k) for e, k in zip(bad.column("error").to_pylist(), kinds)]
    drops.append(drop_table(bad.column("key"), bad.column("source"), why))
    ok = processed.filter(pc.invert(failed))
    if on_damaged == "drop" and "warnings" in ok.schema.names:
        damaged = pc.is_valid(ok.column("warnings"))
        hurt = ok.filter(damaged)
        why = [f"damaged: {', '.join(w)}" for w in hurt.column("warnings").to_pylist()]
        drops.append(drop_table(hurt.column("key"), hurt.column("source"), why))
        ok = ok.filter(pc.invert(damaged))
    if ok.num_rows == 0:
        return None, pa.concat_tables(drops)
    table = pa.Table.from_batches([ok]).append_column("hashtags", hashtag_stage(ok, normalizer))
    errors = [n for n in ("error", "error_kind") if n in table.schema.names]
    return table.drop_columns(errors), pa.concat_tables(drops)


def image_stage(settings: PrepSettings, num_threads: int | None) -> ImageStage:
    """Pass 1's image stage for the settings' store: staged parts hold what
    will be written (encoded bytes for an encoded output, the stripped source
    bytes for an original store, pixels otherwise)."""
    hashes = ("xxh3", "pdq")
    encoder = ENCODER.get(settings.image_format, settings.image_format)
    encode = (encoder, settings.quality, settings.subsampling)
    if settings.store == "original":
        return ImageStage(hashes=hashes, num_threads=num_threads, keep_source=True, size=None)
    if settings.store == "resized":
        sides = {"short_side": settings.short_side, "max_side": settings.max_side}
        return ImageStage(size=None, hashes=hashes, num_threads=num_threads, extra=sides,
                          encode=encode)  # fmt: skip
    return ImageStage(
        size=settings.size, mode=settings.mode, hashes=hashes, num_threads=num_threads,
        encode=encode if settings.encode_in_pass1 else None,
    )  # fmt: skip


def _staged_or_done(context: PassContext, part: int, batch: pa.RecordBatch):
    """The part's staged records and drops: read back when a resumed run
    finished it (its ``.done`` marker exists), else computed and staged."""
    base = part_path(context.staging, part)[: -len(STAGED_SUFFIX)]
    digest = _keys_digest(batch.column("key"))
    if context.resume and os.path.exists(base + ".done"):
        with open(base + ".done", encoding="utf-8") as f:
            done = json.load(f)
        if done["keys"] != digest or done["input"] != batch.num_rows:
            raise ResumeMismatchError(
                f"cannot resume: source batch {part} differs from the interrupted run's"
            )
        staged = read_arrow(base + STAGED_SUFFIX) if done["staged"] else None
        return staged, read_arrow(base + ".dropped" + STAGED_SUFFIX)
    staged, dropped = _processed(context, batch)
    if staged is not None:
        atomic_arrow(staged, base + STAGED_SUFFIX)
    atomic_arrow(dropped, base + ".dropped" + STAGED_SUFFIX)
    # The marker goes last: a part without it is redone on resume.
    marker = {"input": batch.num_rows, "keys": digest, "staged": staged is not None}
    atomic_json(marker, base + ".done")
    return staged, dropped


def _processed(context: PassContext, batch: pa.RecordBatch) -> tuple[pa.Table | None, pa.Table]:
    """Account consent, then :func:`process_part`: the batch's records to
    keep (None if none) and its drops."""
    settings = context.settings
    stage = image_stage(settings, context.num_threads)
    batch, account_drops = account_consent(batch, settings)  # before any decoding
    staged, dropped = process_part(
        batch, stage, settings.hashtag_normalizer, settings.consent_rules, settings.on_damaged
    )
    if account_drops is not None:
        dropped = pa.concat_tables([account_drops, dropped])
    return staged, dropped


def _source_batch(context: PassContext, data: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
    """A source batch with prep's own columns dropped and ``source`` set."""
    batch = as_batch(data)
    if "_row" in batch.schema.names:  # numbering of earlier releases' Ray datasets
        batch = batch.drop_columns(["_row"])
    recomputed = [n for n in RECOMPUTED if n in batch.schema.names]
    if recomputed:  # a prepared shard read again: its hashes and labels are redone
        batch = batch.drop_columns(recomputed)
    if "source" not in batch.schema.names:
        names = pa.array([context.source_name] * batch.num_rows, pa.string())
        batch = batch.append_column("source", names)
    return batch


def stage_part(context: PassContext, part: int, data: pa.Table | pa.RecordBatch) -> PartResult:
    """Pass 1 on one source batch (see the module docstring)."""
    batch = _source_batch(context, data)
    staged, dropped = _staged_or_done(context, part, batch)
    return _part_result(context, part, batch.num_rows, staged, dropped)


def stream_part(
    context: PassContext, vocab_json: str, part: int, data: pa.Table | pa.RecordBatch
) -> PartResult:
    """Single pass on one source batch: pass 1's work and the labels of the
    given vocabulary, returned with the records instead of staged."""
    batch = _source_batch(context, data)
    digest = _keys_digest(batch.column("key"))
    if part < context.resume_from:  # decided before the interruption: replayed
        empty = DROP_SCHEMA.empty_table()
        return PartResult(part, batch.num_rows, False, STATE_SCHEMA.empty_table(), empty, b"",
                          keys=digest)  # fmt: skip
    staged, dropped = _processed(context, batch)
    result = _part_result(context, part, batch.num_rows, staged, dropped)
    result.keys = digest
    if staged is not None:
        labels = label_captions(
            staged.column("caption"), _vocabulary(vocab_json), num_threads=context.num_threads
        )
        result.table = staged.append_column("labels", labels.column("labels")).append_column(
            "num_labels", labels.column("num_labels")
        )
    return result


def _part_result(
    context: PassContext, part: int, rows: int, staged: pa.Table | None, dropped: pa.Table
) -> PartResult:
    counts = b""
    state = STATE_SCHEMA.empty_table()
    if staged is not None:
        normalizer = context.settings.hashtag_normalizer
        counts = distributed.partial_counts(
            staged.column("caption"), normalizer, context.num_threads
        )
        state = staged.select(STATE_SCHEMA.names).cast(STATE_SCHEMA)
    return PartResult(part, rows, staged is not None, state, dropped.cast(DROP_SCHEMA), counts)


@dataclass
class PassTotals:
    """What pass 1 (or a single pass) leaves on the driver: per staged record its key and hashes
    (~100 bytes a record), the dropped records and the hashtag counts."""

    total: int = 0
    parts: list[str] = field(default_factory=list)  # staged files, in input order
    part_rows: list[int] = field(default_factory=list)
    states: list[pa.Table] = field(default_factory=list)
    drops: list[pa.Table] = field(default_factory=list)
    counts: HashtagCounts = field(default_factory=HashtagCounts)

    def add(self, result: PartResult, staging: str) -> None:
        self.total += result.input
        self.drops.append(result.dropped)
        if result.staged:
            self.parts.append(part_path(staging, result.part))
            self.part_rows.append(result.state.num_rows)
            self.states.append(result.state)
            self.counts.merge(distributed.merge_counts([result.counts]))

    def state(self) -> pa.Table:
        if not self.states:
            return STATE_SCHEMA.empty_table()
        return pa.concat_tables(self.states).combine_chunks()

    def dropped(self) -> pa.Table:
        return pa.concat_tables(self.drops) if self.drops else DROP_SCHEMA.empty_table()


# ---------------------------------------------------------------------- labels


@lru_cache(maxsize=2)
def _vocabulary(vocab_json: str) -> Vocabulary:
    return Vocabulary.from_json(vocab_json)


@dataclass(frozen=True)
class LabelContext:
    vocab_json: str
    num_threads: int | None = None


def label_part(context: LabelContext, path: str) -> np.ndarray:
    """Vocabulary labels per record of one staged part."""
    captions = read_arrow(path, columns=["caption"]).column("caption")
    labels = label_captions(
        captions, _vocabulary(context.vocab_json), num_threads=context.num_threads
    )
    return labels.column("num_labels").to_numpy(zero_copy_only=False).astype(np.int32)


# ---------------------------------------------------------------------- pass 2


@dataclass(frozen=True)
class WriteContext:
    out: str
    parts: tuple[str, ...]  # staged part files, by part number
    schema: pa.Schema  # every part's columns (batches may carry different metadata)
    spec: ShardSpec
    vocab_json: str
    resume: bool = False
    num_threads: int | None = None
    privacy: PrivacySpec = field(default_factory=PrivacySpec)


def rows_of(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The given rows (ascending) of a part: each contiguous run a slice, so
    pixels stay where they are (a mapped staged file, a decoded batch); rows
    so scattered that the runs would be tiny chunks are gathered instead."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return table.slice(0, 0)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    if len(breaks) + 1 > max(1, len(rows) // 8):
        return table.take(pa.array(rows, pa.int64()))
    starts, ends = np.r_[0, breaks], np.r_[breaks, len(rows)]
    runs = [table.slice(int(rows[a]), int(b - a)) for a, b in zip(starts, ends)]
    return runs[0] if len(runs) == 1 else pa.concat_tables(runs)


def write_planned_shard(context: WriteContext, plan: ShardPlan) -> dict:
    """One final shard: the planned pieces, labelled, in the sink's format."""
    name = context.spec.shard_name(plan.index)
    path = os.path.join(context.out, name)
    # The shard's privacy and damage counts are staged before it is written:
    # a resumed run that keeps the shard reads them back.
    stats_path = os.path.join(context.out, "_staging", name + ".privacy.json")
    if context.resume and os.path.exists(path) and os.path.exists(stats_path):
        with open(stats_path, encoding="utf-8") as f:
            saved = json.load(f)
        return {"file": name, "records": plan.records, **saved}
    vocab = _vocabulary(context.vocab_json)
    tables = []
    for piece in plan.pieces:
        table = rows_of(conform(read_arrow(context.parts[piece.part]), context.schema), piece.rows)
        labels = label_captions(table.column("caption"), vocab, num_threads=context.num_threads)
        table = table.append_column("labels", labels.column("labels"))
        tables.append(table.append_column("num_labels", labels.column("num_labels")))
    return write_shard_table(context, plan.index, pa.concat_tables(tables))


def write_shard_table(context: WriteContext, index: int, table: pa.Table) -> dict:
    """Shard ``index`` from labelled records: privacy stages, then the
    sink's format; its privacy and damage counts are staged first (a
    resumed run that keeps the shard reads them back)."""
    name = context.spec.shard_name(index)
    stats_path = os.path.join(context.out, "_staging", name + ".privacy.json")
    table, stats, boxes = privatize(table, context.privacy, context.num_threads)
    if "faces" in stats:
        keys = table.column("key").to_pylist()
        stats["faces"]["examples"] = [k for k, b in zip(keys, boxes) if b][:4]
    saved = {"privacy": stats, "damaged": damaged_counts(table)}
    os.makedirs(os.path.dirname(stats_path), exist_ok=True)
    atomic_json(saved, stats_path)
    vocab = _vocabulary(context.vocab_json)
    path = os.path.join(context.out, name)
    write_shard(table, path, context.spec, context.num_threads, list(vocab.tags))
    return {"file": name, "records": table.num_rows, **saved}


def damaged_counts(table: pa.Table) -> dict[str, int]:
    """Written records per decoder warning (a record may carry several)."""
    if "warnings" not in table.schema.names or not pa.types.is_list(
        table.schema.field("warnings").type
    ):
        return {}
    warnings = pc.list_flatten(table.column("warnings"))
    if len(warnings) == 0:
        return {}
    counts = pc.value_counts(warnings).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


# ---------------------------------------------------------------------- eval set


def hash_eval_part(
    num_threads: int | None, data: pa.Table | pa.RecordBatch
) -> tuple[list[str], pa.Array]:
    """Keys and PDQ hashes of one eval batch's decodable images."""
    batch = as_batch(data)
    hashed = hash_images(batch.column("image"), hashes=["pdq"], num_threads=num_threads)
    good = pc.is_null(hashed.column("error"))
    keys = pc.filter(batch.column("key"), good).cast(pa.string()).to_pylist()
    return keys, pc.filter(hashed.column("pdq"), good)
