"""The prep job on Spark: :class:`SparkEngine` runs each per-part step of
:mod:`fastprep.pipeline.passes` as a Spark task (``parallelize(...).map``,
in windows of parts so the driver never holds the whole source) and the
corpus-wide searches through :mod:`fastprep.spark.join`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyspark
from pyspark.sql import SparkSession

from fastprep import joins
from fastprep.pipeline.engine import sort_matches
from fastprep.pipeline.sources import open_source
from fastprep.spark.join import SparkFrames

T = TypeVar("T")


@dataclass
class SparkEngine:
    """Runs the prep job on Spark.

    ``session``: a running ``SparkSession`` (default: the active one, else
    one started for the run on ``master``, e.g. ``local[4]`` or
    ``spark://host:7077``). fastprep's threads per task follow
    ``spark.task.cpus``. ``out_dir`` must be a path every executor can read
    and write.
    """

    master: str | None = None
    session: Any = None
    parts_per_job: int | None = None
    name: str = "spark"
    _started: bool = field(default=False, repr=False)

    def start(self) -> None:
        if self.session is None:
            self.session = SparkSession.getActiveSession()
        if self.session is None:
            # Executors run this interpreter (the one with fastprep and pyarrow).
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            builder = SparkSession.builder.appName("fastprep").config("spark.ui.enabled", "false")
            self.session = builder.master(self.master or "local[*]").getOrCreate()
            self.session.sparkContext.setLogLevel("ERROR")
            self._started = True

    def stop(self) -> None:
        if self._started:
            self.session.stop()
            self.session, self._started = None, False

    def task_threads(self) -> int | None:
        return max(1, int(self.session.conf.get("spark.task.cpus", "1")))

    def parts(self, source: Any, batch_size: int, source_options: dict) -> Iterable[Any]:
        if isinstance(source, (str, os.PathLike)):
            return open_source(source, batch_size=batch_size, **source_options)
        return source

    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]:
        context = self.session.sparkContext
        window = self.parts_per_job or 2 * context.defaultParallelism
        iterator = iter(items)
        while True:
            chunk = list(islice(iterator, window))
            if not chunk:
                return
            # One Spark job per window; each item is its own task.
            yield from context.parallelize(chunk, len(chunk)).map(fn).collect()

    def _frame(self, hashes: pa.Array):
        table = pa.table(
            {"id": np.arange(len(hashes), dtype=np.int64), "pdq": hashes.cast(pa.binary())}
        )
        return self.session.createDataFrame(table)

    def near_pairs(self, hashes: pa.Array, radius: int) -> pa.Table:
        return joins.near_duplicate_pairs(SparkFrames(), self._frame(hashes), radius)

    def match(self, queries: pa.Array, reference: pa.Array, radius: int) -> pa.Table:
        found = joins.leak_report(
            SparkFrames(), self._frame(queries), self._frame(reference), radius
        )
        return sort_matches(
            found.rename_columns(["query", "reference", "distance"]), "query", "reference"
        )

    def describe(self) -> dict:
        context = self.session.sparkContext
        return {
            "name": self.name,
            "version": pyspark.__version__,
            "master": context.master,
            "parallelism": context.defaultParallelism,
        }
