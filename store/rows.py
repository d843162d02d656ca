"""Rows as the writer queues them, and the pure merge logic both backends share.

Items are small tuples so ``on_report`` stays cheap and the spool can hold them as JSON:
``("p", position)``, ``("s", static)``, ``("a", alert event)``, and ``("o", operator act)``
(a :class:`~store.base.QueuedAct` as a dict) made while the database was away.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from geofence.alert import AlertEvent, AlertState
from ingest.report import STATIC_FIELDS, Report, iso_time, statics_to_apply
from store.base import QueuedAct

#: Column order of ``positions`` (and of :data:`PositionRow`).
POSITION_COLUMNS: tuple[str, ...] = (
    "time", "mmsi", "lat", "lon", "speed", "course", "heading", "status", "msg_type",
    "sources", "drill", "suspect",
)


#: time, mmsi, lat, lon, speed, course, heading, status, msg_type, sources, drill, suspect
PositionRow = tuple[float, int, float, float, float | None, float | None, int | None,
                    int | None, int, list[str], bool, bool]
#: mmsi, time, {field: value} (only the fields the report carried)
StaticRow = tuple[int, float, dict[str, Any]]
#: transition, time, alert dict (Alert.to_dict shape)
AlertRow = tuple[str, float, dict[str, Any]]
Item = tuple[str, Any]


def position_row(report: Report, drill: bool) -> PositionRow:
    # ``sources`` is not copied: later duplicates' receivers are still added to it, and the
    # store holds the row until they are all in (WriterStore._hold).
    # ``suspect``: the rules rejected the fix (they see a report before the store does).
    return (report.time, report.mmsi, report.lat, report.lon,  # type: ignore[return-value]
            report.speed, report.course, report.heading, report.status, report.msg_type,
            report.sources, drill, report.fix_rejected)


def static_row(report: Report) -> StaticRow | None:
    fields = {name: getattr(report, name) for name in STATIC_FIELDS}
    present = {k: v for k, v in fields.items() if v is not None}
    if not present:
        return None
    return (report.mmsi, report.time, present)


def alert_row(event: AlertEvent) -> AlertRow:
    return (str(event.transition), event.time, dict(event.alert))


@dataclass(slots=True)
class Batch:
    """One write transaction's worth of rows, each list in queue order."""

    positions: list[PositionRow] = field(default_factory=list)
    statics: list[StaticRow] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)
    #: Each act with the number of the batch's alerts queued before it (see ``in_order``).
    acts: list[tuple[int, QueuedAct]] = field(default_factory=list)
    #: The acts the database refused in the last try to write the batch, and why (said,
    #: counted and undone by the store once the batch is committed: see ``act_dropped``).
    dropped: list[tuple[QueuedAct, str]] = field(default_factory=list)

    @classmethod
    def of(cls, items: list[Item]) -> Batch:
        # Positions are nearly all of a batch: one comprehension, and a loop over the items
        # only when there is anything else.
        batch = cls([row for kind, row in items if kind == "p"])
        if len(batch.positions) < len(items):
            for kind, row in items:
                if kind == "s":
                    batch.statics.append(row)
                elif kind == "o":
                    batch.acts.append((len(batch.alerts), QueuedAct.from_row(row)))
                elif kind != "p":
                    batch.alerts.append(row)
        return batch


    def in_order(self) -> Iterator[tuple[list[AlertRow], list[QueuedAct]]]:
        """Runs of alert rows, each with the acts queued right after it: an act is written
        after its alert's ``new`` and before the rules' later transitions, as it was made
        (so the audit trail keeps the order of events)."""
        start, acts = 0, self.acts
        i = 0
        while i < len(acts):
            at = acts[i][0]
            run: list[QueuedAct] = []
            while i < len(acts) and acts[i][0] == at:
                run.append(acts[i][1])
                i += 1
            yield self.alerts[start:at], run
            start = at
        if start < len(self.alerts):
            yield self.alerts[start:], []


@dataclass(slots=True, frozen=True)
class ActNames:
    """Where an operator act ("ack", "resolve") lands: the ``alerts`` columns
    ``<column>_at``/``_by``, the API's fields ``<field>_at``/``_by``, the note, and the
    state it gives."""

    column: str
    field: str
    note: str
    state: str


#: The one table of those names, for both backends and the API's memory.
ACT_NAMES: dict[str, ActNames] = {
    "ack": ActNames("acked", "acknowledged", "ack_note", "acknowledged"),
    "resolve": ActNames("resolved", "resolved", "resolve_note", "resolved"),
}


History = list[tuple[float, dict[str, Any]]]


def merge_statics(current: dict[str, Any] | None,
                  updates: list[StaticRow]) -> tuple[dict[str, Any], History]:
    """Apply static reports in order; return the new record and ``(time, changes)`` history.

    ``changes`` maps each changed field to ``[old, new]``. Applying the same reports twice
    changes nothing the second time, so a catch-up after an outage adds no history.
    """
    record: dict[str, Any] = dict(current or {})
    history: History = []
    for _mmsi, time, fields in updates:
        held = record.get("updated_at")
        applied = statics_to_apply(record, fields, held is None or time >= float(held))
        changes = {k: [record.get(k), v] for k, v in applied.items() if record.get(k) != v}
        if changes:
            record.update(applied)
            history.append((time, changes))
        record["updated_at"] = max(float(record.get("updated_at") or time), time)
    return record, history


def state_after_rules(existing: str | None, incoming: str) -> str:
    """State of a stored alert after a rule transition: the rule's, keeping the operator's
    ack or resolve.

    :func:`merge_state`, except that an alert stored as ended that the rules open again is
    open: that is the same log replayed into the same database, and the row otherwise said
    "ended" with no ``ended_at`` (the rule's) while the alert ran.
    """
    return merge_state(None if existing == AlertState.ENDED else existing, incoming)


def act_refused(alert_id: str, action: str, acked_by: str | None, acked_at: float | None,
                resolved_by: str | None, resolved_at: float | None) -> str | None:
    """Why an operator's ``action`` ("ack", "resolve") cannot be taken, or None.

    An act is made once: a repeat would replace the first one's who, when and note (the
    audit trail keeps every act, the alert shows the first). A resolved alert is closed for
    operators; an acknowledged one can still be resolved.
    """
    if resolved_by is not None:
        return f"alert {alert_id} was already resolved by {resolved_by} at {iso(resolved_at)}"
    if action == "ack" and acked_by is not None:
        return f"alert {alert_id} was already acknowledged by {acked_by} at {iso(acked_at)}"
    return None


def merge_state(existing: str | None, incoming: str) -> str:
    """State of an alert after a change, keeping the operator's acts.

    ``resolved`` (operator) wins, then ``ended`` (condition over), then ``acknowledged``.
    """
    states = {existing, incoming}
    if AlertState.RESOLVED in states:
        return str(AlertState.RESOLVED)
    if AlertState.ENDED in states:
        return str(AlertState.ENDED)
    if AlertState.ACKNOWLEDGED in states:
        return str(AlertState.ACKNOWLEDGED)
    return str(AlertState.OPEN)


def iso(ts: float | None) -> str | None:
    return None if ts is None else iso_time(ts)
