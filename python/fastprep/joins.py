"""The distributed joins, written once for every engine.

:func:`near_duplicate_pairs`, :func:`deduplicate` and :func:`leak_report`
run the sharded multi-index-hashing join of :mod:`fastprep.distributed` (or
a broadcast join for a small reference side) through :class:`Frames`, the
handful of dataset operations an engine adapter supplies
(:mod:`fastprep.ray.join`, :mod:`fastprep.spark.join`). Nothing here
imports an engine.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from fastprep import distributed

TableFn = Callable[[pa.Table], pa.Table]


class Frames(Protocol):
    """Dataset operations of one engine (``df``: its dataset type)."""

    def select(self, df: Any, columns: list[str]) -> Any: ...

    def map_tables(self, df: Any, fn: TableFn, schema: pa.Schema) -> Any:
        """``fn`` over every block of ``df`` on the workers; ``schema`` is
        the result's (for engines that need it up front)."""

    def group_tables(self, df: Any, key: str, fn: TableFn, schema: pa.Schema) -> list[pa.Table]:
        """``fn`` over the rows of each ``key`` group, collected."""

    def union(self, a: Any, b: Any) -> Any: ...

    def collect(self, df: Any, schema: pa.Schema | None = None) -> pa.Table: ...

    def count(self, df: Any) -> int: ...

    def rows_with_ids(
        self, df: Any, id_column: str, ids: np.ndarray, columns: list[str]
    ) -> pa.Table:
        """The rows whose ``id_column`` is in ``ids`` (``id_column`` and ``columns``)."""

    def default_shards(self, df: Any) -> int: ...

    def worker_cpus(self) -> int:
        """fastprep's threads inside the current task (picklable by reference)."""


# ---------------------------------------------------------------------- steps on workers


def _entries_step(args: tuple, table: pa.Table) -> pa.Table:
    radius, num_shards, slot_bits, hash_column, id_column, role = args
    return distributed.slot_entries(
        table.column(id_column),
        table.column(hash_column),
        radius,
        num_shards=num_shards,
        slot_bits=slot_bits,
        role=role,
    )


def _verify_step(args: tuple, table: pa.Table) -> pa.Table:
    radius, slot_bits, self_join = args
    return distributed.verify_entries(table, radius, slot_bits=slot_bits, self_join=self_join)


def _match_step(args: tuple, table: pa.Table) -> pa.Table:
    reference_ids, reference, radius, id_column, hash_column, cpus = args
    if not table.num_rows or not len(reference_ids):
        return distributed.PAIR_SCHEMA.empty_table()
    return distributed.match_block(
        table.column(id_column),
        table.column(hash_column),
        reference_ids,
        reference,
        radius,
        num_threads=cpus(),
    )


# ---------------------------------------------------------------------- joins


def _entries(frames: Frames, df, radius, num_shards, slot_bits, hash_column, id_column, role):
    step = partial(_entries_step, (radius, num_shards, slot_bits, hash_column, id_column, role))
    return frames.map_tables(
        frames.select(df, [id_column, hash_column]), step, distributed.ENTRY_SCHEMA
    )


def _sharded(frames: Frames, entries: Any, radius: int, slot_bits: int, self_join: bool):
    step = partial(_verify_step, (radius, slot_bits, self_join))
    return frames.group_tables(entries, "shard", step, distributed.PAIR_SCHEMA)


def near_duplicate_pairs(
    frames: Frames,
    df: Any,
    radius: int,
    *,
    hash_column: str = "pdq",
    id_column: str = "id",
    slot_bits: int = 16,
    num_shards: int | None = None,
) -> pa.Table:
    """Every pair of records whose hashes are within ``radius`` bits: ``a,
    b, distance`` with ``a < b`` (values of ``id_column``), sorted. Exactly
    :func:`fastprep.find_near_duplicates`'s pairs when ids are row
    positions; null hashes never match."""
    num_shards = num_shards or frames.default_shards(df)
    entries = _entries(frames, df, radius, num_shards, slot_bits, hash_column, id_column, "both")
    return distributed.sort_pairs(_sharded(frames, entries, radius, slot_bits, True))


