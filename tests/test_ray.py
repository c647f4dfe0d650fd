"""fastprep on a local Ray cluster (``ray.init(num_cpus=2)``): every
distributed result equals the single-machine one on the same corpus (the
bundled demo corpus, which has corrupt files, private and opted-out records,
copies, an eval leak and unlabelled captions)."""

from __future__ import annotations

import os
from pathlib import Path

import fastprep as fp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fastprep.pipeline import folder_source, prep
from fastprep.pipeline.stages import ImageStage, consent_reasons, hashtag_stage

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
import fastprep.ray as fpr  # noqa: E402
from test_distributed import as_arrow, planted_hashes  # noqa: E402

SAMPLES = Path(fp.__file__).parent / "sample_data"
CORPUS, EVAL = SAMPLES / "corpus", SAMPLES / "eval"
NORMALIZER = fp.hashtag_normalizer({"coffee": "espresso"}, ["instagood"])


@pytest.fixture(scope="module")
def cluster():
    # Workers import this module's functions by name: put tests/ on their path.
    path = os.pathsep.join(
        p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p
    )
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus() -> pa.Table:
    return pa.Table.from_batches(list(folder_source(CORPUS, batch_size=64)))


def blocks(table: pa.Table, size: int = 8):
    """The table as a dataset of several blocks."""
    return ray.data.from_arrow([table.slice(i, size) for i in range(0, table.num_rows, size)])


def collect(ds) -> pa.Table:
    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def test_image_stage_equals_single_machine(cluster, corpus):
    options = {"size": 64, "hashes": ("xxh3", "pdq", "phash")}
    ds = blocks(corpus).map_batches(
        fpr.DecodeImages,
        fn_constructor_kwargs=options,
        batch_format="pyarrow",
        batch_size=8,
        concurrency=1,
        num_cpus=2,
    )
    got = collect(ds).sort_by("key")
    expected = pa.Table.from_batches([ImageStage(**options)(corpus.to_batches()[0])]).sort_by("key")
    assert isinstance(got.schema.field("pixels").type, pa.FixedShapeTensorType)
    assert got.schema == expected.schema
    assert got.equals(expected)  # pixels, hashes, sizes, errors
    errors = [e for e in got.column("error").to_pylist() if e is not None]
    assert len(errors) == 2  # the corrupt upload and the HTML page: reported, not fatal


def test_pixels_stay_fixed_shape_tensors_through_ray(cluster, corpus, tmp_path):
    decoded = blocks(corpus).map_batches(
        fpr.DecodeImages,
        fn_constructor_kwargs={"size": 48, "hashes": ()},
        batch_format="pyarrow",
        concurrency=1,
    )
    good = decoded.map_batches(
        lambda t: t.filter(pc.is_null(t["error"])), batch_format="pyarrow"
    ).materialize()
    reference = collect(good).sort_by("key")
    # Through the object store, block concatenation and Parquet.
    good.write_parquet(str(tmp_path / "out"))
    back = ray.data.read_parquet(str(tmp_path / "out"))
    read = collect(back).sort_by("key")
    assert isinstance(read.schema.field("pixels").type, pa.FixedShapeTensorType)
    assert read.column("pixels").equals(reference.column("pixels"))
    # Ray's numpy and torch iterators see [B, H, W, 3] uint8.
    arrays = np.concatenate(
        [b["pixels"] for b in good.iter_batches(batch_format="numpy", batch_size=10)]
    )
    assert arrays.shape == (reference.num_rows, 48, 48, 3) and arrays.dtype == np.uint8
    torch = pytest.importorskip("torch")
    pytest.importorskip("pydantic")  # iter_torch_batches imports ray.train, which needs it
    batch = next(iter(good.select_columns(["pixels"]).iter_torch_batches(batch_size=4)))
    assert batch["pixels"].dtype == torch.uint8 and tuple(batch["pixels"].shape) == (4, 48, 48, 3)


