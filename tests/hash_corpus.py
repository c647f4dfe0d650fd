"""A deterministic corpus of real-photo images for the hash tests.

Every file is made at test time, with Pillow and fixed seeds, from the photos in
``tests/fixtures`` (the EXIF-orientation examples and Meta's PDQ test images):
crops, odd sizes (1x1 to 37x1001), greyscale, RGBA/LA with varied alpha, palette
(with and without transparency), WebP, progressive and 4:4:4/4:2:2 JPEG, CMYK JPEG,
GIF, BMP, 1-bit and 16-bit PNG, flat pictures, tall/wide strips and EXIF-rotated
copies (JPEG and PNG, orientations 2-8), plus the fixture files themselves. The
references the tests compare against (``imagehash``, ``pdqhash``) see what Pillow shows:
``ImageOps.exif_transpose(Image.open(f))``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from helpers import ORIENT_TO_STORED
from PIL import Image, ImageOps

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXIF_DIR = FIXTURES / "exif-orientation"
PDQ_DIR = FIXTURES / "pdq"
PDQ_IMAGES = PDQ_DIR / "images"

ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def displayed(data: bytes) -> Image.Image:
    """What Pillow shows: the file opened, EXIF orientation applied, mode kept."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return ImageOps.exif_transpose(img)


def displayed_rgb(data: bytes) -> Image.Image:
    """The displayed picture in Pillow's ``convert("RGB")`` view (alpha dropped)."""
    return displayed(data).convert("RGB")


def _with_orientation(img: Image.Image, fmt: str, orientation: int, **params) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return encode(img, fmt, exif=exif.tobytes(), **params)


