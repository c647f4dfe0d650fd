"""Where ``source`` paths are written relative to (no local paths in the
outputs unless ``absolute_sources``)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa


def source_root(source: Any, absolute: bool = False) -> str | None:
    """The folder a path source's ``source`` values are made relative to:
    the folder itself, or the common folder of the files a path or glob
    names. None (paths kept) with ``absolute`` or for non-path sources."""
    if absolute or not isinstance(source, (str, os.PathLike)):
        return None
    text = os.path.abspath(os.fspath(source))
    if os.path.isdir(text):
        return text
    matches = sorted(glob.glob(text)) if any(c in text for c in "*?[") else [text]
    folders = [os.path.dirname(m) for m in matches] or [os.path.dirname(text)]
    return os.path.commonpath(folders)


def relative_sources(batches: Iterable[Any], root: str) -> Iterator[Any]:
    """Source batches with ``source`` made relative to ``root`` (run on the
    driver, where the source is read, so every engine writes the same)."""
    for batch in batches:
        if not isinstance(batch, (pa.RecordBatch, pa.Table)) or "source" not in batch.schema.names:
            yield batch
            continue
        values = batch.column("source").to_pylist()
        relative = [
            None if s is None else os.path.relpath(os.path.abspath(s), root) for s in values
        ]
        index = batch.schema.get_field_index("source")
        yield batch.set_column(index, "source", pa.array(relative, pa.string()))
