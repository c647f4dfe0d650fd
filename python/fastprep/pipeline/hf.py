"""Shards in the layout Hugging Face ``datasets`` reads (``hf_datasets=True``,
``fastprep prep --hf-datasets``; needs ``fastprep[hf]``).

``datasets`` (5.x) only honours a file's ``huggingface`` schema metadata for
a column whose Arrow type is exactly the feature's, and it has no
equivalent for Arrow's canonical ``arrow.fixed_shape_tensor``. So the HF
layout writes, with the features in the schema metadata:

* pixels as ``Array3D(shape=(H, W, 3), dtype="uint8")`` (datasets' own
  extension type, nested lists over the same bytes);
* encoded images (``jpg``/``webp``) as ``Image()``: ``struct<bytes, path>``;
* ``labels`` as ``List(ClassLabel(names=vocabulary tags))`` (``int64`` ids).

``datasets.load_dataset("parquet" | "arrow", data_files=...)`` then loads
every shard with these features; WebDataset shards load with
``load_dataset("webdataset", ...)`` in either layout (images by extension,
labels in the JSON). The default layout stays Arrow-canonical (what
fastprep's DataLoader, pyarrow, Ray and Spark read without a copy).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa


def _array3d(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    from datasets.features.features import Array3DExtensionType

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    shape = tuple(int(d) for d in column.type.shape)
    height, width, channels = shape
    n = len(column)
    values = column.storage.flatten()  # the pixel bytes, honouring any slice offset
    if n * height * width * channels >= 2**31:
        raise ValueError("a shard over 2 GiB of pixels does not fit datasets' Array3D lists")
    pixels = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * height * width * channels + 1, channels, dtype=np.int32)), values
    )
    rows = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * height * width + 1, width, dtype=np.int32)), pixels
    )
    images = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * height + 1, height, dtype=np.int32)), rows
    )
    kind = Array3DExtensionType(shape, "uint8")
    return pa.ExtensionArray.from_storage(kind, images.cast(kind.storage_type))


def _image_struct(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return pa.StructArray.from_arrays(
        [column.cast(pa.binary()), pa.nulls(len(column), pa.string())], names=["bytes", "path"]
    )


def hf_layout(table: pa.Table, image_column: str, tags: list[str]) -> pa.Table:
    """``table`` (one output shard) in datasets' layout, with its features
    in the ``huggingface`` schema metadata (see the module docstring)."""
    import datasets

    columns = {}
    for name in table.schema.names:
        column = table.column(name)
        if name == image_column and isinstance(column.type, pa.FixedShapeTensorType):
            columns[name] = _array3d(column)
        elif name == image_column:
            columns[name] = _image_struct(column)
        elif name == "labels":
            columns[name] = column.cast(pa.list_(pa.int64()))
        else:
            columns[name] = column
    out = pa.table(columns)
    features = datasets.Features.from_arrow_schema(out.schema)
    if image_column in features and not isinstance(out.schema.field(image_column).type,
                                                   pa.ExtensionType):  # fmt: skip
        features[image_column] = datasets.Image()
    if "labels" in features:
        features["labels"] = datasets.List(datasets.ClassLabel(names=list(tags)))
    metadata = dict(out.schema.metadata or {})
    metadata[b"huggingface"] = json.dumps({"info": {"features": features.to_dict()}}).encode()
    return out.replace_schema_metadata(metadata)
