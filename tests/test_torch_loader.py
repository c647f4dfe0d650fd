"""fastprep.torch: the drop-in DataLoader, its determinism, resumption, DDP
sharding, weighted sampling, corrupt-sample replacement, and the datasets
torch's own DataLoader can wrap (fork and spawn)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import fastprep  # noqa: E402
from fastprep.torch import (  # noqa: E402
    DataLoader,
    ImageDataset,
    IterableImageDataset,
    evaluate,
    from_torchvision,
    train,
)
from fastprep.torch.sampling import epoch_order  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms as T  # noqa: E402


def stripes(horizontal: bool, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A learnable two-class task: stripe orientation survives random
    crops and horizontal flips."""
    period = rng.integers(4, 8)
    line = (np.arange(size) // (period // 2)) % 2 * 200 + 20
    img = (
        np.repeat(line[:, None], size, axis=1)
        if horizontal
        else np.repeat(line[None, :], size, axis=0)
    )
    img = np.clip(img + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([img] * 3, axis=-1))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for label, horizontal in (("horizontal", True), ("vertical", False)):
        (root / label).mkdir()
        for i in range(48):
            stripes(horizontal, rng).save(root / label / f"{i:03d}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def folder_with_corrupt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    rng = np.random.default_rng(1)
    for i in range(10):
        stripes(i % 2 == 0, rng).save(root / f"{i:02d}.jpg")
    (root / "03.jpg").write_bytes(b"not a jpeg at all")
    return root


def training_script(DataLoaderClass, root: Path, seed: int = 0) -> list[float]:
    """A training loop as written for torch's DataLoader; only the class
    passed in changes."""
    torch.manual_seed(seed)
    transform = T.Compose(
        [
            T.RandomResizedCrop(32, scale=(0.5, 1.0)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        ]
    )
    dataset = torchvision.datasets.ImageFolder(str(root), transform=transform)
    loader = DataLoaderClass(dataset, batch_size=16, shuffle=True, num_workers=0, drop_last=True)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _epoch in range(6):
        for images, targets in loader:
            assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
            assert targets.dtype == torch.int64
            loss = torch.nn.functional.cross_entropy(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def test_drop_in_training_loop_learns(image_folder):
    from torch.utils.data import DataLoader as TorchDataLoader

    theirs = training_script(TorchDataLoader, image_folder)
    ours = training_script(DataLoader, image_folder)
    assert len(ours) == len(theirs) == 6 * (96 // 16)
    for losses in (theirs, ours):
        assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6]), losses


def test_torchvision_transform_translation():
    recipe = from_torchvision(T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()]))
    assert (recipe.mode, recipe.size, recipe.resize_shorter, recipe.dtype) == (
        "center_crop",
        (224, 224),
        256,
        "uint8",
    )
    recipe = from_torchvision(
        T.Compose(
            [T.RandomResizedCrop(64, scale=(0.2, 1.0)), T.RandomHorizontalFlip(0.3), T.ToTensor()]
        )
    )
    assert (recipe.mode, recipe.size, recipe.scale, recipe.flip_p, recipe.dtype) == (
        "random_resized_crop",
        (64, 64),
        (0.2, 1.0),
        0.3,
        "float",
    )
    with pytest.raises(ValueError, match="ColorJitter"):
        from_torchvision(T.Compose([T.RandomResizedCrop(32), T.ColorJitter(0.2)]))
    with pytest.raises(ValueError, match="variable sizes"):
        from_torchvision(T.Compose([T.Resize(64), T.ToTensor()]))


def test_float_output_matches_manual_normalisation(image_folder):
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    raw = next(iter(DataLoader(str(image_folder), batch_size=8, transform=evaluate(32), seed=3)))
    normed = next(
        iter(
            DataLoader(
                str(image_folder),
                batch_size=8,
                transform=evaluate(32).normalized(mean, std),
                seed=3,
            )
        )
    )
    expected = (raw["image"].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    assert torch.allclose(normed["image"], expected, atol=1e-6)
    assert raw["target"].tolist() == [0] * 8, "ImageFolder layout gives class targets"


def batches(loader) -> list[tuple]:
    return [(b["index"].tolist(), b["image"].clone()) for b in loader]


def same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_same_seed_same_batches_at_any_thread_count(image_folder):
    options = {"batch_size": 10, "shuffle": True, "transform": train(24), "seed": 7}
    one = batches(DataLoader(str(image_folder), num_workers=1, **options))
    two = batches(DataLoader(str(image_folder), num_workers=2, **options))
    assert same(one, two)
    other = batches(DataLoader(str(image_folder), num_workers=2, **(options | {"seed": 8})))
    assert not same(one, other)
    # torch.manual_seed fixes the seed when none is given, as with torch's loader.
    torch.manual_seed(5)
    a = batches(DataLoader(str(image_folder), batch_size=10, shuffle=True, transform=train(24)))
    torch.manual_seed(5)
    b = batches(DataLoader(str(image_folder), batch_size=10, shuffle=True, transform=train(24)))
    assert same(a, b)


def test_epochs_reshuffle_and_set_epoch_replays(image_folder):
    loader = DataLoader(str(image_folder), batch_size=32, shuffle=True, transform=train(16), seed=1)
    first = batches(loader)
    second = batches(loader)  # the epoch advanced by itself
    assert not same(first, second)
    loader.set_epoch(0)
    assert same(batches(loader), first)


@pytest.mark.parametrize("weighted", [False, True])
def test_state_dict_resumes_mid_epoch_exactly(image_folder, weighted):
    options = {"batch_size": 8, "transform": train(16), "seed": 11, "num_workers": 2}
    if weighted:
        options |= {"weights": np.linspace(1, 5, 96), "num_samples": 60}
    else:
        options |= {"shuffle": True}
    reference = DataLoader(str(image_folder), **options)
    uninterrupted = batches(reference) + batches(reference)  # two epochs

    loader = DataLoader(str(image_folder), **options)
    got = []
    for i, b in enumerate(loader):
        got.append((b["index"].tolist(), b["image"].clone()))
        if i == 2:
            state = loader.state_dict()
            break
    resumed = DataLoader(
        str(image_folder), **(options | {"seed": 999})
    )  # seed comes from the state
    resumed.load_state_dict(state)
    got += batches(resumed) + batches(resumed)
    assert same(got, uninterrupted)


def test_ddp_ranks_get_equal_counts_and_cover_everything(folder_with_corrupt):
    world = 3
    seen, counts, errors = [], [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rank in range(world):
            loader = DataLoader(
                str(folder_with_corrupt),
                batch_size=2,
                shuffle=True,
                seed=4,
                rank=rank,
                world_size=world,
                transform=evaluate(16),
            )
            indices = [i for b in loader for i in b["index"].tolist()]
            counts.append((len(loader), len(indices)))
            seen.append(indices)
            errors.extend(loader.errors)
    assert ("03", 'unsupported format: text starting "not a jpeg at al"') in errors
    assert len(set(counts)) == 1, counts
    assert counts[0] == (2, 4), "10 samples padded to 12, 4 per rank, batches of 2"
    union = set().union(*map(set, seen))
    assert 3 not in union, "the corrupt sample is replaced..."
    assert union == set(range(10)) - {3}, "...by the next decodable one (4)"
    assert any("replaced" in str(w.message) for w in caught)


def test_weighted_sampling_follows_the_weights():
    weights = np.array([1.0, 2.0, 3.0, 4.0, 0.0])
    draws = np.concatenate(
        [
            epoch_order(5, shuffle=False, seed=3, epoch=e, weights=weights, num_samples=10_000)
            for e in range(4)
        ]
    )
    freq = np.bincount(draws, minlength=5) / len(draws)
    expected = weights / weights.sum()
    assert freq[4] == 0
    chi2 = len(draws) * np.sum((freq[:4] - expected[:4]) ** 2 / expected[:4])
    assert chi2 < 16.3, (freq, chi2)  # p = 0.001 with 3 degrees of freedom
    with pytest.raises(ValueError, match="weights"):
        epoch_order(5, shuffle=False, seed=0, epoch=0, weights=[-1, 1, 1, 1, 1])


def test_image_tensor_is_the_arrow_buffer_without_a_copy(image_folder):
    from fastprep.torch.loader import _uint8_tensor

    batch = fastprep.decode_images(sorted(map(str, image_folder.rglob("*.jpg")))[:6], size=20)
    tensor = _uint8_tensor(batch.column("pixels"))
    view = fastprep.pixels_to_numpy(batch)
    assert tensor.data_ptr() == view.ctypes.data
    assert np.array_equal(tensor.numpy(), view)


def test_prepared_shards_and_hashtag_labels(tmp_path):
    from test_pipeline import corpus_records, write_folder

    write_folder(tmp_path / "src", corpus_records())
    result = fastprep.pipeline.prep(tmp_path / "src", tmp_path / "out", size=32, report=False)
    vocab = fastprep.load_vocabulary(tmp_path / "out" / "vocab.json")
    loader = DataLoader(
        str(tmp_path / "out"), batch_size=4, target="multi_hot", vocab=vocab, transform=None
    )
    seen = 0
    import pyarrow.parquet as pq

    shard = pq.read_table(tmp_path / "out" / result.manifest["outputs"][0]["file"])
    labels = shard.column("labels").to_pylist()
    for batch in loader:
        assert batch["image"].shape[1:] == (3, 32, 32)
        offsets = batch["label_offsets"].tolist()
        for row, index in enumerate(batch["index"].tolist()):
            ids = batch["label_ids"][offsets[row] : offsets[row + 1]].tolist()
            assert ids == labels[index]
            assert batch["target"][row].nonzero().flatten().tolist() == sorted(set(ids))
        seen += len(batch["index"])
    assert seen == result.written
    # Captions labelled on the fly from a raw folder give the same ids.
    raw = DataLoader(str(tmp_path / "src"), batch_size=64, vocab=vocab, transform=evaluate(32))
    batch = next(iter(raw))
    expected = (
        fastprep.label_captions(
            [
                fastprep.pipeline.sources._sidecar(
                    None, (tmp_path / "src" / f"{k}.json").read_bytes()
                ).get("caption")
                for k in batch["key"]
            ],
            vocab,
        )
        .column("labels")
        .to_pylist()
    )
    offsets = batch["label_offsets"].tolist()
    assert [
        batch["label_ids"][offsets[i] : offsets[i + 1]].tolist() for i in range(len(expected))
    ] == expected


def test_other_datasets_fall_back_to_torch():
    data = torch.utils.data.TensorDataset(torch.arange(10))
    with pytest.warns(UserWarning, match="torch.utils.data.DataLoader"):
        loader = DataLoader(data, batch_size=5, seed=3)
    assert isinstance(loader, torch.utils.data.DataLoader)
    assert [b[0].tolist() for b in loader] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_iterable_dataset_under_torch_workers(image_folder, context):
    options = {"shuffle": True, "transform": train(16), "seed": 21}
    reference = batches(DataLoader(str(image_folder), batch_size=12, **options))
    dataset = IterableImageDataset(str(image_folder), batch_size=12, **options)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=2, multiprocessing_context=context, timeout=120
    )
    got = [(b["index"].tolist(), b["image"].clone()) for b in loader]
    assert same(sorted(got, key=lambda x: x[0]), sorted(reference, key=lambda x: x[0]))
    assert len(got) == len(dataset) == len(reference)


def test_map_style_dataset_with_torch_collate(image_folder):
    dataset = ImageDataset(str(image_folder), transform=evaluate(16))
    image, target = dataset[50]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and target == 1
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=0)
    images, targets = next(iter(loader))
    assert images.shape == (8, 3, 16, 16) and targets.tolist() == [0] * 8
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_importing_fastprep_without_torch_works_and_fastprep_torch_says_how_to_install():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import fastprep; fastprep.decode_images(fastprep.sample_images(), size=8)\n"
        "try:\n    import fastprep.torch\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'fastprep[torch]'" in out.stdout


@pytest.fixture(scope="module")
def tar_shards(tmp_path_factory) -> str:
    import io
    import tarfile

    root = tmp_path_factory.mktemp("tars")
    rng = np.random.default_rng(2)
    for shard in range(3):
        with tarfile.open(root / f"shard-{shard}.tar", "w") as tar:
            for i in range(7):
                key = f"s{shard}-{i}"
                buf = io.BytesIO()
                stripes(i % 2 == 0, rng).save(buf, "JPEG")
                data = b"broken" if (shard, i) == (1, 3) else buf.getvalue()
                for name, blob in ((f"{key}.jpg", data), (f"{key}.txt", f"#tag{i % 3}".encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
    return str(root / "shard-*.tar")


def test_streamed_tar_shards_split_evenly_shuffle_and_resume(tar_shards):
    options = {
        "batch_size": 3,
        "shuffle": True,
        "shuffle_buffer": 8,
        "transform": train(16),
        "seed": 5,
    }
    world = 2
    per_rank_indices, errors = [], []
    for rank in range(world):
        loader = DataLoader(tar_shards, rank=rank, world_size=world, **options)
        assert loader.stream is not None, "tar shards stream by default"
        got = batches(loader)
        assert len(got) == len(loader) == 4, "21 records -> 11 per rank -> 4 batches of 3"
        per_rank_indices.append([i for idx, _ in got for i in idx])
        errors += loader.errors
    assert errors == [("s1-3", 'unsupported format: text starting "broken"')], (
        "record 10 goes to rank 0"
    )
    union = set(per_rank_indices[0]) | set(per_rank_indices[1])
    assert union == set(range(21)) - {10}, "every record reaches a rank; the broken one is replaced"
    assert per_rank_indices[0] != sorted(per_rank_indices[0]), "the buffer shuffles"
    # Resume mid-epoch in a stream.
    reference = batches(DataLoader(tar_shards, **options))
    loader = DataLoader(tar_shards, **options)
    got = []
    for i, b in enumerate(loader):
        got.append((b["index"].tolist(), b["image"].clone()))
        if i == 1:
            state = loader.state_dict()
            break
    resumed = DataLoader(tar_shards, **options)
    resumed.load_state_dict(state)
    assert same(got + batches(resumed), reference)


def test_in_memory_sources_bytes_paths_and_tables(image_folder):
    import pyarrow as pa

    paths = sorted(map(str, image_folder.rglob("*.jpg")))[:10]
    blobs = [Path(p).read_bytes() for p in paths]
    options = {"batch_size": 5, "transform": evaluate(24), "seed": 1}
    from_paths = batches(DataLoader(paths, **options))
    from_bytes = batches(DataLoader(blobs, **options))
    from_table = batches(
        DataLoader(pa.table({"key": paths, "jpg": pa.array(blobs, pa.binary())}), **options)
    )
    assert same(from_paths, from_bytes) and same(from_bytes, from_table)
    expected = fastprep.pixels_to_numpy(fastprep.decode_images(blobs, size=24))
    got = torch.cat([image for _, image in from_bytes]).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, expected)
    with pytest.raises(KeyError, match="no image column"):
        DataLoader(pa.table({"key": ["a"]}))


def test_file_names_that_are_not_utf8(tmp_path):
    import os

    rng = np.random.default_rng(3)
    stripes(True, rng).save(tmp_path / "plain.jpg")
    odd = tmp_path / os.fsdecode(b"caf\xe9.jpg")  # Latin-1 on disk
    stripes(False, rng).save(odd)
    batch = next(iter(DataLoader(str(tmp_path), batch_size=2, transform=evaluate(16), seed=0)))
    assert sorted(batch["key"]) == ["caf\\xe9", "plain"]
    assert batch["image"].shape == (2, 3, 16, 16)


def test_leaving_a_loop_early_stops_the_producer_thread(image_folder):
    import threading
    import time

    for _ in range(3):
        loader = DataLoader(str(image_folder), batch_size=40, transform=evaluate(16), seed=0)
        for _batch in loader:
            time.sleep(0.3)  # the producer finishes the epoch and waits on a full queue
            break
    time.sleep(0.3)
    assert not [t for t in threading.enumerate() if t.name == "fastprep-loader"]


def test_iterable_dataset_workers_decode_only_their_batches(image_folder, monkeypatch):
    from fastprep.torch.loader import DataLoader as Loader
    from torch.utils.data import get_worker_info

    made = []
    real = Loader._make_batch

    def counting(self, *args, **kwargs):
        made.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Loader, "_make_batch", counting)

    class Info:
        id, num_workers = 1, 4

    monkeypatch.setattr("fastprep.torch.dataset.get_worker_info", lambda: Info)
    dataset = IterableImageDataset(str(image_folder), batch_size=8, transform=evaluate(16), seed=1)
    got = [b["index"].tolist() for b in dataset]
    assert len(got) == len(made) == 3, "batches 1, 5, 9 of 12"
    reference = [
        b["index"].tolist()
        for b in DataLoader(str(image_folder), batch_size=8, transform=evaluate(16), seed=1)
    ]
    assert got == reference[1::4]
    assert get_worker_info() is None


def test_torch_semantics_of_sampler_collate_and_state(image_folder, tmp_path):
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(list(range(96)), num_replicas=4, rank=1, shuffle=False)
    loader = DataLoader(
        str(image_folder),
        batch_size=8,
        sampler=sampler,
        world_size=4,
        rank=1,
        transform=evaluate(16),
    )
    indices = [i for b in loader for i in b["index"].tolist()]
    assert indices == list(sampler), "a DistributedSampler is not split a second time"
    dataset = torchvision.datasets.ImageFolder(
        str(image_folder), transform=T.Compose([T.Resize(20), T.CenterCrop(16), T.PILToTensor()])
    )
    collated = next(
        iter(
            DataLoader(
                dataset,
                batch_size=4,
                collate_fn=lambda b: ("mixed", len(b), b[0][0].shape, type(b[0][1]).__name__),
            )
        )
    )
    assert collated == ("mixed", 4, (3, 16, 16), "int"), (
        "collate_fn gets the list of (image, target) samples, as torch's loader gives it"
    )
    first = DataLoader(
        str(image_folder), batch_size=8, shuffle=True, seed=3, transform=evaluate(16)
    )
    for i, _ in enumerate(first):
        if i == 2:
            state = first.state_dict()
            break
    second = DataLoader(
        str(image_folder), batch_size=8, shuffle=True, seed=3, transform=evaluate(16)
    )
    second.load_state_dict(state)
    assert second.state_dict()["batches_done"] == 3, "a restored position survives a checkpoint"
    with pytest.warns(UserWarning, match="torch.utils.data.DataLoader"):
        fallback = DataLoader(list(range(5)), batch_size=5)
    assert next(iter(fallback)).tolist() == [0, 1, 2, 3, 4]


def test_prepared_pixels_refuse_a_transform_of_another_size(tmp_path):
    import pyarrow as pa

    pixels = pa.FixedShapeTensorArray.from_numpy_ndarray(np.zeros((4, 32, 32, 3), np.uint8))
    table = pa.table({"key": list("abcd"), "pixels": pixels})
    with pytest.raises(ValueError, match="already 32x32"):
        DataLoader(table, transform=evaluate(16))
    normed = next(
        iter(
            DataLoader(
                table, batch_size=4, transform=evaluate(32).normalized((0.5,) * 3, (0.5,) * 3)
            )
        )
    )
    assert normed["image"].dtype == torch.float32 and float(normed["image"].min()) == -1.0


def test_streams_pad_every_rank_and_take_column_names(tmp_path):
    import io
    import tarfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    with tarfile.open(tmp_path / "two.tar", "w") as tar:
        for key in ("x", "y"):
            buf = io.BytesIO()
            stripes(True, rng).save(buf, "JPEG")
            info = tarfile.TarInfo(f"{key}.jpg")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    counts = []
    for rank in range(4):
        loader = DataLoader(
            str(tmp_path / "two.tar"), batch_size=1, rank=rank, world_size=4, transform=evaluate(16)
        )
        counts.append((len(loader), len(batches(loader))))
    assert counts == [(1, 1)] * 4, "2 records padded to 4: one batch on every rank"
    buf = io.BytesIO()
    stripes(False, rng).save(buf, "JPEG")
    pq.write_table(
        pa.table({"key": ["p"], "photo": pa.array([buf.getvalue()], pa.binary()), "text": ["#a"]}),
        tmp_path / "s.parquet",
    )
    loader = DataLoader(
        str(tmp_path / "s.parquet"),
        streaming=True,
        image_column="photo",
        caption_column="text",
        transform=evaluate(16),
        batch_size=1,
    )
    assert [b["key"] for b in loader] == [["p"]]


def test_streaming_prepared_webdataset_shards_keeps_their_labels(tmp_path):
    from test_pipeline import corpus_records, write_folder

    write_folder(tmp_path / "src", corpus_records())
    result = fastprep.pipeline.prep(
        tmp_path / "src", tmp_path / "out", size=32, sink="webdataset", report=False
    )
    seen = 0
    for batch in DataLoader(str(tmp_path / "out"), batch_size=4, transform=evaluate(32)):
        offsets = batch["label_offsets"].tolist()
        assert all(b > a for a, b in zip(offsets, offsets[1:])), "every written record has labels"
        seen += len(batch["key"])
    assert seen == result.written
