"""Streamed sources (WebDataset tar shards, or any pipeline source read in
order): rank split, shuffle buffer, and batches.

Record ``r`` of the stream goes to rank ``r % world_size``; each rank then
has ``ceil(N / world_size)`` records (its first records repeated at the end,
as ``DistributedSampler`` pads) or ``floor`` with ``drop_last``, so every rank
yields the same number of batches. Shuffling is a seeded buffer of
``shuffle_buffer`` records: batches draw at random from it as it refills.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from fastprep.pipeline.sources import open_source
from fastprep.torch.sampling import epoch_rng


def per_rank(total: int, world_size: int, drop_last: bool) -> int:
    return total // world_size if drop_last else -(-total // world_size)


def _rank_records(
    spec: str, total: int, rank: int, world_size: int, drop_last: bool, read_batch: int
) -> Iterator[tuple[int, pa.Table]]:
    """This rank's records as ``(record number, one-row table)``, padded or cut."""
    want = per_rank(total, world_size, drop_last)
    given = 0
    first: list[tuple[int, pa.Table]] = []
    number = 0
    for batch in open_source(spec, batch_size=read_batch):
        table = pa.Table.from_batches([batch]).select(["key", "source", "image", "caption"])
        for i in range(table.num_rows):
            if number % world_size == rank and given < want:
                row = (number, table.slice(i, 1))
                if len(first) < world_size:
                    first.append(row)
                given += 1
                yield row
            number += 1
    for row in first[: want - given]:  # pad to the common length
        yield row


def stream_batches(
    spec: str,
    *,
    total: int,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    drop_last: bool,
    shuffle: bool,
    shuffle_buffer: int,
    read_batch: int = 256,
) -> Iterator[tuple[np.ndarray, pa.Table]]:
    """``(record numbers, rows)`` per batch of this rank, in the seeded order."""
    rng = epoch_rng(seed, epoch, rank, 2)
    buffer: list[tuple[int, pa.Table]] = []
    capacity = max(shuffle_buffer, batch_size) if shuffle else batch_size

    def emit(count: int) -> tuple[np.ndarray, pa.Table]:
        if shuffle:
            picks = []
            for _ in range(count):  # swap-remove: O(1) per record
                j = int(rng.integers(len(buffer)))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                picks.append(buffer.pop())
        else:
            picks, buffer[:count] = buffer[:count], []
        numbers = np.array([n for n, _ in picks], dtype=np.int64)
        return numbers, pa.concat_tables([row for _, row in picks]).combine_chunks()

    for row in _rank_records(spec, total, rank, world_size, drop_last, read_batch):
        buffer.append(row)
        if len(buffer) >= capacity:
            yield emit(batch_size)
    while len(buffer) >= batch_size:
        yield emit(batch_size)
    if buffer and not drop_last:
        yield emit(len(buffer))
