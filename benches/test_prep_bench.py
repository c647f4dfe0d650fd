"""End-to-end ``prep`` throughput against the raw image core on the same records.

Corpus: the ``imagenet`` set (96 JPEGs of 500x375) repeated with small
re-encodings so no two records are byte-identical (every record is decoded,
hashed and written), with captions, in one Parquet file of 1,920 records.

* ``core``: :func:`fastprep.decode_images` on the image column: decode,
  centre crop 224, xxh3 + PDQ hashes: the work prep does per record
  (``core[jpeg]``: and the JPEG q90 encoding of each output, the work the
  JPEG rows also do, so they compare against it);
* ``prep``: the whole job (read Parquet, consent, decode+hash, hashtags,
  staging, dedup, vocabulary, labels, shards; no HTML report), writing
  pixel tensors to Parquet or Arrow IPC shards, or JPEG bytes to Parquet.

Both on every core. The ratio ``prep / core`` is what I/O, staging and
Python cost on top of the Rust work (goal: within 10%).
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import fastprep
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastprep import _core
from fastprep.pipeline import prep

HERE = Path(__file__).resolve().parent
COPIES = 20
BATCH = 256  # prep's default batch size


def corpus_file() -> Path:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from corpus import corpus

    photos = corpus("imagenet")
    path = photos[0].parent.parent / f"prep-{COPIES}.parquet"
    if path.exists():
        return path
    from PIL import Image

    images, captions, keys = [], [], []
    for copy in range(COPIES):
        for i, photo in enumerate(photos):
            data = photo.read_bytes()
            if copy:
                # A different encoding of the same photo: the work per record stays.
                buf = io.BytesIO()
                Image.open(io.BytesIO(data)).save(buf, "JPEG", quality=70 + copy)
                data = buf.getvalue()
            images.append(data)
            keys.append(f"{copy:02d}-{i:03d}")
            captions.append(f"photo {i} #tag{i % 17} #set{copy} #common")
    pq.write_table(
        pa.table({"key": keys, "jpg": pa.array(images, pa.binary()), "caption": captions}),
        path,
        row_group_size=256,
    )
    return path


@pytest.fixture(scope="module")
def source() -> Path:
    return corpus_file()


def core_round(images: pa.ChunkedArray, threads: int, encode: bool) -> None:
    """The image core's work on every record: decode, centre crop 224, xxh3 +
    PDQ, in prep's batch size (one 288 MB call instead measured 1.3-2.0 s
    from run to run: page faults of a fresh buffer each time); ``encode``:
    and the JPEG q90 encoding of each output, the JPEG rows' work."""
    for start in range(0, len(images), BATCH):
        decoded = fastprep.decode_images(
            images.slice(start, BATCH), size=224, hashes=["xxh3", "pdq"], num_threads=threads
        )
        if encode:
            _core.encode_variable(
                pa.chunked_array([decoded.column("pixels").storage]),
                decoded.column("height").to_pylist(),
                decoded.column("width").to_pylist(),
                "jpeg", 90, "420", threads,
            )  # fmt: skip


@pytest.mark.parametrize("image_format", ["tensor", "jpeg"])
def test_core(benchmark, source, image_format):
    images = pq.read_table(source, columns=["jpg"]).column("jpg")
    threads = fastprep.default_num_threads()

    def run():
        core_round(images, threads, encode=image_format == "jpeg")

    run()
    benchmark.group = "prep vs image core (records/s)"
    benchmark.pedantic(run, rounds=5, iterations=1)
    benchmark.extra_info.update(
        {"records": len(images), "threads": threads, "stage": f"core {image_format}"}
    )
    benchmark.extra_info["records_per_s"] = round(len(images) / benchmark.stats.stats.median, 1)


FORMATS = [("tensor", "parquet"), ("tensor", "arrow"), ("jpeg", "parquet")]


@pytest.fixture(scope="module")
def vocabulary(source, tmp_path_factory) -> str:
    from fastprep.hashtags import HashtagCounts, build_vocabulary, save_vocabulary

    counts = HashtagCounts()
    counts.update(pq.read_table(source, columns=["caption"]).column("caption"))
    path = tmp_path_factory.mktemp("vocab") / "vocab.json"
    save_vocabulary(build_vocabulary(counts), path)
    return str(path)


@pytest.mark.parametrize("single_pass", [False, True], ids=["two-pass", "single-pass"])
@pytest.mark.parametrize("image_format,sink", FORMATS)
def test_prep(benchmark, source, vocabulary, tmp_path, image_format, sink, single_pass):
    records = pq.read_metadata(source).num_rows
    threads = fastprep.default_num_threads()
    out = tmp_path / "out"

    def run():
        shutil.rmtree(out, ignore_errors=True)
        result = prep(
            source,
            out,
            size=224,
            report=False,
            num_threads=threads,
            records_per_shard=1000,
            image_format=image_format,
            sink=sink,
            **({"vocabulary": vocabulary, "single_pass": True} if single_pass else {}),
        )
        # The re-encodings are near-duplicates, so dedup drops most of them
        # after they were decoded and hashed: the per-record work is all done.
        assert result.manifest["totals"]["input"] == records

    benchmark.group = "prep vs image core (records/s)"
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(
        {
            "records": records,
            "threads": threads,
            "stage": f"prep {image_format} {sink}" + (" single-pass" if single_pass else ""),
        }
    )
    benchmark.extra_info["records_per_s"] = round(records / benchmark.stats.stats.median, 1)
