"""Hashtag counting benchmarks: fastprep against Python ``re`` + ``Counter``,
pyarrow.compute and polars, on one synthetic 2M-caption ``pa.StringArray``.

Run::

    python -m pytest benches/test_hashtag_bench.py --benchmark-json out.json -s

The corpus (``benches/hashtag_corpus.py``) is built on first use (~10 s) and
cached under ``benches/.corpus/``. The whole file runs in about one minute on
2 cores (pyarrow's two rounds are half of it). Run it on an otherwise idle
machine: a compile or another benchmark in the background skews every row, the
2-thread row most.

What each row does, from the same Arrow array in memory to ``{key: occurrences}``:

* ``fastprep``: ``count_hashtags(captions, num_threads=1|2)``: twitter-text rules
  (boundaries, letter required, not followed by ``#``/``://``, URL fragments
  dropped), keys ``casefold(NFKC(tag))``, occurrences and images per key.
  ``fastprep-extract`` is ``extract_hashtags(normalize=True)`` (per-caption lists).
* ``re``: the simplified rule ``(?:^|(?<=[^\\w&]))[#＃](\\w*[^\\W\\d_]\\w*)`` with
  ``re.findall`` + ``collections.Counter``. It runs on the first 200,000 captions
  only (as Python ``str``; the Arrow-to-Python conversion is timed separately and
  excluded) and its rate is per caption of that subset; ``re-joined`` runs one
  ``findall`` per 10,000 captions joined by ``\\n`` (a boundary, so equivalent).
* ``pyarrow``: the strongest Arrow pipeline we found. Arrow has no "extract
  all matches" kernel, so the captions are cut at the hash signs instead:
  ``replace_substring`` (full-width hash to ``#``) -> ``split_pattern("#")`` ->
  flatten; piece j > 0 of a caption follows a hash sign, and is a hashtag's
  start when piece j - 1 does not end in a word character or ``&`` (one
  ``match_substring_regex`` over the pieces, shifted by one in NumPy) ->
  ``extract_regex`` of the leading run up to whitespace or punctuation (a
  negated ASCII class: RE2's Unicode classes make it 20x slower), runs with
  no letter dropped -> ``value_counts`` -> keys lowered on the distinct
  values. The boundary test reads each piece's last byte from the Arrow
  buffers with NumPy (a Unicode regex only for non-ASCII ones). (The first version of this row split
  on whitespace and ran a capture regex on every token holding a hash sign:
  about 6x slower, a straw man.)
* ``polars``: ``str.extract_all`` (Rust regex; no look-behind, so the boundary
  character is matched and stripped) -> ``explode`` -> ``group_by().len()``;
  ``pl.from_arrow`` is included (polars copies strings into its own layout).

Peers get normalised keys too, ``lower(NFKC(tag))``, computed on the distinct
tags after counting (cheap) and inside the timed region. The peers implement a
simplified rule; the corpus is built so that the simplified rule is exact on it
(see ``hashtag_corpus.py``), and each benchmark checks that its top-100 plain
ASCII keys and counts equal fastprep's (and records whether *all* keys agree).

Threads: peers run on one thread. ``POLARS_MAX_THREADS`` is read once, when
polars is first imported, so this module sets it to 1 at import time (unless
already set; ``extra_info["threads"]`` records what polars reports). pyarrow's
CPU pool is set to 1 while its row runs. fastprep runs with 1 and 2 threads.

Recorded in ``extra_info``: ``captions``, ``tags`` (occurrences found),
``captions_per_s``, ``tags_per_s``, ``mb_per_s`` (from the median round),
``threads``, ``rule`` and ``subset`` for the ``re`` rows. ``test_summary``
prints captions/s and the fastprep/peer ratios (run with ``-s`` to see it).

Environment: ``FASTPREP_HASHTAG_PROFILE`` (``long``, the default, or
``short``: captions shaped like the demo corpus's, 73 B and 3.5 hashtags on
average; see ``hashtag_corpus.PROFILES``), ``FASTPREP_HASHTAG_CAPTIONS``
(default 2,000,000) and
``FASTPREP_HASHTAG_ROUNDS`` (default 3: fastprep count and ``re`` rows; the
extract, pyarrow and polars rows get at most 2) scale the run.
"""

