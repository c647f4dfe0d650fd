"""Test helpers: image synthesis, a small raw PNG writer, Pillow references, metrics.

Everything here is independent of fastprep, so the references cannot share its bugs.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXIF_DIR = FIXTURES / "exif-orientation"

WHITE = (255, 255, 255)

PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
SMOOTH_FILTERS = ("bilinear", "bicubic", "lanczos", "box", "hamming")

# EXIF orientation value -> the Pillow transpose that turns the stored pixels upright.
ORIENT_TO_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# ... and the one that turns upright pixels into what a file with that tag stores.
ORIENT_TO_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# --------------------------------------------------------------------------- metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays of one shape (inf if equal)."""
    assert a.shape == b.shape, f"shape mismatch {a.shape} vs {b.shape}"
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, f"shape mismatch {a.shape} vs {b.shape}"
    return int(np.max(np.abs(a.astype(np.int16) - b.astype(np.int16)))) if a.size else 0


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, f"shape mismatch {a.shape} vs {b.shape}"
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma as float, like Pillow's convert('L') before rounding."""
    rgb = rgb.astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


# --------------------------------------------------------------------------- synthesis


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, colourful image (low frequencies only): fair to lossy codecs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy = rng.uniform(0.5, 2.0, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        v = (
            128
            + 60 * np.sin(2 * np.pi * fx * x / width + phase) * np.cos(2 * np.pi * fy * y / height)
            + 50 * (x / width - 0.5)
            + 40 * (y / height - 0.5)
        )
        channels.append(v)
    return np.clip(np.stack(channels, axis=-1), 0, 255).round().astype(np.uint8)


def noise(shape: Sequence[int], seed: int = 0, high: int = 256, dtype=np.uint8) -> np.ndarray:
    """Uniform random samples: the hardest case for lossless codecs and filters."""
    return (
        np.random.default_rng(seed)
        .integers(0, high, size=tuple(shape), dtype=np.int64)
        .astype(dtype)
    )


def composite(rgb: np.ndarray, alpha: np.ndarray, background=WHITE) -> np.ndarray:
    """Straight-alpha 'over' onto a solid background, rounded (alpha in 0..255)."""
    rgb = rgb.astype(np.float64)
    a = alpha.astype(np.float64)[..., None] / 255.0
    bg = np.asarray(background, dtype=np.float64)
    return np.clip(np.round(rgb * a + bg * (1.0 - a)), 0, 255).astype(np.uint8)


def encode_pil(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def pil_reference(data: bytes, background=WHITE, orient: bool = True) -> np.ndarray:
    """What Pillow shows for the first frame: EXIF-oriented, alpha composited, RGB uint8."""
    img = Image.open(io.BytesIO(data))
    img.seek(0)
    if orient:
        img = ImageOps.exif_transpose(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        return composite(rgba[..., :3], rgba[..., 3], background)
    return np.asarray(img.convert("RGB"))


def photo_path(name: str) -> Path:
    return EXIF_DIR / name


def load_expected() -> list[dict]:
    return json.loads((EXIF_DIR / "expected.json").read_text())


def pil_open_rgb(path) -> Image.Image:
    """A fixture photo decoded by Pillow at full size, as stored (no EXIF rotation)."""
    with Image.open(path) as img:
        return img.convert("RGB")


# --------------------------------------------------------------------------- raw PNG writer


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + tag
        + data
        + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    )


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Adam7: (x0, y0, dx, dy) for each of the seven passes.
ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def _pack_rows(samples: np.ndarray, bit_depth: int) -> list[bytes]:
    """samples: [h, w, c] ints -> one packed byte string per row (no filter byte)."""
    h, _w, _c = samples.shape
    rows = []
    for y in range(h):
        row = samples[y].reshape(-1)
        if bit_depth == 16:
            rows.append(row.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:
            per_byte = 8 // bit_depth
            padded = np.zeros(-(-row.size // per_byte) * per_byte, dtype=np.uint8)
            padded[: row.size] = row
            padded = padded.reshape(-1, per_byte)
            packed = np.zeros(padded.shape[0], dtype=np.uint8)
            for i in range(per_byte):
                packed |= (padded[:, i] << (8 - bit_depth * (i + 1))).astype(np.uint8)
            rows.append(packed.tobytes())
    return rows


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa_, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa_ <= pb) & (pa_ <= pc), a, np.where(pb <= pc, b, c))


def _filter_rows(rows: list[bytes], bpp: int, first_filter: int = 0) -> bytes:
    """Filter each row with a cycling filter type (0..4) so decoders must undo all five."""
    out = bytearray()
    prev = np.zeros(len(rows[0]) if rows else 0, dtype=np.int32)
    for i, row in enumerate(rows):
        cur = np.frombuffer(row, dtype=np.uint8).astype(np.int32)
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]]) if cur.size else cur
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]]) if cur.size else cur
        ftype = (first_filter + i) % 5
        if ftype == 0:
            res = cur
        elif ftype == 1:
            res = cur - left
        elif ftype == 2:
            res = cur - prev
        elif ftype == 3:
            res = cur - (left + prev) // 2
        else:
            res = cur - _paeth(left, prev, upleft)
        out.append(ftype)
        out += (res & 0xFF).astype(np.uint8).tobytes()
        prev = cur
    return bytes(out)


