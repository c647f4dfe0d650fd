"""Hashing and near-duplicate search benchmarks: fastprep against the Python packages
people use for the same job.

Run::

    python -m pytest benches/test_hash_bench.py --benchmark-json out.json -s -p no:cacheprovider

About 5-7 minutes on 2 cores, most of it the two full 1,000,000-hash searches.
``test_summary`` (last) prints the rates and ratios (``-s`` to see them).

**Image hashes** (``imagenet`` set of ``benches/corpus.py``: 96 JPEGs of 500x375,
from bytes in memory; file I/O excluded):

* ``fastprep-1t`` / ``fastprep-Nt``: ``hash_images(datas, hashes=[h], num_threads=...)``
  (decode, EXIF orientation, Pillow's RGB view, hash; no pixels out).
* ``pdqhash`` / ``imagehash`` ``from bytes``: Pillow ``open`` + ``exif_transpose``
  (+ ``convert("RGB")`` and ``np.asarray`` for pdqhash), then ``pdqhash.compute`` or
  ``imagehash.phash/dhash``: what a user writes, giving the same hashes (checked).
* ``... decoded``: the peers on images decoded before timing (PIL images for
  imagehash, RGB arrays for pdqhash): the hash alone.
* ``all``: ``ahash + dhash + phash + pdq`` in one fastprep pass against one Pillow
  decode followed by the three imagehash functions and pdqhash.

Peers run on one thread. ``images_per_s_per_core`` divides by the thread count.

**Exact hashes** of the file bytes (``imagenet`` and ``instagram`` sets): fastprep's
``xxh3``/``blake3`` columns (``num_threads=1``; it also sniffs the format and reads
the header) against ``hashlib.sha256``, ``xxhash.xxh3_128_digest`` and
``blake3.blake3(...).digest()`` in a Python loop. ``mb_per_s`` is recorded too.

**Near-duplicate search**, exact, all pairs within the radius: ``N`` random hashes
(``FASTPREP_SEARCH_N``, default 1,000,000) plus ~1,000 planted near-copies
(0..radius bits flipped), 256-bit at radius 31 (PDQ) and 64-bit at radius 8
(imagehash):

* ``fastprep-1t``: ``find_near_duplicates(hashes, radius, num_threads=1)``, run in
  full, one round (``FASTPREP_SEARCH_THREADS`` changes the thread count,
  ``FASTPREP_SEARCH_FULL=0`` skips it). Checked: every planted pair is found, and
  for a subset of queries the pairs equal the numpy brute force.
* ``fastprep match_hashes-1t (est.)``: ``match_hashes(~4,000 queries, all,
  num_threads=1)`` (the ``leak_report`` path): its time less the index build (timed
  with one query), per query, times ``N``, plus the build. Query mode cannot skip
  the ``b <= a`` half of the candidates, so it costs about twice the pairs mode.
* ``numpy brute (est.)``: XOR + ``np.bitwise_count`` of a few queries against all
  ``N``, times ``N / 2`` (only pairs ``a < b``); never run in full (10^12 / 2 pairs).
* ``faiss IndexBinaryFlat (est.)``: ``range_search`` (one OpenMP thread) of a subset,
  times ``N`` (faiss searches every query against the whole index); the ``a<b only``
  row halves it, for a brute force that compared each pair once.
* ``faiss IndexBinaryMultiHash (est.)``: ``IndexBinaryMultiHash(d, d/16, 16)`` with ``nflip =
  radius // (d/16)``, the faiss equivalent of fastprep's multi-index hashing (exact
  by the pigeonhole argument); build time plus subset queries times ``N``.
  (``IndexBinaryHash`` hashes one 16-bit prefix and finds a pair only when that
  prefix is within ``nflip`` bits, so it is not exact at these radii: left out.)

Every faiss/numpy subset result is checked equal to fastprep's. faiss's
``range_search`` keeps distances *below* its radius, so it gets ``radius + 1``.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from typing import Callable

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")
pa = pytest.importorskip("pyarrow")
fastprep = pytest.importorskip("fastprep")
Image = pytest.importorskip("PIL.Image")
ImageOps = pytest.importorskip("PIL.ImageOps")

try:
    import imagehash
except ImportError:  # pragma: no cover
    imagehash = None
try:
    import pdqhash
except ImportError:  # pragma: no cover
    pdqhash = None
try:
    import xxhash
except ImportError:  # pragma: no cover
    xxhash = None
try:
    import blake3
except ImportError:  # pragma: no cover
    blake3 = None
try:
    import faiss
except ImportError:  # pragma: no cover
    faiss = None

SEARCH_N = int(os.environ.get("FASTPREP_SEARCH_N", "1000000"))
SEARCH_FULL = os.environ.get("FASTPREP_SEARCH_FULL", "1") != "0"
SEARCH_THREADS = int(os.environ.get("FASTPREP_SEARCH_THREADS", "1"))
PLANTED = 1000
IMAGE_CORPUS = "imagenet"

#: (group, row) -> items/s (median round), for ``test_summary``.
RATES: dict[tuple[str, str], float] = {}
#: (group, row) -> estimated or measured seconds for the whole search.
SEARCH_SECONDS: dict[tuple[str, str], float] = {}


def all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def need(module, name: str):
    if module is None:
        pytest.skip(f"{name} is not installed")
    return module


def record(benchmark, group: str, row: str) -> None:
    rate = benchmark.extra_info.get("images_per_s")
    if rate:
        RATES[(group, row)] = rate


# =============================================================================== images


def pil_displayed(data: bytes):
    img = Image.open(io.BytesIO(data))
    return ImageOps.exif_transpose(img)


def pdq_hex(bits) -> str:
    return f"{int(''.join(str(int(b)) for b in bits), 2):064x}"


@pytest.fixture(scope="module")
def images(corpus_bytes) -> list[bytes]:
    return corpus_bytes(IMAGE_CORPUS)


@pytest.fixture(scope="module")
def decoded(images):
    """The images decoded by Pillow before timing: PIL (displayed) and RGB arrays."""
    pil = []
    for data in images:
        img = pil_displayed(data).convert("RGB")
        img.load()
        pil.append(img)
    return pil, [np.asarray(img) for img in pil]


@pytest.fixture(scope="module")
def engine_hashes(images):
    batch = fastprep.hash_images(images, hashes=["ahash", "dhash", "phash", "pdq"])
    assert batch.column("error").null_count == len(images)
    return batch


def _check_same(engine_hashes, name: str, values: list[str]) -> bool:
    if name == "pdq":
        ours = [h.hex() for h in engine_hashes.column("pdq").to_pylist()]
    else:
        ours = [f"{h:016x}" for h in engine_hashes.column(name).to_pylist()]
    return ours == values


IMAGEHASH_FN = {"phash": "phash", "dhash": "dhash", "ahash": "average_hash"}


@pytest.mark.parametrize("hash_name", ["pdq", "phash", "dhash", "all"])
@pytest.mark.parametrize("threads", [1, "all"])
def test_fastprep_image_hash(run_bench, benchmark, images, hash_name, threads):
    n = all_cores() if threads == "all" else threads
    hashes = ["ahash", "dhash", "phash", "pdq"] if hash_name == "all" else [hash_name]

    def process_all():
        return fastprep.hash_images(images, hashes=hashes, num_threads=n)

    assert process_all().column("error").null_count == len(images)
    row = f"fastprep-{n}t"
    run_bench(
        process_all,
        len(images),
        threads=n,
        task=f"hash-{hash_name}",
        corpus=IMAGE_CORPUS,
        library=row,
        source="bytes",
    )
    record(benchmark, f"hash-{hash_name}", row)


@pytest.mark.parametrize("corpus_name", ["imagenet", "instagram"])
@pytest.mark.parametrize("hash_name", ["pdq", "pdq_fast"])
def test_fastprep_pdq_fast(run_bench, benchmark, corpus_bytes, corpus_name, hash_name):
    """``pdq_fast`` (PDQ of a JPEG decoded at a reduced DCT scale keeping both sides
    >= 256 px) against the exact ``pdq`` on one thread, with its agreement: the
    Hamming distance from each image's ``pdq_fast`` to its ``pdq`` (median, 90th
    percentile, maximum) goes into ``extra_info``. ImageNet-like 500x375 photos
    admit no reduction (half of 375 is below 256), so there both are the same."""
    images = corpus_bytes(corpus_name)

    def process_all():
        return fastprep.hash_images(images, hashes=[hash_name], num_threads=1)

    both = fastprep.hash_images(images, hashes=["pdq", "pdq_fast"], num_threads=1)
    assert both.column("error").null_count == len(images)
    distances = [
        int.from_bytes(bytes(x ^ y for x, y in zip(a, b)), "big").bit_count()
        for a, b in zip(both.column("pdq").to_pylist(), both.column("pdq_fast").to_pylist())
    ]
    run_bench(
        process_all,
        len(images),
        threads=1,
        task="hash-pdq-fast",
        corpus=corpus_name,
        library=f"fastprep {hash_name}",
        source="bytes",
        hamming_median=float(np.median(distances)),
        hamming_p90=float(np.percentile(distances, 90)),
        hamming_max=max(distances),
    )
    record(benchmark, f"hash-pdq-fast-{corpus_name}", hash_name)


def _peer_fn(hash_name: str, from_bytes: bool):
    """One image -> its hash string(s), as a user of the peer packages writes it."""

    def pdq_of(rgb_array):
        bits, _quality = pdqhash.compute(rgb_array)
        return pdq_hex(bits)

    if hash_name == "pdq":
        if from_bytes:
            return lambda data: pdq_of(np.asarray(pil_displayed(data).convert("RGB")))
        return pdq_of
    if hash_name == "all":

        def all_of(img):
            img = pil_displayed(img) if from_bytes else img
            if from_bytes:
                img = img.convert("RGB")
            return (
                str(imagehash.average_hash(img)),
                str(imagehash.dhash(img)),
                str(imagehash.phash(img)),
                pdq_of(np.asarray(img)),
            )

        return all_of
    fn = getattr(imagehash, IMAGEHASH_FN[hash_name])
    if from_bytes:
        return lambda data: str(fn(pil_displayed(data)))
    return lambda img: str(fn(img))


@pytest.mark.parametrize("hash_name", ["pdq", "phash", "dhash", "all"])
@pytest.mark.parametrize("source", ["bytes", "decoded"])
def test_peer_image_hash(run_bench, benchmark, images, decoded, engine_hashes, hash_name, source):
    if hash_name != "pdq":
        need(imagehash, "imagehash")
    if hash_name in ("pdq", "all"):
        need(pdqhash, "pdqhash")
    from_bytes = source == "bytes"
    fn = _peer_fn(hash_name, from_bytes)
    pil, arrays = decoded
    inputs = images if from_bytes else (arrays if hash_name == "pdq" else pil)

    def process_all():
        return [fn(x) for x in inputs]

    out = process_all()
    if hash_name == "all":
        same = all(
            _check_same(engine_hashes, name, [o[i] for o in out])
            for i, name in enumerate(["ahash", "dhash", "phash", "pdq"])
        )
    else:
        same = _check_same(engine_hashes, hash_name, out)
    library = (
        "pdqhash"
        if hash_name == "pdq"
        else ("imagehash+pdqhash" if hash_name == "all" else "imagehash")
    )
    row = f"{library} {'from bytes' if from_bytes else 'decoded'}"
    run_bench(
        process_all,
        len(images),
        threads=1,
        task=f"hash-{hash_name}",
        corpus=IMAGE_CORPUS,
        library=row,
        source=source,
        identical_to_fastprep=same,
    )
    record(benchmark, f"hash-{hash_name}", row)


# =============================================================================== exact


EXACT_CORPORA = ("imagenet", "instagram")


def _exact_peers() -> dict[str, Callable[[bytes], bytes]]:
    peers = {"hashlib.sha256": lambda d: hashlib.sha256(d).digest()}
    if xxhash is not None:
        peers["xxhash.xxh3_128"] = xxhash.xxh3_128_digest
    if blake3 is not None:
        peers["blake3 (py)"] = lambda d: blake3.blake3(d).digest()
    return peers


@pytest.mark.parametrize("corpus_name", EXACT_CORPORA)
@pytest.mark.parametrize(
    "row", ["fastprep xxh3", "fastprep blake3", "hashlib.sha256", "xxhash.xxh3_128", "blake3 (py)"]
)
def test_exact_hash(run_bench, benchmark, corpus_bytes, corpus_name, row):
    datas = corpus_bytes(corpus_name)
    nbytes = sum(len(d) for d in datas)
    if row.startswith("fastprep"):
        column = {"xxh3": "xxh3_128", "blake3": "blake3"}[row.split()[1]]
        reference = {
            "xxh3": xxhash and xxhash.xxh3_128_digest,
            "blake3": blake3 and (lambda d: blake3.blake3(d).digest()),
        }[row.split()[1]]

        def process_all():
            return fastprep.hash_images(datas, hashes=[row.split()[1]], num_threads=1)

        got = process_all().column(column).to_pylist()
        if reference is not None:
            assert got == [reference(d) for d in datas]
    else:
        fn = _exact_peers().get(row)
        if fn is None:
            pytest.skip(f"{row} is not installed")

        def process_all():
            return [fn(d) for d in datas]

    run_bench(
        process_all,
        len(datas),
        threads=1,
        task="exact",
        corpus=corpus_name,
        library=row,
        bytes=nbytes,
    )
    rate = benchmark.extra_info.get("images_per_s")
    if rate:
        benchmark.extra_info["mb_per_s"] = round(rate * nbytes / len(datas) / 1e6, 1)
        RATES[(f"exact / {corpus_name}", row)] = rate


# =============================================================================== search


def _random_with_plants(words: int, radius: int, seed: int):
    """``SEARCH_N`` random hashes and ``PLANTED`` near-copies (0..radius bits flipped)
    inserted at random positions. Returns (``[n, words]`` uint64, planted pairs)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, size=(SEARCH_N, words), dtype=np.uint64)
    sources = rng.choice(SEARCH_N, size=PLANTED, replace=False)
    copies = base[sources].copy()
    bits = words * 64
    for row in range(PLANTED):
        for bit in rng.choice(bits, size=int(rng.integers(0, radius + 1)), replace=False):
            copies[row, bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    hashes = np.concatenate([base, copies])
    order = rng.permutation(len(hashes))
    hashes = hashes[order]
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    planted = {
        tuple(sorted((int(where[s]), int(where[SEARCH_N + i])))) for i, s in enumerate(sources)
    }
    return np.ascontiguousarray(hashes), planted


def _arrow(words_array: np.ndarray):
    n, words = words_array.shape
    if words == 1:
        return pa.array(words_array[:, 0])
    raw = words_array.astype(">u8").tobytes()
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(8 * words), n, [None, pa.py_buffer(raw)])


