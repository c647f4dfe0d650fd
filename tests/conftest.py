"""Shared fixtures for the image-core tests.

Real photos come from ``tests/fixtures/exif-orientation`` (copied into this repo with
their LICENSE); every other image is generated here with Pillow or the raw PNG writer
in ``helpers.py``.
"""

from __future__ import annotations

import pytest
from helpers import EXIF_DIR, encode_pil, load_expected, smooth_rgb
from PIL import Image


@pytest.fixture(scope="session")
def exif_expected():
    return load_expected()


@pytest.fixture(scope="session")
def landscape_path():
    return EXIF_DIR / "Landscape_1.jpg"


@pytest.fixture(scope="session")
def portrait_path():
    return EXIF_DIR / "Portrait_1.jpg"


@pytest.fixture(scope="session")
def landscape_bytes(landscape_path) -> bytes:
    return landscape_path.read_bytes()


@pytest.fixture(scope="session")
def small_photo() -> Image.Image:
    """Landscape_1 shrunk by Pillow to 360x240: real photo content, cheap to decode."""
    with Image.open(EXIF_DIR / "Landscape_1.jpg") as img:
        return img.convert("RGB").resize((360, 240), Image.Resampling.BOX)


@pytest.fixture(scope="session")
def small_photo_png(small_photo) -> bytes:
    return encode_pil(small_photo, "PNG")


@pytest.fixture(scope="session")
def small_photo_jpeg(small_photo) -> bytes:
    return encode_pil(small_photo, "JPEG", quality=90)


@pytest.fixture(scope="session")
def tiny_png() -> bytes:
    """An 8x8 RGB PNG."""
    return encode_pil(Image.fromarray(smooth_rgb(8, 8, seed=3)), "PNG")


@pytest.fixture(scope="session")
def valid_samples(small_photo) -> dict[str, bytes]:
    """One small valid file per supported format (and a few variants), for fuzzing."""
    base = small_photo.resize((48, 32), Image.Resampling.BILINEAR)
    rgba = base.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    pal = base.quantize(colors=32)
    out = {
        "jpeg": encode_pil(base, "JPEG", quality=85),
        "jpeg_progressive": encode_pil(base, "JPEG", quality=85, progressive=True),
        "jpeg_restart": encode_pil(base, "JPEG", quality=85, restart_marker_blocks=2),
        "jpeg_grey": encode_pil(base.convert("L"), "JPEG", quality=85),
        "png": encode_pil(base, "PNG"),
        "png_rgba": encode_pil(rgba, "PNG"),
        "png_palette": encode_pil(pal, "PNG", transparency=0),
        "webp_lossy": encode_pil(base, "WEBP", quality=80),
        "webp_lossless": encode_pil(rgba, "WEBP", lossless=True),
        "gif": encode_pil(pal, "GIF"),
        "bmp": encode_pil(base, "BMP"),
    }
    return out
