"""Image inputs from any Arrow producer, without copying their buffers.

:func:`fastprep.decode_images` (and everything built on it: the prep job,
the DataLoader) accepts, besides lists of paths or bytes:

* any object exporting the Arrow PyCapsule interface: ``__arrow_c_stream__``
  (pyarrow tables and readers, polars ``Series``/``DataFrame``, duckdb
  relations, arro3 and nanoarrow streams) or ``__arrow_c_array__`` (arrays
  and record batches of pyarrow, arro3, nanoarrow). Importing through the C
  data interface moves the producer's buffers, it never copies them;
* ``binary``, ``large_binary`` and ``binary_view`` image columns (decoded in
  place by the Rust core); string columns are refused (paths go as a list);
* tables, record batches and record-batch readers: the image column is
  ``column=`` when given, else the only binary column, else a Hugging Face
  ``Image`` column, else the first of :data:`IMAGE_COLUMNS`; a reader is
  read to its end (streamed sources of the prep job are read batch by batch
  instead, see :func:`fastprep.pipeline.sources.open_source`);
* Hugging Face ``Image`` columns (``struct<bytes: binary, path: string>``):
  the ``bytes`` child is used in place; rows holding only a ``path`` are
  read from that path;
* Hugging Face ``datasets.Dataset`` / ``IterableDataset`` objects (their
  Arrow table; the first ``Image`` feature unless ``column=``).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

#: Column names tried, in order, when a table has several binary columns.
IMAGE_COLUMNS = ("image", "jpg", "jpeg", "png", "webp", "ppm", "img")

__all__ = [
    "IMAGE_COLUMNS",
    "arrow_column",
    "arrow_table",
    "as_image_input",
    "is_arrow_producer",
    "is_hf_image_type",
    "is_table_like",
    "to_pyarrow",
]


def is_arrow_producer(obj: Any) -> bool:
    """True for objects that export Arrow data through the PyCapsule interface."""
    return hasattr(obj, "__arrow_c_stream__") or hasattr(obj, "__arrow_c_array__")


def is_hf_image_type(kind: pa.DataType) -> bool:
    """The Arrow type of a Hugging Face ``Image`` column: ``struct<bytes, path>``."""
    if not pa.types.is_struct(kind):
        return False
    names = {kind.field(i).name for i in range(kind.num_fields)}
    return "bytes" in names and names <= {"bytes", "path"}


def _is_bytes_type(kind: pa.DataType) -> bool:
    return (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_binary_view(kind)
        or pa.types.is_fixed_size_binary(kind)
    )


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("datasets.") and hasattr(obj, "with_format")


def _hf_table(dataset: Any, column: str | None) -> tuple[pa.Table, str | None]:
    """A ``datasets`` Dataset/IterableDataset as a pyarrow table (the
    memory-mapped table itself when no index mapping is set)."""
    if column is None:
        features = getattr(dataset, "features", None) or {}
        column = next((n for n, f in features.items() if type(f).__name__ == "Image"), None)
    if hasattr(dataset, "data") and getattr(dataset, "_indices", None) is None:
        table = dataset.data.table  # the Arrow table datasets memory-maps: no copy
    elif hasattr(dataset, "__len__"):
        table = dataset.with_format("arrow")[:]
    else:  # IterableDataset: streamed to its end
        parts = list(dataset.with_format("arrow").iter(batch_size=1024))
        table = pa.concat_tables(parts) if parts else pa.table({})
    return table, column


def _to_pyarrow(obj: Any) -> pa.Array | pa.ChunkedArray | pa.Table | pa.RecordBatch:
    """Any Arrow producer as the matching pyarrow object, zero-copy."""
    if isinstance(obj, (pa.Array, pa.ChunkedArray, pa.Table, pa.RecordBatch)):
        return obj
    if isinstance(obj, pa.RecordBatchReader):
        return obj.read_all()
    if hasattr(obj, "__arrow_c_stream__"):
        return pa.chunked_array(obj)  # a table-like stream gives struct chunks
    return pa.array(obj)  # __arrow_c_array__: an array, or a record batch as a struct


#: Public name: any Arrow producer as the matching pyarrow object, zero-copy.
to_pyarrow = _to_pyarrow


def _pick_column(names: list[str], types: list[pa.DataType], column: str | None) -> str:
    if column is not None:
        if column not in names:
            raise KeyError(f"column {column!r} not in {names}")
        return column
    binary = [n for n, t in zip(names, types) if _is_bytes_type(t)]
    if len(binary) == 1:
        return binary[0]
    hf = [n for n, t in zip(names, types) if is_hf_image_type(t)]
    if len(hf) == 1:
        return hf[0]
    for name in IMAGE_COLUMNS:
        if name in names:
            return name
    raise TypeError(f"cannot tell the image column among {names}: pass column=")


def _column_of(data: Any, column: str | None) -> pa.ChunkedArray:
    """One column of a table-like value (a table, a batch, struct chunks)."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        name = _pick_column(data.schema.names, data.schema.types, column)
        return data.column(name)
    if isinstance(data, pa.Array):
        data = pa.chunked_array([data], type=data.type)
    kind = data.type
    if pa.types.is_struct(kind) and not is_hf_image_type(kind):
        names = [kind.field(i).name for i in range(kind.num_fields)]
        name = _pick_column(names, [kind.field(i).type for i in range(kind.num_fields)], column)
        # struct_field honours each chunk's offset; the children are sliced, not copied.
        chunks = [pc.struct_field(chunk, name) for chunk in data.chunks]
        return pa.chunked_array(chunks, type=kind.field(name).type)
    if column is not None:
        raise TypeError(f"column={column!r} given, but the input is one {kind} column")
    return data


