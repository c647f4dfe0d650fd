"""Spark-friendly Arrow types: Spark has no unsigned, fixed-size binary or
tensor types, so fastprep's columns cross into Spark as ``binary`` pixels
(with ``height``, ``width``, ``channels``), ``binary`` hashes, ``smallint``
for ``uint8`` and ``bigint`` holding a uint64's 64 bits."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_type, to_arrow_schema

from fastprep.tensors import binary_pixels_to_numpy

#: Largest pixel payload per output batch: Spark's binary column has 32-bit offsets.
_MAX_BATCH_BYTES = 1 << 30


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


def _cast(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [batch.column(f.name).cast(f.type) for f in schema], schema=schema
    )


def pixels_to_numpy(table: pa.Table | pa.RecordBatch, column: str = "pixels") -> np.ndarray:
    """``[N, H, W, C]`` uint8 from the binary pixel column and ``height``,
    ``width``, ``channels`` (all rows one shape; null rows give zeros)."""
    return binary_pixels_to_numpy(table, column)
