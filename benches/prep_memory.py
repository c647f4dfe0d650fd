"""Peak memory of ``prep`` while streaming a large corpus.

    python benches/prep_memory.py --records 100000   # builds the corpus once, then measures
    python benches/prep_memory.py --records 100000 --single-pass

The corpus is one Parquet file of small JPEGs (128x96, smooth random patterns
with noise; every sixth is a re-noised copy of the one before: a planted
near-duplicate) with
hashtag captions. ``prep`` runs in a fresh process (64x64 output, PDQ dedup
on, no report); its peak RSS comes from ``getrusage(RUSAGE_CHILDREN)``.
Run it for two sizes: bounded memory means the peak barely moves with the
corpus size (only ~100 bytes of hashes and keys per record stay in memory).
``--single-pass`` runs the single pass instead, with a vocabulary built from
the captions before the timing (the driver then also holds the growing
index of keepers' hashes and a dictionary of their xxh3).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def build(path: Path, records: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    writer = None
    base = None
    chunk = 5000
    for start in range(0, records, chunk):
        images, keys, captions = [], [], []
        for i in range(start, min(records, start + chunk)):
            if base is None or i % 6:  # every 6th record re-noises the previous photo
                pattern = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
                base = Image.fromarray(pattern).resize((128, 96), Image.BILINEAR)
            noisy = np.asarray(base, dtype=np.int16) + rng.integers(-6, 7, (96, 128, 3))
            buf = io.BytesIO()
            Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
            images.append(buf.getvalue())
            keys.append(f"{i:07d}")
            captions.append(f"photo {i} #tag{i % 997} #common #set{i % 7}")
        table = pa.table({"key": keys, "jpg": pa.array(images, pa.binary()), "caption": captions})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=1000)
    writer.close()


CHILD = """
import json, os, sys, time
from fastprep.pipeline import prep
single = {}
if len(sys.argv) > 3:
    import pyarrow.parquet as pq
    from fastprep.hashtags import HashtagCounts, build_vocabulary, save_vocabulary
    counts = HashtagCounts()
    counts.update(pq.read_table(sys.argv[1], columns=["caption"]).column("caption"))
    vocab = os.path.join(os.path.dirname(sys.argv[2]), "vocab.json")
    save_vocabulary(build_vocabulary(counts), vocab)
    single = {"vocabulary": vocab, "single_pass": True}
start = time.perf_counter()
result = prep(sys.argv[1], sys.argv[2], size=64, report=False, records_per_shard=10000, **single)
seconds = time.perf_counter() - start
print(json.dumps({"totals": result.manifest["totals"], "seconds": seconds}))
"""


def measure(path: Path, single_pass: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), out + "/out", *(["1"] if single_pass else [])],
            capture_output=True,
            text=True,
            check=True,
        )
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if peak_kb <= before:
            raise RuntimeError("a previous child had a higher peak; run one size per process")
    result = json.loads(proc.stdout)
    result["peak_rss_gb"] = round(peak_kb / 2**20, 3)
    records = result["totals"]["input"]
    result["records_per_second"] = round(records / result["seconds"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--root", type=Path, default=HERE / ".corpus")
    parser.add_argument("--single-pass", action="store_true")
    args = parser.parse_args()
    path = args.root / f"prep-memory-{args.records}.parquet"
    if not path.exists():
        args.root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build(path, args.records)
        print(f"built {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    result = measure(path, args.single_pass)
    print(
        json.dumps({"records": args.records, "single_pass": args.single_pass, **result}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
