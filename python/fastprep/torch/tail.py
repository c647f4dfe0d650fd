"""The torchvision steps after the part fastprep fuses into the decode.

torch's loader runs a pipeline such as torchvision's reference preset
``RandomResizedCrop, RandomHorizontalFlip, TrivialAugmentWide, PILToTensor,
ConvertImageDtype(float), Normalize, RandomErasing`` on PIL images. fastprep
decodes and crops in Rust; :class:`Tail` then runs the rest, planned for
speed while keeping each step torchvision's own:

1. steps torch's loader gave a PIL image (those before the conversion to a
   tensor) get a PIL image here too, made from the decoded pixels without a
   copy: torchvision's PIL kernels are the fast ones, and the pixels are the
   ones torch's pipeline would compute;
2. the conversion step itself is torchvision's;
3. ``ConvertImageDtype``/``ToDtype(scale=True)`` (or ``ToTensor``'s scaling)
   and a ``Normalize`` right after it run fused over the whole batch in Rust
   (:func:`fastprep._core.normalize_pixels`: the same float32 operations in
   the same order, so the same bits as torchvision's);
4. the remaining steps (``RandomErasing``...) run per sample on the batch's
   tensors, written back in place.

Per-sample work runs on the loader's threads, or with ``num_workers >= 2``
in its worker processes (each builds whole batches: between their kernels,
PIL and torch steps hold the GIL, so threads would run them one at a time).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from fastprep import _core
from fastprep.torch.transforms import TensorStep

_TO_TENSOR = ("PILToTensor", "ToTensor", "ToImage", "ToImageTensor")
_TO_FLOAT = ("ConvertImageDtype", "ToDtype", "ConvertDtype")


def _scales_to_float(step: Any) -> bool:
    """``ConvertImageDtype(float32)`` or ``ToDtype(float32, scale=True)``."""
    name = type(step).__name__
    if name not in _TO_FLOAT:
        return False
    dtype = getattr(step, "dtype", None)
    if isinstance(dtype, dict):  # v2.ToDtype({tv_tensors.Image: ...})
        dtype = next(iter(dtype.values()), None)
    if dtype is not torch.float32:
        return False
    return name != "ToDtype" or bool(getattr(step, "scale", False))


def _stats(step: Any) -> tuple[list[float], list[float]] | None:
    if type(step).__name__ != "Normalize":
        return None
    mean, std = list(map(float, step.mean)), list(map(float, step.std))
    return (mean, std) if len(mean) == len(std) == 3 else None


#: Conversions whose output, scaled, :meth:`Tail._scale_pictures` writes
#: itself (as float planes).
_WRITES_PLANES = ("PILToTensor", "ToImage")


class Tail:
    """How the steps after the fused head run (see the module docstring)."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps
        names = [type(step).__name__ for step in steps]
        convert = next((i for i, name in enumerate(names) if name in _TO_TENSOR), None)
        #: Steps run on PIL images, then the conversion (None: no PIL stage).
        self.on_pil: list[Any] = steps[:convert] if convert else []
        self.to_tensor: Any = steps[convert] if convert is not None else None
        rest = steps[convert + 1 :] if convert is not None else steps
        #: Fused scaling to float (and normalisation) over the batch.
        self.scale = False
        self.multiply = False
        self.stats: tuple[list[float], list[float]] | None = None
        #: The steps the fused scaling stands for (run per sample when the
        #: batch cannot be fused: samples of differing shapes or channels).
        fused: list[Any] = []
        to_tensor_name = type(self.to_tensor).__name__
        if to_tensor_name == "ToTensor" and not self.on_pil:
            # On the decoded uint8 tensor ToTensor is only the scaling.
            self.scale, fused = True, [self.to_tensor]
        elif self.to_tensor is not None and to_tensor_name != "ToTensor":
            if rest and _scales_to_float(rest[0]):
                self.scale, fused, rest = True, [rest[0]], rest[1:]
                # v2 multiplies by 1/255 where v1 divides (a last-bit difference).
                self.multiply = type(fused[0]).__module__.startswith("torchvision.transforms.v2")
        if self.scale and rest and _stats(rest[0]) is not None:
            self.stats, fused, rest = _stats(rest[0]), [*fused, rest[0]], rest[1:]
        if self.to_tensor is not None and not self.on_pil and to_tensor_name != "ToTensor":
            fused = [self.to_tensor, *fused]  # PILToTensor on a tensor: passed through
            if not self.scale:
                rest, fused = fused + rest, []
        if self.to_tensor is None:
            rest = steps
        self.fused = [TensorStep(step) for step in fused]
        self.after = [TensorStep(step) for step in rest]

    @property
    def runs_python(self) -> bool:
        """Some step runs as Python code per sample (not only fused in Rust)."""
        return bool(self.on_pil or self.after)

    @property
    def writes_into_memory_given(self) -> bool:
        """The scaled batch is written into the ``out`` memory given to
        :meth:`__call__` (PIL steps, then the conversion and fused scaling:
        see :meth:`_scale_pictures`); otherwise ``out`` goes unused."""
        return bool(self.on_pil) and self.scale and type(self.to_tensor).__name__ in _WRITES_PLANES

    @property
    def needs_interleaved(self) -> bool:
        """PIL images are made from ``[H, W, 3]`` pixels."""
        return bool(self.on_pil)

    def __repr__(self) -> str:
        return (
            f"Tail(on_pil={self.on_pil!r}, to_tensor={self.to_tensor!r}, "
            f"scale={self.scale}, stats={self.stats!r}, after={self.after!r})"
        )

    def __call__(
        self,
        images: torch.Tensor,
        pool: Executor | None,
        num_threads: int | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor | list[Any]:
        """Runs on a uint8 batch (``[B, 3, H, W]``, or ``[B, H, W, 3]`` when
        :attr:`needs_interleaved`). Returns the batch as one tensor when every
        sample keeps one shape, else the list of samples. ``out``: float32
        memory (``[B', 3, H, W]``, B' >= B) the scaled batch may be written
        into, e.g. a shared-memory slot (then the result is a view of it)."""

        def each(function: Callable[[Any], Any], items: list[Any]) -> list[Any]:
            return list(pool.map(function, items)) if pool else [function(i) for i in items]

        if self.on_pil:
            from PIL import Image

            def on_pil(pixels: torch.Tensor) -> Any:
                image = Image.fromarray(pixels.numpy(), "RGB")
                for step in self.on_pil:
                    image = step(image)
                return image

            pictures = each(on_pil, list(images.unbind(0)))
            scaled = self._scale_pictures(pictures, num_threads, out)
            if scaled is not None:
                return self._run_after(scaled, each)
            samples: list[Any] = each(self.to_tensor, pictures)
            batch = _stack(samples)
            if batch is None:
                return each(self._rest_one, samples)
        else:
            batch = images
        if self.scale:
            if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] != 3:
                return each(self._rest_one, list(batch.unbind(0)))
            batch = _normalize(batch, self.stats, self.multiply, num_threads)
        return self._run_after(batch, each)

    def _run_after(self, batch: torch.Tensor, each: Callable[..., list[Any]]) -> Any:
        """The steps after the fused scaling, per sample, written back into
        ``batch`` when they keep its shape."""
        if not self.after:
            return batch
        outputs = each(self._after_one, list(batch.unbind(0)))
        if all(
            torch.is_tensor(out) and out.shape == batch.shape[1:] and out.dtype == batch.dtype
            for out in outputs
        ):
            for i, out in enumerate(outputs):
                if out.data_ptr() != batch[i].data_ptr():
                    batch[i].copy_(out)
            return batch
        return outputs

    def _scale_pictures(
        self, pictures: list[Any], num_threads: int | None, out: torch.Tensor | None
    ) -> torch.Tensor | None:
        """``PILToTensor``/``ToImage`` then the fused scaling, in one Rust pass
        from the PIL images' pixels to float planes (into ``out`` when it
        fits): no uint8 tensors, no stacking. None when the pictures are not
        RGB images of one size, or no scaling is fused."""
        if not self.writes_into_memory_given:
            return None
        first = pictures[0] if pictures else None
        if first is None or not all(
            getattr(p, "mode", None) == "RGB" and getattr(p, "size", None) == first.size
            for p in pictures
        ):
            return None
        arrays = [np.asarray(p) for p in pictures]
        width, height = first.size
        if not all(a.dtype == np.uint8 and a.flags.c_contiguous for a in arrays):
            return None
        shape = (len(arrays), 3, height, width)
        if (
            out is not None
            and out.dtype == torch.float32
            and out.dim() == 4
            and tuple(out.shape[1:]) == shape[1:]
            and out.shape[0] >= shape[0]
            and out.is_contiguous()
        ):
            target = out[: shape[0]]
        else:
            target = torch.empty(shape, dtype=torch.float32)
        mean, std = self.stats if self.stats is not None else (None, None)
        _core.normalize_into(
            [(a.ctypes.data, a.nbytes) for a in arrays],
            False,
            target.data_ptr(),
            target.numel(),
            mean,
            std,
            self.multiply,
            num_threads,
        )
        return target

    def _after_one(self, image: Any) -> Any:
        for step in self.after:
            image = step(image)
        return image

    def _rest_one(self, image: Any) -> Any:
        """The fused steps as torchvision's own, then the rest: one sample."""
        for step in self.fused:
            image = step(image)
        return self._after_one(image)


