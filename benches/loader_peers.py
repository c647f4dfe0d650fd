"""One loader contender, one process: images/s delivered to a training loop.

The loader task of ``test_loader_bench.py`` (ImageFolder of the ``imagenet``
corpus set, 384 JPEGs in two classes, batches of 64 uint8 images of 224x224),
run by one library at a time, so that each peer runs in its own virtual
environment and this script needs neither fastprep nor pytest for the peers:

* ``dali``: NVIDIA DALI CPU pipeline (``device_id=None``, ``num_threads``):
  ``fn.readers.file`` (shuffled), train: ``fn.decoders.image_random_crop``
  (decode fused with RandomResizedCrop's crop: only the window is decoded),
  ``fn.resize`` to 224x224, ``fn.flip`` with ``fn.random.coin_flip``; eval:
  ``fn.decoders.image``, ``fn.resize(resize_shorter=256)``, ``fn.crop(224)``.
  uint8 HWC (``--layout chw``: ``fn.crop_mirror_normalize`` to uint8 CHW
  instead of the flip). Default prefetch queue. ``.venv-dali``.
* ``ffcv``: FFCV 1.0.2 ``Loader`` over a ``.beton`` holding the same JPEG
  bytes (an ``RGBImageField`` in JPEG mode, fed the files' bytes rather than
  re-encoded pixels, see :func:`write_beton`), train:
  ``RandomResizedCropRGBImageDecoder((224, 224))``, ``RandomHorizontalFlip``;
  eval: ``CenterCropRGBImageDecoder((224, 224), ratio=224/256)``; then
  ``ToTensor``, ``ToTorchImage`` (uint8, channels-last view of
  ``[B, 3, 224, 224]``). ``num_workers`` threads, ``OrderOption.RANDOM``,
  ``os_cache=True``. ``.venv-ffcv``.
* ``fastprep-loader``: ``fastprep.torch.DataLoader(folder, transform=train(224)
  or evaluate(224), num_workers=threads)``. A venv with fastprep and torch.
* ``fastprep-store``: ``fastprep.torch.DataLoader(store, ...)`` as
  ``fastprep-loader``, on a ``fastprep prep`` output folder (``--store DIR``,
  e.g. a ``store="resized"`` JPEG store written by ``store_table.py``) instead
  of the ImageFolder: the images are read from the store's shards.
* ``fastprep-decode``: bare ``fastprep.decode_images`` on each batch's 64 paths
  (random order, one call per batch, ``num_threads``): uint8 ``[64, 224, 224, 3]``
  numpy, no torch. A venv with fastprep.
* ``torch-pil``: ``torch.utils.data.DataLoader`` over torchvision's
  ``ImageFolder`` (PIL) with ``RandomResizedCrop(224) + RandomHorizontalFlip +
  PILToTensor`` (eval: ``Resize(256) + CenterCrop(224) + PILToTensor``);
  ``--workers`` processes (0: in the loop's process), persistent, prefetch 2.

Every contender drops the last partial batch (384 = 6 x 64, so none) and the
loop only checks each batch's shape and dtype. ``--warmup`` epochs run first
(files in the page cache, workers started, FFCV's JIT compiled), then
``--epochs`` timed epochs; the JSON line printed last gives the per-epoch
times and images/s of the median epoch. CPU pinning is the caller's (see
``loader_table.py``: ``taskset``).

    .venv-dali/bin/python benches/loader_peers.py dali --corpus benches/.corpus/imagefolder \\
        --threads 1 --epochs 5 --mode train
    .venv-ffcv/bin/python benches/loader_peers.py ffcv --corpus benches/.corpus/imagefolder \\
        --threads 1 --epochs 5            # writes <corpus>.beton first when missing
    .venv-ffcv/bin/python benches/loader_peers.py ffcv-write --corpus ... --beton out.beton
    .venv/bin/python benches/loader_peers.py fastprep-store --store benches/.corpus/store-s256-q90
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BATCH = 64
SIZE = 224
RESIZE = 256  # eval: shorter side, then the centre 224x224
EXTENSIONS = (".jpg", ".jpeg", ".JPG", ".JPEG")
LIBRARIES = ("dali", "ffcv", "fastprep-loader", "fastprep-store", "fastprep-decode", "torch-pil")


def image_folder_samples(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(path, class index) in torchvision ImageFolder's order: sorted classes, sorted files."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    samples = [
        (path, index)
        for index, name in enumerate(classes)
        for path in sorted((root / name).iterdir())
        if path.suffix in EXTENSIONS
    ]
    if not samples:
        raise SystemExit(f"no JPEGs in an ImageFolder layout under {root}")
    return samples, classes


def check_batch(images, layout: str) -> int:
    """Batch size; fails unless it is uint8 [B, 224, 224, 3] (hwc) or [B, 3, 224, 224]."""
    shape = tuple(images.shape)
    want = (SIZE, SIZE, 3) if layout == "hwc" else (3, SIZE, SIZE)
    dtype = str(images.dtype)
    if shape[1:] != want or not dtype.endswith("uint8"):
        raise AssertionError(f"batch {shape} {dtype}, expected [B, {', '.join(map(str, want))}]")
    return shape[0]


# -- DALI -----------------------------------------------------------------------------


def dali_epochs(args: argparse.Namespace):
    import numpy as np
    import nvidia.dali as dali
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    layout = args.layout or "hwc"

    @dali.pipeline_def(batch_size=BATCH, num_threads=args.threads, device_id=None, seed=args.seed)
    def pipeline():
        jpegs, labels = fn.readers.file(
            file_root=str(args.corpus),
            random_shuffle=args.mode == "train",
            name="Reader",
        )
        if args.mode == "train":
            images = fn.decoders.image_random_crop(
                jpegs,
                device="cpu",
                output_type=types.RGB,
                random_area=[0.08, 1.0],
                random_aspect_ratio=[3 / 4, 4 / 3],
                num_attempts=10,
                use_fast_idct=args.fast_idct,
            )
            images = fn.resize(images, resize_x=SIZE, resize_y=SIZE)
            mirror = fn.random.coin_flip(probability=0.5)
            if layout == "chw":
                images = fn.crop_mirror_normalize(
                    images, dtype=types.UINT8, output_layout="CHW", mirror=mirror
                )
            else:
                images = fn.flip(images, horizontal=mirror)
        else:
            images = fn.decoders.image(
                jpegs, device="cpu", output_type=types.RGB, use_fast_idct=args.fast_idct
            )
            images = fn.resize(images, resize_shorter=RESIZE)
            if layout == "chw":
                images = fn.crop_mirror_normalize(
                    images, dtype=types.UINT8, output_layout="CHW", crop=(SIZE, SIZE)
                )
            else:
                images = fn.crop(images, crop=(SIZE, SIZE))
        return images, labels

    pipe = pipeline()
    pipe.build()
    samples = pipe.epoch_size("Reader")
    batches = samples // BATCH  # drop_last, as the other loaders

    def epoch() -> int:
        seen = 0
        for _ in range(batches):
            images, labels = pipe.run()
            array = images.as_array()  # dense [64, ...] uint8, no copy
            seen += check_batch(array, layout)
            assert np.asarray(labels.as_array()).shape[0] == array.shape[0]
        return seen

    info = {"version": dali.__version__, "layout": layout, "fast_idct": args.fast_idct}
    return epoch, info


# -- FFCV -----------------------------------------------------------------------------


def _jpeg_bytes_encode(self, destination, value, malloc):
    """``RGBImageField.encode`` for JPEG bytes: stored as they are, in 'jpg' mode.

    FFCV's own 'jpg' mode re-encodes decoded pixels (OpenCV, quality 90); this
    keeps the corpus's bytes, so FFCV decodes exactly the JPEGs the others do.
    ``value`` is ``(bytes, height, width)``.
    """
    import numpy as np
    from ffcv.fields.rgb_image import IMAGE_MODES

    data, height, width = value
    data = np.frombuffer(data, dtype=np.uint8)
    destination["mode"] = IMAGE_MODES["jpg"]
    destination["height"], destination["width"] = height, width
    destination["data_ptr"], storage = malloc(data.nbytes)
    storage[:] = data


class _JpegFolder:
    """Indexed dataset for ffcv's writer: ((bytes, height, width), label)."""

    def __init__(self, samples: list[tuple[Path, int]]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image

        path, label = self.samples[index]
        data = path.read_bytes()
        with Image.open(path) as image:  # header only: the size the JPEG decodes to
            if image.format != "JPEG":
                raise ValueError(f"{path} is not a JPEG")
            width, height = image.size
        return (data, height, width), label


def write_beton(corpus: Path, beton: Path, workers: int) -> Path:
    """Write ``corpus`` (ImageFolder) to ``beton``: image (JPEG bytes) + label."""
    import types

    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    samples, _ = image_folder_samples(corpus)
    field = RGBImageField(write_mode="jpg")  # type id stays RGBImageField's
    field.encode = types.MethodType(_jpeg_bytes_encode, field)
    beton.parent.mkdir(parents=True, exist_ok=True)
    tmp = beton.with_name(beton.name + ".tmp")
    writer = DatasetWriter(
        str(tmp), {"image": field, "label": IntField()}, num_workers=max(1, workers)
    )
    writer.from_indexed_dataset(_JpegFolder(samples))
    tmp.replace(beton)
    return beton


def default_beton(corpus: Path) -> Path:
    return corpus.parent / f"{corpus.name}.beton"


def ffcv_epochs(args: argparse.Namespace):
    import importlib.metadata

    import torch
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import (
        CenterCropRGBImageDecoder,
        RandomResizedCropRGBImageDecoder,
    )
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage

    torch.set_num_threads(1)
    beton = args.beton or default_beton(args.corpus)
    written = False
    marker = args.corpus / ".complete"  # corpus.image_folder's; newer: rebuilt
    if not beton.exists() or (marker.exists() and marker.stat().st_mtime > beton.stat().st_mtime):
        # In a child process: see main()'s ffcv-write about numba's threading layer.
        write = [sys.executable, __file__, "ffcv-write", "--corpus", str(args.corpus)]
        write += ["--beton", str(beton), "--threads", str(args.threads)]
        subprocess.run(write, check=True, stdout=subprocess.DEVNULL)
        written = True
    if args.mode == "train":
        image_pipeline = [
            RandomResizedCropRGBImageDecoder((SIZE, SIZE)),
            RandomHorizontalFlip(),
        ]
    else:
        image_pipeline = [CenterCropRGBImageDecoder((SIZE, SIZE), ratio=SIZE / RESIZE)]
    # ToTorchImage: [B, H, W, 3] -> [B, 3, H, W] as a channels-last view (no copy).
    image_pipeline += [ToTensor(), ToTorchImage()]
    loader = Loader(
        str(beton),
        batch_size=BATCH,
        num_workers=args.threads,
        order=OrderOption.RANDOM if args.mode == "train" else OrderOption.SEQUENTIAL,
        os_cache=True,
        drop_last=True,
        seed=args.seed,
        pipelines={"image": image_pipeline, "label": [IntDecoder(), ToTensor()]},
    )

    import numba

    def epoch() -> int:
        seen = 0
        for images, labels in loader:
            seen += check_batch(images, "chw")
            assert labels.shape[0] == images.shape[0]
        # Known once parallel code has run: tbb, omp or workqueue.
        info["numba_threading_layer"] = numba.threading_layer()
        return seen

    info = {
        "version": importlib.metadata.version("ffcv"),
        "numba": numba.__version__,
        "layout": "chw (channels-last view)",
        "beton": str(beton),
        "beton_written": written,
    }
    return epoch, info


# -- fastprep and torch ---------------------------------------------------------------


def fastprep_loader_epochs(args: argparse.Namespace, source: Path | None = None):
    import fastprep
    import torch
    from fastprep.torch import DataLoader, evaluate, train

    torch.set_num_threads(1)
    loader = DataLoader(
        str(source or args.corpus),
        batch_size=BATCH,
        shuffle=args.mode == "train",
        drop_last=True,
        num_workers=args.threads,
        transform=train(SIZE) if args.mode == "train" else evaluate(SIZE),
        seed=args.seed,
    )

    def epoch() -> int:
        return sum(check_batch(batch["image"], "chw") for batch in loader)

    return epoch, {"version": fastprep.__version__, "layout": "chw"}


def fastprep_store_epochs(args: argparse.Namespace):
    """``fastprep-loader`` on a prep output folder (``--store``) instead of the corpus."""
    if args.store is None:
        raise SystemExit("fastprep-store needs --store DIR (a fastprep prep output folder)")
    if not (args.store / "manifest.json").exists():
        raise SystemExit(f"{args.store} is not a fastprep prep output (no manifest.json)")
    epoch, info = fastprep_loader_epochs(args, source=args.store)
    return epoch, {**info, "store": str(args.store)}


def fastprep_decode_epochs(args: argparse.Namespace):
    import fastprep
    import numpy as np

    paths = [str(path) for path, _ in image_folder_samples(args.corpus)[0]]
    rng = np.random.default_rng(args.seed)
    if args.mode == "train":
        options = {"size": SIZE, "mode": "random_resized_crop", "flip_p": 0.5}
    else:
        options = {"size": SIZE, "mode": "center_crop", "resize_shorter": RESIZE}
    state = {"epoch": 0}

    def epoch() -> int:
        order = rng.permutation(len(paths)) if args.mode == "train" else range(len(paths))
        order = list(order)
        seen = 0
        for start in range(0, len(order) - BATCH + 1, BATCH):
            batch = [paths[i] for i in order[start : start + BATCH]]
            seed = args.seed * 1_000_003 + state["epoch"] * 1_009 + start
            decoded = fastprep.decode_images(batch, num_threads=args.threads, seed=seed, **options)
            seen += check_batch(fastprep.pixels_to_numpy(decoded), "hwc")
        state["epoch"] += 1
        return seen

    return epoch, {"version": fastprep.__version__, "layout": "hwc (numpy)"}


def torch_pil_epochs(args: argparse.Namespace):
    import torch
    import torchvision
    from torchvision import transforms as T

    torch.set_num_threads(1)
    if args.mode == "train":
        steps = [T.RandomResizedCrop(SIZE), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(RESIZE), T.CenterCrop(SIZE)]
    dataset = torchvision.datasets.ImageFolder(
        str(args.corpus), transform=T.Compose([*steps, T.PILToTensor()])
    )
    workers = args.workers if args.workers is not None else args.threads
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=args.mode == "train",
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers else None,
        generator=torch.Generator().manual_seed(args.seed),
    )

    def epoch() -> int:
        return sum(check_batch(images, "chw") for images, _ in loader)

    return epoch, {"version": torch.__version__, "workers": workers, "layout": "chw"}


