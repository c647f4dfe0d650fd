"""The decisions of a single-pass run (``PrepSettings.single_pass``): made
part by part in input order, each record against the records before it, so
shards can be written as the source is read.

The same rules and precedence as :func:`fastprep.pipeline.decisions.decide`,
with one difference in who is kept: the keeper of copies is the *first*
eligible copy in input order (eligible: labelled, with ``drop_unlabeled``),
not the largest, and a near copy is the duplicate of the nearest earlier
keeper within the radius (ties: the earliest) rather than of a chained
cluster. Exact copies (same xxh3) are duplicates of their first kept copy.

Positions are global (0..n-1 over every record decided so far), so
:meth:`FirstSeen.decisions` gives the same :class:`Decisions` the two-pass
job builds its manifest, drop list and report from. Each part's outcome
(:meth:`FirstSeen.decide`'s table) is enough to :meth:`FirstSeen.replay` it,
which is how an interrupted single pass resumes without decoding again.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep import _core
from fastprep.dedup import GrowingIndex, match_hashes
from fastprep.pipeline.decisions import Decision, Decisions, _hash_rows, opt_out_hits
from fastprep.pipeline.settings import PrepSettings

#: A part's decided records, as :meth:`FirstSeen.decide` returns them.
OUTCOME_SCHEMA = pa.schema(
    [
        ("code", pa.int8()),
        ("reference", pa.int64()),  # keeper (duplicates) or eval record (leaks), else -1
        ("duplicate_of", pa.int64()),  # the earlier keeper it copies, else -1 (any code)
        ("distance", pa.int32()),  # PDQ bits to that keeper
        ("num_labels", pa.int32()),
    ]
)
#: A part's eval-set matches.
LEAK_SCHEMA = pa.schema(
    [("train_index", pa.int64()), ("eval_index", pa.int64()), ("distance", pa.uint32())]
)


def _match(queries: pa.Array, reference: pa.Array, radius: int) -> pa.Table:
    # One part's searches are small: one thread of their own, rather than a
    # turn in the pool that is decoding the next parts.
    return match_hashes(queries, reference, radius, num_threads=1)


class FirstSeen:
    """Decides parts in input order (see the module docstring)."""

    def __init__(
        self, settings: PrepSettings, *, eval_hashes: tuple[list[str], pa.Array] | None = None
    ) -> None:
        self.settings = settings
        self.eval_keys = list(eval_hashes[0]) if eval_hashes else []
        self.eval_index: GrowingIndex | None = None
        if eval_hashes is not None and len(eval_hashes[1]):
            self.eval_index = GrowingIndex(32)
            self.eval_index.add(eval_hashes[1])
        self.exact: dict[bytes, int] = {}  # xxh3 -> position of its kept copy
        self.near = GrowingIndex(32)  # PDQ of keepers with usable hashes
        self.near_positions: list[np.ndarray] = []  # index id -> position, per part
        self.seen = 0
        self.outcomes: list[pa.Table] = []
        self.leaks: list[pa.Table] = []

    # ------------------------------------------------------------------ parts

    def decide(self, state: pa.Table, num_labels: np.ndarray) -> tuple[pa.Table, pa.Table]:
        """The next part's decisions, from its :data:`STATE_SCHEMA` rows and
        label counts: its outcome (:data:`OUTCOME_SCHEMA`) and its eval-set
        matches (:data:`LEAK_SCHEMA`, global positions)."""
        settings = self.settings
        n, offset = state.num_rows, self.seen
        num_labels = np.asarray(num_labels, dtype=np.int32)
        has_label = num_labels > 0
        code = np.zeros(n, dtype=np.int8)
        reference = np.full(n, -1, dtype=np.int64)
        if settings.opt_out_hashes and n:
            hits = opt_out_hits(state, settings.opt_out_hashes, settings.opt_out_radius, _match)
            code[hits] = Decision.OPT_OUT
        keeper, distance = self._duplicates(state, self._eligible(num_labels), offset)
        duplicate = (keeper >= 0) & (code == Decision.KEEP)
        code[duplicate] = Decision.DUPLICATE
        reference[duplicate] = keeper[duplicate]
        leaks = LEAK_SCHEMA.empty_table()
        if self.eval_index is not None and n:
            pdq = state.column("pdq").combine_chunks()
            found = self.eval_index.match(pdq, settings.eval_radius, num_threads=1)
            train = found.column("query").to_numpy()
            ev = found.column("reference").to_numpy()
            leaks = pa.table(
                [pa.array(train + offset, pa.int64()), pa.array(ev, pa.int64()),
                 found.column("distance").cast(pa.uint32())],
                schema=LEAK_SCHEMA,
            )  # fmt: skip
            free = code[train] == Decision.KEEP
            # Sorted by (train, eval): the last match of a record names its eval record.
            code[train[free]] = Decision.LEAK
            reference[train[free]] = ev[free]
        if settings.drop_unlabeled:
            code[(code == Decision.KEEP) & ~has_label] = Decision.NO_LABEL
        outcome = pa.table(
            [code, reference, keeper, distance.astype(np.int32), num_labels],
            schema=OUTCOME_SCHEMA,
        )
        self._append(state, outcome, leaks, keepers=None)
        return outcome, leaks

    def replay(self, state: pa.Table, outcome: pa.Table, leaks: pa.Table) -> None:
        """Takes a part decided earlier (its state, outcome and leaks, as
        :meth:`decide` gave them) as if it had just been decided."""
        keeper = outcome.column("duplicate_of").to_numpy()
        eligible = self._eligible(outcome.column("num_labels").to_numpy())
        kept = np.flatnonzero((keeper < 0) & eligible)
        exact = _hash_rows(state.column("xxh3_128"))
        for i in kept.tolist():
            self.exact.setdefault(exact[i].tobytes(), self.seen + i)
        self._append(state, outcome, leaks, keepers=kept)

    def _eligible(self, num_labels: np.ndarray) -> np.ndarray:
        if self.settings.drop_unlabeled:
            return np.asarray(num_labels) > 0
        return np.ones(len(num_labels), dtype=bool)

    def _append(
        self, state: pa.Table, outcome: pa.Table, leaks: pa.Table, keepers: np.ndarray | None
    ) -> None:
        """Records a decided part; ``keepers`` (replay): its new keepers,
        whose usable PDQ hashes join the index (``decide`` adds its own)."""
        if keepers is not None and self.settings.dedup_radius is not None and len(keepers):
            quality = state.column("pdq_quality").to_numpy()[keepers]
            self._index_keepers(state, keepers[quality >= self.settings.min_quality])
        self.outcomes.append(outcome)
        self.leaks.append(leaks)
        self.seen += state.num_rows

    def _index_keepers(self, state: pa.Table, rows: np.ndarray) -> None:
        if len(rows):
            chosen = pa.array(rows, pa.int64())
            self.near.add(pc.take(state.column("pdq"), chosen).combine_chunks())
            self.near_positions.append(np.asarray(rows, dtype=np.int64) + self.seen)

    def _duplicates(
        self, state: pa.Table, eligible: np.ndarray, offset: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per record the position of the earlier keeper it copies (-1: none)
        and the PDQ distance; eligible records that copy nothing become keepers."""
        settings = self.settings
        n = state.num_rows
        keeper = np.full(n, -1, dtype=np.int64)
        distance = np.zeros(n, dtype=np.int64)
        exact = _hash_rows(state.column("xxh3_128")) if n else np.zeros((0, 16), np.uint8)
        radius = settings.dedup_radius
        usable = np.zeros(n, dtype=bool)
        earlier: dict[int, list[tuple[int, int]]] = {}  # row -> (distance, position)
        within: dict[int, list[tuple[int, int]]] = {}  # row b -> (distance, row a < b)
        if radius is not None and n:
            usable = state.column("pdq_quality").to_numpy() >= settings.min_quality
            rows = np.flatnonzero(usable)
            pdq = pc.take(state.column("pdq"), pa.array(rows, pa.int64())).combine_chunks()
            if len(self.near) and len(rows):
                found = self.near.match(pdq, radius, num_threads=1)
                positions = np.concatenate(self.near_positions)
                for q, r, d in zip(
                    found.column("query").to_numpy().tolist(),
                    positions[found.column("reference").to_numpy()].tolist(),
                    found.column("distance").to_numpy().tolist(),
                ):
                    earlier.setdefault(int(rows[q]), []).append((d, r))
            if len(rows) > 1:
                pairs = _core.near_duplicate_pairs(pa.chunked_array([pdq]), int(radius), 1)
                for a, b, d in zip(
                    pairs.column("a").to_numpy().tolist(),
                    pairs.column("b").to_numpy().tolist(),
                    pairs.column("distance").to_numpy().tolist(),
                ):
                    within.setdefault(int(rows[b]), []).append((d, int(rows[a])))
        kept_here: set[int] = set()
        new_keepers: list[int] = []
        for i in range(n):
            key = exact[i].tobytes()
            first = self.exact.get(key)
            if first is not None:
                keeper[i] = first
                continue
            if usable[i]:
                near = list(earlier.get(i, ()))
                near += [(d, offset + a) for d, a in within.get(i, ()) if a in kept_here]
                if near:
                    distance[i], keeper[i] = min(near)
                    continue
            if eligible[i]:
                self.exact[key] = offset + i
                kept_here.add(i)
                if usable[i]:
                    new_keepers.append(i)
        self._index_keepers(state, np.asarray(new_keepers, dtype=np.int64))
        return keeper, distance

    # ------------------------------------------------------------------ result

    def decisions(self, state: pa.Table) -> Decisions:
        """Every record's decision so far, with the pair and leak tables
        (``state``: every decided record's state, in order)."""
        outcome = pa.concat_tables(self.outcomes) if self.outcomes else OUTCOME_SCHEMA.empty_table()
        decisions = Decisions(
            outcome.column("code").to_numpy().astype(np.int8),
            outcome.column("reference").to_numpy().astype(np.int64),
            eval_keys=self.eval_keys,
        )
        keys = state.column("key")
        if self.settings.dedup_radius is not None:
            keeper = outcome.column("duplicate_of").to_numpy()
            copies = np.flatnonzero(keeper >= 0)
            decisions.pairs = pa.table(
                {
                    "a": pa.array(keeper[copies], pa.int64()),
                    "b": pa.array(copies, pa.int64()),
                    "distance": pa.array(
                        outcome.column("distance").to_numpy()[copies], pa.uint32()
                    ),
                    "key_a": pc.take(keys, pa.array(keeper[copies])),
                    "key_b": pc.take(keys, pa.array(copies)),
                }
            )
        if self.eval_index is not None:
            leaks = pa.concat_tables([LEAK_SCHEMA.empty_table(), *self.leaks])
            decisions.leaks = leaks.append_column(
                "train_key", pc.take(keys, leaks.column("train_index"))
            ).append_column(
                "eval_key",
                pc.take(pa.array(self.eval_keys, pa.string()), leaks.column("eval_index")),
            )
        return decisions
