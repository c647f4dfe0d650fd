"""The ``fastprep`` command line, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastprep.hashtags import load_vocabulary
from test_pipeline import corpus_records, write_folder, write_parquet

COMMANDS = ("demo", "prep", "vocab", "dedup", "bench")


def fastprep(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastprep", *args],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def one_line_error(proc: subprocess.CompletedProcess, command: str) -> str:
    """The error a user sees: exit 2, one line, no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"fastprep {command}: error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "src"
    write_folder(root, corpus_records())
    return root


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("fastprep")
    assert script.exists() or shutil.which("fastprep"), "pip installs the `fastprep` script"


def test_help_lists_every_subcommand_and_each_has_help():
    top = fastprep("--help")
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout
        sub = fastprep(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert sub.stdout.startswith(f"usage: fastprep {command}")


def test_bad_arguments_give_one_line_errors(tmp_path, corpus):
    missing = tmp_path / "nope"
    line = one_line_error(fastprep("prep", str(missing), "--out", str(tmp_path / "o")), "prep")
    assert str(missing) in line and "no such source" in line
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet at all")
    one_line_error(fastprep("prep", str(garbage), "--out", str(tmp_path / "o2")), "prep")
    write_parquet(tmp_path / "data.parquet", corpus_records()[:3])
    line = one_line_error(
        fastprep(
            "prep",
            str(tmp_path / "data.parquet"),
            "--out",
            str(tmp_path / "o3"),
            "--image-column",
            "nope",
        ),
        "prep",
    )
    assert "nope" in line
    line = one_line_error(
        fastprep("prep", str(corpus), "--out", str(tmp_path / "o4"), "--drop-if", "oops"), "prep"
    )
    assert "COLUMN=VALUE" in line
    # Option values are checked before any work: argparse's usage + error, exit 2.
    for bad in (["--quality", "0"], ["--size", "-3"], ["--dedup-radius", "x"], ["--sink", "zip"]):
        proc = fastprep("prep", str(corpus), "--out", str(tmp_path / "o5"), *bad)
        assert proc.returncode == 2
        assert "error: argument" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o5").exists(), "nothing written for a rejected command"
    # A folder that already holds a run is not clobbered.
    out = tmp_path / "done"
    assert (
        fastprep("prep", str(corpus), "--out", str(out), "--size", "32", "--quiet").returncode == 0
    )
    line = one_line_error(fastprep("prep", str(corpus), "--out", str(out), "--size", "32"), "prep")
    assert "--resume" in line and "--overwrite" in line


def test_prep_prints_progress_and_where_outputs_are(tmp_path, corpus):
    out = tmp_path / "out"
    proc = fastprep(
        "prep", str(corpus), "--out", str(out), "--size", "32", "--records-per-shard", "4"
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"{manifest['totals']['written']:,} written" in proc.stdout
    assert str(out / "report.html") in proc.stdout
    assert (out / "report.html").exists()
    assert "prep 1/2 decode+hash:" in proc.stderr and "/s" in proc.stderr
    assert "prep 2/2 write:" in proc.stderr
    quiet = fastprep(
        "prep",
        str(corpus),
        "--out",
        str(out),
        "--size",
        "32",
        "--overwrite",
        "--quiet",
        "--no-report",
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert not (out / "report.html").exists(), "--overwrite replaced the earlier run"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_ctrl_c_stops_cleanly_and_resume_finishes_the_same_job(tmp_path):
    """A named pipe in the corpus stalls reading (like a slow network disk)
    after a few batches; Ctrl-C then stops the run. Resuming after the file is
    readable gives exactly the outputs of an uninterrupted run."""
    records = corpus_records()
    src = tmp_path / "src"
    write_folder(src, records)
    late = records[0]["image"]
    os.mkfifo(src / "zzz_late.jpg")
    (src / "zzz_late.json").write_text(json.dumps({"caption": "late #nature #cat0"}))
    options = ["--size", "32", "--batch-size", "2", "--records-per-shard", "3"]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastprep", "prep", str(src), "--out", str(out), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    staging = out / "_staging"
    deadline = time.monotonic() + 120
    while len(list(staging.glob("part-*.done"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run must still be waiting on the pipe"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert not list(out.rglob("*.tmp")), "no half-written file"
    assert not (out / "manifest.json").exists()
    staged = len(list(staging.glob("part-*.done")))
    assert staged >= 3
    staged_records = sum(json.loads(m.read_text())["input"] for m in staging.glob("part-*.done"))

    (src / "zzz_late.jpg").unlink()
    (src / "zzz_late.jpg").write_bytes(late)
    resumed = fastprep("prep", str(src), "--out", str(out), *options, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    # the resumed run's pass 1 counts the staged parts as done, not in its rate
    total = len(records) + 1
    assert f"prep 1/2 decode+hash: {total}/{total} records ({staged_records} resumed)" in (
        resumed.stderr
    ), resumed.stderr
    reference = fastprep("prep", str(src), "--out", str(tmp_path / "ref"), *options)
    assert reference.returncode == 0, reference.stderr
    got = json.loads((out / "manifest.json").read_text())
    want = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    for field in ("totals", "outputs", "vocabulary"):
        assert got[field] == want[field]
    assert got["totals"]["input"] == len(records) + 1
    for shard in want["outputs"]:
        assert pq.read_table(out / shard["file"]).equals(
            pq.read_table(tmp_path / "ref" / shard["file"])
        )
    assert pq.read_table(out / "dropped.parquet").equals(
        pq.read_table(tmp_path / "ref" / "dropped.parquet")
    )


def test_vocab_subcommand_writes_a_loadable_vocabulary(tmp_path, corpus):
    path = tmp_path / "vocab.json"
    proc = fastprep("vocab", str(corpus), "--out", str(path), "--top-k", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    vocab = load_vocabulary(path)
    assert len(vocab) == 3
    assert vocab.tags[0] == "nature", "every caption but one carries #Nature / #nature"
    assert "#nature" in proc.stdout


def test_dedup_subcommand_finds_planted_copies_and_leaks(tmp_path, corpus):
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    records = {r["key"]: r for r in corpus_records()}
    (eval_dir / "leak.jpg").write_bytes(records["photo2"]["image"])
    out = tmp_path / "dedup"
    proc = fastprep("dedup", str(corpus), "--out", str(out), "--eval", str(eval_dir), "--quiet")
    assert proc.returncode == 0, proc.stderr
    pairs = pq.read_table(out / "duplicate_pairs.parquet").to_pylist()
    linked = {frozenset((p["key_a"], p["key_b"])) for p in pairs}
    assert frozenset(("zcopy", "zexact")) in linked
    assert "2 unreadable" in proc.stdout, "the corrupt and junk files are reported"
    leaks = pq.read_table(out / "eval_leaks.parquet").to_pylist()
    # photo2 and its private and opted-out copies all match the eval image.
    assert {row["train_key"] for row in leaks} >= {"photo2"}
    assert all(row["eval_key"] == "leak" for row in leaks)


def test_bench_subcommand_reports_throughput():
    proc = fastprep("bench", "--repeat", "2", "--size", "64", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "images/s" in proc.stdout and "1 thread" in proc.stdout


def test_demo_runs_the_whole_job_on_the_bundled_corpus(tmp_path):
    """README command 1: every planted case in the sample corpus (see
    sample_data/corpus/README.md) ends where it should."""
    out = tmp_path / "demo"
    proc = fastprep("demo", "--out", str(out), "--image-format", "jpeg", "--quiet")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    totals = manifest["totals"]
    assert totals["input"] == 35
    assert totals["dropped"] == {
        "decode_error": 2,  # broken_upload, not_an_image
        "duplicate_of": 3,  # an exact repost and two re-encoded copies
        "eval_leak": 1,  # rocket_launchpad ~ eval/launch_night
        "no_label": 2,
        "not_public": 2,
        "opt_out": 1,
    }
    assert totals["written"] == 24
    assert str(out / "report.html") in proc.stdout and (out / "report.html").exists()
    assert str(out / "shard-00000.parquet") in proc.stdout
    dropped = {d["key"]: d["reason"] for d in pq.read_table(out / "dropped.parquet").to_pylist()}
    assert dropped["rocket_launchpad"] == "eval_leak: launch_night"
    assert dropped["espresso_morning_repost"] == "duplicate_of: espresso_morning"
    # The photo with a GPS position in its EXIF is written without any metadata.
    shard = pq.read_table(out / "shard-00000.parquet").to_pylist()
    sunset = next(row for row in shard if row["key"] == "sunset_summit")
    jpg = sunset["jpg"]["bytes"]  # an HF Image struct (the default layout)
    assert b"Exif" not in jpg and b"GPS" not in jpg
    original = Path(fastprep_sample_corpus()) / "sunset_summit.jpg"
    assert b"Exif" in original.read_bytes(), "the source photo does carry EXIF"


def fastprep_sample_corpus() -> str:
    from fastprep.cli import demo_corpus

    return demo_corpus()