from __future__ import annotations

import collections
import os
import re
import sys
import time
import unicodedata
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # before anything imports polars

pytest.importorskip("pytest_benchmark")
pa = pytest.importorskip("pyarrow")
pc = pytest.importorskip("pyarrow.compute")
fastprep = pytest.importorskip("fastprep")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import hashtag_corpus  # noqa: E402

N_CAPTIONS = int(os.environ.get("FASTPREP_HASHTAG_CAPTIONS", hashtag_corpus.DEFAULT_CAPTIONS))
PROFILE = os.environ.get("FASTPREP_HASHTAG_PROFILE", hashtag_corpus.DEFAULT_PROFILE)
ROUNDS = int(os.environ.get("FASTPREP_HASHTAG_ROUNDS", "3"))
PEER_ROUNDS = max(1, min(ROUNDS, 2))
RE_SUBSET = 200_000
TOP = 100

PY_PATTERN = hashtag_corpus.PEER_REGEX
WORD = r"\p{L}\p{M}\p{Nd}_"
#: The run after a hash sign up to whitespace or ASCII punctuation other than
#: ``_``. RE2's Unicode classes (``\p{L}``...) make ``extract_regex`` 20x slower
#: here; after a tag the corpus has only whitespace, punctuation or the end.
RE2_LEADING_RUN = r"^(?P<tag>[^\s!-/:-@\[-^`{-~]+)"
RUST_PATTERN = r"(?:^|[^\w&])[#＃]\w*[^\W\d_]\w*"

#: Captions/s of every row that ran, for ``test_summary``.
RATES: dict[str, float] = {}


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captions() -> pa.StringArray:
    return hashtag_corpus.load_captions(N_CAPTIONS, profile=PROFILE)


@pytest.fixture(scope="module")
def reference(captions) -> dict[str, int]:
    """fastprep's occurrences per key on the whole corpus (checked against peers)."""
    counts = fastprep.count_hashtags(captions)
    return {r["tag"]: r["occurrences"] for r in counts.to_arrow().to_pylist()}


@pytest.fixture(scope="module")
def subset(captions) -> tuple[list, float]:
    """The first ``RE_SUBSET`` captions as Python strings, and the conversion time."""
    start = time.perf_counter()
    texts = captions.slice(0, RE_SUBSET).to_pylist()
    return texts, time.perf_counter() - start


def top_ascii(counts: dict[str, int], k: int = TOP) -> list[tuple[str, int]]:
    rows = [(tag, n) for tag, n in counts.items() if tag.isascii()]
    rows.sort(key=lambda r: (-r[1], r[0]))
    return rows[:k]


def _normalise_keys(pairs) -> dict[str, int]:
    out: dict[str, int] = collections.defaultdict(int)
    for tag, n in pairs:
        out[unicodedata.normalize("NFKC", tag).lower()] += n
    return dict(out)


def _measure(
    benchmark,
    name: str,
    run: Callable[[], dict],
    n_captions: int,
    nbytes: int,
    *,
    rounds: int,
    threads: int,
    rule: str,
    **info,
) -> dict:
    """Times ``run`` (pedantic, one iteration per round) and records rates."""
    result: dict = {}

    def once():
        result["counts"] = run()

    benchmark.group = "hashtags: count"
    benchmark.pedantic(once, rounds=rounds, iterations=1, warmup_rounds=0)
    counts = result["counts"]
    tags = sum(counts.values())
    benchmark.extra_info.update(
        implementation=name,
        threads=threads,
        rule=rule,
        captions=n_captions,
        tags=tags,
        corpus=PROFILE,
        **info,
    )
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        median = stats.stats.median
        benchmark.extra_info["captions_per_s"] = round(n_captions / median)
        benchmark.extra_info["tags_per_s"] = round(tags / median)
        benchmark.extra_info["mb_per_s"] = round(nbytes / median / 1e6, 1)
        RATES[name] = n_captions / median
    return counts


