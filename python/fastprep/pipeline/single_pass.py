"""The single pass of a prep run (``PrepSettings.single_pass``, with a given
vocabulary): each source part is processed where the engine runs it
(:func:`fastprep.pipeline.passes.stream_part`) and comes back with its
records, which the driver decides in input order
(:class:`~fastprep.pipeline.first_seen.FirstSeen`) and cuts into shards as
they come (:class:`ShardStream`). No pixels are staged.

What is staged per part is small: the decided records' small columns (key,
caption, licence ..., hashes and each record's outcome; the report reads
them too), the part's drops, eval matches and hashtag counts, and a
``.done`` marker with the fingerprint of its keys. Before each shard is
written, a ``.cut.json`` says where it ends (part, kept rows of that part).
So ``resume=True`` keeps the shards already written, replays the decisions
of the parts before the last cut from what they staged (no decoding), and
decodes again from the part the last shard ended in, skipping its records
already written: the outputs are the uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from fastprep.errors import ResumeMismatchError
from fastprep.hashtags import Vocabulary
from fastprep.pipeline.decisions import Decision
from fastprep.pipeline.first_seen import LEAK_SCHEMA, OUTCOME_SCHEMA, FirstSeen
from fastprep.pipeline.io import (
    STAGED_SUFFIX,
    atomic,
    atomic_arrow,
    atomic_json,
    conform,
    read_arrow,
    run_schema,
)
from fastprep.pipeline.outputs import DROP_SCHEMA
from fastprep.pipeline.passes import (
    STATE_SCHEMA,
    PartResult,
    PassContext,
    PassTotals,
    WriteContext,
    part_path,
    rows_of,
    stream_part,
    write_shard_table,
)

log = logging.getLogger(__name__)


@dataclass
class SinglePassResult:
    totals: PassTotals
    num_labels: np.ndarray
    decider: FirstSeen
    shards: list[dict]


def _base(staging: str, part: int) -> str:
    return part_path(staging, part)[: -len(STAGED_SUFFIX)]


def _stream_numbered(context: PassContext, vocab_json: str, numbered: tuple[int, Any]):
    part, data = numbered
    return stream_part(context, vocab_json, part, data)


# ---------------------------------------------------------------------- shards


class ShardStream:
    """Kept records in input order, cut into shards of ``size`` records as
    they come. Each shard's pieces are unified to one schema
    (:func:`run_schema`); a later shard cannot change an earlier one's, so
    a source column whose type changes between batches may differ between
    shards (the two-pass mode unifies the whole run).

    Shards are written by ``writers`` threads (the writers release the GIL),
    so the driver goes on deciding while they write: Parquet's nested pixel
    lists cost ~2.5 ms a 224x224 record, more than decoding it. At most
    ``writers`` shards wait in memory, as in pass 2 of two passes."""

    def __init__(
        self,
        context: WriteContext,
        size: int,
        written: list[dict],
        skip: tuple[int, int],
        writers: int = 2,
    ) -> None:
        self.context, self.size = context, size
        self.pending: list[tuple[int, int, pa.Table]] = []  # (part, first kept row, rows)
        self.count = 0
        self.written = list(written)
        self.skip = skip  # (part, kept rows of it already written)
        self.writers = writers
        self.pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="fastprep-shards")
        self.writing: deque[Future] = deque()

    def add(self, part: int, table: pa.Table) -> None:
        start = 0
        if part == self.skip[0]:
            start = self.skip[1]
            table = table.slice(start)
        if table.num_rows == 0:
            return
        self.pending.append((part, start, table))
        self.count += table.num_rows
        while self.count >= self.size:
            self._write(self.size)

    def close(self) -> list[dict]:
        """Writes the last shard; every shard's entry, in order."""
        if self.count:
            self._write(self.count)
        while self.writing:
            self.written.append(self.writing.popleft().result())
        self.pool.shutdown()
        return self.written

    def abort(self) -> None:
        """After an error: waits for the shards being written (no file is
        left half-written) and writes no more."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _write(self, records: int) -> None:
        pieces, needed = [], records
        while needed:
            part, start, head = self.pending[0]
            if head.num_rows <= needed:
                pieces.append(head)
                self.pending.pop(0)
                needed -= head.num_rows
                end = start + head.num_rows
            else:
                pieces.append(head.slice(0, needed))
                self.pending[0] = (part, start + needed, head.slice(needed))
                end = start + needed
                needed = 0
        self.count -= records
        index = len(self.written) + len(self.writing)
        name = self.context.spec.shard_name(index)
        cut = {"part": part, "rows": end, "records": records}
        atomic_json(cut, os.path.join(self.context.out, "_staging", name + ".cut.json"))
        schema = run_schema([p.schema for p in pieces])
        table = pa.concat_tables([conform(p, schema) for p in pieces])
        self.writing.append(self.pool.submit(write_shard_table, self.context, index, table))
        while len(self.writing) > self.writers:
            self.written.append(self.writing.popleft().result())


def written_shards(out: str, context: WriteContext) -> tuple[list[dict], tuple[int, int]]:
    """The shards an interrupted single pass finished, in order, and where
    the last one ended: ``(part, kept rows of it written)``; ``(0, 0)`` if none."""
    written: list[dict] = []
    resume_at = (0, 0)
    while True:
        name = context.spec.shard_name(len(written))
        staged = os.path.join(out, "_staging", name)
        paths = (os.path.join(out, name), staged + ".cut.json", staged + ".privacy.json")
        if not all(os.path.exists(p) for p in paths):
            return written, resume_at
        with open(paths[1], encoding="utf-8") as f:
            cut = json.load(f)
        with open(paths[2], encoding="utf-8") as f:
            stats = json.load(f)
        written.append({"file": name, "records": cut["records"], **stats})
        resume_at = (cut["part"], cut["rows"])


# ---------------------------------------------------------------------- parts


def _stage_decided(
    staging: str, result: PartResult, outcome: pa.Table | None, leaks: pa.Table, image: str
) -> None:
    """What a part leaves for the report and for a resumed run; the
    ``.done`` marker last."""
    base = _base(staging, result.part)
    table = result.table
    if table is not None and outcome is not None:
        small = table.drop_columns([c for c in (image, "labels", "num_labels")
                                    if c in table.schema.names])  # fmt: skip
        for name in OUTCOME_SCHEMA.names:
            small = small.append_column(name, outcome.column(name))
        atomic_arrow(small, base + STAGED_SUFFIX)
        atomic_arrow(leaks, base + ".leaks" + STAGED_SUFFIX)
    atomic_arrow(result.dropped, base + ".dropped" + STAGED_SUFFIX)

    def write_counts(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(result.counts)

    atomic(base + ".counts", write_counts)
    marker = {"input": result.input, "keys": result.keys, "staged": table is not None}
    atomic_json(marker, base + ".done")


def _replayed(staging: str, result: PartResult) -> tuple[PartResult, pa.Table, pa.Table]:
    """A part decided before the interruption, from what it staged: its
    result as the driver first saw it, its outcome and its eval matches."""
    base = _base(staging, result.part)
    with open(base + ".done", encoding="utf-8") as f:
        done = json.load(f)
    if done["keys"] != result.keys or done["input"] != result.input:
        raise ResumeMismatchError(
            f"cannot resume: source batch {result.part} differs from the interrupted run's"
        )
    with open(base + ".counts", "rb") as f:
        counts = f.read()
    dropped = read_arrow(base + ".dropped" + STAGED_SUFFIX).cast(DROP_SCHEMA)
    state = STATE_SCHEMA.empty_table()
    replayed = PartResult(result.part, result.input, done["staged"], state, dropped, counts)
    if not done["staged"]:
        return replayed, OUTCOME_SCHEMA.empty_table(), LEAK_SCHEMA.empty_table()
    decided = read_arrow(base + STAGED_SUFFIX)
    replayed.state = decided.select(STATE_SCHEMA.names).cast(STATE_SCHEMA)
    outcome = decided.select(OUTCOME_SCHEMA.names).cast(OUTCOME_SCHEMA)
    leaks = read_arrow(base + ".leaks" + STAGED_SUFFIX).cast(LEAK_SCHEMA)
    return replayed, outcome, leaks


# ---------------------------------------------------------------------- the pass


def run_single_pass(
    *,
    engine: Any,
    parts: Any,
    context: PassContext,
    write: WriteContext,
    vocab: Vocabulary,
    decider: FirstSeen,
    resume: bool,
    task: Any,
) -> SinglePassResult:
    """Runs the pass over ``parts`` on ``engine`` (see the module docstring)."""
    settings = context.settings
    staging = context.staging
    written, (resume_part, skip_rows) = written_shards(write.out, write) if resume else ([], (0, 0))
    if written:
        log.info("resuming after %d shards, from part %d", len(written), resume_part)
    context = dataclasses.replace(context, resume=resume, resume_from=resume_part)
    shards = ShardStream(write, settings.records_per_shard, written, (resume_part, skip_rows))
    driver = _Driver(staging, settings.shards.image_column, resume_part, decider, shards, task)
    os.makedirs(staging, exist_ok=True)
    step = partial(_stream_numbered, context, vocab.to_json())
    try:
        for result in engine.map(step, enumerate(parts)):
            driver.take(result)
    except BaseException:
        shards.abort()
        raise
    labels = np.concatenate([np.zeros(0, np.int32), *driver.labels])
    return SinglePassResult(driver.totals, labels, decider, shards.close())


@dataclass
class _Driver:
    """What the driver does with each part's result, in input order."""

    staging: str
    image: str  # the image column, left out of what is staged
    resume_part: int
    decider: FirstSeen
    shards: ShardStream
    task: Any
    totals: PassTotals = field(default_factory=PassTotals)
    labels: list[np.ndarray] = field(default_factory=list)

    def take(self, result: PartResult) -> None:
        if result.part < self.resume_part:  # decided before the interruption
            result, outcome, leaks = _replayed(self.staging, result)
            self.totals.add(result, self.staging)
            if result.staged:
                self.decider.replay(result.state, outcome, leaks)
                self.labels.append(outcome.column("num_labels").to_numpy())
            self.task.update(result.input, skipped=True)
            return
        outcome = None
        leaks = LEAK_SCHEMA.empty_table()
        if result.table is not None:
            num_labels = result.table.column("num_labels").to_numpy().astype(np.int32)
            outcome, leaks = self.decider.decide(result.state, num_labels)
            self.labels.append(num_labels)
        _stage_decided(self.staging, result, outcome, leaks, self.image)
        self.totals.add(result, self.staging)
        if result.table is not None and outcome is not None:
            keep = outcome.column("code").to_numpy() == Decision.KEEP
            self.shards.add(result.part, rows_of(result.table, np.flatnonzero(keep)))
        self.task.update(result.input)
