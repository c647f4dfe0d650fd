"""Pixel columns back to ``arrow.fixed_shape_tensor``, the type fastprep
writes, from whatever an engine turned them into: Ray's own tensor types
(``ArrowTensorType``/``ArrowTensorTypeV2``), plain ``fixed_size_list`` or
``list`` columns, or Spark's ``binary`` pixels with ``height``, ``width``
and ``channels`` columns. One function for every engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["binary_pixels_to_numpy", "to_fixed_shape_tensor"]


def _tensor_type(shape: tuple, value_type: pa.DataType) -> pa.DataType:
    names = ["H", "W", "C"] if len(shape) == 3 else None
    return pa.fixed_shape_tensor(value_type, list(shape), dim_names=names)


def _column_to_tensor(column: Any, shape: tuple | None = None) -> pa.Array | pa.ChunkedArray:
    """A pixel column as ``arrow.fixed_shape_tensor`` (the type fastprep writes).

    Accepts Ray's own tensor columns (``ArrowTensorType``/``ArrowTensorTypeV2``,
    made when a UDF returns numpy arrays), a ``fixed_size_list`` (with
    ``shape``) or a column that already has the type (returned unchanged).
    Null rows stay null.
    """
    if isinstance(column, pa.ChunkedArray):
        chunks = [_column_to_tensor(c, shape) for c in column.chunks]
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


def _uniform_shape(table: pa.Table | pa.RecordBatch) -> tuple[int, int, int]:
    dims = []
    for name in ("height", "width", "channels"):
        values = pc.unique(pc.drop_null(table.column(name))).to_pylist()
        if len(values) > 1:
            raise ValueError(f"rows differ in {name}: decode with a fixed size")
        dims.append(values[0] if values else 0)
    return (dims[0], dims[1], dims[2])


def binary_pixels_to_numpy(table: pa.Table | pa.RecordBatch, column: str = "pixels") -> np.ndarray:
    """``[N, H, W, C]`` uint8 from a binary pixel column and ``height``,
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


def _binary_to_tensor(table: pa.Table | pa.RecordBatch, column: str) -> pa.Array:
    shape = _uniform_shape(table)
    array = binary_pixels_to_numpy(table, column)
    valid = pc.is_valid(table.column(column)).to_numpy(zero_copy_only=False)
    storage = pa.FixedSizeListArray.from_arrays(
        pa.array(array.reshape(-1)), int(np.prod(shape)), mask=pa.array(~valid)
    )
    return pa.ExtensionArray.from_storage(_tensor_type(shape, pa.uint8()), storage)


def to_fixed_shape_tensor(
    data: Any, shape: tuple | None = None, *, column: str = "pixels"
) -> pa.Array | pa.ChunkedArray:
    """A pixel column as ``arrow.fixed_shape_tensor`` (null rows stay null).

    ``data`` is the column itself (Ray's tensor types, a ``fixed_size_list``
    or ``list`` with ``shape``, or one that already has the type: returned
    unchanged), or a table holding ``column``. A ``binary`` column (as Spark
    stages return pixels) takes its shape from the table's ``height``,
    ``width`` and ``channels`` columns.
    """
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        values = data.column(column)
        if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
            return _binary_to_tensor(data, column)
        return _column_to_tensor(values, shape)
    return _column_to_tensor(data, shape)
