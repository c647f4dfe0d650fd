"""fastprep's decoding for torch loaders rebuilt from a fastprep loader.

Frameworks such as Hugging Face Accelerate (``Accelerator.prepare``) replace
a DataLoader with a plain :class:`torch.utils.data.DataLoader` made from its
``dataset`` and ``batch_sampler``. torch then fetches each batch with
``dataset.__getitems__(indices)`` when the dataset has that method, so that
is where fastprep can still decode: the indices a fastprep loader's sampler
yields are ints tagged with the loader and the epoch (:class:`Index`), and
the dataset's class gets a ``__getitems__`` (:func:`serve_batches`) that
hands a batch of tagged indices to that loader, to be decoded in Rust, and
any other batch to the dataset's own items, exactly as torch would fetch
them. A torch loader with its own sampler over the same dataset is thus
untouched.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

_LOADERS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_TOKENS = itertools.count(1)


class Index(int):
    """A sample index from a fastprep loader's sampler: an ``int`` that also
    names the loader (``token``), the epoch, and its position in the epoch's
    order (the batch number follows from it). Pickles as itself, so the tag
    reaches torch's worker processes."""

    token: int
    epoch: int
    position: int

    def __new__(cls, value: int, token: int, epoch: int, position: int) -> Index:  # noqa: PYI034
        index = super().__new__(cls, value)
        index.token, index.epoch, index.position = token, epoch, position
        return index

    def __reduce__(self) -> tuple[Any, ...]:
        return (Index, (int(self), self.token, self.epoch, self.position))


def register(loader: Any) -> int:
    """A token naming ``loader`` in the indices its sampler yields (held
    weakly: the sampler holds the loader)."""
    token = next(_TOKENS)
    _LOADERS[token] = loader
    return token


def tagged_loader(indices: Any, dataset: Any) -> Any:
    """The fastprep loader whose sampler made ``indices`` and which reads
    ``dataset``, or None (untagged indices: another sampler's, or
    reshuffled by hand)."""
    if not isinstance(indices, list) or not indices:
        return None
    first = indices[0]
    if not isinstance(first, Index):
        return None
    loader = _LOADERS.get(first.token)
    if loader is None or loader.dataset is not dataset:
        return None
    if not all(isinstance(i, Index) and i.token == first.token for i in indices):
        return None
    return loader


def serve_batches(dataset: Any) -> bool:
    """Gives the class of ``dataset`` a ``__getitems__`` that lets its fastprep
    loader decode batches of tagged indices. Untagged batches get exactly
    what torch's fetcher gets without it: the class's own ``__getitems__``,
    else ``[dataset[i] for i in indices]``. Returns False when the class
    cannot take it (built-in or slotted types)."""
    cls = type(dataset)
    if cls.__dict__.get("_fastprep_serves_batches"):
        return True
    own: Callable[[Any, list], list] | None = getattr(cls, "__getitems__", None)

    def __getitems__(self: Any, indices: list) -> list:
        loader = tagged_loader(indices, self)
        if loader is not None:
            return loader._serve(indices)
        if own is not None:
            return own(self, indices)
        return [self[i] for i in indices]

    try:
        cls.__getitems__ = __getitems__
        cls._fastprep_serves_batches = True
    except (TypeError, AttributeError):
        return False
    return True
