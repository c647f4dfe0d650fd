"""prep against the bare image core, rounds interleaved.

The same corpus and work as ``test_prep_bench.py`` (1,920 records of
500x375 JPEGs with captions in one Parquet file; centre crop 224, xxh3 +
PDQ, dedup on, every core), but each round runs every case once, in turn,
so a machine that speeds up or slows down between cases (this 2-core VM
does, by 10-30%) moves all of them alike; ``os.sync()`` before each case
keeps one case's write-back (two passes stage 288 MB of pixels) out of the
next one's time. Cases:

* ``core``: ``decode_images`` per batch of 256 (``core jpeg``: plus the JPEG
  q90 encoding of each output, the JPEG rows' work);
* ``prep`` in two passes and in a single pass (a vocabulary built from the
  captions beforehand), writing tensor Arrow IPC, tensor Parquet and JPEG
  Parquet shards (no report).

Prints per case the median seconds of the rounds after the first and the
throughput relative to its core (``core jpeg`` for the JPEG rows).

    python benches/prep_table.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import fastprep
import pyarrow.parquet as pq
from fastprep.hashtags import HashtagCounts, build_vocabulary, save_vocabulary
from fastprep.pipeline import prep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_prep_bench import core_round, corpus_file

FORMATS = (("tensor", "arrow"), ("tensor", "parquet"), ("jpeg", "parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    source = corpus_file()
    images = pq.read_table(source, columns=["jpg"]).column("jpg")
    threads = fastprep.default_num_threads()
    work = Path(tempfile.mkdtemp(prefix="prep-table-"))
    counts = HashtagCounts()
    counts.update(pq.read_table(source, columns=["caption"]).column("caption"))
    vocabulary = str(work / "vocab.json")
    save_vocabulary(build_vocabulary(counts), vocabulary)

    def run(image_format: str, sink: str, single: bool) -> None:
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        extra = {"vocabulary": vocabulary, "single_pass": True} if single else {}
        prep(source, out, size=224, report=False, num_threads=threads, records_per_shard=1000,
             image_format=image_format, sink=sink, **extra)  # fmt: skip

    cases = {
        "core": lambda: core_round(images, threads, encode=False),
        "core jpeg": lambda: core_round(images, threads, encode=True),
    }
    for image_format, sink in FORMATS:
        for single in (False, True):
            name = f"{image_format} {sink} {'single pass' if single else 'two passes'}"
            cases[name] = lambda f=image_format, s=sink, one=single: run(f, s, one)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, case in cases.items():
            os.sync()  # the previous case's write-back does not run into this one
            started = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - started)
    shutil.rmtree(work, ignore_errors=True)
    median = {name: statistics.median(t[1:] or t) for name, t in times.items()}
    print(f"{len(images)} records, {threads} threads, {args.rounds} rounds (first left out)")
    print("| case | seconds (median) | records/s | / its core |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in median.items():
        base = median["core jpeg" if name.startswith("jpeg") or name == "core jpeg" else "core"]
        print(f"| {name} | {seconds:.2f} | {len(images) / seconds:,.0f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
