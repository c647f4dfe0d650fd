"""A torchvision tail left to Python (TrivialAugmentWide, RandomErasing...)
runs in worker processes with ``num_workers >= 2``, as torch's loader runs
its whole pipeline: Python threads would take turns on one GIL. Each test
checks what a user of torch's loader relies on: the same batches and
targets, ``worker_init_fn`` in real workers, replaced samples reported in
the main process, reproducible augmentation, persistent workers."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from fastprep.torch import DataLoader  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader as TorchDataLoader  # noqa: E402

T = torchvision.transforms


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3 classes x 6 JPEGs of varied sizes."""
    root = tmp_path_factory.mktemp("workers")
    rng = np.random.default_rng(8)
    for c, name in enumerate(("a", "b", "c")):
        (root / name).mkdir()
        for i in range(6):
            pixels = rng.integers(30, 220, (40 + 4 * i, 48 + 3 * c, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
    return root


def augment() -> T.Compose:
    return T.Compose(
        [
            T.RandomResizedCrop(24),
            T.RandomHorizontalFlip(),
            T.TrivialAugmentWide(),
            T.PILToTensor(),
            T.ConvertImageDtype(torch.float),
            T.RandomErasing(0.5),
        ]
    )


def dataset(root: Path, transform=None):
    return torchvision.datasets.ImageFolder(str(root), transform=transform or augment())


def test_batches_come_from_worker_processes_with_torchs_counts_and_targets(folder):
    ours = DataLoader(dataset(folder), batch_size=4, num_workers=2, seed=1)
    assert ours._tail_in_processes()
    theirs = TorchDataLoader(dataset(folder), batch_size=4, num_workers=0)
    got, want = list(ours), list(theirs)
    assert len(got) == len(want) == 5
    for (x, y), (xt, yt) in zip(got, want):
        assert x.shape == xt.shape and x.dtype == xt.dtype
        assert x.is_contiguous()
        assert torch.equal(y, yt)


def test_one_worker_or_a_fused_only_tail_stays_on_threads(folder):
    assert not DataLoader(dataset(folder), batch_size=4, num_workers=1)._tail_in_processes()
    fused = T.Compose([T.RandomResizedCrop(24), T.PILToTensor(), T.ConvertImageDtype(torch.float)])
    loader = DataLoader(dataset(folder, fused), batch_size=4, num_workers=2)
    assert not loader._tail_in_processes()
    spawn = DataLoader(
        dataset(folder), batch_size=4, num_workers=2, multiprocessing_context="spawn"
    )
    assert not spawn._tail_in_processes()  # the loader is not pickled: threads
    assert sum(len(x) for x, _ in spawn) == 18


def test_augmented_pixels_follow_the_batch_not_the_worker(folder):
    """Each batch's tail draws from generators seeded by that batch: the
    same pixels with 2 or 3 workers, and the same remaining batches after a
    resume mid-epoch."""
    two = [x for x, _ in DataLoader(dataset(folder), batch_size=4, num_workers=2, seed=8)]
    three = [x for x, _ in DataLoader(dataset(folder), batch_size=4, num_workers=3, seed=8)]
    assert len(two) == len(three) == 5
    assert all(torch.equal(a, b) for a, b in zip(two, three))
    loader = DataLoader(dataset(folder), batch_size=4, num_workers=2, seed=8)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    del iterator
    resumed = DataLoader(dataset(folder), batch_size=4, num_workers=2, seed=8)
    resumed.load_state_dict(state)
    rest = [x for x, _ in resumed]
    assert len(rest) == 4 and all(torch.equal(a, b) for a, b in zip(rest, two[1:]))


def test_same_seed_same_augmented_pixels_and_each_epoch_new_ones(folder):
    first = [x for x, _ in DataLoader(dataset(folder), batch_size=4, num_workers=2, seed=5)]
    loader = DataLoader(dataset(folder), batch_size=4, num_workers=2, seed=5)
    again = [x for x, _ in loader]
    later = [x for x, _ in loader]  # epoch 1
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, later))


def record_worker(directory: str):
    def init(worker_id: int) -> None:
        info = torch.utils.data.get_worker_info()
        assert info is not None and info.id == worker_id
        with open(os.path.join(directory, f"{worker_id}-{os.getpid()}"), "w"):
            pass

    return init


def test_worker_init_fn_runs_in_each_worker_process(folder, tmp_path):
    loader = DataLoader(
        dataset(folder), batch_size=4, num_workers=2, worker_init_fn=record_worker(str(tmp_path))
    )
    assert sum(len(x) for x, _ in loader) == 18
    calls = sorted(p.name.split("-") for p in tmp_path.iterdir())
    assert [worker for worker, _ in calls] == ["0", "1"]
    pids = {int(pid) for _, pid in calls}
    assert len(pids) == 2 and os.getpid() not in pids