def _stack(samples: list[Any]) -> torch.Tensor | None:
    """The samples as one contiguous tensor, or None when they differ."""
    first = samples[0] if samples else None
    if not torch.is_tensor(first) or any(
        not torch.is_tensor(s) or s.shape != first.shape or s.dtype != first.dtype for s in samples
    ):
        return None
    return torch.stack([s.as_subclass(torch.Tensor) for s in samples])


def _normalize(
    batch: torch.Tensor,
    stats: tuple[list[float], list[float]] | None,
    multiply: bool,
    num_threads: int | None,
) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` to float32, scaled (and normalised), in Rust."""
    batch = batch.contiguous()
    frame = int(np.prod(batch.shape[1:]))
    values = batch.numpy().reshape(-1)
    # A view of the tensor's memory (pa.array would copy it).
    flat = pa.Array.from_buffers(pa.uint8(), values.size, [None, pa.py_buffer(values)])
    storage = pa.FixedSizeListArray.from_arrays(flat, frame)
    mean, std = stats if stats is not None else (None, None)
    out = _core.normalize_pixels(
        pa.chunked_array([storage]), True, mean, std, multiply, num_threads
    )
    return float_view(out, batch.shape)


def float_view(array: pa.Array, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """A writable float32 tensor over a ``fixed_size_list<float32>`` array's
    values, holding the Arrow buffer alive: no copy."""
    import ctypes

    values = array.values
    count = len(array) * array.type.list_size
    if count == 0:
        return torch.empty(tuple(shape), dtype=torch.float32)
    buffer = values.buffers()[1]
    holder: Any = (ctypes.c_float * count).from_address(buffer.address + values.offset * 4)
    holder.arrow_buffer = buffer
    return torch.from_numpy(np.ctypeslib.as_array(holder)).view(*shape)
