"""``anchor_drag``: a vessel at anchor leaves the circle it swung in.

While the navigational status is 1 (at anchor), the first ``learn_s`` of fixes are learnt:
their mean is the centre and the largest distance from it the swing radius (a ship swings
round its anchor by up to its length plus the chain out; the fixes show how far it did).
After that, a fix farther from the centre than ``max(radius + margin_m, min_radius_m)`` on
``reports`` consecutive reports opens the alert (state-based, started at the first of those
reports). It ends when a fix is back inside the limit, or when the status is no longer
"at anchor" (weighed anchor; learning starts afresh at the next anchoring). Only fixes
slower than ``settle_kn`` are learnt, and learning starts at the first of them: a crew may
set "at anchor" while still approaching, and the approach made the circle so large that a
400 m drag stayed inside it. Class B has no status and is never judged. Everything is
kept in the vessel's ``rule_state``: the centre in projected metres (and that projection's
CRS, to carry it over to zones in another: :meth:`AnchorDrag.on_zones`), the radius and limit
in true ones (a distance in projected metres divided by the projection's scale factor at
the fix: far from its central meridian, a national feed's vessels, they stretch).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from geofence.alert import RiskArea, Severity
from geofence.picture import STATUS_AT_ANCHOR, Vessel
from geofence.rules.base import (
    BaseRule,
    RuleContext,
    evidence,
    kept_elsewhere,
    scale_at,
    vessel_fields,
)
from ingest.report import Report, iso_time

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

MAX_POINTS = 256  # learning fixes kept; beyond it every other one is dropped


def _latlon(ctx: RuleContext, x: float, y: float) -> dict[str, float]:
    lon, lat = ctx.zones.unproject(x, y)
    return {"lat": round(lat, 6), "lon": round(lon, 6)}


class AnchorDrag(BaseRule):
    name = "anchor_drag"
    needs_fix = True
    vessels_only = True  # a SAR aircraft hovers and flies fast: no vessel

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.anchor_drag
        self.learn_s = cfg.learn_s
        self.margin_m = cfg.margin_m
        self.min_radius_m = cfg.min_radius_m
        self.settle_kn = cfg.settle_kn
        self.reports = cfg.reports
        self.risk_area = RiskArea(cfg.risk_area)

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        if not ctx.fix_accepted:
            return
        state = vessel.rule_state.get(self.name)
        if vessel.status != STATUS_AT_ANCHOR:
            if state is not None:
                self._end(ctx, vessel, state, report, "weighed")
            return
        assert vessel.x is not None and vessel.y is not None
        assert vessel.lon is not None and vessel.lat is not None
        t, x, y = report.time, vessel.x, vessel.y
        settled = report.speed is None or report.speed < self.settle_kn
        if state is None:
            if settled:
                vessel.rule_state[self.name] = {"since": t, "points": [[x, y]],
                                                "crs": ctx.zones.crs}
            return
        if "centre" not in state:
            if t - state["since"] < self.learn_s:
                if not settled:
                    return
                points = state["points"]
                points.append([x, y])
                if len(points) > MAX_POINTS:
                    del points[::2]
                return
            self._learn(state, scale_at(ctx, x, vessel.lon, vessel.lat))
        cx, cy = state["centre"]
        distance = math.hypot(x - cx, y - cy) / scale_at(ctx, x, vessel.lon, vessel.lat)
        if distance <= state["limit"]:
            state.pop("outside", None)
            if state.get("alert"):
                self._close(ctx, state, report, "back_inside", distance)
            return
        outside = state.setdefault("outside", [t, 0, evidence(report)])
        outside[1] += 1
        if outside[1] >= self.reports and not state.get("alert"):
            alert = ctx.book.open(
                self.name, risk_area=self.risk_area, severity=Severity.WARNING,
                mmsi=vessel.mmsi, started_at=outside[0], time=t, **vessel_fields(vessel),
                details={"distance_m": round(distance, 1), "limit_m": round(state["limit"], 1),
                         "swing_radius_m": round(state["radius"], 1),
                         "anchored_since": iso_time(state["since"]),
                         "centre": _latlon(ctx, cx, cy),
                         "reports": [outside[2], evidence(report)]})
            if alert is not None:
                state["alert"] = alert.id

    def on_zones(self, ctx: RuleContext) -> None:
        # The centre and the fixes learnt are kept in metres alone: after zones in another
        # projection (also across a restart) they are carried over through lat/lon. One with
        # no point in the new projection is left in the old (its vessel has none either).
        for state, carry, crs in kept_elsewhere(ctx, self.name):
            learnt = "centre" in state
            places = [state["centre"]] if learnt else state["points"]
            moved = [xy for x, y in places if (xy := carry(state["crs"], x, y)) is not None]
            if len(moved) == len(places):
                state["centre" if learnt else "points"] = (
                    list(moved[0]) if learnt else [list(xy) for xy in moved])
                state["crs"] = crs

    def _learn(self, state: dict[str, Any], k: float) -> None:
        """Centre and swing radius of the fixes learnt; ``k``: the scale factor there."""
        points = state.pop("points")
        cx = sum(p[0] for p in points) / len(points)
        cy = sum(p[1] for p in points) / len(points)
        radius = max(math.hypot(p[0] - cx, p[1] - cy) for p in points) / k
        state.update(centre=[cx, cy], radius=radius,
                     limit=max(radius + self.margin_m, self.min_radius_m))

    def _close(self, ctx: RuleContext, state: dict[str, Any], report: Report, reason: str,
               distance: float | None = None) -> None:
        alert = ctx.book.get(str(state.pop("alert")))
        if alert is not None:
            details: dict[str, Any] = {"end_reason": reason, "exit": evidence(report)}
            if distance is not None:
                details["distance_m"] = round(distance, 1)
            ctx.book.end(alert, report.time, details)

    def _end(self, ctx: RuleContext, vessel: Vessel, state: dict[str, Any], report: Report,
             reason: str) -> None:
        if state.get("alert"):
            self._close(ctx, state, report, reason)
        del vessel.rule_state[self.name]
