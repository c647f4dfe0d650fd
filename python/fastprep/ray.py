"""fastprep on Ray Data: the pipeline stages as ``map_batches`` callables,
distributed hashtag counting, sharded near-duplicate search, eval-leak
checks and the whole ``prep`` job (:func:`prep_ray`).

Install with ``pip install 'fastprep[ray]'``. ``import fastprep`` never
imports Ray; this module does, and says how to install it when it is missing.

Every stage takes and returns ``pyarrow`` tables (``batch_format="pyarrow"``)
and sizes fastprep's Rust thread pool to the CPUs Ray granted the task or
actor (``num_cpus=`` of ``map_batches``), never to the machine's CPU count::

    import ray
    import fastprep.ray as fpr

    ray.init(address="auto")
    ds = ray.data.read_parquet("s3://bucket/photos/")        # key, jpg, caption
    ds = ds.map_batches(
        fpr.DecodeImages,
        fn_constructor_kwargs={"size": 224, "image_column": "jpg"},
        batch_format="pyarrow", batch_size=256, concurrency=8, num_cpus=4,
    )
    for batch in ds.iter_torch_batches(batch_size=256):
        ...                                                   # batch["pixels"]: uint8 [B,224,224,3]

Pixel columns stay ``arrow.fixed_shape_tensor`` through Ray (through
``map_batches`` with ``batch_format="pyarrow"``, block concatenation, the
object store, ``write_parquet``/``read_parquet``); Ray's numpy and torch
iterators read them as ``[B, H, W, 3]`` arrays (``tests/test_ray.py``
checks all of these). A UDF of yours that returns numpy batches makes Ray
build its own ``ArrowTensorTypeV2`` column instead (Ray 2.60's default
``DataContext.arrow_fixed_shape_tensor_format``): convert it back with
:func:`to_fixed_shape_tensor`, or set that option to
``ray.data._internal.tensor_extensions.arrow.FixedShapeTensorFormat.ARROW_NATIVE``
(Arrow's type, without fastprep's ``H, W, C`` dimension names).
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - exercised with ray hidden
    raise ImportError(
        "fastprep.ray needs Ray Data, which is not installed: pip install 'fastprep[ray]' "
        "(or pip install 'ray[data]')"
    ) from exc

import fastprep
from fastprep import distributed
from fastprep.hashtags import (
    HashtagCounts,
    HashtagNormalizer,
    Vocabulary,
    build_vocabulary,
    label_captions,
    save_vocabulary,
)
from fastprep.pipeline import PrepResult, open_source
from fastprep.pipeline.job import (
    DUPLICATE,
    LEAK,
    NO_LABEL,
    OPT_OUT,
    SHARD_SUFFIX,
    STAGED_SUFFIX,
    STATE_COLUMNS,
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
from fastprep.pipeline.stages import DEFAULT_RULES, ImageStage, consent_reasons

__all__ = [
    "ConsentFilter",
    "CountHashtags",
    "DecodeImages",
    "ExtractHashtags",
    "LabelCaptions",
    "assigned_cpus",
    "count_hashtags",
    "deduplicate",
    "leak_report",
    "near_duplicate_pairs",
    "prep_ray",
    "to_fixed_shape_tensor",
]


# --------------------------------------------------------------------------- helpers


def assigned_cpus(default: int = 1) -> int:
    """The CPUs Ray granted the current task or actor (rounded, at least 1).

    Outside a Ray worker (or with ``num_cpus=0``) returns ``default``; never
    the machine's CPU count, which on a shared node would oversubscribe it.
    """
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not connected to Ray
        cpus = None
    if not cpus:
        return default
    return max(1, round(cpus))


def _threads(num_threads: int | None) -> int:
    return int(num_threads) if num_threads else assigned_cpus()


def _as_batch(data: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
    """One record batch (zero-copy when every column has a single chunk)."""
    if isinstance(data, pa.RecordBatch):
        return data
    if not isinstance(data, pa.Table):
        raise TypeError(f"expected a pyarrow table (batch_format='pyarrow'), got {type(data)}")
    data = data.combine_chunks()
    batches = data.to_batches()
    if not batches:
        return pa.RecordBatch.from_arrays(
            [pa.array([], type=f.type) for f in data.schema], schema=data.schema
        )
    return batches[0]


def _as_table(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def _tensor_type(shape: tuple, value_type: pa.DataType) -> pa.DataType:
    names = ["H", "W", "C"] if len(shape) == 3 else None
    return pa.fixed_shape_tensor(value_type, list(shape), dim_names=names)


def to_fixed_shape_tensor(column: Any, shape: tuple | None = None) -> pa.Array | pa.ChunkedArray:
    """A pixel column as ``arrow.fixed_shape_tensor`` (the type fastprep writes).

    Accepts Ray's own tensor columns (``ArrowTensorType``/``ArrowTensorTypeV2``,
    made when a UDF returns numpy arrays), a ``fixed_size_list`` (with
    ``shape``) or a column that already has the type (returned unchanged).
    Null rows stay null.
    """
    if isinstance(column, pa.ChunkedArray):
        chunks = [to_fixed_shape_tensor(c, shape) for c in column.chunks]
        if not chunks:
            raise ValueError("cannot infer the tensor type of an empty chunked array")
        return pa.chunked_array(chunks, type=chunks[0].type)
    kind = column.type
    if isinstance(kind, pa.FixedShapeTensorType):
        return column
    if isinstance(kind, pa.ExtensionType):
        shape = shape or getattr(kind, "shape", None)
        storage = column.storage
    else:
        storage = column
    if shape is None or any(d is None for d in shape):
        raise ValueError(f"{kind} has no fixed shape: pass shape=")
    shape = tuple(int(d) for d in shape)
    frame = int(np.prod(shape))
    if pa.types.is_fixed_size_list(storage.type):
        if storage.type.list_size != frame:
            raise ValueError(f"list size {storage.type.list_size} does not match shape {shape}")
        return pa.ExtensionArray.from_storage(_tensor_type(shape, storage.type.value_type), storage)
    if not (pa.types.is_list(storage.type) or pa.types.is_large_list(storage.type)):
        raise TypeError(f"cannot convert {kind} to a fixed-shape tensor")
    value_type = storage.type.value_type
    valid = pc.is_valid(storage).to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(storage).to_numpy(zero_copy_only=False)
    if np.any(lengths[valid] != frame):
        raise ValueError(f"rows do not all hold {frame} values (shape {shape})")
    if valid.all():
        offsets = storage.offsets.to_numpy()
        values = storage.values.slice(int(offsets[0]), len(storage) * frame)
        fixed = pa.FixedSizeListArray.from_arrays(values, frame)
    else:
        dense = np.zeros((len(storage), frame), dtype=value_type.to_pandas_dtype())
        flat = pc.list_flatten(storage).to_numpy(zero_copy_only=False)
        dense[valid] = flat.reshape(-1, frame)
        fixed = pa.FixedSizeListArray.from_arrays(
            pa.array(dense.reshape(-1), value_type), frame, mask=pa.array(~valid)
        )
    return pa.ExtensionArray.from_storage(_tensor_type(shape, value_type), fixed)


# --------------------------------------------------------------------------- stages


class DecodeImages:
    """``map_batches`` stage: decode, orient, resize and hash ``image_column``.

    Output: the input's other columns plus :func:`fastprep.decode_images`'s
    (``pixels`` as ``arrow.fixed_shape_tensor``, ``error`` null or the reason:
    corrupt records stay in the output with their reason). Options are
    :class:`fastprep.pipeline.stages.ImageStage`'s; ``num_threads`` defaults to
    the CPUs Ray granted the actor.
    """

    def __init__(
        self,
        size: int | tuple | None = 224,
        mode: str = "center_crop",
        filter: str = "bilinear",
        hashes: Iterable[str] = ("xxh3", "pdq"),
        image_column: str = "image",
        num_threads: int | None = None,
        **options: Any,
    ) -> None:
        self.image_column = image_column
        self.stage = ImageStage(
            size=size,
            mode=mode,
            filter=filter,
            hashes=tuple(hashes),
            num_threads=_threads(num_threads),
            extra=options,
        )

    def __call__(self, data: pa.Table) -> pa.Table:
        batch = _as_batch(data)
        if self.image_column != "image":
            names = [
                "image" if n == self.image_column else n
                for n in batch.schema.names
                if n != "image" or self.image_column == "image"
            ]
            keep = [n for n in batch.schema.names if n != "image"]
            batch = pa.RecordBatch.from_arrays([batch.column(n) for n in keep], names=names)
        return _as_table(self.stage(batch))


class ExtractHashtags:
    """``map_batches`` stage: the normalised hashtag keys of ``column`` as a
    ``list<string>`` column ``output``."""

    def __init__(
        self,
        normalizer: HashtagNormalizer | None = None,
        column: str = "caption",
        output: str = "hashtags",
    ) -> None:
        self.normalizer = normalizer or HashtagNormalizer()
        self.column, self.output = column, output

    def __call__(self, data: pa.Table) -> pa.Table:
        table = _as_table(data)
        tags = fastprep.extract_hashtags(table.column(self.column), normalizer=self.normalizer)
        return table.append_column(self.output, tags)


class ConsentFilter:
    """``map_batches`` stage applying consent rules (default: ``is_public ==
    false`` drops as ``not_public``, ``opt_out == true`` as ``opt_out``).

    ``output="kept"`` yields the records no rule drops; ``"dropped"`` yields
    ``key``, ``source`` (when present) and ``reason`` of the others;
    ``"tagged"`` yields every record with a ``drop_reason`` column. Use
    :func:`consent_split` to get both datasets from one pass.
    """

    def __init__(self, rules: tuple = DEFAULT_RULES, output: str = "kept") -> None:
        if output not in ("kept", "dropped", "tagged"):
            raise ValueError("output must be 'kept', 'dropped' or 'tagged'")
        self.rules, self.output = tuple(rules), output

    def __call__(self, data: pa.Table) -> pa.Table:
        table = _as_table(data)
        reasons = consent_reasons(_as_batch(table), self.rules)
        reason = pa.array(reasons.tolist(), pa.string())
        if self.output == "tagged":
            return table.append_column("drop_reason", reason)
        dropped = pc.is_valid(reason)
        if self.output == "kept":
            return table.filter(pc.invert(dropped))
        names = [n for n in ("key", "source") if n in table.column_names]
        return table.select(names).append_column("reason", reason).filter(dropped)


def consent_split(ds: ray.data.Dataset, rules: tuple = DEFAULT_RULES, **map_kwargs: Any):
    """``(kept, dropped)`` datasets from one pass of the consent rules (the
    tagged result is materialised once, then split)."""
    tagged = ds.map_batches(
        ConsentFilter,
        fn_constructor_kwargs={"rules": rules, "output": "tagged"},
        batch_format="pyarrow",
        concurrency=map_kwargs.pop("concurrency", 1),
        **map_kwargs,
    ).materialize()

    def kept(t: pa.Table) -> pa.Table:
        return t.filter(pc.is_null(t.column("drop_reason"))).drop_columns(["drop_reason"])

    def dropped(t: pa.Table) -> pa.Table:
        names = [n for n in ("key", "source") if n in t.column_names]
        t = t.filter(pc.is_valid(t.column("drop_reason")))
        return t.select([*names, "drop_reason"]).rename_columns([*names, "reason"])

    return (
        tagged.map_batches(kept, batch_format="pyarrow"),
        tagged.map_batches(dropped, batch_format="pyarrow"),
    )


class CountHashtags:
    """``map_batches`` stage: one row per batch, ``counts`` (binary): the
    batch's :class:`fastprep.HashtagCounts`, serialised. Merge them with
    :func:`fastprep.distributed.merge_counts` (or use :func:`count_hashtags`)."""

    def __init__(
        self,
        normalizer: HashtagNormalizer | None = None,
        column: str = "caption",
        num_threads: int | None = None,
    ) -> None:
        self.normalizer = normalizer
        self.column = column
        self.num_threads = _threads(num_threads)

    def __call__(self, data: pa.Table) -> pa.Table:
        column = _as_table(data).column(self.column)
        part = distributed.partial_counts(column, self.normalizer, self.num_threads)
        return pa.table({"counts": pa.array([part], pa.binary())})


def count_hashtags(
    ds: ray.data.Dataset,
    *,
    normalizer: HashtagNormalizer | None = None,
    column: str = "caption",
    **map_kwargs: Any,
) -> HashtagCounts:
    """Distributed :func:`fastprep.count_hashtags`: counts per block on the
    workers, merged on the driver; equal to counting the whole dataset in one
    process. Only ``column`` is read."""
    parts = ds.select_columns([column]).map_batches(
        CountHashtags,
        fn_constructor_kwargs={"normalizer": normalizer, "column": column},
        batch_format="pyarrow",
        concurrency=map_kwargs.pop("concurrency", 1),
        **map_kwargs,
    )
    return distributed.merge_counts(row["counts"] for row in parts.iter_rows())


class LabelCaptions:
    """``map_batches`` stage: ``labels`` (``list<int32>``), ``num_labels`` and
    ``has_label`` from ``column`` with a vocabulary (a
    :class:`fastprep.Vocabulary` or its JSON)."""

    def __init__(
        self, vocab: Vocabulary | str, column: str = "caption", num_threads: int | None = None
    ) -> None:
        self.vocab = vocab if isinstance(vocab, Vocabulary) else Vocabulary.from_json(vocab)
        self.column = column
        self.num_threads = _threads(num_threads)

    def __call__(self, data: pa.Table) -> pa.Table:
        table = _as_table(data)
        labels = label_captions(table.column(self.column), self.vocab, num_threads=self.num_threads)
        for name in labels.column_names:
            table = table.append_column(name, labels.column(name))
        return table


# --------------------------------------------------------------------------- near-duplicates


def _default_shards() -> int:
    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    return max(2, 4 * cpus)


class _SlotEntries:
    def __init__(self, radius, num_shards, slot_bits, hash_column, id_column, role) -> None:
        self.args = (radius, num_shards, slot_bits, hash_column, id_column, role)

    def __call__(self, data: pa.Table) -> pa.Table:
        radius, num_shards, slot_bits, hash_column, id_column, role = self.args
        table = _as_table(data)
        return distributed.slot_entries(
            table.column(id_column),
            table.column(hash_column),
            radius,
            num_shards=num_shards,
            slot_bits=slot_bits,
            role=role,
        )


def _verify_group(table: pa.Table, radius: int, slot_bits: int, self_join: bool) -> pa.Table:
    return distributed.verify_entries(table, radius, slot_bits=slot_bits, self_join=self_join)


def _entries(ds, radius, num_shards, slot_bits, hash_column, id_column, role):
    return ds.select_columns([id_column, hash_column]).map_batches(
        _SlotEntries,
        fn_constructor_args=(radius, num_shards, slot_bits, hash_column, id_column, role),
        batch_format="pyarrow",
        concurrency=1,
    )


_SHUFFLES = {
    "sort": "sort_shuffle_pull_based",
    "push": "sort_shuffle_push_based",
    "hash": "hash_shuffle",
}


def _sharded_pairs(entries, radius, slot_bits, self_join, num_shards, shuffle) -> list[pa.Table]:
    if shuffle is not None:
        from ray.data.context import ShuffleStrategy

        if shuffle not in _SHUFFLES:
            raise ValueError(f"shuffle must be one of {sorted(_SHUFFLES)} or None")
        entries.context.shuffle_strategy = ShuffleStrategy(_SHUFFLES[shuffle])
    pairs = entries.groupby("shard", num_partitions=num_shards).map_groups(
        _verify_group,
        fn_args=(radius, slot_bits, self_join),
        batch_format="pyarrow",
    )
    return ray.get(pairs.to_arrow_refs())


def near_duplicate_pairs(
    ds: ray.data.Dataset,
    radius: int,
    *,
    hash_column: str = "pdq",
    id_column: str = "id",
    slot_bits: int = 16,
    num_shards: int | None = None,
    shuffle: str | None = "sort",
) -> pa.Table:
    """Every pair of records whose hashes are within ``radius`` bits: ``a,
    b, distance`` with ``a < b`` (values of ``id_column``), sorted.

    A sharded multi-index-hashing join (see :mod:`fastprep.distributed`):
    workers file each hash under its slot keys, a shuffle groups the keys
    into ``num_shards`` shards, each shard verifies its candidates with the
    exact distance. Exactly :func:`fastprep.find_near_duplicates`'s pairs when
    the ids are the row positions. Null hashes never match.

    ``shuffle`` picks Ray Data's shuffle for the grouping on this dataset
    only: ``"sort"`` (default; Ray's sort-based pull shuffle, fastest here
    and the fewest moving parts), ``"push"``, ``"hash"``, or None to keep
    the ``DataContext``'s strategy (Ray 2.5x+ defaults to its hash shuffle,
    meant for very large shuffles).
    """
    num_shards = num_shards or _default_shards()
    entries = _entries(ds, radius, num_shards, slot_bits, hash_column, id_column, "both")
    return distributed.sort_pairs(
        _sharded_pairs(entries, radius, slot_bits, True, num_shards, shuffle)
    )


def _rows_with_ids(ds, id_column: str, ids: np.ndarray, columns: list[str]) -> pa.Table:
    """The rows of ``ds`` whose ``id_column`` is in ``ids`` (``columns`` only)."""
    wanted = pa.array(np.unique(ids).astype(np.int64))

    def pick(t: pa.Table) -> pa.Table:
        mask = pc.is_in(t.column(id_column).cast(pa.int64()), value_set=wanted)
        return t.filter(mask)

    parts = ray.get(
        ds.select_columns(columns).map_batches(pick, batch_format="pyarrow").to_arrow_refs()
    )
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return pa.table({c: pa.array([], pa.int64()) for c in columns})
    return pa.concat_tables(parts, promote_options="default")


def deduplicate(
    ds: ray.data.Dataset,
    radius: int,
    *,
    hash_column: str = "pdq",
    id_column: str = "id",
    rank_column: str | None = None,
    key_column: str | None = None,
    slot_bits: int = 16,
    num_shards: int | None = None,
    shuffle: str | None = "sort",
) -> tuple[pa.Table, pa.Table]:
    """Distributed :func:`fastprep.deduplicate`: ``(duplicates, pairs)``.

    ``pairs`` is :func:`near_duplicate_pairs`; clusters are resolved on the
    driver with the same rule (union-find; keeper: highest ``rank_column``,
    then the smallest id), fetching only the records that appear in a pair.
    ``duplicates`` has one row per record in a pair: ``id``, ``cluster``,
    ``duplicate_of`` (null for keepers) and, with ``key_column``,
    ``duplicate_of_key``; every other record is a keeper of its own cluster.
    """
    pairs = near_duplicate_pairs(
        ds,
        radius,
        hash_column=hash_column,
        id_column=id_column,
        slot_bits=slot_bits,
        num_shards=num_shards,
        shuffle=shuffle,
    )
    ids = np.concatenate([pairs.column("a").to_numpy(), pairs.column("b").to_numpy()])
    columns = [id_column, *[c for c in (rank_column, key_column) if c]]
    rows = _rows_with_ids(ds, id_column, ids, columns)
    duplicates = distributed.resolve_duplicates(
        pairs,
        rows.column(id_column),
        rank=rows.column(rank_column).to_numpy() if rank_column else None,
        keys=rows.column(key_column) if key_column else None,
    )
    return duplicates, pairs


class _MatchBlock:
    """Broadcast join: one block of queries against a reference table."""

    def __init__(self, reference: pa.Table, radius: int, id_column: str, hash_column: str) -> None:
        self.reference_ids = reference.column(id_column)
        self.reference = reference.column(hash_column)
        self.radius, self.id_column, self.hash_column = radius, id_column, hash_column
        self.num_threads = assigned_cpus()

    def __call__(self, data: pa.Table) -> pa.Table:
        table = _as_table(data)
        return distributed.match_block(
            table.column(self.id_column),
            table.column(self.hash_column),
            self.reference_ids,
            self.reference,
            self.radius,
            num_threads=self.num_threads,
        )


def leak_report(
    train: ray.data.Dataset,
    evaluation: ray.data.Dataset,
    radius: int,
    *,
    hash_column: str = "pdq",
    id_column: str = "id",
    train_key_column: str | None = None,
    eval_key_column: str | None = None,
    slot_bits: int = 16,
    num_shards: int | None = None,
    shuffle: str | None = "sort",
    broadcast_limit: int = 5_000_000,
) -> pa.Table:
    """Distributed :func:`fastprep.leak_report`: ``train_index, eval_index,
    distance`` (ids), plus ``train_key``/``eval_key`` when key columns are
    given, sorted by training id.

    An evaluation set of at most ``broadcast_limit`` records (32 bytes a PDQ
    hash: 160 MB at the default) is sent to every worker, which matches its
    training blocks against it (a broadcast join, no shuffle); a larger one
    is indexed and probed through the sharded join of
    :func:`near_duplicate_pairs`. Both are exact."""
    if evaluation.count() <= broadcast_limit:
        reference = _collect(evaluation.select_columns([id_column, hash_column]))
        if reference.num_rows == 0:
            found = distributed.PAIR_SCHEMA.empty_table()
        else:
            found = _collect(
                train.select_columns([id_column, hash_column]).map_batches(
                    _MatchBlock,
                    fn_constructor_args=(reference, radius, id_column, hash_column),
                    batch_format="pyarrow",
                    concurrency=1,
                ),
                schema=distributed.PAIR_SCHEMA,
            )
        pairs = distributed.sort_pairs([found], names=("train_index", "eval_index"))
    else:
        num_shards = num_shards or _default_shards()
        entries = _entries(
            train, radius, num_shards, slot_bits, hash_column, id_column, "probe"
        ).union(
            _entries(evaluation, radius, num_shards, slot_bits, hash_column, id_column, "index")
        )
        pairs = distributed.sort_pairs(
            _sharded_pairs(entries, radius, slot_bits, False, num_shards, shuffle),
            names=("train_index", "eval_index"),
        )
    for side, ds, key_column, name in (
        ("train_index", train, train_key_column, "train_key"),
        ("eval_index", evaluation, eval_key_column, "eval_key"),
    ):
        if key_column is None:
            continue
        ids = pairs.column(side).to_numpy()
        rows = _rows_with_ids(ds, id_column, ids, [id_column, key_column])
        order = np.argsort(rows.column(id_column).to_numpy())
        where = order[np.searchsorted(rows.column(id_column).to_numpy()[order], ids)]
        pairs = pairs.append_column(
            name, rows.column(key_column).take(pa.array(where, pa.int64())).combine_chunks()
        )
    return pairs


# --------------------------------------------------------------------------- the prep job

# Per input record, what pass 1 returns to the driver (~100 bytes): the
# corpus state of decoded records, or the reason a record was dropped.
_STATE = pa.schema(
    [
        pa.field("_row", pa.int64()),
        pa.field("_part", pa.int64()),
        pa.field("_order", pa.int32()),
        pa.field("key", pa.string()),
        pa.field("source", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("xxh3_128", pa.binary(16)),
        pa.field("pdq", pa.binary(32)),
        pa.field("pdq_quality", pa.uint8()),
        pa.field("source_width", pa.uint32()),
        pa.field("source_height", pa.uint32()),
        pa.field("counts", pa.binary()),
    ]
)


class _PrepPass1:
    """One block of the source: ``prep``'s own per-batch step (consent
    filter, decode + resize + hash, hashtags), staged as Parquet, plus the
    block's partial hashtag counts. Returns :data:`_STATE` rows."""

    def __init__(self, staging, size, mode, rules, normalizer, source_name, num_threads=None):
        self.staging, self.rules, self.source_name = staging, rules, source_name
        self.normalizer = normalizer or HashtagNormalizer()
        self.num_threads = _threads(num_threads)
        self.stage = ImageStage(
            size=size, mode=mode, hashes=("xxh3", "pdq"), num_threads=self.num_threads
        )

    def __call__(self, data: pa.Table) -> pa.Table:
        batch = _as_batch(data)
        n = batch.num_rows
        if n == 0:
            return _STATE.empty_table()
        if "source" not in batch.schema.names:
            batch = batch.append_column("source", pa.array([self.source_name] * n, pa.string()))
        rows = batch.column("_row").to_numpy()
        part = int(rows.min())
        staged, dropped = process_part(batch, self.stage, self.normalizer, self.rules)
        # The dropped table lists consent refusals, then decode failures.
        reasons = consent_reasons(batch, self.rules)
        consented = rows[reasons == None]  # noqa: E711
        staged_rows = (
            staged.column("_row").to_numpy() if staged is not None else np.zeros(0, np.int64)
        )
        drop_rows = np.concatenate(
            [rows[reasons != None], consented[~np.isin(consented, staged_rows)]]  # noqa: E711
        )
        if len(drop_rows) != dropped.num_rows:
            raise AssertionError("pass 1 lost track of dropped records")
        tables = [
            pa.table(
                {
                    "_row": pa.array(drop_rows, pa.int64()),
                    "_part": pa.array(np.full(len(drop_rows), part), pa.int64()),
                    "_order": pa.array(np.arange(len(drop_rows)), pa.int32()),
                    "key": dropped.column("key"),
                    "source": dropped.column("source"),
                    "reason": dropped.column("reason"),
                }
            )
        ]
        counts = HashtagCounts()
        if staged is not None:
            atomic_arrow(staged, os.path.join(self.staging, f"part-{part:012d}{STAGED_SUFFIX}"))
            counts.update(staged.column("caption"), self.normalizer, self.num_threads)
            m = staged.num_rows
            state = staged.select(["_row", *STATE_COLUMNS])
            state = state.append_column("_part", pa.array(np.full(m, part), pa.int64()))
            tables.append(state.append_column("_order", pa.array(np.zeros(m), pa.int32())))
        table = pa.concat_tables(
            [
                pa.Table.from_arrays(
                    [
                        t.column(f.name).cast(f.type)
                        if f.name in t.column_names
                        else pa.nulls(t.num_rows, f.type)
                        for f in _STATE
                    ],
                    schema=_STATE,
                )
                for t in tables
            ]
        )
        return table.set_column(
            _STATE.get_field_index("counts"),
            "counts",
            pa.array([counts.to_bytes()] + [None] * (table.num_rows - 1), pa.binary()),
        )


