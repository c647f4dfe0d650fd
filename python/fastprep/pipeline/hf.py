"""Shards in the layout Hugging Face ``datasets`` loads: the default of
``prep`` (``hf_datasets=True``; ``hf_datasets=False`` /
``fastprep prep --no-hf-datasets`` writes the Arrow-canonical layout).
Writing it needs no ``datasets``: the features are written as JSON here.

``datasets`` (5.x) only honours a file's ``huggingface`` schema metadata for
a column whose Arrow type is exactly the feature's, and it has no
equivalent for Arrow's canonical ``arrow.fixed_shape_tensor``. So this
layout writes, with the features in the schema metadata:

* pixels as nested fixed-size lists, ``fixed_size_list<fixed_size_list<
  fixed_size_list<uint8>[3]>[W]>[H]`` (the feature
  ``List(List(List(Value("uint8"), length=3), length=W), length=H)``, which
  ``datasets`` formats as ``[N, H, W, 3]`` arrays and can cast to
  ``Array3D``). The type has no offsets: its one data buffer is the same
  contiguous pixel bytes as the tensor's, built without a copy, and
  :func:`fastprep.pixels_to_numpy` and the DataLoader view it in place
  (:func:`fastprep.tensors.as_fixed_shape_tensor`). ``datasets``' own
  ``Array3D`` would add three int32 offset buffers (~1.3x the pixel bytes
  in an Arrow IPC file), a 2 GiB limit per shard, and a row ``take`` ~70x
  slower;
* encoded images (``jpg``/``webp``) as ``Image()``: ``struct<bytes, path>``
  (the bytes child is the binary column itself);
* ``labels`` as ``List(ClassLabel(names=vocabulary tags))`` (``int64`` ids).

``datasets.load_dataset("parquet" | "arrow", data_files=...)`` then loads
every shard with these features; WebDataset shards load with
``load_dataset("webdataset", ...)`` in either layout (images by extension,
labels in the JSON).
"""

from __future__ import annotations

import json

import pyarrow as pa

from fastprep.tensors import nested_pixel_lists

#: The type of a ``datasets`` ``Image`` feature.
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

_DTYPES = {
    pa.null(): "null",
    pa.bool_(): "bool",
    pa.int8(): "int8",
    pa.int16(): "int16",
    pa.int32(): "int32",
    pa.int64(): "int64",
    pa.uint8(): "uint8",
    pa.uint16(): "uint16",
    pa.uint32(): "uint32",
    pa.uint64(): "uint64",
    pa.float16(): "float16",
    pa.float32(): "float32",
    pa.float64(): "float64",
    pa.date32(): "date32",
    pa.date64(): "date64",
    pa.binary(): "binary",
    pa.large_binary(): "large_binary",
    pa.string(): "string",
    pa.large_string(): "large_string",
    pa.binary_view(): "binary_view",
    pa.string_view(): "string_view",
}


def _dtype(kind: pa.DataType) -> str | None:
    """``datasets``' dtype string of a primitive Arrow type (its
    ``_arrow_to_datasets_dtype``), None when it has none."""
    if kind in _DTYPES:
        return _DTYPES[kind]
    if pa.types.is_dictionary(kind):
        return _dtype(kind.value_type)
    if pa.types.is_time32(kind) or pa.types.is_time64(kind):
        return f"{kind}"  # time32[s], time64[us] ...
    if pa.types.is_timestamp(kind):
        return f"timestamp[{kind.unit}, tz={kind.tz}]" if kind.tz else f"timestamp[{kind.unit}]"
    if pa.types.is_duration(kind):
        return f"duration[{kind.unit}]"
    if pa.types.is_decimal128(kind) or pa.types.is_decimal256(kind):
        width = 128 if pa.types.is_decimal128(kind) else 256
        return f"decimal{width}({kind.precision}, {kind.scale})"
    if pa.types.is_fixed_size_binary(kind):
        return f"fixed_size_binary[{kind.byte_width}]"
    return None


def feature(kind: pa.DataType) -> dict | None:
    """The ``datasets`` feature (as its ``to_dict`` JSON) that an Arrow type
    loads as (``generate_from_arrow_type``), None for types it has no
    feature for (extension types, maps, unions)."""
    if pa.types.is_struct(kind):
        fields = {kind.field(i).name: feature(kind.field(i).type) for i in range(kind.num_fields)}
        return None if any(f is None for f in fields.values()) else fields
    if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        inner = feature(kind.value_type)
        if inner is None:
            return None
        if pa.types.is_large_list(kind):
            return {"feature": inner, "_type": "LargeList"}
        if pa.types.is_fixed_size_list(kind):
            return {"feature": inner, "length": kind.list_size, "_type": "List"}
        return {"feature": inner, "_type": "List"}
    if isinstance(kind, pa.ExtensionType):
        return None
    dtype = _dtype(kind)
    return None if dtype is None else {"dtype": dtype, "_type": "Value"}


def _image_struct(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """An encoded image column as ``datasets``' ``Image`` struct; its
    ``bytes`` child is each chunk itself (cast to ``binary`` when it is
    another binary type)."""
    chunks = []
    for chunk in column.chunks:
        data = chunk if chunk.type == pa.binary() else chunk.cast(pa.binary())
        chunks.append(
            pa.StructArray.from_arrays(
                [data, pa.nulls(len(data), pa.string())],
                fields=list(IMAGE_TYPE),
                mask=data.is_null() if data.null_count else None,
            )
        )
    return pa.chunked_array(chunks, type=IMAGE_TYPE)


def hf_layout(table: pa.Table, image_column: str, tags: list[str]) -> pa.Table:
    """``table`` (one output shard) in datasets' layout, with its features
    in the ``huggingface`` schema metadata (see the module docstring).
    Pixel and image bytes are not copied."""
    columns = {}
    for name in table.schema.names:
        column = table.column(name)
        if name == image_column and isinstance(column.type, pa.FixedShapeTensorType):
            columns[name] = nested_pixel_lists(column)
        elif name == image_column and name != "pixels":  # encoded images
            columns[name] = _image_struct(column)
        elif name == "labels":
            columns[name] = column.cast(pa.list_(pa.int64()))
        else:
            columns[name] = column
    out = pa.table(columns)
    features = {}
    for field in out.schema:
        described = feature(field.type)
        if described is not None:
            features[field.name] = described
    if image_column in features and out.schema.field(image_column).type == IMAGE_TYPE:
        features[image_column] = {"_type": "Image"}
    if "labels" in features:
        classes = {"names": list(tags), "_type": "ClassLabel"}
        features["labels"] = {"feature": classes, "_type": "List"}
    metadata = dict(table.schema.metadata or {})
    metadata[b"huggingface"] = json.dumps({"info": {"features": features}}).encode()
    return out.replace_schema_metadata(metadata)
