"""DataLoader benchmarks: images/s delivered to a training loop, and peak RSS.

The task is the standard training input pipeline: JPEG files in an
ImageFolder layout (the ``imagenet`` corpus set, 500x375, 384 files in two
classes), ``RandomResizedCrop(224) + RandomHorizontalFlip``, batches of 64 as
uint8 ``[B, 3, 224, 224]`` tensors plus class targets. One round is one
epoch; the loop only touches each batch.

Contenders, at the same CPU budget (``cores``: 1 or 2):

* ``torch-pil``: ``torch.utils.data.DataLoader`` over ``torchvision.datasets.
  ImageFolder`` (PIL decoding) with torchvision transforms, ``num_workers``
  0 (1 core, in the loop's process), 1 (1 core) and 2 (2 cores), persistent
  workers;
* ``torch-tvio``: the same loader over a dataset decoding with
  ``torchvision.io.decode_jpeg`` and ``transforms.v2`` (0 and 2 workers);
* ``fastprep``: ``fastprep.torch.DataLoader`` with ``num_workers`` Rust
  threads (1 and 2).

Peak RSS (the loop's process plus its workers, sampled from /proc) is
measured in a fresh process per contender: ``test_peak_rss`` (the fastprep
children do not import torchvision, as a fastprep user need not).

    python -m pytest benches/test_loader_bench.py --benchmark-json out.json
    python benches/report.py out.json
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("torchvision") is None:
    pytest.skip("torchvision is not installed", allow_module_level=True)

HERE = Path(__file__).resolve().parent
BATCH = 64
COPIES = 2  # per class: 96 photos x 2 copies x 2 classes = 384 files

CONTENDERS = {
    # name: (library, workers, cores)
    "torch-pil-w0": ("torch-pil", 0, 1),
    "torch-pil-w1": ("torch-pil", 1, 1),
    "torch-pil-w2": ("torch-pil", 2, 2),
    "torch-tvio-w0": ("torch-tvio", 0, 1),
    "torch-tvio-w2": ("torch-tvio", 2, 2),
    "fastprep-t1": ("fastprep", 1, 1),
    "fastprep-t2": ("fastprep", 2, 2),
}


def image_folder() -> Path:
    """The corpus as an ImageFolder tree (hard links: no extra disk)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from corpus import image_folder as build

    return build(copies=COPIES)


class DecodeJpegFolder(torch.utils.data.Dataset):
    """ImageFolder, decoding with torchvision.io (libjpeg-turbo in torch)."""

    def __init__(self, root: str, transform):
        import torchvision

        self.inner = torchvision.datasets.ImageFolder(root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.inner.samples)

    def __getitem__(self, index: int):
        import torchvision

        path, target = self.inner.samples[index]
        image = torchvision.io.decode_jpeg(torchvision.io.read_file(path))
        return self.transform(image), target


def make_loader(name: str, root: Path):
    """The loader for one contender, ready to iterate epochs."""
    library, workers, _ = CONTENDERS[name]
    torch.set_num_threads(1)  # one core per worker, as the budget says
    if library == "fastprep":
        from fastprep.torch import DataLoader, train

        return DataLoader(
            str(root),
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            transform=train(224),
            seed=0,
        )
    import torchvision  # only the torch contenders pay for importing it
    from torchvision import transforms as T

    if library == "torch-pil":
        dataset = torchvision.datasets.ImageFolder(
            str(root),
            transform=T.Compose(
                [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.PILToTensor()]
            ),
        )
    else:
        from torchvision.transforms import v2

        dataset = DecodeJpegFolder(
            str(root),
            v2.Compose([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip()]),
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers else None,
    )


def epoch(loader) -> int:
    seen = 0
    for batch in loader:
        images = batch["image"] if isinstance(batch, dict) else batch[0]
        assert images.shape[1:] == (3, 224, 224) and images.dtype == torch.uint8
        seen += images.shape[0]
    return seen


@pytest.mark.parametrize("name", list(CONTENDERS))
def test_loader_throughput(benchmark, name):
    root = image_folder()
    loader = make_loader(name, root)
    images = epoch(loader)  # warm-up: workers started, files cached
    _, _, cores = CONTENDERS[name]
    benchmark.group = "loader: RandomResizedCrop(224)+flip, batch 64"
    benchmark.extra_info.update(
        {
            "contender": name,
            "images": images,
            "threads": cores,
            "task": "loader",
            "corpus": "imagenet",
        }
    )
    benchmark.pedantic(lambda: epoch(loader), rounds=5, iterations=1, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        rate = images / stats.stats.median
        benchmark.extra_info["images_per_s"] = round(rate, 1)
        benchmark.extra_info["images_per_s_per_core"] = round(rate / cores, 1)


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return total


CHILD = """
import json, sys
sys.path.insert(0, {here!r})
from test_loader_bench import make_loader, epoch, image_folder
loader = make_loader({name!r}, image_folder())
for _ in range(3):
    epoch(loader)
print(json.dumps({{"done": True}}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize(
    "name", ["torch-pil-w2", "torch-tvio-w2", "fastprep-t2", "torch-pil-w0", "fastprep-t1"]
)
def test_peak_rss(benchmark, name):
    """Peak resident memory of the whole process tree over three epochs."""
    image_folder()
    peak = 0

    def run() -> None:
        nonlocal peak
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD.format(here=str(HERE), name=name)],
            stdout=subprocess.PIPE,
            text=True,
        )
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.02)
        assert proc.returncode == 0
        assert json.loads(proc.stdout.read())["done"]

    benchmark.group = "loader peak RSS (3 epochs, process tree)"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({"contender": name, "peak_rss_mb": round(peak / 2**20, 1)})


def test_per_batch_python_overhead(benchmark):
    """What the loader costs beyond decoding: batches of 64 from prepared
    pixels (a ``fastprep prep`` shard held as an Arrow table), so no image is
    decoded and every microsecond is the loader's own (index draw, Arrow
    take, tensor hand-over, key list, prefetch thread)."""
    import numpy as np
    import pyarrow as pa
    from fastprep.torch import DataLoader

    n, side = 64 * 50, 32
    pixels = pa.FixedShapeTensorArray.from_numpy_ndarray(
        np.random.default_rng(0).integers(0, 255, (n, side, side, 3), dtype=np.uint8)
    )
    table = pa.table({"key": [str(i) for i in range(n)], "pixels": pixels})
    loader = DataLoader(table, batch_size=64, shuffle=True, seed=0, transform=None)

    def epoch_of_batches() -> int:
        return sum(1 for _ in loader)

    batches = epoch_of_batches()
    benchmark.group = "loader: per-batch overhead (no decoding)"
    benchmark.pedantic(epoch_of_batches, rounds=10, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["us_per_batch"] = round(stats.stats.median / batches * 1e6, 1)
        benchmark.extra_info["batches"] = batches
