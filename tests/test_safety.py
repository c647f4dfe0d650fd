"""Bad input never raises from a batch or crosses as a panic: it becomes a row's ``error``.

Covers the documented reasons (empty, unsupported format, truncated, image too large,
io error, null), the decompression-bomb limit checked from headers, and a seeded fuzz
run over truncations, bit flips and random bytes of valid files of every format.
"""

from __future__ import annotations

import random
import time

import fastprep
import numpy as np
import pyarrow as pa
import pytest
from helpers import (
    crafted_bmp_header,
    crafted_gif_header,
    crafted_png_header,
    encode_pil,
    jpeg_sof_dims,
    patch_jpeg_dims,
    rows,
    smooth_rgb,
    variable_pixels,
)
from PIL import Image


def _error(data, **kwargs) -> str:
    batch = fastprep.decode_images([data], **kwargs)
    assert batch.num_rows == 1
    assert not batch.column("pixels")[0].is_valid, "a failed row must have null pixels"
    error = batch.column("error")[0].as_py()
    assert error, "expected an error"
    return error


def _ok(data, **kwargs):
    batch = fastprep.decode_images([data], **kwargs)
    row = rows(batch)[0]
    assert row["error"] is None, row["error"]
    return batch, row


# ---------------------------------------------------------------------- documented reasons


def test_empty_input():
    assert "empty" in _error(b"")
    assert "empty" in _error(bytearray())
    assert "empty" in _error(b"", size=16)


@pytest.mark.parametrize(
    "data",
    [
        b"hello world, this is plain text and not an image" * 3,
        b"\x00" * 100,
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    ],
)
def test_non_image_bytes(data):
    assert "unsupported format" in _error(data)


def test_other_image_formats_are_unsupported():
    # TIFF, PPM and ICO decode now (test_damaged_inputs.py); these do not.
    img = Image.fromarray(smooth_rgb(16, 16))
    for fmt in ("PCX", "SGI", "XBM"):
        data = encode_pil(img.convert("1") if fmt == "XBM" else img, fmt)
        assert _error(data).startswith("unsupported format: "), fmt


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg(small_photo, fraction, progressive):
    data = encode_pil(small_photo, "JPEG", quality=90, progressive=progressive)
    cut = data[: int(len(data) * fraction)]
    assert "truncated" in _error(cut)
    assert "truncated" in _error(cut, size=64, mode="center_crop")


