"""Sources: stream records as Arrow batches with bounded memory.

Every batch has ``key`` (string), ``source`` (where it came from), ``image``
(binary, the encoded file) and ``caption`` (string, nullable), plus any
metadata columns a sidecar or table provides (e.g. ``is_public``).
"""

from __future__ import annotations

import glob
import json
import os
import queue
import tarfile
import threading
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
BASE_FIELDS = [
    pa.field("key", pa.string()),
    pa.field("source", pa.string()),
    pa.field("image", pa.binary()),
    pa.field("caption", pa.string()),
]


def text_name(name: str) -> str:
    """A file name as valid UTF-8 text: names that are not UTF-8 on disk
    (``os`` hands them over with surrogate escapes) keep their bytes as
    ``\\xNN`` escapes, so keys stay unique and Arrow can hold them."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def _batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    """Rows to a batch; metadata keys beyond the base fields become columns."""
    extra = sorted({k for r in rows for k in r} - {f.name for f in BASE_FIELDS})
    columns = {f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in BASE_FIELDS}
    for name in extra:
        values = [r.get(name) for r in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            # Mixed types across sidecars (true here, "yes" there): keep them
            # all, as JSON text, rather than fail the batch.
            columns[name] = pa.array(
                [None if v is None else json.dumps(v) for v in values], pa.string()
            )
    return pa.RecordBatch.from_pydict(columns)


def _sidecar(text: bytes | None, meta: bytes | None) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if meta is not None:
        try:
            data = json.loads(meta.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            # Consent may live in this file: the record is dropped, not kept blind.
            row["record_error"] = f"bad_metadata: unreadable JSON sidecar: {error}"
            data = {}
        if not isinstance(data, dict):
            row["record_error"] = "bad_metadata: JSON sidecar is not an object"
        else:
            for k, v in data.items():
                if k in ("caption", "text"):
                    row["caption"] = None if v is None else str(v)
                elif isinstance(v, (bool, int, float, str)) or v is None:
                    row[k] = v
                elif isinstance(v, list) and all(isinstance(x, (bool, int, float, str)) for x in v):
                    row[k] = v  # e.g. the label ids prep writes into WebDataset shards
    if text is not None:
        row["caption"] = text.decode("utf-8", errors="replace")
    return row


def _batches(rows: Iterator[dict[str, Any]], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Groups records into batches of at most `batch_size`."""
    pending: list[dict[str, Any]] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= batch_size:
            yield _batch(pending)
            pending = []
    if pending:
        yield _batch(pending)


def _read_if_exists(path: str) -> bytes | None:
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def _folder_records(root: str) -> Iterator[dict[str, Any]]:
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            base = os.path.join(directory, stem)
            row = _sidecar(_read_if_exists(base + ".txt"), _read_if_exists(base + ".json"))
            row.update(
                image=_read_if_exists(os.path.join(directory, name)),
                key=text_name(os.path.relpath(base, root)),
                source=text_name(os.path.join(directory, name)),
            )
            yield row


