"""DataLoader with a torchvision tail: ``RandomResizedCrop(224) +
RandomHorizontalFlip`` fused in Rust, then ``TrivialAugmentWide``,
``ConvertImageDtype``, ``Normalize``, ``RandomErasing`` as torchvision code
on the decoded tensors (issue 13). Same ImageFolder (the ``imagenet`` corpus
set, see test_loader_bench.py) and the same transform object for both
contenders, at the same CPU budget:

* ``torch-pil-w{N}``: ``torch.utils.data.DataLoader`` (PIL decoding, N worker
  processes, persistent);
* ``fastprep-t{N}``: ``fastprep.torch.DataLoader`` over the same dataset with
  the same arguments (only the class differs): one worker is a Rust thread
  and the tail on this process's threads; N >= 2 workers are processes, each
  building whole batches (one Rust thread, then the torchvision tail);
* ``fastprep-threads-t2``: the same with the tail on two threads of this
  process (``multiprocessing_context="spawn"`` keeps it there), to show what
  the worker processes gain.

Both drain their workers at the end of each epoch, about one batch time
lost per epoch: the folder's 384 images are listed ``REPEAT`` times
(``FASTPREP_AUGMENT_REPEAT``, default 4: 24 batches an epoch) so that this
loss weighs less, as in real epochs of thousands of batches.

    python -m pytest benches/test_loader_augment_bench.py --benchmark-json out.json
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from test_loader_bench import BATCH, image_folder  # noqa: E402

#: Epoch length: the 384-image folder listed this many times. Worker
#: pipelines (torch's and fastprep's) drain at each epoch's end, about one
#: batch time lost per epoch: with 6 batches an epoch that loss weighs far
#: more than in a real epoch of thousands of batches.
REPEAT = int(os.environ.get("FASTPREP_AUGMENT_REPEAT", "4"))

CONTENDERS = {
    "torch-pil-w1": ("torch", 1, 1),
    "torch-pil-w2": ("torch", 2, 2),
    "fastprep-t1": ("fastprep", 1, 1),
    "fastprep-t2": ("fastprep", 2, 2),
    # The tail on this process's threads instead of worker processes (a
    # non-fork context keeps it there): what worker processes gain.
    "fastprep-threads-t2": ("fastprep-threads", 2, 2),
}


def transform():
    T = torchvision.transforms
    return T.Compose(
        [
            T.RandomResizedCrop(224),
            T.RandomHorizontalFlip(),
            T.TrivialAugmentWide(),
            T.PILToTensor(),
            T.ConvertImageDtype(torch.float),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            T.RandomErasing(0.25),
        ]
    )


def make_loader(name: str):
    library, workers, _ = CONTENDERS[name]
    torch.set_num_threads(1)
    dataset = torchvision.datasets.ImageFolder(str(image_folder()), transform=transform())
    # The folder's list repeated: longer epochs, as real ones are (the files
    # are the same, read from the page cache by both contenders).
    dataset.samples = dataset.samples * REPEAT
    dataset.imgs = dataset.samples
    dataset.targets = [target for _, target in dataset.samples]
    # The same arguments for both: only the class differs.
    options = {
        "batch_size": BATCH,
        "shuffle": True,
        "num_workers": workers,
        "persistent_workers": True,
    }
    if library.startswith("fastprep"):
        from fastprep.torch import DataLoader

        if library == "fastprep-threads":
            return DataLoader(dataset, multiprocessing_context="spawn", **options)
        return DataLoader(dataset, **options)
    return torch.utils.data.DataLoader(dataset, **options)


def epoch(loader) -> int:
    seen = 0
    for images, _ in loader:
        assert images.shape[1:] == (3, 224, 224) and images.dtype == torch.float32
        seen += images.shape[0]
    return seen


@pytest.mark.parametrize("name", list(CONTENDERS))
def test_loader_augment_throughput(benchmark, name):
    loader = make_loader(name)
    images = epoch(loader)  # warm-up
    _, _, cores = CONTENDERS[name]
    benchmark.group = "loader: RRC(224)+flip+TrivialAugmentWide+Normalize+RandomErasing"
    benchmark.extra_info.update({"contender": name, "images": images, "threads": cores})
    benchmark.pedantic(lambda: epoch(loader), rounds=3, iterations=1, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["images_per_s"] = round(images / stats.stats.median, 1)
