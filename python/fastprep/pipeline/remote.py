"""Remote sources and outputs through fsspec (``pip install 'fastprep[remote]'``).

Any URL fsspec knows is a source: ``s3://`` (s3fs), ``gs://`` (gcsfs),
``http(s)://`` (aiohttp), ``hf://datasets/...`` (huggingface_hub), with the
same three layouts as local paths: a folder of images with sidecars, tar
shards, Parquet files. Globs (``*``) and brace patterns
(``shards-{000..099}.tar``, expanded with ``braceexpand``) name many shards.

Every remote file is read as a stream through :class:`RetryingReader`: a
bounded buffer (``block_size``, 4 MiB by default) with read-ahead by
fsspec's cache; a read that fails on a transient error (a dropped
connection, a timeout, a 5xx) is retried from the same offset with
exponential backoff, so a shard is never re-read from its start, and
memory stays bounded by the buffer. A file that still fails after
``retries`` attempts (or is missing or forbidden) becomes one
``source_error`` record, as a corrupt local shard does, and the run goes on.

Connection settings are fsspec's: ``storage_options`` in
``PrepSettings.source_options`` (Python), or fsspec's environment variables
(``FSSPEC_S3_ENDPOINT_URL=http://...``, ``AWS_ACCESS_KEY_ID`` ...) for the
CLI.

Outputs: a remote ``out_dir`` is prepared in a local working folder (under
``$FASTPREP_REMOTE_STAGING`` or the user cache, one per URL, so ``--resume``
continues on the same machine) and then uploaded file by file, with
``manifest.json`` last: object stores have no rename, so the manifest is
the commit (a folder without one holds no finished run).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from typing import Any

#: Errors that are never retried: the file is not there, or not ours.
PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_remote(spec: Any) -> bool:
    """True for a URL with a protocol other than ``file://``."""
    if not isinstance(spec, str) or "://" not in spec:
        return False
    return spec.split("://", 1)[0].lower() not in ("", "file")


def filesystem(url: str, storage_options: dict | None = None) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path within it."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("remote sources need fsspec: pip install 'fastprep[remote]'") from error
    del fsspec
    return url_to_fs(url, **(storage_options or {}))


def _unstrip(fs: Any, path: str) -> str:
    return fs.unstrip_protocol(path)


def expand_braces(pattern: str) -> list[str]:
    """``a-{000..002}.tar`` -> three names (``braceexpand``'s rules)."""
    if "{" not in pattern:
        return [pattern]
    try:
        from braceexpand import braceexpand
    except ImportError as error:  # pragma: no cover
        raise ImportError("brace patterns need braceexpand: pip install braceexpand") from error
    return list(braceexpand(pattern))


def expand(spec: str | list, storage_options: dict | None = None) -> list[str]:
    """Remote URLs (or patterns, brace-expanded then globbed) as full URLs,
    in order; FileNotFoundError when a pattern matches nothing."""
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    out: list[str] = []
    for item in items:
        for url in expand_braces(os.fspath(item)):
            fs, path = filesystem(url, storage_options)
            if any(c in path for c in "*?["):
                found = sorted(fs.glob(path))
                if not found:
                    raise FileNotFoundError(f"no files match {url}")
                out.extend(_unstrip(fs, p) for p in found)
            else:
                out.append(url)
    return out


def remote_kind(spec: str, storage_options: dict | None = None) -> str:
    """``folder``, ``tar`` or ``parquet`` for a remote spec, like
    :func:`fastprep.pipeline.sources.source_kind`."""
    name = spec.rstrip("/")
    if name.endswith((".tar", ".tar.gz", ".tgz")) or (
        ".tar" in name and any(c in name for c in "*?[{")
    ):
        return "tar"
    if name.endswith(".parquet") or (".parquet" in name and any(c in name for c in "*?[{")):
        return "parquet"
    fs, path = filesystem(spec, storage_options)
    files = fs.find(path)
    if any(f.endswith(".parquet") for f in files):
        return "parquet"
    if files and all(f.endswith((".tar", ".tar.gz", ".tgz")) for f in files):
        return "tar"
    return "folder"


