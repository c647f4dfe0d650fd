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
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fastprep.pipeline.remote import is_remote, remote_kind, remote_source

IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp",
    ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".pam", ".ico",
}  # fmt: skip
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
                else:  # nested objects pass through, as JSON text
                    row[k] = json.dumps(v, ensure_ascii=False)
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


def _source_name(path: str, root: str, absolute: bool) -> str:
    """The ``source`` column: ``path`` relative to the source root (absolute
    only on request), so outputs do not leak the machine's layout."""
    if absolute:
        return text_name(os.path.abspath(path))
    return text_name(os.path.relpath(path, root) if root else os.path.basename(path))


def _folder_records(root: str, absolute: bool = False) -> Iterator[dict[str, Any]]:
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
                source=_source_name(os.path.join(directory, name), root, absolute),
            )
            yield row


def folder_source(
    path: str | os.PathLike, batch_size: int = 256, *, absolute_paths: bool = False
) -> Iterator[pa.RecordBatch]:
    """Images under ``path`` (recursively, sorted) with sidecar captions:
    ``name.txt`` (the caption) and/or ``name.json`` (``caption`` or ``text``,
    plus metadata fields). The key is the path relative to ``path`` without
    the extension; ``source`` the image file's path relative to ``path``
    (absolute with ``absolute_paths``)."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such folder: {root}")
    return _batches(_folder_records(root, absolute_paths), batch_size)


def _expand(paths: str | os.PathLike | list) -> list[str]:
    items = paths if isinstance(paths, (list, tuple)) else [paths]
    out: list[str] = []
    for pattern in items:
        from fastprep.pipeline.remote import expand_braces

        for item in expand_braces(os.fspath(pattern)):
            matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
            if not matches or not all(os.path.exists(m) for m in matches):
                raise FileNotFoundError(f"no files match {item}")
            out.extend(matches)
    return out


def _tar_records(shard: str | IO[bytes], name: str | None = None) -> Iterator[dict[str, Any]]:
    """Records of one shard: consecutive members sharing a key form one.

    One image member is the record's ``image``; ``txt`` is the caption,
    ``json`` its metadata; every other member (``cls``, ``seg.png``, a
    second image ...) passes through as a binary column named by its
    extension, and is written back as the same member by a WebDataset sink.
    When the JSON names the record's original ``key`` (as prep's and
    img2dataset's shards do) and it escapes to the member key, it is the key.
    """
    key: str | None = None
    group: dict[str, bytes] = {}
    source = name if name is not None else str(shard)

    def record() -> dict[str, Any]:
        image_ext = next((e for e in group if "." + e in IMAGE_EXTENSIONS), None)
        row = _sidecar(group.get("txt"), group.get("json"))
        original = row.get("key")
        member_key = text_name(key or "")
        if not (isinstance(original, str) and original and tar_key(original) == member_key):
            original = member_key
        for ext, data in group.items():
            if ext not in ("txt", "json") and ext != image_ext:
                row[ext] = data
        row.update(
            key=original,
            source=text_name(source),
            image=group[image_ext] if image_ext is not None else None,
        )
        return row

    members = 0
    try:
        opened = (
            tarfile.open(shard, mode="r|*")
            if isinstance(shard, str)
            else tarfile.open(fileobj=shard, mode="r|*")  # a (remote) stream
        )
        with opened as tar:
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
        yield source_error(source, f"unreadable tar shard after {members} members: {error}")
        return
    if key is not None:
        yield record()


def tar_key(key: str) -> str:
    """A record key as a WebDataset member key: reversible and collision-free.
    ``%``, ``/``, ``.`` and ``\\`` are percent-escaped (``a/b`` -> ``a%2Fb``,
    ``a.b`` -> ``a%2Eb``, ``a_b`` stays), so no two keys share a name and a
    member name still splits into key and extension at its first dot; the
    original key is kept in the record's JSON too."""
    return "".join(_TAR_ESCAPES.get(c, c) for c in key)


def untar_key(name: str) -> str:
    """The inverse of :func:`tar_key`."""
    from urllib.parse import unquote

    return unquote(name)


_TAR_ESCAPES = {c: f"%{ord(c):02X}" for c in "%/.\\"}


def source_error(source: str, reason: str) -> dict[str, Any]:
    """A record standing for a part of the source that could not be read."""
    return {
        "key": text_name(f"{os.path.basename(source)}#unreadable"),
        "source": text_name(source),
        "image": None,
        "record_error": f"source_error: {reason}",
    }


def _glob_root(pattern: str) -> str:
    """The folder a path or glob is relative to: up to its first wildcard."""
    cut = min((pattern.index(c) for c in "*?[{" if c in pattern), default=len(pattern))
    return os.path.dirname(pattern[:cut])


