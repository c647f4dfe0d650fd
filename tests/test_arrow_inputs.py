"""Any Arrow producer is an image input, and its buffers are not copied:
pyarrow, polars, duckdb, arro3, nanoarrow, objects exposing only the
PyCapsule interface, binary_view columns, tables with ``column=``, readers,
Hugging Face ``Image`` columns and ``datasets`` objects."""

from __future__ import annotations

import arro3.core as a3
import datasets
import duckdb
import fastprep
import nanoarrow as na
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastprep import _core


@pytest.fixture(scope="module")
def blobs() -> list[bytes]:
    return [open(p, "rb").read() for p in fastprep.sample_images()[:3]]


@pytest.fixture(scope="module")
def expected(blobs) -> np.ndarray:
    return fastprep.pixels_to_numpy(fastprep.decode_images(blobs, size=16))


@pytest.fixture
def handed(monkeypatch):
    """The arrays fastprep hands the Rust core (through the C data interface)."""
    seen: list = []
    original = _core.decode_arrow

    def spy(array, *args, **options):
        seen.append(array)
        return original(array, *args, **options)

    monkeypatch.setattr(_core, "decode_arrow", spy)
    return seen


def _addresses(array) -> list[int]:
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    return [b.address for c in chunks for b in c.buffers() if b is not None]


class StreamOnly:
    """A producer exposing nothing but ``__arrow_c_stream__``."""

    def __init__(self, data):
        self.data = data

    def __arrow_c_stream__(self, requested_schema=None):
        return self.data.__arrow_c_stream__(requested_schema)


class ArrayOnly:
    """A producer exposing nothing but ``__arrow_c_array__``."""

    def __init__(self, data):
        self.data = data

    def __arrow_c_array__(self, requested_schema=None):
        return self.data.__arrow_c_array__(requested_schema)


def _decoded(images, **options) -> np.ndarray:
    return fastprep.pixels_to_numpy(fastprep.decode_images(images, size=16, **options))


def test_arro3_arrays_and_tables_are_decoded_in_place(blobs, expected, handed):
    source = pa.array(blobs, pa.binary())
    array = a3.Array.from_arrow(source)
    assert np.array_equal(_decoded(array), expected)
    assert _addresses(handed[-1]) == _addresses(source), "arro3 array copied"
    table = a3.Table.from_arrow(pa.table({"key": ["a", "b", "c"], "jpg": source}))
    assert np.array_equal(_decoded(table, column="jpg"), expected)
    assert set(_addresses(source)) <= set(_addresses(handed[-1])), "arro3 table column copied"


def test_polars_binary_is_decoded_in_place(blobs, expected, handed):
    view = pa.array(blobs, pa.binary_view())
    series = pl.from_arrow(view)
    assert isinstance(series, pl.Series) and series.dtype == pl.Binary
    assert np.array_equal(_decoded(series), expected)
    # polars hands over its own binary_view buffers, and they reach Rust as they are.
    exported = pa.chunked_array(series)
    assert pa.types.is_binary_view(handed[-1].type)
    assert _addresses(handed[-1]) == _addresses(exported), "polars series copied"
    data_buffers = [b.address for b in view.buffers()[2:]]
    assert set(data_buffers) <= set(_addresses(handed[-1])), "polars copied the bytes"
    frame = pl.DataFrame({"caption": ["a", "b", "c"], "image": series})
    assert np.array_equal(_decoded(frame), expected)  # the only binary column
    assert set(data_buffers) <= set(_addresses(handed[-1]))


def test_nanoarrow_and_capsule_only_producers_are_decoded_in_place(blobs, expected, handed):
    source = pa.array(blobs, pa.large_binary())
    assert np.array_equal(_decoded(na.Array(source)), expected)
    assert _addresses(handed[-1]) == _addresses(source), "nanoarrow array copied"
    for producer in (StreamOnly(pa.chunked_array([source])), ArrayOnly(source)):
        assert np.array_equal(_decoded(producer), expected)
        assert _addresses(handed[-1]) == _addresses(source)
    stream = na.ArrayStream(pa.table({"img": source}))
    assert np.array_equal(_decoded(stream), expected)


def test_duckdb_relations_are_accepted(blobs, expected, handed):
    table = pa.table({"key": ["a", "b", "c"], "jpg": pa.array(blobs, pa.binary())})
    relation = duckdb.from_arrow(table).filter("key <> 'zz'")
    assert np.array_equal(_decoded(relation, column="jpg"), expected)
    # What duckdb exports is handed to Rust as exported: wrap its stream, compare.
    exported = pa.table(relation)
    _decoded(StreamOnly(exported), column="jpg")
    assert _addresses(handed[-1]) == _addresses(exported.column("jpg"))


