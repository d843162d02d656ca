"""``position_jump``: a fix that the vessel could not have reached (VALIDATE phase).

A fix at least ``min_distance_m`` from the vessel's last accepted fix, at an implied speed
above ``max_speed_kn`` (distance on the WGS 84 ellipsoid over the message-time difference),
is rejected: it never enters the picture, so ``dark_vessel``, ``loitering``, ``speeding`` and
the other observers do not act on it. Reported speeds play no part (a "not available" speed
is null anyway): the jump is judged on positions and times alone. SAR aircraft (message 9)
are not judged, unless the MMSI was heard on a ship's position reports (see :func:`judged`).

The alert is state-based: it opens on the first rejected fix and ends once ``clear_s`` pass
without another. When ``confirm_reports`` rejected fixes in a row agree with each other, the
vessel really is there (the old fix was the bad one): that fix is accepted and the alert ends
as ``relocated``. While ``mmsi_conflict`` holds for the vessel it speaks for the incident and
no new ``position_jump`` alert is opened. Nor is one for a placeholder MMSI
(:func:`~geofence.mid.is_placeholder`: 111111111, 123456789, …): unrelated transponders share
it, so its fixes far apart are expected, and ``invalid_mmsi`` already names the number; the
fixes are still rejected, so the picture does not leap between them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pyproj import Geod

from geofence.alert import RiskArea, Severity
from geofence.mid import is_placeholder
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, Phase, RuleContext, evidence, reprojected
from ingest.report import Report, iso_time

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

MS_TO_KN = 3600.0 / 1852.0
SAR_AIRCRAFT_TYPE = 9


def implied_speed_kn(distance_m: float, dt_s: float) -> float:
    """Knots needed to cover ``distance_m`` in ``dt_s`` (infinite at the same instant)."""
    dt = abs(dt_s)
    return math.inf if dt == 0 else distance_m / dt * MS_TO_KN


#: The pre-filter's thresholds are lowered by this much more than the projection's scale:
#: the projected and the ellipsoid's distances are each rounded (to well under a millimetre).
_ROUNDING = 1e-6


class JumpTest:
    """The shared definition of a jump, used by ``position_jump`` and ``mmsi_conflict``."""

    __slots__ = ("_crs", "_pre", "max_speed_kn", "min_distance_m")

    def __init__(self, config: RulesConfig) -> None:
        self.max_speed_kn = config.position_jump.max_speed_kn
        self.min_distance_m = config.position_jump.min_distance_m
        #: the pre-filter's (metres, knots) in projected metres: taken from the zones'
        #: projection on first use, forgotten when the zones change (:meth:`on_zones`)
        self._pre: tuple[float, float] | None = None
        #: the projection the rules' places in metres are in (:meth:`on_zones`)
        self._crs: str | None = None

    def is_jump(self, distance_m: float, dt_s: float) -> bool:
        return distance_m >= self.min_distance_m and (
            implied_speed_kn(distance_m, dt_s) > self.max_speed_kn)

    def on_zones(self, ctx: RuleContext) -> bool:
        """New zones (or restored state): whether they come in another projection than the
        last ones, so that places the rules keep in metres must follow (at the first call
        always: restored state may be in any)."""
        crs = ctx.zones.crs
        if crs == self._crs:
            return False
        self._crs, self._pre = crs, None
        return True

    def _take_projection(self, ctx: RuleContext) -> tuple[float, float]:
        """The pre-filter's thresholds: the limits times the projection's smallest scale
        (:attr:`Projector.min_scale`), so no true jump measures under them."""
        projector = ctx.zones.projector  # set: the fix was projected
        if projector is None:
            return (0.0, 0.0)  # no scale known: every move goes to the ellipsoid
        floor = projector.min_scale * (1.0 - _ROUNDING)
        pre = self._pre = (self.min_distance_m * floor, self.max_speed_kn * floor)
        return pre

    def jump_distance(self, ctx: RuleContext, x: float, y: float, lat: float, lon: float,
                      x0: float, y0: float, lat0: float, lon0: float,
                      dt_s: float) -> float | None:
        """Metres between two fixes when the move is a jump, else None.

        Projected metres answer first (cheap), against the limits lowered by the
        projection's smallest scale: where the scale is under 1 (0.9996 on a UTM zone's
        central meridian) a projected distance is shorter than the true one, and a jump
        just over the limits measured under them. What passes is decided on the
        ellipsoid, because far from the projection's zone (a national or satellite feed)
        UTM stretches distances many times over.
        """
        distance = math.hypot(x - x0, y - y0)
        pre = self._pre
        if pre is None:
            pre = self._take_projection(ctx)
        if distance < pre[0] or implied_speed_kn(distance, dt_s) <= pre[1]:
            return None
        distance = geodesic_m(lat0, lon0, lat, lon)
        return distance if self.is_jump(distance, dt_s) else None

    def jumps_from_prev(self, ctx: RuleContext, x: float, y: float, lat: float, lon: float,
                        t: float) -> bool:
        """Whether the fix at ``t`` is a jump from ``ctx.prev_fix`` (which must be set),
        worked out once per report: both rules ask it of every position."""
        jumped = ctx.prev_jump
        if jumped is None:
            prev = ctx.prev_fix
            assert prev is not None
            jumped = ctx.prev_jump = self.jump_distance(
                ctx, x, y, lat, lon, prev.x, prev.y, prev.lat, prev.lon,
                t - prev.time) is not None
        return jumped


_WGS84 = Geod(ellps="WGS84")


def geodesic_m(lat0: float, lon0: float, lat: float, lon: float) -> float:
    """Metres on the WGS 84 ellipsoid between two points."""
    return float(_WGS84.inv(lon0, lat0, lon, lat)[2])


def judged(report: Report, vessel: Vessel) -> bool:
    """Reports whose position is judged: a position, and not a SAR aircraft's.

    A SAR aircraft report (message 9) from an MMSI heard on a ship's position reports
    (class A or B) is judged like any of its fixes: anyone can send message 9 with any
    MMSI, and unjudged it moved a real vessel's picture 14 km (every second of the vessel's
    own fixes then rejected as a jump from it), or, one sent by a vessel about to switch
    off, put its last fix outside coverage so that ``dark_vessel`` never called it dark.
    """
    return report.lat is not None and report.lon is not None and (
        report.msg_type != SAR_AIRCRAFT_TYPE or vessel.ais_class is not None)


class PositionJump(BaseRule):
    name = "position_jump"
    needs_fix = True
    phase = Phase.VALIDATE

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.position_jump
        self.test = JumpTest(config)
        self.confirm_reports = cfg.confirm_reports
        self.clear_s = cfg.clear_s

    def on_zones(self, ctx: RuleContext) -> None:
        if not self.test.on_zones(ctx):
            return
        # The other place is kept in projected metres, measured against the next fixes: it
        # follows the zones' projection, from its lat/lon (judged afresh when it has none).
        for vessel in ctx.picture.vessels.values():
            state = vessel.rule_state.get(self.name)
            alt = None if state is None else state.get("alt")
            if state is None or alt is None:
                continue
            xy = reprojected(ctx, alt[4], alt[5]) if len(alt) >= 6 else None
            if xy is None:
                del state["alt"]
            else:
                alt[1], alt[2] = xy

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        prev = ctx.prev_fix
        if prev is None or not judged(report, vessel):
            return
        x, y = ctx.x, ctx.y  # projected once by the engine
        lat, lon = report.lat, report.lon
        assert x is not None and y is not None and lat is not None and lon is not None
        state = vessel.rule_state.get(self.name)
        t = report.time
        test = self.test
        if not test.jumps_from_prev(ctx, x, y, lat, lon, t):
            if state is not None:  # back on its track
                state.pop("alt", None)
                if not (state.get("alert") and ctx.book.get(str(state["alert"]))):
                    del vessel.rule_state[self.name]
            return
        if ctx.book.find("mmsi_conflict", vessel.mmsi) is not None:
            return  # two transmitters: mmsi_conflict decides which fixes the picture takes
        if state is None:
            state = vessel.rule_state[self.name] = {}
        alt = state.get("alt")
        if alt is not None and len(alt) < 6:
            alt = None  # saved before the place had its lat/lon: judge afresh
        run = 1
        if alt is not None and test.jump_distance(ctx, x, y, lat, lon, alt[1], alt[2], alt[4],
                                                  alt[5], t - alt[0]) is None:
            run = int(alt[3]) + 1
        if run >= self.confirm_reports:
            # Several fixes agree on the new place: accept it, the old fix was the odd one.
            state.pop("alt", None)
            self._end(ctx, vessel, state, t, "relocated")
            return
        state["alt"] = [t, x, y, run, lat, lon]
        ctx.reject_fix(self.name)
        state["last"] = t
        state["rejected"] = int(state.get("rejected", 0)) + 1
        if state.get("alert") and ctx.book.get(str(state["alert"])) is not None:
            return
        if ctx.book.find("mmsi_conflict", vessel.mmsi) is not None:
            return  # the conflict alert covers it
        if is_placeholder(vessel.mmsi):
            return  # many devices send it: their jumps are expected (invalid_mmsi names it)
        distance = geodesic_m(prev.lat, prev.lon, lat, lon)
        speed = implied_speed_kn(distance, t - prev.time)
        alert = ctx.book.open(
            self.name, risk_area=RiskArea.INFORMATION_SECURITY, severity=Severity.WARNING,
            mmsi=vessel.mmsi, started_at=t, time=t, shipname=vessel.shipname,
            lat=prev.lat, lon=prev.lon,
            details={"distance_m": round(distance, 1), "dt_s": round(t - prev.time, 3),
                     "implied_speed_kn": None if math.isinf(speed) else round(speed, 1),
                     "limit_kn": self.test.max_speed_kn,
                     "accepted": {"time": iso_time(prev.time), "lat": prev.lat,
                                  "lon": prev.lon},
                     "rejected": evidence(report)})
        state["alert"] = alert.id if alert is not None else None
        state["rejected"] = 1

    def _end(self, ctx: RuleContext, vessel: Vessel, state: dict[str, Any], t: float,
             reason: str, ended_at: float | None = None) -> None:
        alert_id = state.pop("alert", None)
        alert = ctx.book.get(str(alert_id)) if alert_id else None
        if alert is not None:
            ctx.book.end(alert, t, {"rejected_fixes": int(state.get("rejected", 0)),
                                    "end_reason": reason}, ended_at=ended_at)
        vessel.rule_state.pop(self.name, None)

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        for alert in ctx.book.of_rule(self.name):
            vessel = ctx.picture.get(alert.mmsi) if alert.mmsi is not None else None
            state = vessel.rule_state.get(self.name) if vessel is not None else None
            last = float(state.get("last", alert.started_at)) if state else alert.started_at
            if now - last >= self.clear_s:
                if vessel is not None and state is not None:
                    self._end(ctx, vessel, state, now, "clear", ended_at=last)
                else:
                    ctx.book.end(alert, now, {"end_reason": "clear"}, ended_at=last)