def _check_agreement(benchmark, counts: dict[str, int], reference: dict[str, int]) -> None:
    assert top_ascii(counts) == top_ascii(reference)
    ascii_got = {k: v for k, v in counts.items() if k.isascii()}
    ascii_ref = {k: v for k, v in reference.items() if k.isascii()}
    benchmark.extra_info["top100_ascii_agree"] = True
    benchmark.extra_info["all_ascii_keys_agree"] = ascii_got == ascii_ref
    benchmark.extra_info["all_keys_agree"] = counts == reference
    benchmark.extra_info["distinct_keys"] = len(counts)


# --------------------------------------------------------------------------------------
# fastprep
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
def test_fastprep_count(benchmark, captions, reference, threads):
    def run():
        counts = fastprep.count_hashtags(captions, num_threads=threads)
        table = counts.to_arrow()
        return dict(zip(table.column("tag").to_pylist(), table.column("occurrences").to_pylist()))

    fastprep.count_hashtags(captions.slice(0, 100_000), num_threads=threads)  # warm the pool
    counts = _measure(
        benchmark,
        f"fastprep-{threads}t",
        run,
        len(captions),
        captions.nbytes,
        rounds=ROUNDS,
        threads=threads,
        rule="twitter-text",
        note="includes to_arrow() and the dict of counts",
    )
    assert counts == reference
    if N_CAPTIONS >= hashtag_corpus.DEFAULT_CAPTIONS:
        assert len(counts) == sum(hashtag_corpus.TAG_MIX.values()), "every tag drawn"
    benchmark.extra_info["distinct_keys"] = len(counts)


def test_fastprep_extract(benchmark, captions, reference):
    def run():
        lists = fastprep.extract_hashtags(captions, normalize=True, num_threads=1)
        flat = pc.list_flatten(lists)
        vc = pc.value_counts(flat)
        return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))

    counts = _measure(
        benchmark,
        "fastprep-extract-1t",
        run,
        len(captions),
        captions.nbytes,
        rounds=PEER_ROUNDS,
        threads=1,
        rule="twitter-text",
        note="extract_hashtags(normalize=True) lists, then pyarrow value_counts",
    )
    assert counts == reference


# --------------------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------------------


def _subset_reference(texts: list) -> dict[str, int]:
    counts = fastprep.count_hashtags(texts)
    return {r["tag"]: r["occurrences"] for r in counts.to_arrow().to_pylist()}


@pytest.mark.parametrize("variant", ["loop", "joined"])
def test_re_counter(benchmark, subset, variant):
    texts, convert_s = subset
    findall = re.compile(PY_PATTERN).findall
    nbytes = sum(len(t.encode()) for t in texts if t)

    def loop():
        counter: collections.Counter = collections.Counter()
        for text in texts:
            if text:
                counter.update(findall(text))
        return _normalise_keys(counter.items())

    def joined():
        counter: collections.Counter = collections.Counter()
        for i in range(0, len(texts), 10_000):
            counter.update(findall("\n".join(t for t in texts[i : i + 10_000] if t)))
        return _normalise_keys(counter.items())

    counts = _measure(
        benchmark,
        f"re-{variant}",
        loop if variant == "loop" else joined,
        len(texts),
        nbytes,
        rounds=ROUNDS,
        threads=1,
        rule="simplified regex (Python re)",
        subset=f"first {len(texts):,} captions (rates are per caption of the subset)",
        arrow_to_python_s=round(convert_s, 3),
    )
    _check_agreement(benchmark, counts, _subset_reference(texts))


#: ASCII bytes that may end a word before a hash sign (no boundary there).
_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_&":
    _WORD_BYTE[_c] = True


