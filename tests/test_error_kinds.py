"""The ``error_kind`` column: one stable category per failed record, beside the
human ``error`` text, identical for every input form (bytes, paths, Arrow)."""

from __future__ import annotations

import fastprep
import pyarrow as pa
import pytest
from helpers import crafted_png_header, encode_pil, rows


@pytest.fixture
def bad_inputs(small_photo) -> dict[str, bytes]:
    jpeg = encode_pil(small_photo, "JPEG", quality=90)
    return {
        "truncated": jpeg[: len(jpeg) // 2],
        "unsupported_format": b"definitely not an image, just some bytes",
        "empty": b"",
        "too_large": crafted_png_header(200_000, 1_000),
        "ok": jpeg,
    }


def _kinds(batch: pa.RecordBatch) -> list:
    return batch.column("error_kind").to_pylist()


def test_kinds_of_bad_bytes(bad_inputs):
    batch = fastprep.decode_images(list(bad_inputs.values()), size=16)
    expected = [k if k != "ok" else None for k in bad_inputs]
    assert _kinds(batch) == expected
    # The text is unchanged and set exactly where the kind is.
    errors = batch.column("error").to_pylist()
    assert [e is None for e in errors] == [k is None for k in expected]
    assert "truncated" in errors[0] and "unsupported format" in errors[1]
    assert "empty" in errors[2] and "image too large" in errors[3]
    assert set(filter(None, _kinds(batch))) <= set(fastprep.ERROR_KINDS)


def test_every_input_form_and_layout_agrees(bad_inputs, tmp_path):
    data = list(bad_inputs.values())
    paths = []
    for i, blob in enumerate(data):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(blob)
        paths.append(str(path))
    want = _kinds(fastprep.decode_images(data, size=16))
    assert _kinds(fastprep.decode_images(data)) == want  # variable-size layout
    assert _kinds(fastprep.decode_images(paths, size=16)) == want
    assert _kinds(fastprep.decode_images(pa.array(data, pa.binary()))) == want
    assert _kinds(fastprep.hash_images(data)) == want


def test_missing_path_is_io(tmp_path, bad_inputs):
    good = tmp_path / "good.jpg"
    good.write_bytes(bad_inputs["ok"])
    batch = fastprep.decode_images([str(tmp_path / "missing.jpg"), str(good), str(tmp_path)])
    got = rows(batch)
    assert [r["error_kind"] for r in got] == ["io", None, "io"]
    assert "io error" in got[0]["error"]


def test_null_entry_is_empty(bad_inputs):
    batch = fastprep.decode_images(pa.array([None, bad_inputs["ok"]], pa.binary()))
    assert _kinds(batch) == ["empty", None]
    assert batch.column("error").to_pylist()[0] == "null input"


def test_corrupt_data_in_a_known_format(small_photo):
    png = bytearray(encode_pil(small_photo, "PNG"))
    idat = png.index(b"IDAT")
    png[idat + 10] ^= 0xFF  # breaks the compressed stream and its CRC
    assert _kinds(fastprep.decode_images([bytes(png)])) == ["corrupt"]


def test_decode_image_error_carries_the_kind(bad_inputs):
    with pytest.raises(fastprep.DecodeError, match="truncated") as info:
        fastprep.decode_image(bad_inputs["truncated"])
    assert info.value.kind == "truncated"
    assert fastprep.images.DecodeError is fastprep.errors.DecodeError is fastprep.DecodeError
