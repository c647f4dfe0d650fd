"""Checks that run before any work, each failing with one line in the
command line's own terms (``--out``, ``--resume``...)."""

from __future__ import annotations

import errno
import glob
import os
import tempfile

from fastprep.errors import FastprepError


class CommandError(FastprepError):
    """A user-facing error: printed as one line, exit status 2."""


_ERRNO_WORDS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.ENOTDIR: "a parent is not a folder",
    errno.ENOENT: "no such folder",
}


def os_words(error: OSError) -> str:
    """An OSError as a few lowercase words (no ``[Errno 13]``)."""
    if error.errno in _ERRNO_WORDS:
        return _ERRNO_WORDS[error.errno]
    return (error.strerror or str(error)).lower()


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _probe_writable(folder: str, flag: str, shown: str) -> None:
    """Creates and removes a file in ``folder``: the one test of writing
    that also holds for root, read-only mounts and network disks."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastprep-probe-", dir=folder)
    except OSError as error:
        raise CommandError(f"cannot write to {flag} {shown}: {os_words(error)}") from None
    os.close(fd)
    os.remove(probe)


def check_out_dir(out: str, flag: str = "--out") -> None:
    """``out`` is a folder (or can be created) that this user can write to
    (a URL is checked by the store when the run uploads to it)."""
    if "://" in out and not out.startswith("file://"):
        return
    if os.path.exists(out) and not os.path.isdir(out):
        raise CommandError(f"{flag} {out} is a file, not a folder")
    existing = _nearest_existing(out)
    if not os.path.isdir(existing):
        raise CommandError(f"cannot write to {flag} {out}: {existing} is a file, not a folder")
    _probe_writable(existing, flag, out)


def check_out_file(path: str, flag: str = "--out") -> None:
    """``path`` can be written: its folder exists and is writable."""
    if os.path.isdir(path):
        raise CommandError(f"{flag} {path} is a folder; give the file to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"cannot write to {flag} {path}: no such folder {folder}")
    _probe_writable(folder, flag, path)


def check_no_run(out: str, resume: bool, overwrite: bool) -> None:
    """A folder that holds a run is only used with ``--resume``/``--overwrite``."""
    from fastprep.pipeline.outputs import OUTPUT_PATTERNS

    if resume and overwrite:
        raise CommandError("--resume and --overwrite exclude each other")
    if resume or overwrite or not os.path.isdir(out):
        return
    if any(glob.glob(os.path.join(glob.escape(out), p)) for p in OUTPUT_PATTERNS):
        raise CommandError(
            f"--out {out} already holds a fastprep run: add --resume to continue it "
            "or --overwrite to replace it"
        )


def check_source(path: str, flag: str = "SOURCE") -> None:
    """A local folder, file or glob this user can read, or a URL fsspec can
    read (the source itself reports a missing remote file)."""
    if "://" in path and not path.startswith("file://"):
        scheme = path.split("://", 1)[0]
        try:
            import fsspec

            fsspec.get_filesystem_class(scheme)
        except ImportError:
            raise CommandError(
                f"{flag} {path}: {scheme}:// sources need fsspec: pip install 'fastprep[remote]'"
            ) from None
        except ValueError:
            raise CommandError(f"{flag} {path}: no reader for {scheme}:// sources") from None
        return
    if "{" in path:
        return  # a brace pattern: the source expands it and reports what is missing
    if any(c in path for c in "*?["):
        if not glob.glob(path):
            raise CommandError(f"{flag} {path}: no file matches")
        return
    if not os.path.exists(path):
        raise CommandError(f"no such source: {path}")
    if not os.access(path, os.R_OK):
        raise CommandError(f"cannot read source: {path}")


def read_hash_list(path: str | None) -> list[str]:
    """The hex hashes of ``--opt-out-list`` (``#`` starts a comment)."""
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.split("#")[0].strip() for line in f]
    except OSError as error:
        words = "no such file" if error.errno == errno.ENOENT else os_words(error)
        raise CommandError(f"cannot read --opt-out-list {path}: {words}") from None
    except UnicodeDecodeError:
        raise CommandError(f"--opt-out-list {path} is not a text file") from None
    return [line for line in lines if line]


def check_columns(path: str, image_column: str, caption_column: str, flag: str = "SOURCE") -> None:
    """A Parquet source has a readable file with the columns named by the
    options (what the source itself checks on its first batch, before any
    work here). Remote and brace-pattern sources are checked by the source."""
    if "://" in path or "{" in path:
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fastprep.pipeline.sources import source_kind

    if source_kind(path) != "parquet":
        return
    files = (
        sorted(glob.glob(os.path.join(glob.escape(path), "**", "*.parquet"), recursive=True))
        if os.path.isdir(path)
        else [path]
    )
    if not files:
        raise CommandError(f"{flag} {path}: no Parquet files")
    for file in files:
        try:
            names = pq.read_schema(file).names
            break
        except (pa.ArrowException, OSError):
            continue
    else:
        raise CommandError(f"{flag} {path}: no readable Parquet file")
    for option, name in (("--image-column", image_column), ("--caption-column", caption_column)):
        if name not in names:
            raise CommandError(
                f"{option} {name}: no such column in {path} (columns: {', '.join(names)})"
            )
