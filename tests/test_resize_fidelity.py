"""Geometry and resampling fidelity against Pillow (and torchvision's rules, done in Pillow).

Real photos: Landscape_1.jpg and Portrait_1.jpg from tests/fixtures/exif-orientation
(1800x1200 and 1200x1800, no rotation needed). With ``reduced_decode=False`` fastprep
must match Pillow decode + ``Image.resize`` to PSNR >= 40 dB for every antialiasing
filter; with the DCT-domain reduced decode, >= 32 dB.
"""

from __future__ import annotations

import fastprep
import numpy as np
import pytest
from helpers import (
    EXIF_DIR,
    PIL_FILTERS,
    SMOOTH_FILTERS,
    encode_pil,
    max_abs_diff,
    noise,
    pil_open_rgb,
    psnr,
)
from PIL import Image

PHOTOS = ("Landscape_1.jpg", "Portrait_1.jpg")


@pytest.fixture(scope="module")
def pil_photos():
    """Full-size Pillow decodes of the two upright photos."""
    return {name: pil_open_rgb(EXIF_DIR / name) for name in PHOTOS}


def _torchvision_center_crop(img: Image.Image, shorter: int, size, resample) -> np.ndarray:
    """torchvision Resize(shorter) + CenterCrop(size) on a PIL image, written out."""
    w, h = img.size
    if w <= h:
        new_w, new_h = shorter, int(shorter * h / w)
    else:
        new_h, new_w = shorter, int(shorter * w / h)
    resized = img.resize((new_w, new_h), resample)
    crop_h, crop_w = size
    top = round((new_h - crop_h) / 2.0)
    left = round((new_w - crop_w) / 2.0)
    return np.asarray(resized.crop((left, top, left + crop_w, top + crop_h)))


# ------------------------------------------------------------------------------ resize


@pytest.mark.parametrize("size", [(224, 224), (150, 333)])
@pytest.mark.parametrize("filter_name", SMOOTH_FILTERS)
@pytest.mark.parametrize("photo", PHOTOS)
def test_resize_matches_pillow_full_decode(pil_photos, photo, filter_name, size):
    got = fastprep.decode_image(
        str(EXIF_DIR / photo), size=size, mode="resize", filter=filter_name, reduced_decode=False
    )
    ref = np.asarray(pil_photos[photo].resize(size[::-1], PIL_FILTERS[filter_name]))
    assert got.shape == (*size, 3)
    value = psnr(got, ref)
    assert value >= 40.0, f"{photo} {filter_name} {size}: PSNR {value:.1f} dB"


@pytest.mark.parametrize("filter_name", SMOOTH_FILTERS)
@pytest.mark.parametrize("photo", PHOTOS)
def test_resize_with_reduced_decode(pil_photos, photo, filter_name):
    size = (224, 224)
    got = fastprep.decode_image(
        str(EXIF_DIR / photo), size=size, mode="resize", filter=filter_name, reduced_decode=True
    )
    ref = np.asarray(pil_photos[photo].resize(size[::-1], PIL_FILTERS[filter_name]))
    value = psnr(got, ref)
    assert value >= 32.0, f"{photo} {filter_name} reduced: PSNR {value:.1f} dB"


@pytest.mark.parametrize("size", [(300, 450), (120, 500)])
@pytest.mark.parametrize("filter_name", SMOOTH_FILTERS)
def test_resize_upscale_and_mixed_axes(small_photo, small_photo_png, filter_name, size):
    """Upscaling (no antialias widening) and one axis up, one down, on photo content."""
    got = fastprep.decode_image(small_photo_png, size=size, mode="resize", filter=filter_name)
    ref = np.asarray(small_photo.resize(size[::-1], PIL_FILTERS[filter_name]))
    value = psnr(got, ref)
    assert value >= 40.0, f"{filter_name} {size}: PSNR {value:.1f} dB"


@pytest.mark.parametrize("src,size", [((90, 120), (37, 43)), ((20, 24), (47, 53))])
@pytest.mark.parametrize("filter_name", SMOOTH_FILTERS)
def test_filter_is_the_one_asked_for(filter_name, src, size):
    """On noise the filters differ a lot; the output must be closest to Pillow's same filter."""
    img = Image.fromarray(noise((*src, 3), seed=11))
    data = encode_pil(img, "PNG")
    got = fastprep.decode_image(data, size=size, mode="resize", filter=filter_name)
    scores = {
        name: psnr(got, np.asarray(img.resize(size[::-1], resample)))
        for name, resample in PIL_FILTERS.items()
    }
    best = max(scores, key=scores.get)
    assert best == filter_name, f"asked {filter_name}, closest to {best}: {scores}"
    assert scores[filter_name] >= 35.0, scores


