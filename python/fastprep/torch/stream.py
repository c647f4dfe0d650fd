"""Streamed sources (WebDataset tar shards, or any pipeline source read in
order): rank split, shuffle buffer, and batches.

Record ``r`` of the stream goes to rank ``r % world_size``; the stream is
padded with its first records to a multiple of ``world_size`` (or cut, with
``drop_last``), as ``DistributedSampler`` pads, so every rank yields the
same number of batches. Shuffling is a seeded buffer of
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
    spec: str,
    total: int,
    rank: int,
    world_size: int,
    drop_last: bool,
    read_batch: int,
    source_options: dict,
) -> Iterator[tuple[int, pa.Table]]:
    """This rank's records as ``(record number, one-row table)``: positions
    ``rank, rank + W, ...`` of the stream, which is cut to a multiple of ``W``
    (``drop_last``) or padded with its own first records, as torch's
    ``DistributedSampler`` pads its index list."""
    length = per_rank(total, world_size, drop_last) * world_size
    head: list[pa.Table] = []  # the stream's first records, for padding
    number = 0
    for batch in open_source(spec, batch_size=read_batch, **source_options):
        table = pa.Table.from_batches([batch])
        wanted = ["key", "source", "image", "caption", "labels"]
        table = table.select([c for c in wanted if c in table.column_names])
        for i in range(table.num_rows):
            if number >= length:
                return
            row = table.slice(i, 1)
            if len(head) < world_size:
                head.append(row)
            if number % world_size == rank:
                yield number, row
            number += 1
    for position in range(number, length if head else number):  # padding: from the start
        if position % world_size == rank:
            yield position - number, head[(position - number) % len(head)]


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
    source_options: dict | None = None,
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

    records = _rank_records(
        spec, total, rank, world_size, drop_last, read_batch, source_options or {}
    )
    for row in records:
        buffer.append(row)
        if len(buffer) >= capacity:
            yield emit(batch_size)
    while len(buffer) >= batch_size:
        yield emit(batch_size)
    if buffer and not drop_last:
        yield emit(len(buffer))