class RetryingReader(io.RawIOBase):
    """A seekable, read-only stream of one remote file that survives
    transient errors: a failed read reopens the file at the same offset
    (up to ``retries`` times, ``backoff * 2**attempt`` seconds apart)."""

    def __init__(
        self,
        url: str,
        storage_options: dict | None = None,
        *,
        retries: int = 5,
        backoff: float = 0.2,
        block_size: int = 4 << 20,
    ) -> None:
        super().__init__()
        self.url, self.retries, self.backoff, self.block_size = url, retries, backoff, block_size
        self.fs, self.path = filesystem(url, storage_options)
        self.position = 0
        self.file: Any = None
        self.size: int | None = None
        self.retried = 0  # how many transient errors were recovered

    def _attempt(self, action):
        error: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                if self.file is None:
                    self.file = self.fs.open(self.path, "rb", block_size=self.block_size)
                    if self.position:
                        self.file.seek(self.position)
                return action(self.file)
            except PERMANENT:
                raise
            except Exception as caught:  # transient: reopen at the same offset
                error = caught
                self._drop()
                if attempt < self.retries:
                    self.retried += 1
                    time.sleep(self.backoff * 2**attempt)
        raise OSError(f"{self.url}: failed after {self.retries} retries: {error}") from error

    def _drop(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            try:
                file.close()
            except Exception:
                pass

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._attempt(lambda f: f.read(len(view)))
        view[: len(data)] = data
        self.position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self.position
        elif whence == io.SEEK_END:
            if self.size is None:
                self.size = int(self._attempt(lambda f: f.size))
            offset += self.size
        self.position = max(0, offset)
        if self.file is not None:
            self.file.seek(self.position)
        return self.position

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        self._drop()
        super().close()


def open_stream(url: str, storage_options: dict | None = None, **options: Any) -> io.BufferedReader:
    """A buffered, retrying stream of ``url`` (see :class:`RetryingReader`)."""
    raw = RetryingReader(url, storage_options, **options)
    return io.BufferedReader(raw, buffer_size=1 << 20)


def read_bytes(url: str, storage_options: dict | None = None) -> bytes | None:
    """All of a (small) remote file, with retries; None when it is missing."""
    try:
        with open_stream(url, storage_options) as f:
            return f.read()
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------- sources


def remote_source(spec: str | list, **options: Any) -> Iterator:
    """Record batches of a remote folder, tar shards or Parquet (the same
    layouts and columns as the local readers, ``source`` relative to the
    URL's folder)."""
    from fastprep.pipeline import sources

    storage = options.pop("storage_options", None)
    batch_size = options.pop("batch_size", 256)
    first = spec[0] if isinstance(spec, (list, tuple)) else spec
    kind = remote_kind(first, storage)
    if kind == "tar":
        return sources._batches(_tar_rows(spec, storage), batch_size)
    if kind == "folder":
        return sources._batches(_folder_rows(os.fspath(first), storage), batch_size)
    return _parquet_batches(spec, storage, batch_size, options)


def _root(url: str) -> str:
    cut = min((url.index(c) for c in "*?[{" if c in url), default=len(url))
    return url[:cut].rsplit("/", 1)[0]


def _relative(url: str, root: str) -> str:
    return url[len(root) :].lstrip("/") if url.startswith(root) else url.rsplit("/", 1)[-1]


def _tar_rows(spec: str | list, storage: dict | None) -> Iterator[dict]:
    from fastprep.pipeline import sources

    items = spec if isinstance(spec, (list, tuple)) else [spec]
    for item in items:
        root = _root(os.fspath(item))
        for url in expand(item, storage):
            name = _relative(url, root)
            try:
                stream = open_stream(url, storage)
            except (OSError, ValueError) as error:
                yield sources.source_error(name, f"unreadable tar shard: {error}")
                continue
            with stream:
                yield from sources._tar_records(stream, name)


def _folder_rows(url: str, storage: dict | None) -> Iterator[dict]:
    from fastprep.pipeline import sources

    fs, root = filesystem(url, storage)
    root = root.rstrip("/")
    files = sorted(fs.find(root))
    present = set(files)
    for path in files:
        stem, ext = os.path.splitext(path)
        if ext.lower() not in sources.IMAGE_EXTENSIONS:
            continue

        def side(suffix: str, stem: str = stem) -> bytes | None:
            found = stem + suffix
            return read_bytes(_unstrip(fs, found), storage) if found in present else None

        relative = path[len(root) :].lstrip("/")
        try:
            row = sources._sidecar(side(".txt"), side(".json"))
            image = read_bytes(_unstrip(fs, path), storage)
        except OSError as error:
            yield sources.source_error(relative, f"unreadable file: {error}")
            continue
        row.update(
            image=image,
            key=sources.text_name(os.path.splitext(relative)[0]),
            source=sources.text_name(relative),
        )
        yield row


def _parquet_batches(
    spec: str | list, storage: dict | None, batch_size: int, options: dict
) -> Iterator:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fastprep.pipeline import sources

    options.pop("absolute_paths", None)
    image_column = options.get("image_column", "jpg")
    caption_column = options.get("caption_column", "caption")
    key_column = options.get("key_column", "key")
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    urls: list[tuple[str, str]] = []
    for item in items:
        text = os.fspath(item)
        if text.endswith(".parquet") or any(c in text for c in "*?[{"):
            root = _root(text)
            urls.extend((u, _relative(u, root)) for u in expand(text, storage))
        else:  # a folder: its Parquet files, recursively
            fs, path = filesystem(text, storage)
            found = sorted(f for f in fs.find(path) if f.endswith(".parquet"))
            if not found:
                raise FileNotFoundError(f"no Parquet files at {text}")
            urls.extend((_unstrip(fs, f), f[len(path.rstrip("/")) :].lstrip("/")) for f in found)
    columns: tuple[str, str] | None = None
    offset = 0
    for url, name in urls:
        try:
            with open_stream(url, storage) as stream:
                reader = pq.ParquetFile(stream, pre_buffer=False)
                if columns is None:
                    columns = sources.resolve_columns(
                        reader.schema_arrow, image_column, caption_column
                    )
                for batch in reader.iter_batches(batch_size=batch_size):
                    yield sources._parquet_batch(batch, name, offset, *columns, key_column)
                    offset += batch.num_rows
        except (pa.ArrowException, OSError) as error:
            yield sources._batch([sources.source_error(name, f"unreadable Parquet file: {error}")])


# ---------------------------------------------------------------------- outputs


def local_workdir(url: str) -> str:
    """Where a run for the remote ``url`` is prepared on this machine (the
    same folder for the same URL, so a resumed run finds its staged parts)."""
    base = os.environ.get("FASTPREP_REMOTE_STAGING") or os.path.join(
        os.path.expanduser("~"), ".cache", "fastprep", "remote"
    )
    digest = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
    return os.path.join(base, digest)


def remote_has_run(url: str, storage_options: dict | None = None) -> bool:
    fs, path = filesystem(url, storage_options)
    return bool(fs.exists(path.rstrip("/") + "/manifest.json"))


def upload_run(local: str, url: str, storage_options: dict | None = None) -> list[str]:
    """Uploads a finished run folder to ``url``: every file but the staging
    folder, ``manifest.json`` last (the commit). Returns the uploaded names."""
    fs, root = filesystem(url, storage_options)
    root = root.rstrip("/")
    names = []
    for directory, dirs, files in os.walk(local):
        dirs[:] = sorted(d for d in dirs if d != "_staging")
        for name in sorted(files):
            relative = os.path.relpath(os.path.join(directory, name), local)
            if relative != "manifest.json" and not name.endswith(".tmp"):
                names.append(relative)
    names.append("manifest.json")
    for relative in names:
        target = f"{root}/{relative.replace(os.sep, '/')}"
        for attempt in range(5):
            try:
                fs.put_file(os.path.join(local, relative), target)
                break
            except PERMANENT:
                raise
            except Exception:
                if attempt == 4:
                    raise
                time.sleep(0.2 * 2**attempt)
    return names
