"""Training and evaluation recipes, run in Rust inside the decode.

:func:`train` is torchvision's ``RandomResizedCrop + RandomHorizontalFlip``,
:func:`evaluate` its ``Resize + CenterCrop``; both seeded per sample, so a run
is reproducible. :func:`from_torchvision` reads a torchvision ``Compose`` of
those transforms (plus ``ToTensor``/``PILToTensor``/``Normalize`` and their
``v2`` forms) so a dataset's own transform keeps its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fastprep.options import DecodeOptions

_FILTERS = {
    "nearest": "nearest",
    "nearest-exact": "nearest",
    "bilinear": "bilinear",
    "bicubic": "bicubic",
    "lanczos": "lanczos",
    "box": "box",
    "hamming": "hamming",
}


@dataclass(frozen=True)
class Recipe:
    """What happens to every image: geometry (in Rust), then output type."""

    size: tuple[int, int] = (224, 224)
    mode: str = "center_crop"
    resize_shorter: int | None = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.0
    filter: str = "bilinear"
    #: ``"uint8"`` (0-255) or ``"float"`` (0-1, then ``mean``/``std`` if set).
    dtype: str = "uint8"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def decode_options(self, seed: int = 0) -> DecodeOptions:
        """The decode this recipe runs, every other option at its default."""
        return DecodeOptions(
            size=self.size,
            mode=self.mode,
            resize_shorter=self.resize_shorter,
            scale=self.scale,
            ratio=self.ratio,
            flip_p=self.flip_p,
            filter=self.filter,
            seed=seed,
        )

    def normalized(self, mean: tuple[float, ...], std: tuple[float, ...]) -> Recipe:
        """The same recipe with float output normalised by ``mean``/``std``."""
        return replace(self, dtype="float", mean=tuple(mean), std=tuple(std))


def _pair(size: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    sides = tuple(int(s) for s in size)
    return (sides[0], sides[0]) if len(sides) == 1 else (sides[0], sides[1])


def train(
    size: int | tuple[int, int] = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    filter: str = "bilinear",
) -> Recipe:
    """``RandomResizedCrop(size, scale, ratio)`` + ``RandomHorizontalFlip(flip_p)``."""
    return Recipe(
        size=_pair(size),
        mode="random_resized_crop",
        scale=scale,
        ratio=ratio,
        flip_p=flip_p,
        filter=filter,
    )


def evaluate(
    size: int | tuple[int, int] = 224, resize: int | None = None, filter: str = "bilinear"
) -> Recipe:
    """``Resize(resize)`` (shorter side; default ``size * 256 / 224``) + ``CenterCrop(size)``."""
    return Recipe(size=_pair(size), mode="center_crop", resize_shorter=resize, filter=filter)


def _interpolation(transform: Any) -> str:
    mode = getattr(transform, "interpolation", None)
    name = str(getattr(mode, "value", mode or "bilinear")).lower()
    if name not in _FILTERS:
        raise ValueError(f"interpolation {name!r} has no fastprep equivalent")
    return _FILTERS[name]


def from_torchvision(transform: Any) -> Recipe:
    """Translate a torchvision transform pipeline into a :class:`Recipe`.

    Supported, in torchvision's usual order: ``RandomResizedCrop``,
    ``Resize`` + ``CenterCrop``, ``Resize((h, w))``, ``RandomHorizontalFlip``,
    ``ToTensor`` / ``PILToTensor`` / ``ToImage`` / ``ConvertImageDtype`` /
    ``ToDtype`` and ``Normalize`` (``transforms`` and ``transforms.v2``).
    Anything else raises ``ValueError`` naming it, rather than silently
    training on different data.
    """
    steps = list(getattr(transform, "transforms", [transform] if transform is not None else []))
    recipe: dict[str, Any] = {}
    resize_shorter = None
    for step in steps:
        name = type(step).__name__
        if name == "RandomResizedCrop":
            recipe.update(
                size=_pair(step.size),
                mode="random_resized_crop",
                scale=tuple(step.scale),
                ratio=tuple(step.ratio),
                filter=_interpolation(step),
            )
        elif name == "Resize":
            size = step.size
            if isinstance(size, int) or (isinstance(size, (list, tuple)) and len(size) == 1):
                resize_shorter = _pair(size)[0]
                recipe.setdefault("filter", _interpolation(step))
            else:
                recipe.update(size=_pair(size), mode="resize", filter=_interpolation(step))
        elif name == "CenterCrop":
            recipe.update(size=_pair(step.size), mode="center_crop")
            if resize_shorter is None:
                raise ValueError("CenterCrop without a Resize before it is not supported")
            recipe["resize_shorter"] = resize_shorter
        elif name == "RandomHorizontalFlip":
            recipe["flip_p"] = float(step.p)
        elif name in ("ToTensor",):
            recipe["dtype"] = "float"
        elif name in ("PILToTensor", "ToImage", "ToImageTensor"):
            recipe.setdefault("dtype", "uint8")
        elif name in ("ConvertImageDtype", "ToDtype"):
            dtype = getattr(step, "dtype", None)
            if isinstance(dtype, dict):  # v2.ToDtype({tv_tensors.Image: ...})
                dtype = next(iter(dtype.values()))
            if "float" in str(dtype):
                if name == "ToDtype" and not getattr(step, "scale", False):
                    raise ValueError("ToDtype(float) without scale=True is not supported")
                recipe["dtype"] = "float"
        elif name == "Normalize":
            recipe.update(dtype="float", mean=tuple(step.mean), std=tuple(step.std))
        else:
            raise ValueError(f"torchvision transform {name} has no fastprep equivalent")
    if "size" not in recipe:
        if resize_shorter is not None:
            raise ValueError("Resize(int) alone gives variable sizes; add CenterCrop")
        raise ValueError(
            "the transform must fix the output size (RandomResizedCrop, CenterCrop...)"
        )
    if recipe.get("mode") == "random_resized_crop" and "flip_p" not in recipe:
        recipe["flip_p"] = 0.0
    return Recipe(**recipe)
