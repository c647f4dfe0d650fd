"""One prep job, three engines: the local engine, Ray (``ray.init(num_cpus=2)``)
and Spark (``local[2]``) write the same outputs on a messy corpus (corrupt
files, copies, private and opted-out records, takedown hashes, an eval
leak), resume after SIGINT and SIGKILL to the uninterrupted output, and all
write the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fastprep as fp
import pyarrow.parquet as pq
import pytest
from fastprep.pipeline import LocalEngine, PrepSettings, prep

SAMPLES = Path(fp.__file__).parent / "sample_data"
CORPUS, EVAL = SAMPLES / "corpus", SAMPLES / "eval"
ENGINES = ("local", "ray", "spark")
TABLES = ("dropped", "hashtag_counts", "duplicate_pairs", "eval_leaks")


def _hash_of(stem: str, column: str) -> str:
    path = next(p for p in CORPUS.glob(f"{stem}.*") if p.suffix != ".json")
    return (
        fp.hash_images([path.read_bytes()], hashes=["xxh3", "pdq"]).column(column)[0].as_py().hex()
    )


def settings(**changes) -> PrepSettings:
    base = PrepSettings(
        size=32,
        batch_size=8,
        records_per_shard=7,
        eval_source=str(EVAL),
        normalizer=fp.hashtag_normalizer({"coffee": "espresso"}, ["instagood"]),
        # An xxh3 (exact) and a PDQ (within 31 bits) takedown hash.
        opt_out_hashes=(_hash_of("brick_wall", "xxh3_128"), _hash_of("sunset_summit", "pdq")),
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def spark_session():
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("fastprep-engines")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(params=ENGINES)
def engine(request):
    """A fresh engine of each kind (Ray and Spark on their module-wide cluster)."""
    if request.param == "local":
        return LocalEngine()
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
        from fastprep.ray import RayEngine

        return RayEngine(num_cpus=1)
    session = request.getfixturevalue("spark_session")
    from fastprep.spark import SparkEngine

    return SparkEngine(session=session)


def same_outputs(a: Path, b: Path) -> None:
    """Every output file of run ``b`` equals run ``a``'s (tables cell by cell,
    shards with their pixels, hashes, labels and order)."""
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    for field in ("totals", "outputs", "tables", "vocabulary", "settings", "source"):
        assert ma[field] == mb[field], field
    assert (a / "vocab.json").read_text() == (b / "vocab.json").read_text()
    for name in [n for n in ma["tables"].values() if n]:
        left, right = pq.read_table(a / name), pq.read_table(b / name)
        assert left.schema == right.schema and left.equals(right), name
    for shard in ma["outputs"]:
        name = shard["file"]
        if name.endswith(".parquet"):
            assert pq.read_table(a / name).equals(pq.read_table(b / name)), name
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local engine's output for each sink, the yardstick."""
    outs = {}
    for sink in ("parquet", "webdataset"):
        out = tmp_path_factory.mktemp("reference") / sink
        prep(str(CORPUS), out, settings(sink=sink), engine=LocalEngine(num_threads=2))
        outs[sink] = out
    return outs


@pytest.mark.parametrize("sink", ["parquet", "webdataset"])
def test_every_engine_writes_the_same_outputs(engine, sink, reference, tmp_path):
    out = tmp_path / "out"
    result = prep(str(CORPUS), out, settings(sink=sink), engine=engine)
    same_outputs(reference[sink], out)
    dropped = result.manifest["totals"]["dropped"]
    assert {"decode_error", "duplicate_of", "eval_leak", "no_label", "not_public", "opt_out",
            "opt_out_list"} <= set(dropped)  # fmt: skip
    assert result.manifest["engine"]["name"] == engine.name
    assert result.report and Path(result.report).read_text().startswith("<!DOCTYPE html>")
    assert not (out / "_staging").exists()


def test_every_engine_runs_the_single_pass(engine, reference, tmp_path):
    """A single pass with the reference run's vocabulary, on every engine:
    parts processed where the engine runs them, decided and written by the
    driver. On this corpus the first copies are the keepers, so the output
    is the two-pass reference's, shard for shard."""
    out = tmp_path / "out"
    vocab = str(reference["parquet"] / "vocab.json")
    result = prep(str(CORPUS), out, settings(vocabulary=vocab, single_pass=True), engine=engine)
    ma = json.loads((reference["parquet"] / "manifest.json").read_text())
    assert result.manifest["totals"] == ma["totals"]
    assert result.manifest["outputs"] == ma["outputs"]
    for name in ("dropped.parquet", "eval_leaks.parquet", "hashtag_counts.parquet",
                 *(s["file"] for s in ma["outputs"])):  # fmt: skip
        assert pq.read_table(out / name).equals(pq.read_table(reference["parquet"] / name)), name
    assert result.manifest["engine"]["name"] == engine.name
    assert not (out / "_staging").exists()


def test_unlabelled_first_copies_keep_a_labelled_copy(engine, tmp_path):
    """The keeper rule (labelled first, then largest, then earliest) on every engine."""
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    for key, caption in (("a", "no tags"), ("b", "#coffee"), ("c", "still none")):
        shutil.copy(CORPUS / "espresso_morning.jpg", src / f"{key}.jpg")
        (src / f"{key}.txt").write_text(caption)
    result = prep(str(src), tmp_path / "out", size=32, report=False, engine=engine)
    assert result.written == 1
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    assert {d["key"]: d["reason"] for d in dropped} == {
        "a": "duplicate_of: b",
        "c": "duplicate_of: b",
    }


# ---------------------------------------------------------------------- interruptions