def _kept(table: pa.Table, vocab: Vocabulary, decided: np.ndarray, drop_unlabeled: bool, threads):
    """Labels of a staged part and which of its records pass 2 writes."""
    labels = label_captions(table.column("caption"), vocab, num_threads=threads)
    rows = table.column("_row").to_numpy()
    keep = ~np.isin(rows, decided)
    unlabeled = np.zeros(len(rows), bool)
    if drop_unlabeled:
        unlabeled = keep & ~labels.column("has_label").to_numpy(zero_copy_only=False)
        keep &= ~unlabeled
    return labels, keep, rows[unlabeled]


class _PrepLabelCount:
    """Pass 2a: per staged part, how many records survive (so shards can be
    cut exactly as ``prep`` cuts them) and which lack a label."""

    def __init__(self, staging, vocab_json, decided, drop_unlabeled, num_threads=None):
        self.staging, self.decided, self.drop_unlabeled = staging, decided, drop_unlabeled
        self.vocab = Vocabulary.from_json(vocab_json)
        self.num_threads = _threads(num_threads)

    def __call__(self, data: pa.Table) -> pa.Table:
        names, kept, unlabeled = [], [], []
        for name in data.column("part").to_pylist():
            table = read_arrow(os.path.join(self.staging, name), columns=["_row", "caption"])
            _, keep, no_label = _kept(
                table, self.vocab, self.decided, self.drop_unlabeled, self.num_threads
            )
            names.append(name)
            kept.append(int(keep.sum()))
            unlabeled.append(no_label.tolist())
        return pa.table(
            {
                "part": pa.array(names, pa.string()),
                "kept": pa.array(kept, pa.int64()),
                "unlabeled": pa.array(unlabeled, pa.list_(pa.int64())),
            }
        )