@pytest.mark.parametrize("size", [(13, 20), (70, 90)])
def test_nearest_picks_source_pixels(size):
    """Nearest never blends: every output pixel is a source pixel, taken in order."""
    h, w = 32, 48
    y, x = np.mgrid[0:h, 0:w]
    src = np.stack([x * 5, y * 7, (x * 3 + y * 11) % 256], axis=-1).astype(np.uint8)
    got = fastprep.decode_image(
        encode_pil(Image.fromarray(src), "PNG"), size=size, mode="resize", filter="nearest"
    )
    assert got.shape == (*size, 3)
    xs = got[..., 0].astype(int) // 5
    ys = got[..., 1].astype(int) // 7
    assert (got[..., 0].astype(int) % 5 == 0).all() and (got[..., 1].astype(int) % 7 == 0).all()
    assert (got[..., 2] == src[ys, xs, 2]).all(), "output pixel is not any source pixel"
    # Each output column comes from one source column, in nondecreasing order; same for rows.
    assert (xs == xs[:1]).all() and (np.diff(xs[0]) >= 0).all()
    assert (ys == ys[:, :1]).all() and (np.diff(ys[:, 0]) >= 0).all()
    # ... and within one source pixel of Pillow's choice (pixel centres).
    want_x = ((np.arange(size[1]) + 0.5) * w / size[1]).astype(int)
    want_y = ((np.arange(size[0]) + 0.5) * h / size[0]).astype(int)
    assert np.abs(xs[0] - want_x).max() <= 1
    assert np.abs(ys[:, 0] - want_y).max() <= 1


# ------------------------------------------------------------------------- center_crop


@pytest.mark.parametrize("filter_name", SMOOTH_FILTERS)
@pytest.mark.parametrize("photo", PHOTOS)
def test_center_crop_matches_torchvision_rule(pil_photos, photo, filter_name):
    got = fastprep.decode_image(
        str(EXIF_DIR / photo),
        size=224,
        mode="center_crop",
        filter=filter_name,
        reduced_decode=False,
    )
    ref = _torchvision_center_crop(pil_photos[photo], 256, (224, 224), PIL_FILTERS[filter_name])
    assert got.shape == (224, 224, 3)
    value = psnr(got, ref)
    assert value >= 40.0, f"{photo} {filter_name}: PSNR {value:.1f} dB"


@pytest.mark.parametrize("photo", PHOTOS)
def test_center_crop_reduced_decode(pil_photos, photo):
    got = fastprep.decode_image(str(EXIF_DIR / photo), size=224, mode="center_crop")
    ref = _torchvision_center_crop(pil_photos[photo], 256, (224, 224), Image.Resampling.BILINEAR)
    value = psnr(got, ref)
    assert value >= 32.0, f"{photo} default options: PSNR {value:.1f} dB"


@pytest.mark.parametrize(
    "size,resize_shorter,shorter",
    [
        ((112, 112), None, 128),  # default: round(112 * 256 / 224)
        ((224, 160), None, 256),  # non-square crop; default from max(size)
        ((160, 224), None, 256),
        ((100, 120), None, 137),  # round(120 * 256 / 224) = round(137.14)
        ((200, 200), 300, 300),  # explicit
        ((180, 180), 180, 180),  # crop = whole shorter side
    ],
)
@pytest.mark.parametrize("photo", PHOTOS)
def test_center_crop_sizes(pil_photos, photo, size, resize_shorter, shorter):
    got = fastprep.decode_image(
        str(EXIF_DIR / photo),
        size=size,
        mode="center_crop",
        resize_shorter=resize_shorter,
        reduced_decode=False,
    )
    assert got.shape == (*size, 3)
    ref = _torchvision_center_crop(pil_photos[photo], shorter, size, Image.Resampling.BILINEAR)
    value = psnr(got, ref)
    assert value >= 40.0, f"{photo} {size} shorter={shorter}: PSNR {value:.1f} dB"