def pyarrow_tags(captions: pa.Array) -> pa.Array:
    """Every hashtag's text, by splitting at hash signs (see the docstring)."""
    pieces = pc.split_pattern(pc.replace_substring(captions, "＃", "#"), "#")
    flat = pc.list_flatten(pieces)
    offsets = pieces.offsets.to_numpy()
    # Offsets of null captions repeat, so only real lists mark a first piece.
    firsts = offsets[:-1][offsets[1:] > offsets[:-1]] - offsets[0]
    # The last byte of each piece, read from the Arrow buffers (NumPy, no
    # per-piece Python); only pieces ending in a non-ASCII character go
    # through a Unicode regex.
    ends = np.frombuffer(flat.buffers()[1], dtype=np.int32)[
        flat.offset : flat.offset + len(flat) + 1
    ]
    data = np.frombuffer(flat.buffers()[2], dtype=np.uint8)
    nonempty = ends[1:] > ends[:-1]
    last = np.zeros(len(flat), dtype=np.uint8)
    last[nonempty] = data[ends[1:][nonempty] - 1]
    after_word = _WORD_BYTE[last]
    wide = np.flatnonzero(nonempty & (last >= 0x80))
    if len(wide):
        tails = pc.match_substring_regex(flat.take(pa.array(wide)), f"[{WORD}]$")
        after_word[wide] = tails.to_numpy(zero_copy_only=False)
    candidate = np.ones(len(flat), dtype=bool)
    candidate[firsts] = False  # a caption's first piece follows no hash sign
    candidate[1:] &= ~after_word[:-1]
    found = pc.extract_regex(flat.filter(pa.array(candidate)), RE2_LEADING_RUN)
    runs = pc.struct_field(found, "tag").drop_null()  # null where no match
    # A hashtag needs a letter: drop runs of digits and underscores.
    return runs.filter(pc.invert(pc.match_substring_regex(runs, "^[0-9_]*$")))


def test_pyarrow(benchmark, captions, reference):
    def run():
        vc = pc.value_counts(pyarrow_tags(captions))
        keys = pc.utf8_lower(pc.utf8_normalize(vc.field("values"), "NFKC"))
        grouped = (
            pa.table({"key": keys, "n": vc.field("counts")})
            .group_by("key")
            .aggregate([("n", "sum")])
        )
        return dict(zip(grouped.column("key").to_pylist(), grouped.column("n_sum").to_pylist()))

    before = pa.cpu_count()
    pa.set_cpu_count(1)
    try:
        counts = _measure(
            benchmark,
            "pyarrow",
            run,
            len(captions),
            captions.nbytes,
            rounds=PEER_ROUNDS,
            threads=1,
            rule="split at hash signs, boundary and leading-word regexes (RE2)",
            pyarrow=pa.__version__,
        )
    finally:
        pa.set_cpu_count(before)
    _check_agreement(benchmark, counts, reference)


def test_polars(benchmark, captions, reference):
    pl = pytest.importorskip("polars")

    def run():
        frame = pl.from_arrow(pa.table({"c": captions}))
        found = (
            frame.lazy()
            .select(pl.col("c").str.extract_all(RUST_PATTERN).alias("m"))
            .explode("m")
            .drop_nulls()
            .select(pl.col("m").str.replace(r"(?s)^.?[#＃]", "").alias("tag"))
            .group_by("tag")
            .len()
            .collect()
        )
        keyed = (
            found.lazy()
            .select(pl.col("tag").str.normalize("NFKC").str.to_lowercase().alias("key"), "len")
            .group_by("key")
            .agg(pl.col("len").sum())
            .collect()
        )
        return dict(zip(keyed["key"].to_list(), keyed["len"].to_list()))

    counts = _measure(
        benchmark,
        "polars",
        run,
        len(captions),
        captions.nbytes,
        rounds=PEER_ROUNDS,
        threads=pl.thread_pool_size(),
        rule="simplified regex (Rust regex)",
        polars=pl.__version__,
        note="includes pl.from_arrow",
    )
    _check_agreement(benchmark, counts, reference)


def test_summary():
    """Prints captions/s per row and how many times faster fastprep is."""
    if not RATES:
        pytest.skip("no benchmark rows ran (e.g. --benchmark-disable)")
    lines = [
        "",
        f"corpus: {PROFILE}, {N_CAPTIONS:,} captions",
        f"{'row':<22}{'captions/s':>14}{'fastprep-1t x':>15}{'fastprep-2t x':>15}",
    ]
    for name, rate in sorted(RATES.items(), key=lambda kv: -kv[1]):
        one = RATES.get("fastprep-1t", float("nan")) / rate
        two = RATES.get("fastprep-2t", float("nan")) / rate
        lines.append(f"{name:<22}{rate:>14,.0f}{one:>15.1f}{two:>15.1f}")
    print("\n".join(lines))
