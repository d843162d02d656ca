"""The live picture: one :class:`Vessel` per MMSI, the receivers that hear them, and zone
membership with inertia.

A vessel's whole state (including the per-rule state rules keep in ``rule_state``) is plain
JSON through :meth:`Vessel.to_state` / :meth:`Vessel.from_state`, so the store can save it and
timers such as ``dark_vessel`` survive a restart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from geofence.zones import Zone, ZoneSet
from geofence.zones import point as zone_point
from ingest.report import STATIC_FIELDS, Report, iso_time

KINEMATIC_FIELDS: tuple[str, ...] = ("speed", "course", "heading", "turn", "status", "accuracy")
#: Base stations, AtoN and base-station management messages: not vessels.
NON_VESSEL_TYPES = frozenset({4, 11, 16, 17, 20, 21, 22, 23})
STATUS_AT_ANCHOR = 1
STATUS_MOORED = 5
_NEVER = float("-inf")
#: What a restart keeps of a vessel's last report: what alert evidence quotes.
_KEPT_REPORT_FIELDS = ("msg_type", "time", "sources", "lat", "lon", "speed", "course",
                       "heading", "status")


class Fix(NamedTuple):
    """One accepted position, in WGS 84 and in metres."""

    time: float
    lat: float
    lon: float
    x: float
    y: float
    speed: float | None
    course: float | None


_new_fix = tuple.__new__


@dataclass(slots=True, eq=False)
class Receiver:
    """A receiver (tag-block station or source): when last heard and since when without gaps."""

    name: str
    last_heard: float
    up_since: float
    messages: int = 0
    #: Its silence counts from here when later than ``last_heard``: the first message time
    #: after the service's own downtime (it may not have sent since the restart).
    silence_from: float = _NEVER
    #: The port's clock (the newest message time of any receiver, in line order) when it
    #: was last heard: its silence counts from here (``source_silent``'s start and id).
    #: Its own stamps may run behind that clock (a national feed's delay) and would make it
    #: look silent while it is heard all the time.
    heard_at: float = _NEVER
    #: The engine's clock when it was last heard: ``heard_at``, or later in live mode, where
    #: ticks move the clock on with the wall clock between lines. Whether it is silent *now*
    #: is judged by this (a feed stamped behind its arrival is still heard once the source
    #: ahead of it fell silent); being wall time, it never dates an alert.
    heard_live: float = _NEVER
    #: Silent longer than this, it is silent: ``source_silent`` alerts, its continuity breaks
    #: and ``dark_vessel`` no longer counts it as hearing its vessels. Its own limit
    #: (``receiver_silent_s``: a sparse remote station) or ``silent_s``; set by the picture.
    silent_s: float = 120.0

    def hear(self, time: float, clock: float, now: float, counted: int = 1) -> None:
        """A message stamped ``time``, heard at ``clock`` (message time) when the engine's
        clock was ``now`` (``>= clock``); a silence longer than ``silent_s`` (in its own
        stamps) breaks continuity. ``counted``: 0 when its report is counted on its own."""
        if time - self.last_heard > self.silent_s:
            self.up_since = time
        if time > self.last_heard:
            self.last_heard = time
        if clock > self.heard_at:
            self.heard_at = clock
        if now > self.heard_live:
            self.heard_live = now
        self.messages += counted


@dataclass(slots=True, eq=False)
class Vessel:
    """Everything known about one MMSI (times are message time, Unix seconds)."""

    mmsi: int
    first_seen: float
    last_seen: float
    ais_class: str | None = None
    lat: float | None = None
    lon: float | None = None
    x: float | None = None
    y: float | None = None
    fix_time: float | None = None
    speed: float | None = None
    course: float | None = None
    heading: int | None = None
    turn: float | None = None
    status: int | None = None
    accuracy: bool | None = None
    shipname: str | None = None
    callsign: str | None = None
    imo: int | None = None
    shiptype: int | None = None
    to_bow: int | None = None
    to_stern: int | None = None
    to_port: int | None = None
    to_starboard: int | None = None
    draught: float | None = None
    destination: str | None = None
    static_time: float | None = None
    messages: int = 0
    #: receiver -> last time it heard this vessel
    sources: dict[str, float] = field(default_factory=dict)
    #: confirmed zone ids, in the order entered (a dict keeps iteration deterministic)
    zones: dict[str, None] = field(default_factory=dict)
    #: zone id -> +n consecutive reports inside (not yet entered) / -n outside (not yet left)
    pending: dict[str, int] = field(default_factory=dict)
    history: deque[Fix] = field(default_factory=lambda: deque(maxlen=16))
    #: per-rule state, JSON values only (rules own their key)
    rule_state: dict[str, Any] = field(default_factory=dict)
    last_report: Report | None = None
    # cache: (x, y) and zone ids containing it, so a vessel at rest skips the geometry
    _inside_at: tuple[float, float] | None = None
    _inside: tuple[str, ...] = ()

    @property
    def length(self) -> int | None:
        if self.to_bow is None or self.to_stern is None:
            return None
        return self.to_bow + self.to_stern or None

    @property
    def stationary_status(self) -> bool:
        return self.status in (STATUS_AT_ANCHOR, STATUS_MOORED)

    def to_dict(self) -> dict[str, Any]:
        """The API/MQTT shape: gpsd names, nulls left out, times ISO 8601."""
        out: dict[str, Any] = {"mmsi": self.mmsi}
        for name in ("ais_class", "lat", "lon", *KINEMATIC_FIELDS, *STATIC_FIELDS):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["time"] = iso_time(self.last_seen)
        if self.fix_time is not None:
            out["fix_time"] = iso_time(self.fix_time)
        out["first_seen"] = iso_time(self.first_seen)
        out["last_seen"] = iso_time(self.last_seen)
        out["sources"] = sorted(self.sources)
        out["zones"] = list(self.zones)
        return out

    def to_state(self) -> dict[str, Any]:
        """Everything needed to resume after a restart, as JSON values."""
        state: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("mmsi", "first_seen", "last_seen", "ais_class", "lat", "lon", "x", "y",
                         "fix_time", *KINEMATIC_FIELDS, *STATIC_FIELDS, "static_time",
                         "messages")
        }
        state["sources"] = dict(self.sources)
        state["zones"] = list(self.zones)
        state["pending"] = dict(self.pending)
        state["history"] = [list(fix) for fix in self.history]
        state["history_len"] = self.history.maxlen
        state["rule_state"] = self.rule_state
        report = self.last_report
        if report is not None:  # the evidence a dark alert quotes
            state["last_report"] = {name: getattr(report, name) for name in _KEPT_REPORT_FIELDS}
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Vessel:
        simple = {k: v for k, v in state.items()
                  if k not in ("sources", "zones", "pending", "history", "history_len",
                               "rule_state", "last_report")}
        vessel = cls(**simple)
        vessel.sources = {str(k): float(v) for k, v in state.get("sources", {}).items()}
        vessel.zones = dict.fromkeys(state.get("zones", ()))
        vessel.pending = {str(k): int(v) for k, v in state.get("pending", {}).items()}
        vessel.history = deque((Fix(*item) for item in state.get("history", ())),
                               maxlen=state.get("history_len") or 16)
        vessel.rule_state = dict(state.get("rule_state", {}))
        last = state.get("last_report")
        if last:
            vessel.last_report = Report(mmsi=vessel.mmsi, time_source="restored", nmea=[],
                                        **last)
        return vessel


class Picture:
    """Vessels by MMSI and receivers by name; nothing here knows about alerts."""

    def __init__(self, *, history_len: int = 16, live_s: float = 900.0,
                 silent_s_for: Callable[[str], float] = lambda _name: 120.0) -> None:
        """``silent_s_for``: a receiver's silence limit by name (``SourceSilentConfig``'s)."""
        self.vessels: dict[int, Vessel] = {}
        self.receivers: dict[str, Receiver] = {}
        self.history_len = history_len
        self.live_s = live_s
        self.silent_s_for = silent_s_for

    def new_receiver(self, name: str, last_heard: float, up_since: float) -> Receiver:
        """A receiver with its silence limit (looked up once: it is heard on every line)."""
        rec = self.receivers[name] = Receiver(
            name, last_heard, up_since,
            silent_s=self.silent_s_for(name))
        return rec

    def __len__(self) -> int:
        return len(self.vessels)

    def get(self, mmsi: int) -> Vessel | None:
        return self.vessels.get(mmsi)

    def live(self, now: float) -> Iterator[Vessel]:
        """Vessels heard within ``live_s`` of ``now`` (others keep their state, unlisted)."""
        horizon = now - self.live_s
        return (v for v in self.vessels.values() if v.last_seen >= horizon)

    def hear(self, receiver: str, time: float, clock: float, now: float,
             counted: int = 1) -> Receiver:
        rec = self.receivers.get(receiver)
        if rec is None:
            rec = self.new_receiver(receiver, time, time)
        rec.hear(time, clock, now, counted)
        return rec

    def vessel_for(self, report: Report) -> Vessel:
        vessel = self.vessels.get(report.mmsi)
        if vessel is None:
            vessel = self.vessels[report.mmsi] = Vessel(
                report.mmsi, report.time, report.time,
                history=deque(maxlen=self.history_len))
        return vessel

    @staticmethod
    def note(vessel: Vessel, report: Report) -> None:
        """What every report tells: heard, by whom, class, static and voyage data."""
        t = report.time
        if t > vessel.last_seen:
            vessel.last_seen = t
        if t < vessel.first_seen:
            vessel.first_seen = t
        vessel.messages += 1
        vessel.last_report = report
        sources = vessel.sources
        for name in report.sources:
            if sources.get(name, _NEVER) < t:
                sources[name] = t
        ais_class = report.ais_class
        if ais_class is not None:
            vessel.ais_class = ais_class
        if report.shipname is not None or report.shiptype is not None or (
                report.callsign is not None or report.to_bow is not None):
            # A static report older than the newest one (a late copy from another
            # receiver, a satellite pass) only fills what is still unknown.
            newer = vessel.static_time is None or t >= vessel.static_time
            for name in STATIC_FIELDS:
                value = getattr(report, name)
                if value is not None and (newer or getattr(vessel, name) is None):
                    setattr(vessel, name, value)
            if newer:
                vessel.static_time = t

    @staticmethod
    def move(vessel: Vessel, report: Report, x: float | None, y: float | None) -> None:
        """Kinematics and (when ``x``/``y`` are given) the position of an accepted report."""
        # Written out: this runs for every report.
        if report.speed is not None:
            vessel.speed = report.speed
        if report.course is not None:
            vessel.course = report.course
        if report.heading is not None:
            vessel.heading = report.heading
        if report.turn is not None:
            vessel.turn = report.turn
        if report.status is not None:
            vessel.status = report.status
        if report.accuracy is not None:
            vessel.accuracy = report.accuracy
        if x is None or y is None or report.lat is None or report.lon is None:
            return
        if vessel.fix_time is not None and report.time < vessel.fix_time:
            return  # an older fix arriving late must not move the vessel back
        vessel.lat, vessel.lon, vessel.x, vessel.y = report.lat, report.lon, x, y
        vessel.fix_time = report.time
        # Fix(...) without the namedtuple's Python-level __new__: one per accepted fix.
        vessel.history.append(_new_fix(Fix, (report.time, report.lat, report.lon, x, y,
                                             report.speed, report.course)))

    def forget(self, before: float) -> list[int]:
        """Drop vessels last heard before ``before``; their MMSIs."""
        gone = [m for m, v in self.vessels.items() if v.last_seen < before]
        for mmsi in gone:
            del self.vessels[mmsi]
        return gone


def zone_ids_here(vessel: Vessel, zones: ZoneSet) -> tuple[str, ...]:
    """Ids of the zones containing the vessel's current fix (not confirmed membership).

    Cached on the vessel for its fix, so membership and the rules ask the geometry once.
    """
    x, y = vessel.x, vessel.y
    if x is None or y is None:
        return ()
    if vessel._inside_at == (x, y):
        return vessel._inside
    inside = zones.ids_at(x, y)
    vessel._inside_at, vessel._inside = (x, y), inside
    return inside


def remember_zone_ids(vessel: Vessel, x: float, y: float, inside: tuple[str, ...]) -> None:
    """Fill :func:`zone_ids_here`'s cache for the vessel at ``(x, y)`` with ``inside``, the
    zones found there already (``Engine.project_ahead`` looks a whole run up at once)."""
    vessel._inside_at, vessel._inside = (x, y), inside


def update_membership(vessel: Vessel, zones: ZoneSet, inertia: int,
                      margin_m: float) -> tuple[list[Zone], list[Zone]]:
    """Advance zone membership with the vessel's current fix; return (entered, exited).

    Entering takes ``inertia`` consecutive reports inside; leaving takes ``inertia``
    consecutive reports more than ``margin_m`` outside, so a vessel hovering on a boundary
    enters once instead of flickering.
    """
    x, y = vessel.x, vessel.y
    if x is None or y is None:
        return [], []
    by_id = zones.by_id
    point = None
    reach = margin_m + 1.0
    inside = zone_ids_here(vessel, zones)
    confirmed, pending = vessel.zones, vessel.pending
    if not pending and len(inside) == len(confirmed):
        # The usual report: still inside exactly the zones it is a member of.
        for zid in inside:
            if zid not in confirmed:
                break
        else:
            return [], []
    entered: list[Zone] = []
    exited: list[Zone] = []
    for zid in inside:
        if zid in confirmed:
            pending.pop(zid, None)
            continue
        count = max(pending.get(zid, 0), 0) + 1
        if count >= inertia:
            confirmed[zid] = None
            pending.pop(zid, None)
            entered.append(by_id[zid])
        else:
            pending[zid] = count
    for zid in list(confirmed):
        if zid in inside:
            continue
        zone = by_id.get(zid)
        if zone is None:  # removed by a zone swap
            del confirmed[zid]
            pending.pop(zid, None)
            continue
        box = zone.box
        if margin_m > 0 and (box is None or (
                box[0] - x <= reach and x - box[2] <= reach
                and box[1] - y <= reach and y - box[3] <= reach)):
            # Within reach of its bounding box: the exact distance decides (farther from
            # the box than the margin and a metre, it is farther from the zone as well).
            if point is None:
                point = zone_point(x, y)
            if zone.metric.distance(point) <= margin_m:
                pending.pop(zid, None)
                continue
        count = min(pending.get(zid, 0), 0) - 1
        if -count >= inertia:
            del confirmed[zid]
            pending.pop(zid, None)
            exited.append(zone)
        else:
            pending[zid] = count
    if pending:
        for zid in [z for z, n in pending.items() if n > 0 and z not in inside]:
            del pending[zid]
    return entered, exited
