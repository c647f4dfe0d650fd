"""Image decoding API: thin ergonomics over the Rust core (``fastprep._core``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fastprep import _core
from fastprep import options as _options
from fastprep.arrow_input import as_image_input
from fastprep.errors import DecodeError
from fastprep.options import DecodeOptions
from fastprep.tensors import as_fixed_shape_tensor, nested_shape

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ERROR_KINDS",
    "FILTERS",
    "HASHES",
    "MODES",
    "DecodeError",
    "DecodeOptions",
    "decode_image",
    "decode_images",
    "hash_images",
    "pixels_to_numpy",
    "sample_images",
    "strip_metadata",
]

# Names and limits defined once in the Rust core (see fastprep.options).
#: Resampling filters, by the names Pillow and torchvision users know.
FILTERS = _options.FILTERS
#: Geometry modes. See :func:`decode_images`.
MODES = _options.MODES
#: Hashes :func:`decode_images` can compute in the same pass (column names in
#: parentheses): ``xxh3`` (``xxh3_128``) and ``blake3`` of the encoded bytes,
#: ``pixels`` (``pixel_xxh3_128``) of the decoded RGB, ``ahash``, ``dhash``,
#: ``phash`` (uint64, identical to the ``imagehash`` package's defaults),
#: ``pdq`` (``pdq``: 32 bytes, ``pdq_quality``: 0-100), ``pdq_dihedral`` and
#: ``pdq_fast`` (``pdq_fast``, ``pdq_fast_quality``: PDQ of a JPEG decoded at the
#: smallest DCT scale, 1/2 to 1/8, that keeps both sides at least 256 pixels, far
#: cheaper for large photos and close to ``pdq``; exactly ``pdq`` for other
#: formats and smaller JPEGs).
HASHES = _options.HASHES
#: Pillow's decompression-bomb limit.
DEFAULT_MAX_PIXELS = _options.DEFAULT_MAX_PIXELS
#: Values of the ``error_kind`` column (null when the image decoded).
ERROR_KINDS: tuple[str, ...] = tuple(_core.ERROR_KINDS)

Size = _options.Size


def _resolve(options: DecodeOptions | None, kwargs: dict[str, Any]) -> DecodeOptions:
    """``options`` with keyword overrides, or the keywords alone."""
    if options is None:
        return DecodeOptions.from_kwargs(**kwargs)
    if not isinstance(options, DecodeOptions):
        raise TypeError(f"options must be a DecodeOptions, got {type(options).__name__}")
    return options.replace(**kwargs) if kwargs else options


def _as_input(images: Any, column: str | None = None) -> tuple[str, Any]:
    """Classify ``images`` as Arrow binary data, paths or in-memory bytes."""
    arrow = as_image_input(images, column)  # any Arrow producer (fastprep.arrow_input)
    if arrow is not None:
        return arrow
    if isinstance(images, (bytes, bytearray, memoryview, str, os.PathLike)):
        raise TypeError("decode_images takes a sequence of images; use decode_image for one")
    items = list(images)
    if items and all(isinstance(item, (str, os.PathLike)) for item in items):
        return "paths", [os.fspath(item) for item in items]
    for index, item in enumerate(items):
        if isinstance(item, (bytearray, memoryview)):
            # Mutable buffers could change while Rust reads them without the GIL.
            items[index] = bytes(item)
        elif not isinstance(item, bytes):
            raise TypeError(
                f"item {index} is {type(item).__name__}: expected all bytes-like or all paths"
            )
    return "bytes", items


def decode_images(
    images: Sequence[Any] | pa.Array | pa.ChunkedArray | Iterable[Any],
    *,
    column: str | None = None,
    options: DecodeOptions | None = None,
    num_threads: int | None = None,
    **kwargs: Any,
) -> pa.RecordBatch:
    """Decode many images in parallel Rust threads into one Arrow record batch.

    Options come as keywords, as a :class:`~fastprep.DecodeOptions`
    (``options=``), or both (keywords then override the fields they name);
    an unknown keyword raises ``TypeError``.

    Args:
        images: a list of bytes-like objects, a list of file paths, or Arrow
            data from any producer (pyarrow, polars, duckdb, arro3, nanoarrow,
            a Hugging Face ``Dataset``): a ``binary``/``large_binary``/
            ``binary_view`` column, read without a copy, an HF ``Image``
            struct column, or a table / record batch / reader (see
            :mod:`fastprep.arrow_input`).
        column: the image column of a table-like ``images``.
        options: a :class:`~fastprep.DecodeOptions` holding the options below.
        size: output ``(height, width)`` (an int means square). ``None`` keeps each
            image's own size and uses the variable-size layout described below.
        mode: geometry when ``size`` is set:
            ``"center_crop"``: resize the shorter side to ``resize_shorter`` then crop
            the centre (torchvision ``Resize(256) + CenterCrop(224)``);
            ``"resize"``: stretch to exactly ``size``;
            ``"letterbox"``: fit within ``size`` keeping the aspect ratio, pad with
            ``background``;
            ``"random_resized_crop"``: torchvision ``RandomResizedCrop(size, scale,
            ratio)`` then a horizontal flip with probability ``flip_p``, seeded per
            record from ``(seed, record index)``.
        resize_shorter: shorter-side length for ``center_crop``; default
            ``round(max(size) * 256 / 224)``.
        short_side, max_side: keep each image's aspect ratio instead of a
            fixed size (excludes ``size``): the shorter side becomes
            ``short_side`` and the longer is capped at ``max_side`` (either
            may be omitted), as torchvision's ``Resize(short_side,
            max_size=max_side)`` computes it (the other side truncated to an
            integer); never upscaled. Variable-size layout.
        filter: one of :data:`FILTERS`; all but ``nearest`` antialias when shrinking.
        apply_orientation: apply the EXIF orientation (JPEG, PNG ``eXIf``, WebP).
        reduced_decode: decode JPEGs in the DCT domain at 1/2, 1/4 or 1/8 scale
            when the output is much smaller than the source.
        background: RGB colour under transparent pixels and letterbox padding.
        drop_alpha: transparent pixels keep their stored colour (alpha
            dropped, as PIL's ``convert("RGB")`` does: 16-bit samples are
            reduced Pillow's way too) instead of blending over ``background``.
        max_pixels: decompression-bomb limit, checked from the header before any
            pixel memory is allocated.
        num_threads: Rust threads; default ``$FASTPREP_NUM_THREADS`` or the CPUs
            this process may use. Results do not depend on it.
        hashes: hashes to compute in the same pass, from :data:`HASHES`. Pixel
            hashes see the whole displayed picture (EXIF orientation applied,
            alpha dropped as Pillow's ``convert("RGB")`` does), so hashing turns
            off reduced and partial JPEG decoding for the batch.
        pixels: set False to skip resizing and the pixel column (hashes and
            metadata only).
        read_to_end: a JPEG crop (``center_crop``, ``random_resized_crop``)
            still reads the scan data down to the image's last row, so damage
            below the crop is flagged exactly as a full decode flags it (the
            default). ``False`` stops after the crop's last row: about 10%
            faster on random crops, for files known to be intact (the torch
            loader does this for samples that already decoded cleanly).
        channels_first: with ``size`` set, pixels as ``[3, H, W]`` planes
            (torch's per-image layout, split in the Rust threads) instead of
            ``[H, W, 3]``; the tensor type's ``dim_names`` say which.

    Returns:
        A :class:`pyarrow.RecordBatch`, one row per input, in input order:

        * ``pixels``: with ``size`` set, an ``arrow.fixed_shape_tensor`` of uint8
          with shape ``[H, W, 3]`` (``[3, H, W]`` with ``channels_first``); with ``size=None``, ``large_binary`` holding
          ``height * width * 3`` bytes of row-major RGB. Null where ``error`` is set.
        * ``height``, ``width`` (int32): the output size.
        * ``source_height``, ``source_width`` (int32): the image as displayed
          (after EXIF orientation), when the header could be read.
        * ``format`` (string): ``jpeg``, ``png``, ``webp``, ``gif``, ``bmp``,
          ``tiff`` (first page), ``pnm`` (PBM/PGM/PPM/PAM) or ``ico`` (its
          largest entry), sniffed from the bytes.
        * ``orientation`` (uint8): the EXIF orientation applied (1 when none).
        * ``error`` (string): null when the image is fine, else the reason.
        * ``error_kind`` (string): null when the image is fine, else one of
          :data:`ERROR_KINDS`, stable across releases (branch on it rather
          than on the ``error`` text): ``empty`` (no bytes, or a null entry),
          ``unsupported_format`` (none of the formats above; the text says
          what the bytes look like, e.g. ``unsupported format: HEIC``),
          ``unsupported`` (a known format using a feature fastprep does not
          decode, e.g. ``unsupported JPEG: 12-bit precision``),
          ``truncated`` (the data ends early: a JPEG without its end marker
          is truncated at every output size, as in Pillow), ``corrupt``
          (malformed data), ``too_large`` (over ``max_pixels``, or a header
          claiming more pixels than the file's data can hold, refused before
          any allocation) and ``io`` (a path that cannot be read).
        * ``warnings`` (list of strings): null when the decoder met no damage,
          else what it recovered from, as short stable names:
          ``corrupt entropy data`` (the pixels decoded but may be partly
          garbage), ``extraneous bytes before marker``, ``bad ICC marker``,
          ``decoder warning``. A crop sees damage anywhere in the file
          unless ``read_to_end=False``.

        All pixels live in one buffer allocated by Rust and shared with pyarrow
        and numpy without a copy.
    """
    decode = _resolve(options, kwargs)
    if num_threads is not None and num_threads < 1:
        raise ValueError("num_threads must be at least 1")
    kind, data = _as_input(images, column)
    core = decode.to_core()
    if kind == "arrow":
        return _core.decode_arrow(data, core, num_threads)
    if kind == "paths":
        return _core.decode_paths(data, core, num_threads)
    return _core.decode_bytes(data, core, num_threads)


def pixels_to_numpy(batch: Any, column: str = "pixels") -> np.ndarray:
    """View fixed-shape pixels as ``[N, H, W, 3]`` uint8.

    ``batch`` is a record batch or table (its ``column``), or the pixel
    column itself: an ``arrow.fixed_shape_tensor`` Array or ChunkedArray,
    or the nested fixed-size lists prep's default shards hold (read back
    from a shard, see :mod:`fastprep.pipeline.hf`). No copy when the pixels
    are in one chunk: the array shares memory with the Arrow buffer; a
    column of several chunks is concatenated first. Rows whose ``error`` is
    set hold zeros.
    """
    pixels = batch.column(column) if isinstance(batch, (pa.RecordBatch, pa.Table)) else batch
    if nested_shape(pixels.type) is not None:
        pixels = as_fixed_shape_tensor(pixels)  # the same value buffer
    if isinstance(pixels, pa.ChunkedArray):
        if not isinstance(pixels.type, pa.FixedShapeTensorType):
            raise TypeError("pixels_to_numpy needs a fixed output size (decode with size=...)")
        if pixels.num_chunks == 1:
            pixels = pixels.chunk(0)
        elif pixels.num_chunks == 0:
            return np.zeros((0, *pixels.type.shape), dtype=np.uint8)
        else:
            pixels = pixels.combine_chunks()
    if not isinstance(pixels.type, pa.FixedShapeTensorType):
        raise TypeError("pixels_to_numpy needs a fixed output size (decode with size=...)")
    storage = pixels.storage  # FixedSizeListArray<uint8>
    shape = tuple(pixels.type.shape)
    frame = int(np.prod(shape))
    # The child values ignore the list array's own offset (set when sliced).
    start = storage.values.offset + storage.offset * frame
    values = storage.buffers()[2]
    if values is None or len(pixels) == 0:
        return np.zeros((len(pixels), *shape), dtype=np.uint8)
    flat = np.frombuffer(values, dtype=np.uint8, count=len(pixels) * frame, offset=start)
    return flat.reshape((len(pixels), *shape))


def hash_images(
    images: Any,
    hashes: Sequence[str] | None = None,
    *,
    options: DecodeOptions | None = None,
    num_threads: int | None = None,
    **kwargs: Any,
) -> pa.RecordBatch:
    """Hashes many images without producing pixels: :func:`decode_images`
    with ``pixels=False``. Columns: the metadata columns plus one per hash.

    ``hashes`` defaults to ``options.hashes`` when that is set, else
    ``("xxh3", "pdq")``."""
    if "pixels" in kwargs:
        raise TypeError("hash_images never produces pixels; use decode_images")
    base = _resolve(options, kwargs)
    if hashes is None:
        hashes = base.hashes or ("xxh3", "pdq")
    return decode_images(
        images, options=base.replace(hashes=hashes, pixels=False), num_threads=num_threads
    )


def decode_image(
    data: bytes | bytearray | memoryview | str | os.PathLike,
    *,
    options: DecodeOptions | None = None,
    num_threads: int | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Decode one image (bytes or a path) to an ``[H, W, 3]`` uint8 array.

    Takes the same options as :func:`decode_images`; raises
    :class:`~fastprep.DecodeError` with the reason when the image cannot be
    decoded (its ``kind`` attribute holds the ``error_kind``).
    """
    decode = _resolve(options, kwargs)
    batch = decode_images([data], options=decode, num_threads=num_threads)
    error = batch.column("error")[0].as_py()
    if error is not None:
        exc = DecodeError(error)
        exc.kind = batch.column("error_kind")[0].as_py()
        raise exc
    if decode.output_size() is not None:
        return pixels_to_numpy(batch)[0]
    height = batch.column("height")[0].as_py()
    width = batch.column("width")[0].as_py()
    buffer = batch.column("pixels")[0].as_buffer()
    return np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3)


def sample_images() -> list:
    """Paths of the sample photos shipped inside the package (see sample_data/README.md)."""
    folder = Path(__file__).with_name("sample_data")
    return sorted(
        str(p) for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}
    )