def _as_numpy_batch(table: pa.Table) -> dict:
    return {"key": table.column("key").to_numpy(zero_copy_only=False),
            "pixels": fp.pixels_to_numpy(table.combine_chunks().to_batches()[0])}  # fmt: skip


def test_ray_tensor_columns_convert_back(cluster, corpus):
    decoded = pa.Table.from_batches([ImageStage(size=16, hashes=())(corpus.to_batches()[0])])
    good = decoded.filter(pc.is_null(decoded["error"])).select(["key", "pixels"])
    # A numpy UDF makes Ray build its own tensor type ...
    converted = collect(
        ray.data.from_arrow(good).map_batches(_as_numpy_batch, batch_format="pyarrow")
    )
    assert not isinstance(converted.schema.field("pixels").type, pa.FixedShapeTensorType)
    back = fpr.to_fixed_shape_tensor(converted.column("pixels"))
    assert back.type == good.schema.field("pixels").type
    assert back.combine_chunks().equals(good.column("pixels").combine_chunks())
    # ... and plain lists (with nulls) or fixed-size lists convert too.
    values = fp.pixels_to_numpy(good.to_batches()[0]).reshape(good.num_rows, -1)
    lists = pa.array([values[0].tolist(), None, values[1].tolist()], pa.list_(pa.uint8()))
    tensor = fpr.to_fixed_shape_tensor(lists, shape=(16, 16, 3))
    assert tensor.is_null().to_pylist() == [False, True, False]
    assert np.array_equal(tensor.storage[2].values.to_numpy(), values[1])
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 768)
    assert fpr.to_fixed_shape_tensor(fixed, shape=(16, 16, 3)).equals(
        good.column("pixels").combine_chunks()
    )


def _threads_granted(table: pa.Table) -> pa.Table:
    return pa.table(
        {
            "cpus": [fpr.assigned_cpus()],
            "stage": [fpr.DecodeImages(size=8).stage.num_threads],
        }
    )


@pytest.mark.parametrize("cpus", [1, 2])
def test_threads_follow_the_cpus_ray_grants(cluster, cpus):
    out = collect(
        ray.data.range(4, override_num_blocks=1).map_batches(
            _threads_granted, batch_format="pyarrow", num_cpus=cpus
        )
    )
    assert out.column("cpus").to_pylist() == [cpus]
    assert out.column("stage").to_pylist() == [cpus]


def test_counts_vocabulary_and_labels_equal_single_machine(cluster, corpus):
    ds = blocks(corpus, 5)
    counts = fpr.count_hashtags(ds, normalizer=NORMALIZER)
    whole = fp.count_hashtags(corpus.column("caption"), normalizer=NORMALIZER)
    assert counts.to_arrow().equals(whole.to_arrow())
    assert counts.captions == whole.captions == corpus.num_rows
    vocab = fp.build_vocabulary(counts, top_k=20, normalizer=NORMALIZER)
    assert vocab.to_json() == fp.build_vocabulary(whole, top_k=20, normalizer=NORMALIZER).to_json()
    labelled = collect(
        ds.map_batches(
            fpr.ExtractHashtags, fn_constructor_kwargs={"normalizer": NORMALIZER},
            batch_format="pyarrow", concurrency=1,
        ).map_batches(
            fpr.LabelCaptions, fn_constructor_kwargs={"vocab": vocab.to_json()},
            batch_format="pyarrow", concurrency=1, num_cpus=2,
        )
    ).sort_by("key")  # fmt: skip
    ordered = corpus.sort_by("key")
    expected = fp.label_captions(ordered.column("caption"), vocab)
    for name in ("labels", "num_labels", "has_label"):
        assert labelled.column(name).combine_chunks().equals(expected.column(name).combine_chunks())
    tags = hashtag_stage(ordered.combine_chunks().to_batches()[0], NORMALIZER)
    assert labelled.column("hashtags").combine_chunks().equals(tags)


