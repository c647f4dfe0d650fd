"""Hugging Face ``datasets`` loads every sink of prep (``hf_datasets=True``
for Parquet and Arrow; WebDataset as written), and its pixels and labels
equal prep's."""

from __future__ import annotations

import io
import json

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from fastprep import load_vocabulary, pixels_to_numpy
from fastprep.pipeline import prep
from PIL import Image
from test_format_fidelity import _records

OPTIONS = {"size": 32, "min_quality": 0, "report": False}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    src = root / "src"
    src.mkdir()
    for r in _records([f"r{i}" for i in range(5)]):
        (src / f"{r['key']}.jpg").write_bytes(r["image"])
        (src / f"{r['key']}.txt").write_text(r["caption"])
    reference = prep(src, root / "reference", **OPTIONS)
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


@pytest.mark.parametrize("sink", ["parquet", "arrow"])
def test_datasets_loads_tensor_shards(corpus, sink, tmp_path):
    _root, src, expected = corpus
    result = prep(src, tmp_path / "out", sink=sink, hf_datasets=True, **OPTIONS)
    files = [str(tmp_path / "out" / o["file"]) for o in result.manifest["outputs"]]
    ds = _load(sink, files, tmp_path / "cache")
    assert ds.features["pixels"] == datasets.Array3D(shape=(32, 32, 3), dtype="uint8")
    assert ds.features["labels"] == datasets.List(datasets.ClassLabel(names=expected["tags"]))
    assert list(ds["key"]) == expected["keys"]
    pixels = ds.with_format("numpy")[:]["pixels"]
    # (datasets' numpy formatter widens integers to int64; the feature is uint8)
    assert pixels.shape == expected["pixels"].shape
    assert np.array_equal(pixels, expected["pixels"])
    stored = ds.with_format("arrow")[:]["pixels"]
    assert stored.type.storage_type.value_type.value_type.value_type == "uint8"
    assert list(ds["labels"]) == expected["labels"]
    names = ds.features["labels"].feature.names
    assert [[names[i] for i in row] for row in ds["labels"]] == [
        [expected["tags"][i] for i in row] for row in expected["labels"]
    ]


@pytest.mark.parametrize("sink", ["parquet", "arrow"])
def test_datasets_loads_encoded_shards_as_images(corpus, sink, tmp_path):
    _root, src, expected = corpus
    result = prep(
        src, tmp_path / "out", sink=sink, image_format="jpeg", quality=95, hf_datasets=True,
        **OPTIONS,
    )  # fmt: skip
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


def test_datasets_loads_webdataset_shards(corpus, tmp_path):
    _root, src, expected = corpus
    result = prep(src, tmp_path / "out", sink="webdataset", **OPTIONS)
    files = [str(tmp_path / "out" / o["file"]) for o in result.manifest["outputs"]]
    ds = _load("webdataset", files, tmp_path / "cache")
    assert ds.features["jpg"] == datasets.Image()
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
