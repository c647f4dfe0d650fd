"""Every supported container and pixel layout decodes to the RGB uint8 that Pillow shows.

Images are generated at test time: with Pillow where it can write the layout, and with
the raw PNG writer in ``helpers.py`` for 16-bit, sub-byte and Adam7-interlaced PNGs.
Lossless formats must match to within 2 grey levels; lossy ones (JPEG, lossy WebP)
decoded by two different decoders must agree to PSNR >= 40 dB.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import fastprep
import numpy as np
import pyarrow as pa
import pytest
from helpers import (
    PIL_FILTERS,
    WHITE,
    composite,
    encode_pil,
    encode_png,
    max_abs_diff,
    noise,
    pil_reference,
    psnr,
    rows,
    smooth_rgb,
    variable_pixels,
)
from PIL import Image

H, W = 37, 53  # odd sizes: partial MCUs, partial Adam7 blocks, padded BMP rows
JH, JW = 61, 83  # JPEG / lossy WebP tests use a smooth image of this size


@dataclass
class Case:
    data: bytes
    expected: np.ndarray  # [h, w, 3] uint8, what the decoder must return
    fmt: str
    lossy: bool = False


def _exact(data: bytes, fmt: str, background=WHITE) -> Case:
    return Case(data, pil_reference(data, background), fmt)


def _lossy(data: bytes, fmt: str, background=WHITE) -> Case:
    return Case(data, pil_reference(data, background), fmt, lossy=True)


def _rgba_noise(seed: int) -> np.ndarray:
    rgba = noise((H, W, 4), seed=seed)
    rgba[0, :, 3] = 0  # a fully transparent row
    rgba[1, :, 3] = 255  # a fully opaque row
    return rgba


# ----------------------------------------------------------------------------- builders
# Each builder takes the background colour and returns a Case.


def png_rgb8(bg):
    return _exact(encode_pil(Image.fromarray(noise((H, W, 3), 1)), "PNG"), "png", bg)


def png_rgba8(bg):
    return _exact(encode_pil(Image.fromarray(_rgba_noise(2), "RGBA"), "PNG"), "png", bg)


def png_grey8(bg):
    return _exact(encode_pil(Image.fromarray(noise((H, W), 3), "L"), "PNG"), "png", bg)


def png_grey_alpha8(bg):
    return _exact(encode_pil(Image.fromarray(noise((H, W, 2), 4), "LA"), "PNG"), "png", bg)


def png_palette_trns(bg):
    img = Image.fromarray(noise((H, W), 5, high=16), "P")
    img.putpalette(noise((16, 3), 6).reshape(-1).tolist())
    alpha = bytes(noise((16,), 7).tolist())
    return _exact(encode_pil(img, "PNG", transparency=alpha), "png", bg)


def png_rgb_trns(bg):
    rgb = noise((H, W, 3), 8, high=4) * 80  # few colours so the key colour occurs often
    key = tuple(int(v) for v in rgb[3, 3])
    case = _exact(encode_pil(Image.fromarray(rgb), "PNG", transparency=key), "png", bg)
    assert (case.expected == np.asarray(bg, np.uint8)).all(axis=-1).sum() >= 1
    return case


def png_grey_trns(bg):
    grey = (noise((H, W), 9, high=4) * 80).astype(np.uint8)
    return _exact(
        encode_pil(Image.fromarray(grey, "L"), "PNG", transparency=int(grey[0, 0])), "png", bg
    )


def png_1bit(bg):
    bits = noise((H, W), 10, high=2).astype(bool)
    return _exact(encode_pil(Image.fromarray(bits), "PNG"), "png", bg)


def png_grey2bit_raw(bg):
    v = noise((H, W), 11, high=4)
    expected = np.repeat((v * 85).astype(np.uint8)[..., None], 3, axis=-1)
    return Case(encode_png(v, bit_depth=2), expected, "png")


def png_palette4bit_raw(bg):
    idx = noise((H, W), 12, high=16)
    palette = noise((16, 3), 13)
    return Case(encode_png(idx, bit_depth=4, palette=palette), palette[idx], "png")


def _to8(v16: np.ndarray) -> np.ndarray:
    # 16 -> 8 bit: implementations may take the high byte or round(v / 257); they
    # differ by at most 1 and the comparison allows 2.
    return (v16 >> 8).astype(np.uint8)


def png_grey16_raw(bg):
    v = noise((H, W), 14, high=65536, dtype=np.uint16)
    return Case(encode_png(v, bit_depth=16), np.repeat(_to8(v)[..., None], 3, axis=-1), "png")


def png_rgb16_raw(bg):
    v = noise((H, W, 3), 15, high=65536, dtype=np.uint16)
    return Case(encode_png(v, bit_depth=16), _to8(v), "png")


def _rgba16(seed: int) -> np.ndarray:
    v = noise((H, W, 4), seed, high=65536, dtype=np.uint16)
    # Alphas that are exact in 8 bits, so 8-bit-first and 16-bit-first compositing agree.
    v[..., 3] = noise((H, W), seed + 1).astype(np.uint16) * 257
    v[0, :, 3] = 0
    v[1, :, 3] = 65535
    return v


def png_rgba16_raw(bg):
    v = _rgba16(16)
    return Case(
        encode_png(v, bit_depth=16), composite(v[..., :3] / 257.0, v[..., 3] // 257, bg), "png"
    )


def png_grey_alpha16_raw(bg):
    v = noise((H, W, 2), 18, high=65536, dtype=np.uint16)
    v[..., 1] = noise((H, W), 19).astype(np.uint16) * 257
    grey = np.repeat(v[..., :1] / 257.0, 3, axis=-1)
    return Case(encode_png(v, bit_depth=16), composite(grey, v[..., 1] // 257, bg), "png")


def png_interlaced_rgb8(bg):
    v = noise((H, W, 3), 20)
    return Case(encode_png(v, interlace=True), v, "png")


def png_interlaced_rgba16(bg):
    v = _rgba16(21)
    expected = composite(v[..., :3] / 257.0, v[..., 3] // 257, bg)
    return Case(encode_png(v, bit_depth=16, interlace=True), expected, "png")


def png_interlaced_palette2bit(bg):
    idx = noise((H, W), 23, high=4)
    palette = noise((4, 3), 24)
    return Case(encode_png(idx, bit_depth=2, palette=palette, interlace=True), palette[idx], "png")


def png_interlaced_tiny(bg):
    # 3x5: several Adam7 passes are empty and must be skipped.
    v = noise((3, 5, 3), 25)
    return Case(encode_png(v, interlace=True), v, "png")


def _jpeg(params: dict, mode: str = "RGB") -> Callable:
    def build(bg):
        img = Image.fromarray(smooth_rgb(JH, JW, seed=30))
        if mode != "RGB":
            img = img.convert(mode)
        return _lossy(encode_pil(img, "JPEG", quality=95, **params), "jpeg", bg)

    return build


def webp_lossy(bg):
    return _lossy(
        encode_pil(Image.fromarray(smooth_rgb(JH, JW, 31)), "WEBP", quality=90), "webp", bg
    )


def webp_lossless(bg):
    return _exact(
        encode_pil(Image.fromarray(noise((H, W, 3), 32)), "WEBP", lossless=True), "webp", bg
    )


def webp_lossless_alpha(bg):
    img = Image.fromarray(_rgba_noise(33), "RGBA")
    return _exact(encode_pil(img, "WEBP", lossless=True, exact=True), "webp", bg)


def webp_lossy_alpha(bg):
    rgba = np.dstack(
        [smooth_rgb(JH, JW, 34), np.tile(np.linspace(0, 255, JW).astype(np.uint8), (JH, 1))]
    )
    return _lossy(encode_pil(Image.fromarray(rgba, "RGBA"), "WEBP", quality=90), "webp", bg)


def _palette_image(seed: int, colours: int = 64) -> Image.Image:
    img = Image.fromarray(noise((H, W), seed, high=colours), "P")
    img.putpalette(noise((colours, 3), seed + 1).reshape(-1).tolist())
    return img


def gif_palette(bg):
    return _exact(encode_pil(_palette_image(40), "GIF"), "gif", bg)


def gif_transparent(bg):
    return _exact(encode_pil(_palette_image(42), "GIF", transparency=3), "gif", bg)


def gif_first_frame(bg):
    first = Image.new("RGB", (W, H), (200, 30, 40))
    second = Image.new("RGB", (W, H), (10, 20, 230))
    data = encode_pil(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    expected = np.zeros((H, W, 3), np.uint8) + np.array([200, 30, 40], np.uint8)
    case = _exact(data, "gif", bg)
    assert max_abs_diff(case.expected, expected) == 0, "Pillow should show the first frame"
    return case


def bmp_rgb24(bg):
    return _exact(encode_pil(Image.fromarray(noise((H, W, 3), 50)), "BMP"), "bmp", bg)


def bmp_palette8(bg):
    return _exact(encode_pil(_palette_image(51, colours=256), "BMP"), "bmp", bg)


def bmp_grey8(bg):
    return _exact(encode_pil(Image.fromarray(noise((H, W), 53), "L"), "BMP"), "bmp", bg)


def bmp_1bit(bg):
    return _exact(
        encode_pil(Image.fromarray(noise((H, W), 54, high=2).astype(bool)), "BMP"), "bmp", bg
    )


BUILDERS: dict[str, Callable] = {
    "png_rgb8": png_rgb8,
    "png_rgba8": png_rgba8,
    "png_grey8": png_grey8,
    "png_grey_alpha8": png_grey_alpha8,
    "png_palette_trns": png_palette_trns,
    "png_rgb_trns": png_rgb_trns,
    "png_grey_trns": png_grey_trns,
    "png_1bit": png_1bit,
    "png_grey2bit_raw": png_grey2bit_raw,
    "png_palette4bit_raw": png_palette4bit_raw,
    "png_grey16_raw": png_grey16_raw,
    "png_rgb16_raw": png_rgb16_raw,
    "png_rgba16_raw": png_rgba16_raw,
    "png_grey_alpha16_raw": png_grey_alpha16_raw,
    "png_interlaced_rgb8": png_interlaced_rgb8,
    "png_interlaced_rgba16": png_interlaced_rgba16,
    "png_interlaced_palette2bit": png_interlaced_palette2bit,
    "png_interlaced_tiny": png_interlaced_tiny,
    "jpeg_baseline_420": _jpeg({"subsampling": 2}),
    "jpeg_baseline_422": _jpeg({"subsampling": 1}),
    "jpeg_baseline_444": _jpeg({"subsampling": 0}),
    "jpeg_progressive": _jpeg({"progressive": True, "subsampling": 2}),
    "jpeg_progressive_444": _jpeg({"progressive": True, "subsampling": 0}),
    "jpeg_optimized_huffman": _jpeg({"optimize": True}),
    "jpeg_greyscale": _jpeg({}, mode="L"),
    "jpeg_cmyk_adobe": _jpeg({}, mode="CMYK"),
    "jpeg_restart_blocks": _jpeg({"restart_marker_blocks": 1}),
    "jpeg_restart_rows_progressive": _jpeg({"restart_marker_rows": 1, "progressive": True}),
    "webp_lossy": webp_lossy,
    "webp_lossless": webp_lossless,
    "webp_lossless_alpha": webp_lossless_alpha,
    "webp_lossy_alpha": webp_lossy_alpha,
    "gif_palette": gif_palette,
    "gif_transparent": gif_transparent,
    "gif_first_frame": gif_first_frame,
    "bmp_rgb24": bmp_rgb24,
    "bmp_palette8": bmp_palette8,
    "bmp_grey8": bmp_grey8,
    "bmp_1bit": bmp_1bit,
}

ALPHA_CASES = (
    "png_rgba8",
    "png_grey_alpha8",
    "png_palette_trns",
    "png_rgb_trns",
    "png_rgba16_raw",
    "png_interlaced_rgba16",
    "webp_lossless_alpha",
    "webp_lossy_alpha",
    "gif_transparent",
)


@functools.cache
def case(name: str, background: tuple[int, int, int] = WHITE) -> Case:
    return BUILDERS[name](background)


def assert_close(got: np.ndarray, c: Case, what: str = "") -> None:
    assert got.dtype == np.uint8
    assert got.shape == c.expected.shape, f"{what}: shape {got.shape} != {c.expected.shape}"
    if c.lossy:
        value = psnr(got, c.expected)
        assert value >= 40.0, f"{what}: PSNR {value:.1f} dB vs Pillow"
    else:
        diff = max_abs_diff(got, c.expected)
        assert diff <= 2, f"{what}: max abs diff {diff} vs reference"


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_decodes_like_pillow(name):
    c = case(name)
    batch = fastprep.decode_images([c.data])
    assert batch.num_rows == 1
    row = rows(batch)[0]
    assert row["error"] is None, row["error"]
    assert row["format"] == c.fmt
    h, w = c.expected.shape[:2]
    assert (row["height"], row["width"]) == (h, w)
    assert (row["source_height"], row["source_width"]) == (h, w)
    assert row["orientation"] == 1
    assert batch.column("pixels").type == pa.large_binary()
    assert len(batch.column("pixels")[0].as_py()) == h * w * 3
    assert_close(variable_pixels(batch, 0), c, name)


@pytest.mark.parametrize(
    "name", ["png_rgb8", "jpeg_baseline_420", "webp_lossless", "gif_palette", "bmp_rgb24"]
)
def test_decode_image_matches_batch(name):
    c = case(name)
    single = fastprep.decode_image(c.data)
    assert single.shape == c.expected.shape and single.dtype == np.uint8
    batch = fastprep.decode_images([c.data])
    np.testing.assert_array_equal(single, variable_pixels(batch, 0))


@pytest.mark.parametrize("name", ALPHA_CASES)
def test_alpha_composited_onto_background(name):
    background = (0, 64, 255)
    c = case(name, background)
    on_white = case(name)
    assert max_abs_diff(c.expected, on_white.expected) > 50, "fixture should have transparency"
    got = fastprep.decode_image(c.data, background=background)
    assert_close(got, c, f"{name} on {background}")


@pytest.mark.parametrize("name", ["png_rgb8", "jpeg_baseline_444", "bmp_rgb24"])
def test_background_does_not_touch_opaque_images(name):
    c = case(name)
    got = fastprep.decode_image(c.data, background=(0, 0, 0))
    assert_close(got, c, name)


def test_greyscale_jpeg_is_grey_rgb():
    got = fastprep.decode_image(case("jpeg_greyscale").data)
    assert max_abs_diff(got[..., 0], got[..., 1]) == 0
    assert max_abs_diff(got[..., 0], got[..., 2]) == 0


def test_solid_colours_exact_in_lossless_formats():
    colour = (12, 200, 77)
    img = Image.new("RGB", (20, 10), colour)
    for fmt, params in (("PNG", {}), ("WEBP", {"lossless": True}), ("BMP", {}), ("GIF", {})):
        got = fastprep.decode_image(encode_pil(img, fmt, **params))
        assert got.shape == (10, 20, 3)
        assert (got == np.array(colour, np.uint8)).all(), fmt


def test_solid_colour_jpeg_close():
    colour = (12, 200, 77)
    got = fastprep.decode_image(encode_pil(Image.new("RGB", (40, 24), colour), "JPEG", quality=95))
    assert got.shape == (24, 40, 3)
    assert max_abs_diff(got, np.zeros_like(got) + np.array(colour, np.uint8)) <= 3


@pytest.mark.parametrize(
    "name",
    [
        "png_rgba8",
        "png_rgb16_raw",
        "png_rgba16_raw",
        "png_interlaced_rgb8",
        "png_palette_trns",
        "jpeg_baseline_420",
        "jpeg_cmyk_adobe",
        "jpeg_greyscale",
        "webp_lossy_alpha",
        "gif_transparent",
        "bmp_palette8",
    ],
)
def test_resized_output_matches_pillow_pipeline(name):
    """Decode + composite + resize agrees with Pillow doing the same steps, per layout.

    Alpha must be handled before (or premultiplied through) the resize: resizing
    straight RGBA and compositing afterwards shows halos and fails this.
    """
    c = case(name)
    size = (16, 24)
    ref = np.asarray(Image.fromarray(c.expected).resize(size[::-1], PIL_FILTERS["bilinear"]))
    got = fastprep.decode_image(
        c.data, size=size, mode="resize", filter="bilinear", reduced_decode=False
    )
    assert got.shape == (16, 24, 3)
    value = psnr(got, ref)
    assert value >= 40.0, f"{name}: PSNR {value:.1f} dB vs Pillow decode+resize"


def test_format_is_sniffed_from_bytes_not_file_name(tmp_path):
    files = {
        "really_png.jpg": case("png_rgb8"),
        "really_jpeg.png": case("jpeg_baseline_420"),
        "really_webp.gif": case("webp_lossless"),
        "really_gif.bmp": case("gif_palette"),
        "really_bmp.webp": case("bmp_rgb24"),
        "no_extension": case("png_rgba8"),
    }
    paths = []
    for file_name, c in files.items():
        path = tmp_path / file_name
        path.write_bytes(c.data)
        paths.append(str(path))
    batch = fastprep.decode_images(paths)
    got = rows(batch)
    assert [r["format"] for r in got] == [c.fmt for c in files.values()]
    for i, (file_name, c) in enumerate(files.items()):
        assert got[i]["error"] is None, (file_name, got[i]["error"])
        assert_close(variable_pixels(batch, i), c, file_name)


def test_raw_png_writer_agrees_with_pillow():
    """Self-check of the hand-written PNG encoder (8-bit layouts Pillow reads exactly)."""
    for name in (
        "png_interlaced_rgb8",
        "png_interlaced_palette2bit",
        "png_grey2bit_raw",
        "png_palette4bit_raw",
        "png_interlaced_tiny",
    ):
        c = case(name)
        assert max_abs_diff(pil_reference(c.data), c.expected) == 0, name
    # Pillow reads 16-bit RGB by keeping the high byte of each sample.
    rgb16 = case("png_rgb16_raw")
    assert max_abs_diff(pil_reference(rgb16.data), rgb16.expected) == 0