def _as_bytes(words_array: np.ndarray) -> np.ndarray:
    """For faiss: each hash's big-endian bytes, ``[n, 8 * words]`` uint8."""
    return words_array.astype(">u8").view(np.uint8).reshape(len(words_array), -1)


def _brute(queries: np.ndarray, hashes: np.ndarray, radius: int) -> set:
    """(query row, index, distance) for every index within ``radius`` of each query."""
    out = set()
    for qi, q in enumerate(queries):
        dist = np.bitwise_count(hashes ^ q).sum(axis=1, dtype=np.int64)
        for j in np.nonzero(dist <= radius)[0]:
            out.add((qi, int(j), int(dist[j])))
    return out


SEARCHES = {"256-bit r31": (4, 31, 101), "64-bit r8": (1, 8, 202)}


@pytest.fixture(scope="module")
def search_sets():
    cache = {}

    def get(name):
        if name not in cache:
            words, radius, seed = SEARCHES[name]
            hashes, planted = _random_with_plants(words, radius, seed)
            rng = np.random.default_rng(seed + 1)
            planted_ends = {i for pair in sorted(planted)[:100] for i in pair}
            subset = np.array(sorted(planted_ends | set(rng.choice(len(hashes), 100).tolist())))
            # The oracle: every hash within the radius of each subset query (itself too).
            truth = _brute(hashes[subset], hashes, radius)
            cache[name] = (hashes, planted, subset, radius, truth)
        return cache[name]

    return get


