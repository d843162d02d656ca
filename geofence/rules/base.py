"""The rule interface and the context the engine hands every rule.

A report goes through two phases. ``VALIDATE`` rules see the vessel *before* the report is
applied (previous fix, previous time) and may call :meth:`RuleContext.reject_fix` to mark the
report suspect: its position and kinematics then do not enter the picture and ``OBSERVE``
rules see ``ctx.fix_accepted`` false. ``OBSERVE`` rules run after the picture update, with the
zones entered and left in ``ctx.entered`` / ``ctx.exited``. Rules run in registry order within
a phase; alerts go through ``ctx.book``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

from geofence.alertbook import AlertBook
from geofence.picture import Fix, Picture, Vessel
from geofence.projection import Projector
from geofence.zones import Zone, ZoneSet
from ingest.report import Report, iso_time

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig


class Phase(IntEnum):
    VALIDATE = 0
    OBSERVE = 1


@dataclass(slots=True, eq=False)
class RuleContext:
    """Shared by all rules of one engine; the per-report fields are reset for each report."""

    config: RulesConfig
    zones: ZoneSet
    picture: Picture
    book: AlertBook
    now: float = float("-inf")
    #: Whether a vessel is a subject of the rules (``watch_area``); for state rebuilt from
    #: the picture, which also holds vessels outside the port.
    in_watch_area: Callable[[Vessel], bool] = field(default=lambda _vessel: True)
    # -- per report --
    suspect: str | None = None
    fix_accepted: bool = False
    prev_seen: float | None = None
    prev_fix: Fix | None = None
    prev_report: Report | None = None
    #: this report's position in metres (projected once by the engine), None without one
    x: float | None = None
    y: float | None = None
    entered: list[Zone] = field(default_factory=list)
    exited: list[Zone] = field(default_factory=list)
    #: whether this report's fix is a jump from ``prev_fix`` (``JumpTest.jumps_from_prev``,
    #: shared by ``position_jump`` and ``mmsi_conflict``); None until a rule asks
    prev_jump: bool | None = None

    def reject_fix(self, reason: str) -> None:
        """VALIDATE phase: keep this report's position and kinematics out of the picture."""
        if self.suspect is None:
            self.suspect = reason


class Rule(Protocol):
    """One rule. ``name`` is the alert ``rule`` and the config section."""

    name: str
    phase: Phase

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        """A vessel report (never own-ship, never base stations or AtoN)."""

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        """Timers: ``now`` is the newest message time (or the wall clock in live mode)."""

    def on_zones(self, ctx: RuleContext) -> None:
        """The zone set was swapped (``ctx.zones`` is the new one); also called at a restart
        after ``on_restore`` and ``load_state``: what depends on zones and the picture is
        rebuilt here, once."""

    def on_restore(self, ctx: RuleContext) -> None:
        """Vessels and open alerts were restored after a restart: rebuild derived state (what
        ``on_zones``, called next, does not), from nothing: it is called again when
        ``load_state`` raised, to drop what that took (the rule starts afresh)."""

    def on_forget(self, ctx: RuleContext, mmsis: Set[int]) -> None:
        """These vessels left the picture for good (their alerts are ended): drop what the
        rule keeps on them outside ``Vessel.rule_state``."""

    def saved_state(self) -> Any:
        """The rule's own state that belongs to no vessel, as JSON values, to keep across a
        restart (None: nothing to keep)."""

    def load_state(self, ctx: RuleContext, state: Any) -> None:
        """After ``on_restore``: what ``saved_state`` gave before the restart (perhaps an
        older version's: raising costs the rule that state only, see ``Engine.restore``)."""


class BaseRule:
    """No-op defaults for the optional hooks."""

    name = ""
    phase = Phase.OBSERVE
    #: OBSERVE rules that only react to ``ctx.entered``/``ctx.exited`` set this: the engine
    #: then calls ``on_report`` only for reports that changed zone membership.
    zone_changes_only = False
    # What a rule needs before it does anything; the engine does not call it otherwise
    # (each is a promise that ``on_report`` returns at once, with no effect, without it).
    #: the report carries a position (VALIDATE) / an accepted fix (OBSERVE)
    needs_fix = False
    #: the message types it looks at (None: all)
    msg_types: frozenset[int] | None = None
    #: it ignores ship MMSIs (``geofence.mid.is_ship_mmsi``): stations, devices, bad numbers
    non_ship_only = False
    #: it judges how a vessel moves or lies: never a SAR aircraft's report (message 9)
    vessels_only = False

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        return None

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        return None

    def on_zones(self, ctx: RuleContext) -> None:
        return None

    def on_restore(self, ctx: RuleContext) -> None:
        return None

    def on_forget(self, ctx: RuleContext, mmsis: Set[int]) -> None:
        return None

    def saved_state(self) -> Any:
        return None

    def load_state(self, ctx: RuleContext, state: Any) -> None:
        return None


