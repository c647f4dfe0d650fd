"""Near-duplicates and eval leaks on Ray Data: :mod:`fastprep.joins` run
through Ray datasets (``map_batches`` for the per-block steps, a
``groupby`` shuffle for the sharded index)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from fastprep import joins
from fastprep.ray.resources import worker_cpus

_SHUFFLES = {
    "sort": "sort_shuffle_pull_based",
    "push": "sort_shuffle_push_based",
    "hash": "hash_shuffle",
}


def _collect(ds: ray.data.Dataset, schema: pa.Schema | None = None) -> pa.Table:
    parts = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    if not parts:
        return schema.empty_table() if schema is not None else pa.table({})
    return pa.concat_tables(parts, promote_options="default")


@dataclass(frozen=True)
class RayFrames:
    """:class:`fastprep.joins.Frames` on Ray datasets. ``shuffle`` picks Ray
    Data's shuffle for the sharded grouping: ``"sort"`` (Ray's sort-based
    pull shuffle, fastest here and the fewest moving parts), ``"push"``,
    ``"hash"``, or None to keep the ``DataContext``'s strategy."""

    shuffle: str | None = "sort"
    num_shards: int | None = None

    def __post_init__(self) -> None:
        if self.shuffle is not None and self.shuffle not in _SHUFFLES:
            raise ValueError(f"shuffle must be one of {sorted(_SHUFFLES)} or None")

    def select(self, df: Any, columns: list[str]) -> Any:
        return df.select_columns(columns)

    def map_tables(self, df: Any, fn: joins.TableFn, schema: pa.Schema) -> Any:
        return df.map_batches(fn, batch_format="pyarrow")

    def group_tables(self, df: Any, key: str, fn: joins.TableFn, schema: pa.Schema):
        if self.shuffle is not None:
            from ray.data.context import ShuffleStrategy

            df.context.shuffle_strategy = ShuffleStrategy(_SHUFFLES[self.shuffle])
        groups = df.groupby(key, num_partitions=self.num_shards or self.default_shards(df))
        return ray.get(groups.map_groups(fn, batch_format="pyarrow").to_arrow_refs())

    def union(self, a: Any, b: Any) -> Any:
        return a.union(b)

    def collect(self, df: Any, schema: pa.Schema | None = None) -> pa.Table:
        return _collect(df, schema)

    def count(self, df: Any) -> int:
        return df.count()

    def rows_with_ids(self, df: Any, id_column: str, ids: np.ndarray, columns: list[str]):
        wanted = pa.array(np.unique(ids).astype(np.int64))

        def pick(t: pa.Table) -> pa.Table:
            return t.filter(pc.is_in(t.column(id_column).cast(pa.int64()), value_set=wanted))

        found = _collect(df.select_columns([id_column, *columns]).map_batches(
            pick, batch_format="pyarrow"))  # fmt: skip
        if not found.num_columns:
            return pa.table({c: pa.array([], pa.int64()) for c in [id_column, *columns]})
        return found

    def default_shards(self, df: Any) -> int:
        cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
        return max(2, 4 * cpus)

    def worker_cpus(self) -> int:
        return worker_cpus()


def near_duplicate_pairs(ds: ray.data.Dataset, radius: int, *, shuffle: str | None = "sort",
                         **options: Any) -> pa.Table:  # fmt: skip
    """:func:`fastprep.joins.near_duplicate_pairs` on a Ray dataset
    (``hash_column``, ``id_column``, ``slot_bits``, ``num_shards``)."""
    return joins.near_duplicate_pairs(RayFrames(shuffle), ds, radius, **options)


def deduplicate(ds: ray.data.Dataset, radius: int, *, shuffle: str | None = "sort",
                **options: Any) -> tuple[pa.Table, pa.Table]:  # fmt: skip
    """:func:`fastprep.joins.deduplicate` on a Ray dataset."""
    return joins.deduplicate(RayFrames(shuffle), ds, radius, **options)


def leak_report(train: ray.data.Dataset, evaluation: ray.data.Dataset, radius: int, *,
                shuffle: str | None = "sort", **options: Any) -> pa.Table:  # fmt: skip
    """:func:`fastprep.joins.leak_report` on Ray datasets (a broadcast join
    for an eval set of at most ``broadcast_limit`` records)."""
    return joins.leak_report(RayFrames(shuffle), train, evaluation, radius, **options)
