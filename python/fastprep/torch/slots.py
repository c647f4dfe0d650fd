"""Shared-memory batch slots, reused from batch to batch, for the images a
torchvision tail scales (in the tail's worker processes, or on the loader's
threads, where they spare a fresh 38 MB buffer per batch as well).

torch moves each tensor a worker returns into fresh shared memory: for a
float batch of 64 images at 224x224 that is 38 MB to allocate, fault in and
copy, about a fifth of the batch's whole cost in the worker. Here the main
process keeps a few shared buffers (slots) and hands one to each task; the
worker copies the batch's images into it (its pages are mapped already) and
returns a view of it, which torch passes back by file descriptor without a
copy. A slot is reused only when nothing in the main process refers to it
any more (the training loop dropped the batch, views included: torch
counts the storage's users), and never while a worker may write to it.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

#: How torch counts the users of a storage (None: not available, no slots).
_use_count = getattr(torch._C, "_storage_Use_Count", None)


class Slot:
    """One shared buffer: ``rows`` images of ``shape`` and ``dtype``."""

    def __init__(self, key: int, rows: int, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.key = key
        self.tensor = torch.empty((rows, *shape), dtype=dtype).share_memory_()
        self.storage = self.tensor.untyped_storage()
        self.busy = False  # handed to a worker, its batch not back yet

    def free(self) -> bool:
        # The slot's own tensor and storage objects are its only users.
        return not self.busy and _use_count is not None and _use_count(self.storage._cdata) <= 2


class SlotRing:
    """The main process's slots, sized from the first batch that comes back
    (see :meth:`learn`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.slots: list[Slot] = []
        self.spec: tuple[int, tuple[int, ...], torch.dtype] | None = None
        self._keys = itertools.count()

    def learn(self, images: Any) -> None:
        """Takes the image tensors' layout from a returned batch."""
        if self.spec is not None or _use_count is None or not torch.is_tensor(images):
            return
        if images.dim() < 2 or not images.is_contiguous():
            return
        self.spec = (int(images.shape[0]), tuple(int(s) for s in images.shape[1:]), images.dtype)

    def take(self) -> Slot | None:
        """A free slot, a new one while under the limit, else None (that task
        goes through torch's own hand-over)."""
        if self.spec is None:
            return None
        for slot in self.slots:
            if slot.free():
                slot.busy = True
                return slot
        if len(self.slots) >= self.limit:
            return None
        slot = Slot(next(self._keys), *self.spec)
        slot.busy = True
        self.slots.append(slot)
        return slot

    def returned(self, key: int | None, images: Any, used: bool) -> None:
        """The task of slot ``key`` is back with ``images``, written into the
        slot when ``used``: from now on the main process's references to
        them guard the slot. Were they written there but received elsewhere
        (torch mapped the slot anew), those references could not be
        counted: the slot is retired."""
        for slot in self.slots:
            if slot.key == key:
                slot.busy = False
                if used and not self.holds(slot, images):
                    self.slots.remove(slot)
                return

    @staticmethod
    def holds(slot: Slot, images: Any) -> bool:
        return torch.is_tensor(images) and (
            images.untyped_storage().data_ptr() == slot.storage.data_ptr()
        )

    def forget_busy(self) -> None:
        """Drops the slots of tasks never collected (a pass left early): a
        worker may still write to them."""
        self.slots = [slot for slot in self.slots if not slot.busy]


class Tasks:
    """The tasks of a pass as torch's sampler: ``(indices, seed, slot)``, a
    slot given as each task is pulled (so slots follow consumption)."""

    def __init__(self, ring: SlotRing) -> None:
        self.ring = ring
        self.items: list[tuple[np.ndarray, int]] = []

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[np.ndarray, int, tuple[int, torch.Tensor] | None]]:
        for indices, seed in self.items:
            slot = self.ring.take()
            yield indices, seed, None if slot is None else (slot.key, slot.tensor)


class WorkerSlots:
    """A worker's side: keeps the slots it was sent mapped (the same storage
    object comes back from torch's cache, no new mapping), the most recent
    ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.mapped: collections.OrderedDict[int, torch.Tensor] = collections.OrderedDict()

    def fill(self, slot: tuple[int, torch.Tensor] | None, images: Any) -> Any:
        """``images`` in the slot (copied there unless written there
        already): a view of its first rows; or ``images`` itself when they
        do not fit it."""
        if slot is None:
            return images
        key, tensor = slot
        self.mapped[key] = tensor
        self.mapped.move_to_end(key)
        while len(self.mapped) > self.limit:
            self.mapped.popitem(last=False)
        if (
            not torch.is_tensor(images)
            or images.dtype != tensor.dtype
            or images.shape[1:] != tensor.shape[1:]
            or images.shape[0] > tensor.shape[0]
        ):
            return images
        view = tensor[: images.shape[0]]
        if images.data_ptr() != view.data_ptr():  # not written there already
            view.copy_(images)
        return view
