"""``accelerate.Accelerator().prepare(loader)`` on fastprep's DataLoader
(issue 13). Accelerate rebuilds a plain torch DataLoader from
``loader.dataset`` and ``loader.batch_sampler`` (``DataLoaderShard``); torch
fetches its batches through ``dataset.__getitems__``, which hands the
indices fastprep's sampler tagged back to fastprep (fastprep.torch.rebuilt):
the prepared loader still decodes in Rust, with the same crops as the
fastprep loader's own batches."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
accelerate = pytest.importorskip("accelerate")

from fastprep.torch import DataLoader  # noqa: E402
from fastprep.torch import loader as loader_module  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader as TorchDataLoader  # noqa: E402

T = torchvision.transforms
N = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("accelerate")
    for c in range(N):  # one image per class: a target names its sample
        (root / f"c{c}").mkdir()
        Image.fromarray(np.full((20, 26, 3), 20 * c, np.uint8)).save(root / f"c{c}" / "0.png")
    transform = T.Compose([T.Resize(12), T.CenterCrop(10), T.ToTensor()])
    return torchvision.datasets.ImageFolder(str(root), transform=transform)


def test_prepared_shuffled_loader_reshuffles_every_epoch_as_torchs_does(dataset):
    accelerator = accelerate.Accelerator(cpu=True)
    loader = DataLoader(dataset, batch_size=4, shuffle=True, seed=5)
    first = [y.tolist() for _, y in loader]  # fastprep's own epoch 0
    loader.set_epoch(0)
    prepared = accelerator.prepare(loader)
    epochs = [[t for _, y in prepared for t in y.tolist()] for _ in range(3)]
    assert len(prepared) == len(TorchDataLoader(dataset, batch_size=4)) == 3
    for epoch in epochs:
        assert sorted(epoch) == list(range(N)), "each epoch is a permutation"
    assert epochs[0] == [t for b in first for t in b], "fastprep's order for epoch 0"
    assert len({tuple(e) for e in epochs}) == 3, "a new order every epoch (as RandomSampler)"
    # accelerate's set_epoch reaches the sampler: epoch 0 again.
    prepared.set_epoch(0)
    assert [t for _, y in prepared for t in y.tolist()] == epochs[0]


def test_prepared_loader_decodes_with_fastprep(dataset, monkeypatch):
    made = []
    original = loader_module.DataLoader._decode

    def spy(self, *args, **kwargs):
        made.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(loader_module.DataLoader, "_decode", spy)
    prepared = accelerate.Accelerator(cpu=True).prepare(DataLoader(dataset, batch_size=4))
    assert len(list(prepared)) == 3
    assert made, "no batch was decoded by fastprep"


def _photo_folder(root, n=12):
    rng = np.random.default_rng(3)
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
    for i in range(n):
        pixels = rng.integers(0, 256, (30 + 2 * i, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"c{i % 3}" / f"{i}.png")
    return root


TRAIN = T.Compose([T.RandomResizedCrop(16), T.RandomHorizontalFlip(), T.PILToTensor()])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_prepared_loader_gives_fastprep_own_batches(tmp_path, num_workers):
    """Same samples, same random crops and flips, as the fastprep loader
    itself gives for that epoch, in the main process and in torch's worker
    processes (the tagged indices are pickled to them)."""
    dataset = torchvision.datasets.ImageFolder(str(_photo_folder(tmp_path)), transform=TRAIN)
    loader = DataLoader(dataset, batch_size=5, shuffle=True, seed=11, num_workers=num_workers)
    own = list(loader)  # epoch 0
    loader.set_epoch(0)
    prepared = accelerate.Accelerator(cpu=True).prepare(loader)
    got = list(prepared)
    assert len(got) == len(own) == 3
    for (x_own, y_own), (x_got, y_got) in zip(own, got):
        assert torch.equal(y_got, y_own)
        assert x_got.dtype == torch.uint8 and x_got.shape == x_own.shape
        assert torch.equal(x_got, x_own), "fastprep's crops, not the dataset's own"
    # The next pass is the next epoch, as the loader's own would be.
    after = list(prepared)
    loader.set_epoch(1)
    assert torch.equal(after[0][0], next(iter(loader))[0])


def test_torch_loader_with_its_own_sampler_still_reads_the_dataset(tmp_path):
    """The dataset's class gains a __getitems__; batches from any other
    sampler get exactly the dataset's own items."""
    eval_tf = T.Compose([T.Resize(16), T.CenterCrop(16), T.PILToTensor()])
    dataset = torchvision.datasets.ImageFolder(str(_photo_folder(tmp_path)), transform=eval_tf)
    DataLoader(dataset, batch_size=4)  # serves tagged batches from now on
    x, y = next(iter(TorchDataLoader(dataset, batch_size=4)))
    expected = [dataset[i] for i in range(4)]
    assert torch.equal(x, torch.stack([e[0] for e in expected]))
    assert y.tolist() == [e[1] for e in expected]
    # and its own sampler's plain indices, shuffled by hand, too
    assert dataset.__getitems__([3, 1])[0][1] == dataset[3][1]


