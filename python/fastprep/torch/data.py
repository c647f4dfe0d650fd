"""Random-access (map-style) views of what the loader can read, as one
Arrow table per dataset: a batch is ``table.take(indices)``.

A row holds either encoded bytes, a file path, or prepared pixels (the
``pixels`` tensor column ``fastprep prep`` writes), plus optional ``key``,
``caption``, class ``target`` and ``labels`` columns.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fastprep.arrow_input import arrow_table
from fastprep.pipeline.io import read_arrow
from fastprep.pipeline.sources import IMAGE_EXTENSIONS, source_kind, text_name
from fastprep.tensors import as_fixed_shape_tensor, nested_shape

IMAGE_COLUMNS = ("jpg", "jpeg", "webp", "png", "ppm", "image")


@dataclass
class MapSource:
    """``table`` rows are samples; ``image_column`` holds bytes, paths
    (``kind="path"``) or fixed-shape pixels (``kind="pixels"``)."""

    table: pa.Table
    image_column: str
    kind: str  # "bytes" | "path" | "pixels"
    classes: list[str] | None = None

    def __len__(self) -> int:
        return self.table.num_rows

    def has(self, column: str | None) -> bool:
        return column is not None and column in self.table.schema.names

    def take(self, indices: np.ndarray) -> pa.Table:
        """The rows at ``indices``. Large encoded images (raw pixels: a
        PPM store's 260 KB a record) are not copied: the image column is
        the chosen records as one-row slices of the table's own buffers."""
        if not self._large_images():
            return self.table.take(pa.array(indices, pa.int64()))
        column = self.table.column(self.image_column)
        chunks = [chunk for i in indices.tolist() for chunk in column.slice(i, 1).chunks]
        images = pa.chunked_array(chunks, type=column.type)
        rest = self.table.drop_columns([self.image_column]).take(pa.array(indices, pa.int64()))
        position = self.table.schema.get_field_index(self.image_column)
        field = self.table.schema.field(self.image_column)
        return rest.add_column(position, field, images)

    def _large_images(self) -> bool:
        """Encoded images averaging over 64 KB: a copy costs more than the
        slices (~2 us a record)."""
        if self.kind != "bytes":
            return False
        rows = max(1, self.table.num_rows)
        return bool(self.table.column(self.image_column).nbytes / rows > (64 << 10))

    def paths(self, rows: pa.Table) -> list[str]:
        """File paths of ``rows`` (``kind="path"``), as the OS spells them."""
        column = rows.column(self.image_column)
        if pa.types.is_binary(column.type):
            return [os.fsdecode(p) for p in column.to_pylist()]
        return column.to_pylist()


def _sidecar_caption(base: str) -> str | None:
    if os.path.exists(base + ".txt"):
        with open(base + ".txt", encoding="utf-8", errors="replace") as f:
            return f.read()
    if os.path.exists(base + ".json"):
        try:
            with open(base + ".json", encoding="utf-8-sig") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        if isinstance(data, dict):
            value = data.get("caption", data.get("text"))
            return None if value is None else str(value)
    return None


def folder(root: str) -> MapSource:
    """Images under ``root`` (sorted), captions from sidecars, and class
    targets when the layout is torchvision's ImageFolder (every image one
    level down, in a folder per class)."""
    paths = sorted(
        os.path.join(directory, name)
        for directory, _, files in os.walk(root)
        for name in files
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
    )
    if not paths:
        raise FileNotFoundError(f"no images under {root}")
    relative = [os.path.relpath(p, root) for p in paths]
    keys = [text_name(os.path.splitext(r)[0]) for r in relative]
    columns: dict[str, Any] = {
        "key": pa.array(keys, pa.string()),
        # Bytes: a path need not be UTF-8 (see MapSource.paths).
        "path": pa.array([os.fsencode(p) for p in paths], pa.binary()),
    }
    captions = [_sidecar_caption(os.path.splitext(p)[0]) for p in paths]
    if any(c is not None for c in captions):
        columns["caption"] = pa.array(captions, pa.string())
    parts = [r.split(os.sep) for r in relative]
    classes = None
    if all(len(p) == 2 for p in parts):
        classes = sorted({p[0] for p in parts})
        index = {c: i for i, c in enumerate(classes)}
        columns["target"] = pa.array([index[p[0]] for p in parts], pa.int64())
    return MapSource(pa.table(columns), "path", "path", classes)


def parquet(path: str, image_column: str | None = None) -> MapSource:
    """Parquet file(s), memory-mapped. Raw corpora need an image bytes column
    (``jpg``, ``webp``, ``png`` or ``image`` unless named); prepared shards
    from ``fastprep prep`` have ``pixels`` and ``labels``."""
    manifest = os.path.join(path, "manifest.json")
    if os.path.isdir(path) and os.path.exists(manifest):
        # A `fastprep prep` output folder: its shards, not its side tables.
        with open(manifest, encoding="utf-8") as f:
            outputs = json.load(f)["outputs"]
        files = [
            os.path.join(path, o["file"])
            for o in outputs
            if o["file"].endswith((".parquet", ".arrow"))
        ]
    elif os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    else:
        files = [path]
    if not files:
        raise FileNotFoundError(f"no Parquet or Arrow shards at {path}")
    tables = [
        read_arrow(f) if f.endswith(".arrow") else pq.read_table(f, memory_map=True) for f in files
    ]
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    return from_table(table, image_column)


def from_table(table: pa.Table, image_column: str | None = None) -> MapSource:
    """Rows of ``table``: ``pixels`` (prepared shards) or an image bytes column.
    Pixels in nested fixed-size lists (prep's default, Hugging Face
    ``datasets`` layout) are re-typed as a fixed-shape tensor over the same
    buffer: no copy."""
    names = table.schema.names
    column = image_column or ("pixels" if "pixels" in names else None)
    column = column or next((c for c in IMAGE_COLUMNS if c in names), None)
    if column is None or column not in names:
        raise KeyError(f"no image column ({image_column or ', '.join(IMAGE_COLUMNS)}) in {names}")
    if nested_shape(table.schema.field(column).type) is not None:
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, as_fixed_shape_tensor(table.column(column)))
    is_tensor = isinstance(table.schema.field(column).type, pa.FixedShapeTensorType)
    return MapSource(table, column, "pixels" if is_tensor else "bytes")