def _pairs_of(subset: np.ndarray, table: pa.Table) -> set:
    """From a ``find_near_duplicates`` table: (subset row, other index, distance)."""
    pos = {int(s): k for k, s in enumerate(subset)}
    a = table.column("a").to_numpy()
    b = table.column("b").to_numpy()
    d = table.column("distance").to_numpy()
    mask = np.isin(a, subset) | np.isin(b, subset)
    out = set()
    for x, y, dist in zip(a[mask], b[mask], d[mask]):
        if int(x) in pos:
            out.add((pos[int(x)], int(y), int(dist)))
        if int(y) in pos:
            out.add((pos[int(y)], int(x), int(dist)))
    return out


def _estimate(
    benchmark, group: str, row: str, seconds_per_query: float, queries_total: float, **info
):
    total = seconds_per_query * queries_total
    benchmark.extra_info.update(
        task="search",
        library=row,
        estimated=True,
        seconds_per_query=seconds_per_query,
        estimated_total_s=round(total, 1),
        hashes=SEARCH_N + PLANTED,
        **info,
    )
    SEARCH_SECONDS[(group, row)] = total


@pytest.mark.parametrize("name", list(SEARCHES))
def test_search_fastprep(benchmark, search_sets, name):
    if not SEARCH_FULL:
        pytest.skip("FASTPREP_SEARCH_FULL=0")
    hashes, planted, subset, radius, truth = search_sets(name)
    column = _arrow(hashes)
    result = {}

    def run():
        result["table"] = fastprep.find_near_duplicates(column, radius, num_threads=SEARCH_THREADS)

    benchmark.group = f"search {name}"
    start = time.perf_counter()
    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    seconds = time.perf_counter() - start
    table = result["table"]
    pairs = set(zip(table.column("a").to_pylist(), table.column("b").to_pylist()))
    assert planted <= pairs, f"{len(planted - pairs)} planted pairs missed"
    assert _pairs_of(subset, table) == truth - {
        (k, int(s), 0)
        for k, s in enumerate(subset)  # a hash and itself
    }
    threads = SEARCH_THREADS
    benchmark.extra_info.update(
        task="search",
        library="fastprep",
        threads=threads,
        hashes=len(hashes),
        radius=radius,
        pairs=table.num_rows,
        planted_found=len(planted),
        seconds=round(seconds, 1),
        hashes_per_s=round(len(hashes) / seconds),
    )
    SEARCH_SECONDS[(name, f"fastprep-{threads}t")] = seconds