def deduplicate(
    frames: Frames,
    df: Any,
    radius: int,
    *,
    hash_column: str = "pdq",
    id_column: str = "id",
    rank_column: str | None = None,
    key_column: str | None = None,
    slot_bits: int = 16,
    num_shards: int | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Distributed :func:`fastprep.deduplicate`: ``(duplicates, pairs)``.

    ``pairs`` is :func:`near_duplicate_pairs`; clusters are resolved on the
    driver with the same rule (union-find; keeper: highest ``rank_column``,
    then the smallest id), fetching only the records that appear in a pair.
    ``duplicates`` has one row per record in a pair: ``id``, ``cluster``,
    ``duplicate_of`` (null for keepers) and, with ``key_column``,
    ``duplicate_of_key``; every other record is a keeper of its own cluster.
    """
    pairs = near_duplicate_pairs(
        frames, df, radius, hash_column=hash_column, id_column=id_column,
        slot_bits=slot_bits, num_shards=num_shards,
    )  # fmt: skip
    ids = np.unique(np.concatenate([pairs.column("a").to_numpy(), pairs.column("b").to_numpy()]))
    columns = [c for c in (rank_column, key_column) if c]
    rows = frames.rows_with_ids(df, id_column, ids, columns)
    duplicates = distributed.resolve_duplicates(
        pairs,
        rows.column(id_column),
        rank=rows.column(rank_column).to_numpy() if rank_column else None,
        keys=rows.column(key_column) if key_column else None,
    )
    return duplicates, pairs


def _broadcast_matches(frames, train, evaluation, radius, hash_column, id_column) -> pa.Table:
    reference = frames.collect(frames.select(evaluation, [id_column, hash_column]))
    if reference.num_rows == 0:
        return distributed.PAIR_SCHEMA.empty_table()
    args = (
        reference.column(id_column).combine_chunks(),
        reference.column(hash_column).combine_chunks(),
        radius,
        id_column,
        hash_column,
        frames.worker_cpus,
    )
    found = frames.map_tables(
        frames.select(train, [id_column, hash_column]),
        partial(_match_step, args),
        distributed.PAIR_SCHEMA,
    )
    return frames.collect(found, distributed.PAIR_SCHEMA)


def _with_keys(frames: Frames, pairs: pa.Table, side: str, df, id_column, key_column, name):
    ids = pairs.column(side).to_numpy()
    rows = frames.rows_with_ids(df, id_column, np.unique(ids), [key_column])
    order = np.argsort(rows.column(id_column).to_numpy())
    where = order[np.searchsorted(rows.column(id_column).to_numpy()[order], ids)]
    keys = rows.column(key_column).take(pa.array(where, pa.int64())).combine_chunks()
    return pairs.append_column(name, keys.cast(pa.string()))


def leak_report(
    frames: Frames,
    train: Any,
    evaluation: Any,
    radius: int,
    *,
    hash_column: str = "pdq",
    id_column: str = "id",
    train_key_column: str | None = None,
    eval_key_column: str | None = None,
    slot_bits: int = 16,
    num_shards: int | None = None,
    broadcast_limit: int = 5_000_000,
) -> pa.Table:
    """Distributed :func:`fastprep.leak_report`: ``train_index, eval_index,
    distance`` (ids), plus ``train_key``/``eval_key`` when key columns are
    given, sorted by training id.

    An evaluation set of at most ``broadcast_limit`` records (32 bytes a PDQ
    hash: 160 MB at the default) is sent to every worker, which matches its
    training blocks against it (a broadcast join, no shuffle); a larger one
    is indexed and probed through the sharded join. Both are exact."""
    names = ("train_index", "eval_index")
    if frames.count(evaluation) <= broadcast_limit:
        found = _broadcast_matches(frames, train, evaluation, radius, hash_column, id_column)
        pairs = distributed.sort_pairs([found], names=names)
    else:
        num_shards = num_shards or frames.default_shards(train)
        probe = _entries(frames, train, radius, num_shards, slot_bits, hash_column, id_column,
                         "probe")  # fmt: skip
        index = _entries(frames, evaluation, radius, num_shards, slot_bits, hash_column,
                         id_column, "index")  # fmt: skip
        tables = _sharded(frames, frames.union(probe, index), radius, slot_bits, False)
        pairs = distributed.sort_pairs(tables, names=names)
    for side, df, key_column, name in (
        ("train_index", train, train_key_column, "train_key"),
        ("eval_index", evaluation, eval_key_column, "eval_key"),
    ):
        if key_column is not None:
            pairs = _with_keys(frames, pairs, side, df, id_column, key_column, name)
    return pairs