def from_samples(samples: Sequence[tuple[str, int]], classes: list[str] | None) -> MapSource:
    """torchvision ``DatasetFolder.samples``: ``(path, class_index)`` pairs."""
    paths = [os.fspath(p) for p, _ in samples]
    return MapSource(
        pa.table(
            {
                "key": pa.array([text_name(p) for p in paths], pa.string()),
                "path": pa.array([os.fsencode(p) for p in paths], pa.binary()),
                "target": pa.array([int(t) for _, t in samples], pa.int64()),
            }
        ),
        "path",
        "path",
        classes,
    )


def open_map_source(data: Any, image_column: str | None = None) -> MapSource:
    """Any map-style input: a folder, Parquet file(s), a pyarrow Table, or a
    list of paths or encoded images."""
    if isinstance(data, MapSource):
        return data
    if isinstance(data, pa.Table):
        return from_table(data, image_column)
    table = arrow_table(data, views=False)  # HF datasets, polars/duckdb/arro3 tables
    if table is not None:
        return from_table(table, image_column)
    if isinstance(data, (str, os.PathLike)):
        text = os.fspath(data)
        if not os.path.exists(text):
            raise FileNotFoundError(f"no such dataset: {text}")
        kind = source_kind(text)
        if kind == "folder":
            return folder(text)
        if kind == "parquet":
            return parquet(text, image_column)
        raise TypeError(f"{text} is a stream (tar shards): use streaming=True")
    items = list(data)
    if items and all(isinstance(i, (str, os.PathLike)) for i in items):
        paths = [os.fspath(i) for i in items]
        return MapSource(
            pa.table(
                {
                    "key": pa.array([text_name(p) for p in paths], pa.string()),
                    "path": pa.array([os.fsencode(p) for p in paths], pa.binary()),
                }
            ),
            "path",
            "path",
        )
    if items and all(isinstance(i, (bytes, bytearray, memoryview)) for i in items):
        return MapSource(
            pa.table(
                {
                    "key": [str(i) for i in range(len(items))],
                    "image": pa.array([bytes(i) for i in items], pa.binary()),
                }
            ),
            "image",
            "bytes",
        )
    raise TypeError(f"cannot read a dataset from {type(data).__name__}")


def is_hf_dataset(data: Any) -> bool:
    """A Hugging Face ``datasets.Dataset`` or ``IterableDataset`` (checked
    without importing datasets)."""
    return any(
        c.__module__.startswith("datasets.") and c.__name__ in ("Dataset", "IterableDataset")
        for c in type(data).__mro__
    )


def _iterable_problem(dataset: Any) -> str | None:
    """Why an HF ``IterableDataset`` cannot be read as its Arrow table (then
    torch's loader runs it), or None: only a plain one (e.g.
    ``Dataset.to_iterable_dataset()``) is its rows in order; ``.map``,
    ``.filter``, ``.shuffle`` and formats change what it yields."""
    steps = type(getattr(dataset, "_ex_iterable", None)).__name__
    format_type = getattr(getattr(dataset, "_formatting", None), "format_type", None)
    if format_type is not None:
        return f"an IterableDataset with the {format_type!r} format"
    if steps != "ArrowExamplesIterable":
        return f"an IterableDataset with .map/.filter/.shuffle steps ({steps})"
    return None


