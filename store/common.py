"""What both backends share: the sink side over the writer, and row <-> dict shaping."""

from __future__ import annotations

import json
import logging
import time as wallclock
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from geofence.alert import AlertEvent
from harbourwatch.timeutil import parse_iso
from ingest.report import STATIC_FIELDS, Report
from store.base import AlertQuery, Conflict, QueuedAct, WriterStats
from store.rows import (
    Batch,
    PositionRow,
    act_refused,
    alert_row,
    iso,
    position_row,
    static_row,
)
from store.writer import BatchWriter

log = logging.getLogger(__name__)


class WriterStore:
    """The ``Sink`` half of a store: ``on_report``/``on_alert`` only enqueue."""

    #: The store records alerts a snooze keeps from being pushed (see harbourwatch.snoozes).
    keeps_snoozed = True

    def __init__(self, spool_path: Path, *, drill: bool = False, batch_size: int = 2000,
                 max_age: float = 1.0, memory_limit: int = 200_000,
                 retry_max: float = 5.0, hold_s: float = 0.0) -> None:
        """``hold_s``: message time a position waits before it is queued (see ``_hold``)."""
        #: Mark every report as drill (a drill replay); a report's ``extra["drill"]`` wins.
        self.drill = drill
        #: When this run began (wall clock): keys a drill run's own audit rows.
        self.run_started = wallclock.time()
        #: Ids of the alerts this run has written (a drill's: see ``new_exercise``).
        self._written_alerts: set[str] = set()
        self._writer = BatchWriter(self, spool_path, batch_size=batch_size, max_age=max_age,
                                   memory_limit=memory_limit, retry_max=retry_max,
                                   before_pass=self._release_stale if hold_s > 0 else None)
        self._put = self._writer.put
        self._dropped_listeners: list[Callable[[QueuedAct], None]] = []
        self.hold_s = hold_s
        self._held: deque[PositionRow] = deque()
        self._newest = float("-inf")
        # For the wall-clock bound: rows ever held, and (monotonic time, rows ever held)
        # noted at each writer pass.
        self._held_in = 0
        self._marks: deque[tuple[float, int]] = deque()

    async def write_batch(self, batch: Batch) -> int:
        """Write a batch in one transaction; the positions that were new."""
        written = await self._commit_batch(batch)
        # Once committed: a batch tried again after a failure says nothing twice.
        for act, why in batch.dropped:
            act_dropped(act, why)
            for listener in self._dropped_listeners:
                try:
                    listener(act)
                except Exception:
                    log.exception("store: a listener of dropped acts failed")
        # After the commit (a failed batch is written again, and must still count as the
        # run's first write of its alerts: see ``new_exercise``).
        if self.drill and batch.alerts:
            self._written_alerts.update(alert["id"] for _t, _w, alert in batch.alerts)
        return written

    async def _commit_batch(self, batch: Batch) -> int:
        raise NotImplementedError

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        # The spool first: a second process on it is refused before touching the database.
        self._writer.open_spool()
        try:
            await self._open()
        except BaseException:
            self._writer.close_spool()
            await self._close()  # a start tried again opens afresh, leaking nothing
            raise
        await self._writer.start()

    async def stop(self) -> None:
        self._release_held()
        try:
            await self._writer.stop()
        finally:
            self._writer.close_spool()
            await self._close()  # rows lost or not, the database is closed

    async def spooled_alerts_written(self) -> None:
        await self._writer.spooled_alerts_written()

    async def flush(self, *, held: bool = True) -> None:
        """Write everything received so far, held positions included unless ``held`` is
        false (written now, their ``sources`` lack the receivers of duplicates to come)."""
        if held:
            self._release_held()
        await self._writer.flush()

    def stats(self) -> WriterStats:
        stats = self._writer.stats()
        stats.held_positions = len(self._held)
        return stats

    def on_report(self, report: Report) -> None:
        # The pipeline's hot path: one tuple and one deque append per position; the writer
        # does the rest.
        extra = report.extra
        drill = bool(extra.get("drill", self.drill)) if extra else self.drill
        if report.lat is not None and report.lon is not None:
            if self.hold_s > 0:
                self._hold(position_row(report, drill))
            else:
                self._put(("p", position_row(report, drill)))
        if report.msg_type in _STATIC_MSG_TYPES and not drill:
            # Not a drill's: vessel records and their name history have no drill marker,
            # and a drill's made-up identity change became a real vessel's history.
            srow = static_row(report)
            if srow is not None:
                self._put(("s", srow))

    def on_alert(self, event: AlertEvent) -> None:
        self._writer.put_marked(("a", alert_row(event)))

    def continue_exercise(self, alert_ids: Iterable[str]) -> None:
        """A drill resumed with ``--start``: the alerts it restored are this exercise's, so
        a ``new`` of one written again keeps the acts made on them before the cut
        (``new_exercise``)."""
        self._written_alerts.update(alert_ids)

    def queue_act(self, act: QueuedAct) -> bool:
        """An operator act made while the database is away: written in queue order, after
        the alert rows queued before it (see ``store.base.QueuedAct``); spooled at once,
        False when the spool cannot be written (see ``BatchWriter.put_act``)."""
        return self._writer.put_act(("o", act.to_row()))

    def watch_dropped_acts(self, listener: Callable[[QueuedAct], None]) -> None:
        self._dropped_listeners.append(listener)

    def _hold(self, row: PositionRow) -> None:
        """Queue positions only once their ``sources`` are final.

        A duplicate from another receiver adds its name to the report's ``sources`` for as
        long as ingest remembers the report (``ingest.ingestor.sources_final_after``). Held
        that long in message time, every row is stored with all the receivers that heard
        it, whenever its batch happens to be written (replays store the same rows each run);
        except the copies of a live feed stamped behind its arrival, which come later.
        Rows leave in arrival order; a row held twice that long in wall time leaves anyway
        (``_release_stale``), so a quiet feed or one message from a clock far ahead cannot
        keep rows out of the database.
        """
        held = self._held
        held.append(row)
        self._held_in += 1
        time = row[0]
        if time > self._newest:
            self._newest = time
            horizon = time - self.hold_s
            while held[0][0] < horizon:  # stops at the latest row at the latest
                self._put(("p", held.popleft()))

    def _release_stale(self) -> None:
        """Queue the rows held for more than ``2 * hold_s`` of wall time (per writer pass)."""
        now = wallclock.monotonic()
        marks = self._marks
        marks.append((now, self._held_in))
        due = 0
        while marks and marks[0][0] <= now - 2 * self.hold_s:
            due = marks.popleft()[1]  # every row held before this mark is stale
        held = self._held
        # Rows leave in arrival order: the first ``_held_in - len(held)`` have left.
        for _ in range(due - (self._held_in - len(held))):
            self._put(("p", held.popleft()))

    def _release_held(self) -> None:
        held = self._held
        while held:
            self._put(("p", held.popleft()))


