"""The duplicate-cluster strips: one row of thumbnails per cluster, the
keeper framed green and the dropped ones red.

Composed in numpy and encoded by the Rust core's PNG encoder, so the strips
need no matplotlib (nor Pillow).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from fastprep import _core

__all__ = ["CELL", "DROP_RGB", "GAP", "pairs_png", "strip_png"]

THUMB = 96  # thumbnail box in the strips, pixels
BORDER = 4
GAP = 6
CELL = THUMB + 2 * BORDER
KEEP_RGB = (46, 125, 50)  # green: the record that is kept
DROP_RGB = (198, 40, 40)  # red: dropped as a near-duplicate
MISSING_RGB = (200, 200, 200)
PLAIN_RGB = (220, 223, 228)  # the frame of a cell that is neither kept nor dropped
EVAL_RGB = (53, 89, 199)  # blue: the evaluation image of a leak


def png(rgb: np.ndarray) -> bytes:
    """Encodes an ``HxWx3`` uint8 array as PNG (the Rust core's encoder)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    pixels = pa.FixedSizeListArray.from_arrays(pa.array(rgb.reshape(-1)), h * w * 3)
    return _core.encode_images(pa.chunked_array([pixels]), h, w, "png")[0].as_py()


def as_rgb(image: Any) -> np.ndarray | None:
    """A thumbnail as ``HxWx3`` uint8, or None when it is missing or unusable."""
    if image is None:
        return None
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] not in (1, 3, 4):
        return None
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` box-filter (area-average) resampling weights."""
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    i = np.arange(n_in, dtype=np.float64)[None, :]
    w = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0.0, None)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def fit(rgb: np.ndarray, box: int) -> np.ndarray:
    """Resizes to fit in ``box x box`` keeping the aspect ratio (area averaging)."""
    h, w, _ = rgb.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (h, w):
        return rgb
    out = np.einsum(
        "yh,hwc,xw->yxc",
        _area_weights(h, nh),
        rgb.astype(np.float32),
        _area_weights(w, nw),
        optimize=True,
    )
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _cell(out: np.ndarray, y0: int, x0: int, image: Any, frame: tuple[int, int, int]) -> None:
    """Draws one framed cell with the thumbnail fitted and centred."""
    cell = out[y0 : y0 + CELL, x0 : x0 + CELL]
    cell[:] = frame
    inner = cell[BORDER:-BORDER, BORDER:-BORDER]
    inner[:] = 238
    rgb = as_rgb(image)
    if rgb is None:
        inner[:] = MISSING_RGB
        return
    small = fit(rgb, THUMB)
    y = (THUMB - small.shape[0]) // 2
    x = (THUMB - small.shape[1]) // 2
    inner[y : y + small.shape[0], x : x + small.shape[1]] = small


def strip(thumbnails: Sequence[Any], n: int, *, frames: bool = True) -> np.ndarray:
    """One row of ``n`` cells: the keeper framed green, the dropped ones red
    (``frames=False``: all plain grey).

    A member without a usable thumbnail gets a grey placeholder cell.
    """
    width = n * CELL + (n - 1) * GAP
    out = np.full((CELL, width, 3), 255, dtype=np.uint8)
    for i in range(n):
        frame = (KEEP_RGB if i == 0 else DROP_RGB) if frames else PLAIN_RGB
        _cell(out, 0, i * (CELL + GAP), thumbnails[i] if i < len(thumbnails) else None, frame)
    return out


def strip_png(thumbnails: Sequence[Any], n: int, *, frames: bool = True) -> bytes:
    """:func:`strip` of the first ``n`` members, encoded as PNG."""
    return png(strip(thumbnails, n, frames=frames))


def pairs(images: Sequence[tuple[Any, Any]]) -> np.ndarray:
    """One row per pair: the training image (red: dropped) beside the
    evaluation image it matches (blue)."""
    n = len(images)
    out = np.full((n * CELL + (n - 1) * GAP, 2 * CELL + GAP, 3), 255, dtype=np.uint8)
    for i, (train, evaluation) in enumerate(images):
        y0 = i * (CELL + GAP)
        _cell(out, y0, 0, train, DROP_RGB)
        _cell(out, y0, CELL + GAP, evaluation, EVAL_RGB)
    return out


def pairs_png(images: Sequence[tuple[Any, Any]]) -> bytes:
    return png(pairs(images))
