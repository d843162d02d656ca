"""A rich progress bar for long replays: message time, rate, alerts so far, ETA.

Quiet when standard error is not a terminal (CI, pipes, services).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from ingest.report import iso_time


def _total_lines_hint(paths: list[str]) -> int | None:
    """Bytes are cheap to know; lines are estimated at 60 bytes (gzip at 4x compression)."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        size = os.path.getsize(path)
        with Path(path).open("rb") as head:
            gzipped = head.read(2) == b"\x1f\x8b"
        total += size * 4 if gzipped else size
    return max(total // 60, 1)


class Progress:
    """Wraps ``rich.progress``; every method is a no-op when not on a terminal."""

    def __init__(self, paths: list[str], *, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._task: Any = None
        self._started = time.monotonic()
        if not self.enabled:
            return
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]replay"), BarColumn(), TextColumn("{task.description}"),
            TimeRemainingColumn(), transient=False,
        )
        self._task = self._bar.add_task("", total=_total_lines_hint(paths))
        self._bar.start()

    def update(self, lines: int, message_time: float | None, alerts: int) -> None:
        if self._bar is None:
            return
        elapsed = max(time.monotonic() - self._started, 1e-6)
        when = "-" if message_time is None else iso_time(message_time)
        self._bar.update(self._task, completed=lines,
                         description=f"{when}  {lines / elapsed:,.0f} lines/s  {alerts} alerts")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