def arrow_column(data: Any, column: str | None = None) -> pa.ChunkedArray:
    """One column of any Arrow producer as a pyarrow ChunkedArray, zero-copy:
    the producer itself when it is one column, else its ``column`` (a
    table-like stream is read to its end)."""
    return _column_of(_to_pyarrow(data), column)


def is_table_like(obj: Any) -> bool:
    """A Hugging Face dataset, a pyarrow table/batch/reader, or a producer
    of a table-like Arrow stream or array (a struct type): what
    :func:`arrow_table` converts. Checked without reading any data."""
    if _is_hf_dataset(obj) or isinstance(obj, (pa.Table, pa.RecordBatch, pa.RecordBatchReader)):
        return True
    if isinstance(obj, (pa.Array, pa.ChunkedArray)) or not is_arrow_producer(obj):
        return False
    capsule: Any = None
    try:
        if hasattr(obj, "__arrow_c_schema__"):
            capsule = obj.__arrow_c_schema__()
        elif hasattr(obj, "__arrow_c_array__"):
            capsule = obj.__arrow_c_array__()[0]  # the schema half; no data is read
    except (pa.ArrowException, TypeError, ValueError, NotImplementedError):
        return False
    if capsule is not None:
        try:
            return pa.types.is_struct(pa.DataType._import_from_c_capsule(capsule))
        except (pa.ArrowException, TypeError, ValueError):
            return False
    # A stream without a schema method: table-like objects name their columns
    # (polars DataFrame, duckdb relations); a series or array does not.
    return hasattr(obj, "columns") or hasattr(obj, "column_names")


def arrow_table(obj: Any, views: bool = True) -> pa.Table | None:
    """A table-like input (:func:`is_table_like`) as a pyarrow Table without
    copying its buffers (an HF dataset's memory-mapped table; a reader or
    stream read to its end); None for anything else.

    ``views=False`` casts ``binary_view``/``string_view`` columns (polars'
    layout) to ``binary``/``string``: one copy, for readers that take rows
    at random (pyarrow's ``take`` has no kernel for view types), where no
    zero-copy path exists."""
    if not is_table_like(obj):
        return None
    if _is_hf_dataset(obj):
        table = _hf_table(obj, None)[0]
    elif isinstance(obj, pa.RecordBatch):
        table = pa.Table.from_batches([obj])
    elif isinstance(obj, pa.RecordBatchReader):
        table = obj.read_all()
    else:
        table = pa.table(obj)
    if not views:
        plain = {pa.binary_view(): pa.binary(), pa.string_view(): pa.string()}
        if any(t in plain for t in table.schema.types):
            table = table.cast(
                pa.schema([f.with_type(plain.get(f.type, f.type)) for f in table.schema])
            )
    return table


def _hf_images(column: pa.ChunkedArray) -> tuple[str, Any]:
    """An HF ``Image`` column: its ``bytes`` child, in place, unless some row
    only names a file (then every row as bytes, read from disk where needed)."""
    has_path = column.type.get_field_index("path") >= 0
    data = pa.chunked_array(
        [pc.struct_field(chunk, "bytes") for chunk in column.chunks],
        type=column.type.field("bytes").type,
    )
    missing = pc.sum(pc.is_null(data)).as_py() or 0
    if not has_path or missing == 0:
        return "arrow", data
    paths = pa.chunked_array([pc.struct_field(c, "path") for c in column.chunks]).to_pylist()
    out: list[bytes] = []
    for blob, path in zip(data.to_pylist(), paths):
        if blob is None and path:
            with open(path, "rb") as f:
                blob = f.read()
        out.append(blob or b"")
    return "bytes", out


def as_image_input(images: Any, column: str | None = None) -> tuple[str, Any] | None:
    """``(kind, data)`` for :func:`fastprep.decode_images` when ``images`` is
    Arrow data (see the module docstring), else None. ``kind`` is
    ``"arrow"`` (a pyarrow ChunkedArray of binary-like values sharing the
    producer's buffers) or ``"bytes"``."""
    if _is_hf_dataset(images):
        images, column = _hf_table(images, column)
    elif not (isinstance(images, pa.RecordBatchReader) or is_arrow_producer(images)):
        if column is not None:
            raise TypeError(f"column= needs a table-like input, got {type(images).__name__}")
        return None
    data = _column_of(_to_pyarrow(images), column)
    kind = data.type
    if pa.types.is_dictionary(kind):
        data = data.cast(kind.value_type)
        kind = data.type
    if is_hf_image_type(kind):
        return _hf_images(data)
    if pa.types.is_fixed_size_binary(kind):
        data = data.cast(pa.binary())  # a rare layout: copied into offsets form
    elif not _is_bytes_type(kind):
        # Strings are refused, not guessed to be paths: pass paths as a list.
        raise TypeError(
            f"expected a binary, large_binary or binary_view image column "
            f"(or an HF Image struct), got {kind}"
        )
    return "arrow", data
