"""The batch API: accepted inputs, output schema, zero-copy views, threads, fork, memory."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pathlib
import resource

import fastprep
import numpy as np
import pyarrow as pa
import pytest
from helpers import encode_pil, noise, rows, smooth_rgb, variable_pixels
from PIL import Image

SIZE = (24, 32)


@pytest.fixture(scope="module")
def images():
    """Five small images of different formats and sizes."""
    out = []
    for i, (fmt, params) in enumerate(
        [
            ("PNG", {}),
            ("JPEG", {"quality": 90}),
            ("WEBP", {"lossless": True}),
            ("GIF", {}),
            ("BMP", {}),
        ]
    ):
        img = Image.fromarray(smooth_rgb(20 + 3 * i, 30 + 5 * i, seed=i))
        out.append(encode_pil(img, fmt, **params))
    return out


@pytest.fixture(scope="module")
def reference(images):
    """The fixed-size pixels for ``images``, from the plain list-of-bytes input."""
    batch = fastprep.decode_images(images, size=SIZE, mode="resize")
    assert batch.column("error").null_count == len(images)
    return fastprep.pixels_to_numpy(batch).copy(), rows(batch)


def _check_same(batch, reference):
    pixels, ref_rows = reference
    np.testing.assert_array_equal(fastprep.pixels_to_numpy(batch), pixels)
    assert rows(batch) == ref_rows


# ------------------------------------------------------------------------------ schema


def test_fixed_size_schema(images):
    batch = fastprep.decode_images(images, size=SIZE)
    assert isinstance(batch, pa.RecordBatch)
    assert batch.num_rows == len(images)
    schema = batch.schema
    assert set(schema.names) == {
        "pixels",
        "height",
        "width",
        "source_height",
        "source_width",
        "format",
        "orientation",
        "error",
        "error_kind",
        "warnings",
    }
    assert schema.field("warnings").type == pa.list_(pa.string())
    assert batch.column("warnings").null_count == batch.num_rows, "clean images: no warnings"
    pixels_type = schema.field("pixels").type
    assert isinstance(pixels_type, pa.FixedShapeTensorType)
    assert pixels_type.value_type == pa.uint8()
    assert list(pixels_type.shape) == [SIZE[0], SIZE[1], 3]
    for name in ("height", "width", "source_height", "source_width"):
        assert schema.field(name).type == pa.int32(), name
    assert schema.field("orientation").type == pa.uint8()
    assert schema.field("format").type in (pa.string(), pa.large_string())
    assert schema.field("error").type in (pa.string(), pa.large_string())
    assert schema.names.index("error_kind") == schema.names.index("error") + 1
    assert schema.field("error_kind").type == pa.string()
    assert batch.column("error_kind").null_count == len(images)
    assert batch.column("format").to_pylist() == ["png", "jpeg", "webp", "gif", "bmp"]
    assert batch.column("height").to_pylist() == [SIZE[0]] * 5
    assert batch.column("width").to_pylist() == [SIZE[1]] * 5
    assert batch.column("source_height").to_pylist() == [20, 23, 26, 29, 32]
    assert batch.column("source_width").to_pylist() == [30, 35, 40, 45, 50]
    assert batch.column("orientation").to_pylist() == [1] * 5
    view = fastprep.pixels_to_numpy(batch)
    assert view.shape == (5, SIZE[0], SIZE[1], 3) and view.dtype == np.uint8


def test_variable_size_schema_and_row_order(images):
    batch = fastprep.decode_images(images, size=None)
    assert batch.schema.field("pixels").type == pa.large_binary()
    assert batch.column("height").to_pylist() == [20, 23, 26, 29, 32]
    assert batch.column("width").to_pylist() == [30, 35, 40, 45, 50]
    for i in range(len(images)):
        h, w = 20 + 3 * i, 30 + 5 * i
        assert len(batch.column("pixels")[i].as_py()) == h * w * 3
        np.testing.assert_array_equal(variable_pixels(batch, i), fastprep.decode_image(images[i]))
    with pytest.raises(TypeError):
        fastprep.pixels_to_numpy(batch)


def test_many_rows_keep_input_order():
    data = [
        encode_pil(Image.new("RGB", (1 + i % 17, 1 + i // 17), (i, 255 - i, 7)), "PNG")
        for i in range(120)
    ]
    batch = fastprep.decode_images(data, num_threads=2)
    assert batch.column("width").to_pylist() == [1 + i % 17 for i in range(120)]
    assert batch.column("height").to_pylist() == [1 + i // 17 for i in range(120)]
    for i in (0, 1, 50, 119):
        assert tuple(variable_pixels(batch, i)[0, 0]) == (i, 255 - i, 7)


def test_empty_input_list():
    batch = fastprep.decode_images([], size=SIZE)
    assert batch.num_rows == 0


def test_bad_rows_do_not_break_the_batch(images):
    data = [images[0], b"", b"not an image at all", images[1]]
    batch = fastprep.decode_images(data, size=SIZE)
    got = rows(batch)
    assert [r["error"] is None for r in got] == [True, False, False, True]
    assert batch.column("pixels").is_null().to_pylist() == [False, True, True, False]
    assert (
        batch.column("format").to_pylist()[0] == "png"
        and batch.column("format").to_pylist()[3] == "jpeg"
    )
    view = fastprep.pixels_to_numpy(batch)
    assert view.shape[0] == 4
    assert view[1].max() == 0 and view[2].max() == 0  # failed rows hold zeros


def test_decode_image_raises_decode_error():
    assert issubclass(fastprep.DecodeError, ValueError)
    with pytest.raises(fastprep.DecodeError, match="unsupported format"):
        fastprep.decode_image(b"definitely not an image")
    with pytest.raises(fastprep.DecodeError, match="empty"):
        fastprep.decode_image(b"")


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        ({"mode": "stretch"}, ValueError),
        ({"filter": "cubic"}, ValueError),
        ({"size": 0}, ValueError),
        ({"size": (10, -1)}, ValueError),
        ({"num_threads": 0}, ValueError),
        ({"background": (0, 0, 256)}, ValueError),
    ],
)
def test_invalid_options_raise(images, kwargs, exc):
    with pytest.raises(exc):
        fastprep.decode_images(images[:1], **kwargs)


def test_invalid_inputs_raise(images):
    with pytest.raises(TypeError):
        fastprep.decode_images(images[0])  # one bytes object, not a list
    with pytest.raises(TypeError):
        fastprep.decode_images([images[0], "some/path.png"])
    with pytest.raises(TypeError):
        fastprep.decode_images([images[0], 42])
    with pytest.raises(TypeError):
        fastprep.decode_images(pa.array(["a", "b"]))


# ------------------------------------------------------------------------------ inputs


def test_input_bytearray_and_memoryview(images, reference):
    _check_same(
        fastprep.decode_images([bytearray(d) for d in images], size=SIZE, mode="resize"), reference
    )
    _check_same(
        fastprep.decode_images([memoryview(d) for d in images], size=SIZE, mode="resize"), reference
    )
    # A memoryview slice into a larger buffer.
    big = b"xxxx" + images[0] + b"yyyy"
    sliced = memoryview(big)[4 : 4 + len(images[0])]
    batch = fastprep.decode_images([sliced], size=SIZE, mode="resize")
    np.testing.assert_array_equal(fastprep.pixels_to_numpy(batch)[0], reference[0][0])


def test_input_paths(images, reference, tmp_path):
    paths = []
    for i, data in enumerate(images):
        path = tmp_path / f"img{i}.bin"
        path.write_bytes(data)
        paths.append(path)
    _check_same(
        fastprep.decode_images([str(p) for p in paths], size=SIZE, mode="resize"), reference
    )
    _check_same(fastprep.decode_images(paths, size=SIZE, mode="resize"), reference)
    # Any iterable works, e.g. a generator of pathlib.Path objects.
    generator = (pathlib.Path(p) for p in paths)
    _check_same(fastprep.decode_images(generator, size=SIZE, mode="resize"), reference)


@pytest.mark.parametrize("arrow_type", [pa.binary(), pa.large_binary()])
def test_input_arrow_arrays(images, reference, arrow_type):
    arr = pa.array(images, type=arrow_type)
    _check_same(fastprep.decode_images(arr, size=SIZE, mode="resize"), reference)
    chunked = pa.chunked_array([arr[:2], arr[2:3], arr[3:]], type=arrow_type)
    assert chunked.num_chunks == 3
    _check_same(fastprep.decode_images(chunked, size=SIZE, mode="resize"), reference)


@pytest.mark.parametrize("arrow_type", [pa.binary(), pa.large_binary()])
def test_input_sliced_arrow_arrays(images, reference, arrow_type):
    arr = pa.array([b"junk", *images, b"junk"], type=arrow_type)
    pixels, _ref_rows = reference
    sliced = arr.slice(1, len(images))
    assert sliced.offset == 1
    _check_same(fastprep.decode_images(sliced, size=SIZE, mode="resize"), reference)
    middle = arr.slice(3, 2)  # images[2], images[3]
    batch = fastprep.decode_images(middle, size=SIZE, mode="resize")
    np.testing.assert_array_equal(fastprep.pixels_to_numpy(batch), pixels[2:4])
    chunked = pa.chunked_array([arr.slice(1, 2), arr.slice(3, 3)], type=arrow_type)
    _check_same(fastprep.decode_images(chunked, size=SIZE, mode="resize"), reference)


@pytest.mark.parametrize("arrow_type", [pa.binary(), pa.large_binary()])
def test_input_arrow_nulls(images, reference, arrow_type):
    pixels, ref_rows = reference
    arr = pa.array([images[0], None, images[1], None], type=arrow_type)
    batch = fastprep.decode_images(arr, size=SIZE, mode="resize")
    got = rows(batch)
    assert got[0] == ref_rows[0] and got[2] == ref_rows[1]
    for i in (1, 3):
        assert got[i]["error"] is not None and "null" in got[i]["error"], got[i]
        assert not batch.column("pixels")[i].is_valid
    view = fastprep.pixels_to_numpy(batch)
    np.testing.assert_array_equal(view[0], pixels[0])
    np.testing.assert_array_equal(view[2], pixels[1])
    # Nulls in a sliced chunk of a chunked array.
    chunked = pa.chunked_array([arr.slice(1, 2), arr.slice(0, 1)], type=arrow_type)
    got = rows(fastprep.decode_images(chunked, size=SIZE, mode="resize"))
    assert "null" in got[0]["error"] and got[1] == ref_rows[1] and got[2] == ref_rows[0]


# ------------------------------------------------------------------------------ zero-copy


def _data_pointer(view: np.ndarray) -> int:
    return view.__array_interface__["data"][0]


def _values_address(batch) -> int:
    column = batch.column("pixels")
    storage = column.storage
    values = storage.values
    per_row = int(np.prod(column.type.shape))
    return values.buffers()[1].address + values.offset + storage.offset * per_row


def test_pixels_to_numpy_is_zero_copy(images):
    batch = fastprep.decode_images(images * 3, size=SIZE)
    a = fastprep.pixels_to_numpy(batch)
    b = fastprep.pixels_to_numpy(batch)
    assert a.shape == (15, SIZE[0], SIZE[1], 3)
    assert np.shares_memory(a, b)
    assert _data_pointer(a) == _values_address(batch)
    assert a.flags["C_CONTIGUOUS"]


def test_pixels_are_not_allocated_from_the_pyarrow_pool(small_photo_png):
    count, size = 16, (256, 256)
    pixel_bytes = count * size[0] * size[1] * 3
    fastprep.decode_images([small_photo_png], size=size)  # warm up
    gc.collect()
    before = pa.total_allocated_bytes()
    batch = fastprep.decode_images([small_photo_png] * count, size=size)
    grown = pa.total_allocated_bytes() - before
    assert batch.column("error").null_count == count
    assert grown < pixel_bytes // 4, (
        f"pyarrow pool grew by {grown} bytes for {pixel_bytes} pixel bytes"
    )


def test_torch_from_numpy_shares_the_buffer(images):
    torch = pytest.importorskip(
        "torch", reason="torch is not installed; zero-copy into torch untested"
    )
    batch = fastprep.decode_images(images, size=SIZE)
    view = fastprep.pixels_to_numpy(batch)
    tensor = torch.from_numpy(view)
    assert tensor.data_ptr() == _values_address(batch)
    assert tuple(tensor.shape) == (len(images), SIZE[0], SIZE[1], 3)
    assert tensor.dtype == torch.uint8


# ------------------------------------------------------------------------------ threads


def test_results_do_not_depend_on_thread_count(images, small_photo_jpeg, landscape_bytes):
    data = ([*images, b"", b"garbage", small_photo_jpeg, landscape_bytes]) * 3
    for kwargs in (
        {"size": SIZE, "mode": "center_crop"},
        {"size": SIZE, "mode": "random_resized_crop", "seed": 9},
        {"size": (40, 30), "mode": "letterbox", "filter": "lanczos"},
        {"size": None},
    ):
        one = fastprep.decode_images(data, num_threads=1, **kwargs)
        two = fastprep.decode_images(data, num_threads=2, **kwargs)
        default = fastprep.decode_images(data, **kwargs)
        assert one.num_rows == len(data)
        assert one.equals(two), f"num_threads changed the result for {kwargs}"
        assert one.equals(default), f"default threads changed the result for {kwargs}"
        for name in one.schema.names:
            assert one.column(name).equals(two.column(name)), name


def test_env_thread_count_does_not_change_results(images, monkeypatch):
    base = fastprep.decode_images(images * 2, size=SIZE, mode="random_resized_crop", seed=3)
    monkeypatch.setenv("FASTPREP_NUM_THREADS", "1")
    again = fastprep.decode_images(images * 2, size=SIZE, mode="random_resized_crop", seed=3)
    assert base.equals(again)


# ------------------------------------------------------------------------------ fork


def _decode_in_child(data, expected_bytes):
    batch = fastprep.decode_images(data, size=SIZE, mode="resize", num_threads=2)
    assert batch.column("error").null_count == len(data)
    assert fastprep.pixels_to_numpy(batch).tobytes() == expected_bytes


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_decode_after_fork(images, reference):
    # The parent has decoded with several threads already (the reference fixture and
    # this call), so any thread pool exists before the fork.
    parent = fastprep.decode_images(images * 4, size=SIZE, mode="resize", num_threads=2)
    expected = fastprep.pixels_to_numpy(parent).tobytes()
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_decode_in_child, args=(images * 4, expected))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("decode_images hung in a forked child")
    assert child.exitcode == 0
    # And the parent still works after the fork.
    again = fastprep.decode_images(images * 4, size=SIZE, mode="resize", num_threads=2)
    assert fastprep.pixels_to_numpy(again).tobytes() == expected


# ------------------------------------------------------------------------------ memory


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak RSS is the best we have (kB on Linux, bytes on macOS)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _leak_loop(data, iterations, **kwargs):
    for _ in range(iterations):
        batch = fastprep.decode_images([data], **kwargs)
        if kwargs.get("size") is not None:
            fastprep.pixels_to_numpy(batch).sum()
        else:
            batch.column("pixels")[0].as_buffer()
        del batch


def test_no_leak_over_many_small_calls(tiny_png):
    _leak_loop(tiny_png, 500, size=8)
    gc.collect()
    before = _rss_bytes()
    _leak_loop(tiny_png, 10_000, size=8)
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 4 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 10,000 calls"


def test_no_leak_of_pixel_buffers():
    """Bigger rows, so that a leaked pixel buffer per call would show (~49 MiB)."""
    data = encode_pil(Image.fromarray(noise((128, 128, 3), 1)), "PNG")
    _leak_loop(data, 100, size=None)
    _leak_loop(data, 100, size=(128, 128))
    gc.collect()
    before = _rss_bytes()
    _leak_loop(data, 1_000, size=None)
    _leak_loop(data, 1_000, size=(128, 128))
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 8 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 2,000 calls"