def tar_source(
    paths: str | os.PathLike | list, batch_size: int = 256, *, absolute_paths: bool = False
) -> Iterator[pa.RecordBatch]:
    """WebDataset-style tar shards (paths or globs): members grouped by key
    (the name up to the first dot of the file name): one image (``key.jpg``
    ...) plus ``key.txt`` / ``key.json`` and any other members (see
    :func:`_tar_records`). Streamed member by member; a record without an
    image keeps a null image (reported as an error later). ``source`` is
    the shard's path relative to the folder of the path or glob."""
    items = paths if isinstance(paths, (list, tuple)) else [paths]
    shards = [
        (shard, _source_name(shard, _glob_root(os.fspath(item)), absolute_paths))
        for item in items
        for shard in _expand(item)
    ]
    return _batches(
        (row for shard, name in shards for row in _tar_records(shard, name)), batch_size
    )


def parquet_source(
    path: str | os.PathLike,
    *,
    image_column: str = "jpg",
    caption_column: str = "caption",
    key_column: str | None = "key",
    batch_size: int = 256,
    absolute_paths: bool = False,
) -> Iterator[pa.RecordBatch]:
    """A Parquet file or a folder of them, with a binary image column
    (img2dataset writes ``jpg``, ``caption`` and ``key``) or a Hugging Face
    ``Image`` column (``struct<bytes, path>``, as ``datasets`` exports).
    When ``image_column`` is missing, the file's only HF ``Image`` column
    (else ``image``) is used, and ``text`` when ``caption_column`` is
    missing. img2dataset's failed rows (a ``status`` other than ``success``,
    with its ``error_message`` column) are dropped as ``download_failed``.
    Other columns pass through under their own names (img2dataset's
    ``width``, ``height``, ``original_width`` ...). ``source`` is each file's
    path relative to ``path`` (absolute with ``absolute_paths``)."""
    root = os.fspath(path)
    files = (
        sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True))
        if os.path.isdir(root)
        else [root]
    )
    if not files or not os.path.exists(files[0]):
        raise FileNotFoundError(f"no Parquet files at {root}")
    base = root if os.path.isdir(root) else os.path.dirname(root)
    # Column names are checked up front on the first readable file, so a
    # misnamed column is one clear error rather than a drop per file.
    for file in files:
        try:
            schema = pq.read_schema(file)
            break
        except (pa.ArrowException, OSError):
            continue
    else:
        raise pa.ArrowInvalid(f"no readable Parquet file at {root}")
    image_column, caption_column = resolve_columns(schema, image_column, caption_column)
    offset = 0
    for file in files:
        name = _source_name(file, base, absolute_paths)
        try:
            for batch in _parquet_file_batches(
                file, (image_column, caption_column, key_column), batch_size
            ):
                yield _parquet_batch(
                    batch, name, offset, image_column, caption_column, key_column, file
                )
                offset += batch.num_rows
        except (pa.ArrowException, OSError) as error:
            # A corrupt or truncated file: rows read so far count, the rest is
            # one record saying why (the run goes on with the next file).
            yield _batch([source_error(name, f"unreadable Parquet file: {error}")])


def resolve_columns(schema: pa.Schema, image_column: str, caption_column: str) -> tuple[str, str]:
    """The image and caption columns of a table: the names asked for, else
    an HF ``Image`` column (or ``image``) and ``text``; KeyError when none."""
    from fastprep.arrow_input import is_hf_image_type

    names = schema.names
    if image_column not in names:
        hf = [f.name for f in schema if is_hf_image_type(f.type)]
        image_column = hf[0] if len(hf) == 1 else "image" if "image" in names else image_column
    if caption_column not in names and "text" in names:
        caption_column = "text"
    for name in (image_column, caption_column):
        if name not in names:
            raise KeyError(f"column {name!r} not in {names}")
    return image_column, caption_column


def image_bytes(column: pa.Array | pa.ChunkedArray, folder: str = "") -> pa.Array:
    """An image column as ``binary``: binary-like columns cast, an HF
    ``Image`` struct by its ``bytes`` (rows holding only a ``path`` are read
    from it, relative to ``folder``)."""
    from fastprep.arrow_input import is_hf_image_type

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not is_hf_image_type(column.type):
        return column.cast(pa.binary())
    data = pc.struct_field(column, "bytes").cast(pa.binary())
    if column.type.get_field_index("path") < 0 or not pc.any(pc.is_null(data)).as_py():
        return data
    paths = pc.struct_field(column, "path").to_pylist()
    out = []
    for blob, path in zip(data.to_pylist(), paths):
        if blob is None and path:
            full = path if os.path.isabs(path) else os.path.join(folder, path)
            blob = _read_if_exists(full)
        out.append(blob)
    return pa.array(out, pa.binary())


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
    name: str,
    offset: int,
    image_column: str,
    caption_column: str,
    key_column: str | None,
    file: str = "",
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
        "source": pa.array([name] * n, pa.string()),
        "image": image_bytes(batch.column(image_column), os.path.dirname(file)),
        "caption": batch.column(caption_column).cast(pa.string()),
    }
    for column in names:
        if column not in (image_column, caption_column, key_column) and column not in columns:
            columns[column] = batch.column(column)
    failed = download_failures(batch)
    if failed is not None:
        columns["record_error"] = failed
    return pa.RecordBatch.from_pydict(columns)