# A vessel record's static and voyage data come from these message types (5 class A, 19/24
# class B). Not from an AtoN's 21: it is no vessel, and one with a vessel's MMSI renamed it
# in the record and its name history (no rule judges station messages for identity).
_STATIC_MSG_TYPES = frozenset({5, 19, 24})


def alert_columns(alert: Mapping[str, Any], state: str, updated: float) -> dict[str, Any]:
    """Rule-owned columns of ``alerts`` from an ``Alert.to_dict`` shape (times as floats)."""
    ended = alert.get("ended_at")
    return {
        "id": alert["id"], "rule": alert["rule"], "risk_area": alert["risk_area"],
        "severity": alert["severity"], "state": state, "mmsi": alert.get("mmsi"),
        "other_mmsi": alert.get("other_mmsi"), "shipname": alert.get("shipname"),
        "zone": alert.get("zone"), "lat": alert.get("lat"), "lon": alert.get("lon"),
        "started_at": parse_iso(alert["started_at"]),
        "ended_at": None if ended is None else parse_iso(ended),
        "drill": bool(alert.get("drill", False)), "details": dict(alert.get("details") or {}),
        "updated_at": updated,
    }


def new_exercise(store: WriterStore, transition: str, alert_id: str, stored: bool) -> bool:
    """A drill run's ``new`` of an alert an earlier run stored (the same log replayed
    again): a drill reads no saved state, so each run is an exercise of its own, and the
    alert starts afresh for the trainees instead of showing the last exercise's ack or
    resolve (which the audit trail keeps). Judged by the ids this run has written, not by
    times. No act of this run can precede it: ``act_basis`` refuses acts on an alert this
    exercise has not raised yet."""
    return (transition == "new" and stored and store.drill
            and alert_id not in store._written_alerts)


