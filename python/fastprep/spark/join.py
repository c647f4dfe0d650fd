"""Near-duplicates and eval leaks on Spark: :mod:`fastprep.joins` run
through DataFrames (``mapInArrow`` for the per-batch steps,
``groupBy("shard").applyInArrow`` for the sharded index)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame

from fastprep import joins
from fastprep.spark.resources import worker_cpus
from fastprep.spark.types import _cast, _output


def _map_step(fn: joins.TableFn, expected: pa.Schema, batches: Iterator[pa.RecordBatch]):
    for batch in batches:
        result = fn(pa.Table.from_batches([batch]))
        for out in result.to_batches():
            yield _cast(out, expected)


@dataclass(frozen=True)
class SparkFrames:
    """:class:`fastprep.joins.Frames` on Spark DataFrames."""

    num_shards: int | None = None

    def select(self, df: DataFrame, columns: list[str]) -> DataFrame:
        return df.select(*columns)

    def map_tables(self, df: DataFrame, fn: joins.TableFn, schema: pa.Schema) -> DataFrame:
        struct, expected = _output(schema)
        return df.mapInArrow(lambda batches: _map_step(fn, expected, batches), struct)

    def group_tables(self, df: DataFrame, key: str, fn: joins.TableFn, schema: pa.Schema):
        struct, expected = _output(schema)
        # Groups follow spark.sql.shuffle.partitions; num_shards only spreads the keys.
        return [df.groupBy(key).applyInArrow(lambda t: fn(t).cast(expected), struct).toArrow()]

    def union(self, a: DataFrame, b: DataFrame) -> DataFrame:
        return a.union(b)

    def collect(self, df: DataFrame, schema: pa.Schema | None = None) -> pa.Table:
        table = df.toArrow()
        return table.cast(schema) if schema is not None else table

    def count(self, df: DataFrame) -> int:
        return df.count()

    def rows_with_ids(self, df: DataFrame, id_column: str, ids: np.ndarray, columns: list[str]):
        session = df.sparkSession
        wanted = session.createDataFrame(pa.table({id_column: pa.array(ids, pa.int64())}))
        return df.select(id_column, *columns).join(wanted, on=id_column, how="inner").toArrow()

    def default_shards(self, df: DataFrame) -> int:
        return max(2, 4 * df.sparkSession.sparkContext.defaultParallelism)

    def worker_cpus(self) -> int:
        return worker_cpus()


def near_duplicate_pairs(df: DataFrame, radius: int, **options: Any) -> pa.Table:
    """:func:`fastprep.joins.near_duplicate_pairs` on a DataFrame
    (``hash_column``, ``id_column``, ``slot_bits``, ``num_shards``)."""
    return joins.near_duplicate_pairs(SparkFrames(), df, radius, **options)


def deduplicate(df: DataFrame, radius: int, **options: Any) -> tuple[pa.Table, pa.Table]:
    """:func:`fastprep.joins.deduplicate` on a DataFrame."""
    return joins.deduplicate(SparkFrames(), df, radius, **options)


def leak_report(train: DataFrame, evaluation: DataFrame, radius: int, **options: Any) -> pa.Table:
    """:func:`fastprep.joins.leak_report` on DataFrames (a broadcast join for
    an eval set of at most ``broadcast_limit`` records)."""
    return joins.leak_report(SparkFrames(), train, evaluation, radius, **options)
