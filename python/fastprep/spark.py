"""fastprep on Spark: ``mapInArrow`` stages, distributed hashtag counts and
sharded near-duplicate search for PySpark DataFrames.

Install with ``pip install 'fastprep[spark]'``. ``import fastprep`` never
imports PySpark; this module does, and says how to install it when missing.

Spark has no unsigned, fixed-size binary or tensor types, so the stages
return Spark-friendly columns: ``pixels`` as ``binary`` (row-major ``[H, W,
C]`` uint8, ``height * width * channels`` bytes) with ``height``, ``width``
and ``channels``; hashes as ``binary``; ``uint8`` columns as ``smallint``;
64-bit perceptual hashes as ``bigint`` holding the same 64 bits
(:func:`pixels_to_numpy` and :func:`to_fixed_shape_tensor` convert back)::

    import fastprep.spark as fps

    df = spark.read.parquet("s3://bucket/photos/")            # key, jpg, caption
    decoded = fps.decode_images(df, size=224, image_column="jpg")
    counts = fps.count_hashtags(df)                            # merged on the driver
    vocab = fastprep.build_vocabulary(counts, top_k=17_000)
    labelled = fps.label_captions(decoded, vocab)
    labelled.write.parquet("s3://bucket/prepared/")

fastprep's Rust threads per task follow ``spark.task.cpus`` (set it to the
threads you want per task, and ``spark.executor.cores`` to a multiple of it);
never the executor machine's CPU count. Ship fastprep to the executors as a
packed virtual environment (``spark.archives``); see ``docs/scale-out.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    import pyspark  # noqa: F401
    from pyspark import TaskContext
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import from_arrow_type, to_arrow_schema
except ImportError as exc:  # pragma: no cover - exercised with pyspark hidden
    raise ImportError(
        "fastprep.spark needs PySpark, which is not installed: pip install 'fastprep[spark]' "
        "(or pip install pyspark)"
    ) from exc

from fastprep import distributed
from fastprep.hashtags import HashtagCounts, HashtagNormalizer, Vocabulary
from fastprep.hashtags import label_captions as _label_captions
from fastprep.pipeline.stages import DEFAULT_RULES, ImageStage, consent_reasons
from fastprep.pipeline.stages import hashtag_stage as _hashtag_keys

__all__ = [
    "apply_consent",
    "consent_stage",
    "count_hashtags",
    "decode_images",
    "deduplicate",
    "extract_hashtags",
    "hashtag_stage",
    "image_stage",
    "label_captions",
    "label_stage",
    "leak_report",
    "near_duplicate_pairs",
    "pixels_to_numpy",
    "spark_arrow",
    "task_cpus",
    "to_fixed_shape_tensor",
]

MapFn = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]

#: Largest pixel payload per output batch: Spark's binary column has 32-bit offsets.
_MAX_BATCH_BYTES = 1 << 30


def task_cpus(default: int = 1) -> int:
    """CPUs Spark granted the running task (``spark.task.cpus``); ``default``
    outside a task. Never the machine's CPU count."""
    context = TaskContext.get()
    if context is None:
        return default
    try:
        return max(1, int(context.cpus()))
    except Exception:
        return default


def _large_types() -> bool:
    session = SparkSession.getActiveSession()
    if session is None:
        return False
    value = session.conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false")
    return str(value).lower() == "true"


# --------------------------------------------------------------------------- types


def _spark_arrow_type(kind: pa.DataType) -> pa.DataType:
    """The Arrow type Spark can take for a fastprep column type."""
    if isinstance(kind, pa.FixedShapeTensorType):
        return pa.binary()
    if pa.types.is_fixed_size_binary(kind) or pa.types.is_large_binary(kind):
        return pa.binary()
    if pa.types.is_large_string(kind):
        return pa.string()
    if kind in (pa.uint8(),):
        return pa.int16()
    if kind == pa.uint16():
        return pa.int32()
    if kind in (pa.uint32(), pa.uint64()):
        return pa.int64()
    if pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind) or pa.types.is_list(kind):
        return pa.list_(_spark_arrow_type(kind.value_type))
    return kind


def _tensor_to_binary(column: pa.Array) -> pa.Array:
    """A fixed-shape tensor column as ``binary`` (the values buffer is shared)."""
    storage = column.storage
    frame = storage.type.list_size
    n = len(storage)
    if n * frame >= 1 << 31:
        raise ValueError("pixel batch over 2 GiB: slice it first")
    values = storage.values
    data = values.buffers()[1]
    start = (storage.offset * frame + values.offset) * values.type.bit_width // 8
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * frame).tobytes())
    validity = None
    if storage.null_count:
        validity = pc.is_valid(storage).buffers()[1]
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, offsets, data.slice(start, n * frame)], storage.null_count
    )


