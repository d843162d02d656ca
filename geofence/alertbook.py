"""Open alerts and their transitions: open once, update sparingly, end once.

Rules call :class:`AlertBook`; it keeps the active alerts indexed by rule and vessel and
queues one :class:`~geofence.alert.AlertEvent` (a deep-copied snapshot) per transition. The
engine drains the queue after every report or tick.

Alert ``details`` are JSON values (dicts, lists, scalars), so the snapshot copies them with
:func:`json_copy` rather than :func:`copy.deepcopy`, whose memo and dispatch cost many
times more per value.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from geofence.alert import (
    Alert,
    AlertEvent,
    AlertState,
    RiskArea,
    Severity,
    Transition,
    alert_id,
)

#: Ids of the latest instantaneous alerts remembered, to tell apart two that share a key.
_EVENT_IDS_KEPT = 4096


class AlertBook:
    """Active alerts of one engine; ``drill`` marks every alert it creates."""

    def __init__(self, *, drill: bool = False) -> None:
        self.drill = drill
        self._by_id: dict[str, Alert] = {}
        self._by_rule: dict[str, dict[str, Alert]] = {}
        self._by_vessel: dict[tuple[str, int | None], list[Alert]] = {}
        self._open_per_mmsi: dict[int, int] = {}
        self._events: list[AlertEvent] = []
        #: Oldest first. An OrderedDict drops its oldest in O(1): ``next(iter(d))`` on a
        #: plain dict emptied at the front scans the dead slots (~2 µs at 4,096 kept).
        self._event_ids: OrderedDict[str, None] = OrderedDict()

    # -- lookups --------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert | None:
        return self._by_id.get(alert_id)

    def find(self, rule: str, mmsi: int | None, *, zone: str | None = None,
             other_mmsi: int | None = None, any_zone: bool = False) -> Alert | None:
        """The active alert of ``rule`` for this vessel (and zone / other vessel)."""
        for alert in self._by_vessel.get((rule, mmsi), ()):
            if (any_zone or alert.zone == zone) and alert.other_mmsi == other_mmsi:
                return alert
        return None

    def of_rule(self, rule: str) -> list[Alert]:
        """Active alerts of one rule, oldest first."""
        return list(self._by_rule.get(rule, {}).values())

    def has_open(self, mmsi: int) -> bool:
        return self._open_per_mmsi.get(mmsi, 0) > 0

    def open_alerts(self) -> list[Alert]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    # -- transitions ----------------------------------------------------------------------

    def open(self, rule: str, *, risk_area: RiskArea, severity: Severity, mmsi: int | None,
             started_at: float, time: float, other_mmsi: int | None = None,
             zone: str | None = None, shipname: str | None = None, lat: float | None = None,
             lon: float | None = None, details: dict[str, Any] | None = None,
             alert_id: str = "") -> Alert | None:
        """Open a state-based alert; ``None`` when one with the same key is already active.

        The key is (rule, mmsi, zone, other_mmsi), or ``alert_id`` when the caller gives one
        (e.g. a receiver's alert, which has no vessel).
        """
        if not alert_id and self.find(rule, mmsi, zone=zone, other_mmsi=other_mmsi):
            return None
        alert = Alert(rule=rule, risk_area=risk_area, severity=severity, mmsi=mmsi,
                      started_at=started_at, other_mmsi=other_mmsi, shipname=shipname,
                      zone=zone, lat=lat, lon=lon, drill=self.drill,
                      details=dict(details or {}), id=alert_id)
        if alert.id in self._by_id:
            return None
        self._add(alert)
        self._emit(Transition.NEW, alert, time)
        return alert

    def update(self, alert: Alert, time: float, *, lat: float | None = None,
               lon: float | None = None, details: dict[str, Any] | None = None) -> None:
        """A significant change to an active alert (rules call this sparingly)."""
        if lat is not None and lon is not None:
            alert.lat, alert.lon = lat, lon
        if details:
            alert.details.update(details)
        self._emit(Transition.UPDATE, alert, time)

    def end(self, alert: Alert, time: float, details: dict[str, Any] | None = None, *,
            ended_at: float | None = None) -> None:
        """The condition is over: set ``ended_at`` once and forget the alert.

        ``time`` is when this is noticed (the event time); ``ended_at`` when the condition
        ended, if earlier (e.g. a device silent since then).
        """
        if alert.id not in self._by_id:
            return
        if details:
            alert.details.update(details)
        alert.ended_at = max(time if ended_at is None else ended_at, alert.started_at)
        alert.state = AlertState.ENDED
        self._remove(alert)
        self._emit(Transition.END, alert, time)

    def event(self, rule: str, *, risk_area: RiskArea, severity: Severity, mmsi: int | None,
              time: float, other_mmsi: int | None = None, zone: str | None = None,
              shipname: str | None = None, lat: float | None = None, lon: float | None = None,
              details: dict[str, Any] | None = None) -> Alert:
        """An instantaneous alert: one ``new`` transition, already ``ended`` at its start."""
        alert = Alert(rule=rule, risk_area=risk_area, severity=severity, mmsi=mmsi,
                      started_at=time, other_mmsi=other_mmsi, shipname=shipname, zone=zone,
                      lat=lat, lon=lon, state=AlertState.ENDED, ended_at=time,
                      drill=self.drill, details=dict(details or {}))
        seen = self._event_ids
        if alert.id in seen:
            # Two events of one rule for one vessel at one time (a class B vessel's 24A and
            # 24B in the same second, each changing a field): a consumer de-duplicating by
            # id, and the store, must keep both. Numbered in order: still deterministic.
            number = 1
            while (key := alert_id(rule, mmsi, other_mmsi, f"{zone}#{number}", time,
                                   self.drill)) in seen:
                number += 1
            alert.id = key
        seen[alert.id] = None
        if len(seen) > _EVENT_IDS_KEPT:
            seen.popitem(last=False)
        self._emit(Transition.NEW, alert, time)
        return alert

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Take back alerts still active after a restart (ended ones are ignored)."""
        for alert in alerts:
            if alert.is_active and alert.id not in self._by_id:
                self._add(alert)

    def drain(self) -> list[AlertEvent]:
        """The transitions since the last drain (most reports cause none: no new list)."""
        events = self._events
        if not events:
            return []
        self._events = []
        return events

    # -- internals ------------------------------------------------------------------------

    def _add(self, alert: Alert) -> None:
        self._by_id[alert.id] = alert
        self._by_rule.setdefault(alert.rule, {})[alert.id] = alert
        self._by_vessel.setdefault((alert.rule, alert.mmsi), []).append(alert)
        for mmsi in (alert.mmsi, alert.other_mmsi):
            if mmsi is not None:
                self._open_per_mmsi[mmsi] = self._open_per_mmsi.get(mmsi, 0) + 1

    def _remove(self, alert: Alert) -> None:
        del self._by_id[alert.id]
        del self._by_rule[alert.rule][alert.id]
        key = (alert.rule, alert.mmsi)
        bucket = self._by_vessel[key]
        bucket.remove(alert)
        if not bucket:
            del self._by_vessel[key]
        for mmsi in (alert.mmsi, alert.other_mmsi):
            if mmsi is not None:
                left = self._open_per_mmsi.get(mmsi, 0) - 1
                if left > 0:
                    self._open_per_mmsi[mmsi] = left
                else:
                    self._open_per_mmsi.pop(mmsi, None)

    def _emit(self, transition: Transition, alert: Alert, time: float) -> None:
        self._events.append(AlertEvent(transition, snapshot(alert), time))


def snapshot(alert: Alert) -> dict[str, Any]:
    """:meth:`Alert.to_dict` with its own copy of ``details`` (the alert keeps changing)."""
    out = alert.to_dict()
    out["details"] = json_copy(alert.details)
    return out


def json_copy(value: Any) -> Any:
    """A deep copy of JSON-like data: dicts and lists are copied, anything else is shared.

    Tuples are rebuilt only when they hold something mutable; other values (numbers,
    strings, None, enums) are immutable and shared, as :func:`copy.deepcopy` would.
    """
    kind = type(value)
    if kind is dict:
        # A C-level copy, then only the values that are not atoms copied in place (setting
        # an existing key while iterating is allowed: the dict does not change size).
        out = value.copy()
        for k, v in out.items():
            if type(v) not in _ATOMS:
                out[k] = json_copy(v)
        return out
    if kind is list:
        copied = value.copy()
        for index, v in enumerate(copied):
            if type(v) not in _ATOMS:
                copied[index] = json_copy(v)
        return copied
    if kind is tuple:
        items = tuple(json_copy(v) for v in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if kind in _ATOMS:
        return value
    return copy.deepcopy(value)  # anything unusual: the general (slow) path


_ATOMS = frozenset({str, int, float, bool, type(None)})
