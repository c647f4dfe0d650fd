"""Spark stages: fastprep's per-batch steps as ``mapInArrow`` functions
(``(fn, output_schema)``), and the DataFrame-level functions built on them
(the names :mod:`fastprep.ray` uses too)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from fastprep import distributed
from fastprep.hashtags import HashtagCounts, HashtagNormalizer, Vocabulary
from fastprep.hashtags import label_captions as _label_captions
from fastprep.pipeline.stages import DEFAULT_RULES, ImageStage, consent_reasons
from fastprep.pipeline.stages import hashtag_stage as _hashtag_keys
from fastprep.spark.resources import worker_cpus
from fastprep.spark.types import _cast, _input_arrow, _large_types, _output, _slices, spark_arrow

MapFn = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def image_stage(
    schema: T.StructType,
    *,
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
    names = [f.name for f in schema.fields]
    if image_column not in names:
        raise KeyError(f"column {image_column!r} not in {names}")
    # The output schema: the stage on an empty batch, in Spark's types.
    empty = pa.RecordBatch.from_arrays(
        [pa.array([], f.type) for f in _input_arrow(schema)], schema=_input_arrow(schema)
    )
    probe = ImageStage.from_options(**options)(_rename_image(empty, image_column))
    struct, expected = _output(spark_arrow(probe).schema)

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        stage = ImageStage.from_options(num_threads=num_threads or worker_cpus(), **options)
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
        threads = worker_cpus()
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


def count_hashtags(
    df: DataFrame, *, normalizer: HashtagNormalizer | None = None, column: str = "caption"
) -> HashtagCounts:
    """Distributed :func:`fastprep.count_hashtags`: partial counts per
    partition (``mapInArrow``), collected as bytes and merged on the driver;
    equal to counting everything in one process."""

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        counts = HashtagCounts()
        threads = worker_cpus()
        for batch in batches:
            if batch.num_rows:
                counts.update(
                    pa.chunked_array([batch.column(0)]), normalizer or HashtagNormalizer(), threads
                )
        yield pa.RecordBatch.from_pydict({"counts": pa.array([counts.to_bytes()], pa.binary())})

    rows = df.select(column).mapInArrow(fn, "counts binary").collect()
    return distributed.merge_counts(bytes(row["counts"]) for row in rows)


#: The name every engine uses: ``(kept, dropped)`` from one pass of the rules.
split_by_consent = apply_consent
