"""Decode options as one value: :class:`DecodeOptions`.

The names (modes, filters, hashes) and the pixel limit come from the Rust
core, and the geometry rules (the centre-crop default, scale and ratio
ranges) run there too, so Python and Rust cannot disagree about them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from fastprep import _core

#: Geometry modes. See :func:`fastprep.decode_images`.
MODES: tuple[str, ...] = tuple(_core.MODES)
#: Resampling filters, by the names Pillow and torchvision users know.
FILTERS: tuple[str, ...] = tuple(_core.FILTERS)
#: Hashes a decode can compute in the same pass (see :data:`fastprep.images.HASHES`).
HASHES: tuple[str, ...] = tuple(_core.HASHES)
#: Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
DEFAULT_MAX_PIXELS: int = int(_core.DEFAULT_MAX_PIXELS)

Size = Union[int, tuple[int, int]]


@dataclass(frozen=True)
class DecodeOptions:
    """Every option of :func:`fastprep.decode_images` but the thread count,
    with the same names and defaults. Built values are checked (``ValueError``
    on a bad one), so an instance that exists is one the core accepts."""

    size: Size | None = None
    mode: str = "center_crop"
    resize_shorter: int | None = None
    filter: str = "bilinear"
    apply_orientation: bool = True
    reduced_decode: bool = True
    background: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int = DEFAULT_MAX_PIXELS
    seed: int = 0
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    hashes: Sequence[str] = ()
    pixels: bool = True
    #: Keep each image's aspect ratio: the shorter side becomes ``short_side``
    #: (never upscaled) and the longer is capped at ``max_side``; sizes then
    #: differ per record (the variable-size layout). Both exclude ``size``.
    short_side: int | None = None
    max_side: int | None = None
    #: A JPEG crop reads the file's scan data to the end, so damage below the
    #: crop is flagged (``warnings``/errors) exactly as a full decode flags it.
    #: ``False`` stops after the crop's last row: faster (about 10% on
    #: RandomResizedCrop), for files already known to be intact.
    read_to_end: bool = True
    #: Fixed-size outputs as ``[3, H, W]`` planes (torch's image layout)
    #: instead of ``[H, W, 3]``; the tensor type's ``dim_names`` say which.
    channels_first: bool = False
    #: Transparent pixels keep their stored colour (alpha dropped, as PIL's
    #: ``convert("RGB")`` does) instead of blending over ``background``.
    drop_alpha: bool = False

    def __post_init__(self) -> None:
        # Tuples, so instances are hashable and compare by value.
        hashes = (self.hashes,) if isinstance(self.hashes, str) else tuple(self.hashes)
        object.__setattr__(self, "hashes", hashes)
        for name in ("background", "scale", "ratio"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> DecodeOptions:
        """``DecodeOptions(**kwargs)``, with a ``TypeError`` naming unknown keywords."""
        _check_names(kwargs)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> DecodeOptions:
        """A copy with ``changes`` applied (and checked)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def output_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of every output, or None when sizes differ
        per record (each image's own size, or ``short_side``/``max_side``)."""
        if self.size is None:
            return None
        if isinstance(self.size, int):
            height = width = self.size
        else:
            height, width = self.size
        if height <= 0 or width <= 0:
            raise ValueError(f"size must be positive, got {self.size!r}")
        return int(height), int(width)

    def validate(self) -> DecodeOptions:
        """Raises ``ValueError`` on a bad value; returns ``self``."""
        unknown = [h for h in self.hashes if h not in HASHES]
        if unknown:
            raise ValueError(f"unknown hashes {unknown}; choose from {HASHES}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, got {self.filter!r}")
        background = self.background
        if len(background) != 3 or not all(0 <= int(c) <= 255 for c in background):
            raise ValueError(f"background must be three values in 0..255, got {background!r}")
        self.output_size()
        # The geometry rules (resize_shorter, scale, ratio) live in Rust.
        _core.check_decode_options(self.to_core())
        return self

    def to_core(self) -> dict[str, Any]:
        """The plain values ``fastprep._core``'s decode functions extract."""
        return {
            "size": self.output_size(),
            "mode": self.mode,
            "resize_shorter": None if self.resize_shorter is None else int(self.resize_shorter),
            "filter": self.filter,
            "apply_orientation": bool(self.apply_orientation),
            "reduced_decode": bool(self.reduced_decode),
            "background": tuple(int(c) for c in self.background),
            "max_pixels": int(self.max_pixels),
            "seed": int(self.seed),
            "scale": (float(self.scale[0]), float(self.scale[1])),
            "ratio": (float(self.ratio[0]), float(self.ratio[1])),
            "flip_p": float(self.flip_p),
            "hashes": [str(h) for h in self.hashes],
            "pixels": bool(self.pixels),
            "short_side": None if self.short_side is None else int(self.short_side),
            "max_side": None if self.max_side is None else int(self.max_side),
            "read_to_end": bool(self.read_to_end),
            "channels_first": bool(self.channels_first),
            "drop_alpha": bool(self.drop_alpha),
        }


def _check_names(kwargs: dict[str, Any]) -> None:
    unknown = sorted(set(kwargs) - set(DecodeOptions.field_names()))
    if unknown:
        raise TypeError(f"unknown decode options {unknown}; known: {DecodeOptions.field_names()}")