class _PrepWriteShard:
    """Pass 2b: one final shard from slices of staged parts (filtered and
    labelled), encoded and written exactly as ``prep`` writes it."""

    def __init__(self, staging, out, schema, vocab_json, decided, options, num_threads=None):
        self.staging, self.out, self.schema, self.decided = staging, out, schema, decided
        self.vocab = Vocabulary.from_json(vocab_json)
        self.options = options
        self.num_threads = _threads(num_threads)

    def __call__(self, data: pa.Table) -> pa.Table:
        o = self.options
        for name, pieces in zip(
            data.column("shard").to_pylist(), data.column("pieces").to_pylist()
        ):
            tables = []
            for piece in pieces:
                table = conform(read_arrow(os.path.join(self.staging, piece["part"])), self.schema)
                labels, keep, _ = _kept(
                    table, self.vocab, self.decided, o["drop_unlabeled"], self.num_threads
                )
                table = table.append_column("labels", labels.column("labels")).append_column(
                    "num_labels", labels.column("num_labels")
                )
                table = table.filter(pa.array(keep)).drop_columns(["_row"])
                tables.append(table.slice(piece["start"], piece["stop"] - piece["start"]))
            table = pa.concat_tables(tables)
            write_shard(
                table,
                os.path.join(self.out, name),
                sink=o["sink"],
                image_format=o["image_format"],
                size=o["size"],
                quality=o["quality"],
                row_group_size=o["row_group_size"],
                num_threads=self.num_threads,
            )
        return pa.table({"shard": data.column("shard")})


