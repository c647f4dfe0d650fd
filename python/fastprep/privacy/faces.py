"""Face obfuscation (``blur_faces="blur"`` or ``"pixelate"``; the
``fastprep[faces]`` extra, i.e. scikit-image).

The detector is scikit-image's ``skimage.feature.Cascade`` with the LBP
frontal-face cascade that scikit-image ships
(``skimage.data.lbp_frontal_face_cascade_filename()``, OpenCV's
``lbpcascade_frontalface``): nothing is downloaded at run time. It runs on
the pixels about to be written (after resizing), so faces smaller than
about 24 pixels in the written image, profiles, and tilted, occluded or
strongly lit faces are missed; see the README for its measured detection
rate. Blurring changes pixels only inside the detected boxes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

#: Smallest face window the cascade can see (its training size).
MIN_FACE = 24


@lru_cache(maxsize=1)
def _detector() -> Any:
    try:
        from skimage import data
        from skimage.feature import Cascade
    except ImportError as error:  # pragma: no cover - depends on the extra
        raise ImportError(
            "face obfuscation needs scikit-image: pip install 'fastprep[faces]'"
        ) from error
    return Cascade(data.lbp_frontal_face_cascade_filename())


def detect_faces(rgb: np.ndarray, min_size: int = MIN_FACE) -> list[tuple[int, int, int, int]]:
    """Face boxes ``(top, left, height, width)`` in an ``HxWx3`` uint8 image,
    each grown by 10% on every side (clipped to the image)."""
    height, width = rgb.shape[:2]
    if min(height, width) < min_size:
        return []
    found = _detector().detect_multi_scale(
        img=rgb.astype(np.float32) / 255.0,
        scale_factor=1.1,
        step_ratio=1,
        min_size=(min_size, min_size),
        max_size=(height, width),
        min_neighbor_number=4,
    )
    boxes = []
    for d in found:
        grow_h, grow_w = round(d["height"] * 0.1), round(d["width"] * 0.1)
        top, left = max(0, int(d["r"]) - grow_h), max(0, int(d["c"]) - grow_w)
        bottom = min(height, int(d["r"]) + int(d["height"]) + grow_h)
        right = min(width, int(d["c"]) + int(d["width"]) + grow_w)
        boxes.append((top, left, bottom - top, right - left))
    return _merge(sorted(set(boxes)))


def _merge(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Overlapping detections of one face (the cascade fires at several
    scales and offsets) merged into their bounding box."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                (t1, l1, h1, w1), (t2, l2, h2, w2) = merged[i], merged[j]
                overlap_h = min(t1 + h1, t2 + h2) - max(t1, t2)
                overlap_w = min(l1 + w1, l2 + w2) - max(l1, l2)
                if overlap_h > 0 and overlap_w > 0:
                    if overlap_h * overlap_w >= 0.3 * min(h1 * w1, h2 * w2):
                        top, left = min(t1, t2), min(l1, l2)
                        bottom, right = max(t1 + h1, t2 + h2), max(l1 + w1, l2 + w2)
                        merged[i] = (top, left, bottom - top, right - left)
                        del merged[j]
                        changed = True
                        break
            if changed:
                break
    return sorted(merged)


def _box_blur(region: np.ndarray, radius: int) -> np.ndarray:
    """A separable box blur, three times (close to a Gaussian), edges clamped."""
    out = region.astype(np.float32)
    for _ in range(3):
        for axis in (0, 1):
            padded = np.pad(
                out, [(radius, radius) if a == axis else (0, 0) for a in range(3)], mode="edge"
            )
            cumsum = np.cumsum(padded, axis=axis, dtype=np.float64)
            cumsum = np.concatenate(
                [np.zeros_like(np.take(cumsum, [0], axis=axis)), cumsum], axis=axis
            )
            n = out.shape[axis]
            window = 2 * radius + 1
            upper = np.take(cumsum, np.arange(window, n + window), axis=axis)
            lower = np.take(cumsum, np.arange(0, n), axis=axis)
            out = ((upper - lower) / window).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def obfuscate(rgb: np.ndarray, boxes: list[tuple[int, int, int, int]], mode: str = "blur") -> None:
    """Blurs (or pixelates) each box of ``rgb`` in place."""
    for top, left, h, w in boxes:
        region = rgb[top : top + h, left : left + w]
        if mode == "pixelate":
            block = max(2, min(h, w) // 8)
            for y in range(0, h, block):
                for x in range(0, w, block):
                    cell = region[y : y + block, x : x + block]
                    cell[...] = cell.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
        else:
            region[...] = _box_blur(region, max(2, min(h, w) // 6))


def obfuscate_faces(pixels: np.ndarray, mode: str = "blur") -> tuple[np.ndarray, list[list]]:
    """A copy of ``pixels`` (``[N, H, W, 3]`` uint8) with every detected face
    obfuscated, and the boxes found in each image."""
    out = np.array(pixels, copy=True)
    boxes = []
    for i in range(len(out)):
        found = detect_faces(out[i])
        obfuscate(out[i], found, mode)
        boxes.append([list(b) for b in found])
    return out, boxes
