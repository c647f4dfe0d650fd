"""fastprep on local-mode Spark (``local[2]``, Java 17): ``mapInArrow``
stages, distributed counts and the sharded near-duplicate join give the
single-machine results on the same corpus (the bundled demo corpus, with its
corrupt records)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import fastprep as fp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastprep.pipeline import folder_source
from fastprep.pipeline.stages import ImageStage, consent_reasons, hashtag_stage

pytest.importorskip("pyspark")
import fastprep.spark as fps
from pyspark.sql import SparkSession
from test_distributed import as_arrow, planted_hashes

CORPUS = Path(fp.__file__).parent / "sample_data" / "corpus"
NORMALIZER = fp.hashtag_normalizer({"coffee": "espresso"}, ["instagood"])


@pytest.fixture(scope="module")
def spark():
    # Executors run this interpreter (the one with fastprep and pyarrow).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # ... and import this module's functions by name: put tests/ on their path.
    here = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("fastprep-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.task.cpus", "2")  # each task may use both cores: 2 Rust threads
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "8")  # several batches
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def corpus() -> pa.Table:
    return pa.Table.from_batches(list(folder_source(CORPUS, batch_size=64))).combine_chunks()


@pytest.fixture(scope="module")
def frame(spark, corpus):
    return spark.createDataFrame(corpus).repartition(3)


def test_image_stage_equals_single_machine(frame, corpus):
    options = {"size": 64, "hashes": ("xxh3", "pdq", "phash")}
    got = fps.decode_images(frame, **options).toArrow().sort_by("key")
    expected = pa.Table.from_batches([ImageStage(**options)(corpus.to_batches()[0])])
    expected = expected.sort_by("key")
    assert got.column("key").equals(expected.column("key"))
    # Pixels: binary + height/width/channels, back to the tensor fastprep gives.
    assert got.schema.field("pixels").type == pa.binary()
    assert set(got.column("channels").drop_null().to_pylist()) == {3}
    tensor = fps.to_fixed_shape_tensor(got)
    assert tensor.type == expected.schema.field("pixels").type
    assert tensor.equals(expected.column("pixels").combine_chunks())
    good = pc.is_null(expected.column("error"))
    assert np.array_equal(
        fps.pixels_to_numpy(got.filter(good)),
        fp.pixels_to_numpy(expected.filter(good).combine_chunks().to_batches()[0]),
    )
    # Hashes and metadata: same values in Spark's types.
    for name in ("xxh3_128", "pdq"):
        assert got.column(name).equals(expected.column(name).cast(pa.binary()))
    assert got.column("phash").equals(expected.column("phash").cast(pa.int64(), safe=False))
    for name in ("pdq_quality", "orientation", "height", "width", "source_width", "format"):
        assert got.column(name).equals(expected.column(name).cast(got.schema.field(name).type))
    errors = got.column("error").to_pylist()
    assert errors == expected.column("error").to_pylist()
    assert sum(e is not None for e in errors) == 2  # corrupt records reported, not fatal


def _cpus(batches):
    for _ in batches:
        yield pa.RecordBatch.from_pydict({"cpus": pa.array([fps.task_cpus()], pa.int32())})


def test_threads_follow_spark_task_cpus(spark):
    rows = spark.range(2).repartition(1).mapInArrow(_cpus, "cpus int").collect()
    assert {row["cpus"] for row in rows} == {2}


def test_counts_vocabulary_and_labels_equal_single_machine(frame, corpus):
    counts = fps.count_hashtags(frame, normalizer=NORMALIZER)
    whole = fp.count_hashtags(corpus.column("caption"), normalizer=NORMALIZER)
    assert counts.to_arrow().equals(whole.to_arrow())
    assert counts.captions == whole.captions == corpus.num_rows
    vocab = fp.build_vocabulary(counts, top_k=20, normalizer=NORMALIZER)
    assert vocab.to_json() == fp.build_vocabulary(whole, top_k=20, normalizer=NORMALIZER).to_json()
    tagged = fps.extract_hashtags(frame.select("key", "caption"), normalizer=NORMALIZER)
    labelled = fps.label_captions(tagged, vocab).toArrow().sort_by("key")
    ordered = corpus.sort_by("key")
    expected = fp.label_captions(ordered.column("caption"), vocab)
    assert labelled.column("labels").to_pylist() == expected.column("labels").to_pylist()
    assert labelled.column("num_labels").to_pylist() == expected.column("num_labels").to_pylist()
    assert labelled.column("has_label").to_pylist() == expected.column("has_label").to_pylist()
    tags = hashtag_stage(ordered.combine_chunks().to_batches()[0], NORMALIZER)
    assert labelled.column("hashtags").to_pylist() == tags.to_pylist()


def test_consent_split(frame, corpus):
    kept, dropped = fps.apply_consent(frame)
    reasons = consent_reasons(corpus.to_batches()[0])
    keys = np.array(corpus.column("key").to_pylist(), dtype=object)
    some = reasons != None  # noqa: E711
    got = dropped.toArrow()
    assert sorted(zip(got["key"].to_pylist(), got["reason"].to_pylist())) == sorted(
        zip(keys[some], reasons[some])
    )
    assert sorted(r["key"] for r in kept.select("key").collect()) == sorted(keys[~some])
    assert "drop_reason" not in kept.columns


@pytest.fixture(scope="module")
def hashes():
    return as_arrow(planted_hashes(1500, 300, 256, 40, seed=21))


def hash_frame(spark, hashes: pa.Array, keys: str = "k"):
    table = pa.table(
        {
            "id": pa.array(np.arange(len(hashes)), pa.int64()),
            "pdq": hashes.cast(pa.binary()),
            "key": [f"{keys}{i}" for i in range(len(hashes))],
            "area": pa.array(np.arange(len(hashes)) % 5, pa.int64()),
        }
    )
    return spark.createDataFrame(table).repartition(3)


def test_near_duplicates_dedup_and_leaks_equal_single_machine(spark, hashes):
    df = hash_frame(spark, hashes)
    for radius, slot_bits in ((31, 16), (40, 8)):
        got = fps.near_duplicate_pairs(df, radius, slot_bits=slot_bits)
        expected = fp.find_near_duplicates(hashes, radius)
        assert got.num_rows > 100
        assert got.equals(expected.cast(got.schema))
    duplicates, pairs = fps.deduplicate(df, 31, rank_column="area", key_column="key")
    keys = [f"k{i}" for i in range(len(hashes))]
    records, expected_pairs = fp.deduplicate(hashes, 31, rank=np.arange(len(hashes)) % 5, keys=keys)
    assert pairs.equals(expected_pairs.cast(pairs.schema))
    ids = pa.array(duplicates["id"].to_numpy())
    assert duplicates["duplicate_of_key"].equals(records["duplicate_of"].take(ids))
    assert duplicates["cluster"].equals(records["cluster"].take(ids))
    # Eval leaks: the first 1200 records train, the rest are the eval set;
    # broadcast (the default for a small eval set) and sharded joins agree.
    train, evaluation = hashes.slice(0, 1200), hashes.slice(1200)
    expected = fp.leak_report(
        train, evaluation, 31,
        train_keys=[f"k{i}" for i in range(1200)],
        eval_keys=[f"e{i}" for i in range(len(evaluation))],
    )  # fmt: skip
    assert expected.num_rows > 50
    for limit in (5_000_000, 0):
        leaks = fps.leak_report(
            hash_frame(spark, train), hash_frame(spark, evaluation, keys="e"), 31,
            train_key_column="key", eval_key_column="key", broadcast_limit=limit,
        )  # fmt: skip
        assert leaks.equals(expected.cast(leaks.schema)), limit
