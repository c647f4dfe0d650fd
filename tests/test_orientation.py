"""EXIF orientation: sizes, pixels and the orientation column, for JPEG, PNG eXIf and WebP.

The JPEGs are the exif-orientation-examples photos (tests/fixtures/exif-orientation,
MIT, see its README): after the tag is applied every ``Landscape_N`` looks like
``Landscape_1`` and every ``Portrait_N`` like ``Portrait_1``.
"""

from __future__ import annotations

import io

import fastprep
import numpy as np
import pytest
from helpers import (
    EXIF_DIR,
    ORIENT_TO_STORED,
    ORIENT_TO_UPRIGHT,
    encode_pil,
    encode_png,
    exif_orientation_block,
    grey,
    max_abs_diff,
    mean_abs_diff,
    noise,
    psnr,
    rows,
)
from PIL import Image, ImageOps

LANDSCAPE_SMALL = (64, 96)  # (height, width) of the downscaled comparisons
PORTRAIT_SMALL = (96, 64)
RESEMBLE = 8.0  # mean abs grey difference allowed between an oriented _N and _1
DIFFERENT = 25.0  # a wrongly oriented photo differs from _1 by more than this


def _small_size(name: str):
    return LANDSCAPE_SMALL if name.startswith("Landscape") else PORTRAIT_SMALL


def _applied(tag: int) -> int:
    # Tag 0 (invalid, in *_0.jpg) means no change, reported as 1.
    return tag if 1 <= tag <= 8 else 1


def test_fixture_files_are_present(exif_expected):
    assert len(exif_expected) == 18
    for entry in exif_expected:
        assert (EXIF_DIR / entry["file"]).is_file(), entry["file"]


@pytest.mark.parametrize("reduced_decode", [True, False])
def test_source_size_is_display_size(exif_expected, reduced_decode):
    paths = [str(EXIF_DIR / e["file"]) for e in exif_expected]
    batch = fastprep.decode_images(
        paths, size=(32, 32), mode="resize", reduced_decode=reduced_decode
    )
    for entry, row in zip(exif_expected, rows(batch)):
        assert row["error"] is None, (entry["file"], row["error"])
        assert row["format"] == "jpeg"
        assert (row["source_height"], row["source_width"]) == (
            entry["display_height"],
            entry["display_width"],
        ), entry["file"]
        assert row["orientation"] == _applied(entry["exif_orientation"]), entry["file"]
        assert (row["height"], row["width"]) == (32, 32)


def test_source_size_is_stored_size_without_orientation(exif_expected):
    paths = [str(EXIF_DIR / e["file"]) for e in exif_expected]
    batch = fastprep.decode_images(paths, size=(32, 32), mode="resize", apply_orientation=False)
    for entry, row in zip(exif_expected, rows(batch)):
        assert row["error"] is None, (entry["file"], row["error"])
        assert (row["source_height"], row["source_width"]) == (
            entry["stored_height"],
            entry["stored_width"],
        ), entry["file"]
        assert row["orientation"] == 1, entry["file"]


@pytest.mark.parametrize("name", ["Landscape_6.jpg", "Portrait_5.jpg", "Landscape_3.jpg"])
def test_full_size_decode_is_oriented_like_pillow(name):
    data = (EXIF_DIR / name).read_bytes()
    got = fastprep.decode_image(data)
    with Image.open(io.BytesIO(data)) as img:
        ref = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert got.shape == ref.shape
    value = psnr(got, ref)
    assert value >= 40.0, f"{name}: PSNR {value:.1f} dB vs Pillow exif_transpose"


@pytest.fixture(scope="module")
def oriented_small(exif_expected):
    """name -> (oriented, unoriented) downscaled decodes of every fixture photo."""
    out = {}
    for kind in ("Landscape", "Portrait"):
        names = [f"{kind}_{n}.jpg" for n in range(9)]
        paths = [str(EXIF_DIR / n) for n in names]
        size = _small_size(kind)
        on = fastprep.pixels_to_numpy(fastprep.decode_images(paths, size=size, mode="resize"))
        off = fastprep.pixels_to_numpy(
            fastprep.decode_images(paths, size=size, mode="resize", apply_orientation=False)
        )
        for i, name in enumerate(names):
            out[name] = (on[i].copy(), off[i].copy())
    return out


@pytest.mark.parametrize("kind", ["Landscape", "Portrait"])
@pytest.mark.parametrize("n", range(9))
def test_oriented_pixels_resemble_upright_photo(oriented_small, kind, n):
    reference = grey(oriented_small[f"{kind}_1.jpg"][0])
    oriented, unoriented = oriented_small[f"{kind}_{n}.jpg"]
    diff = mean_abs_diff(grey(oriented), reference)
    assert diff < RESEMBLE, f"{kind}_{n}: mean abs diff {diff:.1f} from {kind}_1"
    if n >= 2:
        # The same file without its tag applied must look clearly different: this is
        # what makes the check above able to fail.
        wrong = mean_abs_diff(grey(unoriented), reference)
        assert wrong > DIFFERENT, f"{kind}_{n} unoriented differs by only {wrong:.1f}"


