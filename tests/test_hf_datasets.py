"""Hugging Face ``datasets`` loads every sink of a default prep run (no
flag: the datasets layout is the default; WebDataset as written), and its
pixels and labels equal prep's. ``hf_datasets=False`` (``--no-hf-datasets``)
keeps the Arrow-canonical layout. fastprep's own readers view the default
layout's pixels in place."""

from __future__ import annotations

import io
import json

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastprep import load_vocabulary, pixels_to_numpy
from fastprep.pipeline import prep
from fastprep.pipeline.hf import feature
from fastprep.pipeline.io import read_arrow
from fastprep.tensors import as_fixed_shape_tensor, to_fixed_shape_tensor
from PIL import Image
from test_format_fidelity import _records

OPTIONS = {"size": 32, "min_quality": 0, "report": False}
NESTED = datasets.List(
    datasets.List(datasets.List(datasets.Value("uint8"), length=3), length=32), length=32
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    src = root / "src"
    src.mkdir()
    for r in _records([f"r{i}" for i in range(5)]):
        (src / f"{r['key']}.jpg").write_bytes(r["image"])
        (src / f"{r['key']}.txt").write_text(r["caption"])
    # The reference: the Arrow-canonical layout (what prep wrote by default before).
    reference = prep(src, root / "reference", hf_datasets=False, **OPTIONS)
    table = pq.read_table(root / "reference" / reference.manifest["outputs"][0]["file"])
    expected = {
        "keys": table.column("key").to_pylist(),
        "pixels": pixels_to_numpy(table),
        "labels": table.column("labels").to_pylist(),
        "tags": load_vocabulary(str(root / "reference" / "vocab.json")).tags,
    }
    return root, src, expected


def _load(kind: str, files: list[str], cache) -> datasets.Dataset:
    return datasets.load_dataset(kind, data_files=files, split="train", cache_dir=str(cache))


def _read(path: str) -> pa.Table:
    return pq.read_table(path) if path.endswith(".parquet") else read_arrow(path)


def _leaf_address(column: pa.ChunkedArray) -> int:
    """Where a one-chunk nested-list pixel column's first pixel byte lies."""
    leaf = column.chunk(0)
    while pa.types.is_fixed_size_list(leaf.type):
        leaf = leaf.values
    return leaf.buffers()[1].address + leaf.offset


@pytest.mark.parametrize("sink", ["parquet", "arrow"])
def test_datasets_loads_default_tensor_shards(corpus, sink, tmp_path):
    _root, src, expected = corpus
    result = prep(src, tmp_path / "out", sink=sink, **OPTIONS)  # no hf flag: the default
    files = [str(tmp_path / "out" / o["file"]) for o in result.manifest["outputs"]]
    ds = _load(sink, files, tmp_path / "cache")
    assert ds.features["pixels"] == NESTED
    assert ds.features["labels"] == datasets.List(datasets.ClassLabel(names=expected["tags"]))
    assert list(ds["key"]) == expected["keys"]
    pixels = ds.with_format("numpy")[:]["pixels"]
    # (datasets' numpy formatter widens integers to int64; the feature is uint8)
    assert pixels.shape == expected["pixels"].shape
    assert np.array_equal(pixels, expected["pixels"])
    stored = ds.with_format("arrow")[:]["pixels"]
    assert stored.type.value_type.value_type.value_type == pa.uint8()
    # The feature casts to datasets' Array3D, same pixels.
    array3d = ds.cast_column("pixels", datasets.Array3D(shape=(32, 32, 3), dtype="uint8"))
    assert np.array_equal(array3d.with_format("numpy")[:]["pixels"], expected["pixels"])
    assert list(ds["labels"]) == expected["labels"]
    names = ds.features["labels"].feature.names
    assert [[names[i] for i in row] for row in ds["labels"]] == [
        [expected["tags"][i] for i in row] for row in expected["labels"]
    ]


@pytest.mark.parametrize("sink", ["parquet", "arrow"])
def test_default_pixels_are_read_in_place_by_fastprep(corpus, sink, tmp_path):
    """pixels_to_numpy, to_fixed_shape_tensor and the DataLoader's map source
    view the nested-list pixels over their own buffer, without a copy."""
    _root, src, expected = corpus
    result = prep(src, tmp_path / "out", sink=sink, **OPTIONS)
    table = _read(str(tmp_path / "out" / result.manifest["outputs"][0]["file"]))
    column = table.column("pixels")
    assert column.num_chunks == 1
    address = _leaf_address(column)
    view = pixels_to_numpy(table)
    assert np.array_equal(view, expected["pixels"])
    assert view.__array_interface__["data"][0] == address
    sliced = pixels_to_numpy(column.slice(2, 2))  # a slice: offsets honoured
    assert np.array_equal(sliced, expected["pixels"][2:4])
    assert sliced.__array_interface__["data"][0] == address + 2 * 32 * 32 * 3
    for tensor in (as_fixed_shape_tensor(column), to_fixed_shape_tensor(table)):
        assert isinstance(tensor.type, pa.FixedShapeTensorType)
        assert tuple(tensor.type.shape) == (32, 32, 3)
        storage = tensor.chunk(0).storage
        assert storage.values.buffers()[1].address + storage.values.offset == address
        assert np.array_equal(tensor.combine_chunks().to_numpy_ndarray(), expected["pixels"])
    pytest.importorskip("torch")
    from fastprep.torch import DataLoader
    from fastprep.torch.data import from_table

    source = from_table(table)
    assert source.kind == "pixels"
    storage = source.table.column("pixels").chunk(0).storage
    assert storage.values.buffers()[1].address + storage.values.offset == address
    batch = next(iter(DataLoader(str(tmp_path / "out"), batch_size=5)))
    assert np.array_equal(batch["image"].permute(0, 2, 3, 1).numpy(), expected["pixels"])
    labels = [
        batch["label_ids"][lo:hi].tolist()
        for lo, hi in zip(batch["label_offsets"][:-1], batch["label_offsets"][1:])
    ]
    assert labels == expected["labels"]


@pytest.mark.parametrize("sink", ["parquet", "arrow"])
def test_datasets_loads_default_encoded_shards_as_images(corpus, sink, tmp_path):
    _root, src, expected = corpus
    result = prep(src, tmp_path / "out", sink=sink, image_format="jpeg", quality=95, **OPTIONS)
    files = [str(tmp_path / "out" / o["file"]) for o in result.manifest["outputs"]]
    ds = _load(sink, files, tmp_path / "cache")
    assert ds.features["jpg"] == datasets.Image()
    assert isinstance(ds[0]["jpg"], Image.Image) and ds[0]["jpg"].size == (32, 32)
    assert list(ds["labels"]) == expected["labels"]
    assert ds.features["labels"].feature.names == expected["tags"]
    # The shards stay readable by fastprep: the DataLoader's table reader
    # decodes the HF Image column.
    table = ds.with_format("arrow")[:]
    from fastprep import decode_images

    decoded = pixels_to_numpy(
        decode_images(table, column="jpg", size=32, mode="resize", reduced_decode=False)
    )
    for i, image in enumerate(ds["jpg"]):
        assert np.array_equal(decoded[i], np.asarray(image.convert("RGB")))  # Pillow-exact
    # The Image struct's bytes are the JPEGs the Arrow-canonical layout writes.
    canonical = prep(
        src, tmp_path / "canonical", sink=sink, image_format="jpeg", quality=95,
        hf_datasets=False, **OPTIONS,
    )  # fmt: skip
    theirs = _read(str(tmp_path / "canonical" / canonical.manifest["outputs"][0]["file"]))
    ours = _read(files[0])
    assert theirs.schema.field("jpg").type == pa.binary()
    assert (
        ours.column("jpg")
        .combine_chunks()
        .field("bytes")
        .equals(theirs.column("jpg").combine_chunks())
    )


@pytest.mark.parametrize("sink", ["parquet", "arrow"])
def test_opting_out_keeps_the_arrow_canonical_layout(corpus, sink, tmp_path):
    _root, src, expected = corpus
    result = prep(src, tmp_path / "out", sink=sink, hf_datasets=False, **OPTIONS)
    table = _read(str(tmp_path / "out" / result.manifest["outputs"][0]["file"]))
    assert isinstance(table.schema.field("pixels").type, pa.FixedShapeTensorType)
    assert table.schema.field("labels").type == pa.list_(pa.field("item", pa.int32(), False))
    assert b"huggingface" not in (table.schema.metadata or {})
    assert np.array_equal(table.column("pixels").combine_chunks().to_numpy_ndarray(),
                          expected["pixels"])  # fmt: skip
    assert result.manifest["settings"]["hf_datasets"] is False
    # Why it is not the default: datasets has no feature for the tensor type.
    with pytest.raises(ValueError, match="fixed_shape_tensor"):
        _load(sink, [str(tmp_path / "out" / result.manifest["outputs"][0]["file"])],
              tmp_path / "cache")  # fmt: skip


def test_cli_writes_the_datasets_layout_unless_told_not_to(corpus, tmp_path):
    from test_cli import fastprep

    _root, src, expected = corpus
    common = ("--size", "32", "--min-quality", "0", "--no-report")
    for flag, out in (((), "default"), (("--no-hf-datasets",), "canonical")):
        proc = fastprep("prep", str(src), "--out", str(tmp_path / out), *common, *flag)
        assert proc.returncode == 0, proc.stderr
    default = pq.read_table(tmp_path / "default" / "shard-00000.parquet")
    canonical = pq.read_table(tmp_path / "canonical" / "shard-00000.parquet")
    assert b"huggingface" in default.schema.metadata
    assert b"huggingface" not in (canonical.schema.metadata or {})
    assert isinstance(canonical.schema.field("pixels").type, pa.FixedShapeTensorType)
    assert np.array_equal(pixels_to_numpy(default), pixels_to_numpy(canonical))
    ds = _load("parquet", [str(tmp_path / "default" / "shard-00000.parquet")], tmp_path / "c")
    assert ds.features["labels"].feature.names == expected["tags"]


def test_written_features_are_what_datasets_infers():
    """The features written without importing datasets are its own: every
    Arrow type a shard column may have maps to the feature datasets'
    ``generate_from_arrow_type`` gives (None where datasets has none)."""
    from datasets.features.features import generate_from_arrow_type

    kinds = [
        pa.string(), pa.large_string(), pa.binary(), pa.large_binary(), pa.bool_(),
        pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(),
        pa.uint32(), pa.uint64(), pa.float16(), pa.float32(), pa.float64(),
        pa.date32(), pa.date64(), pa.time32("s"), pa.time64("us"), pa.timestamp("ms"),
        pa.timestamp("us", tz="UTC"), pa.duration("ns"), pa.decimal128(10, 2),
        pa.binary(16), pa.dictionary(pa.int32(), pa.string()), pa.null(),
        pa.list_(pa.string()), pa.list_(pa.int32(), 4), pa.large_list(pa.float32()),
        pa.struct([("a", pa.int64()), ("b", pa.list_(pa.string()))]),
        pa.list_(pa.list_(pa.list_(pa.uint8(), 3), 32), 32),
    ]  # fmt: skip
    for kind in kinds:
        want = datasets.Features({"c": generate_from_arrow_type(kind)}).to_dict()["c"]
        assert feature(kind) == want, kind
    assert feature(pa.fixed_shape_tensor(pa.uint8(), [2, 2, 3])) is None
    assert feature(pa.map_(pa.string(), pa.int32())) is None


def test_datasets_loads_webdataset_shards(corpus, tmp_path):
    _root, src, expected = corpus
    result = prep(src, tmp_path / "out", sink="webdataset", **OPTIONS)  # the default layout
    files = [str(tmp_path / "out" / o["file"]) for o in result.manifest["outputs"]]
    ds = _load("webdataset", files, tmp_path / "cache")
    assert ds.features["jpg"] == datasets.Image()
    reference = prep(
        src, tmp_path / "canonical", image_format="jpeg", hf_datasets=False, **OPTIONS
    )  # the same JPEGs (quality 90) in an Arrow-canonical Parquet shard
    table = pq.read_table(tmp_path / "canonical" / reference.manifest["outputs"][0]["file"])
    canonical = dict(zip(table.column("key").to_pylist(), table.column("jpg").to_pylist()))
    with open(files[0], "rb") as f:
        import tarfile

        with tarfile.open(fileobj=f) as tar:
            blobs = {
                m.name[: -len(".jpg")]: tar.extractfile(m).read()
                for m in tar.getmembers()
                if m.name.endswith(".jpg")
            }
    for row in ds:
        meta = row["json"] if isinstance(row["json"], dict) else json.loads(row["json"])
        i = expected["keys"].index(meta["key"])
        assert meta["labels"] == expected["labels"][i]
        # The ids name the record's own hashtags in the vocabulary's order.
        assert set(meta["hashtags"]) >= {expected["tags"][t] for t in meta["labels"]}
        assert blobs[row["__key__"]] == canonical[meta["key"]]  # prep's JPEG, as Parquet holds it
        ours = np.asarray(Image.open(io.BytesIO(blobs[row["__key__"]])).convert("RGB"))
        assert np.array_equal(np.asarray(row["jpg"].convert("RGB")), ours)


def test_dataloader_reads_an_hf_exported_parquet(tmp_path):
    pytest.importorskip("torch")
    from fastprep.torch import DataLoader
    from fastprep.torch.transforms import evaluate

    records = _records(["a", "b", "c"])
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": r["image"], "path": None} for r in records],
         "text": [r["caption"] for r in records]},
        features=features,
    )  # fmt: skip
    ds.to_parquet(str(tmp_path / "hf.parquet"))
    from fastprep import decode_images

    loader = DataLoader(str(tmp_path / "hf.parquet"), batch_size=3, transform=evaluate(32))
    batch = next(iter(loader))
    expected = pixels_to_numpy(decode_images([r["image"] for r in records], size=32))
    images = batch["image"].permute(0, 2, 3, 1).numpy()
    assert np.array_equal(images, expected)
    # The Dataset object itself, its streaming view, and other Arrow tables.
    import polars as pl

    frame = pl.DataFrame({"image": [r["image"] for r in records]})
    for source in (ds, ds.to_iterable_dataset(), frame):
        loader = DataLoader(source, batch_size=3, transform=evaluate(32))
        batch = next(iter(loader))
        assert np.array_equal(batch["image"].permute(0, 2, 3, 1).numpy(), expected)


