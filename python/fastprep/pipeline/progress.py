"""A progress line for long work: records done, records/s and ETA.

On a terminal it redraws one line; elsewhere (CI logs, pipes) it prints a
plain line every ``log_every`` seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``update(n)`` after each batch; ``close()`` prints the final line."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "records",
        stream: TextIO | None = None,
        enabled: bool = True,
        log_every: float = 10.0,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.log_every = log_every
        self.done = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {self.done:,}"
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * 24)
            text += f"/{self.total:,} [{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%}"
        text += f" {self.unit}, {rate:,.0f}/s, {_clock(elapsed)}"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {_clock((self.total - self.done) / rate)}"
        return text

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.interactive and now - self._last_draw >= 0.1:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self._last_draw = now
        elif not self.interactive and now - self._last_draw >= self.log_every:
            if self._last_draw:  # the first line would only say "0 records"
                self.stream.write(self.line() + "\n")
                self.stream.flush()
            self._last_draw = now

    def close(self) -> None:
        if self.enabled:
            self.stream.write(("\r\033[K" if self.interactive else "") + self.line() + "\n")
            self.stream.flush()