def test_consent_filter_keeps_and_reports(cluster, corpus):
    kept, dropped = fpr.consent_split(blocks(corpus))
    reasons = consent_reasons(corpus.combine_chunks().to_batches()[0])
    keys = np.array(corpus.column("key").to_pylist(), dtype=object)
    expected_drops = sorted(zip(keys[reasons != None], reasons[reasons != None]))  # noqa: E711
    got = collect(dropped)
    assert sorted(zip(got["key"].to_pylist(), got["reason"].to_pylist())) == expected_drops
    assert {r for _, r in expected_drops} == {"not_public", "opt_out"}
    assert sorted(collect(kept)["key"].to_pylist()) == sorted(keys[reasons == None])  # noqa: E711


@pytest.fixture(scope="module")
def hashes():
    matrix = planted_hashes(1500, 300, 256, 40, seed=21)
    return as_arrow(matrix)


def hash_dataset(hashes: pa.Array, start: int = 0, keys: str = "k") -> ray.data.Dataset:
    table = pa.table(
        {
            "id": pa.array(np.arange(len(hashes)), pa.int64()),
            "pdq": hashes,
            "key": [f"{keys}{i}" for i in range(len(hashes))],
            "area": pa.array(np.arange(len(hashes)) % 5, pa.int64()),
        }
    )
    return blocks(table, 400)


@pytest.mark.parametrize(("radius", "slot_bits"), [(12, 16), (31, 16), (40, 8)])
def test_near_duplicate_pairs_equal_single_machine(cluster, hashes, radius, slot_bits):
    got = fpr.near_duplicate_pairs(hash_dataset(hashes), radius, slot_bits=slot_bits)
    expected = fp.find_near_duplicates(hashes, radius)
    assert got.num_rows > 100
    assert got.equals(expected.cast(got.schema))


def test_deduplicate_and_leak_report_equal_single_machine(cluster, hashes):
    ds = hash_dataset(hashes)
    duplicates, pairs = fpr.deduplicate(ds, 31, rank_column="area", key_column="key")
    keys = [f"k{i}" for i in range(len(hashes))]
    records, expected_pairs = fp.deduplicate(hashes, 31, rank=np.arange(len(hashes)) % 5, keys=keys)
    assert pairs.equals(expected_pairs.cast(pairs.schema))
    ids = pa.array(duplicates["id"].to_numpy())
    assert duplicates["duplicate_of_key"].equals(records["duplicate_of"].take(ids))
    assert duplicates["cluster"].equals(records["cluster"].take(ids))
    assert (
        pc.sum(records["is_duplicate"]).as_py() == duplicates["duplicate_of"].drop_null().length()
    )
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
        leaks = fpr.leak_report(
            hash_dataset(train), hash_dataset(evaluation, keys="e"), 31,
            train_key_column="key", eval_key_column="key", broadcast_limit=limit,
        )  # fmt: skip
        assert leaks.equals(expected.cast(leaks.schema)), limit


def _same_outputs(a: Path, b: Path, ra, rb) -> None:
    assert ra.manifest["totals"] == rb.manifest["totals"]
    assert ra.manifest["outputs"] == rb.manifest["outputs"]
    assert ra.manifest["tables"] == rb.manifest["tables"]
    assert (a / "vocab.json").read_text() == (b / "vocab.json").read_text()
    tables = [n for n in ra.manifest["tables"].values() if n]
    for name in [*tables, *(s["file"] for s in ra.manifest["outputs"])]:
        left, right = pq.read_table(a / name), pq.read_table(b / name)
        assert left.schema == right.schema, name
        assert left.equals(right), name