RuleFactory = Callable[["RulesConfig"], Rule]


def evidence(report: Report) -> dict[str, Any]:
    """A compact copy of a report for alert ``details``."""
    out: dict[str, Any] = {"time": iso_time(report.time), "msg_type": report.msg_type}
    # Written out (in this key order): alerts quote reports often.
    if report.lat is not None:
        out["lat"] = report.lat
    if report.lon is not None:
        out["lon"] = report.lon
    if report.speed is not None:
        out["speed"] = report.speed
    if report.course is not None:
        out["course"] = report.course
    if report.heading is not None:
        out["heading"] = report.heading
    if report.status is not None:
        out["status"] = report.status
    out["sources"] = list(report.sources)
    return out


def first_inside(vessel: Vessel, inertia: int) -> dict[str, Any] | None:
    """The first of the ``inertia`` fixes inside that confirmed an entry (each accepted fix
    is in the history): when and where the vessel was first seen inside, one reporting
    interval before the alert (3 min for a class B or a moored class A)."""
    history = vessel.history
    if inertia < 2 or len(history) < inertia:
        return None
    fix = history[-inertia]
    return {"time": iso_time(fix.time), "lat": fix.lat, "lon": fix.lon}


def pair_evidence(report: Report) -> dict[str, Any]:
    """:func:`evidence` naming its vessel: a pair's alert quotes either vessel's reports."""
    return {"mmsi": report.mmsi, **evidence(report)}


def vessel_fields(vessel: Vessel) -> dict[str, Any]:
    """``shipname``, ``lat`` and ``lon`` for :meth:`AlertBook.open`."""
    return {"shipname": vessel.shipname, "lat": vessel.lat, "lon": vessel.lon}


def scale_at(ctx: RuleContext, x: float, lon: float, lat: float) -> float:
    """The zones' projection's scale factor at a fix (projected to ``x``): projected metres
    per true metre, 1.0 near the port. A rule divides a distance measured in projected
    metres by it, so that a national feed's vessels far from the central meridian are
    judged on true metres (:meth:`geofence.projection.Projector.scale`)."""
    projector = ctx.zones.projector
    return 1.0 if projector is None else projector.scale_at(x, lon, lat)


def reprojected(ctx: RuleContext, lat: float, lon: float) -> tuple[float, float] | None:
    """A kept place's metres in the zones' projection now, for a rule's ``on_zones`` after
    a swap to another projection; None where it has no point there."""
    x, y = ctx.zones.project(lon, lat)
    return (x, y) if math.isfinite(x) and math.isfinite(y) else None


def kept_elsewhere(ctx: RuleContext, rule: str
                   ) -> Iterator[tuple[dict[str, Any], Reprojector, str]]:
    """Each of ``rule``'s vessel states kept in a projection other than the zones' now (its
    ``"crs"``; a state without one is taken as in the zones'), with a :class:`Reprojector`
    into the zones' and their CRS: for a rule's ``on_zones``."""
    crs = ctx.zones.crs
    if crs is None:
        return
    carry = Reprojector(ctx.zones)
    for vessel in ctx.picture.vessels.values():
        state = vessel.rule_state.get(rule)
        if state is not None and state.get("crs", crs) != crs:
            yield state, carry, crs


class Reprojector:
    """Metres a rule kept in projection ``crs``, into the zones' projection now: for places
    kept without their lat/lon, in a rule's ``on_zones``."""

    def __init__(self, zones: ZoneSet) -> None:
        self.zones = zones
        self._old: dict[str, Projector] = {}

    def __call__(self, crs: str, x: float, y: float) -> tuple[float, float] | None:
        """None where either projection has no point."""
        old = self._old.get(crs)
        if old is None:
            old = self._old[crs] = Projector(crs)
        lon, lat = old.inverse(x, y)
        if not (math.isfinite(lon) and math.isfinite(lat)):
            return None
        x, y = self.zones.project(lon, lat)
        return (x, y) if math.isfinite(x) and math.isfinite(y) else None