def spark_arrow(batch: pa.RecordBatch, schema: pa.Schema | None = None) -> pa.RecordBatch:
    """A fastprep batch in Spark-compatible Arrow types (see the module doc);
    a ``pixels`` tensor column gains a ``channels`` column after ``width``.
    With ``schema`` (Spark's Arrow schema) the result is cast to it."""
    names, arrays = [], []
    for field, column in zip(batch.schema, batch.columns):
        if isinstance(field.type, pa.FixedShapeTensorType):
            arrays.append(_tensor_to_binary(column))
        elif field.type == pa.uint64():
            arrays.append(column.cast(pa.int64(), safe=False))  # same 64 bits
        else:
            arrays.append(column.cast(_spark_arrow_type(field.type)))
        names.append(field.name)
        if field.name == "width" and "pixels" in batch.schema.names:
            pixels_type = batch.schema.field("pixels").type
            channels = (
                pixels_type.shape[-1] if isinstance(pixels_type, pa.FixedShapeTensorType) else 3
            )
            arrays.append(pa.array(np.full(batch.num_rows, channels, np.int32)))
            names.append("channels")
    out = pa.RecordBatch.from_arrays(arrays, names=names)
    if schema is not None:
        out = pa.RecordBatch.from_arrays(
            [out.column(f.name).cast(f.type) for f in schema], schema=schema
        )
    return out


def _struct_type(arrow_schema: pa.Schema) -> T.StructType:
    return T.StructType(
        [T.StructField(f.name, from_arrow_type(f.type), True) for f in arrow_schema]
    )


def _input_arrow(schema: T.StructType) -> pa.Schema:
    return to_arrow_schema(schema, prefers_large_types=_large_types())


def _output(fields: pa.Schema) -> tuple[T.StructType, pa.Schema]:
    """The Spark schema of Spark-typed Arrow fields, and the exact Arrow
    schema Spark expects back for it."""
    struct = _struct_type(fields)
    return struct, to_arrow_schema(struct, prefers_large_types=_large_types())


