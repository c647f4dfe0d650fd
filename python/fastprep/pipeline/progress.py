"""Progress of long work, one task per phase, on :mod:`rich`.

On a terminal, :class:`Progress` draws one line per task with ``rich``
(cropped to the terminal's width, never wrapped, redrawn in place); without
one (CI logs, pipes, files) it writes plain lines: one when a task starts,
one every ``log_every`` seconds, and one when it ends, so logs stay
readable. Rates and ETAs are resume-aware: work a resumed run skips
(``update(n, skipped=True)``) counts towards the done total but neither
towards the rate nor the time it is measured over.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["Progress", "Task", "clock"]


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Task:
    """One phase: ``update(n)`` as work is done, ``close()`` at the end."""

    def __init__(
        self, board: Progress, label: str, total: int | None, unit: str, now: float
    ) -> None:
        self.board = board
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.skipped = 0
        self.started = now
        self.work_started: float | None = None  # first work not skipped
        self.finished: float | None = None
        self.note = ""
        self._id: Any = None
        self._last_log = now
        self._last_update = now

    # ------------------------------------------------------------------ numbers

    def _now(self) -> float:
        return self.finished if self.finished is not None else self.board.clock()

    @property
    def elapsed(self) -> float:
        return self._now() - self.started

    @property
    def rate(self) -> float | None:
        """Units per second of the work really done (skipped work excluded)."""
        worked = self.done - self.skipped
        if self.work_started is None or worked <= 0:
            return None
        seconds = self._now() - self.work_started
        return worked / seconds if seconds > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at :attr:`rate` (None when unknown or finished)."""
        rate = self.rate
        if not self.total or rate is None or self.done >= self.total or self.finished:
            return None
        return (self.total - self.done) / rate

    def stats(self) -> str:
        """``35/35 records (12 resumed), 120/s, 0:01, ETA 0:03`` and the note."""
        if self.total is None and self.done == 0:  # a step without counts
            text = ("done in " if self.finished is not None else "running, ") + clock(self.elapsed)
            return text + (f", {self.note}" if self.note else "")
        text = f"{self.done:,}" + (f"/{self.total:,}" if self.total is not None else "")
        text += f" {self.unit}"
        if self.skipped:
            text += f" ({self.skipped:,} resumed)"
        rate = self.rate
        if rate is not None:
            text += f", {rate:,.0f}/s" if rate >= 10 else f", {rate:,.1f}/s"
        text += f", {clock(self.elapsed)}"
        eta = self.eta
        if eta is not None:
            text += f", ETA {clock(eta)}"
        if self.note:
            text += f", {self.note}"
        return text

    def line(self) -> str:
        return f"{self.label}: {self.stats()}"

    # ------------------------------------------------------------------ updates

    def update(self, n: int = 1, *, skipped: bool = False) -> None:
        """``n`` more units done; ``skipped``: found done by an earlier run."""
        now = self.board.clock()
        if skipped:
            self.skipped += n
        elif self.work_started is None:
            # The rate is measured from the end of the skipped work (or the
            # task's start when nothing was skipped).
            self.work_started = self.started if not self.skipped else self._last_update
        self.done += n
        self._last_update = now
        self.board._refresh(self, now)

    def set_note(self, note: str) -> None:
        self.note = note
        self.board._refresh(self, self.board.clock())

    def close(self) -> None:
        if self.finished is None:
            self.finished = self.board.clock()
            self.board._finish(self)


class Progress:
    """A set of tasks shown together (see the module docstring).

    ``enabled=False`` shows nothing (``--quiet``); ``stream`` defaults to
    stderr; ``interactive`` defaults to whether it is a terminal.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        log_every: float = 10.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interactive = enabled and interactive
        self.log_every = log_every
        self.clock = clock
        self.tasks: list[Task] = []
        self._rich: Any = None

    # ------------------------------------------------------------------ tasks

    def task(self, label: str, total: int | None = None, *, unit: str = "records") -> Task:
        """Starts a task; on a terminal it gets its own line."""
        now = self.clock()
        task = Task(self, label, total, unit, now)
        self.tasks.append(task)
        if not self.enabled:
            return task
        if self.interactive:
            display = self._display()
            task._id = display.add_task(label, total=total, stats=task.stats())
        else:
            size = f" ({total:,} {unit})" if total is not None else ""
            self._write(f"{label}: started{size}")
        return task

    @contextmanager
    def step(self, label: str, total: int | None = None, *, unit: str = "steps") -> Iterator[Task]:
        """A task around a block: closed when the block ends (even on error)."""
        task = self.task(label, total, unit=unit)
        try:
            yield task
        except BaseException:
            task.finished = self.clock()  # stopped: no final line
            raise
        task.close()

    def close(self, *, failed: bool = False) -> None:
        """Closes every task and stops the terminal display. ``failed``: the
        work stopped on an error; unfinished tasks get no final line (the
        error is what the user should read)."""
        for task in self.tasks:
            if failed and task.finished is None:
                task.finished = self.clock()
            task.close()
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def __enter__(self) -> Progress:  # noqa: PYI034 (not subclassed)
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(failed=kind is not None)

    # ------------------------------------------------------------------ drawing

    def _display(self) -> Any:
        if self._rich is None:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            console = Console(file=self.stream, highlight=False, soft_wrap=False)
            # The numbers matter more than the bar: a narrow terminal gets a
            # shorter bar or none, and what still does not fit is cut with
            # an ellipsis (never wrapped onto a second line).
            bar = 20 if console.width >= 110 else 10 if console.width >= 90 else 0
            columns: list[Any] = [
                TextColumn("{task.description}", table_column=Column(no_wrap=True))
            ]
            if bar:
                columns.append(BarColumn(bar_width=bar))
            columns.append(
                TextColumn(
                    "{task.fields[stats]}",
                    table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
                )
            )
            self._rich = RichProgress(
                *columns,
                console=console,
                refresh_per_second=8,
                expand=True,
            )
            self._rich.start()
        return self._rich

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def _refresh(self, task: Task, now: float) -> None:
        if not self.enabled:
            return
        if self.interactive:
            total = task.total
            self._display().update(task._id, completed=task.done, total=total, stats=task.stats())
        elif now - task._last_log >= self.log_every:
            self._write(task.line())
            task._last_log = now

    def _finish(self, task: Task) -> None:
        if not self.enabled:
            return
        if self.interactive:
            total = task.total if task.total is not None else max(task.done, 1)
            self._display().update(task._id, completed=total, total=total, stats=task.stats())
        else:
            self._write(task.line())
