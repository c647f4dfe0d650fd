"""The prep job on a Ray cluster: :class:`RayEngine` runs each per-part step
of :mod:`fastprep.pipeline.passes` as a Ray task and the corpus-wide
searches through :mod:`fastprep.ray.join`; :func:`prep_ray` is the job with
this engine."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import ray
import ray.data

from fastprep import joins
from fastprep.pipeline.engine import sort_matches
from fastprep.pipeline.outputs import PrepResult
from fastprep.pipeline.sources import open_source
from fastprep.ray.join import RayFrames

T = TypeVar("T")


@ray.remote
def _run(fn: Callable[[Any], T], item: Any) -> T:
    # Refs nested in a tuple are not resolved by Ray: a dataset block is.
    if isinstance(item, tuple):
        item = tuple(ray.get(v) if isinstance(v, ray.ObjectRef) else v for v in item)
    return fn(item)


@dataclass
class RayEngine:
    """Runs the prep job on Ray.

    ``address``: the cluster to join (None: the one already connected, else
    a local one started for the run). ``num_cpus``: CPUs per task, which are
    fastprep's threads in it. ``concurrency``: tasks in flight (default: the
    cluster's CPUs / ``num_cpus``). ``slot_bits``, ``num_shards``,
    ``shuffle``: the sharded near-duplicate join (:mod:`fastprep.ray.join`).
    ``out_dir`` must be a path every node can read and write.
    """

    address: str | None = None
    num_cpus: float = 1
    concurrency: int | None = None
    slot_bits: int = 16
    num_shards: int | None = None
    shuffle: str | None = "sort"
    name: str = "ray"
    _started: bool = field(default=False, repr=False)

    def start(self) -> None:
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
            self._started = True
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False

    def stop(self) -> None:
        if self._started:
            ray.shutdown()
            self._started = False

    def task_threads(self) -> int | None:
        return max(1, round(self.num_cpus))

    def _in_flight(self) -> int:
        cpus = ray.cluster_resources().get("CPU", 1)
        return self.concurrency or max(1, int(cpus // max(self.num_cpus, 1e-3)))

    def parts(self, source: Any, batch_size: int, source_options: dict) -> Iterable[Any]:
        if isinstance(source, ray.data.Dataset):
            return source.materialize().to_arrow_refs()  # one part per block
        if isinstance(source, (str, os.PathLike)):
            return open_source(source, batch_size=batch_size, **source_options)
        return source

    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]:
        task: Any = _run.options(num_cpus=self.num_cpus)
        pending: deque = deque()
        window = 2 * self._in_flight()  # one queued behind each running task
        try:
            for item in items:
                pending.append(task.remote(fn, item))
                if len(pending) >= window:
                    yield ray.get(pending.popleft())
            while pending:
                yield ray.get(pending.popleft())
        finally:
            for ref in pending:  # an error or Ctrl-C: nothing runs on after it
                ray.cancel(ref, force=True)

    def _frames(self, table: pa.Table) -> ray.data.Dataset:
        blocks = max(1, min(table.num_rows, 4 * int(ray.cluster_resources().get("CPU", 1))))
        step = -(-table.num_rows // blocks) if table.num_rows else 1
        return ray.data.from_arrow(
            [table.slice(i, step) for i in range(0, max(table.num_rows, 1), step)]
        )

    def near_pairs(self, hashes: pa.Array, radius: int) -> pa.Table:
        ds = self._frames(pa.table({"id": np.arange(len(hashes)), "pdq": hashes}))
        frames = RayFrames(self.shuffle, self.num_shards)
        return joins.near_duplicate_pairs(frames, ds, radius, slot_bits=self.slot_bits)

    def match(self, queries: pa.Array, reference: pa.Array, radius: int) -> pa.Table:
        train = self._frames(pa.table({"id": np.arange(len(queries)), "pdq": queries}))
        evaluation = self._frames(pa.table({"id": np.arange(len(reference)), "pdq": reference}))
        found = joins.leak_report(
            RayFrames(self.shuffle, self.num_shards), train, evaluation, radius,
            slot_bits=self.slot_bits,
        )  # fmt: skip
        found = found.rename_columns(["query", "reference", "distance"])
        return sort_matches(found, "query", "reference")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "version": ray.__version__,
            "cluster_cpus": ray.cluster_resources().get("CPU"),
            "num_cpus": self.num_cpus,
        }


def prep_ray(
    source: Any,
    out_dir: str | os.PathLike,
    *,
    num_cpus: float = 1,
    concurrency: int | None = None,
    slot_bits: int = 16,
    num_shards: int | None = None,
    shuffle: str | None = "sort",
    **options: Any,
) -> PrepResult:
    """:func:`fastprep.pipeline.prep` with a :class:`RayEngine` (kept for
    earlier releases): the same outputs, resume and report included.

    ``source`` is what ``prep`` takes, or a ``ray.data.Dataset`` with
    ``key``, ``image``, ``caption`` (optionally ``source`` and consent
    columns); each block is one part. Scale: pixels never pass through the
    driver (workers stage and write them), but the driver holds ~100 bytes
    per record (keys and hashes) and the decisions: corpora up to ~10^8
    records; beyond, compose the stages and joins (``docs/scale-out.md``).
    """
    from fastprep.pipeline import prep

    engine = RayEngine(
        num_cpus=num_cpus, concurrency=concurrency, slot_bits=slot_bits,
        num_shards=num_shards, shuffle=shuffle,
    )  # fmt: skip
    return prep(source, out_dir, engine=engine, **options)