def test_tables_readers_and_view_types(blobs, expected):
    array = pa.array(blobs, pa.binary())
    for images in (
        array.cast(pa.binary_view()),
        array.cast(pa.large_binary()),
        pa.chunked_array([array.slice(0, 1), array.slice(1)]),
        pa.table({"jpg": array, "png": array}),
        pa.RecordBatch.from_pydict({"jpg": array, "caption": ["a", "b", "c"]}),
        pa.RecordBatchReader.from_batches(
            pa.schema([("jpg", pa.binary())]), [pa.record_batch([array], names=["jpg"])]
        ),
    ):
        column = "png" if isinstance(images, pa.Table) else None
        assert np.array_equal(_decoded(images, column=column), expected)
    with pytest.raises(TypeError, match="column="):
        fastprep.decode_images(pa.table({"a": array, "b": array}), size=16)
    with pytest.raises(KeyError):
        fastprep.decode_images(pa.table({"a": array}), size=16, column="nope")
    with pytest.raises(TypeError, match="binary"):
        fastprep.decode_images(pa.array([1, 2]), size=16)


def test_hugging_face_images_and_datasets(blobs, expected, tmp_path):
    paths = fastprep.sample_images()[:3]
    struct = pa.StructArray.from_arrays(
        [pa.array(blobs, pa.binary()), pa.array([None] * 3, pa.string())], names=["bytes", "path"]
    )
    assert np.array_equal(_decoded(struct), expected)
    only_paths = pa.StructArray.from_arrays(
        [pa.array([blobs[0], None, None], pa.binary()), pa.array([None, *paths[1:]])],
        names=["bytes", "path"],
    )
    assert np.array_equal(_decoded(only_paths), expected)
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    dataset = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in blobs], "text": ["a", "b", "c"]},
        features=features,
    )
    assert np.array_equal(_decoded(dataset), expected)
    assert np.array_equal(_decoded(dataset.to_iterable_dataset()), expected)
    shuffled = dataset.select([2, 0, 1])  # an index mapping over the same table
    assert np.array_equal(_decoded(shuffled), expected[[2, 0, 1]])
    # An HF-exported Parquet file: the Image struct column decodes as it is read.
    dataset.to_parquet(str(tmp_path / "hf.parquet"))
    table = pq.read_table(tmp_path / "hf.parquet")
    assert np.array_equal(_decoded(table.column("image")), expected)


def test_pixels_to_numpy_on_arrays_chunked_arrays_and_shard_tables(blobs, expected, tmp_path):
    batch = fastprep.decode_images(blobs, size=16)
    pixels = batch.column("pixels")
    assert np.array_equal(fastprep.pixels_to_numpy(pixels), expected)
    assert (
        fastprep.pixels_to_numpy(pixels).ctypes.data == fastprep.pixels_to_numpy(batch).ctypes.data
    )
    pq.write_table(pa.Table.from_batches([batch]), tmp_path / "shard.parquet")
    table = pq.read_table(tmp_path / "shard.parquet")
    assert np.array_equal(fastprep.pixels_to_numpy(table), expected)
    assert np.array_equal(fastprep.pixels_to_numpy(table.column("pixels")), expected)
    two = pa.chunked_array([pixels.slice(0, 1), pixels.slice(1)])
    assert np.array_equal(fastprep.pixels_to_numpy(two), expected)
    assert fastprep.pixels_to_numpy(pixels.slice(1, 2)).shape == (2, 16, 16, 3)
    assert np.array_equal(fastprep.pixels_to_numpy(pixels.slice(1, 2)), expected[1:])


def test_caption_columns_from_any_producer():
    captions = ["Lovely #BrownBear #nature", "#nature", None, "no tags"]
    expected = fastprep.count_hashtags(captions).to_arrow()
    tags = fastprep.extract_hashtags(captions).to_pylist()
    strings = pa.array(captions, pa.string())
    for source, column in (
        (strings.cast(pa.string_view()), None),
        (strings.cast(pa.large_string()), None),
        (pl.Series(captions), None),
        (a3.Array.from_arrow(strings), None),
        (na.Array(strings), None),
        (StreamOnly(pa.chunked_array([strings])), None),
        (pl.DataFrame({"caption": captions, "n": [1, 2, 3, 4]}), None),
        (duckdb.from_arrow(pa.table({"text": strings})), "text"),
        (a3.Table.from_arrow(pa.table({"text": strings})), "text"),
    ):
        assert fastprep.count_hashtags(source, column=column).to_arrow().equals(expected)
        assert fastprep.extract_hashtags(source, column=column).to_pylist() == tags
