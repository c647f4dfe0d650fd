"""Progress (fastprep.pipeline.progress, on rich): resume-aware rates and
ETAs, plain lines without a terminal, and a real CLI run in an 80-column
pseudo-terminal that keeps each task on one line."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
from fastprep.pipeline.progress import Progress, clock
from test_pipeline import corpus_records, write_folder


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_resumed_work_counts_as_done_but_not_in_the_rate():
    t = FakeClock()
    board = Progress(enabled=False, clock=t)
    task = board.task("pass 1", total=100)
    t.now = 0.1
    for _ in range(9):  # nine parts a resumed run finds finished, read back at once
        task.update(10, skipped=True)
    for _ in range(5):  # then real work: one record a second
        t.now += 1.0
        task.update(1)
    assert task.done == 95 and task.skipped == 90
    # 5 records in the 5 s since the skipped parts were read, not 95 in 5.1 s
    assert task.rate == pytest.approx(1.0)
    assert task.eta == pytest.approx(5.0)
    line = task.line()
    assert "95/100 records (90 resumed)" in line and "ETA 0:05" in line
    task.close()
    assert task.eta is None and "ETA" not in task.line()


def test_rate_without_resume_and_eta_unknown_before_work():
    t = FakeClock()
    task = Progress(enabled=False, clock=t).task("write", total=10)
    assert task.rate is None and task.eta is None
    t.now = 2.0
    task.update(4)
    assert task.rate == pytest.approx(2.0)
    assert task.eta == pytest.approx(3.0)
    # all skipped: no rate, no ETA (nothing was measured)
    resumed = Progress(enabled=False, clock=t).task("write", total=10)
    resumed.update(10, skipped=True)
    assert resumed.rate is None and resumed.eta is None
    assert "10/10 records (10 resumed)" in resumed.line()


def test_plain_lines_without_a_terminal():
    t = FakeClock()
    out = io.StringIO()
    board = Progress(stream=out, interactive=False, log_every=10.0, clock=t)
    task = board.task("prep 1/2 decode+hash", total=30)
    with board.step("prep decisions: near-duplicates"):
        t.now += 0.5
    for _ in range(3):
        t.now += 6.0
        task.update(10)
    board.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "prep 1/2 decode+hash: started (30 records)"
    assert lines[1] == "prep decisions: near-duplicates: started"
    assert lines[2] == "prep decisions: near-duplicates: done in 0:00"
    # a line every 10 s (at 12.5 s), then the final one
    assert lines[3].startswith("prep 1/2 decode+hash: 20/30 records")
    assert lines[4].startswith("prep 1/2 decode+hash: 30/30 records, 1.6/s, 0:18")  # 30 in 18.5 s
    assert len(lines) == 5 and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    quiet = io.StringIO()
    silent = Progress(stream=quiet, enabled=False)
    silent.task("x", 3).update(3)
    silent.close()
    assert quiet.getvalue() == ""


def test_a_failed_step_leaves_no_final_line():
    out = io.StringIO()
    board = Progress(stream=out, interactive=False)
    with pytest.raises(RuntimeError), board:
        with board.step("prep decisions: eval leaks"):
            raise RuntimeError("boom")
    assert out.getvalue().splitlines() == ["prep decisions: eval leaks: started"]


def test_clock():
    assert clock(0) == "0:00" and clock(65) == "1:05" and clock(3725) == "1:02:05"


@pytest.mark.skipif(os.name == "nt", reason="pseudo-terminals are POSIX")
@pytest.mark.parametrize("columns", [80, 50])
def test_cli_progress_stays_on_one_line_in_an_80_column_terminal(tmp_path, columns):
    """The whole job in a pseudo-terminal 80 columns wide, rendered by a
    terminal emulator: each phase is one row (redrawn in place, never
    wrapped or stacked), and every row on the final screen is a progress
    row or the summary."""
    pexpect = pytest.importorskip("pexpect")
    pyte = pytest.importorskip("pyte")
    src = tmp_path / "src"
    write_folder(src, corpus_records())
    out = tmp_path / "out"
    env = dict(os.environ, TERM="xterm-256color")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "fastprep", "prep", str(src), "--out", str(out), "--size", "32",
         "--batch-size", "2", "--records-per-shard", "4"],
        env=env, dimensions=(60, columns), timeout=300,
    )  # fmt: skip
    raw = child.read()
    child.close()
    assert child.exitstatus == 0, raw.decode(errors="replace")[-2000:]
    screen = pyte.Screen(columns, 60)
    pyte.ByteStream(screen).feed(raw)
    rows = [row.rstrip() for row in screen.display if row.strip()]
    text = "\n".join(rows)
    manifest = json.loads((out / "manifest.json").read_text())
    total, written = manifest["totals"]["input"], manifest["totals"]["written"]
    labels = ("prep 1/2 decode+hash", "prep vocabulary", "prep labels",
              "prep decisions: exact copies", "prep decisions: near-duplicates",
              "prep 2/2 write", "prep report")  # fmt: skip
    for label in labels:
        hits = [row for row in rows if row.startswith(label)]
        assert len(hits) == 1, f"{label!r} on {len(hits)} rows:\n{text}"
    first = next(row for row in rows if row.startswith("prep 1/2 decode+hash"))
    assert f"{total}/{total} records" in first, text
    last = next(row for row in rows if row.startswith("prep 2/2 write"))
    assert f"{written}/{written} records" in last, text
    if columns < 80:  # what does not fit is cut, not wrapped
        assert any(row.endswith("…") for row in rows), text
    # every row above the summary (printed after the display stops) is a phase
    summary = next(i for i, row in enumerate(rows) if row.startswith("fastprep prep:"))
    assert summary >= len(labels)
    for row in rows[:summary]:
        assert row.startswith("prep "), f"a wrapped or stray row: {row!r}\n{text}"
    # it was a live display, redrawn in place (carriage returns / cursor moves)
    assert b"\r" in raw and b"\x1b[" in raw
    assert Path(out / "report.html").exists()


def test_the_library_logs_and_only_the_cli_prints():
    """No print() outside fastprep.cli: library modules log to ``fastprep.*``."""
    import ast

    import fastprep

    root = Path(fastprep.__file__).parent
    printing = []
    for path in root.rglob("*.py"):
        if "cli" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                printing.append(f"{path.relative_to(root)}:{node.lineno}")
    assert printing == []
    source = (root / "pipeline" / "prep.py").read_text(encoding="utf-8")
    assert "logging.getLogger(__name__)" in source


def test_prep_logs_its_phases(tmp_path, caplog):
    import logging

    from fastprep.pipeline import prep

    src = tmp_path / "src"
    write_folder(src, corpus_records()[:4])
    with caplog.at_level(logging.INFO, logger="fastprep"):
        prep(str(src), tmp_path / "out", size=32, report=False)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("fastprep")]
    assert any(m.startswith("pass 1: 4 records") for m in messages), messages
    assert any(m.startswith("vocabulary:") for m in messages), messages