def _global_names(code: Any) -> list[str]:
    """Names ``code`` and the code nested in it (comprehensions before
    Python 3.12, inner functions) may read as globals, in order."""
    names = list(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names += [n for n in _global_names(const) if n not in names]
    return names


def _torchvision_objects(function: Any) -> list[Any]:
    """torchvision transforms a ``set_transform`` function uses (its closure
    and the globals it names)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return []
    seen: list[Any] = [c.cell_contents for c in function.__closure__ or ()]
    names = getattr(function, "__globals__", {})
    seen += [names[n] for n in _global_names(code) if n in names]
    found = []
    for value in seen:
        module = type(value).__module__
        inner = getattr(value, "transforms", None)
        if module.startswith("torchvision.transforms") or (
            inner is not None and type(inner).__module__.startswith("torchvision.transforms")
        ):
            found.append(value)
    return found


def from_hf_dataset(
    dataset: Any, image_column: str | None = None, probe: bool = False
) -> tuple[MapSource, dict[str, str], Any]:
    """A ``datasets.Dataset`` read from its Arrow table: ``(source, output
    key -> column, torchvision transform)``. The image column is the
    ``Image`` feature (``struct<bytes, path>``), targets the ``ClassLabel``.
    A ``set_transform``/``with_transform`` function is translated when it
    applies one torchvision transform to the images: its output keys are
    learnt from one sample it transforms (the image's key gets the decoded
    tensors, every other key must be a column it passes through)."""
    iterable = not hasattr(dataset, "_format_type")  # an IterableDataset
    problem = _iterable_problem(dataset) if iterable else None
    if problem is not None:
        raise TypeError(problem)
    features = dataset.features or {}
    images = [name for name, f in features.items() if type(f).__name__ == "Image"]
    column = image_column or (images[0] if len(images) == 1 else None)
    if column is None or column not in features:
        raise KeyError(f"no single Image feature to read (columns: {list(features)})")
    format_type = getattr(dataset, "_format_type", None)
    if format_type not in (None, "custom"):
        raise TypeError(f"a datasets format {format_type!r} (use the plain dataset)")
    function = (getattr(dataset, "_format_kwargs", None) or {}).get("transform")
    transform = None
    if function is not None:
        found = _torchvision_objects(function)
        if len(found) != 1:
            raise ValueError("a set_transform function without one torchvision transform in it")
        transform = found[0]
    others = [n for n in features if n != column]
    if function is None:
        keys = {column: "\0image", **{n: n for n in others}}
    else:
        sample = dataset[0]
        raw = dataset.with_format(None)[0]
        keys = {}
        for key, value in sample.items():
            if hasattr(value, "shape") and getattr(value, "dim", lambda: 0)() == 3:
                keys[key] = "\0image"
            elif key in raw and key != column and raw[key] == value:
                keys[key] = key
            else:
                raise ValueError(f"set_transform output {key!r} is neither the image nor a column")
        if list(keys.values()).count("\0image") != 1:
            raise ValueError("set_transform output has no single image tensor")
    if probe:
        return MapSource(pa.table({}), column, "bytes"), keys, transform
    if iterable:  # streamed to its end: the rows, in order
        from fastprep.arrow_input import _hf_table

        table = _hf_table(dataset, column)[0]
    else:
        table = dataset.data.table if hasattr(dataset.data, "table") else dataset.data
    indices = getattr(dataset, "_indices", None)
    if indices is not None:
        table = table.take(indices.column(0))
    struct = table.column(column).combine_chunks()
    data = struct.field("bytes") if pa.types.is_struct(struct.type) else struct
    columns: dict[str, Any] = {n: table.column(n) for n in others}
    columns["key"] = pa.array([str(i) for i in range(table.num_rows)], pa.string())
    if data.null_count == len(data) and pa.types.is_struct(struct.type):
        paths = struct.field("path").to_pylist()
        columns["path"] = pa.array([os.fsencode(p) for p in paths], pa.binary())
        return MapSource(pa.table(columns), "path", "path"), keys, transform
    if data.null_count:
        paths = struct.field("path").to_pylist()
        filled = []
        for value, path in zip(data.to_pylist(), paths):
            if value is None:
                with open(path, "rb") as f:
                    value = f.read()
            filled.append(value)
        data = pa.array(filled, pa.binary())
    columns["\0image"] = data
    return MapSource(pa.table(columns), "\0image", "bytes"), keys, transform
