"""The local engine: the job in this process, on fastprep's Rust threads."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa

from fastprep import _core
from fastprep.dedup import find_near_duplicates, match_hashes
from fastprep.pipeline.engine import sort_matches
from fastprep.pipeline.sources import open_source

T = TypeVar("T")


@dataclass
class LocalEngine:
    """Runs every step in this process.

    ``num_threads``: fastprep's Rust threads (default: the CPUs this process
    may use). ``workers``: steps in flight at once; two let one shard be
    encoded and written while the next is assembled, and the source be read
    while a batch is decoded (the Rust work releases the GIL).
    """

    num_threads: int | None = None
    workers: int = 2
    name: str = "local"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def task_threads(self) -> int | None:
        return self.num_threads

    def parts(self, source: Any, batch_size: int, source_options: dict) -> Iterable[Any]:
        if isinstance(source, (str, os.PathLike)):
            return open_source(source, batch_size=batch_size, **source_options)
        return source

    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]:
        """Ordered, with at most ``workers`` steps in flight; an error (or
        Ctrl-C) waits for the running steps, so nothing writes after it."""
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fastprep")
        pending: deque[Future] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def near_pairs(self, hashes: pa.Array, radius: int) -> pa.Table:
        return sort_matches(
            find_near_duplicates(hashes, radius, num_threads=self.num_threads), "a", "b"
        )

    def match(self, queries: pa.Array, reference: pa.Array, radius: int) -> pa.Table:
        found = match_hashes(queries, reference, radius, num_threads=self.num_threads)
        return sort_matches(found, "query", "reference")

    def describe(self) -> dict:
        return {"name": self.name, "threads": self.num_threads or _core.default_num_threads()}