def download_failures(batch: pa.RecordBatch) -> pa.Array | None:
    """img2dataset's failed downloads (``status`` other than ``success``,
    next to its ``error_message`` column) as ``download_failed: MESSAGE``
    record errors, null for the rest; None when the batch is not img2dataset's."""
    names = batch.schema.names
    if "status" not in names or "error_message" not in names:
        return None
    status = batch.column("status").cast(pa.string())
    message = pc.fill_null(batch.column("error_message").cast(pa.string()), "")
    failed = pc.fill_null(pc.not_equal(status, "success"), True)
    why = pc.if_else(pc.equal(message, ""), pc.fill_null(status, "null"), message)
    reason = pc.binary_join_element_wise("download_failed: ", why, "")
    return pc.if_else(failed, reason, pa.scalar(None, pa.string()))


def is_table_source(source: Any) -> bool:
    """Arrow data the prep job reads as a table source: a pyarrow table or
    reader, any ``__arrow_c_stream__`` producer (polars, duckdb, arro3 ...)
    or a Hugging Face ``Dataset``/``IterableDataset``."""
    from fastprep.arrow_input import is_arrow_producer

    if isinstance(source, (str, os.PathLike, pa.RecordBatch)):
        return False
    if type(source).__module__.startswith("ray."):
        return False  # a Ray dataset: the Ray engine reads it itself
    hf = type(source).__module__.startswith("datasets.") and hasattr(source, "with_format")
    return hf or isinstance(source, (pa.Table, pa.RecordBatchReader)) or is_arrow_producer(source)


def table_source(
    source: Any,
    *,
    image_column: str = "jpg",
    caption_column: str = "caption",
    key_column: str | None = "key",
    batch_size: int = 256,
    name: str = "<table>",
    **_: Any,
) -> Iterator[pa.RecordBatch]:
    """Batches of a table source (see :func:`is_table_source`) in the source
    layout, streamed: a reader or stream is read batch by batch, an HF
    dataset through ``with_format("arrow")``. Columns are resolved as for
    Parquet (:func:`resolve_columns`); keys default to row numbers."""
    if type(source).__module__.startswith("datasets.") and hasattr(source, "with_format"):
        tables = source.with_format("arrow").iter(batch_size=batch_size)
        batches: Iterator[pa.RecordBatch] = (b for t in tables for b in t.to_batches())
        schema = None
    elif isinstance(source, pa.Table):
        batches = iter(source.to_batches(max_chunksize=batch_size))
        schema = source.schema
    else:
        reader = (
            source
            if isinstance(source, pa.RecordBatchReader)
            else pa.RecordBatchReader.from_stream(source)
        )
        batches, schema = iter(reader), reader.schema
    offset = 0
    columns: tuple[str, str] | None = None
    for batch in batches:
        if columns is None:
            columns = resolve_columns(schema or batch.schema, image_column, caption_column)
        for start in range(0, batch.num_rows, batch_size):
            piece = batch.slice(start, batch_size)
            yield _parquet_batch(piece, name, offset, *columns, key_column)
            offset += piece.num_rows


def source_kind(spec: str | os.PathLike) -> str:
    """``"folder"``, ``"tar"`` or ``"parquet"``: how :func:`open_source` reads ``spec``."""
    text = os.fspath(spec)
    if is_remote(text):
        return remote_kind(text)
    if os.path.isdir(text) and not glob.glob(os.path.join(text, "*.parquet")):
        return "folder"
    if text.endswith((".tar", ".tar.gz", ".tgz")) or (
        any(c in text for c in "*?[{") and ".tar" in text
    ):
        return "tar"
    return "parquet"


def open_source(spec: str | os.PathLike, **options: Any) -> Iterator[pa.RecordBatch]:
    """A folder, tar shard(s) (path, glob or brace pattern ending in .tar),
    or Parquet; local, or any fsspec URL (``s3://``, ``gs://``,
    ``https://``, ``hf://``: :mod:`fastprep.pipeline.remote`)."""
    if is_remote(os.fspath(spec)):
        return remote_source(os.fspath(spec), **options)
    kind = source_kind(spec)
    if kind == "folder":
        return folder_source(
            spec,
            batch_size=options.get("batch_size", 256),
            absolute_paths=options.get("absolute_paths", False),
        )
    if kind == "tar":
        return tar_source(
            spec,
            batch_size=options.get("batch_size", 256),
            absolute_paths=options.get("absolute_paths", False),
        )
    return parquet_source(spec, **options)


def count_records(spec: str | os.PathLike) -> int | None:
    """How many records ``spec`` holds, from listings only: folder entries,
    Parquet footers, tar headers (None when a source cannot be listed)."""
    if is_remote(os.fspath(spec)):
        return None  # listing a bucket to count it costs as much as reading it
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