def _slices(batch: pa.RecordBatch, row_bytes: int) -> Iterator[pa.RecordBatch]:
    rows = max(1, _MAX_BATCH_BYTES // max(1, row_bytes))
    for start in range(0, max(batch.num_rows, 1), rows):
        yield batch.slice(start, rows)


# --------------------------------------------------------------------------- stages


def image_stage(
    schema: T.StructType,
    *,
    size: int | tuple | None = 224,
    mode: str = "center_crop",
    filter: str = "bilinear",
    hashes: Iterable[str] = ("xxh3", "pdq"),
    image_column: str = "image",
    num_threads: int | None = None,
    **options: Any,
) -> tuple[MapFn, T.StructType]:
    """``(fn, output_schema)`` for ``df.mapInArrow(fn, output_schema)``:
    decode, orient, resize and hash ``image_column``.

    The output has the input's other columns, then ``pixels`` (binary),
    ``height``, ``width``, ``channels``, ``source_height``,
    ``source_width``, ``format``, ``orientation``, ``error`` (null, or why the
    record could not be decoded: corrupt records stay, with their reason)
    and the hash columns. Threads per task: ``num_threads`` or
    ``spark.task.cpus``.
    """
    hashes = tuple(hashes)
    settings = {"size": size, "mode": mode, "filter": filter, "hashes": hashes, "extra": options}
    names = [f.name for f in schema.fields]
    if image_column not in names:
        raise KeyError(f"column {image_column!r} not in {names}")
    # The output schema: the stage on an empty batch, in Spark's types.
    empty = pa.RecordBatch.from_arrays(
        [pa.array([], f.type) for f in _input_arrow(schema)], schema=_input_arrow(schema)
    )
    probe = ImageStage(**settings)(_rename_image(empty, image_column))
    struct, expected = _output(spark_arrow(probe).schema)

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        stage = ImageStage(num_threads=num_threads or task_cpus(), **settings)
        for batch in batches:
            decoded = stage(_rename_image(batch, image_column))
            row_bytes = max(1, int(np.prod(_shape(decoded) or (1,))))
            for part in _slices(decoded, row_bytes):
                yield spark_arrow(part, expected)

    return fn, struct


def _shape(batch: pa.RecordBatch) -> tuple | None:
    if "pixels" not in batch.schema.names:
        return None
    kind = batch.schema.field("pixels").type
    return tuple(kind.shape) if isinstance(kind, pa.FixedShapeTensorType) else None


def _rename_image(batch: pa.RecordBatch, image_column: str) -> pa.RecordBatch:
    if image_column == "image":
        return batch
    keep = [n for n in batch.schema.names if n != "image"]
    return pa.RecordBatch.from_arrays(
        [batch.column(n) for n in keep], names=["image" if n == image_column else n for n in keep]
    )


def decode_images(df: DataFrame, **options: Any) -> DataFrame:
    """``df`` through :func:`image_stage` (same options)."""
    fn, schema = image_stage(df.schema, **options)
    return df.mapInArrow(fn, schema)


def hashtag_stage(
    schema: T.StructType,
    *,
    normalizer: HashtagNormalizer | None = None,
    column: str = "caption",
    output: str = "hashtags",
) -> tuple[MapFn, T.StructType]:
    """``(fn, output_schema)``: adds ``output`` (``array<string>``), the
    normalised hashtag keys of ``column``."""
    struct = T.StructType([*schema.fields, T.StructField(output, T.ArrayType(T.StringType()))])
    expected = to_arrow_schema(struct, prefers_large_types=_large_types())

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        norm = normalizer or HashtagNormalizer()
        for batch in batches:
            if column != "caption":
                tags = _hashtag_keys(
                    pa.RecordBatch.from_arrays([batch.column(column)], names=["caption"]), norm
                )
            else:
                tags = _hashtag_keys(batch, norm)
            yield _cast(batch.append_column(output, tags), expected)

    return fn, struct


def consent_stage(
    schema: T.StructType, *, rules: tuple = DEFAULT_RULES, output: str = "drop_reason"
) -> tuple[MapFn, T.StructType]:
    """``(fn, output_schema)``: adds ``output`` (string): the first consent
    rule that drops the record, or null. Split with
    ``df.filter(col(output).isNull())`` / ``isNotNull()``."""
    struct = T.StructType([*schema.fields, T.StructField(output, T.StringType())])
    expected = to_arrow_schema(struct, prefers_large_types=_large_types())

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            reasons = consent_reasons(batch, rules)
            yield _cast(
                batch.append_column(output, pa.array(reasons.tolist(), pa.string())), expected
            )

    return fn, struct


def label_stage(
    schema: T.StructType, vocab: Vocabulary | str, *, column: str = "caption"
) -> tuple[MapFn, T.StructType]:
    """``(fn, output_schema)``: adds ``labels`` (``array<int>``),
    ``num_labels`` and ``has_label`` from ``column`` with a vocabulary (built
    on the driver from :func:`count_hashtags`)."""
    text = vocab if isinstance(vocab, str) else vocab.to_json()
    struct = T.StructType(
        [
            *schema.fields,
            T.StructField("labels", T.ArrayType(T.IntegerType())),
            T.StructField("num_labels", T.IntegerType()),
            T.StructField("has_label", T.BooleanType()),
        ]
    )
    expected = to_arrow_schema(struct, prefers_large_types=_large_types())

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        parsed = Vocabulary.from_json(text)
        threads = task_cpus()
        for batch in batches:
            labels = _label_captions(batch.column(column), parsed, num_threads=threads)
            out = batch
            for name in ("labels", "num_labels", "has_label"):
                out = out.append_column(name, labels.column(name).combine_chunks())
            yield _cast(out, expected)

    return fn, struct


def label_captions(df: DataFrame, vocab: Vocabulary | str, column: str = "caption") -> DataFrame:
    """``df`` through :func:`label_stage`."""
    fn, schema = label_stage(df.schema, vocab, column=column)
    return df.mapInArrow(fn, schema)


def extract_hashtags(df: DataFrame, **options: Any) -> DataFrame:
    """``df`` through :func:`hashtag_stage` (same options)."""
    fn, schema = hashtag_stage(df.schema, **options)
    return df.mapInArrow(fn, schema)


def apply_consent(
    df: DataFrame, rules: tuple = DEFAULT_RULES, output: str = "drop_reason"
) -> tuple[DataFrame, DataFrame]:
    """``(kept, dropped)``: the records no consent rule drops (without the
    reason column), and ``key``, ``source`` (when present) and ``reason`` of
    the others. Both derive from one tagged DataFrame (cache it to run the
    rules once)."""
    fn, schema = consent_stage(df.schema, rules=rules, output=output)
    tagged = df.mapInArrow(fn, schema)
    kept = tagged.filter(tagged[output].isNull()).drop(output)
    names = [n for n in ("key", "source") if n in df.columns]
    dropped = tagged.filter(tagged[output].isNotNull()).select(
        *names, tagged[output].alias("reason")
    )
    return kept, dropped


def _cast(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [batch.column(f.name).cast(f.type) for f in schema], schema=schema
    )


def count_hashtags(
    df: DataFrame, *, normalizer: HashtagNormalizer | None = None, column: str = "caption"
) -> HashtagCounts:
    """Distributed :func:`fastprep.count_hashtags`: partial counts per
    partition (``mapInArrow``), collected as bytes and merged on the driver;
    equal to counting everything in one process."""

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        counts = HashtagCounts()
        threads = task_cpus()
        for batch in batches:
            if batch.num_rows:
                counts.update(
                    pa.chunked_array([batch.column(0)]), normalizer or HashtagNormalizer(), threads
                )
        yield pa.RecordBatch.from_pydict({"counts": pa.array([counts.to_bytes()], pa.binary())})

    rows = df.select(column).mapInArrow(fn, "counts binary").collect()
    return distributed.merge_counts(bytes(row["counts"]) for row in rows)


# --------------------------------------------------------------------------- near-duplicates

_ENTRY_DDL = "shard int, slot smallint, key bigint, role tinyint, id bigint, hash binary"
_PAIR_DDL = "a bigint, b bigint, distance int"


def _entries(df, radius, num_shards, slot_bits, hash_column, id_column, role) -> DataFrame:
    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            table = distributed.slot_entries(
                batch.column(id_column),
                batch.column(hash_column),
                radius,
                num_shards=num_shards,
                slot_bits=slot_bits,
                role=role,
            )
            yield from table.to_batches()

    return df.select(id_column, hash_column).mapInArrow(fn, _ENTRY_DDL)


def _pairs(entries: DataFrame, radius: int, slot_bits: int, self_join: bool) -> list[pa.Table]:
    def verify(table: pa.Table) -> pa.Table:
        return distributed.verify_entries(table, radius, slot_bits=slot_bits, self_join=self_join)

    return [entries.groupBy("shard").applyInArrow(verify, _PAIR_DDL).toArrow()]


def _default_shards(df: DataFrame) -> int:
    return max(2, 4 * df.sparkSession.sparkContext.defaultParallelism)


def near_duplicate_pairs(
    df: DataFrame,
    radius: int,
    *,
    hash_column: str = "pdq",
    id_column: str = "id",
    slot_bits: int = 16,
    num_shards: int | None = None,
) -> pa.Table:
    """Every pair within ``radius`` bits: ``a, b, distance`` (``a < b``,
    values of ``id_column``), sorted. The sharded multi-index-hashing join of
    :mod:`fastprep.distributed` (``mapInArrow`` -> ``groupBy("shard")`` ->
    ``applyInArrow``): exactly :func:`fastprep.find_near_duplicates`'s pairs
    when ids are row positions. Null hashes never match."""
    num_shards = num_shards or _default_shards(df)
    entries = _entries(df, radius, num_shards, slot_bits, hash_column, id_column, "both")
    return distributed.sort_pairs(_pairs(entries, radius, slot_bits, True))


def deduplicate(
    df: DataFrame,
    radius: int,
    *,
    hash_column: str = "pdq",
    id_column: str = "id",
    rank_column: str | None = None,
    key_column: str | None = None,
    slot_bits: int = 16,
    num_shards: int | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Distributed :func:`fastprep.deduplicate`: ``(duplicates, pairs)``, as
    :func:`fastprep.ray.deduplicate` (clusters resolved on the driver from the
    pairs and the records in them)."""
    pairs = near_duplicate_pairs(
        df,
        radius,
        hash_column=hash_column,
        id_column=id_column,
        slot_bits=slot_bits,
        num_shards=num_shards,
    )
    ids = np.unique(np.concatenate([pairs.column("a").to_numpy(), pairs.column("b").to_numpy()]))
    rows = _rows_with_ids(df, id_column, ids, [c for c in (rank_column, key_column) if c])
    duplicates = distributed.resolve_duplicates(
        pairs,
        rows.column(id_column),
        rank=rows.column(rank_column).to_numpy() if rank_column else None,
        keys=rows.column(key_column) if key_column else None,
    )
    return duplicates, pairs


def _rows_with_ids(df: DataFrame, id_column: str, ids: np.ndarray, columns: list[str]) -> pa.Table:
    session = df.sparkSession
    wanted = session.createDataFrame(pa.table({id_column: pa.array(ids, pa.int64())}))
    return df.select(id_column, *columns).join(wanted, on=id_column, how="inner").toArrow()


def leak_report(
    train: DataFrame,
    evaluation: DataFrame,
    radius: int,
    *,
    hash_column: str = "pdq",
    id_column: str = "id",
    train_key_column: str | None = None,
    eval_key_column: str | None = None,
    slot_bits: int = 16,
    num_shards: int | None = None,
    broadcast_limit: int = 5_000_000,
) -> pa.Table:
    """Distributed :func:`fastprep.leak_report`: ``train_index, eval_index,
    distance`` (ids), plus ``train_key``/``eval_key`` when key columns are
    given, sorted by training id. An evaluation set of at most
    ``broadcast_limit`` records is shipped to every task (a broadcast join);
    a larger one goes through the sharded join. Both are exact."""
    if evaluation.count() <= broadcast_limit:
        reference = evaluation.select(id_column, hash_column).toArrow()
        reference_ids = reference.column(id_column).combine_chunks()
        reference_hashes = reference.column(hash_column).combine_chunks()

        def match(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            threads = task_cpus()
            for batch in batches:
                if batch.num_rows and len(reference_ids):
                    found = distributed.match_block(
                        batch.column(id_column),
                        batch.column(hash_column),
                        reference_ids,
                        reference_hashes,
                        radius,
                        num_threads=threads,
                    )
                    yield from found.to_batches()

        found = train.select(id_column, hash_column).mapInArrow(match, _PAIR_DDL).toArrow()
        pairs = distributed.sort_pairs([found], names=("train_index", "eval_index"))
    else:
        num_shards = num_shards or _default_shards(train)
        entries = _entries(
            train, radius, num_shards, slot_bits, hash_column, id_column, "probe"
        ).union(
            _entries(evaluation, radius, num_shards, slot_bits, hash_column, id_column, "index")
        )
        pairs = distributed.sort_pairs(
            _pairs(entries, radius, slot_bits, False), names=("train_index", "eval_index")
        )
    for side, df, key_column, name in (
        ("train_index", train, train_key_column, "train_key"),
        ("eval_index", evaluation, eval_key_column, "eval_key"),
    ):
        if key_column is None:
            continue
        ids = pairs.column(side).to_numpy()
        rows = _rows_with_ids(df, id_column, np.unique(ids), [key_column])
        lookup = dict(zip(rows.column(id_column).to_pylist(), rows.column(key_column).to_pylist()))
        pairs = pairs.append_column(name, pa.array([lookup[i] for i in ids.tolist()], pa.string()))
    return pairs


# --------------------------------------------------------------------------- back to tensors


def pixels_to_numpy(table: pa.Table | pa.RecordBatch, column: str = "pixels") -> np.ndarray:
    """``[N, H, W, C]`` uint8 from the binary pixel column and ``height``,
    ``width``, ``channels`` (all rows one shape; null rows give zeros)."""
    shape = _uniform_shape(table)
    pixels = table.column(column)
    if isinstance(pixels, pa.ChunkedArray):
        pixels = pixels.combine_chunks() if pixels.num_chunks != 1 else pixels.chunk(0)
    frame = int(np.prod(shape))
    out = np.zeros((len(pixels), frame), dtype=np.uint8)
    valid = pc.is_valid(pixels).to_numpy(zero_copy_only=False)
    if valid.any():
        data = b"".join(pixels.filter(pa.array(valid)).to_pylist())
        out[valid] = np.frombuffer(data, np.uint8).reshape(-1, frame)
    return out.reshape((len(pixels), *shape))


def _uniform_shape(table: pa.Table | pa.RecordBatch) -> tuple[int, int, int]:
    dims = []
    for name in ("height", "width", "channels"):
        values = pc.unique(pc.drop_null(table.column(name))).to_pylist()
        if len(values) > 1:
            raise ValueError(f"rows differ in {name}: decode with a fixed size")
        dims.append(values[0] if values else 0)
    return tuple(dims)


def to_fixed_shape_tensor(table: pa.Table | pa.RecordBatch, column: str = "pixels") -> pa.Array:
    """The binary pixel column as ``arrow.fixed_shape_tensor`` (nulls kept),
    the type ``fastprep.decode_images`` gives on one machine."""
    shape = _uniform_shape(table)
    array = pixels_to_numpy(table, column)
    pixels = table.column(column)
    valid = pc.is_valid(pixels).to_numpy(zero_copy_only=False)
    storage = pa.FixedSizeListArray.from_arrays(
        pa.array(array.reshape(-1)), int(np.prod(shape)), mask=pa.array(~valid)
    )
    kind = pa.fixed_shape_tensor(pa.uint8(), list(shape), dim_names=["H", "W", "C"])
    return pa.ExtensionArray.from_storage(kind, storage)