def strip_metadata(
    images: Any, orientations: Sequence[int | None] | None = None, num_threads: int | None = None
) -> pa.Array:
    """Each encoded image without its metadata, losslessly: JPEG, PNG, WebP
    and GIF are rewritten keeping their compressed pixel data byte for byte
    (so decoded pixels are identical), BMP, PNM and ICO carry none and come
    back as they are; null where that is impossible without re-encoding
    (TIFF) or the data is malformed.

    Kept: what decoding needs, colour profiles (ICC, gamma, sRGB) and the
    orientation (``orientations``: EXIF values per image, e.g. the
    ``orientation`` column of :func:`decode_images`), re-stated as a one-tag
    EXIF block when not 1. Dropped: EXIF (camera, dates, GPS), XMP,
    IPTC/Photoshop, comments, PNG text chunks, unknown ancillary chunks and
    bytes after the end of the image.
    """
    kind, data = _as_input(images)
    if kind == "paths":
        data = [open(path, "rb").read() for path in data]
    if isinstance(data, list):
        data = pa.array([bytes(d) for d in data], pa.binary())
    chunked = data if isinstance(data, pa.ChunkedArray) else pa.chunked_array([data])
    given = [None] * len(chunked) if orientations is None else list(orientations)
    values: list[int | None] = [None if o is None else int(o) for o in given]
    return _core.strip_images(chunked, values, num_threads)