def _match_subset(hashes, queries, subset, table) -> set:
    """From ``match_hashes(hashes[queries], hashes)``: (subset row, index, distance)
    for the queries that are in ``subset``."""
    pos = {int(s): k for k, s in enumerate(subset)}
    out = set()
    q, r, d = (table.column(i).to_numpy() for i in range(3))
    for qi, ri, di in zip(q, r, d):
        k = pos.get(int(queries[qi]))
        if k is not None:
            out.add((k, int(ri), int(di)))
    return out


@pytest.mark.parametrize("name", list(SEARCHES))
def test_search_fastprep_1t_estimate(benchmark, search_sets, name):
    hashes, _, subset, radius, truth = search_sets(name)
    sample = np.random.default_rng(9).choice(len(hashes), 4000, replace=False)
    queries = np.union1d(sample, subset)
    column = _arrow(hashes)
    query_column = _arrow(hashes[queries])
    result = {}

    def run():
        result["table"] = fastprep.match_hashes(query_column, column, radius, num_threads=1)

    benchmark.group = f"search {name}"
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    assert _match_subset(hashes, queries, subset, result["table"]) == truth
    # The index build (once per call) is not a per-query cost: time it with one query.
    one = _arrow(hashes[:1])
    build = min(
        _timed(lambda: fastprep.match_hashes(one, column, radius, num_threads=1)) for _ in range(3)
    )
    if benchmark.stats:
        per_query = (benchmark.stats.stats.median - build) / (len(queries) - 1)
    else:
        per_query = float("nan")
    _estimate(
        benchmark,
        name,
        "fastprep match_hashes-1t (est.)",
        per_query,
        len(hashes),
        threads=1,
        queries=len(queries),
        build_s=round(build, 2),
        note="match_hashes(queries, all, num_threads=1): per query x N, + the index build",
    )
    SEARCH_SECONDS[(name, "fastprep match_hashes-1t (est.)")] += build


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.mark.parametrize("name", list(SEARCHES))
def test_search_numpy_brute_estimate(benchmark, search_sets, name):
    hashes, _, subset, radius, truth = search_sets(name)
    queries = subset[:24]
    result = {}

    def run():
        result["pairs"] = _brute(hashes[queries], hashes, radius)

    benchmark.group = f"search {name}"
    benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    assert result["pairs"] == {t for t in truth if t[0] < len(queries)}
    per_query = benchmark.stats.stats.median / len(queries) if benchmark.stats else float("nan")
    # All pairs a < b: each query is compared with N / 2 others on average.
    _estimate(
        benchmark,
        name,
        "numpy brute (est.)",
        per_query / 2,
        len(hashes),
        threads=1,
        queries=len(queries),
        note="XOR + np.bitwise_count of 24 queries vs all, x N/2",
    )


