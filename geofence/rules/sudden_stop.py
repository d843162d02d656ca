"""``sudden_stop``: from more than ``from_kn`` to less than ``to_kn`` within ``within_s``,
then held below ``to_kn`` for ``hold_s`` (a possible grounding or collision; DMA
AisAbnormal's idea).

A ship does not lose 7 kn in 30 s by its own will; one that then stays stopped needs a
look. An event alert, raised when the hold is complete, with the last fast report and the
first stopped one as evidence. Only reports whose fix was accepted count, so a spoofed
report cannot stage a stop. Vessels faster than ``from_kn`` keep two numbers in
``rule_state``; all others keep nothing unless a stop is pending.

A stop at a ``berth`` is a ferry or a tug landing there, not a grounding: no alert. At
means a member of the berth (entered, and not yet left by more than the exit margin), or
with the fix that completes the hold in it or within the exit margin of it: a ship whose
speed fell below ``to_kn`` a few metres short of the berth creeps in, a class B reporting
every 3 min when slow is in the berth for one report before its entry is confirmed, and a
ferry lies alongside with its antenna just outside the polygon drawn (the demo recording's
QUOIN CAT, 2 m outside berth 5): the margin that keeps a vessel in a berth it drifts out of
by GPS jitter keeps one that stops that close to it at the berth. Judged only when a hold
completes, so it costs nothing per report. The alert names the zone the vessel was last seen
entering, ``coverage`` and ``port_limit`` aside (they say nothing about where in the port).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geofence.alert import RiskArea, Severity
from geofence.picture import Vessel, zone_ids_here
from geofence.rules.base import BaseRule, RuleContext, evidence, vessel_fields
from ingest.report import Report, iso_time

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig


#: Zones that say nothing about where in the port a vessel stopped.
_WIDE_KINDS = frozenset({"coverage", "port_limit"})


class SuddenStop(BaseRule):
    name = "sudden_stop"
    needs_fix = True
    vessels_only = True  # a SAR aircraft hovers and flies fast: no vessel

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.sudden_stop
        self.from_kn = cfg.from_kn
        self.to_kn = cfg.to_kn
        self.within_s = cfg.within_s
        self.hold_s = cfg.hold_s
        self.margin_m = config.membership.exit_margin_m

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        speed = report.speed
        if speed is None or not ctx.fix_accepted:
            return
        t = report.time
        rule_state = vessel.rule_state
        state = rule_state.get(self.name)
        if speed > self.from_kn:
            if state is None:
                rule_state[self.name] = {"fast_t": t, "fast_kn": speed}
            else:
                state["fast_t"], state["fast_kn"] = t, speed
                state.pop("stop", None)
            return
        if state is None:
            return
        if speed >= self.to_kn:
            state.pop("stop", None)  # slowing down, or moving again: not (or no longer) held
            if t - state["fast_t"] > self.within_s:
                del rule_state[self.name]
            return
        stop = state.get("stop")
        if stop is None:
            if t - state["fast_t"] > self.within_s:
                del rule_state[self.name]  # a gradual stop
                return
            stop = state["stop"] = {"time": t, "first": evidence(report)}
        held = t - stop["time"]
        if held < self.hold_s:
            return
        del rule_state[self.name]
        by_id = ctx.zones.by_id
        kinds = {zid: by_id[zid].kind for zid in vessel.zones if zid in by_id}
        if "berth" in kinds.values() or self._at_berth(ctx, vessel):
            return  # landing at a berth
        ctx.book.event(
            self.name, risk_area=RiskArea.PORT_OPERATIONS, severity=Severity.WARNING,
            mmsi=vessel.mmsi, time=t,
            zone=next((zid for zid in reversed(kinds) if kinds[zid] not in _WIDE_KINDS), None),
            **vessel_fields(vessel),
            details={"from_kn": state["fast_kn"], "fast_at": iso_time(state["fast_t"]),
                     "stopped_at": iso_time(stop["time"]),
                     "drop_s": round(stop["time"] - state["fast_t"], 1),
                     "held_s": round(held, 1), "speed": speed,
                     "reports": [stop["first"], evidence(report)]})

    def _at_berth(self, ctx: RuleContext, vessel: Vessel) -> bool:
        """Whether the fix is in a berth or within the exit margin of one (projected metres,
        as membership measures it)."""
        by_id = ctx.zones.by_id
        if any(by_id[zid].kind == "berth" for zid in zone_ids_here(vessel, ctx.zones)
               if zid in by_id):
            return True
        x, y = vessel.x, vessel.y
        return x is not None and y is not None and bool(
            ctx.zones.near(x, y, self.margin_m, ("berth",)))