def _stored_for(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a file with this EXIF orientation stores to display ``upright``."""
    to_stored = ORIENT_TO_STORED
    return upright.transpose(to_stored[orientation]) if orientation in to_stored else upright


def fixture_files() -> list[Path]:
    files = sorted(EXIF_DIR.glob("*.jpg"))
    files += sorted(
        p for p in PDQ_IMAGES.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    return files


@cache
def base_photos() -> dict[str, Image.Image]:
    """Upright RGB photos the variants are cut from (decoded once)."""

    def load(path: Path) -> Image.Image:
        return displayed_rgb(path.read_bytes())

    return {
        "landscape": load(EXIF_DIR / "Landscape_1.jpg"),
        "portrait": load(EXIF_DIR / "Portrait_1.jpg"),
        "bridge": load(PDQ_IMAGES / "dih" / "bridge-1-original.jpg"),
        "q0122": load(PDQ_IMAGES / "labelme-subset" / "q0122.jpg"),
        "q0291": load(PDQ_IMAGES / "labelme-subset" / "q0291.jpg"),
        "q1050": load(PDQ_IMAGES / "labelme-subset" / "q1050.jpg"),
        "q2821": load(PDQ_IMAGES / "labelme-subset" / "q2821.jpg"),
        "q0746": load(PDQ_IMAGES / "labelme-subset" / "q0746.jpg"),
    }


def _crop(img: Image.Image, rng: np.random.Generator, min_frac: float = 0.3) -> Image.Image:
    w, h = img.size
    cw = int(rng.integers(max(1, int(w * min_frac)), w + 1))
    ch = int(rng.integers(max(1, int(h * min_frac)), h + 1))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch))


def _alpha(size: tuple[int, int], kind: str, rng: np.random.Generator) -> Image.Image:
    w, h = size
    if kind == "gradient":
        return Image.linear_gradient("L").resize(size)
    if kind == "random":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    if kind == "holes":  # fully transparent blocks over opaque ground
        a = np.full((h, w), 255, np.uint8)
        a[h // 4 : h // 2, :] = 0
        a[:, w // 3 : w // 2] = 0
        return Image.fromarray(a)
    if kind == "clear":  # everything transparent: colour survives only un-composited
        return Image.new("L", size, 0)
    raise ValueError(kind)


@cache
def hash_corpus() -> tuple[Case, ...]:
    """About 250 cases, identical on every run (for one Pillow build)."""
    rng = np.random.default_rng(20261117)
    cases: list[Case] = []

    def add(name: str, data: bytes) -> None:
        cases.append(Case(name, data))

    # The fixture files as they are: EXIF-rotated JPEGs (orientations 0..8),
    # the PDQ reference photos, an RGBA PNG, an LA PNG, a 16-bit PNG.
    for path in fixture_files():
        add(f"file:{path.relative_to(FIXTURES)}", path.read_bytes())

    photos = base_photos()
    odd_sizes = [
        (37, 1001),
        (1001, 37),
        (7, 9),
        (9, 7),
        (1, 1),
        (2, 3),
        (5, 5),
        (4, 6),
        (63, 65),
        (64, 64),
        (8, 8),
        (33, 32),
        (300, 17),
        (129, 257),
    ]
    for index, (w, h) in enumerate(odd_sizes):
        name = list(photos)[index % len(photos)]
        src = _crop(photos[name], rng, 0.2)
        small = src.resize((w, h), Image.Resampling.BICUBIC)
        add(f"odd:{name}:{w}x{h}:png", encode(small, "PNG"))
        if w * h > 4:
            add(f"odd:{name}:{w}x{h}:jpeg", encode(small, "JPEG", quality=92))

    for name, photo in photos.items():
        crop = _crop(photo, rng)
        add(
            f"crop:{name}:{crop.size[0]}x{crop.size[1]}:jpeg",
            encode(crop, "JPEG", quality=int(rng.integers(60, 96))),
        )
        add(f"crop:{name}:progressive", encode(crop, "JPEG", quality=85, progressive=True))
        add(f"crop:{name}:444", encode(crop, "JPEG", quality=90, subsampling=0))
        add(f"crop:{name}:422", encode(crop, "JPEG", quality=80, subsampling=1))
        add(f"crop:{name}:png", encode(crop, "PNG"))
        grey = crop.convert("L")
        add(f"grey:{name}:jpeg", encode(grey, "JPEG", quality=88))
        add(f"grey:{name}:png", encode(grey, "PNG"))
        # 16-bit greyscale PNG (Pillow mode I;16).
        wide = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
        add(f"grey16:{name}:png", encode(wide, "PNG"))
        for kind in ("gradient", "random", "holes", "clear"):
            rgba = crop.copy()
            rgba.putalpha(_alpha(crop.size, kind, rng))
            add(f"rgba-{kind}:{name}:png", encode(rgba, "PNG"))
        la = Image.merge("LA", (grey, _alpha(grey.size, "random", rng)))
        add(f"la:{name}:png", encode(la, "PNG"))
        pal = crop.quantize(colors=int(rng.integers(8, 200)))
        add(f"palette:{name}:png", encode(pal, "PNG"))
        add(f"palette-trns:{name}:png", encode(pal, "PNG", transparency=0))
        add(f"webp-lossy:{name}", encode(crop, "WEBP", quality=80))
        add(f"webp-lossless:{name}", encode(crop, "WEBP", lossless=True))
        orientation = int(rng.integers(2, 9))
        stored = _stored_for(crop, orientation)
        add(
            f"exif{orientation}:{name}:jpeg",
            _with_orientation(stored, "JPEG", orientation, quality=90),
        )
        orientation = int(rng.integers(2, 9))
        add(
            f"exif{orientation}:{name}:png",
            _with_orientation(_stored_for(crop, orientation), "PNG", orientation),
        )
    # Other containers and modes of one crop: CMYK JPEG, GIF, 1-bit, 4-bit
    # palette, BMP, 16-bit grey that fits in 8 bits, WebP with alpha.
    crop = _crop(photos["q0122"], rng, 0.6)
    add("cmyk:q0122:jpeg", encode(crop.convert("CMYK"), "JPEG", quality=90))
    add("gif:q0122", encode(crop.quantize(64), "GIF"))
    add("gif-trns:q0122", encode(crop.quantize(64), "GIF", transparency=3))
    add("1bit:q0122:png", encode(crop.convert("1"), "PNG"))
    add("palette4:q0122:png", encode(crop.quantize(16), "PNG", bits=4))
    add("bmp:q0122", encode(crop, "BMP"))
    add(
        "grey16-low:q0122:png",
        encode(Image.fromarray(np.asarray(crop.convert("L")).astype(np.uint16)), "PNG"),
    )
    translucent = crop.copy()
    translucent.putalpha(90)
    add("rgba-webp-lossy:q0122", encode(translucent, "WEBP", quality=80))
    add("rgba-webp-lossless:q0122", encode(translucent, "WEBP", lossless=True))
    # Flat pictures (blank placeholders are common in scraped data).
    for colour, size in (
        ((73, 73, 73), (100, 80)),
        ((255, 255, 255), (64, 64)),
        ((12, 200, 90), (33, 517)),
    ):
        add(f"flat:{colour}:{size[0]}x{size[1]}:png", encode(Image.new("RGB", size, colour), "PNG"))
    add("flat:black:jpeg", encode(Image.new("RGB", (120, 90)), "JPEG", quality=90))
    # Tall and wide strips: Pillow resizes these with the vertical pass first.
    for name, (w, h) in (
        ("landscape", (160, 1100)),
        ("bridge", (90, 980)),
        ("portrait", (300, 1700)),
        ("bridge", (1500, 120)),
    ):
        photo = photos[name]
        x = int(rng.integers(0, photo.size[0] - w + 1))
        y = int(rng.integers(0, photo.size[1] - h + 1))
        strip = photo.crop((x, y, x + w, y + h))
        add(f"strip:{name}:{w}x{h}:jpeg", encode(strip, "JPEG", quality=90))
    # EXIF rotations of one full-size photo, in every orientation.
    for orientation in range(2, 9):
        stored = _stored_for(photos["bridge"], orientation)
        add(
            f"exif{orientation}:bridge-full:jpeg",
            _with_orientation(stored, "JPEG", orientation, quality=90),
        )
    return tuple(cases)
