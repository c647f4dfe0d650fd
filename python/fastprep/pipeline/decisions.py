"""The corpus-wide rules of a prep run, written once for every engine.

Records are indexed by their position among the staged records (input
order, 0..n-1): whichever engine ran pass 1, the driver holds the same
state table, so these functions decide the same way everywhere. Engines only
supply the two searches that scale with the corpus (``near_pairs`` and
``match``, see :class:`fastprep.pipeline.engine.Engine`).

Precedence: opt-out list > duplicate > eval leak > no label; the first rule
that applies to a record is its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep import _core
from fastprep.pipeline.settings import PrepSettings

#: ``(hashes, radius) -> a, b, distance`` (positions, ``a < b``, sorted).
NearPairs = Callable[[pa.Array, int], pa.Table]
#: ``(queries, reference, radius) -> query, reference, distance`` (sorted).
Match = Callable[[pa.Array, pa.Array, int], pa.Table]


class Decision(IntEnum):
    """A record's corpus-level decision (0 keeps it)."""

    KEEP = 0
    OPT_OUT = 1
    DUPLICATE = 2
    LEAK = 3
    NO_LABEL = 4


def reason_text(code: int, name: str | None) -> str:
    """The ``dropped.parquet`` reason of a corpus-level decision; ``name`` is
    the keeper's key (duplicates) or the eval record's key (leaks)."""
    if code == Decision.OPT_OUT:
        return "opt_out_list"
    if code == Decision.DUPLICATE:
        return f"duplicate_of: {name}"
    if code == Decision.LEAK:
        return f"eval_leak: {name}"
    return "no_label"


def decode_reason(error: str, kind: str | None = None) -> str:
    """The reason of a record whose image failed to decode, from the core's
    stable ``error_kind`` (the text's prefix only where no kind is given)."""
    too_large = kind == "too_large" if kind is not None else error.startswith("image too large")
    return f"too_large: {error}" if too_large else f"decode_error: {error}"


@dataclass
class Decisions:
    """Per staged record: ``code`` (a :class:`Decision`) and ``reference``
    (the keeper's position for duplicates, the eval record for leaks, else
    -1), plus the pair and leak tables the run writes."""

    code: np.ndarray
    reference: np.ndarray
    pairs: pa.Table | None = None
    leaks: pa.Table | None = None
    eval_keys: list[str] = field(default_factory=list)

    def reasons(self, keys: pa.Array) -> tuple[np.ndarray, list[str]]:
        """The dropped positions, in order, and the reason of each."""
        rows = np.flatnonzero(self.code != Decision.KEEP)
        texts = []
        for i in rows.tolist():
            code = int(self.code[i])
            name = (
                keys[int(self.reference[i])].as_py()
                if code == Decision.DUPLICATE
                else self.eval_keys[int(self.reference[i])]
                if code == Decision.LEAK
                else None
            )
            texts.append(reason_text(code, name))
        return rows, texts

    def duplicate_clusters(self, top: int) -> list[list[int]]:
        """The ``top`` largest duplicate clusters, keeper first then members."""
        dups = np.flatnonzero(self.code == Decision.DUPLICATE)
        groups: dict[int, list[int]] = {}
        for i in dups.tolist():
            groups.setdefault(int(self.reference[i]), []).append(i)
        ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
        return [[k, *members] for k, members in ranked]


# ---------------------------------------------------------------------- rules


