"""Engine-neutral pieces for running fastprep on a cluster (Ray Data, Spark).

Nothing here imports an engine: every function takes and returns numpy or
Arrow data, so :mod:`fastprep.ray` and :mod:`fastprep.spark` only move data
between workers and call these.

**Hashtag counts** are mergeable: each worker counts its blocks
(:func:`partial_counts`, a few hundred bytes per distinct tag), the driver
merges the parts (:func:`merge_counts`) and builds the vocabulary, and the
workers label with it. The merged counts equal one :func:`fastprep.count_hashtags`
over the whole corpus, whatever the split.

**Near-duplicates** use a sharded multi-index-hashing index, the distributed
form of ``rust/dedup/mih.rs``, computed in Rust (``rust/dedup/sharded.rs``,
with the pigeonhole rule of ``rust/dedup/pigeonhole.rs`` that the
single-machine index uses too); this module moves Arrow data in and out. A hash of ``bits`` bits is cut into ``m =
bits / slot_bits`` slots; two hashes within Hamming distance ``r`` agree to
within ``t = r // m`` bits on at least one slot (pigeonhole: otherwise every
slot differs by ``t + 1`` or more, ``m * (t + 1) > r`` bits in all). So:

* every record is filed under its **index key** ``(slot, value)`` for each
  slot, and sent as a **probe** to ``(slot, value ^ mask)`` for every mask of
  at most ``t`` bits (:func:`slot_entries`); the keys are hashed to shards;
* a shard checks, for each key, every probe against every indexed record with
  the exact Hamming distance (:func:`verify_entries`);
* a pair is reported only from the *first* slot whose values are within ``t``
  bits, under the larger record's index key, with the smaller record as the
  probe, so each pair comes out exactly once, from exactly one shard.

The union of all shards' pairs is therefore exactly
:func:`fastprep.find_near_duplicates` (or :func:`fastprep.match_hashes` for a
query set against a reference set, e.g. an eval-leak check) for the same
radius. Clusters are then resolved on the driver with the rule of
:func:`fastprep.deduplicate` (:func:`resolve_duplicates`), from the pairs and
the ranks of the records that appear in them only.

Cost: each record becomes ``m * P(t)`` entries, ``P(t)`` = masks of at most
``t`` bits (16-bit slots of a 256-bit PDQ hash: ``t = 1`` for ``r`` 16..31,
17 masks, 272 entries per record), and a shard verifies about
``entries * records / 2**slot_bits`` candidates: the same work as the
single-machine index, spread over the shards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep import _core
from fastprep.hashtags import HashtagCounts, HashtagNormalizer

__all__ = [
    "ENTRY_SCHEMA",
    "PAIR_SCHEMA",
    "hash_matrix",
    "match_block",
    "merge_counts",
    "partial_counts",
    "popcount",
    "probe_masks",
    "resolve_duplicates",
    "slot_entries",
    "slot_plan",
    "slot_values",
    "verify_entries",
]

#: Rows of the sharded index: Spark-friendly types (no unsigned integers).
ENTRY_SCHEMA = pa.schema(
    [
        pa.field("shard", pa.int32()),
        pa.field("slot", pa.int16()),
        pa.field("key", pa.int64()),
        pa.field("role", pa.int8()),  # 1: indexed, 2: probe, 3: both
        pa.field("id", pa.int64()),
        pa.field("hash", pa.binary()),
    ]
)
#: Pairs as the shards return them (``a < b`` for a self-join; ``query,
#: reference`` ids otherwise).
PAIR_SCHEMA = pa.schema(
    [pa.field("a", pa.int64()), pa.field("b", pa.int64()), pa.field("distance", pa.int32())]
)

_LUT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


# --------------------------------------------------------------------------- hashtags


def partial_counts(
    captions: Any,
    normalizer: HashtagNormalizer | None = None,
    num_threads: int | None = None,
) -> bytes:
    """The hashtag counts of one block's captions, serialised for the driver."""
    counts = HashtagCounts()
    if isinstance(captions, pa.Array):
        captions = pa.chunked_array([captions], type=captions.type)
    if len(captions):
        counts.update(captions, normalizer, num_threads)
    return counts.to_bytes()


