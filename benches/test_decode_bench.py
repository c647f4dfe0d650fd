"""Decode benchmarks: fastprep against Pillow(-SIMD), OpenCV, simplejpeg and torchvision.

Three tasks, each over a whole corpus set (``imagenet``: 96 JPEGs of 500x375 /
375x500; ``instagram``: 32 JPEGs of 1080x1080; see ``benches/corpus.py``):

* ``decode``: full-size RGB;
* ``crop224``: shorter side to 256, then the centre 224x224 (torchvision
  ``Resize(256) + CenterCrop(224)``);
* ``resize224``: stretch to 224x224;
* ``floor`` (fastprep only): a 1/8-scale decode, the entropy-decoding floor
  the other tasks are measured against (``benches/report.py`` prints the
  crop and resize rows as a fraction of it).

Every row ends with RGB uint8 pixels (HxWx3; CHW tensors for torchvision) and
processes the whole set once per round from bytes already in memory, so file I/O
is excluded. Peers run on one thread (OpenCV and torch are told so); fastprep
runs on one thread and on every core (its ``images_per_s_per_core`` divides by
the thread count). The ``reduced`` peer variants use each library's DCT-domain
downscaling (Pillow ``draft``, ``IMREAD_REDUCED_COLOR_*``, simplejpeg
``min_height/min_width``), never below the size the task needs.

Libraries that are not importable skip, so the same file runs in the Pillow-SIMD
venv (``benches/setup_pillow_simd.sh``) for the Pillow rows alone. Results go in
``extra_info`` for ``benches/report.py``.
"""

from __future__ import annotations

import importlib
import io
import math
import os
from collections.abc import Iterator
from typing import Callable

import numpy as np
import pytest

TASKS = ("decode", "crop224", "resize224")
CORPORA = ("imagenet", "instagram")
CROP = 224
SHORTER = 256
#: Smallest shorter side the decoded image may have before resizing, per task.
NEED = {"crop224": SHORTER, "resize224": CROP}


# --- helpers -------------------------------------------------------------------------------