def test_prep_ray_writes_what_prep_writes(cluster, tmp_path):
    kw = {
        "size": 32,
        "batch_size": 8,
        "records_per_shard": 7,
        "eval_source": str(EVAL),
        "normalizer": NORMALIZER,
        # An xxh3 (exact) and a PDQ (within 31 bits) takedown hash.
        "opt_out_hashes": [_hash_of("brick_wall", "xxh3_128"), _hash_of("sunset_summit", "pdq")],
    }
    single = prep(str(CORPUS), tmp_path / "single", report=False, **kw)
    distributed = fpr.prep_ray(str(CORPUS), tmp_path / "ray", **kw)
    _same_outputs(tmp_path / "single", tmp_path / "ray", single, distributed)
    dropped = single.manifest["totals"]["dropped"]
    assert {"decode_error", "duplicate_of", "eval_leak", "no_label", "not_public", "opt_out",
            "opt_out_list"} <= set(dropped)  # fmt: skip
    assert not (tmp_path / "ray" / "_staging").exists()


def test_prep_ray_takes_a_ray_dataset(cluster, tmp_path):
    batches = list(folder_source(CORPUS, batch_size=12))
    kw = {"size": 24, "records_per_shard": 10, "image_format": "jpeg", "dedup_radius": 31}
    single = prep(iter(batches), tmp_path / "single", report=False, **kw)
    distributed = fpr.prep_ray(
        ray.data.from_arrow([pa.Table.from_batches([b]) for b in batches]), tmp_path / "ray", **kw
    )
    _same_outputs(tmp_path / "single", tmp_path / "ray", single, distributed)
    assert single.written > 0


def _hash_of(stem: str, column: str) -> str:
    path = next(p for p in CORPUS.glob(f"{stem}.*") if p.suffix != ".json")
    hashed = fp.hash_images([path.read_bytes()], hashes=["xxh3", "pdq"])
    return hashed.column(column)[0].as_py().hex()


def test_cli_engine_ray_runs_the_same_job(tmp_path):
    """``fastprep prep --engine ray`` (a local cluster started by the CLI)
    writes what the local engine writes."""
    import json
    import subprocess
    import sys

    from fastprep.cli import demo_corpus

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "fastprep", "prep", demo_corpus(), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        proc = cli("--out", str(out), "--size", "32", "--quiet", "--no-report", "--engine", engine)
        assert proc.returncode == 0, proc.stderr
        outputs[engine] = json.loads((out / "manifest.json").read_text())
    for field in ("totals", "outputs", "vocabulary"):
        assert outputs["ray"][field] == outputs["local"][field]
    # --resume works on every engine (a finished run is returned as it is) ...
    resumed = cli("--out", str(tmp_path / "ray"), "--size", "32", "--quiet", "--no-report",
                  "--engine", "ray", "--resume")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "ray" / "manifest.json").read_text()) == outputs["ray"]
    # ... and a flag of another engine is refused in one line.
    refused = cli("--out", str(tmp_path / "x"), "--engine", "ray", "--threads", "2")
    assert refused.returncode == 2
    assert "--threads is not available with --engine ray" in refused.stderr


def test_prep_ray_keeps_a_labelled_copy_as_prep_does(cluster, tmp_path):
    """The keeper rule (labelled first, then largest, then earliest) holds on
    the cluster too: an unlabelled first copy does not take its group down."""
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    photo = CORPUS / "espresso_morning.jpg"
    for key, caption in (("a", "no tags"), ("b", "#coffee"), ("c", "still none")):
        shutil.copy(photo, src / f"{key}.jpg")
        (src / f"{key}.txt").write_text(caption)
    single = prep(str(src), tmp_path / "single", size=32, report=False)
    distributed = fpr.prep_ray(str(src), tmp_path / "ray", size=32)
    _same_outputs(tmp_path / "single", tmp_path / "ray", single, distributed)
    assert single.written == 1
    dropped = pq.read_table(tmp_path / "ray" / "dropped.parquet").to_pylist()
    assert {d["key"]: d["reason"] for d in dropped} == {
        "a": "duplicate_of: b",
        "c": "duplicate_of: b",
    }
