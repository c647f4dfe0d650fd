"""The package's exceptions: every one derives from :class:`FastprepError`,
so a caller (the CLI among them) can catch fastprep's own failures in one
``except`` while the builtin base (``ValueError``, ``FileExistsError`` ...)
keeps older ``except`` clauses working."""

from __future__ import annotations


class FastprepError(Exception):
    """Base of every exception fastprep raises on purpose."""


class DecodeError(FastprepError, ValueError):
    """Raised by :func:`fastprep.decode_image` when one image cannot be decoded.

    ``kind`` is the record's ``error_kind`` (see :data:`fastprep.images.ERROR_KINDS`)
    when the decoder set one."""

    kind: str | None = None


class SettingsError(FastprepError, ValueError):
    """A job setting is out of range or inconsistent (raised before any work)."""


class OutputExistsError(FastprepError, FileExistsError):
    """The output folder already holds a run and neither resume nor overwrite was asked."""


class ResumeMismatchError(FastprepError, ValueError):
    """``resume=True`` on a run with other settings or another source."""


class EngineUnavailableError(FastprepError, ImportError):
    """An engine's library (Ray, PySpark) is not installed."""


def require_engine(module: str, library: str, extra: str, package: str) -> None:
    """Imports ``module``, or says how to install it: engine packages call
    this before anything else."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise EngineUnavailableError(
            f"fastprep.{extra} needs {library}, which is not installed: "
            f"pip install 'fastprep[{extra}]' (or pip install '{package}')"
        ) from exc
