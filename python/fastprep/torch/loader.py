"""``fastprep.torch.DataLoader``: torch's DataLoader interface, with decoding
and augmentation on GIL-free Rust threads writing straight into the batch.

Per batch, Python does a constant amount of work: pick indices (numpy), take
the rows (Arrow), one Rust call that decodes, crops, flips and resizes every
image in parallel into one buffer, and a DLPack hand-over of that buffer to
torch. A background thread keeps ``prefetch_factor`` batches ready.
"""

from __future__ import annotations

import collections
import ctypes
import inspect
import json
import os
import queue
import random
import threading
import warnings
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from fastprep import _core
from fastprep.arrow_input import is_table_like
from fastprep.hashtags import label_captions, load_vocabulary
from fastprep.images import decode_images
from fastprep.pipeline.sources import count_records, source_kind
from fastprep.torch.data import (
    MapSource,
    from_hf_dataset,
    from_samples,
    is_hf_dataset,
    open_map_source,
)
from fastprep.torch.rebuilt import Index, register, serve_batches
from fastprep.torch.sampling import batch_count, batch_seed, epoch_order, epoch_rng, rank_slice
from fastprep.torch.slots import SlotRing, Tasks, WorkerSlots
from fastprep.torch.stream import per_rank, stream_batches
from fastprep.torch.tail import Tail, float_view
from fastprep.torch.transforms import Recipe, evaluate, split_torchvision, train

_default_collate = torch.utils.data.default_collate

_STATE_VERSION = 1

_TORCH_LOADER_ARGS = frozenset(inspect.signature(torch.utils.data.DataLoader).parameters)


def _is_torchvision_folder(dataset: Any) -> bool:
    return (
        hasattr(dataset, "samples") and hasattr(dataset, "loader") and hasattr(dataset, "transform")
    )


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _is_planar(pixels: pa.Array | pa.ChunkedArray) -> bool:
    """Whether a fixed-shape tensor column holds ``[3, H, W]`` planes."""
    return list(getattr(pixels.type, "dim_names", None) or []) == ["C", "H", "W"]


def _uint8_tensor(pixels: pa.Array | pa.ChunkedArray) -> torch.Tensor:
    """``[B, H, W, 3]`` uint8 tensor over a fixed-shape tensor column's
    buffer: no copy. The tensor keeps the Arrow buffer alive, and is
    writable (the batch's buffer belongs to this batch alone)."""
    if isinstance(pixels, pa.ChunkedArray):
        pixels = pixels.combine_chunks()
    if not isinstance(pixels.type, pa.FixedShapeTensorType):
        raise TypeError("expected an arrow.fixed_shape_tensor pixel column")
    shape = tuple(pixels.type.shape)
    storage = pixels.storage
    frame = int(np.prod(shape))
    count = len(storage) * frame
    if count == 0:
        return torch.empty((0, *shape), dtype=torch.uint8)
    # The child values ignore the list array's own offset (set when sliced).
    values = storage.values
    buffer = values.buffers()[1]
    start = values.offset + storage.offset * frame
    if start + count > buffer.size:
        raise ValueError("pixel buffer is shorter than its shape says")
    # A ctypes view: writable (torch warns on read-only numpy arrays) and
    # holding the Arrow buffer so the memory outlives every view of it.
    holder: Any = (ctypes.c_uint8 * count).from_address(buffer.address + start)
    holder.arrow_buffer = buffer
    return torch.from_numpy(np.ctypeslib.as_array(holder)).view(len(storage), *shape)


_FASTPREP_ONLY = {
    "transform",
    "weights",
    "replacement",
    "num_samples",
    "seed",
    "rank",
    "world_size",
    "vocab",
    "streaming",
    "shuffle_buffer",
    "target",
    "channels_last",
    "memory_format",
    "image_column",
    "caption_column",
    "apply_orientation",
    "background",
    "drop_alpha",
    "reduced_decode",
}