class _HashEval:
    """The eval set's PDQ hashes (``prep`` hashes it the same way)."""

    def __init__(self, num_threads: int | None = None) -> None:
        self.num_threads = _threads(num_threads)

    def __call__(self, data: pa.Table) -> pa.Table:
        batch = _as_batch(data)
        hashed = fastprep.hash_images(
            batch.column("image"), hashes=["pdq"], num_threads=self.num_threads
        )
        return pa.table(
            {
                "_row": batch.column("_row"),
                "key": batch.column("key").cast(pa.string()),
                "pdq": hashed.column("pdq"),
                "error": hashed.column("error"),
            }
        )


def _with_rows(source: Any, batch_size: int, options: dict) -> ray.data.Dataset:
    """The input as a dataset with a dense ``_row`` column (input order),
    one block per source batch."""
    if isinstance(source, ray.data.Dataset):
        if "_row" in source.schema().names:
            return source  # numbered upstream: no materialisation
        refs = source.materialize().to_arrow_refs()
        sizes = ray.get([_num_rows.remote(r) for r in refs])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return ray.data.from_arrow_refs([_add_rows.remote(r, int(s)) for r, s in zip(refs, starts)])
    batches = (
        open_source(source, batch_size=batch_size, **options)
        if isinstance(source, (str, os.PathLike))
        else source
    )
    refs, start = [], 0
    for batch in batches:
        refs.append(_add_rows.remote(_as_table(batch), start))
        start += batch.num_rows
    if not refs:
        raise ValueError("the source holds no records")
    return ray.data.from_arrow_refs(refs)