def all_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def require(module: str):
    """Import ``module`` or skip (also when it is present but fails to import, as
    fastprep does before its Rust core is built)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} not importable: {exc}")


def shorter_side_size(width: int, height: int, shorter: int = SHORTER) -> tuple[int, int]:
    """``(width, height)`` with the shorter side ``shorter``, as torchvision's Resize(int)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def center_crop_box(width: int, height: int, crop: int = CROP) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the centre crop, as torchvision's CenterCrop."""
    top = round((height - crop) / 2.0)
    left = round((width - crop) / 2.0)
    return left, top, left + crop, top + crop


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a JPEG's SOF marker, or None. Takes microseconds; the
    OpenCV ``reduced`` rows need the size to choose ``IMREAD_REDUCED_COLOR_*``."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > end:
                return None
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            return height, width
        if marker == 0xDA:  # scan data before any frame header
            return None
        pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
    return None


def reduction_for(height: int, width: int, need: int) -> int:
    """Largest libjpeg scale denominator in (8, 4, 2) that keeps the shorter side
    ``>= need`` (libjpeg rounds scaled sizes up), else 1."""
    short = min(height, width)
    for denom in (8, 4, 2):
        if math.ceil(short / denom) >= need:
            return denom
    return 1


def cases(reduced_name: str | None, extra: tuple[str, ...] = ()) -> Iterator:
    """Parameters ``(task, corpus_name, variant)``: ``plain`` for every task, plus
    ``reduced_name`` and ``extra`` for the resizing tasks."""
    for task in TASKS:
        for corpus_name in CORPORA:
            variants = ["plain"]
            if task != "decode":
                variants += ([reduced_name] if reduced_name else []) + list(extra)
            for variant in variants:
                yield pytest.param(task, corpus_name, variant, id=f"{task}-{corpus_name}-{variant}")


def check_output(task: str, pixels, source_hw: tuple[int, int], chw: bool = False) -> None:
    shape = tuple(pixels.shape)
    if chw:
        shape = shape[1:] + shape[:1]
    expected = (*source_hw, 3) if task == "decode" else (CROP, CROP, 3)
    assert shape == expected, f"{task}: got {tuple(pixels.shape)}, expected {expected}"


def bench_per_image(
    run_bench,
    fn: Callable,
    datas: list,
    task: str,
    corpus_name: str,
    source_hw: tuple[int, int],
    chw: bool = False,
    **info,
) -> None:
    """Time ``fn`` over every item of ``datas``, once per round, on this thread."""
    check_output(task, fn(datas[0]), source_hw, chw=chw)

    def process_all():
        for data in datas:
            fn(data)

    run_bench(process_all, len(datas), threads=1, task=task, corpus=corpus_name, **info)


# --- fastprep ------------------------------------------------------------------------------

THREADS = sorted({1, all_cores()})
FASTPREP_TASK_OPTIONS = {
    "decode": {"size": None},
    "crop224": {
        "size": CROP,
        "mode": "center_crop",
        "resize_shorter": SHORTER,
        "filter": "bilinear",
    },
    "resize224": {"size": CROP, "mode": "resize", "filter": "bilinear"},
}


def fastprep_cases() -> Iterator:
    for task in TASKS:
        for corpus_name in CORPORA:
            for threads in THREADS:
                yield pytest.param(
                    task, corpus_name, threads, True, id=f"{task}-{corpus_name}-threads{threads}"
                )
            if task != "decode":  # what reduced decoding buys, on one thread
                yield pytest.param(
                    task, corpus_name, 1, False, id=f"{task}-{corpus_name}-threads1-noreduce"
                )


@pytest.mark.parametrize("task, corpus_name, threads, reduced", list(fastprep_cases()))
def test_fastprep(run_bench, corpus_bytes, task, corpus_name, threads, reduced):
    fastprep = require("fastprep")
    datas = corpus_bytes(corpus_name)
    options = dict(FASTPREP_TASK_OPTIONS[task], reduced_decode=reduced, num_threads=threads)

    def process_all():
        return fastprep.decode_images(datas, **options)

    batch = process_all()
    assert batch.num_rows == len(datas)
    errors = [e for e in batch.column("error").to_pylist() if e is not None]
    assert not errors, errors[:3]
    if task == "decode":
        first = (batch.column("height")[0].as_py(), batch.column("width")[0].as_py())
        assert first == jpeg_size(datas[0])
    else:
        pixels = fastprep.pixels_to_numpy(batch)
        assert pixels.shape == (len(datas), CROP, CROP, 3)
    version = getattr(fastprep, "__version__", "")
    label = "fastprep" if reduced else "fastprep, reduced_decode=False"
    run_bench(
        process_all,
        len(datas),
        threads=threads,
        task=task,
        corpus=corpus_name,
        library="fastprep",
        version=version,
        variant="reduced" if reduced else "plain",
        label=label,
    )


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_fastprep_floor(run_bench, corpus_bytes, corpus_name):
    """The entropy-decoding floor of a set: its JPEGs decoded at 1/8 scale
    (each 8x8 block's DC coefficient only: no inverse DCT to speak of, 1/64
    of the colour conversion) and resized to 32x32. Every task must read all
    the entropy-coded data this row reads, so no decoder beats this rate by
    much; the crop and resize rows are reported as a fraction of it."""
    fastprep = require("fastprep")
    datas = corpus_bytes(corpus_name)
    options = {"size": 32, "mode": "resize", "filter": "bilinear", "num_threads": 1}

    def process_all():
        return fastprep.decode_images(datas, **options)

    batch = process_all()
    assert batch.num_rows == len(datas) and batch.column("error").null_count == len(datas)
    run_bench(
        process_all,
        len(datas),
        threads=1,
        task="floor",
        corpus=corpus_name,
        library="fastprep",
        version=getattr(fastprep, "__version__", ""),
        variant="reduced",
        label="fastprep, 1/8-scale decode",
    )


# --- Pillow / Pillow-SIMD ------------------------------------------------------------------


def pillow_fn(task: str, draft: bool) -> Callable:
    from PIL import Image

    bilinear = getattr(Image, "Resampling", Image).BILINEAR

    def decode(data):
        image = Image.open(io.BytesIO(data))
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image)

    def crop224(data):
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        out_w, out_h = shorter_side_size(width, height)
        if draft:  # DCT scaling to the largest 1/2, 1/4, 1/8 still >= (out_w, out_h)
            image.draft("RGB", (out_w, out_h))
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = image.resize((out_w, out_h), bilinear)
        return np.asarray(image.crop(center_crop_box(out_w, out_h)))

    def resize224(data):
        image = Image.open(io.BytesIO(data))
        if draft:
            image.draft("RGB", (CROP, CROP))
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image.resize((CROP, CROP), bilinear))

    return {"decode": decode, "crop224": crop224, "resize224": resize224}[task]


@pytest.mark.parametrize("task, corpus_name, variant", list(cases("draft")))
def test_pillow(run_bench, corpus_bytes, task, corpus_name, variant):
    PIL = require("PIL")
    require("PIL.Image")
    version = PIL.__version__
    # Pillow-SIMD versions are Pillow's with a .postN suffix (e.g. 9.5.0.post1).
    simd = ".post" in version
    library = "Pillow-SIMD" if simd else "Pillow"
    datas = corpus_bytes(corpus_name)
    fn = pillow_fn(task, draft=variant == "draft")
    source_hw = jpeg_size(datas[0])
    label = f"{library} {version}" + (" + draft" if variant == "draft" else "")
    try:
        from PIL import features

        jpeg_lib = f"libjpeg-turbo {features.version_feature('libjpeg_turbo')}"
    except (ImportError, AttributeError, ValueError):  # older Pillow: no version_feature
        jpeg_lib = None
    bench_per_image(
        run_bench,
        fn,
        datas,
        task,
        corpus_name,
        source_hw,
        library=library,
        version=version,
        simd=simd,
        variant=variant,
        label=label,
        jpeg_lib=jpeg_lib,
    )


# --- OpenCV --------------------------------------------------------------------------------


def opencv_fn(task: str, reduced: bool) -> Callable:
    import cv2

    # OpenCV >= 4.10 can have libjpeg write RGB directly; not with the reduced flags.
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)
    full_flag = rgb_flag if rgb_flag is not None else cv2.IMREAD_COLOR
    flags_for = {
        1: full_flag,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }

    def load(data, need):
        """``(pixels, (source_h, source_w), is_bgr)``."""
        buf = np.frombuffer(data, dtype=np.uint8)
        if reduced:
            source_hw = jpeg_size(data)
            flags = flags_for[reduction_for(*source_hw, need)]
            pixels = cv2.imdecode(buf, flags)
        else:
            flags = full_flag
            pixels = cv2.imdecode(buf, flags)
            source_hw = pixels.shape[:2]
        return pixels, source_hw, flags != rgb_flag

    def finish(pixels, is_bgr):
        if is_bgr:
            return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)  # on the small output: cheap
        return np.ascontiguousarray(pixels)

    def decode(data):
        pixels, _, is_bgr = load(data, 0)
        return finish(pixels, is_bgr)

    def crop224(data):
        pixels, (height, width), is_bgr = load(data, SHORTER)
        out_w, out_h = shorter_side_size(width, height)
        pixels = cv2.resize(pixels, (out_w, out_h), interpolation=cv2.INTER_AREA)
        left, top, right, bottom = center_crop_box(out_w, out_h)
        return finish(pixels[top:bottom, left:right], is_bgr)

    def resize224(data):
        pixels, _, is_bgr = load(data, CROP)
        pixels = cv2.resize(pixels, (CROP, CROP), interpolation=cv2.INTER_AREA)
        return finish(pixels, is_bgr)

    return {"decode": decode, "crop224": crop224, "resize224": resize224}[task]


@pytest.mark.parametrize("task, corpus_name, variant", list(cases("reduced")))
def test_opencv(run_bench, corpus_bytes, task, corpus_name, variant):
    cv2 = require("cv2")
    cv2.setNumThreads(1)
    datas = corpus_bytes(corpus_name)
    fn = opencv_fn(task, reduced=variant == "reduced")
    label = f"OpenCV {cv2.__version__}" + (" + IMREAD_REDUCED" if variant == "reduced" else "")
    jpeg_lib = next(
        (
            line.split(":", 1)[1].strip()
            for line in cv2.getBuildInformation().splitlines()
            if line.strip().startswith("JPEG:")
        ),
        None,
    )
    bench_per_image(
        run_bench,
        fn,
        datas,
        task,
        corpus_name,
        jpeg_size(datas[0]),
        library="OpenCV",
        version=cv2.__version__,
        variant=variant,
        label=label,
        resize="cv2.INTER_AREA",
        jpeg_lib=jpeg_lib,
    )


# --- simplejpeg ----------------------------------------------------------------------------


def resizer() -> tuple[str, Callable]:
    """``(name, resize(pixels, width, height))``: OpenCV INTER_AREA, else Pillow bilinear."""
    try:
        import cv2
    except ImportError:
        from PIL import Image

        bilinear = getattr(Image, "Resampling", Image).BILINEAR

        def pil_resize(pixels, width, height):
            return np.asarray(Image.fromarray(pixels).resize((width, height), bilinear))

        return "PIL bilinear", pil_resize

    def cv2_resize(pixels, width, height):
        return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)

    return "cv2.INTER_AREA", cv2_resize


def simplejpeg_fn(task: str, reduced: bool) -> tuple[str, Callable]:
    import simplejpeg

    resize_name, resize = resizer()

    def load(data, need):
        """``(pixels, (source_h, source_w))``."""
        if reduced:  # libjpeg-turbo scaling (any n/8) keeping both sides >= need
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=need, min_width=need)
            return pixels, (height, width)
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")
        return pixels, pixels.shape[:2]

    def decode(data):
        return load(data, 0)[0]

    def crop224(data):
        pixels, (height, width) = load(data, SHORTER)
        out_w, out_h = shorter_side_size(width, height)
        pixels = resize(pixels, out_w, out_h)
        left, top, right, bottom = center_crop_box(out_w, out_h)
        return np.ascontiguousarray(pixels[top:bottom, left:right])

    def resize224(data):
        pixels, _ = load(data, CROP)
        return resize(pixels, CROP, CROP)

    return resize_name, {"decode": decode, "crop224": crop224, "resize224": resize224}[task]


@pytest.mark.parametrize("task, corpus_name, variant", list(cases("reduced")))
def test_simplejpeg(run_bench, corpus_bytes, task, corpus_name, variant):
    simplejpeg = require("simplejpeg")
    datas = corpus_bytes(corpus_name)
    resize_name, fn = simplejpeg_fn(task, reduced=variant == "reduced")
    version = getattr(simplejpeg, "__version__", "")
    label = f"simplejpeg {version}" + (" + min_height/width" if variant == "reduced" else "")
    bench_per_image(
        run_bench,
        fn,
        datas,
        task,
        corpus_name,
        jpeg_size(datas[0]),
        library="simplejpeg",
        version=version,
        variant=variant,
        label=label,
        resize=resize_name if task != "decode" else None,
    )


# --- torchvision ---------------------------------------------------------------------------


@pytest.mark.parametrize("task, corpus_name, variant", list(cases(None)))
def test_torchvision(run_bench, corpus_bytes, task, corpus_name, variant):
    torch = require("torch")
    torchvision = require("torchvision")
    tv_io = require("torchvision.io")
    functional = require("torchvision.transforms.v2.functional")
    torch.set_num_threads(1)
    datas = corpus_bytes(corpus_name)
    # torchvision decodes from a uint8 tensor (what torchvision.io.read_file gives).
    tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    rgb = tv_io.ImageReadMode.RGB

    def decode(tensor):
        return tv_io.decode_jpeg(tensor, mode=rgb)

    def crop224(tensor):
        image = functional.resize(tv_io.decode_jpeg(tensor, mode=rgb), [SHORTER], antialias=True)
        return functional.center_crop(image, [CROP, CROP])

    def resize224(tensor):
        return functional.resize(tv_io.decode_jpeg(tensor, mode=rgb), [CROP, CROP], antialias=True)

    fn = {"decode": decode, "crop224": crop224, "resize224": resize224}[task]
    label = f"torchvision {torchvision.__version__}"
    bench_per_image(
        run_bench,
        fn,
        tensors,
        task,
        corpus_name,
        jpeg_size(datas[0]),
        chw=True,
        library="torchvision",
        version=torchvision.__version__,
        variant=variant,
        label=label,
        torch=torch.__version__,
    )