@pytest.mark.parametrize("kind", ["Landscape", "Portrait"])
def test_every_wrong_transform_is_detectable(oriented_small, kind):
    """Guard for the resemblance threshold: all other shape-keeping transforms of _1 are far."""
    upright = oriented_small[f"{kind}_1.jpg"][0]
    for transform in (np.fliplr, np.flipud, lambda a: a[::-1, ::-1]):
        assert mean_abs_diff(grey(transform(upright)), grey(upright)) > DIFFERENT


# ------------------------------------------------------------------ PNG eXIf and WebP EXIF

UPRIGHT_H, UPRIGHT_W = 24, 40


@pytest.fixture(scope="module")
def upright() -> np.ndarray:
    """An asymmetric image: every orientation mistake changes the pixels."""
    return noise((UPRIGHT_H, UPRIGHT_W, 3), seed=77)


def _stored(upright: np.ndarray, tag: int) -> Image.Image:
    img = Image.fromarray(upright)
    if tag in ORIENT_TO_STORED:
        img = img.transpose(ORIENT_TO_STORED[tag])
        # Check of the test's own tables: the upright transform undoes the stored one.
        back = np.asarray(img.transpose(ORIENT_TO_UPRIGHT[tag]))
        assert max_abs_diff(back, upright) == 0
    return img


def _exif(tag: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = tag
    return exif


CONTAINERS = ["png_pillow", "png_raw_little_endian", "webp_lossless", "jpeg_little_endian"]


def _with_exif(stored: Image.Image, tag: int, container: str) -> bytes:
    if container == "png_pillow":  # Pillow writes a big-endian block
        return encode_pil(stored, "PNG", exif=_exif(tag))
    if container == "png_raw_little_endian":
        return encode_png(np.asarray(stored), exif=exif_orientation_block(tag, big_endian=False))
    if container == "webp_lossless":
        return encode_pil(stored, "WEBP", lossless=True, exact=True, exif=_exif(tag))
    block = b"Exif\x00\x00" + exif_orientation_block(tag, big_endian=False)
    return encode_pil(stored, "JPEG", quality=95, subsampling=0, exif=block)


@pytest.mark.parametrize("tag", range(1, 9))
@pytest.mark.parametrize("container", CONTAINERS)
def test_embedded_exif_orientation(upright, tag, container):
    stored = _stored(upright, tag)
    data = _with_exif(stored, tag, container)
    lossy = container.startswith("jpeg")
    with Image.open(io.BytesIO(data)) as img:
        pil_upright = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        pil_stored = np.asarray(img.convert("RGB"))
    if lossy:
        assert psnr(pil_upright, upright) >= 30.0
    else:
        assert max_abs_diff(pil_upright, upright) == 0

    def check(got, want, what):
        assert got.shape == want.shape, what
        if lossy:
            assert psnr(got, want) >= 40.0, what
        else:
            assert max_abs_diff(got, want) <= 2, what

    batch = fastprep.decode_images([data])
    row = rows(batch)[0]
    assert row["error"] is None, row["error"]
    assert row["orientation"] == tag
    assert (row["source_height"], row["source_width"]) == (UPRIGHT_H, UPRIGHT_W)
    check(fastprep.decode_image(data), pil_upright, f"tag {tag} applied")

    row_off = rows(fastprep.decode_images([data], apply_orientation=False))[0]
    assert row_off["orientation"] == 1
    assert (row_off["source_height"], row_off["source_width"]) == pil_stored.shape[:2]
    check(fastprep.decode_image(data, apply_orientation=False), pil_stored, f"tag {tag} ignored")


@pytest.mark.parametrize("mode", ["resize", "center_crop", "letterbox"])
def test_orientation_applies_before_geometry(upright, mode):
    """Resizing a rotated file gives the resize of the upright image."""
    data = encode_pil(_stored(upright, 6), "PNG", exif=_exif(6))
    plain = encode_pil(Image.fromarray(upright), "PNG")
    size = (12, 16)
    got = fastprep.decode_image(data, size=size, mode=mode, filter="bilinear")
    want = fastprep.decode_image(plain, size=size, mode=mode, filter="bilinear")
    assert got.shape == want.shape == (12, 16, 3)
    assert max_abs_diff(got, want) <= 2


def test_jpeg_without_exif_reports_orientation_one():
    data = encode_pil(Image.fromarray(noise((16, 24, 3), 5)), "JPEG")
    row = rows(fastprep.decode_images([data]))[0]
    assert row["error"] is None
    assert row["orientation"] == 1
    assert (row["source_height"], row["source_width"]) == (16, 24)