def test_persistent_workers_start_once_and_serve_every_epoch(folder, tmp_path):
    loader = DataLoader(
        dataset(folder),
        batch_size=4,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        worker_init_fn=record_worker(str(tmp_path)),
        seed=2,
    )
    epochs = [sorted(torch.cat([y for _, y in loader]).tolist()) for _ in range(3)]
    assert epochs[0] == epochs[1] == epochs[2] == sorted([0] * 6 + [1] * 6 + [2] * 6)
    assert len(list(tmp_path.iterdir())) == 2  # two workers, started once


def test_resume_mid_epoch_gives_the_remaining_batches(folder):
    full = DataLoader(dataset(folder), batch_size=4, shuffle=True, num_workers=2, seed=9)
    targets = [y for _, y in full]
    loader = DataLoader(dataset(folder), batch_size=4, shuffle=True, num_workers=2, seed=9)
    iterator = iter(loader)
    next(iterator), next(iterator)
    state = loader.state_dict()
    del iterator
    resumed = DataLoader(dataset(folder), batch_size=4, shuffle=True, num_workers=2, seed=9)
    resumed.load_state_dict(state)
    rest = [y for _, y in resumed]
    assert len(rest) == 3
    assert all(torch.equal(a, b) for a, b in zip(rest, targets[2:]))


def test_a_replaced_sample_is_reported_in_the_main_process(folder, tmp_path):
    import shutil

    root = tmp_path / "damaged"
    shutil.copytree(folder, root)
    (root / "b" / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    loader = DataLoader(dataset(root), batch_size=4, num_workers=2, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(loader)
    assert sum(len(x) for x, _ in batches) == 18  # replaced, not dropped
    assert [key for key, _ in loader.errors] == [str(root / "b" / "2.jpg")]
    assert [str(w.message) for w in caught if "replaced" in str(w.message)] == [
        f"fastprep: sample {root / 'b' / '2.jpg'} replaced: {loader.errors[0][1]}"
    ]


def test_custom_collate_gets_samples_built_in_the_workers(folder):
    seen: list[int] = []

    def collate(samples):
        seen.append(len(samples))  # runs in a worker: this list stays empty here
        images, targets = zip(*samples)
        return {"x": torch.stack(images), "y": torch.tensor(targets)}

    batches = list(DataLoader(dataset(folder), batch_size=4, num_workers=2, collate_fn=collate))
    assert [len(b["y"]) for b in batches] == [4, 4, 4, 4, 2]
    assert all(b["x"].shape[1:] == (3, 24, 24) for b in batches)
    assert seen == []


def test_samples_found_intact_by_any_worker_are_known_to_all(folder):
    """The marks that let later epochs stop reading a JPEG after its crop
    live in shared memory: the main process sees every worker's."""
    loader = DataLoader(dataset(folder), batch_size=4, shuffle=True, num_workers=2, seed=4)
    list(loader)
    assert loader._intact is not None and loader._intact.all()
    crops = [x for x, _ in loader]  # epoch 1: read up to the crops only
    assert sum(len(x) for x in crops) == 18


class Boom(RuntimeError):
    pass


def explode(image):
    raise Boom("a tail step failed")


def test_an_error_in_a_workers_tail_reaches_the_training_loop(folder):
    transform = T.Compose([T.RandomResizedCrop(24), T.PILToTensor(), T.Lambda(explode)])
    loader = DataLoader(dataset(folder, transform), batch_size=4, num_workers=2)
    assert loader._tail_in_processes()
    with pytest.raises(Boom, match="a tail step failed"):
        next(iter(loader))


@pytest.mark.parametrize("persistent", [False, True])
def test_leaving_an_epoch_early_then_starting_again(folder, persistent):
    loader = DataLoader(
        dataset(folder),
        batch_size=4,
        shuffle=True,
        num_workers=2,
        persistent_workers=persistent,
        seed=3,
    )
    for i, _ in enumerate(loader):
        if i == 1:
            break
    # The abandoned pass's batches never leak into the next one.
    assert sum(len(y) for _, y in loader) == 18
    assert sum(len(y) for _, y in loader) == 18


def test_hugging_face_dataset_with_a_python_tail_in_worker_processes(folder, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(folder), split="train", cache_dir=str(tmp_path)
    )
    tf = augment()

    def transforms(examples):
        examples["pixel_values"] = [tf(img.convert("RGB")) for img in examples["image"]]
        del examples["image"]
        return examples

    ds.set_transform(transforms)
    loader = DataLoader(ds, batch_size=4, num_workers=2, seed=2)
    assert type(loader) is DataLoader and loader._tail_in_processes()
    ours = list(loader)
    theirs = list(TorchDataLoader(ds, batch_size=4))
    assert len(ours) == len(theirs) == 5
    for o, t in zip(ours, theirs):
        assert set(o) == set(t) == {"pixel_values", "label"}
        assert o["pixel_values"].shape == t["pixel_values"].shape == (len(t["label"]), 3, 24, 24)
        assert torch.equal(o["label"], t["label"])