def test_truncated_other_formats_error(valid_samples):
    for name in ("png", "png_rgba", "webp_lossy", "webp_lossless", "gif", "bmp"):
        data = valid_samples[name]
        assert _error(data[: len(data) // 2]), name


def test_corrupt_png_crc_is_an_error(valid_samples):
    data = bytearray(valid_samples["png"])
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF  # inside the compressed stream: CRC no longer matches
    assert _error(bytes(data))


def test_unreadable_paths(tmp_path, valid_samples):
    good = tmp_path / "good.png"
    good.write_bytes(valid_samples["png"])
    missing = tmp_path / "missing.png"
    batch = fastprep.decode_images([str(missing), str(good), str(tmp_path), str(good)])
    got = rows(batch)
    assert "io error" in got[0]["error"]
    assert got[1]["error"] is None and got[1]["format"] == "png"
    assert "io error" in got[2]["error"]  # a directory
    assert got[3]["error"] is None
    assert batch.column("pixels").is_null().to_pylist() == [True, False, True, False]


def test_empty_file_path(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "empty" in _error(str(path))


def test_null_arrow_entry(valid_samples):
    batch = fastprep.decode_images(pa.array([None, valid_samples["png"]], type=pa.binary()))
    got = rows(batch)
    assert "null" in got[0]["error"]
    assert got[1]["error"] is None


# ------------------------------------------------------------------------------ bombs


def _timed_error(data, **kwargs) -> str:
    start = time.perf_counter()
    error = _error(data, **kwargs)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"bomb rejection took {elapsed:.1f}s: was it decoded?"
    return error


def test_png_bomb_rejected_from_header():
    data = crafted_png_header(100_000, 100_000)
    assert len(data) < 200
    error = _timed_error(data)
    assert "image too large" in error and "100000x100000" in error, error


def test_bomb_dims_are_width_by_height():
    error = _timed_error(crafted_png_header(200_000, 1_000))  # 2e8 pixels > default limit
    assert "image too large" in error and "200000x1000" in error, error


def test_jpeg_bomb_rejected_from_header(valid_samples):
    data = patch_jpeg_dims(valid_samples["jpeg"], 60_000, 60_000)
    assert jpeg_sof_dims(data) == (60_000, 60_000)
    error = _timed_error(data)
    assert "image too large" in error and "60000x60000" in error, error


def test_progressive_jpeg_bomb_rejected_from_header(valid_samples):
    data = patch_jpeg_dims(valid_samples["jpeg_progressive"], 50_000, 40_000)
    error = _timed_error(data)
    assert "image too large" in error and "50000x40000" in error, error


def test_gif_and_bmp_bombs_rejected_from_header():
    error = _timed_error(crafted_gif_header(65_535, 65_535))
    assert "image too large" in error and "65535x65535" in error, error
    error = _timed_error(crafted_bmp_header(30_000, 30_000))
    assert "image too large" in error and "30000x30000" in error, error


def test_bomb_rejected_in_mixed_batch(valid_samples):
    data = [valid_samples["png"], crafted_png_header(100_000, 100_000), valid_samples["jpeg"]]
    got = rows(fastprep.decode_images(data, size=16))
    assert got[0]["error"] is None and got[2]["error"] is None
    assert "image too large" in got[1]["error"]


def test_default_limit_is_pillows():
    assert fastprep.images.DEFAULT_MAX_PIXELS == 178_956_970
    # 17896 x 10000 = 178,960,000: just over Pillow's limit.
    error = _timed_error(crafted_png_header(17_896, 10_000))
    assert "image too large" in error and "17896x10000" in error, error
    error = _timed_error(crafted_png_header(17_896, 10_000), max_pixels=178_960_000 - 1)
    assert "image too large" in error


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_max_pixels_option(fmt):
    def make(side):
        return encode_pil(Image.fromarray(smooth_rgb(side, side, seed=side)), fmt)

    error = _error(make(20), max_pixels=100)
    assert "image too large" in error and "20x20" in error, error
    _, row = _ok(make(10), max_pixels=100)  # exactly at the limit
    assert (row["height"], row["width"]) == (10, 10)
    _, row = _ok(make(20))  # default limit
    assert (row["height"], row["width"]) == (20, 20)


def test_max_pixels_counts_the_stored_image_not_the_output():
    data = encode_pil(Image.fromarray(smooth_rgb(20, 20)), "PNG")
    error = _error(data, max_pixels=100, size=5)
    assert "image too large" in error


# ------------------------------------------------------------------- no state after errors


def _bad_dqt_jpeg(good: bytes) -> bytes:
    """``good`` with its first quantisation table numbered 4 (valid ids are 0..3)."""
    bad = bytearray(good)
    dqt = bad.index(b"\xff\xdb")
    bad[dqt + 4] = 0x04  # Pq=0, Tq=4
    return bytes(bad)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_bad_jpeg_does_not_poison_later_decodes(valid_samples, num_threads):
    """A decoder reused across records (e.g. one per thread) must be reset after an error."""
    good = valid_samples["jpeg"]
    batch = fastprep.decode_images([_bad_dqt_jpeg(good), good, good], num_threads=num_threads)
    errors = batch.column("error").to_pylist()
    assert errors[0] is not None
    assert errors[1:] == [None, None], f"valid JPEGs failed after a corrupt one: {errors}"
    later = fastprep.decode_images([good] * 4, num_threads=num_threads)
    assert later.column("error").to_pylist() == [None] * 4


def test_fuzzed_inputs_do_not_poison_later_decodes(valid_samples):
    names = list(valid_samples)
    valid = list(valid_samples.values())
    for i, mutant in enumerate(_mutants(valid_samples, 60, seed=4321)):
        fastprep.decode_images([mutant], num_threads=1, max_pixels=4_000_000)
        errors = fastprep.decode_images(valid, num_threads=1).column("error").to_pylist()
        broken = {name: e for name, e in zip(names, errors) if e is not None}
        assert not broken, f"after mutant {i} ({mutant[:4]!r}...) valid files fail: {broken}"


# ------------------------------------------------------------------------------ fuzz


def _mutants(valid_samples, count: int, seed: int):
    rng = random.Random(seed)
    samples = list(valid_samples.values())
    out = []
    for i in range(count):
        base = bytearray(rng.choice(samples))
        kind = i % 6
        if kind == 0:  # truncation anywhere
            base = base[: rng.randrange(0, len(base))]
        elif kind == 1:  # a few bit flips
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(len(base))
                base[pos] ^= 1 << rng.randrange(8)
        elif kind == 2:  # many bit flips after the magic bytes
            for _ in range(rng.randint(10, 200)):
                pos = rng.randrange(8, len(base))
                base[pos] ^= 1 << rng.randrange(8)
        elif kind == 3:  # a random run overwritten
            start = rng.randrange(len(base))
            length = rng.randint(1, 64)
            base[start : start + length] = bytes(rng.randrange(256) for _ in range(length))
        elif kind == 4:  # truncation plus flips
            base = base[: rng.randrange(len(base) // 2, len(base))]
            for _ in range(rng.randint(1, 16)):
                pos = rng.randrange(len(base))
                base[pos] = rng.randrange(256)
        else:  # random bytes behind a valid magic prefix, or no prefix at all
            prefix = bytes(base[: rng.choice([0, 2, 4, 8, 12, 16])])
            base = bytearray(prefix + bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))))
        out.append(bytes(base))
    return out


def _assert_every_row_accounted(batch, n):
    assert batch.num_rows == n
    pixels_null = batch.column("pixels").is_null().to_pylist()
    errors = batch.column("error").to_pylist()
    for i, (null, error) in enumerate(zip(pixels_null, errors)):
        assert null == (error is not None), f"row {i}: pixels null={null}, error={error!r}"
        if error is not None:
            assert isinstance(error, str) and error


def test_fuzz_variable_size(valid_samples):
    data = _mutants(valid_samples, 300, seed=1234)
    batch = fastprep.decode_images(data, max_pixels=4_000_000, num_threads=2)
    _assert_every_row_accounted(batch, len(data))
    heights = batch.column("height").to_pylist()
    widths = batch.column("width").to_pylist()
    for i, px in enumerate(batch.column("pixels").to_pylist()):
        if px is not None:
            assert len(px) == heights[i] * widths[i] * 3, i
    # At least some mutants (e.g. flips in the pixel data of BMP/JPEG) still decode,
    # and many fail: the run exercised both paths.
    ok = sum(p is not None for p in batch.column("pixels").to_pylist())
    assert 0 < ok < len(data)


@pytest.mark.parametrize(
    "mode,seed", [("center_crop", 7), ("letterbox", 8), ("random_resized_crop", 9)]
)
def test_fuzz_fixed_size(valid_samples, mode, seed):
    data = _mutants(valid_samples, 150, seed=seed)
    batch = fastprep.decode_images(
        data, size=(16, 12), mode=mode, max_pixels=4_000_000, num_threads=2
    )
    _assert_every_row_accounted(batch, len(data))
    view = fastprep.pixels_to_numpy(batch)
    assert view.shape == (len(data), 16, 12, 3)


def test_fuzz_each_record_alone_matches_batch(valid_samples):
    """Decoding mutants one by one gives the same outcome as in a batch (no cross-talk)."""
    data = _mutants(valid_samples, 60, seed=99)
    batch = fastprep.decode_images(data, size=8, max_pixels=4_000_000)
    for i, item in enumerate(data):
        single = fastprep.decode_images([item], size=8, max_pixels=4_000_000)
        assert (single.column("error")[0].as_py() is None) == (
            batch.column("error")[i].as_py() is None
        ), i
        if single.column("error")[0].as_py() is None:
            np.testing.assert_array_equal(
                fastprep.pixels_to_numpy(single)[0], fastprep.pixels_to_numpy(batch)[i]
            )


def test_pure_random_bytes():
    rng = np.random.default_rng(5)
    data = [
        rng.integers(0, 256, size=int(n), dtype=np.uint8).tobytes()
        for n in rng.integers(1, 2000, 100)
    ]
    batch = fastprep.decode_images(data)
    _assert_every_row_accounted(batch, len(data))
    for error in batch.column("error").to_pylist():
        assert error is not None


def test_decode_image_on_mutants_raises_only_decode_error(valid_samples):
    for item in _mutants(valid_samples, 40, seed=4321):
        try:
            out = fastprep.decode_image(item, max_pixels=4_000_000)
        except fastprep.DecodeError as exc:
            assert str(exc)
        else:
            assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


def test_valid_samples_all_decode(valid_samples):
    names = list(valid_samples)
    batch = fastprep.decode_images(list(valid_samples.values()))
    for name, row in zip(names, rows(batch)):
        assert row["error"] is None, (name, row["error"])
        assert (row["height"], row["width"]) == (32, 48), name
    assert variable_pixels(batch, 0).shape == (32, 48, 3)
