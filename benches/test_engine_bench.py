"""Engine overhead: fastprep's image stage on a local Ray cluster against the
same stage in one process, on the same cores.

The work is ``prep``'s image stage (decode, shorter side 256 + centre crop
224, xxh3 + PDQ hashes) over the ``imagenet`` set (``benches/corpus.py``: 96
JPEGs of 500x375) repeated ``FASTPREP_BENCH_ENGINE_REPEAT`` times (default
16: 1,536 images) in blocks of 64 already in memory (Ray: already in the
object store), so reading is excluded on both sides.

* ``single process``: :class:`fastprep.pipeline.stages.ImageStage` with as
  many Rust threads as cores, block after block;
* ``ray AxC``: ``ray.data.from_arrow_refs(blocks).map_batches(DecodeImages,
  concurrency=A, num_cpus=C)`` materialised (outputs in the object store) on
  ``ray.init(num_cpus=cores)``; each actor runs C Rust threads (the CPUs Ray
  grants it). Every round starts its actors, as every Ray Data job does.

Each Ray row's ``extra_info`` has ``vs_single_process`` (its images/s over the
single-process images/s measured in the same test, interleaved) and, from
one run at half and one at full size, ``steady_vs_single_process``: the
marginal rate without the fixed start-up cost, and ``startup_s``.

    python -m pytest benches/test_engine_bench.py --benchmark-json engine.json
"""

from __future__ import annotations

import os
import statistics
import time

import pyarrow as pa
import pytest

pytest.importorskip("pytest_benchmark")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
import fastprep.ray as fpr  # noqa: E402
from fastprep.pipeline.stages import ImageStage  # noqa: E402


def all_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


CORES = all_cores()
REPEAT = int(os.environ.get("FASTPREP_BENCH_ENGINE_REPEAT", 16))
BLOCK = 64
OPTIONS = {"size": 224, "mode": "center_crop", "hashes": ("xxh3", "pdq")}
LAYOUTS = sorted({(1, CORES), (CORES, 1)})  # (actors, CPUs per actor)


@pytest.fixture(scope="module")
def blocks(corpus_bytes) -> list[pa.Table]:
    images = corpus_bytes("imagenet") * REPEAT
    table = pa.table(
        {"key": [str(i) for i in range(len(images))], "image": pa.array(images, pa.binary())}
    )
    return [table.slice(i, BLOCK) for i in range(0, table.num_rows, BLOCK)]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=CORES, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    yield
    ray.shutdown()


def single_process(blocks: list[pa.Table]) -> int:
    stage = ImageStage(num_threads=CORES, **OPTIONS)
    done = 0
    for block in blocks:
        done += stage(block.combine_chunks().to_batches()[0]).num_rows
    return done


def on_ray(refs: list, actors: int, cpus: int) -> int:
    ds = ray.data.from_arrow_refs(refs).map_batches(
        fpr.DecodeImages,
        fn_constructor_kwargs=OPTIONS,
        batch_format="pyarrow",
        batch_size=None,
        concurrency=actors,
        num_cpus=cpus,
    )
    return ds.materialize().count()


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def test_single_process_image_stage(run_bench, blocks):
    n = sum(b.num_rows for b in blocks)
    run_bench(
        lambda: single_process(blocks),
        n,
        threads=CORES,
        task="image stage",
        corpus="imagenet",
        library="fastprep",
        variant="single process",
    )


@pytest.mark.parametrize(("actors", "cpus"), LAYOUTS, ids=lambda v: str(v))
def test_ray_image_stage(run_bench, benchmark, cluster, blocks, actors, cpus):
    n = sum(b.num_rows for b in blocks)
    refs = [ray.put(b) for b in blocks]
    assert on_ray(refs, actors, cpus) == n
    run_bench(
        lambda: on_ray(refs, actors, cpus),
        n,
        threads=CORES,
        task="image stage",
        corpus="imagenet",
        library="fastprep",
        variant=f"ray {actors}x{cpus}",
    )
    # The baseline, measured now too (interleaving guards against drift).
    baseline = statistics.median(_seconds(single_process, blocks) for _ in range(3))
    info = benchmark.extra_info
    if "images_per_s" in info:
        info["single_process_images_per_s"] = round(n / baseline, 2)
        info["vs_single_process"] = round(info["images_per_s"] * baseline / n, 3)
    # Fixed start-up cost and marginal rate: one run at half size, one at full.
    half = refs[: len(refs) // 2]
    n_half = sum(b.num_rows for b in blocks[: len(refs) // 2])
    t_half = statistics.median(_seconds(on_ray, half, actors, cpus) for _ in range(2))
    t_full = statistics.median(_seconds(on_ray, refs, actors, cpus) for _ in range(2))
    if t_full > t_half:
        marginal = (n - n_half) / (t_full - t_half)
        info["steady_images_per_s"] = round(marginal, 2)
        info["steady_vs_single_process"] = round(marginal * baseline / n, 3)
        info["startup_s"] = round(max(0.0, t_full - n / marginal), 3)
    print(
        f"\nray {actors}x{cpus}: {info.get('images_per_s')} images/s, "
        f"single process {round(n / baseline, 1)} images/s, "
        f"ratio {info.get('vs_single_process')}, steady ratio "
        f"{info.get('steady_vs_single_process')}, start-up {info.get('startup_s')} s"
    )