def folder_source(path: str | os.PathLike, batch_size: int = 256) -> Iterator[pa.RecordBatch]:
    """Images under ``path`` (recursively, sorted) with sidecar captions:
    ``name.txt`` (the caption) and/or ``name.json`` (``caption`` or ``text``,
    plus metadata fields). The key is the path relative to ``path`` without
    the extension."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such folder: {root}")
    return _batches(_folder_records(root), batch_size)


def _expand(paths: str | os.PathLike | list) -> list[str]:
    items = paths if isinstance(paths, (list, tuple)) else [paths]
    out: list[str] = []
    for item in items:
        item = os.fspath(item)
        matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise FileNotFoundError(f"no files match {item}")
        out.extend(matches)
    return out


def _tar_records(shard: str) -> Iterator[dict[str, Any]]:
    """Records of one shard: consecutive members sharing a key form one."""
    key: str | None = None
    group: dict[str, bytes] = {}

    def record() -> dict[str, Any]:
        image = next((group[e] for e in group if "." + e in IMAGE_EXTENSIONS), None)
        row = _sidecar(group.get("txt"), group.get("json"))
        row.update(key=text_name(key or ""), source=text_name(shard), image=image)
        return row

    members = 0
    try:
        with tarfile.open(shard, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                directory, base = os.path.split(member.name)
                stem, _, ext = base.partition(".")
                member_key = f"{directory}/{stem}" if directory else stem
                if member_key != key:
                    if key is not None:
                        yield record()
                    key, group = member_key, {}
                data = tar.extractfile(member)
                group[ext.lower()] = data.read() if data is not None else b""
                members += 1
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        # A truncated or corrupt shard: what was read counts, and the rest
        # is one record that says why it could not be read.
        if key is not None:
            yield record()
        yield source_error(shard, f"unreadable tar shard after {members} members: {error}")
        return
    if key is not None:
        yield record()


def source_error(source: str, reason: str) -> dict[str, Any]:
    """A record standing for a part of the source that could not be read."""
    return {
        "key": text_name(f"{os.path.basename(source)}#unreadable"),
        "source": text_name(source),
        "image": None,
        "record_error": f"source_error: {reason}",
    }


def tar_source(paths: str | os.PathLike | list, batch_size: int = 256) -> Iterator[pa.RecordBatch]:
    """WebDataset-style tar shards (paths or globs): members grouped by key
    (the name up to the first dot of the file name): one image (``key.jpg``
    ...) plus ``key.txt`` / ``key.json``. Streamed member by member; a record
    without an image keeps a null image (reported as an error later)."""
    shards = _expand(paths)
    return _batches((row for shard in shards for row in _tar_records(shard)), batch_size)


def parquet_source(
    path: str | os.PathLike,
    *,
    image_column: str = "jpg",
    caption_column: str = "caption",
    key_column: str | None = "key",
    batch_size: int = 256,
) -> Iterator[pa.RecordBatch]:
    """A Parquet file or a folder of them, with a binary image column
    (img2dataset writes ``jpg``, ``caption`` and ``key``). Other columns pass
    through."""
    root = os.fspath(path)
    files = (
        sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True))
        if os.path.isdir(root)
        else [root]
    )
    if not files or not os.path.exists(files[0]):
        raise FileNotFoundError(f"no Parquet files at {root}")
    # Column names are checked up front on the first readable file, so a
    # misnamed column is one clear error rather than a drop per file.
    for file in files:
        try:
            names = pq.read_schema(file).names
            break
        except (pa.ArrowException, OSError):
            continue
    else:
        raise pa.ArrowInvalid(f"no readable Parquet file at {root}")
    for name in (image_column, caption_column):
        if name not in names:
            raise KeyError(f"column {name!r} not in {names}")
    offset = 0
    for file in files:
        try:
            for batch in _parquet_file_batches(
                file, (image_column, caption_column, key_column), batch_size
            ):
                yield _parquet_batch(batch, file, offset, image_column, caption_column, key_column)
                offset += batch.num_rows
        except (pa.ArrowException, OSError) as error:
            # A corrupt or truncated file: rows read so far count, the rest is
            # one record saying why (the run goes on with the next file).
            yield _batch([source_error(file, f"unreadable Parquet file: {error}")])


def _parquet_file_batches(file: str, needed: tuple, batch_size: int) -> Iterator[pa.RecordBatch]:
    # Streamed without pre-buffering: memory stays near one batch whatever
    # the file's size (measured: with pyarrow's default pre_buffer=True the
    # reader kept every column chunk it had read, ~3.3 KB per record here).
    reader = pq.ParquetFile(file, pre_buffer=False)
    names = reader.schema_arrow.names
    missing = [n for n in needed[:2] if n not in names]
    if missing:
        raise pa.ArrowInvalid(f"columns {missing} missing (has {names})")
    yield from reader.iter_batches(batch_size=batch_size)


def _parquet_batch(
    batch: pa.RecordBatch,
    file: str,
    offset: int,
    image_column: str,
    caption_column: str,
    key_column: str | None,
) -> pa.RecordBatch:
    """A Parquet batch in the source layout: key, source, image, caption, rest."""
    names = batch.schema.names
    n = batch.num_rows
    if key_column and key_column in names:
        keys = batch.column(key_column).cast(pa.string())
    else:
        keys = pa.array([str(i) for i in range(offset, offset + n)], pa.string())
    columns = {
        "key": keys,
        "source": pa.array([text_name(file)] * n, pa.string()),
        "image": batch.column(image_column).cast(pa.binary()),
        "caption": batch.column(caption_column).cast(pa.string()),
    }
    for name in names:
        if name not in (image_column, caption_column, key_column) and name not in columns:
            columns[name] = batch.column(name)
    return pa.RecordBatch.from_pydict(columns)


def source_kind(spec: str | os.PathLike) -> str:
    """``"folder"``, ``"tar"`` or ``"parquet"``: how :func:`open_source` reads ``spec``."""
    text = os.fspath(spec)
    if os.path.isdir(text) and not glob.glob(os.path.join(text, "*.parquet")):
        return "folder"
    if text.endswith((".tar", ".tar.gz", ".tgz")) or (
        any(c in text for c in "*?[") and ".tar" in text
    ):
        return "tar"
    return "parquet"


def open_source(spec: str | os.PathLike, **options: Any) -> Iterator[pa.RecordBatch]:
    """A folder, tar shard(s) (path or glob ending in .tar), or Parquet."""
    kind = source_kind(spec)
    if kind == "folder":
        return folder_source(spec, batch_size=options.get("batch_size", 256))
    if kind == "tar":
        return tar_source(spec, batch_size=options.get("batch_size", 256))
    return parquet_source(spec, **options)


def count_records(spec: str | os.PathLike) -> int | None:
    """How many records ``spec`` holds, from listings only: folder entries,
    Parquet footers, tar headers (None when a source cannot be listed)."""
    kind = source_kind(spec)
    text = os.fspath(spec)
    if kind == "folder":
        return sum(
            1
            for _, _, files in os.walk(text)
            for name in files
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    if kind == "parquet":
        files = (
            sorted(glob.glob(os.path.join(text, "**", "*.parquet"), recursive=True))
            if os.path.isdir(text)
            else [text]
        )
        try:
            return sum(pq.read_metadata(f).num_rows for f in files)
        except (OSError, pa.ArrowException):
            return None
    if kind == "tar":
        # Headers only: a seekable tar is listed without reading its data.
        try:
            total = 0
            for shard in _expand(text):
                with tarfile.open(shard) as tar:
                    keys: list[str] = []
                    for member in tar:
                        if member.isfile():
                            directory, base = os.path.split(member.name)
                            stem = base.partition(".")[0]
                            key = f"{directory}/{stem}" if directory else stem
                            if not keys or keys[-1] != key:
                                keys.append(key)
                    total += len(keys)
            return total
        except (OSError, tarfile.TarError):
            return None
    return None


_DONE = object()


def prefetch(batches: Iterable[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Reads up to ``depth`` batches ahead in a background thread, so file
    I/O overlaps the (GIL-free) Rust work on the current batch. Errors in the
    reader are raised here, in order; closing the iterator stops the reader."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            put(error)

    reader = threading.Thread(target=read, name="fastprep-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
