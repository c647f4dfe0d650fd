"""Where a prep run executes: the :class:`Engine` protocol.

The job (:func:`fastprep.pipeline.prep`) is written once against it; an
engine only says how to run a step over many items (threads here, Ray tasks,
Spark tasks) and how to run the two searches that grow with the corpus.
Engines: :class:`~fastprep.pipeline.local.LocalEngine` (this process),
:class:`fastprep.ray.RayEngine` and :class:`fastprep.spark.SparkEngine`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

import pyarrow as pa

T = TypeVar("T")


@runtime_checkable
class Engine(Protocol):
    """What the prep job needs from where it runs."""

    #: Short name, recorded in the manifest (``local``, ``ray``, ``spark``).
    name: str

    def start(self) -> None:
        """Connects or starts what the engine needs (idempotent)."""

    def stop(self) -> None:
        """Releases what :meth:`start` took (idempotent)."""

    def task_threads(self) -> int | None:
        """fastprep's Rust threads per task (None: the process default)."""

    def parts(self, source: Any, batch_size: int, source_options: dict) -> Iterable[Any]:
        """The source as parts (record batches, or the engine's own handles
        to them), in input order."""

    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]:
        """``fn(item)`` for every item, results in item order. ``fn`` is
        picklable (a module-level function, possibly partially applied)."""

    def near_pairs(self, hashes: pa.Array, radius: int) -> pa.Table:
        """Every pair of ``hashes`` within ``radius`` bits: ``a, b,
        distance`` (positions, ``a < b``), sorted by ``(a, b)``."""

    def match(self, queries: pa.Array, reference: pa.Array, radius: int) -> pa.Table:
        """Every ``(query, reference)`` pair within ``radius`` bits:
        ``query, reference, distance`` (positions), sorted."""

    def describe(self) -> dict:
        """What the manifest records of the engine (name, resources)."""


def sort_matches(table: pa.Table, first: str, second: str) -> pa.Table:
    """Pairs in one canonical order, whatever order a search found them in."""
    return table.sort_by([(first, "ascending"), (second, "ascending")])