def encode_png(
    samples: np.ndarray,
    *,
    bit_depth: int = 8,
    color_type: int | None = None,
    interlace: bool = False,
    palette: np.ndarray | None = None,
    trns: bytes | None = None,
    exif: bytes | None = None,
    compress_level: int = 6,
) -> bytes:
    """Write a PNG by hand (any bit depth, Adam7 interlacing, all five row filters).

    samples: [h, w] or [h, w, c] integers already in the range of ``bit_depth``; for
    palette images (color_type 3) the palette indices, with ``palette`` [n, 3] uint8.
    """
    if samples.ndim == 2:
        samples = samples[..., None]
    h, w, c = samples.shape
    if color_type is None:
        color_type = 3 if palette is not None else {1: 0, 2: 4, 3: 2, 4: 6}[c]
    bits_per_pixel = bit_depth * c
    bpp = max(1, bits_per_pixel // 8)
    chunks = [
        png_chunk(
            b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace))
        )
    ]
    if palette is not None:
        chunks.append(png_chunk(b"PLTE", np.asarray(palette, dtype=np.uint8).tobytes()))
    if trns is not None:
        chunks.append(png_chunk(b"tRNS", trns))
    if exif is not None:
        chunks.append(png_chunk(b"eXIf", exif))
    if interlace:
        raw = b""
        for n, (x0, y0, dx, dy) in enumerate(ADAM7):
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            raw += _filter_rows(_pack_rows(sub, bit_depth), bpp, first_filter=n)
    else:
        raw = _filter_rows(_pack_rows(samples, bit_depth), bpp)
    chunks.append(png_chunk(b"IDAT", zlib.compress(raw, compress_level)))
    chunks.append(png_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def exif_orientation_block(orientation: int, big_endian: bool = False) -> bytes:
    """A minimal TIFF-structured EXIF block (no 'Exif\\0\\0' prefix) holding only Orientation."""
    e = ">" if big_endian else "<"
    header = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    ifd = struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    return header + ifd + struct.pack(e + "I", 0)


def crafted_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR (valid CRC) claims ``width`` x ``height`` RGB pixels."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return PNG_SIGNATURE + ihdr + idat + png_chunk(b"IEND", b"")


def patch_jpeg_dims(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOFn frame header of a JPEG to claim ``width`` x ``height``."""
    out = bytearray(data)
    i = 2
    while i + 4 <= len(out):
        if out[i] != 0xFF:
            raise ValueError("lost JPEG marker sync")
        marker = out[i + 1]
        length = struct.unpack(">H", out[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            out[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(out)
        i += 2 + length
    raise ValueError("no SOF marker found")


def jpeg_sof_dims(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG frame header, for checking the patcher."""
    i = 2
    while i + 4 <= len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    raise ValueError("no SOF marker found")


def crafted_bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP whose header claims ``width`` x ``height`` but carries 16 pixel bytes."""
    pixel_bytes = b"\x00" * 16
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    file_header = struct.pack("<2sIHHI", b"BM", 14 + 40 + len(pixel_bytes), 0, 0, 14 + 40)
    return file_header + info + pixel_bytes


def crafted_gif_header(width: int, height: int) -> bytes:
    """A GIF whose screen and first frame claim ``width`` x ``height`` with a tiny LZW stream."""
    screen = (
        b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    )
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + image + b"\x3b"


# --------------------------------------------------------------------------- batch helpers


def rows(batch) -> list[dict]:
    """The non-pixel columns of a batch as a list of dicts."""
    names = [n for n in batch.schema.names if n != "pixels"]
    cols = {n: batch.column(n).to_pylist() for n in names}
    return [{n: cols[n][i] for n in names} for i in range(batch.num_rows)]


def variable_pixels(batch, index: int) -> np.ndarray | None:
    """Row ``index`` of a size=None batch as [h, w, 3] uint8 (None when the row failed)."""
    value = batch.column("pixels")[index]
    if not value.is_valid:
        return None
    h = batch.column("height")[index].as_py()
    w = batch.column("width")[index].as_py()
    return np.frombuffer(value.as_buffer(), dtype=np.uint8).reshape(h, w, 3)
