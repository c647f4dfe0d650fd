"""Decode switches that change layout or reading, not pixels' meaning:
``channels_first`` (planes), ``read_to_end`` (how far a crop reads) and
``drop_alpha`` (PIL's ``convert("RGB")``)."""

from __future__ import annotations

import io

import fastprep
import numpy as np
import pytest
from fastprep import DecodeOptions
from PIL import Image


def photo(seed: int, size=(320, 240)) -> bytes:
    """A smooth, photo-like JPEG (gradients plus noise), 4:2:0."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


PHOTOS = [photo(i, size) for i, size in enumerate([(320, 240), (240, 320), (333, 211), (64, 48)])]


def pixels(batch) -> np.ndarray:
    column = batch.column("pixels")
    return column.to_numpy_ndarray()


@pytest.mark.parametrize("mode", ["random_resized_crop", "center_crop", "resize", "letterbox"])
def test_channels_first_holds_the_same_pixels_as_planes(mode):
    options = DecodeOptions(size=(40, 56), mode=mode, seed=3)
    hwc = fastprep.decode_images(PHOTOS, options=options)
    chw = fastprep.decode_images(PHOTOS, options=options.replace(channels_first=True))
    assert chw.column("pixels").type.shape == [3, 40, 56]
    assert chw.column("pixels").type.dim_names == ["C", "H", "W"]
    assert hwc.column("pixels").type.dim_names == ["H", "W", "C"]
    np.testing.assert_array_equal(pixels(chw), pixels(hwc).transpose(0, 3, 1, 2))


def test_channels_first_needs_a_fixed_size():
    with pytest.raises(ValueError, match="channels_first"):
        DecodeOptions(channels_first=True)


def test_a_failed_record_is_zero_in_every_plane():
    options = DecodeOptions(size=16, channels_first=True)
    batch = fastprep.decode_images([PHOTOS[0], b"not an image"], options=options)
    assert batch.column("error")[1].as_py() is not None
    out = pixels(batch.slice(0, 1))
    assert out.shape == (1, 3, 16, 16) and out.any()
    assert batch.column("pixels").storage.values.to_numpy()[3 * 256 :].max() == 0


@pytest.mark.parametrize("seed", range(4))
def test_stopping_after_the_crop_changes_nothing_on_an_intact_file(seed):
    options = DecodeOptions(size=64, mode="random_resized_crop", seed=seed, scale=(0.05, 0.3))
    full = fastprep.decode_images(PHOTOS, options=options)
    early = fastprep.decode_images(PHOTOS, options=options.replace(read_to_end=False))
    np.testing.assert_array_equal(pixels(early), pixels(full))
    assert full.column("warnings").null_count == len(PHOTOS)


def damaged_at_the_bottom(data: bytes) -> bytes:
    """The last few hundred bytes of scan data replaced by a bogus marker run,
    the end marker kept: libjpeg warns while decoding the last rows."""
    end = data.rindex(b"\xff\xd9")
    cut = end - 300
    return data[:cut] + b"\xff\xd3" * 20 + data[end:]


def test_reading_to_the_end_is_what_sees_damage_below_a_crop():
    data = damaged_at_the_bottom(photo(9, (320, 480)))
    whole = fastprep.decode_images([data], size=None)
    assert whole.column("warnings")[0].as_py(), "a full decode flags the damage"
    # A crop in the top rows: flagged by default, unseen when stopping early.
    top = DecodeOptions(size=32, mode="random_resized_crop", scale=(0.01, 0.02), seed=0)
    hits_default, hits_early = 0, 0
    for seed in range(12):
        options = top.replace(seed=seed)
        default = fastprep.decode_images([data], options=options)
        early = fastprep.decode_images([data], options=options.replace(read_to_end=False))
        hits_default += bool(default.column("warnings")[0].as_py())
        hits_early += bool(early.column("warnings")[0].as_py())
    assert hits_default == 12
    assert hits_early < 12


def rgba_image(mode: str) -> tuple[bytes, Image.Image]:
    rng = np.random.default_rng(5)
    channels = {"RGBA": 4, "LA": 2}[mode]
    arr = rng.integers(0, 256, (10, 14, channels), dtype=np.uint8)
    arr[..., -1] = rng.choice([0, 128, 255], (10, 14))
    image = Image.fromarray(arr, mode)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue(), Image.open(io.BytesIO(out.getvalue()))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_drop_alpha_equals_pils_convert_rgb(mode):
    data, image = rgba_image(mode)
    want = np.asarray(image.convert("RGB"))
    got = fastprep.decode_images([data], drop_alpha=True).column("pixels")[0].as_py()
    got = np.frombuffer(got, np.uint8).reshape(want.shape)
    np.testing.assert_array_equal(got, want)
    blended = fastprep.decode_images([data], background=(0, 0, 0)).column("pixels")[0].as_py()
    assert np.frombuffer(blended, np.uint8).reshape(want.shape).tolist() != want.tolist()


def test_drop_alpha_on_a_transparent_gif_equals_pil():
    palette_image = Image.new("P", (9, 7))
    palette_image.putpalette([i % 256 for i in range(768)])
    palette_image.putdata([(i * 37) % 256 for i in range(63)])
    out = io.BytesIO()
    palette_image.save(out, "GIF", transparency=37)
    want = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    got = fastprep.decode_images([out.getvalue()], drop_alpha=True).column("pixels")[0].as_py()
    np.testing.assert_array_equal(np.frombuffer(got, np.uint8).reshape(want.shape), want)