@pytest.mark.parametrize("hf", [True, False], ids=["nested", "canonical"])
def test_tensor_parquet_pixels_are_delta_coded_and_read_everywhere(corpus, hf, tmp_path):
    """Parquet keeps uint8 as 32-bit integers: plain pages cost 4 bytes a
    pixel. Pixel columns are delta-coded (a standard encoding), so a shard's
    pixels take about their raw size, and polars and duckdb read the same
    values as pyarrow."""
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    _root, src, expected = corpus
    result = prep(src, tmp_path / "out", hf_datasets=hf, **OPTIONS)
    path = str(tmp_path / "out" / result.manifest["outputs"][0]["file"])
    meta = pq.ParquetFile(path).metadata
    columns = [meta.row_group(0).column(i) for i in range(meta.num_columns)]
    pixels = next(c for c in columns if c.path_in_schema.startswith("pixels"))
    assert "DELTA_BINARY_PACKED" in pixels.encodings
    raw = expected["pixels"].size
    assert pixels.total_compressed_size < 1.3 * raw, (pixels.total_compressed_size, raw)
    frame = polars.read_parquet(path)
    got = np.array(frame["pixels"].to_list(), dtype=np.uint8).reshape(expected["pixels"].shape)
    assert np.array_equal(got, expected["pixels"])
    rows = duckdb.sql(f"select pixels from '{path}'").fetchall()
    got = np.array([r[0] for r in rows], dtype=np.uint8).reshape(expected["pixels"].shape)
    assert np.array_equal(got, expected["pixels"])
