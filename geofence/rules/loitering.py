"""``loitering``: slow (< ``speed_kn``) for ``loiter_s`` within ``range_m`` of a berth or
security zone, not moored inside a berth. Ends above ``end_speed_kn`` (hysteresis), out of
range, or once moored in a berth. Dwell is counted in message time between reports.

The range is in true metres: far from the projection's central meridian (zones of a whole
coast, a national feed) a distance in projected metres is divided by the scale factor at
the fix.
"""

from __future__ import annotations

import math
from collections.abc import Set
from typing import TYPE_CHECKING

from geofence.alert import RiskArea, Severity
from geofence.picture import STATUS_MOORED, Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, scale_at, vessel_fields
from geofence.zones import Zone
from ingest.report import Report

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig


class Loitering(BaseRule):
    name = "loitering"
    needs_fix = True
    vessels_only = True  # a SAR aircraft hovers and flies fast: no vessel

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.loitering
        self.speed_kn = cfg.speed_kn
        self.end_speed_kn = cfg.end_speed_kn
        self.loiter_s = cfg.loiter_s
        self.range_m = cfg.range_m
        self.kinds = tuple(cfg.kinds)
        self.moored_status = cfg.berth_requires_moored_status
        self._max_speed = self.speed_kn
        self._max_range = self.range_m
        self._query_kinds = tuple(dict.fromkeys(("berth", *self.kinds)))
        #: mmsi -> (x, y, zones near, in true metres) of slow vessels: one at rest asks the
        #: geometry once
        self._near_at: dict[int, tuple[float, float, list[tuple[Zone, float]]]] = {}

    def _limits(self, ctx: RuleContext) -> None:
        watched = [z for k in self.kinds for z in ctx.zones.of_kind(k)]
        self._max_speed = max([self.speed_kn, *(z.get("loiter_speed_kn", 0) for z in watched)])
        self._max_range = max([self.range_m, *(z.get("loiter_range_m", 0) for z in watched)])

    def _near(self, ctx: RuleContext, vessel: Vessel) -> tuple[list[Zone], bool]:
        """Watched zones in range, nearest first, and whether moored inside a berth."""
        x, y = vessel.x, vessel.y
        assert x is not None and y is not None
        cached = self._near_at.get(vessel.mmsi)
        if cached is not None and cached[0] == x and cached[1] == y:
            near = cached[2]  # at rest: the same zones at the same distances
        else:
            assert vessel.lon is not None and vessel.lat is not None
            projector = ctx.zones.projector
            x0, x1 = projector.flat if projector is not None else (-math.inf, math.inf)
            k = 1.0 if x0 < x < x1 else scale_at(ctx, x, vessel.lon, vessel.lat)
            if k == 1.0:
                near = ctx.zones.near(x, y, self._max_range, self._query_kinds)
            else:
                # Asked in projected metres, rounded up to 1 % steps so that the zones'
                # cache of answers per cell and distance stays small.
                reach = self._max_range * math.ceil(k * 100.0) / 100.0
                near = [(z, d / k) for z, d in ctx.zones.near(x, y, reach, self._query_kinds)
                        if d <= self._max_range * k]
            self._near_at[vessel.mmsi] = (x, y, near)
        in_berth = any(z.kind == "berth" and d == 0.0 for z, d in near) and (
            not self.moored_status or vessel.status == STATUS_MOORED)
        watched = [z for z, d in near
                   if z.kind in self.kinds and d <= z.get("loiter_range_m", self.range_m)]
        return watched, in_berth

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        speed = report.speed
        if not ctx.fix_accepted or speed is None:
            return
        state = vessel.rule_state.get(self.name)
        if state is None and speed >= self._max_speed:
            if self._near_at:
                self._near_at.pop(vessel.mmsi, None)
            return  # the common case: moving, nothing pending
        watched, in_berth = self._near(ctx, vessel)
        t = report.time
        if state is not None and state.get("alert"):
            reason = ("speed" if speed > self.end_speed_kn else "moored_in_berth" if in_berth
                      else "out_of_range" if not watched else None)
            if reason is not None:
                alert = ctx.book.get(state["alert"])
                if alert is not None:
                    ctx.book.end(alert, t, {"dwell_s": round(t - state["since"], 1),
                                            "end_reason": reason, "exit": evidence(report)})
                del vessel.rule_state[self.name]
            return
        if in_berth or not watched:
            vessel.rule_state.pop(self.name, None)
            return
        zone = watched[0]  # the nearest
        if state is not None:
            counted = ctx.zones.by_id.get(state["zone"])
            if counted is not None and counted in watched:
                zone = counted
            else:
                # Drifted on, still slow and near a watched zone: the dwell goes on, named
                # after the zone it is near now (not one it left out of range).
                state["zone"] = zone.id
        if speed >= zone.get("loiter_speed_kn", self.speed_kn):
            vessel.rule_state.pop(self.name, None)
            return
        if state is None:
            vessel.rule_state[self.name] = {"since": t, "zone": zone.id,
                                            "first": evidence(report)}
            return
        dwell = t - state["since"]
        if dwell >= zone.get("loiter_s", self.loiter_s):
            assert vessel.x is not None and vessel.y is not None
            assert vessel.lon is not None and vessel.lat is not None
            k = scale_at(ctx, vessel.x, vessel.lon, vessel.lat)
            alert = ctx.book.open(
                self.name, risk_area=RiskArea.CRIMINAL_ACTIVITY, severity=Severity.WARNING,
                mmsi=vessel.mmsi, started_at=state["since"], time=t, zone=zone.id,
                **vessel_fields(vessel),
                details={"dwell_s": round(dwell, 1), "speed": speed,
                         "distance_m": round(zone.distance(vessel.x, vessel.y) / k, 1),
                         "zone_kind": zone.kind,
                         "reports": [state["first"], evidence(report)]})
            if alert is not None:
                state["alert"] = alert.id

    def on_zones(self, ctx: RuleContext) -> None:
        self._near_at.clear()
        self._limits(ctx)
        for alert in ctx.book.of_rule(self.name):
            if alert.zone not in ctx.zones.by_id:
                ctx.book.end(alert, ctx.now, {"end_reason": "zones changed"})
                vessel = ctx.picture.get(alert.mmsi) if alert.mmsi is not None else None
                if vessel is not None:
                    vessel.rule_state.pop(self.name, None)

    def on_forget(self, ctx: RuleContext, mmsis: Set[int]) -> None:
        for mmsi in mmsis:
            self._near_at.pop(mmsi, None)