def _faiss_subset(index_factory, hashes, subset, radius):
    """(subset row, index, distance) from a faiss binary index's range_search."""
    index = index_factory()
    index.add(_as_bytes(hashes))
    lims, dist, ids = index.range_search(_as_bytes(hashes[subset]), radius + 1)
    out = set()
    for k in range(len(subset)):
        for j, d in zip(ids[lims[k] : lims[k + 1]], dist[lims[k] : lims[k + 1]]):
            out.add((k, int(j), int(d)))
    return index, out


@pytest.mark.parametrize("name", list(SEARCHES))
@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_search_faiss_estimate(benchmark, search_sets, name, kind):
    need(faiss, "faiss-cpu")
    faiss.omp_set_num_threads(1)
    hashes, _, subset, radius, truth = search_sets(name)
    d = hashes.shape[1] * 64
    nhash = d // 16
    if kind == "flat":

        def factory():
            return faiss.IndexBinaryFlat(d)
    else:

        def factory():
            index = faiss.IndexBinaryMultiHash(d, nhash, 16)
            index.nflip = radius // nhash
            return index

    start = time.perf_counter()
    index, got = _faiss_subset(factory, hashes, subset, radius)
    build_and_first = time.perf_counter() - start
    assert got == truth  # identical to the brute force (and so to fastprep)
    queries = _as_bytes(
        hashes[subset if kind == "flat" else np.arange(0, len(hashes), len(hashes) // 4000)]
    )

    def run():
        index.range_search(queries, radius + 1)

    benchmark.group = f"search {name}"
    benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    per_query = benchmark.stats.stats.median / len(queries) if benchmark.stats else float("nan")
    start = time.perf_counter()
    factory().add(_as_bytes(hashes))
    build = time.perf_counter() - start
    row = "faiss IndexBinaryFlat (est.)" if kind == "flat" else "faiss IndexBinaryMultiHash (est.)"
    _estimate(
        benchmark,
        name,
        row,
        per_query,
        len(hashes),
        threads=1,
        build_s=round(build, 2),
        nflip=getattr(index, "nflip", None),
        first_subset_s=round(build_and_first, 2),
        note="range_search per query x N (+ build)",
    )
    SEARCH_SECONDS[(name, row)] += build
    if kind == "flat":
        # A brute force that compared only pairs a < b would do half the work.
        SEARCH_SECONDS[(name, "faiss IndexBinaryFlat, a<b only (est.)")] = (
            per_query * len(hashes) / 2
        )


# =============================================================================== summary


def test_summary():
    """Prints rates and how many times faster fastprep is."""
    if not RATES and not SEARCH_SECONDS:
        pytest.skip("nothing ran (e.g. --benchmark-disable)")
    lines = [""]
    groups = sorted({g for g, _ in RATES})
    for group in groups:
        rows = {r: v for (g, r), v in RATES.items() if g == group}
        one = rows.get("fastprep-1t") or rows.get("fastprep xxh3")
        lines.append(f"{group}")
        for row, rate in sorted(rows.items(), key=lambda kv: -kv[1]):
            ratio = f"{one / rate:6.1f}x" if one else ""
            lines.append(f"  {row:<36}{rate:>12,.0f} /s  fastprep-1t is {ratio}")
    for name in SEARCHES:
        rows = {r: v for (g, r), v in SEARCH_SECONDS.items() if g == name}
        if not rows:
            continue
        lines.append(f"search {name}, N = {SEARCH_N + PLANTED:,}")
        base = rows.get("fastprep-1t") or rows.get("fastprep match_hashes-1t (est.)")
        for row, seconds in sorted(rows.items(), key=lambda kv: kv[1]):
            ratio = f"{seconds / base:8.1f}x fastprep-1t" if base else ""
            lines.append(f"  {row:<36}{seconds:>10,.1f} s  {ratio}")
    print("\n".join(lines))