@ray.remote(num_cpus=0)
def _num_rows(table: pa.Table) -> int:
    return table.num_rows


@ray.remote(num_cpus=0)
def _add_rows(table: pa.Table, start: int) -> pa.Table:
    return table.append_column(
        "_row", pa.array(np.arange(start, start + table.num_rows), pa.int64())
    )


def _collect(ds: ray.data.Dataset, fn: Any = None, schema: pa.Schema | None = None) -> pa.Table:
    """``fn`` over every block, concatenated on the driver."""
    refs = (ds.map_batches(fn, batch_format="pyarrow") if fn else ds).to_arrow_refs()
    parts = [t for t in ray.get(refs) if t.num_rows]
    if not parts:
        return schema.empty_table() if schema is not None else pa.table({})
    return pa.concat_tables(parts)


def _dense(rows: np.ndarray, excluded_sorted: np.ndarray) -> np.ndarray:
    """Position of each row among the rows not excluded (rows are 0..n-1)."""
    return rows - np.searchsorted(excluded_sorted, rows, side="left")


def _exact_copies(group: pa.Table, unlabeled: np.ndarray) -> pa.Table:
    """One xxh3 group: every copy but the keeper (the first labelled copy,
    else the first, as ``prep`` chooses), with the keeper's row."""
    rows = np.sort(group.column("_row").to_numpy())
    labelled = rows[~np.isin(rows, unlabeled)]
    keeper = labelled[0] if len(labelled) else (rows[0] if len(rows) else 0)
    others = rows[rows != keeper]
    return pa.table(
        {
            "_row": pa.array(others, pa.int64()),
            "keeper": pa.array(np.full(len(others), keeper), pa.int64()),
        }
    )


