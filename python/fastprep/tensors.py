"""Pixel columns back to ``arrow.fixed_shape_tensor``, the type fastprep
decodes to, from whatever an engine or a file turned them into: Ray's own
tensor types (``ArrowTensorType``/``ArrowTensorTypeV2``), the nested
fixed-size lists of prep's default (Hugging Face ``datasets``) shards,
plain ``fixed_size_list`` or ``list`` columns, or Spark's ``binary`` pixels
with ``height``, ``width`` and ``channels`` columns. One function for every
engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "as_fixed_shape_tensor",
    "binary_pixels_to_numpy",
    "nested_pixel_lists",
    "nested_shape",
    "to_fixed_shape_tensor",
]


def _tensor_type(shape: tuple, value_type: pa.DataType) -> pa.DataType:
    names = ["H", "W", "C"] if len(shape) == 3 else None
    return pa.fixed_shape_tensor(value_type, list(shape), dim_names=names)


def nested_shape(kind: pa.DataType) -> tuple[int, ...] | None:
    """``(H, W, C)`` of a nested ``fixed_size_list`` of a primitive type
    (``fixed_size_list<fixed_size_list<fixed_size_list<uint8>[C]>[W]>[H]``,
    prep's default pixel column), else None."""
    shape = []
    while pa.types.is_fixed_size_list(kind):
        shape.append(kind.list_size)
        kind = kind.value_type
    if len(shape) < 2 or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return None
    return tuple(shape)


def _leaf_type(kind: pa.DataType) -> pa.DataType:
    while pa.types.is_fixed_size_list(kind):
        kind = kind.value_type
    return kind


def _nested_type(shape: tuple, value_type: pa.DataType) -> pa.DataType:
    kind = value_type
    for size in reversed(shape):
        kind = pa.list_(kind, int(size))
    return kind


def _tensor_from_nested(array: pa.Array, shape: tuple) -> pa.Array:
    """One chunk of nested fixed-size lists as a fixed-shape tensor over
    the same value buffer (no copy; row nulls kept)."""
    values, start, length = array, 0, len(array)
    for size in shape:
        # ``values`` ignores its parent's offset: index it from the parent's.
        start, length = (values.offset + start) * size, length * size
        values = values.values
    leaf = values.slice(start, length)
    mask = array.is_null() if array.null_count else None
    storage = pa.FixedSizeListArray.from_arrays(leaf, int(np.prod(shape)), mask=mask)
    return pa.ExtensionArray.from_storage(_tensor_type(shape, leaf.type), storage)


def as_fixed_shape_tensor(column: Any) -> pa.Array | pa.ChunkedArray:
    """A pixel column as ``arrow.fixed_shape_tensor`` without copying its
    pixels: returned as it is when it has that type, re-typed over the
    same value buffer when it is nested fixed-size lists (prep's default
    shards, see :mod:`fastprep.pipeline.hf`). Other types raise TypeError."""
    if isinstance(column, pa.ChunkedArray):
        if isinstance(column.type, pa.FixedShapeTensorType):
            return column
        shape = nested_shape(column.type)
        if shape is None:
            raise TypeError(f"not a fixed-shape pixel column: {column.type}")
        kind = _tensor_type(shape, _leaf_type(column.type))
        return pa.chunked_array([as_fixed_shape_tensor(c) for c in column.chunks], type=kind)
    if isinstance(column.type, pa.FixedShapeTensorType):
        return column
    shape = nested_shape(column.type)
    if shape is None:
        raise TypeError(f"not a fixed-shape pixel column: {column.type}")
    return _tensor_from_nested(column, shape)


def nested_pixel_lists(column: Any) -> pa.Array | pa.ChunkedArray:
    """A fixed-shape tensor column as nested fixed-size lists
    (``[H][W][C]``, the type ``datasets`` reads), over the same value buffer."""
    if isinstance(column, pa.ChunkedArray):
        kind = _nested_type(tuple(column.type.shape), column.type.value_type)
        return pa.chunked_array([nested_pixel_lists(c) for c in column.chunks], type=kind)
    shape = tuple(int(d) for d in column.type.shape)
    storage = column.storage
    frame = int(np.prod(shape))
    values = storage.values.slice(storage.offset * frame, len(storage) * frame)
    for size in reversed(shape[1:]):
        values = pa.FixedSizeListArray.from_arrays(values, size)
    mask = storage.is_null() if storage.null_count else None
    return pa.FixedSizeListArray.from_arrays(values, shape[0], mask=mask)


def _column_to_tensor(column: Any, shape: tuple | None = None) -> pa.Array | pa.ChunkedArray:
    """A pixel column as ``arrow.fixed_shape_tensor`` (the type fastprep writes).

    Accepts Ray's own tensor columns (``ArrowTensorType``/``ArrowTensorTypeV2``,
    made when a UDF returns numpy arrays), nested fixed-size lists (prep's
    default shards; no copy), a ``fixed_size_list`` (with ``shape``) or a
    column that already has the type (returned unchanged). Null rows stay
    null.
    """
    nested = nested_shape(column.type)
    if nested is not None and (shape is None or tuple(shape) == nested):
        return as_fixed_shape_tensor(column)
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

    ``data`` is the column itself (Ray's tensor types, nested fixed-size
    lists as prep's default shards hold pixels, a ``fixed_size_list`` or
    ``list`` with ``shape``, or one that already has the type: returned
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