def test_prepared_loader_hands_samples_to_a_custom_collate(tmp_path):
    dataset = torchvision.datasets.ImageFolder(str(_photo_folder(tmp_path)), transform=TRAIN)
    seen = []

    def collate(samples):
        seen.append([(type(x), tuple(x.shape), type(y)) for x, y in samples])
        return torch.utils.data.default_collate(samples)

    loader = DataLoader(dataset, batch_size=4, collate_fn=collate, seed=2)
    own = [x for x, _ in loader]
    loader.set_epoch(0)
    seen.clear()
    prepared = accelerate.Accelerator(cpu=True).prepare(loader)
    got = [x for x, _ in prepared]
    assert seen and all(s == [(torch.Tensor, (3, 16, 16), int)] * 4 for s in seen)
    assert all(torch.equal(a, b) for a, b in zip(own, got))


def test_prepared_loader_runs_the_python_tail_like_fastprep_workers(tmp_path):
    """TrivialAugmentWide after the fused crop: in torch's workers the tail
    draws from generators seeded per batch, as in fastprep's own workers, so
    the prepared batches equal the loader's own."""
    tail = T.Compose(
        [T.RandomResizedCrop(16), T.PILToTensor(), T.TrivialAugmentWide(), T.RandomErasing(p=0.5)]
    )
    dataset = torchvision.datasets.ImageFolder(str(_photo_folder(tmp_path)), transform=tail)
    loader = DataLoader(dataset, batch_size=4, shuffle=True, seed=4, num_workers=2)
    own = list(loader)
    loader.set_epoch(0)
    got = list(accelerate.Accelerator(cpu=True).prepare(loader))
    assert len(got) == len(own) == 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(own, got))


def test_prepared_hugging_face_dataset_keeps_fastprep_decoding(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ds = datasets.load_dataset(
        "imagefolder",
        data_dir=str(_photo_folder(tmp_path / "photos")),
        split="train",
        cache_dir=str(tmp_path / "cache"),
    )

    def transforms(examples):  # a module-level transform, read in a comprehension
        examples["pixel_values"] = [TRAIN(img.convert("RGB")) for img in examples["image"]]
        del examples["image"]
        return examples

    ds.set_transform(transforms)
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=8)
    own = list(loader)
    loader.set_epoch(0)
    got = list(accelerate.Accelerator(cpu=True).prepare(loader))
    assert len(got) == len(own) == 3
    for a, b in zip(own, got):
        assert set(a) == set(b) == {"pixel_values", "label"}
        assert torch.equal(a["label"], b["label"])
        assert torch.equal(a["pixel_values"], b["pixel_values"])
    # a torch loader with its own sampler still gets the dataset's transform output
    theirs = next(iter(TorchDataLoader(ds, batch_size=4)))
    assert torch.equal(theirs["label"], torch.tensor([ds[i]["label"] for i in range(4)]))