def _shard_plan(parts: list[str], kept: list[int], records_per_shard: int) -> list[dict]:
    """``prep``'s shard boundaries: every ``records_per_shard`` surviving
    records in input order, as slices of staged parts."""
    shards: list[dict] = []
    pieces: list[dict] = []
    filled = 0
    for part, count in zip(parts, kept):
        start = 0
        while start < count:
            take = min(records_per_shard - filled, count - start)
            pieces.append({"part": part, "start": start, "stop": start + take})
            filled += take
            start += take
            if filled == records_per_shard:
                shards.append({"pieces": pieces, "records": filled})
                pieces, filled = [], 0
    if filled:
        shards.append({"pieces": pieces, "records": filled})
    return shards


def prep_ray(
    source: Any,
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
    sink: str = "parquet",
    consent_rules: tuple = DEFAULT_RULES,
    batch_size: int = 256,
    source_options: dict | None = None,
    overwrite: bool = False,
    num_cpus: float = 1,
    concurrency: int | None = None,
    slot_bits: int = 16,
    num_shards: int | None = None,
    shuffle: str | None = "sort",
) -> PrepResult:
    """:func:`fastprep.pipeline.prep` on a Ray cluster, with the same outputs.

    Connect first (``ray.init(address="auto")``); ``out_dir`` must be a path
    every node can read and write (a shared file system). ``source``: what
    ``prep`` takes (a folder, tar shards or Parquet, cut into blocks of
    ``batch_size`` records on the driver), or a ``ray.data.Dataset`` with
    ``key``, ``image``, ``caption`` (optionally ``source`` and consent
    columns), materialised once to number its records unless it already has
    ``_row``: int64 positions 0..n-1 in input order, one block per contiguous
    range (number upstream, e.g. from Parquet footers, to skip that). The
    settings mean what they mean for ``prep``; ``resume`` and the HTML report
    are ``prep``-only (Ray re-runs failed tasks instead).

    Scale: the pixels never pass through the driver or the object store
    (workers stage and write them), but the driver holds ~100 bytes per
    dropped record and the decisions, so this exact replica of ``prep`` suits
    corpora up to ~10^8 records; beyond, compose the stages and joins of this
    module (see ``docs/scale-out.md``).

    Pass 1 runs ``prep``'s per-batch step on the workers (``concurrency``
    actors of ``num_cpus`` CPUs each; fastprep's threads follow ``num_cpus``)
    and stages the decoded records under ``out_dir/_staging``; each block
    returns its partial hashtag counts and ~100 bytes per record (keys and
    hashes). Exact copies (a ``groupby`` on xxh3), opt-out matches, PDQ
    near-duplicates (:func:`near_duplicate_pairs`, a sharded join) and eval
    leaks (:func:`leak_report`) run on the cluster; the driver merges the
    counts, builds the vocabulary and resolves clusters from the pairs. Pass 2
    labels and filters the staged records on the workers and writes the
    shards. Shards, ``dropped.parquet``, ``duplicate_pairs.parquet``,
    ``eval_leaks.parquet``, ``hashtag_counts.parquet``, ``vocab.json`` and the
    manifest's totals and outputs are those ``prep`` writes for the same
    input and settings (``tests/test_ray.py`` compares them).
    """
    image_format = check_options(
        sink, image_format, quality, records_per_shard, batch_size, row_group_size
    )
    started = time.perf_counter()
    out = os.path.abspath(os.fspath(out_dir))
    from_path = isinstance(source, (str, os.PathLike))
    settings = job_settings(
        os.path.abspath(os.fspath(source))
        if from_path
        else ("<dataset>" if isinstance(source, ray.data.Dataset) else "<batches>"),
        engine="ray",
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
    # A malformed opt-out hash fails here, before any work.
    opt_out_matches(_STATE.empty_table(), settings["opt_out_hashes"], opt_out_radius, 1)
    os.makedirs(out, exist_ok=True)
    staging = prepare_out_dir(out, settings, False, overwrite)
    normalizer = normalizer or HashtagNormalizer()
    actors = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1) // num_cpus))
    num_shards = num_shards or _default_shards()
    map_args = {"concurrency": actors, "num_cpus": num_cpus, "batch_format": "pyarrow"}

    # Pass 1 on the workers.
    small = (
        _with_rows(source, batch_size, source_options or {})
        .map_batches(
            _PrepPass1,
            fn_constructor_args=(
                staging,
                size,
                mode,
                tuple(consent_rules),
                normalizer,
                "<dataset>",
            ),
            batch_size=None,
            **map_args,
        )
        .materialize()
    )
    total = small.count()
    counts = distributed.merge_counts(
        _collect(small, lambda t: t.select(["counts"]).filter(pc.is_valid(t["counts"])))
        .column("counts")
        .to_pylist()
        if total
        else []
    )
    first_drops = _collect(
        small,
        lambda t: t.select(["_row", "_part", "_order", "key", "source", "reason"]).filter(
            pc.is_valid(t["reason"])
        ),
        _STATE.empty_table().select(["_row", "_part", "_order", "key", "source", "reason"]).schema,
    ).sort_by([("_part", "ascending"), ("_order", "ascending")])
    dropped_rows = np.sort(first_drops.column("_row").to_numpy()).astype(np.int64)
    state = small.map_batches(lambda t: t.filter(pc.is_null(t["reason"])), batch_format="pyarrow")
    n = total - len(dropped_rows)

    # The vocabulary first: keepers are chosen among records with a label.
    vocab = build_vocabulary(counts, top_k=top_k, min_count=min_count, normalizer=normalizer)
    parts = sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(staging, "part-*" + STAGED_SUFFIX))
    )
    unlabeled = np.zeros(0, np.int64)
    if drop_unlabeled and parts:
        labelled = _collect(
            ray.data.from_items([{"part": p} for p in parts]).map_batches(
                _PrepLabelCount,
                fn_constructor_args=(staging, vocab.to_json(), np.zeros(0, np.int64), True),
                batch_size=1,
                **map_args,
            )
        )
        unlabeled = np.sort(
            np.array(
                [r for rows in labelled.column("unlabeled").to_pylist() for r in rows], np.int64
            )
        )

    # Corpus-wide decisions (row -> code, row -> keeper row / eval record).
    decision: dict[int, int] = {}
    reference: dict[int, int] = {}
    if settings["opt_out_hashes"] and n:
        listed, radius = settings["opt_out_hashes"], opt_out_radius
        hits = _collect(
            state,
            lambda t: t.select(["_row"]).filter(pa.array(opt_out_matches(t, listed, radius, 1))),
        )
        for row in hits.column("_row").to_pylist() if hits.num_rows else []:
            decision[row] = OPT_OUT
    keeper: dict[int, int] = {}
    if n:
        copies = _collect(
            state.select_columns(["_row", "xxh3_128"])
            .map_batches(
                lambda t: t.set_column(1, "xxh3_128", t.column(1).cast(pa.binary())),
                batch_format="pyarrow",
            )
            .groupby("xxh3_128")
            .map_groups(_exact_copies, fn_args=(unlabeled,), batch_format="pyarrow")
        )
        if copies.num_rows:
            keeper.update(
                zip(copies.column("_row").to_pylist(), copies.column("keeper").to_pylist())
            )
    pairs_table = None
    if dedup_radius is not None and n:
        low = _collect(
            state, lambda t: t.select(["_row"]).filter(pc.less(t["pdq_quality"], min_quality))
        )
        low_rows = low.column("_row").to_numpy() if low.num_rows else np.zeros(0, np.int64)
        unusable = np.sort(np.concatenate([dropped_rows, low_rows]).astype(np.int64))
        if n - len(low_rows) > 1:
            usable = state.map_batches(
                lambda t: t.filter(pc.greater_equal(t["pdq_quality"], min_quality)),
                batch_format="pyarrow",
            ).map_batches(
                lambda t: t.append_column(
                    "area",  # the keeper rank: labelled first, then the largest
                    pc.add(
                        pc.multiply(
                            t["source_width"].cast(pa.uint64()),
                            t["source_height"].cast(pa.uint64()),
                        ),
                        pa.array(
                            (~np.isin(t["_row"].to_numpy(), unlabeled)).astype(np.uint64)
                            << np.uint64(62)
                        ),
                    ),
                ),
                batch_format="pyarrow",
            )
            duplicates, pairs = deduplicate(
                usable,
                dedup_radius,
                id_column="_row",
                rank_column="area",
                key_column="key",
                slot_bits=slot_bits,
                num_shards=num_shards,
                shuffle=shuffle,
            )
            for row, kept_by in zip(
                duplicates.column("id").to_pylist(), duplicates.column("duplicate_of").to_pylist()
            ):
                if kept_by is not None:
                    keeper.setdefault(row, kept_by)  # an exact copy keeps its first copy
            a, b = pairs.column("a").to_numpy(), pairs.column("b").to_numpy()
            keys = _key_lookup(state, np.concatenate([a, b]))
            pairs_table = pa.table(
                {
                    "a": pa.array(_dense(a, unusable), pa.int64()),
                    "b": pa.array(_dense(b, unusable), pa.int64()),
                    "distance": pairs.column("distance").cast(pa.uint32()),
                    "key_a": pa.array([keys[r] for r in a.tolist()], pa.string()),
                    "key_b": pa.array([keys[r] for r in b.tolist()], pa.string()),
                }
            )
    for row, kept_by in keeper.items():
        if row not in decision:
            decision[row] = DUPLICATE
            reference[row] = kept_by
    leaks = None
    eval_keys: list[str] = []
    if eval_source is not None and n:
        hashed = _with_rows(eval_source, 256, {}).map_batches(
            _HashEval, batch_size=None, **map_args
        )
        hashed = _collect(hashed).sort_by("_row")
        good = hashed.filter(pc.is_null(hashed["error"]))
        eval_keys = good.column("key").to_pylist()
        if good.num_rows:
            evaluation = ray.data.from_arrow(
                pa.table({"_row": pa.array(np.arange(good.num_rows)), "pdq": good["pdq"]})
            )
            found = leak_report(
                state,
                evaluation,
                eval_radius,
                id_column="_row",
                train_key_column="key",
                slot_bits=slot_bits,
                num_shards=num_shards,
                shuffle=shuffle,
            )
            train_rows = found.column("train_index").to_numpy()
            eval_index = found.column("eval_index").to_numpy()
            leaks = pa.table(
                {
                    "train_index": pa.array(_dense(train_rows, dropped_rows), pa.int64()),
                    "eval_index": pa.array(eval_index, pa.int64()),
                    "distance": found.column("distance").cast(pa.uint32()),
                    "train_key": found.column("train_key"),
                    "eval_key": pa.array([eval_keys[i] for i in eval_index], pa.string()),
                }
            )
            free = {r for r in train_rows.tolist() if r not in decision}
            for row, ev in zip(train_rows.tolist(), eval_index.tolist()):
                if row in free:  # as prep: the last match names the eval record
                    decision[row] = LEAK
                    reference[row] = ev

    save_vocabulary(vocab, os.path.join(out, "vocab.json"))
    counts_table = counts.to_arrow()
    atomic_parquet(counts_table, os.path.join(out, "hashtag_counts.parquet"), row_group_size)

    # Pass 2 on the workers: count survivors per part, then write shards.
    decided = np.array(sorted(decision), dtype=np.int64)
    shards: list[dict] = []
    if parts:
        survivors = _collect(
            ray.data.from_items([{"part": p} for p in parts]).map_batches(
                _PrepLabelCount,
                fn_constructor_args=(staging, vocab.to_json(), decided, drop_unlabeled),
                batch_size=1,
                **map_args,
            )
        ).sort_by("part")
        for rows in survivors.column("unlabeled").to_pylist():
            for row in rows:
                decision[row] = NO_LABEL
        plan = _shard_plan(parts, survivors.column("kept").to_pylist(), records_per_shard)
        for i, shard in enumerate(plan):
            shard["file"] = f"shard-{i:05d}.{SHARD_SUFFIX[sink]}"
        if plan:
            schema = pa.unify_schemas([arrow_schema(os.path.join(staging, p)) for p in parts])
            options = {
                "drop_unlabeled": drop_unlabeled,
                "image_format": image_format,
                "size": size,
                "quality": quality,
                "sink": sink,
                "row_group_size": row_group_size,
            }
            _collect(
                ray.data.from_items(
                    [{"shard": s["file"], "pieces": s["pieces"]} for s in plan]
                ).map_batches(
                    _PrepWriteShard,
                    fn_constructor_args=(
                        staging,
                        out,
                        schema,
                        vocab.to_json(),
                        decided,
                        options,
                    ),
                    batch_size=1,
                    **map_args,
                )
            )
        shards = [{"file": s["file"], "records": s["records"]} for s in plan]

    # Corpus-level drops, in record order, with their reasons.
    rows = np.array(sorted(decision), dtype=np.int64)
    keys = _key_lookup(
        state, np.concatenate([rows, np.array(list(reference.values()), np.int64)]), "source"
    )
    reasons = []
    for row in rows.tolist():
        code = decision[row]
        name = (
            keys[reference[row]][0]
            if code == DUPLICATE
            else eval_keys[reference[row]]
            if code == LEAK
            else None
        )
        reasons.append(reason_text(code, name))
    dropped_table = pa.concat_tables(
        [
            first_drops.select(["key", "source", "reason"]),
            drop_table(
                [keys[r][0] for r in rows.tolist()],
                [keys[r][1] for r in rows.tolist()],
                reasons,
            ),
        ]
    )
    manifest = finish_run(
        out,
        settings,
        total=total,
        shards=shards,
        vocab_size=len(vocab),
        dropped=dropped_table,
        pairs=pairs_table,
        leaks=leaks,
        seconds=time.perf_counter() - started,
        row_group_size=row_group_size,
        extra={"engine": {"name": "ray", "cluster_cpus": ray.cluster_resources().get("CPU")}},
    )
    manifest["versions"]["ray"] = ray.__version__
    atomic_json(manifest, os.path.join(out, "manifest.json"))
    shutil.rmtree(staging, ignore_errors=True)
    return PrepResult(out, manifest)


def _key_lookup(state: ray.data.Dataset, rows: np.ndarray, *extra: str) -> dict[int, Any]:
    """``row -> key`` (or ``row -> (key, *extra)``) for the given rows only."""
    if not len(rows):
        return {}
    table = _rows_with_ids(state, "_row", rows, ["_row", "key", *extra])
    values = table.column("_row").to_pylist()
    columns = [table.column(c).to_pylist() for c in ("key", *extra)]
    if not extra:
        return dict(zip(values, columns[0]))
    return dict(zip(values, zip(*columns)))
