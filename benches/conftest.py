"""Fixtures for the decode benchmarks (``benches/test_decode_bench.py``).

Run::

    python -m pytest benches/test_decode_bench.py --benchmark-json out.json
    python benches/report.py out.json

Environment knobs:

* ``FASTPREP_BENCH_SECONDS``: measured time to aim for per benchmark (default 2.5);
  the round count follows from one untimed calibration round, clamped to
  [``FASTPREP_BENCH_MIN_ROUNDS`` (default 5), ``FASTPREP_BENCH_MAX_ROUNDS``
  (default 30)].
* ``FASTPREP_BENCH_CORPUS``: corpus folder (see ``benches/corpus.py``).
* ``FASTPREP_BENCH_MALLOPT=1``: pin glibc's malloc thresholds (see :func:`_pin_malloc`).

Run one library per pytest process (``run_all.sh`` does, with ``::test_pillow`` etc.):
glibc's malloc adapts to what a process has done, and a library's large per-image
buffers cost more or less depending on which benchmarks ran before it.

Note that ``-k decode`` matches every test (the file is ``test_decode_bench.py``);
select a task with ``-k "decode-"``, ``-k crop224`` or ``-k resize224``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

HERE = Path(__file__).resolve().parent

collect_ignore: list[str] = []
try:
    import pytest_benchmark  # noqa: F401
except ImportError:  # pragma: no cover - the harness itself is missing
    collect_ignore.append("test_decode_bench.py")


#: glibc malloc settings applied with ``FASTPREP_BENCH_MALLOPT=1`` (off by default).
MALLOPT = {"M_MMAP_THRESHOLD": (-3, 32 << 20), "M_TRIM_THRESHOLD": (-1, 128 << 20)}
_malloc_note = "glibc defaults"


def _pin_malloc() -> str:
    """With ``FASTPREP_BENCH_MALLOPT=1``, pin glibc's mmap and trim thresholds.

    glibc adapts both thresholds as a process runs, so what a multi-megabyte
    allocation costs (heap reuse, or a fresh mmap that page-faults) depends on what
    the process did before. Measured here: Pillow's full-size 1080x1080 decode +
    ``np.asarray`` ran at ~120 images/s in a fresh process and ~300 images/s after
    other benchmarks had run in the same one; pinned, ~300 either way. Pinning also
    changes fastprep's multi-threaded numbers, in both directions, so it is off by
    default: ``run_all.sh`` instead runs each library in its own pytest process, so
    that no library's numbers depend on another's, and each sees the allocator as
    its users do. The JSON's ``machine_info["malloc"]`` records which was used.
    """
    if os.environ.get("FASTPREP_BENCH_MALLOPT", "0") != "1":
        return "glibc defaults"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "default (not glibc)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = all(libc.mallopt(param, value) == 1 for param, value in MALLOPT.values())
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return "glibc defaults (mallopt failed)"
    return ", ".join(f"{name}={value >> 20}MiB" for name, (_, value) in MALLOPT.items())


def pytest_configure(config):
    global _malloc_note
    _malloc_note = _pin_malloc()
    # Peers run single-threaded: one core each, like one data-loader worker.
    try:
        import cv2
    except ImportError:
        pass
    else:
        cv2.setNumThreads(1)


if not collect_ignore:  # the hook exists only with pytest-benchmark

    def pytest_benchmark_update_machine_info(config, machine_info):
        machine_info["malloc"] = _malloc_note


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


TARGET_SECONDS = _env_float("FASTPREP_BENCH_SECONDS", 2.5)
MIN_ROUNDS = int(_env_float("FASTPREP_BENCH_MIN_ROUNDS", 5))
MAX_ROUNDS = int(_env_float("FASTPREP_BENCH_MAX_ROUNDS", 30))


@pytest.fixture(scope="session")
def corpus_bytes() -> Callable[[str], list[bytes]]:
    """``corpus_bytes(name)``: the set's files, read once into memory (I/O excluded)."""
    if str(HERE) not in sys.path:  # import corpus.py from beside this file
        sys.path.insert(0, str(HERE))
    from corpus import corpus

    cache: dict[str, list[bytes]] = {}

    def load(name: str) -> list[bytes]:
        if name not in cache:
            cache[name] = [path.read_bytes() for path in corpus(name)]
        return cache[name]

    return load


@pytest.fixture
def run_bench(benchmark):
    """``run_bench(process_all, n_images, threads=1, **info)``.

    ``process_all()`` handles the whole set once. One untimed round warms up and
    calibrates the round count; the timed rounds follow. ``extra_info`` gets
    ``images``, ``threads``, every ``info`` item and, when timing is on,
    ``images_per_s`` and ``images_per_s_per_core`` (from the median round).
    """

    def run(process_all: Callable[[], object], n_images: int, threads: int = 1, **info):
        benchmark.extra_info.update(info)
        benchmark.extra_info["images"] = n_images
        benchmark.extra_info["threads"] = threads
        benchmark.group = f"{info.get('task')} / {info.get('corpus')}"
        start = time.perf_counter()
        process_all()
        elapsed = time.perf_counter() - start
        rounds = min(MAX_ROUNDS, max(MIN_ROUNDS, math.ceil(TARGET_SECONDS / max(elapsed, 1e-6))))
        benchmark.pedantic(process_all, rounds=rounds, iterations=1, warmup_rounds=0)
        stats = getattr(benchmark, "stats", None)
        if stats is not None and getattr(stats, "stats", None) is not None:
            rate = n_images / stats.stats.median
            benchmark.extra_info["images_per_s"] = round(rate, 2)
            benchmark.extra_info["images_per_s_per_core"] = round(rate / threads, 2)

    return run
