"""fastprep as torch datasets, for code that keeps torch's own DataLoader.

:class:`IterableImageDataset` yields whole decoded batches (wrap it with
``torch.utils.data.DataLoader(ds, batch_size=None, num_workers=...)``); each
torch worker takes every ``num_workers``-th batch of the same seeded order,
so the union is exactly the single-process sequence. :class:`ImageDataset`
is the map-style view: ``ds[i]`` decodes one sample.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from fastprep.torch.data import open_map_source
from fastprep.torch.loader import DataLoader, _is_planar
from fastprep.torch.transforms import Recipe, evaluate


class IterableImageDataset(IterableDataset):
    """Batches of ``batch_size`` decoded samples, as :class:`DataLoader`
    yields them; takes the same keyword arguments. Picklable (it holds only
    its arguments), so it works with fork and spawn workers."""

    def __init__(self, dataset: Any, batch_size: int = 64, **options: Any) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        options.setdefault("seed", int(torch.empty((), dtype=torch.int64).random_().item()))
        self.options = options
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _loader(self) -> DataLoader:
        loader = DataLoader(self.dataset, batch_size=self.batch_size, **self.options)
        loader.set_epoch(self.epoch)
        return loader

    def __len__(self) -> int:
        return len(self._loader())

    def __iter__(self):
        loader = self._loader()
        info = get_worker_info()
        # Each worker decodes only its own batches of the shared seeded order.
        loader._stride = (0, 1) if info is None else (info.id, info.num_workers)
        yield from loader
        # A finished pass moves on (as the DataLoader does). With torch worker
        # processes that are not persistent, each epoch starts from the main
        # process's copy: call set_epoch(epoch) there.
        self.epoch += 1


class ImageDataset(Dataset):
    """Map-style: ``ds[i]`` is ``(image [3, H, W] uint8 or float, target)``
    (target: the class index, or -1 without classes). Random transforms
    draw their seed from torch's RNG, which torch seeds per worker."""

    def __init__(
        self, dataset: Any, transform: Recipe | None = None, image_column: str | None = None
    ):
        self.source = open_map_source(dataset, image_column)
        self.recipe = transform or evaluate(224)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self.source):
            raise IndexError(index)
        seed = int(torch.randint(0, 2**62, ()).item())
        loader = DataLoader(self.source, batch_size=1, transform=self.recipe, seed=seed)
        import numpy as np

        rows = self.source.take(np.array([index]))
        if self.source.kind == "pixels":
            pixels = rows.column(self.source.image_column).combine_chunks()
        else:
            decoded = loader._decode(rows, seed)
            error = decoded.column("error")[0].as_py()
            if error is not None:
                raise ValueError(f"sample {index} cannot be decoded: {error}")
            pixels = decoded.column("pixels")
        # The loader's own layout and float conversion (NCHW, normalised in Rust).
        image = loader._layout(pixels, planar=_is_planar(pixels))[0]
        target = rows.column("target")[0].as_py() if self.source.has("target") else -1
        return image, target
