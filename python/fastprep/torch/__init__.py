"""PyTorch integration: a drop-in ``DataLoader`` on Rust threads, and
torch datasets. Needs torch (``pip install 'fastprep[torch]'``)."""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a torch-less venv
    raise ImportError(
        "fastprep.torch needs PyTorch: pip install 'fastprep[torch]' "
        "(or install torch for your platform from https://pytorch.org)"
    ) from error

from fastprep.torch.dataset import ImageDataset, IterableImageDataset
from fastprep.torch.loader import DataLoader
from fastprep.torch.transforms import Recipe, evaluate, from_torchvision, train

__all__ = [
    "DataLoader",
    "ImageDataset",
    "IterableImageDataset",
    "Recipe",
    "evaluate",
    "from_torchvision",
    "train",
]