def act_basis(store: WriterStore, alert_id: str, action: str,
              found: Mapping[str, Any]) -> str:
    """The state an operator's ``action`` applies to. :class:`Conflict` when the act was
    made already, when the alert is not of the run's kind (see ``act_kind_refused``), or
    when a drill's alert is an earlier exercise's that this one has not raised yet (see
    ``earlier_exercise_refused``)."""
    refused = (act_kind_refused(alert_id, store.drill, bool(found["drill"]))
               or earlier_exercise_refused(alert_id, store.drill,
                                           bool(found["earlier_exercise"]))
               or act_refused(alert_id, action, found["acked_by"], found["acked_at"],
                              found["resolved_by"], found["resolved_at"]))
    if refused is not None:
        raise Conflict(refused)
    return str(found["state"])


def earlier_exercise_refused(alert_id: str, run_drill: bool,
                             earlier: bool) -> str | None:
    """Why a drill run cannot act on an alert an earlier exercise left, or None: the
    trainees' list hides it until this exercise raises it again, and an act taken now (a
    trainee with its id from the last exercise) is dated on the rules' clock before this
    exercise's ``new``, a negative time to acknowledge in the debrief and the summary.
    Judged by the row's ``earlier_exercise`` (``BEGIN_EXERCISE``, cleared by the run's
    ``new`` in the same transaction), so an act queued during an outage behind the ``new``
    of its alert is this exercise's."""
    if run_drill and earlier:
        return (f"alert {alert_id} was raised by an earlier exercise; this exercise has "
                "not raised it yet")
    return None


def act_kind_refused(alert_id: str, run_drill: bool, alert_drill: bool) -> str | None:
    """Why a run cannot act on an alert of the other kind, or None: a drill replayed into
    the live database serves the trainees an API on it, and their ack or resolve of a real
    alert by its id closed it for the watch; the live service's act on a drill alert
    closed it under the trainees, and its update reached the watch's stream."""
    if run_drill and not alert_drill:
        return f"alert {alert_id} is not a drill's: a drill run acts only on drill alerts"
    if alert_drill and not run_drill:
        return f"alert {alert_id} is a drill's: only a drill run acts on drill alerts"
    return None


def audit_key(store: WriterStore, alert: Mapping[str, Any], transition: str,
              when: float) -> str:
    """What makes a rule's audit row unique: a batch written again after an outage adds
    none, while each drill run (an exercise of its own) keeps its own rows."""
    key = f"{alert['id']}|{transition}|{when!r}|{alert['state']}"
    return f"{key}|run {store.run_started!r}" if store.drill else key


def act_dropped(act: QueuedAct, why: str) -> None:
    """A queued act the store refused (its alert gone, or acted on meanwhile): said once its
    batch is committed, not retried; the rest of its batch is written."""
    log.warning("store: %s by %s at %s, made while the database was away, not stored: %s",
                act.action, act.actor, iso(act.at), why)


#: Clears the operator's acts on an alert (a new exercise, see ``new_exercise``); the alert
#: is this exercise's again (see ``BEGIN_EXERCISE``).
CLEAR_ACTS = ("acked_at = NULL, acked_by = NULL, ack_note = NULL, resolved_at = NULL, "
              "resolved_by = NULL, resolve_note = NULL, earlier_exercise = FALSE")
