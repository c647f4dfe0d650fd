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
    #: EXIF orientation applied (fastprep's default; PIL's ``Image.open``
    #: does not rotate: ``False`` gives torchvision's ImageFolder pixels).
    apply_orientation: bool = True
    #: Transparent pixels are composited over this colour (PIL's
    #: ``convert("RGB")`` drops alpha instead; equal for opaque images).
    background: tuple[int, int, int] = (255, 255, 255)
    #: Keep transparent pixels' stored colour, as PIL's ``convert("RGB")``
    #: does (``background`` then only pads letterboxes).
    drop_alpha: bool = False
    #: JPEGs decoded at 1/2, 1/4 or 1/8 scale (DCT domain, fast IDCT) when
    #: the crop stays at least the output size; ``False``: every pixel
    #: decoded with the accurate IDCT, as PIL does.
    reduced_decode: bool = True

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
            apply_orientation=self.apply_orientation,
            background=self.background,
            drop_alpha=self.drop_alpha,
            reduced_decode=self.reduced_decode,
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


_NESTED = ("RandomApply", "RandomChoice", "RandomOrder")
_GEOMETRY = ("RandomResizedCrop", "Resize", "CenterCrop", "RandomHorizontalFlip")
_CONVERSIONS = (
    "ToTensor",
    "PILToTensor",
    "ToImage",
    "ToImageTensor",
    "ConvertImageDtype",
    "ToDtype",
    "Normalize",
    "ToPureTensor",
)


def flatten(transform: Any) -> list[Any]:
    """The steps of a transform: nested ``Compose`` (v1 and v2) and preset
    objects that keep a ``Compose`` (or list) in ``.transforms`` (as
    torchvision's reference presets do) are opened; ``RandomApply``,
    ``RandomChoice``, ``RandomOrder`` and ``Lambda`` stay single steps."""
    if transform is None:
        return []
    name = type(transform).__name__
    inner = getattr(transform, "transforms", None)
    if name == "Compose" and inner is not None:
        return [step for item in inner for step in flatten(item)]
    if name not in _NESTED and inner is not None:
        if type(inner).__name__ == "Compose":
            return flatten(inner)
        if isinstance(inner, (list, tuple)) and all(callable(i) for i in inner):
            return [step for item in inner for step in flatten(item)]
    return [transform]


class TensorStep:
    """One tail step, run on a decoded ``[3, H, W]`` tensor instead of a PIL
    image: ``ToTensor`` scales uint8 to float (as it does a PIL image),
    ``PILToTensor`` passes the tensor through; every other step is
    torchvision's own, which accepts tensors."""

    def __init__(self, step: Any) -> None:
        self.step = step
        self.name = type(step).__name__

    def __call__(self, image: Any) -> Any:
        import torch

        if torch.is_tensor(image):
            if self.name == "ToTensor":
                return image.float().div_(255) if image.dtype == torch.uint8 else image
            if self.name == "PILToTensor":
                return image
        return self.step(image)

    def __repr__(self) -> str:
        return f"TensorStep({self.step!r})"


def _fusable(step: Any) -> bool:
    name = type(step).__name__
    if name not in _GEOMETRY + _CONVERSIONS:
        return False
    if name == "Resize" and getattr(step, "max_size", None) is not None:
        return False
    if (
        name in ("RandomResizedCrop", "Resize")
        and str(getattr(getattr(step, "interpolation", None), "value", "bilinear")).lower()
        not in _FILTERS
    ):
        return False
    if name == "ToDtype":
        dtype = step.dtype
        if isinstance(dtype, dict):
            dtype = next(iter(dtype.values()), None)
        if "float" in str(dtype) and not getattr(step, "scale", False):
            return False
    return True


def split_torchvision(transform: Any) -> tuple[Recipe, list[Any]]:
    """``(recipe, tail)``: the longest leading run of steps fastprep fuses
    into the decode (geometry, then dtype and ``Normalize``), and the steps
    after it, to run as torchvision code on each decoded tensor.

    Raises ``ValueError`` (naming the step) when the leading run does not
    fix the output size, i.e. a step before any crop needs the image itself.
    """
    steps = flatten(transform)
    cut = 0
    while cut < len(steps) and _fusable(steps[cut]):
        cut += 1
    head, tail = steps[:cut], steps[cut:]
    # Geometry after a conversion, or a conversion the tail would undo, is
    # left to torchvision: the fused part is geometry first.
    while head and not _complete(head):
        tail.insert(0, head.pop())
    if not head:
        # The step that stopped the fusable run (e.g. ColorJitter after a
        # PILToTensor), else the first one.
        blocker = steps[cut] if cut < len(steps) else steps[0] if steps else None
        name = type(blocker).__name__ if blocker is not None else "no transform"
        raise ValueError(
            f"torchvision transform {name} must see the image before any crop fastprep "
            "can fuse (RandomResizedCrop, Resize + CenterCrop, Resize((h, w)))"
        )
    return _recipe(head), tail


def _complete(head: list[Any]) -> bool:
    try:
        _recipe(head)
    except ValueError:
        return False
    return True


def from_torchvision(transform: Any) -> Recipe:
    """Translate a torchvision transform pipeline into a :class:`Recipe`.

    Supported, in torchvision's usual order: ``RandomResizedCrop``,
    ``Resize`` + ``CenterCrop``, ``Resize((h, w))``, ``RandomHorizontalFlip``,
    ``ToTensor`` / ``PILToTensor`` / ``ToImage`` / ``ConvertImageDtype`` /
    ``ToDtype`` / ``ToPureTensor`` and ``Normalize`` (``transforms`` and
    ``transforms.v2``, nested ``Compose`` and preset objects included).
    Anything else raises ``ValueError`` naming it, rather than silently
    training on different data (the DataLoader runs such steps as
    torchvision code instead: see :func:`split_torchvision`).
    """
    steps = flatten(transform)
    for step in steps:
        if not _fusable(step):
            raise ValueError(
                f"torchvision transform {type(step).__name__} has no fastprep equivalent"
            )
    return _recipe(steps)


def _recipe(steps: list[Any]) -> Recipe:
    recipe: dict[str, Any] = {}
    resize_shorter = None
    converted = False
    for step in steps:
        name = type(step).__name__
        if name in _GEOMETRY and converted:
            raise ValueError(f"{name} after a dtype conversion is left to torchvision")
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
        elif name == "ToPureTensor":
            pass
        elif name in ("ToTensor",):
            recipe["dtype"] = "float"
            converted = True
        elif name in ("PILToTensor", "ToImage", "ToImageTensor"):
            recipe.setdefault("dtype", "uint8")  # same pixels: geometry may follow
        elif name in ("ConvertImageDtype", "ToDtype"):
            dtype = getattr(step, "dtype", None)
            if isinstance(dtype, dict):  # v2.ToDtype({tv_tensors.Image: ...})
                dtype = next(iter(dtype.values()))
            if "float" in str(dtype):
                if name == "ToDtype" and not getattr(step, "scale", False):
                    raise ValueError("ToDtype(float) without scale=True is not supported")
                recipe["dtype"] = "float"
                converted = True
        elif name == "Normalize":
            if recipe.get("dtype") != "float":
                raise ValueError("Normalize needs a float image (ToTensor or ToDtype before it)")
            recipe.update(mean=tuple(step.mean), std=tuple(step.std))
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
