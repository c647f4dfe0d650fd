"""Which samples each rank sees, in which order, per epoch.

Everything derives from ``(seed, epoch)`` through numpy's SeedSequence, so an
order can be recomputed anywhere: that is what makes resuming exact and
every DDP rank agree without communicating.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def epoch_rng(seed: int, epoch: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & (2**63 - 1), int(epoch), *stream])


def epoch_order(
    n: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    weights: np.ndarray | None = None,
    num_samples: int | None = None,
    replacement: bool = True,
    sampler: Iterable[int] | None = None,
) -> np.ndarray:
    """Sample indices of one epoch (before splitting among ranks).

    ``sampler`` (any iterable of indices, e.g. a torch Sampler) wins;
    ``weights`` draw ``num_samples`` (default ``n``) indices with probability
    proportional to the weights, with replacement by default (as torch's
    ``WeightedRandomSampler``); else ``shuffle`` permutes ``range(n)``.
    """
    if sampler is not None:
        return np.fromiter((int(i) for i in sampler), dtype=np.int64)
    rng = epoch_rng(seed, epoch)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be n finite non-negative values with a positive sum")
        count = n if num_samples is None else int(num_samples)
        if not replacement and count > np.count_nonzero(w):
            raise ValueError("num_samples exceeds the samples with weight > 0 (no replacement)")
        return rng.choice(n, size=count, replace=replacement, p=w / w.sum()).astype(np.int64)
    order = rng.permutation(n) if shuffle else np.arange(n)
    if num_samples is not None:
        order = np.resize(order, int(num_samples))
    return order.astype(np.int64)


def rank_slice(order: np.ndarray, rank: int, world_size: int, drop_last: bool) -> np.ndarray:
    """This rank's share, the same length on every rank (as torch's
    ``DistributedSampler``): the order is padded by wrapping around, or cut
    with ``drop_last``, to a multiple of ``world_size``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    n = len(order)
    if world_size == 1:
        return order
    if drop_last:
        order = order[: n - n % world_size]
    elif n % world_size:
        order = np.resize(order, n + world_size - n % world_size)
    return order[rank::world_size]


def batch_count(samples: int, batch_size: int, drop_last: bool) -> int:
    return samples // batch_size if drop_last else -(-samples // batch_size)


def batch_seed(seed: int, epoch: int, rank: int, batch: int) -> int:
    """Seed of one batch's random transforms (RandomResizedCrop, flip)."""
    return int(epoch_rng(seed, epoch, rank, batch, 1).integers(0, 2**63 - 1))