#: A new drill exercise: the drill alerts stored are an earlier exercise's, its history,
#: listed under ``drill=true`` no more, nor acted on (``earlier_exercise_refused``), until
#: this one raises them.
BEGIN_EXERCISE = "UPDATE alerts SET earlier_exercise = TRUE WHERE drill AND NOT earlier_exercise"
#: What ``act_basis`` reads of an alert's row.
ACT_COLUMNS = "state, drill, earlier_exercise, acked_by, acked_at, resolved_by, resolved_at"
#: Positions deleted in one statement when pruning (a first prune of years of rows).
PRUNE_ROWS = 50_000

ALERT_COLUMNS: tuple[str, ...] = (
    "id", "rule", "risk_area", "severity", "state", "mmsi", "other_mmsi", "shipname", "zone",
    "lat", "lon", "started_at", "ended_at", "drill", "details", "updated_at",
)


def alert_out(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored alert as the API gives it: ``Alert.to_dict`` plus the operator's acts."""
    details = row["details"]
    if isinstance(details, str):
        details = json.loads(details)
    return {
        "id": row["id"], "rule": row["rule"], "risk_area": row["risk_area"],
        "severity": row["severity"], "state": row["state"], "mmsi": row["mmsi"],
        "other_mmsi": row["other_mmsi"], "shipname": row["shipname"], "zone": row["zone"],
        "lat": row["lat"], "lon": row["lon"], "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]), "drill": bool(row["drill"]), "details": details,
        "updated_at": iso(row["updated_at"]),
        "acknowledged_at": iso(row["acked_at"]), "acknowledged_by": row["acked_by"],
        "ack_note": row["ack_note"], "resolved_at": iso(row["resolved_at"]),
        "resolved_by": row["resolved_by"], "resolve_note": row["resolve_note"],
    }


#: The audit rows of snooze acts (they name no alert), newest first.
SNOOZE_ACTS_SQL = ("SELECT * FROM alert_audit WHERE alert_id IS NULL "
                   "AND action IN ('snooze', 'unsnooze') ORDER BY id DESC")


def one_of(value: Any, wanted: str | tuple[str, ...] | None) -> bool:
    """``value`` passes a filter of one value or a tuple of them (``None``: any)."""
    if wanted is None:
        return True
    return value == wanted if isinstance(wanted, str) else value in wanted


def snooze_acts(rows: Iterable[Mapping[str, Any]], rule: str | tuple[str, ...] | None,
                mmsi: int | None, limit: int) -> list[dict[str, Any]]:
    """The snooze acts among audit ``rows`` (newest first) on ``rule`` (one, or a tuple:
    any of them) and ``mmsi``.

    The snoozes table keeps only each (rule, vessel)'s latest snooze, and a DELETE removes
    it: who muted what, and who lifted it, is in these rows alone."""
    found: list[dict[str, Any]] = []
    for row in rows:
        if len(found) >= limit:
            break
        what = json.loads(row["after_state"] or row["before_state"] or "{}")
        if not one_of(what.get("rule"), rule) or mmsi not in (None, what.get("mmsi")):
            continue
        found.append(snooze_act(row["time"], row["actor"], row["action"], what.get("rule"),
                                what.get("mmsi"), what.get("until"), row["note"]))
    return found


def snooze_act(when: float, actor: str, action: str, rule: str | None, mmsi: int | None,
               until: float | None, note: str | None) -> dict[str, Any]:
    """One snooze act as the API gives it: ``time`` is wall time, ``until`` message time."""
    return {"time": iso(when), "actor": actor, "action": action, "rule": rule, "mmsi": mmsi,
            "until": iso(until), "note": note}


def audit_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": row["alert_id"], "time": iso(row["time"]),
        "message_time": iso(row["message_time"]), "actor": row["actor"],
        "action": row["action"], "note": row["note"], "before": row["before_state"],
        "after": row["after_state"],
    }


