"""``encounter``: two vessels close together and slow for a long time, outside berths and
anchorages (a possible transfer at sea: smuggling, cargo theft).

A pair starts when both are slower than ``speed_kn`` and at most ``distance_m`` apart, both
outside zones of ``excluded_kinds``, neither of an exempt ship type (``exempt_shiptypes``:
tugs, pilots, SAR, port tenders, law enforcement work alongside others). After
``duration_s`` of message time the alert opens (state-based, started when the pair
started). It ends with hysteresis: once they are more than ``distance_m + end_margin_m``
apart, either is faster than ``end_speed_kn``, either enters an excluded zone or becomes
exempt, or either has been silent for ``stale_s`` (dated the silent one's last fix, never
before the time the alert said they were together when it opened). Zones may set ``encounter_m`` and
``encounter_s``; for a pair the most sensitive value among the zones either vessel is in
applies.

Neighbours come from a grid (:class:`geofence.neighbours.Grid`) holding only the vessels that
can be in a pair; a report looks at the vessels within reach of it, never at all vessels.

Distances are true metres: far from the projection's central meridian (a national feed's
vessels) a projected distance is divided by the scale factor, the mean of the two fixes'
(:meth:`geofence.projection.Projector.scale`; 1 within the port's UTM zone).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from geofence.alert import RiskArea, Severity
from geofence.mid import is_sar_aircraft
from geofence.neighbours import Grid, Pairs, pair_key
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, pair_evidence
from ingest.report import Report, iso_time

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

SWEEP_EVERY_S = 60.0


def is_exempt(vessel: Vessel, exempt: frozenset[int]) -> bool:
    """Exempt ship types, and SAR aircraft (111… / message 9) which are no vessels at all."""
    return (vessel.shiptype is not None and vessel.shiptype in exempt) or (
        is_sar_aircraft(vessel.mmsi))


class Encounter(BaseRule):
    name = "encounter"
    needs_fix = True

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.encounter
        self.distance_m = cfg.distance_m
        self.speed_kn = cfg.speed_kn
        self.duration_s = cfg.duration_s
        self.end_margin_m = cfg.end_margin_m
        self.end_speed_kn = max(cfg.end_speed_kn, cfg.speed_kn)
        self.stale_s = cfg.stale_s
        self.excluded = frozenset(cfg.excluded_kinds)
        self.exempt = frozenset(config.exempt_shiptypes)
        self._reach = self.distance_m + self.end_margin_m
        self._overrides = False
        #: mmsi -> (x, y, (time, speed, scale factor)) of vessels that can be in a pair
        self.grid: Grid[tuple[float, float, float]] = Grid(self._reach)
        #: the zones' Projector.scale and Projector.flat, once there is a projection
        self._scale: Callable[[float, float], float] | None = None
        self._flat = (math.inf, -math.inf)
        self.pairs = Pairs()
        self._next_sweep = float("-inf")

    # -- conditions -----------------------------------------------------------------------

    def _k(self, ctx: RuleContext, vessel: Vessel, x: float) -> float:
        """The projection's scale factor at the vessel's fix (at ``x``): 1.0 near the port."""
        x0, x1 = self._flat
        if x0 < x < x1:
            return 1.0
        scale = self._scale
        if scale is None:
            projector = ctx.zones.projector  # set: the fix was projected
            assert projector is not None
            scale = self._scale = projector.scale
            self._flat = projector.flat
        assert vessel.lon is not None and vessel.lat is not None
        return scale(vessel.lon, vessel.lat)

    def _excluded(self, ctx: RuleContext, vessel: Vessel) -> bool:
        by_id = ctx.zones.by_id
        for zid in vessel.zones:
            zone = by_id.get(zid)
            if zone is not None and zone.kind in self.excluded:
                return True
        return False

    def _limits(self, ctx: RuleContext, a: Vessel, b: Vessel) -> tuple[float, float]:
        """(distance, duration) for the pair: the most sensitive zone values apply."""
        distance, duration = self.distance_m, self.duration_s
        if self._overrides:
            by_id = ctx.zones.by_id
            for zid in (*a.zones, *b.zones):
                zone = by_id.get(zid)
                if zone is None:
                    continue
                distance = max(distance, zone.get("encounter_m", 0.0))
                duration = min(duration, zone.get("encounter_s", math.inf))
        return distance, duration

    # -- reports --------------------------------------------------------------------------

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        if not ctx.fix_accepted:
            return
        mmsi = vessel.mmsi
        speed = vessel.speed
        if speed is None or speed > self.end_speed_kn:
            if mmsi in self.grid or self.pairs.has(mmsi):  # the common case skips this
                self._leave(ctx, vessel, report, "speed")
            return
        if is_exempt(vessel, self.exempt) or self._excluded(ctx, vessel):
            if mmsi in self.grid or self.pairs.has(mmsi):
                self._leave(ctx, vessel, report, "excluded")
            return
        assert vessel.x is not None and vessel.y is not None
        t = report.time
        x, y = vessel.x, vessel.y
        x0, x1 = self._flat
        k = 1.0 if x0 < x < x1 else self._k(ctx, vessel, x)
        self.grid.put(mmsi, x, y, (t, speed, k))
        met: set[tuple[int, int]] = set()
        vessels = ctx.picture.vessels
        exempt, stale_s, pair_state = self.exempt, self.stale_s, self.pairs.state
        limit, duration = self.distance_m, self.duration_s
        for other, ox, oy, (ot, ospeed, ok) in self.grid.near(x, y, self._reach * k):
            if other == mmsi:
                continue
            if t - ot > stale_s:
                self._end_pair(ctx, pair_key(mmsi, other), t, "silent", ended_at=ot)
                continue
            partner = vessels.get(other)
            if partner is None or is_exempt(partner, exempt):
                continue
            key = (mmsi, other) if mmsi < other else (other, mmsi)
            distance = math.hypot(ox - x, oy - y)
            if k != 1.0 or ok != 1.0:
                distance *= 2.0 / (k + ok)  # projected metres to true ones
            if self._overrides:
                limit, duration = self._limits(ctx, vessel, partner)
            state = pair_state.get(key)
            if state is not None and state.get("alert"):
                if distance <= limit + self.end_margin_m and ospeed <= self.end_speed_kn:
                    met.add(key)
                    state["last_distance"] = distance
                continue
            if distance > limit or speed >= self.speed_kn or ospeed >= self.speed_kn:
                continue
            met.add(key)
            if state is None:
                state = self.pairs.add(key, {"since": t, "first": pair_evidence(report),
                                             "min_distance": distance})
            state["min_distance"] = min(state["min_distance"], distance)
            state["last_distance"] = distance
            if t - state["since"] >= duration:
                self._open(ctx, key, state, vessel, partner, report, distance)
        if self.pairs.has(mmsi):
            for key in self.pairs.of(mmsi) - met:
                self._end_pair(ctx, key, t, "apart_or_faster", report)

    def _open(self, ctx: RuleContext, key: tuple[int, int], state: dict[str, Any],
              vessel: Vessel, partner: Vessel, report: Report, distance: float) -> None:
        first, second = (vessel, partner) if vessel.mmsi == key[0] else (partner, vessel)
        t = report.time
        alert = ctx.book.open(
            self.name, risk_area=RiskArea.CRIMINAL_ACTIVITY, severity=Severity.WARNING,
            mmsi=key[0], other_mmsi=key[1], started_at=state["since"], time=t,
            shipname=first.shipname, lat=first.lat, lon=first.lon,
            details={"distance_m": round(distance, 1),
                     "min_distance_m": round(state["min_distance"], 1),
                     "duration_s": round(t - state["since"], 1),
                     "other_shipname": second.shipname,
                     "other_lat": second.lat, "other_lon": second.lon,
                     "speeds": [first.speed, second.speed],
                     "reports": [state["first"], pair_evidence(report)]})
        if alert is not None:
            state["alert"] = alert.id

    def _leave(self, ctx: RuleContext, vessel: Vessel, report: Report, reason: str) -> None:
        self.grid.remove(vessel.mmsi)
        for key in self.pairs.of(vessel.mmsi):
            self._end_pair(ctx, key, report.time, reason, report)

    def _end_pair(self, ctx: RuleContext, key: tuple[int, int], t: float, reason: str,
                  report: Report | None = None, ended_at: float | None = None) -> None:
        state = self.pairs.remove(key)
        if state is None or not state.get("alert"):
            return
        alert = ctx.book.get(str(state["alert"]))
        if alert is None:
            return
        if ended_at is not None:
            # A silent partner's last fix may be older than the report that opened the
            # alert (a moored vessel reports every 3 min): the pair was together for as long
            # as the alert said when it opened, so it does not end before that.
            raised = alert.started_at + float(alert.details.get("duration_s", 0.0))
            ended_at = max(ended_at, raised)
        details: dict[str, Any] = {"end_reason": reason,
                                   "duration_s": round((ended_at or t) - alert.started_at, 1),
                                   "min_distance_m": round(state.get("min_distance", 0.0), 1)}
        if report is not None:
            details["exit"] = pair_evidence(report)
        ctx.book.end(alert, t, details, ended_at=ended_at)

    # -- timers, zones, restart -----------------------------------------------------------

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_S
        horizon = now - self.stale_s
        for mmsi in self.grid.members():
            entry = self.grid.get(mmsi)
            if entry is not None and entry[2][0] < horizon:
                self.grid.remove(mmsi)
        for key in list(self.pairs.state):
            seen = [v.last_seen if (v := ctx.picture.get(m)) is not None else -math.inf
                    for m in key]
            last = min(seen)
            if last < horizon:
                self._end_pair(ctx, key, now, "silent",
                               ended_at=last if last > -math.inf else None)

    def _rebuild(self, ctx: RuleContext) -> None:
        self._overrides = any("encounter_m" in z.overrides or "encounter_s" in z.overrides
                              for z in ctx.zones)
        most = max([self.distance_m, *(z.get("encounter_m", 0.0) for z in ctx.zones)])
        self._reach = most + self.end_margin_m
        self.grid = Grid(self._reach)
        self._scale, self._flat = None, (math.inf, -math.inf)  # the projection may change
        for vessel in ctx.picture.vessels.values():
            if (vessel.x is not None and vessel.y is not None and vessel.fix_time is not None
                    and vessel.speed is not None and vessel.speed <= self.end_speed_kn
                    and ctx.in_watch_area(vessel)):
                self.grid.put(vessel.mmsi, vessel.x, vessel.y,
                              (vessel.fix_time, vessel.speed, self._k(ctx, vessel, vessel.x)))

    def on_zones(self, ctx: RuleContext) -> None:
        self._rebuild(ctx)
        for key in list(self.pairs.state):
            vessels = [ctx.picture.get(m) for m in key]
            if any(v is None or self._excluded(ctx, v) for v in vessels):
                self._end_pair(ctx, key, ctx.now, "zones changed")

    def saved_state(self) -> Any:
        """Pairs still short of ``duration_s``: a restart must not start their clock again."""
        return [[*key, state] for key, state in self.pairs.state.items()
                if not state.get("alert")]

    def load_state(self, ctx: RuleContext, state: Any) -> None:
        for first, second, pair in state:
            key = pair_key(int(first), int(second))
            if key not in self.pairs.state and all(ctx.picture.get(m) for m in key):
                self.pairs.add(key, dict(pair))

    def on_restore(self, ctx: RuleContext) -> None:
        # The grid: the engine's on_zones after this builds it.
        self.pairs = Pairs()
        for alert in ctx.book.of_rule(self.name):
            if alert.mmsi is not None and alert.other_mmsi is not None:
                self.pairs.add(pair_key(alert.mmsi, alert.other_mmsi),
                               {"since": alert.started_at, "alert": alert.id,
                                "min_distance": alert.details.get("min_distance_m", 0.0),
                                "first": {"time": iso_time(alert.started_at)}})
