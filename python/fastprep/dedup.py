"""Near-duplicate search, dedup decisions and eval-set leak reports.

Hashes are Arrow columns as :func:`fastprep.decode_images` returns them
(``pdq``: 32-byte fixed-size binary; ``ahash``/``dhash``/``phash``: uint64),
numpy uint64 arrays, or lists of bytes / hex strings. Search is exact: every
pair within the Hamming ``radius`` is returned (multi-index hashing on 16-bit
slots, brute force with POPCNT where that is faster), in parallel Rust threads.

Meta recommends ``radius=31`` for PDQ (and discarding hashes with quality
under 50); for 64-bit ``imagehash`` hashes, 8-10 is a usual near-duplicate
radius.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep import _core

__all__ = ["GrowingIndex", "deduplicate", "find_near_duplicates", "leak_report", "match_hashes"]


def _hash_column(hashes: Any) -> tuple[pa.ChunkedArray, np.ndarray]:
    """The hashes without nulls, and the original index of each."""
    if isinstance(hashes, np.ndarray):
        if hashes.dtype.kind not in "iu":
            raise TypeError("numpy hashes must be 64-bit integers")
        hashes = pa.array(hashes.astype(np.uint64, copy=False))
    elif isinstance(hashes, (list, tuple)):
        raw = [
            None if h is None else bytes.fromhex(h) if isinstance(h, str) else bytes(h)
            for h in hashes
        ]
        width = {len(h) for h in raw if h is not None}
        if len(width) > 1:
            raise ValueError("hashes differ in width")
        hashes = pa.array(raw, type=pa.binary(width.pop() if width else 8))
    if isinstance(hashes, pa.Array):
        hashes = pa.chunked_array([hashes], type=hashes.type)
    if not isinstance(hashes, pa.ChunkedArray):
        raise TypeError(f"unsupported hash input {type(hashes).__name__}")
    if hashes.null_count:
        index = np.flatnonzero(pc.is_valid(hashes).to_numpy(zero_copy_only=False))
        return pc.drop_null(hashes), index
    return hashes, np.arange(len(hashes))


def _as_arrow(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    return pa.array(list(values))


def _pairs_table(
    batch: pa.RecordBatch, left: str, right: str, maps: Sequence[np.ndarray]
) -> pa.Table:
    a = maps[0][batch.column(0).to_numpy()]
    b = maps[1][batch.column(1).to_numpy()]
    distance = batch.column(2)
    return pa.table(
        {left: pa.array(a, pa.int64()), right: pa.array(b, pa.int64()), "distance": distance}
    )


def find_near_duplicates(hashes: Any, radius: int, *, num_threads: int | None = None) -> pa.Table:
    """All pairs ``a < b`` whose hashes are within ``radius`` bits: a table
    ``a, b, distance`` (indices into ``hashes``; null hashes never match)."""
    column, index = _hash_column(hashes)
    batch = _core.near_duplicate_pairs(column, int(radius), num_threads)
    return _pairs_table(batch, "a", "b", (index, index))


def match_hashes(
    queries: Any, reference: Any, radius: int, *, num_threads: int | None = None
) -> pa.Table:
    """Every ``(query, reference)`` pair within ``radius``: ``query, reference,
    distance``. The reference set is indexed; queries stream against it."""
    q, qi = _hash_column(queries)
    r, ri = _hash_column(reference)
    batch = _core.query_pairs(q, r, int(radius), num_threads)
    return _pairs_table(batch, "query", "reference", (qi, ri))


class GrowingIndex:
    """Hashes indexed batch after batch: :meth:`add` gives them the next ids
    (0, 1, ... in the order added) and :meth:`match` finds, for each query,
    every added hash within a radius, without re-indexing what was added
    before (single-pass dedup asks each batch about every earlier keeper).
    Exact: the same pairs as :func:`match_hashes` against all added hashes.
    """

    def __init__(self, bytes_per_hash: int = 32) -> None:
        self._index = _core.GrowingIndex(bytes_per_hash)

    def __len__(self) -> int:
        return len(self._index)

    def add(self, hashes: Any) -> None:
        """Adds hashes (fixed-size binary, hex or bytes; none null: each
        takes the next id)."""
        column, _ = _hash_column(hashes)
        if len(column) != len(hashes):
            raise ValueError("null hashes cannot be added: every added hash takes an id")
        self._index.add(column)

    def match(self, queries: Any, radius: int, *, num_threads: int | None = None) -> pa.Table:
        """Every ``(query, reference)`` pair within ``radius`` bits:
        ``query`` (index into ``queries``; null queries never match),
        ``reference`` (the added hash's id), ``distance``; sorted."""
        column, index = _hash_column(queries)
        batch = self._index.query(column, int(radius), num_threads)
        return _pairs_table(batch, "query", "reference", (index, np.arange(len(self))))


def deduplicate(
    hashes: Any,
    radius: int,
    *,
    rank: Any = None,
    keys: Any = None,
    num_threads: int | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Groups near-duplicates and picks one keeper per group.

    Records whose hashes are within ``radius`` are linked, and linked records
    form a cluster (union-find). The keeper of a cluster is the record with the
    highest ``rank`` (pass e.g. ``width * height`` to keep the largest
    resolution), ties going to the earliest record. Returns ``(records,
    pairs)``: ``records`` has one row per input with ``cluster`` (index of the
    cluster's first record), ``duplicate_of`` (the keeper's index, or its key
    when ``keys`` is given; null for keepers) and ``is_duplicate``; ``pairs``
    is :func:`find_near_duplicates`'s table.
    """
    pairs = find_near_duplicates(hashes, radius, num_threads=num_threads)
    n = len(hashes)
    ranks = np.zeros(n, dtype=np.uint64) if rank is None else np.asarray(rank, dtype=np.uint64)
    if len(ranks) != n:
        raise ValueError("rank must have one value per hash")
    a = pa.chunked_array([pa.array(pairs.column("a").to_numpy().astype(np.uint32))])
    b = pa.chunked_array([pa.array(pairs.column("b").to_numpy().astype(np.uint32))])
    resolved = _core.resolve_clusters(n, a, b, pa.chunked_array([pa.array(ranks)]))
    duplicate_of = resolved.column("duplicate_of")
    if keys is not None:
        keys = _as_arrow(keys)
        duplicate_of = pc.take(keys, duplicate_of)
    else:
        duplicate_of = pc.cast(duplicate_of, pa.int64())
    records = pa.table(
        {
            "cluster": pc.cast(resolved.column("cluster"), pa.int64()),
            "duplicate_of": duplicate_of,
            "is_duplicate": pc.is_valid(resolved.column("duplicate_of")),
        }
    )
    return records, pairs


def leak_report(
    train_hashes: Any,
    eval_hashes: Any,
    radius: int,
    *,
    train_keys: Any = None,
    eval_keys: Any = None,
    num_threads: int | None = None,
) -> pa.Table:
    """Training records that match evaluation images: ``train_index,
    eval_index, distance`` (plus ``train_key``/``eval_key`` when given), sorted
    by training index. Drop or inspect these before training."""
    matches = match_hashes(train_hashes, eval_hashes, radius, num_threads=num_threads)
    table = matches.rename_columns(["train_index", "eval_index", "distance"])
    if train_keys is not None:
        keys = _as_arrow(train_keys)
        table = table.append_column("train_key", pc.take(keys, table.column("train_index")))
    if eval_keys is not None:
        keys = _as_arrow(eval_keys)
        table = table.append_column("eval_key", pc.take(keys, table.column("eval_index")))
    return table