def _hash_rows(hashes: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-size binary column as an ``[n, width]`` uint8 matrix."""
    if isinstance(hashes, pa.ChunkedArray):
        hashes = hashes.combine_chunks()
    width = hashes.type.byte_width
    raw = np.frombuffer(hashes.buffers()[1], dtype=np.uint8)
    return raw[hashes.offset * width : (hashes.offset + len(hashes)) * width].reshape(-1, width)


def first_occurrence(hashes: pa.Array | pa.ChunkedArray, prefer: np.ndarray) -> np.ndarray:
    """For each hash, the keeper of its exact copies: the first copy with
    ``prefer`` set, else the first copy."""
    if not len(hashes):
        return np.zeros(0, dtype=np.int64)
    _, group = np.unique(_hash_rows(hashes), axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.lexsort((np.arange(len(group)), ~prefer, group))
    leaders = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    keeper_of_group = np.empty(group.max() + 1, dtype=np.int64)
    keeper_of_group[group[leaders]] = leaders
    return keeper_of_group[group]


def keeper_rank(state: pa.Table, labelled: np.ndarray) -> np.ndarray:
    """Which copy of a near-duplicate cluster is kept: labelled first, then
    the largest source image (the earliest wins ties)."""
    area = state.column("source_width").to_numpy().astype(np.uint64) * state.column(
        "source_height"
    ).to_numpy().astype(np.uint64)
    return area | (labelled.astype(np.uint64) << np.uint64(62))


def opt_out_hits(state: pa.Table, listed: tuple[str, ...], radius: int, match: Match) -> np.ndarray:
    """Records whose xxh3 equals, or whose PDQ is within ``radius`` of, a
    listed hash (hex: 32 digits = xxh3-128, 64 digits = PDQ)."""
    hit = np.zeros(state.num_rows, dtype=bool)
    exact = [bytes.fromhex(h) for h in listed if len(h) == 32]
    perceptual = [bytes.fromhex(h) for h in listed if len(h) == 64]
    if exact:
        values = pa.array(exact, pa.binary(16))
        hit |= pc.is_in(state.column("xxh3_128"), value_set=values).to_numpy(zero_copy_only=False)
    if perceptual and state.num_rows:
        pdq = state.column("pdq").combine_chunks()
        found = match(pdq, pa.array(perceptual, pa.binary(32)), radius)
        hit[found.column("query").to_numpy()] = True
    return hit


def _near_duplicates(
    state: pa.Table, settings: PrepSettings, labelled: np.ndarray, near_pairs: NearPairs
) -> tuple[np.ndarray, np.ndarray, pa.Table | None]:
    """PDQ near-duplicates among usable hashes: ``(records, keepers,
    pairs)`` with ``pairs`` indexed among the usable records, as written."""
    # Low-quality PDQ hashes (flat images) match noise: left out.
    usable = np.flatnonzero(state.column("pdq_quality").to_numpy() >= settings.min_quality)
    if len(usable) <= 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), None
    pdq = pc.take(state.column("pdq"), pa.array(usable)).combine_chunks()
    pairs = near_pairs(pdq, int(settings.dedup_radius or 0))
    a = pairs.column("a").to_numpy()
    b = pairs.column("b").to_numpy()
    rank = keeper_rank(state, labelled)[usable]
    resolved = _core.resolve_clusters(
        len(usable),
        pa.chunked_array([pa.array(a.astype(np.uint32), pa.uint32())]),
        pa.chunked_array([pa.array(b.astype(np.uint32), pa.uint32())]),
        pa.chunked_array([pa.array(rank, pa.uint64())]),
    )
    local = resolved.column("duplicate_of")
    near = pc.is_valid(local).to_numpy(zero_copy_only=False)
    chosen = pc.fill_null(local, 0).to_numpy(zero_copy_only=False)[near].astype(np.int64)
    keys = state.column("key")
    table = pa.table(
        {
            "a": pa.array(a, pa.int64()),
            "b": pa.array(b, pa.int64()),
            "distance": pairs.column("distance").cast(pa.uint32()),
            "key_a": pc.take(keys, pa.array(usable[a])),
            "key_b": pc.take(keys, pa.array(usable[b])),
        }
    )
    return usable[near], usable[chosen], table


def _eval_leaks(
    state: pa.Table, eval_keys: list[str], eval_pdq: pa.Array, radius: int, match: Match
) -> pa.Table:
    found = match(state.column("pdq").combine_chunks(), eval_pdq, radius)
    train = found.column("query")
    ev = found.column("reference")
    return pa.table(
        {
            "train_index": train.cast(pa.int64()),
            "eval_index": ev.cast(pa.int64()),
            "distance": found.column("distance").cast(pa.uint32()),
            "train_key": pc.take(state.column("key"), train),
            "eval_key": pc.take(pa.array(eval_keys, pa.string()), ev),
        }
    )


def decide(
    state: pa.Table,
    num_labels: np.ndarray,
    settings: PrepSettings,
    *,
    near_pairs: NearPairs,
    match: Match,
    eval_hashes: tuple[list[str], pa.Array] | None = None,
    step: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> Decisions:
    """Every staged record's decision (see the module docstring).

    ``num_labels``: vocabulary labels per record; with ``drop_unlabeled``,
    keepers are chosen among labelled records (a group whose first copy has
    no label keeps a labelled copy) and unlabelled survivors are dropped.
    ``eval_hashes``: the eval set's keys and PDQ hashes (decoded ones only).
    ``step(name)``: a context manager around each sub-step (progress).
    """
    step = step or (lambda name: nullcontext())
    n = state.num_rows
    has_label = num_labels > 0
    labelled = has_label if settings.drop_unlabeled else np.ones(n, dtype=bool)
    code = np.zeros(n, dtype=np.int8)
    reference = np.full(n, -1, dtype=np.int64)
    decisions = Decisions(code, reference)
    if n == 0:
        return decisions
    if settings.opt_out_hashes:
        with step("opt-out list"):
            hits = opt_out_hits(state, settings.opt_out_hashes, settings.opt_out_radius, match)
            code[hits] = Decision.OPT_OUT
    with step("exact copies"):
        keeper = first_occurrence(state.column("xxh3_128"), labelled)
        keeper[keeper == np.arange(n)] = -1
    if settings.dedup_radius is not None:
        with step("near-duplicates"):
            found = _near_duplicates(state, settings, labelled, near_pairs)
        records, keepers, decisions.pairs = found
        free = keeper[records] < 0  # an exact copy keeps pointing at its first copy
        keeper[records[free]] = keepers[free]
    duplicate = (keeper >= 0) & (code == Decision.KEEP)
    code[duplicate] = Decision.DUPLICATE
    reference[duplicate] = keeper[duplicate]
    if eval_hashes is not None and len(eval_hashes[1]):
        decisions.eval_keys = list(eval_hashes[0])
        with step("eval leaks"):
            leaks = _eval_leaks(
                state, decisions.eval_keys, eval_hashes[1], settings.eval_radius, match
            )
        decisions.leaks = leaks
        train = leaks.column("train_index").to_numpy()
        ev = leaks.column("eval_index").to_numpy()
        free = code[train] == Decision.KEEP
        # Sorted by (train, eval): the last match of a record names its eval record.
        code[train[free]] = Decision.LEAK
        reference[train[free]] = ev[free]
    if settings.drop_unlabeled:
        code[(code == Decision.KEEP) & ~has_label] = Decision.NO_LABEL
    return decisions


# ---------------------------------------------------------------------- shards


@dataclass
class Piece:
    """Rows ``rows`` (positions within the staged part) of part ``part``."""

    part: int
    rows: np.ndarray


@dataclass
class ShardPlan:
    index: int
    records: int
    pieces: list[Piece]


def shard_plan(keep_by_part: list[np.ndarray], records_per_shard: int) -> list[ShardPlan]:
    """Shard boundaries: every ``records_per_shard`` kept records in input
    order, as pieces of staged parts (``keep_by_part``: a mask per part)."""
    shards: list[ShardPlan] = []
    pieces: list[Piece] = []
    filled = 0
    for part, keep in enumerate(keep_by_part):
        kept = np.flatnonzero(keep)
        start = 0
        while start < len(kept):
            take = min(records_per_shard - filled, len(kept) - start)
            pieces.append(Piece(part, kept[start : start + take]))
            filled += take
            start += take
            if filled == records_per_shard:
                shards.append(ShardPlan(len(shards), filled, pieces))
                pieces, filled = [], 0
    if filled:
        shards.append(ShardPlan(len(shards), filled, pieces))
    return shards