# A run of the job in its own process, on a source that slows down after two
# batches so that it is surely interrupted mid-way.
_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_engines import CORPUS, settings
    from fastprep.pipeline import LocalEngine, folder_source, prep

    def slow():
        for i, batch in enumerate(folder_source(CORPUS, batch_size=4)):
            if i >= 2:
                time.sleep(1.0)
            yield batch

    name = sys.argv[2]
    if name == "ray":
        import ray
        from fastprep.ray import RayEngine
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        engine = RayEngine()
    elif name == "spark":
        from fastprep.spark import SparkEngine
        engine = SparkEngine(master="local[2]")
    else:
        engine = LocalEngine()
    single = dict(vocabulary=sys.argv[3], single_pass=True) if len(sys.argv) > 3 else {{}}
    prep(slow(), sys.argv[1], settings(batch_size=4, **single), engine=engine, report=True)
    """
)


def _interrupted_run(
    out: Path,
    engine_name: str,
    sig: int,
    vocabulary: str | None = None,
    wait_for: str = "_staging/*.done",
) -> None:
    script = out.parent / "run.py"
    script.write_text(_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), engine_name, *([vocabulary] if vocabulary else [])],
        start_new_session=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while not list(out.glob(wait_for)):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the run never staged a part"
        time.sleep(0.1)
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, signal.SIGKILL)  # the job and everything it started
    else:
        proc.send_signal(sig)  # Ctrl-C
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert not (out / "manifest.json").exists(), "interrupted before the end"


@pytest.fixture(scope="module")
def reference_batches(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "batches"
    from fastprep.pipeline import folder_source

    prep(folder_source(CORPUS, batch_size=4), out, settings(batch_size=4), engine=LocalEngine())
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_resume_after_an_interruption_gives_the_uninterrupted_output(
    engine, sig, reference_batches, tmp_path
):
    from fastprep.pipeline import folder_source

    out = tmp_path / "out"
    _interrupted_run(out, engine.name, sig)
    staged = {p.name for p in (out / "_staging").glob("*.done")}
    assert staged, "some parts were finished before the interruption"
    result = prep(
        folder_source(CORPUS, batch_size=4), out, settings(batch_size=4), engine=engine,
        resume=True,
    )  # fmt: skip
    same_outputs(reference_batches, out)
    assert result.report is not None and os.path.exists(result.report)
    assert not list(out.rglob("*.tmp"))


def test_every_engine_writes_the_same_private_outputs(engine, tmp_path):
    """Redacted captions, account opt-outs, relative sources and the
    datasheet: the same on every engine (the stages are built once)."""
    from test_privacy import SECRETS, make_corpus

    src = make_corpus(tmp_path / "src")
    private = settings(
        account_column="user", opt_out_accounts=("u2",), eval_source=None, opt_out_hashes=()
    )
    reference_out = tmp_path / "reference"
    prep(str(src), reference_out, private, engine=LocalEngine(num_threads=2))
    out = tmp_path / "out"
    result = prep(str(src), out, private, engine=engine)
    same_outputs(reference_out, out)
    assert (out / "datasheet.md").read_text() == (reference_out / "datasheet.md").read_text()
    assert result.manifest["totals"]["dropped"]["account_opt_out"] == 3
    assert result.manifest["privacy"]["redaction"]["counts"]["captions"] > 0
    written = b"".join(p.read_bytes() for p in out.glob("shard-*"))
    assert not any(s.encode() in written for s in SECRETS)


@pytest.mark.parametrize(
    "store",
    [{"store": "resized", "short_side": 40}, {"store": "original"}],
    ids=lambda s: s["store"],
)
def test_every_engine_writes_the_same_stores(engine, store, tmp_path):
    """Keep-aspect and original-bytes stores: the same shards on every engine,
    and the DataLoader reads them back."""
    options = settings(**store)
    reference_out = tmp_path / "reference"
    prep(str(CORPUS), reference_out, options, engine=LocalEngine(num_threads=2), report=False)
    out = tmp_path / "out"
    prep(str(CORPUS), out, options, engine=engine, report=False)
    same_outputs(reference_out, out)
    torch = pytest.importorskip("torch")
    from fastprep.torch import DataLoader, train

    written = json.loads((out / "manifest.json").read_text())["totals"]["written"]
    loader = DataLoader(str(out), batch_size=4, transform=train(24), seed=1, shuffle=True)
    images = torch.cat([b["image"] for b in loader])
    assert images.shape == (written, 3, 24, 24) and not loader.errors


def test_a_single_pass_resumes_on_every_engine(engine, reference_batches, tmp_path):
    """Killed after its first shard, a single pass resumed on the same engine
    keeps that shard, replays the parts decided before it and ends with the
    uninterrupted output (the two-pass reference's on this corpus)."""
    from fastprep.pipeline import folder_source

    out = tmp_path / "out"
    vocab = str(reference_batches / "vocab.json")
    _interrupted_run(out, engine.name, signal.SIGKILL, vocab, wait_for="shard-*.parquet")
    # Finished shards (a write cut short by the kill leaves a .tmp, removed on resume).
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    assert first, "a shard was written before the kill"
    options = settings(batch_size=4, vocabulary=vocab, single_pass=True)
    result = prep(folder_source(CORPUS, batch_size=4), out, options, engine=engine, resume=True)
    assert all((out / n).stat().st_mtime_ns == t for n, t in first.items()), "rewritten"
    ma = json.loads((reference_batches / "manifest.json").read_text())
    assert result.manifest["totals"] == ma["totals"]
    assert result.manifest["outputs"] == ma["outputs"]
    for name in ("dropped.parquet", "eval_leaks.parquet", "hashtag_counts.parquet",
                 *(s["file"] for s in ma["outputs"])):  # fmt: skip
        assert pq.read_table(out / name).equals(pq.read_table(reference_batches / name)), name
    assert result.report is not None and os.path.exists(result.report)
    assert not list(out.rglob("*.tmp"))