RUNNERS = {
    "dali": dali_epochs,
    "ffcv": ffcv_epochs,
    "fastprep-loader": fastprep_loader_epochs,
    "fastprep-store": fastprep_store_epochs,
    "fastprep-decode": fastprep_decode_epochs,
    "torch-pil": torch_pil_epochs,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", choices=[*LIBRARIES, "ffcv-write"])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=Path(__file__).resolve().parent / ".corpus" / "imagefolder",
        help="ImageFolder root (default: benches/.corpus/imagefolder, see corpus.py)",
    )
    parser.add_argument("--threads", type=int, default=1, help="the core budget")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
    parser.add_argument("--mode", choices=("train", "eval"), default="train")
    parser.add_argument(
        "--beton", type=Path, default=None, help="FFCV file (default: <corpus>.beton)"
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="fastprep-store: a prep output folder"
    )
    parser.add_argument("--layout", choices=("hwc", "chw"), default=None, help="DALI output layout")
    parser.add_argument(
        "--fast-idct", action="store_true", help="DALI: libjpeg-turbo's fast IDCT (FFCV's default)"
    )
    parser.add_argument("--workers", type=int, default=None, help="torch-pil: worker processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.corpus = args.corpus.resolve()
    args.store = args.store.resolve() if args.store is not None else None
    if args.threads < 1:
        parser.error("--threads must be at least 1")

    if args.library == "ffcv-write":
        # FFCV's writer forks its workers; with numba's TBB threading layer
        # (chosen when a libtbb is installed, e.g. with libopencv-dev) the parent
        # then hangs at exit in numba's unload_tbb(). The writer runs no parallel
        # numba code, so any other layer will do.
        os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
        beton = args.beton or default_beton(args.corpus)
        start = time.perf_counter()
        write_beton(args.corpus, beton, args.threads)
        print(
            json.dumps(
                {
                    "beton": str(beton),
                    "bytes": beton.stat().st_size,
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
        )
        return 0

    epoch, info = RUNNERS[args.library](args)
    for _ in range(args.warmup):
        epoch()
    seconds = []
    images = 0
    for _ in range(args.epochs):
        start = time.perf_counter()
        images = epoch()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds) if seconds else float("nan")
    result = {
        "library": args.library,
        "mode": args.mode,
        "threads": args.threads,
        "images_per_epoch": images,
        "epochs": args.epochs,
        "epoch_seconds": [round(s, 4) for s in seconds],
        "images_per_s": round(images / median, 1) if seconds else None,
        "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
        **info,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