class _Order(torch.utils.data.Sampler):
    """The loader's own sample order for its current epoch, as a torch
    Sampler: what ``loader.sampler`` reads back when none was given (a
    :class:`torch.utils.data.RandomSampler` when shuffling, a
    :class:`torch.utils.data.SequentialSampler` otherwise, see below), so
    frameworks that rebuild a torch DataLoader from ``dataset`` and
    ``batch_sampler`` get the same samples.

    It follows the loader's epoch until iterated to its end by someone else
    (a torch loader rebuilt from it, as Accelerate's ``prepare`` does): then,
    as torch's RandomSampler draws a new order per pass, it moves on to the
    next epoch, until :meth:`set_epoch` (or the loader's) sets it again.

    Under DDP it yields the whole epoch order (the same on every rank: the
    seed is shared), as torch's samplers do; the loader itself iterates only
    its rank's share. A framework that shards the batch sampler again
    (Accelerate's ``BatchSamplerShard``) then splits the dataset once, not
    one rank's share."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.data_source: Any = loader.dataset
        self._epoch: int | None = None  # None: the loader's epoch

    def _current(self) -> int:
        return self.loader.epoch if self._epoch is None else self._epoch

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        epoch = self._current()
        token = self.loader._token
        # Tagged, so that a torch loader rebuilt from this sampler still gets
        # its batches decoded by fastprep (see fastprep.torch.rebuilt).
        for position, index in enumerate(self.loader._epoch_order(epoch).tolist()):
            yield Index(index, token, epoch, position)
        self._epoch = epoch + 1  # a finished pass moves on

    def __len__(self) -> int:
        return len(self.loader._epoch_order(self._current()))


class _RandomOrder(_Order, torch.utils.data.RandomSampler):
    def __init__(self, loader: DataLoader) -> None:
        _Order.__init__(self, loader)
        self.replacement = loader.weights is not None and loader.replacement
        self._num_samples = loader.num_samples
        self.generator = loader.generator

    @property
    def num_samples(self) -> int:
        return len(self)


class _SequentialOrder(_Order, torch.utils.data.SequentialSampler):
    pass


class DataLoader(torch.utils.data.DataLoader):
    """Iterates over batches of decoded, augmented images, like
    :class:`torch.utils.data.DataLoader`.

    Args:
        dataset: a torchvision ``ImageFolder``/``DatasetFolder`` (its
            ``samples`` and ``transform`` are used: the transform is
            translated into the Rust recipe), a folder of images (with
            sidecar captions; class targets for an ImageFolder layout),
            Parquet file(s) with image bytes or ``fastprep prep`` shards, a
            pyarrow Table, or a list of paths or encoded images. Other
            datasets are handed to torch's own DataLoader with a warning.
        batch_size, shuffle, sampler, drop_last, generator, pin_memory,
        prefetch_factor, persistent_workers, timeout: as in torch.
            ``sampler`` is any iterable of indices (read once per epoch).
        num_workers: Rust decoding threads (0 or 1: one thread). Threads are
            always reused; ``persistent_workers`` only says how often
            ``worker_init_fn`` runs. When the transform leaves torchvision
            steps to run per sample in Python (``TrivialAugmentWide``,
            ``RandomErasing``...; see ``transform``), ``num_workers >= 2``
            means worker processes instead, as in torch: each builds whole
            batches (one Rust thread, then the Python steps), since Python
            threads would share one GIL. They are forked (``fork`` start
            method; another ``multiprocessing_context`` keeps threads) and
            their batches reach this process through shared memory. Each
            batch's Python steps draw from torch's and ``random``'s
            generators seeded for that batch (from ``seed``, the epoch and
            the batch number), so they repeat whatever ``num_workers`` is.
        worker_init_fn: called as torch calls it, ``worker_init_fn(i)`` for
            each worker id ``i`` in ``range(num_workers)`` when a pass starts
            (once per loader with ``persistent_workers=True``), never with
            ``num_workers=0``. With worker processes (above), torch's own
            workers call it. Otherwise there are none: the calls run
            in this process, before the pass's first batch (an exception
            raises from the first ``next``), ``get_worker_info()`` is None
            in them, and the global RNG states they reseed (torch,
            ``random``, numpy: what Lightning's ``seed_everything(workers=
            True)`` does) are restored after them, so the main process's
            randomness is untouched, as in torch.
        transform: a :class:`Recipe` (:func:`fastprep.torch.train` /
            :func:`fastprep.torch.evaluate`); default: the dataset's own
            torchvision transform, else ``evaluate(224)``.
        weights: per-sample weights (e.g. :func:`fastprep.sampling_weights`);
            draws ``num_samples`` indices with ``replacement`` per epoch.
        seed: seeds the order and every random crop/flip; default: drawn
            from ``generator`` or torch's global RNG (so ``torch.manual_seed``
            makes a run reproducible, as with torch's loader).
        rank, world_size: DDP position; default: from ``torch.distributed``
            when initialized. Every rank gets the same number of batches.
        vocab: a Vocabulary (or its JSON path) to label captions with.
        target: ``"multi_hot"`` or ``"softmax"`` to add a dense ``target``
            ``[B, len(vocab)]`` for hashtag labels.
        channels_last: images as ``[B, H, W, 3]`` instead of ``[B, 3, H, W]``.
        memory_format: ``torch.channels_last`` gives ``[B, 3, H, W]`` as a
            zero-copy channels-last view of the decode buffer; by default the
            batch is NCHW-contiguous, as torch's loader gives it.
        collate_fn: torch's meaning: called on the list of samples the
            dataset would give (``(image, target)`` tuples, or per-sample
            dicts); ``None`` or ``default_collate`` take the fast path.
        transform: also any torchvision transform: the leading fusable steps
            run in Rust, the rest as torchvision code on each decoded tensor
            (in ``num_workers`` worker processes, see ``num_workers``).
        apply_orientation, background, drop_alpha: decode switches.
            fastprep applies EXIF orientation and composites alpha over
            ``background`` (white); PIL (torch's ImageFolder) does neither:
            ``apply_orientation=False`` gives its pixels for rotated photos,
            and ``drop_alpha=True`` its ``convert("RGB")`` pixels for
            transparent ones (stored colours kept, alpha dropped).
        reduced_decode: when a JPEG crop is at least twice the output size,
            fastprep decodes it at 1/2, 1/4 or 1/8 scale in the DCT domain,
            with libjpeg's fast IDCT and chroma upsampling (default True:
            several times faster on large photos). torch's loader decodes
            every pixel with the accurate IDCT, then resizes: pixels then
            differ by about 1/255 on average (up to ~11/255 at sharp colour
            edges). ``reduced_decode=False`` decodes full size as PIL does
            (within 1/255 of torch's loader).
        streaming: read the source in order instead of by index (default for
            WebDataset tar shards): records are split among ranks round-robin
            and shuffled through a seeded buffer of ``shuffle_buffer`` records.
        erasures: erasure logs (``erasures.jsonl``) or prep output folders
            whose ``fastprep forget`` erasures apply (a prep output's own log
            is always read): a map-style source still holding an erased
            record is refused (:class:`fastprep.privacy.forget.ErasedRecordsError`),
            or those records are left out with ``on_erased="skip"``.

    Each batch is a dict: ``image``, ``index`` (int64 sample indices),
    ``key`` (list of str), and when available ``target`` (class int64, or
    the dense hashtag target), ``label_ids`` + ``label_offsets`` (hashtag
    labels, CSR). For a torchvision dataset it is the tuple ``(image,
    target)`` its own loader would give.
    """

    def __new__(cls, dataset: Any = None, *args: Any, **kwargs: Any):
        reason = _unreadable(dataset, kwargs.get("transform")) if dataset is not None else None
        if reason is not None:
            warnings.warn(
                f"fastprep cannot read {type(dataset).__name__} directly ({reason}); "
                "using torch.utils.data.DataLoader",
                stacklevel=2,
            )
            kwargs = {k: v for k, v in kwargs.items() if k not in _FASTPREP_ONLY}
            return torch.utils.data.DataLoader(dataset, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Iterable[int] | None = None,
        batch_sampler: Iterable[Any] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: torch.Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        transform: Any = None,
        weights: Any = None,
        replacement: bool = True,
        num_samples: int | None = None,
        seed: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        vocab: Any = None,
        target: str | None = None,
        channels_last: bool = False,
        memory_format: torch.memory_format | None = None,
        image_column: str | None = None,
        caption_column: str = "caption",
        streaming: bool | None = None,
        shuffle_buffer: int = 10_000,
        apply_orientation: bool | None = None,
        background: tuple[int, int, int] | None = None,
        drop_alpha: bool | None = None,
        reduced_decode: bool | None = None,
        erasures: Any = None,
        on_erased: str = "refuse",
    ) -> None:
        if batch_sampler is not None:
            # torch's rule: a batch sampler replaces batch_size, shuffle, sampler, drop_last.
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, "
                    "sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None or batch_size < 1:
            raise ValueError("batch_size must be a positive integer (or pass batch_sampler)")
        if sampler is not None and (shuffle or weights is not None):
            raise ValueError("sampler is mutually exclusive with shuffle and weights")
        if target not in (None, "multi_hot", "softmax"):
            raise ValueError("target must be None, 'multi_hot' or 'softmax'")
        if memory_format not in (None, torch.contiguous_format, torch.channels_last):
            raise ValueError("memory_format must be torch.contiguous_format or torch.channels_last")
        self.tuple_output = _is_torchvision_folder(dataset)
        self.hf_columns: dict[str, str] | None = None  # output key -> column (HF datasets)
        self.stream: str | None = None
        self.shuffle_buffer = int(shuffle_buffer)
        if streaming is None and isinstance(dataset, (str, os.PathLike)):
            text = os.fspath(dataset)
            if _prep_tar_output(text):  # `fastprep prep --sink webdataset` output
                dataset = os.path.join(text, "shard-*.tar")
                text = os.fspath(dataset)
            streaming = source_kind(text) == "tar" and not os.path.isdir(text)
        tv_transform = transform if not isinstance(transform, (Recipe, type(None))) else None
        if streaming:
            if weights is not None or sampler is not None or batch_sampler is not None:
                raise ValueError("weights and samplers need a map-style source, not a stream")
            self.stream = os.fspath(dataset)
            self.stream_options = {"caption_column": caption_column}
            if image_column is not None:
                self.stream_options["image_column"] = image_column
            total = count_records(self.stream)
            if total is None:
                raise ValueError(f"cannot list the records of {self.stream}")
            self.stream_total: int = total
            self.source = None
        elif self.tuple_output:
            self.source = from_samples(dataset.samples, getattr(dataset, "classes", None))
            if transform is None:
                tv_transform = dataset.transform
        elif is_hf_dataset(dataset):
            self.source, self.hf_columns, hf_transform = from_hf_dataset(dataset, image_column)
            if transform is None:
                tv_transform = hf_transform
        else:
            self.source = open_map_source(dataset, image_column)
            self.source.table = _screen_erased(self.source.table, dataset, erasures, on_erased)
        self._tail: Tail | None = None
        if tv_transform is not None:
            recipe, tail = split_torchvision(tv_transform)
            self._tail = Tail(tail) if tail else None
        else:
            recipe = transform or evaluate(224)
        if apply_orientation is not None:
            recipe = replace(recipe, apply_orientation=bool(apply_orientation))
        if background is not None:
            recipe = replace(recipe, background=(background[0], background[1], background[2]))
        if drop_alpha is not None:
            recipe = replace(recipe, drop_alpha=bool(drop_alpha))
        if reduced_decode is not None:
            recipe = replace(recipe, reduced_decode=bool(reduced_decode))
        self.recipe = recipe
        self.transform = transform
        # torch's attributes, with torch's meaning.
        self.dataset = dataset
        self.batch_size = None if batch_size is None else int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.num_threads = max(1, int(num_workers))
        self._fast_collate = collate_fn is None or collate_fn is _default_collate
        self.collate_fn = _default_collate if collate_fn is None else collate_fn
        self.pin_memory = bool(pin_memory)
        self.pin_memory_device = pin_memory_device
        self._pin = self.pin_memory and _accelerator_available(pin_memory_device)
        if self.pin_memory and not self._pin:
            warnings.warn(
                "pin_memory=True, but no accelerator is found: batches are not pinned",
                stacklevel=2,
            )
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn  # see _init_workers
        self._workers_initialized = False
        self._DataLoader__multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self._prefetch = prefetch_factor or 2
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self._dataset_kind = torch.utils.data.dataloader._DatasetKind.Map
        self._IterableDataset_len_called = None
        self._iterator = None
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.replacement = replacement
        self.num_samples = num_samples
        auto_rank, auto_world = _distributed()
        self.rank = auto_rank if rank is None else int(rank)
        self.world_size = auto_world if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size}")
        self.seed = int(seed) if seed is not None else _shared_seed(generator, self.world_size)
        self.vocab = load_vocabulary(vocab) if isinstance(vocab, str) else vocab
        self.target = target
        self.channels_last = channels_last
        self.memory_format = memory_format
        self.caption_column = caption_column
        self.epoch = 0
        self._start_batch = 0  # set by load_state_dict: resume mid-epoch
        self._yielded = 0
        self._stride = (0, 1)  # (this worker, workers): IterableImageDataset's share
        self.errors: list[tuple[str, str]] = []  # (key, reason) of replaced samples
        self._errors_lock = threading.Lock()
        # Samples that once decoded cleanly when read to the end: their later
        # crops stop after the crop's last row (see DecodeOptions.read_to_end).
        self._intact: np.ndarray | None = None
        self._intact_shared: torch.Tensor | None = None  # _intact's memory, for workers
        self._worker_reports: list[tuple[str, str]] | None = None  # set in worker processes
        # Shared-memory slots for the images the tail's workers return.
        self._slots = SlotRing(max(1, int(num_workers)) * (prefetch_factor or 2) + 4)
        self._sampler_given = sampler
        self._batch_sampler_given = batch_sampler
        self._token = register(self)
        if self.tuple_output or self.hf_columns is not None:
            serve_batches(dataset)
        self.sampler: Any = sampler
        if sampler is None:
            order = _RandomOrder if (shuffle or weights is not None) else _SequentialOrder
            self.sampler = order(self)
        self.batch_sampler: Any = batch_sampler
        if batch_sampler is None:
            self.batch_sampler = torch.utils.data.BatchSampler(
                self.sampler, int(batch_size or 1), drop_last
            )
        if self.source is not None and self.source.kind == "pixels" and transform is not None:
            shape = tuple(self.source.table.schema.field(self.source.image_column).type.shape)
            if (
                recipe.mode == "random_resized_crop"
                or recipe.flip_p
                or tuple(recipe.size) != shape[:2]
            ):
                raise ValueError(
                    f"prepared pixel shards are already {shape[0]}x{shape[1]}: pass no "
                    "transform, or one of that size without crops or flips (e.g. for "
                    ".normalized())"
                )
        self._DataLoader__initialized = True

    @property
    def multiprocessing_context(self) -> Any:
        return self._DataLoader__multiprocessing_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, value: Any) -> None:
        self._DataLoader__multiprocessing_context = value

    # -- torch's interface -------------------------------------------------
    def __len__(self) -> int:
        if self.stream is not None:
            samples = per_rank(self.stream_total, self.world_size, self.drop_last)
            return batch_count(samples, self.batch_size or 1, self.drop_last)
        if self._batch_sampler_given is not None:
            return len(self._batch_sampler_given)  # type: ignore[arg-type]
        return batch_count(len(self._rank_order(self.epoch)), self.batch_size or 1, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch (shuffling and augmentation derive from it), like
        ``DistributedSampler.set_epoch``. Without calls, the epoch advances
        after each complete pass."""
        self.epoch = int(epoch)
        self._start_batch = 0
        if isinstance(self.sampler, _Order):
            self.sampler._epoch = None  # follows the loader again

    def state_dict(self) -> dict:
        """Position to resume from: the batches after :meth:`load_state_dict`
        are those an uninterrupted run would have produced next."""
        return {
            "version": _STATE_VERSION,
            "epoch": self.epoch,
            # Restored but not iterated yet: the restored position still holds.
            "batches_done": self._start_batch or self._yielded,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError("state_dict from another fastprep loader version")
        for name in ("world_size", "batch_size"):
            if state[name] != getattr(self, name):
                raise ValueError(f"state_dict was saved with {name}={state[name]}")
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        if isinstance(self.sampler, _Order):
            self.sampler._epoch = None
        self._start_batch = int(state["batches_done"])

    def _plan(self, epoch: int, start: int) -> Iterator[tuple[int, np.ndarray, pa.Table | None]]:
        """``(batch number, sample indices, rows or None)`` from batch ``start`` on."""
        if self.stream is not None:
            batches = stream_batches(
                self.stream,
                total=self.stream_total,
                batch_size=self.batch_size or 1,
                seed=self.seed,
                epoch=epoch,
                rank=self.rank,
                world_size=self.world_size,
                drop_last=self.drop_last,
                shuffle=self.shuffle,
                shuffle_buffer=self.shuffle_buffer,
                source_options=self.stream_options,
            )
            for b, (numbers, rows) in enumerate(batches):
                # Skipped batches (resumed, or another torch worker's) are read
                # but never decoded.
                if b >= start and b % self._stride[1] == self._stride[0]:
                    yield b, numbers, rows
            return
        if self._batch_sampler_given is not None:
            for b, indices in enumerate(self._batch_sampler_given):
                if b >= start and b % self._stride[1] == self._stride[0]:
                    yield b, np.asarray(list(indices), dtype=np.int64), None
            return
        order = self._rank_order(epoch)
        size = self.batch_size or 1
        for b in range(start, batch_count(len(order), size, self.drop_last)):
            if b % self._stride[1] == self._stride[0]:
                yield b, order[b * size : (b + 1) * size], None

    def _init_workers(self) -> None:
        """torch calls ``worker_init_fn(worker_id)`` once in each worker it
        starts: for every pass (once per loader with ``persistent_workers``),
        never with ``num_workers=0``. fastprep has no worker processes, so
        the calls happen here, in this process, before the pass's first
        batch; the global RNG states (torch, ``random``, numpy) they reseed
        are restored after them, as a worker's seeding never reaches the
        main process in torch."""
        if self.worker_init_fn is None or self.num_workers <= 0:
            return
        if self.persistent_workers and self._workers_initialized:
            return
        states = (torch.get_rng_state(), random.getstate(), np.random.get_state())
        try:
            for worker_id in range(self.num_workers):
                self.worker_init_fn(worker_id)
        finally:
            torch.set_rng_state(states[0])
            random.setstate(states[1])
            np.random.set_state(states[2])
        self._workers_initialized = True

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        start = self._start_batch
        self._start_batch = 0
        self._yielded = start
        epoch = self.epoch
        plan = self._plan(epoch, start)
        if self.source is not None and self._intact is None:
            self._intact = np.zeros(len(self.source), dtype=bool)
        if self._tail_in_processes():
            self._share_intact()
            batches = self._process_batches(plan, epoch)
        else:
            self._init_workers()
            batches = self._thread_batches(plan, epoch)
        try:
            for item in batches:
                self._yielded += 1
                yield item
        finally:
            # Also when the loop is left early: the workers stop and the
            # batches they hold are released.
            batches.close()
        if self.epoch == epoch:
            self.epoch += 1  # a finished pass moves on, as torch's RandomSampler does
        self._yielded = 0

    def _thread_batches(
        self, plan: Iterator[tuple[int, np.ndarray, pa.Table | None]], epoch: int
    ) -> Generator[Any, None, None]:
        """The batches of ``plan``, built in this process: Rust decodes on
        ``num_workers`` threads, a torchvision tail runs on as many Python
        threads."""
        produced: queue.Queue = queue.Queue(maxsize=self._prefetch)
        stop = threading.Event()
        slots_lock = threading.Lock()  # the ring is used by producer and consumer

        def put(item: Any) -> bool:
            """Hands over ``item`` unless the consumer has gone (then False)."""
            while not stop.is_set():
                try:
                    produced.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            pool = ThreadPoolExecutor(self.num_threads) if self._tail is not None else None
            # Two batches in the making: while one is assembled in Python
            # (GIL held), the next is already decoding in the Rust threads,
            # so they never wait for the assembly. Handed over in order.
            builders = ThreadPoolExecutor(2, thread_name_prefix="fastprep-batch")
            pending: collections.deque[tuple[Future, int | None]] = collections.deque()

            def hand_over() -> bool:
                future, key = pending.popleft()
                return put((future.result(), key))

            try:
                for b, indices, rows in plan:
                    seed = batch_seed(self.seed, epoch, self.rank, b)
                    with slots_lock:  # only when the tail writes the batch itself
                        fills = self._tail is not None and self._tail.writes_into_memory_given
                        slot = self._slots.take() if fills else None
                    tensor = None if slot is None else slot.tensor
                    future = builders.submit(self._make_batch, indices, seed, rows, pool, tensor)
                    pending.append((future, None if slot is None else slot.key))
                    if len(pending) == 2 and not hand_over():
                        return
                while pending:
                    if not hand_over():
                        return
                put(StopIteration())
            except BaseException as error:  # raised in the consumer
                put(error)
            finally:
                builders.shutdown(wait=False, cancel_futures=True)
                if pool is not None:
                    pool.shutdown(wait=False)

        worker = threading.Thread(target=produce, name="fastprep-loader", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    item = produced.get(timeout=self.timeout or None)
                except queue.Empty:
                    raise RuntimeError(
                        f"DataLoader timed out after {self.timeout} seconds"
                    ) from None
                if isinstance(item, StopIteration):
                    return
                if isinstance(item, BaseException):
                    raise item
                batch, key = item
                images = _images_of(batch)
                with slots_lock:
                    # Same process: whether the images are in the slot or not,
                    # their own references guard it (nothing is mapped anew).
                    self._slots.returned(key, images, used=False)
                    self._slots.learn(images)
                del images
                yield batch
        finally:
            stop.set()
            worker.join(timeout=5)
            with slots_lock:
                self._slots.forget_busy()

    def _tail_in_processes(self) -> bool:
        """A torchvision tail holds the GIL between its kernels, so Python
        threads cannot run it in parallel: with ``num_workers >= 2`` each
        batch is built whole (decode, then the tail) in a worker process, as
        torch's loader does. Needs ``fork`` (the loader is not pickled) and a
        map-style source, and never nests in another loader's worker."""
        if self._tail is None or not self._tail.runs_python or self.num_workers < 2:
            return False
        if self.source is None or torch.utils.data.get_worker_info() is not None:
            return False
        return _fork_context(self.multiprocessing_context) is not None

    def _share_intact(self) -> None:
        """Moves the intact-sample marks into shared memory before the
        workers fork, so a mark one worker makes serves them all (and the
        main process): a batch is read only up to its crops when each of
        its samples was once found intact, by whichever worker."""
        if self._intact is None or self._intact_shared is not None:
            return
        shared = torch.zeros(len(self._intact), dtype=torch.bool).share_memory_()
        shared.numpy()[:] = self._intact
        self._intact_shared = shared  # keeps the shared mapping alive
        self._intact = shared.numpy()

    def _process_batches(
        self, plan: Iterator[tuple[int, np.ndarray, pa.Table | None]], epoch: int
    ) -> Generator[Any, None, None]:
        """The batches of ``plan``, each built by one of ``num_workers``
        forked worker processes (one Rust thread each), through torch's own
        worker machinery: ordered hand-over, ``prefetch_factor``, ``timeout``,
        ``worker_init_fn`` run in the workers, shared-memory tensors."""
        items = [(indices, batch_seed(self.seed, epoch, self.rank, b)) for b, indices, _ in plan]
        if not items:
            return
        if self.persistent_workers and self._token in _PERSISTENT:
            inner, tasks = _PERSISTENT[self._token]
        else:
            tasks = Tasks(self._slots)
            workers = _BatchWorkers(self)
            options: dict[str, Any] = {}
            if "in_order" in _TORCH_LOADER_ARGS:
                options["in_order"] = self.in_order
            # Workers' starting seeds follow the loader's seed and epoch
            # (each batch then reseeds the tail: see _BatchWorkers).
            seeds = torch.Generator().manual_seed(
                int(epoch_rng(self.seed, epoch, self.rank, 0, 2).integers(0, 2**63 - 1))
            )
            inner = torch.utils.data.DataLoader(
                workers,
                batch_size=None,
                sampler=tasks,
                num_workers=self.num_workers,
                collate_fn=_identity,
                timeout=self.timeout,
                worker_init_fn=_WorkerSetup(self.worker_init_fn, workers),
                multiprocessing_context=_fork_context(self.multiprocessing_context),
                prefetch_factor=self.prefetch_factor,
                persistent_workers=self.persistent_workers,
                generator=seeds,
                **options,
            )
            if self.persistent_workers:
                _PERSISTENT[self._token] = (inner, tasks)
                weakref.finalize(self, _PERSISTENT.pop, self._token, None)
        self._slots.forget_busy()  # a pass left early leaves its slots to its workers
        tasks.items = items  # the workers read the pass's tasks from here
        for batch, reports, (slot, used) in inner:
            images = _images_of(batch)
            self._slots.returned(slot, images, used)
            self._slots.learn(images)
            for key, reason in reports:
                self._report(key, reason)
            if self._pin:
                from torch.utils.data._utils.pin_memory import pin_memory

                batch = pin_memory(batch, self.pin_memory_device or None)
            yield batch

    # -- internals -------------------------------------------------------
    def _map_source(self) -> MapSource:
        """The map-style source (a stream has none: its paths never get here)."""
        if self.source is None:
            raise RuntimeError("a streamed source has no map-style records")
        return self.source

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """Every rank's samples of ``epoch``, in order (a given sampler's)."""
        return epoch_order(
            len(self._map_source()),
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
            weights=self.weights,
            num_samples=self.num_samples,
            replacement=self.replacement,
            sampler=self._sampler_given,
        )

    def _rank_order(self, epoch: int) -> np.ndarray:
        """This rank's samples of ``epoch``."""
        order = self._epoch_order(epoch)
        if self._sampler_given is not None:
            return order  # the sampler decides (e.g. torch's DistributedSampler splits ranks)
        return rank_slice(order, self.rank, self.world_size, self.drop_last)

    def _decode(
        self,
        rows: pa.Table,
        seed: int,
        source: MapSource | None = None,
        indices: np.ndarray | None = None,
    ) -> pa.RecordBatch:
        """Decodes ``rows``. Pixels come as ``[3, H, W]`` planes when the
        batch will be NCHW (split in Rust, not by a strided copy later). A
        batch whose every sample already decoded cleanly once, read to the
        end, is not read past its crops again: a file's damage does not change
        between epochs."""
        source = source or self._map_source()
        images = source.paths(rows) if source.kind == "path" else rows.column(source.image_column)
        options = self.recipe.decode_options(seed)
        known_intact = (
            indices is not None
            and self._intact is not None
            and len(indices) > 0
            and bool(self._intact[indices].all())
        )
        planes = (
            not self.channels_last
            and self.memory_format is not torch.channels_last
            and not (self._tail is not None and self._tail.needs_interleaved)
        )
        if known_intact or planes:
            options = options.replace(
                read_to_end=not known_intact, channels_first=planes and options.size is not None
            )
        decoded = decode_images(images, options=options, num_threads=self.num_threads)
        if indices is not None and self._intact is not None and not known_intact:
            clean = pc.and_(
                pc.is_null(decoded.column("error")), pc.is_null(decoded.column("warnings"))
            )
            self._intact[np.asarray(indices)[clean.to_numpy(zero_copy_only=False)]] = True
        return decoded

    def _make_batch(
        self,
        indices: np.ndarray,
        seed: int,
        rows: pa.Table | None = None,
        pool: Executor | None = None,
        slot: torch.Tensor | None = None,
    ) -> Any:
        """One batch, collated (and pinned). ``slot``: memory the tail may
        write the scaled images into (see Tail)."""
        out = self._collate(*self._assemble(indices, seed, rows, pool, slot))
        if self._pin and self._worker_reports is None:
            from torch.utils.data._utils.pin_memory import pin_memory

            out = pin_memory(out, self.pin_memory_device or None)
        return out

    def _serve(self, indices: list[int]) -> list[Any]:
        """The samples of one batch for a torch loader rebuilt from this
        loader's sampler (Accelerate's ``prepare``; see
        :mod:`fastprep.torch.rebuilt`): decoded here as this loader decodes
        batch ``position // batch_size`` of the indices' epoch (the same
        crops), as the list of samples that loader's ``collate_fn`` expects.
        In a worker process: one Rust thread, and the Python steps of the
        transform draw from generators seeded for the batch, as in this
        loader's own workers; in the main process they draw from the global
        generators, as the dataset's own transform would."""
        first = indices[0]
        epoch, position = first.epoch, first.position  # type: ignore[attr-defined]
        seed = batch_seed(self.seed, epoch, 0, position // (self.batch_size or len(indices)))
        if torch.utils.data.get_worker_info() is not None:
            self.num_threads = 1  # this worker's copy: the workers are the parallelism
            _seed_tail(seed)
        return self._samples(*self._assemble(np.asarray(indices, dtype=np.int64), seed))

    def _assemble(
        self,
        indices: np.ndarray,
        seed: int,
        rows: pa.Table | None = None,
        pool: Executor | None = None,
        slot: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], pa.Table, list[Any] | None]:
        """One batch before collation: the fields Rust built (``image``,
        ``index``, ``key``, ``target``, labels), its rows, and the tail's
        per-sample outputs when they could not be stacked."""
        indices = np.asarray(indices, dtype=np.int64)
        if rows is None:
            source = self._map_source()
            rows = source.take(indices)
        else:  # a streamed batch: its rows are all there is
            source = MapSource(rows, "image", "bytes")
        if source.kind == "pixels":
            pixels = rows.column(source.image_column).combine_chunks()
        else:
            map_style = self.source is not None  # indices name records of the dataset
            decoded = self._decode(rows, seed, source, indices if map_style else None)
            errors = decoded.column("error")
            if errors.null_count < len(errors):
                if self.source is None:
                    indices, rows, decoded = self._replace_within(indices, rows, decoded, source)
                else:
                    indices, rows, decoded = self._replace_failed(indices, rows, decoded, seed)
            pixels = decoded.column("pixels")
        per_sample: list[Any] | None = None
        if self._tail is not None and self._tail.needs_interleaved and not _is_planar(pixels):
            image = _uint8_tensor(pixels)  # [B, H, W, 3]: PIL images are made from it
        else:
            image = self._layout(pixels, planar=_is_planar(pixels))
        if self._tail is not None:
            ran = self._tail(image, pool, self.num_threads, slot)
            if isinstance(ran, list):
                per_sample = ran
            else:
                image = ran
                if self.memory_format is torch.channels_last and image.dim() == 4:
                    image = image.contiguous(memory_format=torch.channels_last)
        batch: dict[str, Any] = {"image": image, "index": torch.from_numpy(indices)}
        if source.has("key"):
            batch["key"] = rows.column("key").to_pylist()
        if source.has("target"):
            batch["target"] = torch.from_numpy(
                np.array(rows.column("target").to_numpy(), dtype=np.int64)
            )
        labels = self._labels(rows)
        if labels is not None:
            offsets = labels.offsets.to_numpy().astype(np.int64)
            batch["label_offsets"] = torch.from_numpy(offsets - offsets[0])
            batch["label_ids"] = torch.from_numpy(
                labels.values.slice(offsets[0], offsets[-1] - offsets[0])
                .to_numpy(zero_copy_only=False)
                .astype(np.int64)
            )
            if self.target is not None and self.vocab is not None:
                from fastprep.hashtags import label_targets

                batch["target"] = torch.from_numpy(
                    label_targets(labels, len(self.vocab), kind=self.target)
                )
        return batch, rows, per_sample

    def _layout(self, pixels: pa.Array | pa.ChunkedArray, planar: bool = False) -> torch.Tensor:
        """A fixed-shape uint8 pixel column as a tensor of the recipe's dtype
        in the asked layout: contiguous NCHW by default (as torch's loader
        gives), a zero-copy channels-last view with
        ``memory_format=torch.channels_last``, or ``[B, H, W, 3]`` with
        ``channels_last=True``. ``planar``: the pixels were decoded as
        ``[B, 3, H, W]`` already (NCHW asked). Float output is scaled and
        normalised in Rust, as torchvision computes it (same bits)."""
        image = _uint8_tensor(pixels)
        if self.recipe.dtype == "float":
            if isinstance(pixels, pa.ChunkedArray):
                pixels = pixels.combine_chunks()
            mean = None if self.recipe.mean is None else list(self.recipe.mean)
            std = None if self.recipe.std is None else list(self.recipe.std)
            storage = pa.chunked_array([pixels.storage])
            scaled = _core.normalize_pixels(storage, planar, mean, std, False, self.num_threads)
            image = float_view(scaled, image.shape)
        if planar or self.channels_last:
            return image  # NCHW-contiguous, or [B, H, W, 3] as asked
        image = image.permute(0, 3, 1, 2)  # a view in channels-last memory format
        if self.memory_format is torch.channels_last:
            return image
        return image.contiguous()

    def _collate(self, batch: dict[str, Any], rows: pa.Table, per_sample: list[Any] | None) -> Any:
        """torch's ``collate_fn`` semantics: a custom collate gets the list
        of samples the dataset would give; ``None`` or ``default_collate``
        take the fast path (the batch Rust built, or the tail's outputs
        stacked, as ``default_collate`` would)."""
        if self._fast_collate and self.hf_columns is None:
            if per_sample is None:
                return (batch["image"], batch["target"]) if self.tuple_output else batch
            stacked = _default_collate(per_sample)
            return (stacked, batch["target"]) if self.tuple_output else {**batch, "image": stacked}
        return self.collate_fn(self._samples(batch, rows, per_sample))

    def _samples(
        self, batch: dict[str, Any], rows: pa.Table, per_sample: list[Any] | None
    ) -> list[Any]:
        """The batch as the list of samples the dataset would give."""
        images = per_sample if per_sample is not None else list(batch["image"].unbind(0))
        if self.hf_columns is not None:
            columns = {
                key: (images if column == "\0image" else rows.column(column).to_pylist())
                for key, column in self.hf_columns.items()
            }
            samples: list[Any] = [
                {key: values[i] for key, values in columns.items()} for i in range(len(images))
            ]
        elif self.tuple_output:
            samples = list(zip(images, batch["target"].tolist()))
        else:
            keys = batch.get("key")
            samples = []
            for i, one in enumerate(images):
                sample: dict[str, Any] = {"image": one, "index": int(batch["index"][i])}
                if keys is not None:
                    sample["key"] = keys[i]
                if "target" in batch:
                    target = batch["target"][i]
                    sample["target"] = target if target.dim() else int(target)
                if "label_ids" in batch:
                    lo, hi = batch["label_offsets"][i], batch["label_offsets"][i + 1]
                    sample["label_ids"] = batch["label_ids"][lo:hi]
                samples.append(sample)
        return samples

    def _labels(self, rows: pa.Table) -> pa.ListArray | None:
        if "labels" in rows.schema.names:
            return rows.column("labels").combine_chunks()
        if self.vocab is not None and self.caption_column in rows.schema.names:
            labelled = label_captions(rows.column(self.caption_column), self.vocab)
            return labelled.column("labels").combine_chunks()
        return None

    def _replace_failed(
        self, indices: np.ndarray, rows: pa.Table, decoded: pa.RecordBatch, seed: int
    ) -> tuple[np.ndarray, pa.Table, pa.RecordBatch]:
        """Swaps each undecodable sample for the next decodable one in index
        order (deterministic), so every rank keeps the same batch count."""
        n = len(self._map_source())
        failed = np.flatnonzero(pc.is_valid(decoded.column("error")).to_numpy(zero_copy_only=False))
        keys = rows.column("key").to_pylist() if self._map_source().has("key") else None
        indices = indices.copy()
        for position in failed:
            original = int(indices[position])
            reason = decoded.column("error")[int(position)].as_py()
            self._report(keys[position] if keys else str(original), reason)
            for step in range(1, n):
                candidate = (original + step) % n
                probe = self._decode(self._map_source().take(np.array([candidate])), seed + step)
                if probe.column("error")[0].as_py() is None:
                    indices[position] = candidate
                    break
                self._report(str(candidate), probe.column("error")[0].as_py())
            else:
                raise RuntimeError("no sample in the dataset can be decoded")
        rows = self._map_source().take(indices)
        return indices, rows, self._decode(rows, seed)

    def _replace_within(
        self, indices: np.ndarray, rows: pa.Table, decoded: pa.RecordBatch, source: MapSource
    ) -> tuple[np.ndarray, pa.Table, pa.RecordBatch]:
        """Streams cannot seek: an undecodable sample is replaced by the next
        decodable one of the same batch (deterministic), keeping its size."""
        ok = pc.is_null(decoded.column("error")).to_numpy(zero_copy_only=False)
        if not ok.any():
            raise RuntimeError("no sample of a streamed batch could be decoded")
        keys = rows.column("key").to_pylist()
        chosen = np.arange(len(ok))
        for position in np.flatnonzero(~ok):
            self._report(keys[position], decoded.column("error")[int(position)].as_py())
            step = 1
            while not ok[(position + step) % len(ok)]:
                step += 1
            chosen[position] = (position + step) % len(ok)
        take = pa.array(chosen, pa.int64())
        return indices[chosen], rows.take(take), decoded.take(take)

    def _report(self, key: str, reason: str) -> None:
        if self._worker_reports is not None:  # in a worker process: the main process reports
            self._worker_reports.append((key, reason))
            return
        with self._errors_lock:  # two batches may be in the making at once
            if (key, reason) in self.errors:
                return
            self.errors.append((key, reason))
        warnings.warn(f"fastprep: sample {key} replaced: {reason}", RuntimeWarning, stacklevel=3)


def _prep_tar_output(path: str) -> bool:
    manifest = os.path.join(path, "manifest.json")
    if not (os.path.isdir(path) and os.path.exists(manifest)):
        return False
    with open(manifest, encoding="utf-8") as f:
        outputs = json.load(f).get("outputs", [])
    return bool(outputs) and all(o["file"].endswith(".tar") for o in outputs)


def _screen_erased(table: Any, dataset: Any, erasures: Any, on_erased: str) -> Any:
    """Records listed in an erasure log (``erasures``: logs or output
    folders; a prep output's own ``erasures.jsonl`` is always read) are
    refused, or skipped with ``on_erased="skip"``."""
    from fastprep.privacy.forget import screen_erased

    logs = (
        []
        if erasures is None
        else list(erasures)
        if isinstance(erasures, (list, tuple))
        else [erasures]
    )
    if isinstance(dataset, (str, os.PathLike)) and os.path.isdir(dataset):
        logs.append(dataset)
    return screen_erased(table, logs, on_erased)


_TORCHVISION_LOADERS = ("default_loader", "pil_loader", "accimage_loader")


def _unreadable(dataset: Any, transform: Any) -> str | None:
    """Why fastprep cannot read ``dataset`` itself (then torch's loader
    does), or None."""
    if _is_torchvision_folder(dataset):
        loader = dataset.loader
        if not (
            getattr(loader, "__module__", "") == "torchvision.datasets.folder"
            and getattr(loader, "__name__", "") in _TORCHVISION_LOADERS
        ):
            return f"a custom ImageFolder loader {getattr(loader, '__name__', loader)!r}"
        if getattr(dataset, "target_transform", None) is not None:
            return "a target_transform"
        candidate = transform if transform is not None else dataset.transform
    elif is_hf_dataset(dataset):
        try:
            _, _, candidate = from_hf_dataset(dataset, None, probe=True)
        except (TypeError, ValueError, KeyError) as error:
            return str(error)
        candidate = transform if transform is not None else candidate
    elif _readable(dataset):
        candidate = transform
    else:
        return "not a dataset fastprep reads"
    if candidate is None or isinstance(candidate, Recipe):
        if _is_torchvision_folder(dataset) and candidate is None:
            return "no transform: images of their own sizes cannot form a batch"
        return None
    try:
        split_torchvision(candidate)
    except ValueError as error:
        return str(error)
    return None


def _accelerator_available(device: str) -> bool:
    if device:
        return device != "cpu"
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def _shared_seed(generator: torch.Generator | None, world_size: int) -> int:
    """The order's seed when none is given: drawn from ``generator`` or
    torch's RNG (so ``torch.manual_seed`` works), and the same on every DDP
    rank: rank 0's, broadcast when a process group is up; without one (rank
    and world size given by hand) 0, as ``DistributedSampler``'s default, so
    ranks that seed torch differently still get disjoint shards."""
    drawn = int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())
    if world_size == 1:
        return drawn
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        box = [drawn]
        torch.distributed.broadcast_object_list(box, src=0)
        return int(box[0])
    return 0


def _readable(dataset: Any) -> bool:
    if _is_torchvision_folder(dataset) or isinstance(
        dataset, (MapSource, pa.Table, str, os.PathLike)
    ):
        return True
    if is_table_like(dataset):  # HF datasets and other Arrow tables
        return True
    if isinstance(dataset, (list, tuple)):  # of paths or encoded images only
        kinds = (str, os.PathLike, bytes, bytearray, memoryview)
        return len(dataset) > 0 and all(isinstance(item, kinds) for item in dataset)
    return False


__all__ = ["DataLoader", "Recipe", "evaluate", "train"]


def _fork_context(asked: Any) -> Any:
    """The ``fork`` multiprocessing context the tail's workers need, or None
    (another start method asked, or none available): the loader's state
    (sources, transforms, locks) reaches the workers by ``fork``, unpickled."""
    import multiprocessing

    if asked is None:
        if "fork" not in multiprocessing.get_all_start_methods():
            return None
        return multiprocessing.get_context("fork")
    method = asked if isinstance(asked, str) else asked.get_start_method()
    return multiprocessing.get_context("fork") if method == "fork" else None


def _seed_tail(seed: int) -> None:
    """Seeds torch's and Python's global generators, which torchvision's
    transforms draw from, for the batch of ``seed`` (in worker processes)."""
    tail_seed = int(np.random.default_rng([seed, 3]).integers(0, 2**63 - 1))
    torch.manual_seed(tail_seed)
    random.seed(tail_seed)


#: Persistent tail workers (torch's loader over them, and their task list)
#: by loader token. Kept here, outside the loader: the loader is in
#: reference cycles (its sampler refers to it), so it is freed by the cyclic
#: garbage collector, which would close torch's task queues before torch's
#: iterator sends its workers the stop signal (each worker then waits out
#: torch's 5-second join). A finalizer of the loader drops the entry, and
#: the iterator shuts its workers down at once.
_PERSISTENT: dict[int, tuple[torch.utils.data.DataLoader, Tasks]] = {}


def _images_of(batch: Any) -> Any:
    """The image tensor of a fast-collated batch (tuple or dict), else None."""
    if isinstance(batch, tuple) and len(batch) == 2:
        return batch[0]
    if isinstance(batch, dict):
        return batch.get("image")
    return None


def _with_images(batch: Any, images: torch.Tensor) -> Any:
    if isinstance(batch, tuple):
        return (images, batch[1])
    return {**batch, "image": images}


def _identity(item: Any) -> Any:
    return item


class _BatchWorkers(torch.utils.data.Dataset):
    """The tasks of a pass as a map-style dataset for torch's worker
    processes: item ``(indices, seed, slot)`` is that whole batch, built by
    the worker's (forked) copy of the loader, with what the main process
    must learn from it: the samples it replaced (its intact-sample marks are
    in shared memory already) and the slot its images are in.

    The loader is held weakly, so that persistent workers (``_PERSISTENT``)
    do not keep it alive; a forked worker's copy of the loader lives on in
    its copy of the main process's memory."""

    def __init__(self, loader: DataLoader) -> None:
        self._loader = weakref.ref(loader)
        self.slots = WorkerSlots(loader._slots.limit)

    @property
    def loader(self) -> DataLoader:
        loader = self._loader()
        if loader is None:
            raise RuntimeError("the fastprep DataLoader of these workers is gone")
        return loader

    def __getitem__(
        self, task: tuple[np.ndarray, int, tuple[int, torch.Tensor] | None]
    ) -> tuple[Any, list, tuple[int | None, bool]]:
        indices, seed, slot = task
        loader = self.loader
        loader._worker_reports = []
        # The tail's randomness (torch's and Python's global generators, which
        # torchvision draws from) follows the batch, not the worker: the same
        # batches whatever the number of workers, and after a resume.
        _seed_tail(seed)
        batch = loader._make_batch(indices, seed, slot=None if slot is None else slot[1])
        reports, loader._worker_reports = loader._worker_reports, []
        # The images go back in the slot the main process gave (shared memory
        # mapped already); the rest, torch's result queue moves to shared
        # memory.
        images = _images_of(batch)
        kept = self.slots.fill(slot, images)
        if kept is not images:
            batch = _with_images(batch, kept)
        used = slot is not None and torch.is_tensor(kept) and kept.data_ptr() == slot[1].data_ptr()
        return batch, reports, (None if slot is None else slot[0], used)


class _WorkerSetup:
    """``worker_init_fn`` of the tail's workers: one Rust thread each (the
    workers are the parallelism), then the user's ``worker_init_fn``, as
    torch calls it. (Batches are pinned in the main process: a worker's
    ``_worker_reports`` list turns pinning off there.)"""

    def __init__(self, user: Callable[[int], None] | None, workers: _BatchWorkers) -> None:
        self.user = user
        self.workers = workers

    def __call__(self, worker_id: int) -> None:
        self.workers.loader.num_threads = 1
        if self.user is not None:
            self.user(worker_id)