def merge_counts(parts: Iterable[bytes | HashtagCounts | None]) -> HashtagCounts:
    """Merges partial counts (bytes from :func:`partial_counts` or objects)."""
    total = HashtagCounts()
    for part in parts:
        if part is None:
            continue
        total.merge(part if isinstance(part, HashtagCounts) else HashtagCounts.from_bytes(part))
    return total


# --------------------------------------------------------------------------- hashes


def hash_matrix(hashes: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(valid, matrix)``: which rows hold a hash, and the hashes as a
    ``[n_valid, bytes]`` uint8 matrix in the hash's big-endian byte order
    (PDQ: 32 bytes as stored; uint64 hashes: their 8 big-endian bytes, which
    is how ``fastprep._core`` lays out 64-bit hashes too)."""
    if isinstance(hashes, pa.ChunkedArray):
        hashes = (
            hashes.combine_chunks()
            if hashes.num_chunks != 1
            else hashes.chunk(0)
            if hashes.num_chunks
            else pa.array([], hashes.type)
        )
    if isinstance(hashes, np.ndarray) and hashes.dtype.kind in "iu":
        words = hashes.astype(">u8")
        return np.ones(len(words), bool), words.view(np.uint8).reshape(-1, 8)
    if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint8 and hashes.ndim == 2:
        return np.ones(len(hashes), bool), np.ascontiguousarray(hashes)
    if not isinstance(hashes, pa.Array):
        raw = [None if h is None else bytes.fromhex(h) if isinstance(h, str) else h for h in hashes]
        hashes = pa.array(raw, pa.binary())
    valid = pc.is_valid(hashes).to_numpy(zero_copy_only=False)
    present = pc.drop_null(hashes)
    if pa.types.is_integer(present.type):
        words = present.cast(pa.uint64(), safe=False).to_numpy().astype(">u8")
        return valid, words.view(np.uint8).reshape(-1, 8)
    if pa.types.is_fixed_size_binary(present.type):
        width = present.type.byte_width
        data = np.frombuffer(present.buffers()[1], np.uint8)
        start = present.offset * width
        return valid, data[start : start + len(present) * width].reshape(-1, width).copy()
    values = present.to_pylist()
    widths = {len(v) for v in values}
    if len(widths) > 1:
        raise ValueError("hashes differ in width")
    width = widths.pop() if widths else 32
    return valid, np.frombuffer(b"".join(values), np.uint8).reshape(-1, width).copy()


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per element of an unsigned integer array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    as_bytes = x.view(np.uint8).reshape(*x.shape, x.dtype.itemsize)
    return _LUT[as_bytes].sum(axis=-1, dtype=np.uint16)


def slot_plan(radius: int, bits: int, slot_bits: int = 16) -> tuple[int, int]:
    """``(slots, t)``: how many slots a ``bits``-bit hash has, and how many
    bits a slot may differ by for two hashes within ``radius`` (the pigeonhole
    rule of ``rust/dedup/pigeonhole.rs``, shared with the single-machine index)."""
    slots, t = _core.slot_plan(int(radius), int(bits), int(slot_bits))
    return int(slots), int(t)


def probe_masks(slot_bits: int, t: int) -> np.ndarray:
    """Every ``slot_bits``-bit mask with at most ``t`` bits set, 0 first."""
    return np.array(_core.probe_masks(int(slot_bits), max(int(t), 0)), dtype=np.uint64)


def slot_values(matrix: np.ndarray, slot_bits: int = 16) -> np.ndarray:
    """``[n, slots]`` uint64: slot ``s`` of each hash, big-endian (slot 0 is
    the top ``slot_bits`` bits of the first byte(s), as in ``rust/dedup``)."""
    n, width = matrix.shape
    flat = _core.slot_values(_fixed(matrix), int(slot_bits)).to_numpy(zero_copy_only=False)
    return flat.astype(np.uint64).reshape(n, (width * 8) // int(slot_bits))


def _ids(ids: Any) -> np.ndarray:
    return np.asarray(ids.to_numpy(zero_copy_only=False) if hasattr(ids, "to_numpy") else ids)


def _int64(values: np.ndarray) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(np.asarray(values, dtype=np.int64), pa.int64())])


def slot_entries(
    ids: Any,
    hashes: Any,
    radius: int,
    *,
    num_shards: int,
    slot_bits: int = 16,
    role: str = "both",
) -> pa.Table:
    """The index entries one block contributes (:data:`ENTRY_SCHEMA`).

    ``ids``: one int per hash, unique across the whole job (null hashes are
    skipped with their ids). ``role``: ``"both"`` for a self-join,
    ``"index"`` for the reference side and ``"probe"`` for the query side of
    a query join. Group the result by ``shard`` and hand each shard to
    :func:`verify_entries`. Built by ``rust/dedup/sharded.rs``.
    """
    if role not in ("both", "index", "probe"):
        raise ValueError("role must be 'both', 'index' or 'probe'")
    valid, matrix = hash_matrix(hashes)
    ids = _ids(ids).astype(np.int64)[valid]
    batch = _core.slot_entries(
        _int64(ids), _fixed(matrix), int(radius), int(num_shards), int(slot_bits), role
    )
    return pa.Table.from_batches([batch]).cast(ENTRY_SCHEMA)


def _column(table: pa.Table | pa.RecordBatch, name: str) -> np.ndarray:
    column = table.column(name)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    return column.to_numpy(zero_copy_only=False)


def _fixed(matrix: np.ndarray) -> pa.ChunkedArray:
    width = matrix.shape[1]
    array = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(matrix), [None, pa.py_buffer(np.ascontiguousarray(matrix).tobytes())]
    )
    return pa.chunked_array([array])


def verify_entries(
    entries: pa.Table | pa.RecordBatch,
    radius: int,
    *,
    slot_bits: int = 16,
    self_join: bool = True,
    max_candidates: int = 4_000_000,
    rust_min: int = 1 << 18,
    num_threads: int | None = None,
) -> pa.Table:
    """Exact pairs from one shard's entries (:data:`PAIR_SCHEMA`).

    For every key, every probe is checked against every indexed record with
    the full Hamming distance; a pair is kept only from the first slot within
    ``t`` bits and (self-join) with the smaller id as the probe, so the
    shards' outputs are disjoint and together exactly the single-machine
    pairs. Runs in Rust (``rust/dedup/sharded.rs``, ``num_threads``
    threads): keys with at least ``rust_min`` candidate pairs are searched
    through the multi-index, the rest compared pair by pair. Candidates are
    streamed, never materialised, so ``max_candidates`` (kept for
    compatibility) bounds nothing any more.
    """
    del max_candidates  # see the docstring
    if isinstance(entries, pa.RecordBatch):
        entries = pa.Table.from_batches([entries])
    if entries.num_rows == 0:
        return PAIR_SCHEMA.empty_table()
    _, matrix = hash_matrix(entries.column("hash"))
    found = _core.verify_entries(
        pa.chunked_array([pa.array(_column(entries, "slot").astype(np.int16))]),
        _int64(_column(entries, "key")),
        pa.chunked_array([pa.array(_column(entries, "role").astype(np.int8))]),
        _int64(_column(entries, "id")),
        _fixed(matrix),
        int(radius),
        int(slot_bits),
        bool(self_join),
        max(int(rust_min), 0),
        num_threads,
    )
    return pa.Table.from_batches([found]).cast(PAIR_SCHEMA)


def match_block(
    ids: Any,
    hashes: Any,
    reference_ids: Any,
    reference: Any,
    radius: int,
    *,
    num_threads: int | None = None,
) -> pa.Table:
    """One block of queries against a reference set every worker holds
    (a broadcast join, for a small side such as an eval set or a takedown
    list): :data:`PAIR_SCHEMA` with ``a`` = query id, ``b`` = reference id.
    fastprep's exact Rust search underneath."""
    valid, queries = hash_matrix(hashes)
    ref_valid, matrix = hash_matrix(reference)
    ids, ref = _ids(ids), _ids(reference_ids)
    ids, ref = ids.astype(np.int64)[valid], ref.astype(np.int64)[ref_valid]
    if not len(ids) or not len(ref):
        return PAIR_SCHEMA.empty_table()
    found = _core.query_pairs(_fixed(queries), _fixed(matrix), int(radius), num_threads)
    return pa.table(
        {
            "a": pa.array(ids[found.column(0).to_numpy().astype(np.int64)], pa.int64()),
            "b": pa.array(ref[found.column(1).to_numpy().astype(np.int64)], pa.int64()),
            "distance": found.column(2).cast(pa.int32()),
        },
        schema=PAIR_SCHEMA,
    )


def sort_pairs(tables: Iterable[pa.Table], names: tuple = ("a", "b")) -> pa.Table:
    """Concatenates the shards' pairs, sorted as the single-machine search
    sorts them, with columns renamed to ``names`` + ``distance``."""
    parts = [t.select(["a", "b", "distance"]).cast(PAIR_SCHEMA) for t in tables if t.num_rows]
    table = pa.concat_tables(parts) if parts else PAIR_SCHEMA.empty_table()
    table = table.sort_by([("a", "ascending"), ("b", "ascending")])
    return table.rename_columns([*names, "distance"]).combine_chunks()


# --------------------------------------------------------------------------- clusters


def resolve_duplicates(pairs: pa.Table, ids: Any, rank: Any = None, keys: Any = None) -> pa.Table:
    """Clusters and keepers from the pairs, with :func:`fastprep.deduplicate`'s
    rule (union-find; keeper: highest ``rank``, then the smallest id).

    Only records that appear in ``pairs`` matter: pass their ``ids`` (any
    superset, in any order) with their ``rank`` (and ``keys``). Returns one
    row per record in a pair: ``id``, ``cluster`` (the smallest id in its
    cluster), ``duplicate_of`` (the keeper's id, null for keepers) and, with
    ``keys``, ``duplicate_of_key``; sorted by id. Records in no pair are
    keepers of their own cluster. Memory: the pairs and their records only.
    """
    a = _column(pairs, pairs.column_names[0]).astype(np.int64)
    b = _column(pairs, pairs.column_names[1]).astype(np.int64)
    ids = np.asarray(ids.to_numpy(zero_copy_only=False) if hasattr(ids, "to_numpy") else ids)
    ids = ids.astype(np.int64)
    involved = np.unique(np.concatenate([a, b]))
    order = np.argsort(ids, kind="stable")
    where = np.searchsorted(ids[order], involved)
    if len(involved) and (
        np.any(where >= len(ids)) or np.any(ids[order][np.minimum(where, len(ids) - 1)] != involved)
    ):
        raise ValueError("every id in pairs needs an entry in ids")
    source = order[where] if len(involved) else np.zeros(0, np.int64)
    ranks = (
        np.zeros(len(involved), np.uint64)
        if rank is None
        else np.asarray(rank, dtype=np.uint64)[source]
    )
    dense_a = np.searchsorted(involved, a).astype(np.uint32)
    dense_b = np.searchsorted(involved, b).astype(np.uint32)
    resolved = _core.resolve_clusters(
        len(involved),
        pa.chunked_array([pa.array(dense_a)]),
        pa.chunked_array([pa.array(dense_b)]),
        pa.chunked_array([pa.array(ranks)]),
    )
    cluster = involved[_column(resolved, "cluster").astype(np.int64)]
    keeper = resolved.column("duplicate_of")
    valid = pc.is_valid(keeper).to_numpy(zero_copy_only=False)
    keeper_dense = pc.fill_null(keeper, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    duplicate_of = pa.array(involved[keeper_dense], pa.int64(), mask=~valid)
    table = pa.table(
        {"id": pa.array(involved, pa.int64()), "cluster": cluster, "duplicate_of": duplicate_of}
    )
    if keys is not None:
        key_values = keys if isinstance(keys, (pa.Array, pa.ChunkedArray)) else pa.array(keys)
        keeper_keys = pc.take(key_values, pa.array(source[keeper_dense]))
        keeper_keys = pc.if_else(
            pa.array(valid), keeper_keys, pa.nulls(len(valid), key_values.type)
        )
        table = table.append_column("duplicate_of_key", keeper_keys)
    return table
