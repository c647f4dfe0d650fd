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

__all__ = ["CELL", "DROP_RGB", "GAP", "strip_png"]

THUMB = 96  # thumbnail box in the strips, pixels
BORDER = 4
GAP = 6
CELL = THUMB + 2 * BORDER
KEEP_RGB = (46, 125, 50)  # green: the record that is kept
DROP_RGB = (198, 40, 40)  # red: dropped as a near-duplicate
MISSING_RGB = (200, 200, 200)


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


def strip(thumbnails: Sequence[Any], n: int) -> np.ndarray:
    """One row of ``n`` cells: the keeper framed green, the dropped ones red.

    A member without a usable thumbnail gets a grey placeholder cell.
    """
    width = n * CELL + (n - 1) * GAP
    out = np.full((CELL, width, 3), 255, dtype=np.uint8)
    for i in range(n):
        x0 = i * (CELL + GAP)
        cell = out[:, x0 : x0 + CELL]
        cell[:] = KEEP_RGB if i == 0 else DROP_RGB
        inner = cell[BORDER:-BORDER, BORDER:-BORDER]
        inner[:] = 238
        rgb = as_rgb(thumbnails[i]) if i < len(thumbnails) else None
        if rgb is None:
            inner[:] = MISSING_RGB
            continue
        small = fit(rgb, THUMB)
        y = (THUMB - small.shape[0]) // 2
        x = (THUMB - small.shape[1]) // 2
        inner[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def strip_png(thumbnails: Sequence[Any], n: int) -> bytes:
    """:func:`strip` of the first ``n`` members, encoded as PNG."""
    return png(strip(thumbnails, n))
