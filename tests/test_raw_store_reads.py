"""Raw-pixel stores (PPM records of 8-bit RGB) are read in place: the
loader does not copy the records out of the table, and the decoder resamples
straight from the stored bytes. Both must give what decoding copies gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from fastprep import decode_images  # noqa: E402
from fastprep.torch import DataLoader, train  # noqa: E402
from fastprep.torch.data import open_map_source  # noqa: E402


def ppm(pixels: np.ndarray) -> bytes:
    height, width, _ = pixels.shape
    return f"P6\n{width} {height}\n255\n".encode() + pixels.tobytes()


@pytest.fixture(scope="module")
def table() -> pa.Table:
    """12 records of 170x160 RGB (82 KB each: over the in-place threshold)."""
    rng = np.random.default_rng(3)
    images = [ppm(rng.integers(0, 256, (160, 170, 3), dtype=np.uint8)) for _ in range(12)]
    return pa.table(
        {
            "key": [f"k{i:02d}" for i in range(12)],
            "ppm": pa.array(images, pa.binary()),
            "target": pa.array(range(12), pa.int64()),
        }
    )


def test_large_records_are_taken_as_slices_of_the_table(table):
    source = open_map_source(table)
    assert source._large_images()
    rows = source.take(np.array([7, 2, 2, 11]))
    assert rows.column_names == table.column_names
    assert rows.column("key").to_pylist() == ["k07", "k02", "k02", "k11"]
    assert rows.column("ppm").to_pylist() == [table.column("ppm")[i].as_py() for i in (7, 2, 2, 11)]
    # The same memory as the table's, not a copy.
    stored = table.column("ppm").chunk(0).buffers()[2]
    taken = rows.column("ppm").chunk(0).buffers()[2]
    assert taken.address == stored.address


def test_loader_crops_of_a_raw_store_equal_decode_images_on_its_bytes(table):
    from fastprep.torch.sampling import batch_seed

    loader = DataLoader(table, batch_size=5, shuffle=True, transform=train(32), seed=6)
    batches = list(loader)
    assert sum(len(b["key"]) for b in batches) == 12
    for number, batch in enumerate(batches):
        indices = batch["index"].numpy()
        assert batch["key"] == [f"k{i:02d}" for i in indices]
        assert batch["target"].tolist() == indices.tolist()
        # Decoded from copies of the same bytes, with the loader's options.
        copies = [table.column("ppm")[int(i)].as_py() for i in indices]
        options = loader.recipe.decode_options(batch_seed(6, 0, 0, number))
        expected = decode_images(copies, options=options, num_threads=1).column("pixels")
        want = np.stack([np.asarray(v, np.uint8).reshape(32, 32, 3) for v in expected.to_pylist()])
        got = batch["image"].permute(0, 2, 3, 1).numpy()
        assert np.array_equal(got, want), f"batch {number}"


def test_raw_ppm_pixels_read_in_place_match_the_png_decode():
    import io

    from PIL import Image

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (61, 47, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    options = train(24).decode_options(11)
    a = decode_images([ppm(pixels)] * 8, options=options, num_threads=1)
    b = decode_images([png.getvalue()] * 8, options=options, num_threads=1)
    assert a.column("pixels").to_pylist() == b.column("pixels").to_pylist()
