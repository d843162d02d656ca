"""``--alerts-out FILE.jsonl``: every alert transition as one JSON line.

Each line is the alert object plus ``"transition": "new"|"update"|"end"``, written in the
order the rules produced them, so two replays of one log give byte-identical files.

A drill's file also gets a line for each operator act (:meth:`AlertsFileSink.on_act`):
``"act": "ack"|"resolve"|"snooze"|"unsnooze"`` and no ``transition``, dated on the wall
clock (``time``) and on the rules' clock when it was taken (``message_time``); an ack or
resolve also names its alert and when the rules raised it (``raised_at``, the message time
of its ``new``), so a debrief reads how long the watch took (``harbourwatch debrief``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from geofence.alert import AlertEvent, Transition
from harbourwatch.timeutil import iso_time
from ingest.report import Report

log = logging.getLogger(__name__)

#: What an ack or resolve line repeats of its alert, so a debrief needs no other line.
ALERT_KEYS = ("rule", "severity", "mmsi", "other_mmsi", "zone", "started_at", "drill", "state")


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

    def __init__(self, path: Path, *, append: bool = False, acts: bool = False) -> None:
        """``append``: a live run adds to the file (a restart erased the alert log); a
        replay writes it afresh, so two replays can be compared byte for byte. ``acts``:
        operator acts get lines too (a drill's debrief); the sink then notes when each
        alert was raised."""
        self.path = path
        self.append = append
        self.acts = acts
        self._file: TextIO | None = None
        self.written = 0
        #: Message time of each alert's ``new`` in this run (``acts`` only).
        self._raised: dict[str, float] = {}

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
        if self.acts and event.transition is Transition.NEW:
            self._raised[str(event.alert["id"])] = event.time
        record = dict(event.alert)
        record["transition"] = str(event.transition)
        self._line(record)

    def on_act(self, act: Mapping[str, Any]) -> None:
        """An operator act, as ``api.deps.ApiDeps.act_records`` tells it: its line."""
        if self._file is None or not self.acts:
            return
        record = {k: v for k, v in act.items() if k != "alert"}
        alert = act.get("alert")
        if alert is not None:  # an ack or resolve
            raised = self._raised.get(str(alert["id"]))
            record.update({"alert_id": alert["id"],
                           "raised_at": None if raised is None else iso_time(raised),
                           **{key: alert.get(key) for key in ALERT_KEYS}})
        try:
            self._line(record)
        except OSError as exc:  # the act is made and stored: its answer must not fail
            log.error("--alerts-out %s: the %s by %s could not be written: %s", self.path,
                      record.get("act"), record.get("actor"), exc.strerror or exc)

    def _line(self, record: Mapping[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
        self.written += 1

    async def stop(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