def position_out(row: Mapping[str, Any]) -> dict[str, Any]:
    """A position as the API gives it, static fields added when the row carries them."""
    sources = row["sources"]
    if isinstance(sources, str):
        sources = json.loads(sources)
    out: dict[str, Any] = {
        "mmsi": row["mmsi"], "time": iso(row["time"]), "lat": row["lat"], "lon": row["lon"],
        "speed": row["speed"], "course": row["course"], "heading": row["heading"],
        "status": row["status"], "msg_type": row["msg_type"], "sources": list(sources),
        "drill": bool(row["drill"]),
    }
    for name in STATIC_FIELDS:
        if name in row.keys() and row[name] is not None:  # noqa: SIM118 (sqlite3.Row)
            out[name] = row[name]
    return out


def track_point(row: Mapping[str, Any]) -> dict[str, Any]:
    point = {"time": iso(row["time"]), "lat": row["lat"], "lon": row["lon"],
             "speed": row["speed"], "course": row["course"], "heading": row["heading"]}
    if row["suspect"]:  # only when asked for (``rejected``)
        point["rejected"] = True
    return point


def vessel_out(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"mmsi": row["mmsi"]}
    for name in STATIC_FIELDS:
        out[name] = row[name]
    out["updated_at"] = iso(row["updated_at"])
    return out


def bucket_width(start: float, end: float, max_points: int) -> int:
    """Whole seconds per bucket so that ``[start, end]`` falls into at most ``max_points``."""
    return int((end - start) // max_points) + 1


class Params:
    """A statement's parameters: called with a value, binds it and gives its marker in the
    backend's SQL (``marker(n)``, 1-based: ``?n`` for SQLite, ``$n`` for PostgreSQL), so a
    request's values never enter the SQL text."""

    __slots__ = ("_marker", "values")

    def __init__(self, marker: Callable[[int], str]) -> None:
        self._marker = marker
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return self._marker(len(self.values))


def alert_filters(query: AlertQuery, ph: Callable[[Any], str],
                  ts: Callable[[float], Any], started: str = "started_at") -> str:
    """``WHERE`` clause for :class:`AlertQuery` (see ``alert_conditions``)."""
    where = alert_conditions(query, ph, ts, started)
    return (" WHERE " + " AND ".join(where)) if where else ""


def alert_conditions(query: AlertQuery, ph: Callable[[Any], str],
                     ts: Callable[[float], Any], started: str = "started_at") -> list[str]:
    """The conditions :class:`AlertQuery` sets, to be joined by AND; ``ph`` binds a value and
    gives its marker (:class:`Params`). ``started``: the column as the ``end`` term names it
    (SQLite's ``+started_at``, see ``store.sqlite._started_column``)."""
    where: list[str] = []
    for column, wanted in (("rule", query.rule), ("state", query.state),
                           ("risk_area", query.risk_area), ("severity", query.severity)):
        if wanted is not None:
            values = (wanted,) if isinstance(wanted, str) else tuple(wanted)
            where.append(f"{column} IN (" + ", ".join(ph(v) for v in values) + ")")
    if query.zone is not None:
        where.append(f"zone = {ph(query.zone)}")
    if query.mmsi is not None:
        marker = ph(query.mmsi)
        where.append(f"(mmsi = {marker} OR other_mmsi = {marker})")
    if query.end is not None:
        where.append(f"{started} <= {ph(ts(query.end))}")
    if query.start is not None:
        where.append(f"(ended_at IS NULL OR ended_at >= {ph(ts(query.start))})")
    if query.drill is not None:
        where.append(f"drill = {ph(query.drill)}")
        if query.drill:  # the exercise running, not an earlier one's left rows
            where.append(f"earlier_exercise = {ph(False)}")
    if query.after is not None:  # the listing's order: started_at DESC, id
        marker = ph(query.after)
        started = f"(SELECT started_at FROM alerts WHERE id = {marker})"
        where.append(f"(started_at < {started} OR (started_at = {started} AND id > {marker}))")
    return where
