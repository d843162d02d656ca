"""``--alerts-out FILE.jsonl``: every alert transition as one JSON line.

Each line is the alert object plus ``"transition": "new"|"update"|"end"``, written in the
order the rules produced them, so two replays of one log give byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from geofence.alert import AlertEvent
from ingest.report import Report


class AlertsFileError(RuntimeError):
    """The alerts file cannot be opened (a directory, no permission, no such folder)."""


def _ends_a_line(path: Path) -> bool:
    try:
        with path.open("rb") as existing:
            existing.seek(-1, 2)
            return existing.read(1) == b"\n"
    except OSError:  # emptied meanwhile (logrotate's copytruncate): nothing to end
        return True


class AlertsFileSink:
    """A :class:`harbourwatch.sinks.Sink` appending alert transitions to a file."""

    #: A record, as the store: alerts a snooze keeps from being pushed are written too, so
    #: the file is the same whatever a drill's trainees muted.
    keeps_snoozed = True

    def __init__(self, path: Path, *, append: bool = False) -> None:
        """``append``: a live run adds to the file (a restart erased the alert log); a
        replay writes it afresh, so two replays can be compared byte for byte."""
        self.path = path
        self.append = append
        self._file: TextIO | None = None
        self.written = 0

    async def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Line-buffered: a live run is tailed by other tools, and a crash loses no line.
            # Appending (O_APPEND) also lets logrotate's copytruncate cut it without a hole.
            self._file = self.path.open("a" if self.append else "w", encoding="utf-8",
                                        buffering=1)
            if self.append and self._file.seekable() and self._file.tell() \
                    and not _ends_a_line(self.path):  # (a pipe or FIFO has no last line)
                self._file.write("\n")  # a crash cut the last line: the next is its own
        except OSError as exc:
            raise AlertsFileError(
                f"--alerts-out {self.path}: cannot write: {exc.strerror or exc}") from exc

    def on_report(self, report: Report) -> None:
        return None

    def on_alert(self, event: AlertEvent) -> None:
        if self._file is None:
            return
        record = dict(event.alert)
        record["transition"] = str(event.transition)
        self._file.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
        self.written += 1

    async def stop(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
