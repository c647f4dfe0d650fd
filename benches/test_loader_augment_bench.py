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
  building whole batches (one Rust thread, then the torchvision tail).

Both drain their workers at the end of each epoch (6 batches here), which
costs each about one batch time per epoch; longer epochs amortise it.

    python -m pytest benches/test_loader_augment_bench.py --benchmark-json out.json
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from test_loader_bench import BATCH, image_folder  # noqa: E402

CONTENDERS = {
    "torch-pil-w1": ("torch", 1, 1),
    "torch-pil-w2": ("torch", 2, 2),
    "fastprep-t1": ("fastprep", 1, 1),
    "fastprep-t2": ("fastprep", 2, 2),
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
    # The same arguments for both: only the class differs.
    options = {
        "batch_size": BATCH,
        "shuffle": True,
        "num_workers": workers,
        "persistent_workers": True,
    }
    if library == "fastprep":
        from fastprep.torch import DataLoader

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