# --------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("size", [(224, 224), (100, 300)])
def test_letterbox(pil_photos, photo, size):
    background = (255, 0, 255)
    got = fastprep.decode_image(
        str(EXIF_DIR / photo),
        size=size,
        mode="letterbox",
        background=background,
        reduced_decode=False,
    )
    assert got.shape == (*size, 3)
    src_w, src_h = pil_photos[photo].size
    scale = min(size[0] / src_h, size[1] / src_w)
    exact_h, exact_w = src_h * scale, src_w * scale
    is_bg = (got == np.array(background, np.uint8)).all(axis=-1)
    content_rows = np.flatnonzero(~is_bg.all(axis=1))
    content_cols = np.flatnonzero(~is_bg.all(axis=0))
    top, bottom = content_rows[0], content_rows[-1] + 1
    left, right = content_cols[0], content_cols[-1] + 1
    ch, cw = bottom - top, right - left
    # Fit within, keeping the aspect ratio: one side fills, the other is rounded.
    assert abs(ch - exact_h) <= 1 and abs(cw - exact_w) <= 1, (ch, cw, exact_h, exact_w)
    assert ch == size[0] or cw == size[1]
    # Centred: the padding on the two sides differs by at most one pixel.
    assert abs(top - (size[0] - bottom)) <= 1 and abs(left - (size[1] - right)) <= 1
    # Everything outside the content box is exactly the background.
    outside = np.ones(size, bool)
    outside[top:bottom, left:right] = False
    assert is_bg[outside].all()
    ref = np.asarray(pil_photos[photo].resize((cw, ch), Image.Resampling.BILINEAR))
    inner = (slice(1, -1), slice(1, -1))  # edge rows/cols may blend with the padding
    value = psnr(got[top:bottom, left:right][inner], ref[inner])
    assert value >= 38.0, f"{photo} {size}: PSNR {value:.1f} dB"


def test_letterbox_same_aspect_has_no_padding(small_photo, small_photo_png):
    got = fastprep.decode_image(
        small_photo_png, size=(120, 180), mode="letterbox", background=(255, 0, 255)
    )
    ref = np.asarray(small_photo.resize((180, 120), Image.Resampling.BILINEAR))
    assert psnr(got, ref) >= 40.0


# ----------------------------------------------------------------- random_resized_crop


def _rrc(data, **kw):
    return fastprep.decode_images(data, size=(64, 64), mode="random_resized_crop", **kw)


def test_random_resized_crop_deterministic_for_seed(small_photo_png):
    data = [small_photo_png] * 6
    a = fastprep.pixels_to_numpy(_rrc(data, seed=123))
    b = fastprep.pixels_to_numpy(_rrc(data, seed=123))
    assert a.shape == (6, 64, 64, 3)
    np.testing.assert_array_equal(a, b)


def test_random_resized_crop_seed_and_record_matter(small_photo_png):
    data = [small_photo_png] * 6
    a = fastprep.pixels_to_numpy(_rrc(data, seed=1)).copy()
    b = fastprep.pixels_to_numpy(_rrc(data, seed=2)).copy()
    assert any(max_abs_diff(a[i], b[i]) > 0 for i in range(6)), "different seeds gave equal crops"
    distinct = {a[i].tobytes() for i in range(6)}
    assert len(distinct) >= 3, "records in one batch should get their own crops"


def test_random_resized_crop_full_area_equals_resize(small_photo_png):
    """scale=(1,1) and the image's own aspect ratio leave only the whole image to crop."""
    w, h = 360, 240
    kw = {"scale": (1.0, 1.0), "ratio": (w / h, w / h), "filter": "bilinear"}
    plain = fastprep.decode_image(small_photo_png, size=(64, 64), mode="resize", filter="bilinear")
    for seed in range(3):
        kept = fastprep.decode_image(
            small_photo_png, size=(64, 64), mode="random_resized_crop", seed=seed, flip_p=0.0, **kw
        )
        assert max_abs_diff(kept, plain) <= 2
        flipped = fastprep.decode_image(
            small_photo_png, size=(64, 64), mode="random_resized_crop", seed=seed, flip_p=1.0, **kw
        )
        assert max_abs_diff(flipped, plain[:, ::-1]) <= 2


def test_random_resized_crop_is_a_crop_of_the_image(small_photo_png):
    """With a small fixed scale, the crop is visibly zoomed in: unlike the full resize."""
    plain = fastprep.decode_image(small_photo_png, size=(64, 64), mode="resize")
    crops = fastprep.pixels_to_numpy(
        _rrc([small_photo_png] * 4, seed=5, scale=(0.1, 0.1), ratio=(1.0, 1.0), flip_p=0.0)
    )
    for crop in crops:
        assert psnr(crop, plain) < 25.0


@pytest.mark.parametrize("mode", ["center_crop", "resize", "letterbox", "random_resized_crop"])
def test_modes_report_output_and_source_sizes(small_photo_png, mode):
    batch = fastprep.decode_images([small_photo_png] * 2, size=(50, 70), mode=mode)
    assert batch.column("height").to_pylist() == [50, 50]
    assert batch.column("width").to_pylist() == [70, 70]
    assert batch.column("source_height").to_pylist() == [240, 240]
    assert batch.column("source_width").to_pylist() == [360, 360]
    assert batch.column("error").to_pylist() == [None, None]
