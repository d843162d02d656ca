"""``speeding``: over a zone's ``max_speed_kn`` for at least ``hold_s``.

The limit is the strictest among the zones the vessel is in (a zone's own ``max_speed_kn``,
else the global ``max_speed_kn`` for zones of ``default_kinds``). The alert ends at or below
the limit minus ``end_margin_kn`` or when the vessel leaves the zone; it is updated only when
the top speed grows by 2 kn or more, at most once a minute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geofence.alert import RiskArea, Severity
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, vessel_fields
from geofence.zones import Zone
from ingest.report import Report

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

UPDATE_STEP_KN = 2.0
UPDATE_EVERY_S = 60.0
_MAX_CACHED = 10_000  # distinct zone sets remembered (a port has a handful)
_UNKNOWN: Any = object()


class Speeding(BaseRule):
    name = "speeding"
    needs_fix = True
    vessels_only = True  # a SAR aircraft hovers and flies fast: no vessel

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.speeding
        self.hold_s = cfg.hold_s
        self.default_limit = cfg.max_speed_kn
        self.default_kinds = frozenset(cfg.default_kinds)
        self.margin = cfg.end_margin_kn
        # A vessel's confirmed zone ids -> the strictest (zone, limit) among them. Keyed on
        # the zones themselves, so it cannot go stale when a vessel's zones change on a
        # report that never reaches the check (no speed), nor when a vessel is forgotten.
        self._strictest: dict[tuple[str, ...], tuple[Zone, float] | None] = {}
        self._lowest = float("inf")  # the lowest limit of any zone

    def limit_of(self, zone: Zone) -> float | None:
        own = zone.get("max_speed_kn")
        if own is not None:
            return float(own)
        return self.default_limit if zone.kind in self.default_kinds else None

    def strictest(self, ctx: RuleContext, vessel: Vessel) -> tuple[Zone, float] | None:
        best: tuple[Zone, float] | None = None
        by_id = ctx.zones.by_id
        for zid in vessel.zones:
            zone = by_id.get(zid)
            if zone is None:
                continue
            limit = self.limit_of(zone)
            if limit is not None and (best is None or limit < best[1]):
                best = (zone, limit)
        return best

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        if not ctx.fix_accepted:
            return
        speed = report.speed
        state = vessel.rule_state.get(self.name)
        if state is not None and state.get("alert"):
            self._follow(ctx, vessel, report, state, speed)  # even with no speed: it may leave
            return
        if speed is None or (state is None and speed <= self._lowest):
            return  # no speed, or slower than any limit anywhere: nothing to do
        t = report.time
        key = tuple(vessel.zones)
        found = self._strictest.get(key, _UNKNOWN)
        if found is _UNKNOWN:
            if len(self._strictest) >= _MAX_CACHED:
                self._strictest.clear()
            found = self._strictest[key] = self.strictest(ctx, vessel)
        if found is None or speed <= found[1]:
            if state is not None:
                del vessel.rule_state[self.name]
            return
        zone, limit = found
        if state is None or state["zone"] != zone.id:
            state = vessel.rule_state[self.name] = {
                "since": t, "zone": zone.id, "limit": limit, "max": speed,
                "first": evidence(report)}
        state["max"] = max(state["max"], speed)
        held = t - state["since"]
        if held >= zone.get("speeding_hold_s", self.hold_s):
            alert = ctx.book.open(
                self.name, risk_area=RiskArea.PORT_OPERATIONS, severity=Severity.WARNING,
                mmsi=vessel.mmsi, started_at=state["since"], time=t, zone=zone.id,
                **vessel_fields(vessel),
                details={"limit_kn": limit, "speed": speed, "max_speed": state["max"],
                         "held_s": round(held, 1),
                         "reports": [state["first"], evidence(report)]})
            if alert is not None:
                state.update(alert=alert.id, updated=t, reported_max=state["max"])

    def _follow(self, ctx: RuleContext, vessel: Vessel, report: Report,
                state: dict[str, Any], speed: float | None) -> None:
        alert = ctx.book.get(str(state["alert"]))
        if alert is None:  # ended elsewhere (zone swap)
            del vessel.rule_state[self.name]
            return
        t = report.time
        limit = float(state["limit"])
        since = float(state["since"])
        top = float(state["max"]) if speed is None else max(float(state["max"]), speed)
        state["max"] = top
        left = alert.zone not in vessel.zones
        if left or (speed is not None and speed <= limit - self.margin):
            ctx.book.end(alert, t, {"max_speed": top, "held_s": round(t - since, 1),
                                    "end_reason": "left_zone" if left else "speed",
                                    "exit": evidence(report)})
            del vessel.rule_state[self.name]
            return
        reported = float(state["reported_max"])
        updated = float(state["updated"])
        if top >= reported + UPDATE_STEP_KN and t - updated >= UPDATE_EVERY_S:
            state.update(updated=t, reported_max=top)
            ctx.book.update(alert, t, lat=vessel.lat, lon=vessel.lon,
                            details={"max_speed": top, "held_s": round(t - since, 1)})

    def on_zones(self, ctx: RuleContext) -> None:
        self._strictest.clear()
        limits = [lim for z in ctx.zones if (lim := self.limit_of(z)) is not None]
        self._lowest = min(limits) if limits else float("inf")
        for alert in ctx.book.of_rule(self.name):
            zone = ctx.zones.by_id.get(alert.zone or "")
            # Gone, or its limit changed: judged afresh from the next report (an alert kept
            # under a raised limit followed the old one).
            if zone is None or self.limit_of(zone) != alert.details.get("limit_kn"):
                ctx.book.end(alert, ctx.now, {"end_reason": "zones changed"})
                vessel = ctx.picture.get(alert.mmsi) if alert.mmsi is not None else None
                if vessel is not None:
                    vessel.rule_state.pop(self.name, None)
