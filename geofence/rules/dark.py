"""``dark_vessel``: a vessel stops transmitting where it should still be heard.

Fires when a vessel last seen inside coverage, at least ``edge_m`` from its edge, is silent
longer than ``moving_s`` (or ``stationary_s`` when at anchor, moored or slow) while a
receiver that heard it has been heard without a break (longer than its ``silent_s``, from
``source_silent``: its own in ``receiver_silent_s``, else the rule's) since before the vessel
fell silent and is still heard. A vessel that left across the coverage edge, or whose only
receiver went silent, is not dark.

The silence is measured on the clock of the receiver that heard the vessel: the vessel's
times are that receiver's stamps, which may run minutes behind the port's clock (a feed's
delay, a receiver clock set wrong). Its clock now is its last stamp plus the port's time
since it was heard; measured on the port's clock instead, a receiver 700 s behind made every
vessel it hears dark on every report. The alert starts
at the vessel's last report (so its id does not depend on when timers run) and ends when the
vessel reappears, with the gap, the distance and the implied speed. Both distances (from
the coverage edge; gone while dark) are true metres: in projected metres divided by the
projection's scale factor, which far from its central meridian (coverage of a whole coast)
stretches them.

Timers are a lazy heap keyed on each vessel's earliest possible deadline: a report costs a
dictionary lookup, and a vessel is re-examined at most once per deadline.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Set
from typing import TYPE_CHECKING, Any

from geofence.alert import RiskArea, Severity
from geofence.mid import is_device, is_sar_aircraft
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, scale_at
from ingest.report import Report, iso_time

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

MS_TO_KN = 3600.0 / 1852.0
_NO_LIMIT = float("inf")  # a vessel not yet scheduled


def can_go_dark(mmsi: int) -> bool:
    """Not emergency devices (an AIS-SART switched off after a rescue is no vessel hiding)
    nor SAR aircraft (they fly out of coverage)."""
    return not (is_device(mmsi) or is_sar_aircraft(mmsi))


class DarkVessel(BaseRule):
    name = "dark_vessel"

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.dark_vessel
        self.edge_m = cfg.edge_m
        self.moving_s = cfg.moving_s
        self.stationary_s = cfg.stationary_s
        self.stationary_below_kn = cfg.stationary_below_kn
        self.window_s = cfg.receiver_window_s
        self.moving_window_s = cfg.receiver_window_moving_s
        self._heap: list[tuple[float, int]] = []
        self._due: dict[int, float] = {}
        self._limit: dict[int, float] = {}  # threshold as of each vessel's last report
        self._overrides = False

    # -- thresholds -----------------------------------------------------------------------

    def stationary(self, vessel: Vessel) -> bool:
        return vessel.stationary_status or (
            vessel.speed is not None and vessel.speed < self.stationary_below_kn)

    def threshold(self, ctx: RuleContext, vessel: Vessel) -> float:
        key = "dark_stationary_s" if self.stationary(vessel) else "dark_moving_s"
        limit = self.stationary_s if key == "dark_stationary_s" else self.moving_s
        if self._overrides:
            by_id = ctx.zones.by_id
            values = [z.overrides[key] for zid in vessel.zones
                      if (z := by_id.get(zid)) is not None and key in z.overrides]
            if values:
                limit = min(values)
        return limit

    def eligible(self, ctx: RuleContext, vessel: Vessel, now: float,
                 limit: float) -> dict[str, Any] | float | None:
        """Evidence that the silence is the vessel's; None when it is not dark; or, when a
        receiver that hears it has not yet passed the deadline on its own clock, the
        engine time at which the first such receiver will (judge it again then)."""
        if vessel.x is None or vessel.y is None or vessel.lon is None or vessel.lat is None:
            return None
        edge = self._edge(ctx, vessel.x, vessel.y, vessel.lon, vessel.lat)
        before: dict[str, Any] = {}
        if edge is None or edge < self.edge_m:
            edge, before = self._edge_before_jump(ctx, vessel)
            if edge is None or edge < self.edge_m:
                return None
        last = vessel.last_seen
        deadline = last + limit
        window = self.window_s if self.stationary(vessel) else self.moving_window_s
        hearing = []
        retry = _NO_LIMIT
        blocked = False
        for name, heard in vessel.sources.items():
            rec = ctx.picture.receivers.get(name)
            if rec is None or now - rec.heard_live > rec.silent_s:
                continue  # not heard now: the silence may be the receiver's
            # Its clock now: its last stamp plus the port's time since it was heard.
            lag = rec.heard_live - rec.last_heard
            clock = rec.last_heard + max(0.0, now - rec.heard_live)
            if heard <= last and clock - heard <= limit:
                # It heard the vessel within the limit on its own clock: its copies are
                # stamped behind the others' (in a catch-up, ``heard > last`` is the
                # report that ends the gap).
                blocked = True
                retry = min(retry, heard + limit + lag)
            elif heard >= last - window and rec.up_since <= last:
                if clock > deadline:
                    hearing.append(name)
                else:
                    retry = min(retry, deadline + lag)
        if blocked or not hearing:
            return retry if retry < _NO_LIMIT else None
        return {"edge_distance_m": round(edge, 1), "receivers": sorted(hearing), **before}

    def _edge(self, ctx: RuleContext, x: float, y: float, lon: float,
              lat: float) -> float | None:
        """True metres from the coverage edge, inwards; None outside coverage."""
        edge = ctx.zones.coverage_edge_distance(x, y)
        return None if edge is None else edge / scale_at(ctx, x, lon, lat)

    def _edge_before_jump(self, ctx: RuleContext, vessel: Vessel
                          ) -> tuple[float | None, dict[str, Any]]:
        """The edge distance of the last fix before a relocation (``position_jump``: three
        agreeing fixes far from it, accepted), with its evidence, while the vessel has been
        heard for less than ``moving_s`` since: three reports 50 km out, sent in as many
        seconds before switching off, took a vessel out of coverage and out of this rule."""
        state = vessel.rule_state.get(self.name)
        jumped = None if state is None else state.get("before_jump")
        if jumped is None:
            return None, {}
        t, lat, lon = jumped
        if vessel.last_seen - t > self.moving_s:
            del vessel.rule_state[self.name]  # held that long, the new track is the vessel's
            return None, {}
        x, y = ctx.zones.project(lon, lat)
        if not (math.isfinite(x) and math.isfinite(y)):
            return None, {}
        return self._edge(ctx, x, y, lon, lat), {"before_jump": {
            "lat": lat, "lon": lon, "jumped_at": iso_time(t)}}

    def _note_jump(self, ctx: RuleContext, vessel: Vessel, t: float) -> None:
        """The fix just accepted is a jump from the one before (a relocation): keep that
        one for :meth:`eligible`, unless a recent relocation's is kept already."""
        prev = ctx.prev_fix
        state = vessel.rule_state.get(self.name)
        kept = None if state is None else state.get("before_jump")
        if prev is None or (kept is not None and t - kept[0] <= self.moving_s):
            return
        vessel.rule_state[self.name] = {"before_jump": [t, prev.lat, prev.lon]}

    # -- hooks ----------------------------------------------------------------------------

    def _schedule(self, ctx: RuleContext, vessel: Vessel) -> None:
        if vessel.messages < 2:
            return  # one message is no vessel yet: garbled MMSIs are heard once
        mmsi = vessel.mmsi
        limit = self._limit[mmsi] = self.threshold(ctx, vessel)
        deadline = vessel.last_seen + limit
        due = self._due.get(mmsi)
        if due is None or deadline < due:
            self._due[mmsi] = deadline
            heapq.heappush(self._heap, (deadline, mmsi))

    def _open(self, ctx: RuleContext, vessel: Vessel, limit: float, proof: dict[str, Any],
              time: float, report: Report | None) -> None:
        zone = next(iter(reversed(vessel.zones)), None)
        ctx.book.open(
            self.name, risk_area=RiskArea.CRIMINAL_ACTIVITY, severity=Severity.WARNING,
            mmsi=vessel.mmsi, started_at=vessel.last_seen, time=time, zone=zone,
            shipname=vessel.shipname, lat=vessel.lat, lon=vessel.lon,
            details={"last_seen": iso_time(vessel.last_seen), "threshold_s": limit,
                     "stationary": self.stationary(vessel),
                     **proof, "reports": [evidence(report)] if report is not None else []})

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        mmsi = vessel.mmsi
        book = ctx.book
        alert = (book.find(self.name, mmsi, any_zone=True)
                 if book.has_open(mmsi) else None)
        if not can_go_dark(mmsi):
            if alert is not None and report.time > alert.started_at:
                self._end(ctx, vessel, alert, report)  # raised before devices were exempt
            return
        prev = ctx.prev_seen
        if alert is None and prev is not None and (
                report.time - prev > self._limit.get(mmsi, _NO_LIMIT)):
            # Reappeared before a tick noticed: judge the gap now, on the state before it.
            self._catch_up(ctx, vessel, prev, report.time)
            alert = ctx.book.find(self.name, mmsi, any_zone=True)
        if alert is not None and report.time > alert.started_at:
            # Only a report from after the silence ends it: a late copy of an older report
            # (a feed's backlog) is not the vessel coming back.
            self._end(ctx, vessel, alert, report)
        if ctx.prev_jump and ctx.fix_accepted:
            self._note_jump(ctx, vessel, report.time)
        self._schedule(ctx, vessel)

    def _catch_up(self, ctx: RuleContext, vessel: Vessel, prev: float, now: float) -> None:
        limit = self._limit.get(vessel.mmsi)
        if ctx.prev_fix is None or limit is None or now - prev <= limit:
            return
        # Judge the vessel as it was before this report: last time and last fix.
        last, fix = vessel.last_seen, (vessel.x, vessel.y, vessel.lat, vessel.lon)
        vessel.last_seen = prev
        vessel.x, vessel.y = ctx.prev_fix.x, ctx.prev_fix.y
        vessel.lat, vessel.lon = ctx.prev_fix.lat, ctx.prev_fix.lon
        try:
            proof = self.eligible(ctx, vessel, now, limit)
            if isinstance(proof, dict):
                self._open(ctx, vessel, limit, proof, now, ctx.prev_report)
        finally:
            vessel.last_seen = last
            vessel.x, vessel.y, vessel.lat, vessel.lon = fix

    def _end(self, ctx: RuleContext, vessel: Vessel, alert: Any, report: Report) -> None:
        gap = report.time - alert.started_at
        details: dict[str, Any] = {"gap_s": round(gap, 1), "reappeared": evidence(report)}
        if ctx.fix_accepted and vessel.x is not None and vessel.y is not None and (
                vessel.lat is not None and vessel.lon is not None) and (
                alert.lat is not None and alert.lon is not None):
            x0, y0 = ctx.zones.project(alert.lon, alert.lat)
            k = (scale_at(ctx, x0, alert.lon, alert.lat)
                 + scale_at(ctx, vessel.x, vessel.lon, vessel.lat)) / 2.0
            distance = math.hypot(vessel.x - x0, vessel.y - y0) / k
            details["distance_m"] = round(distance, 1)
            if gap > 0:
                details["implied_speed_kn"] = round(distance / gap * MS_TO_KN, 2)
        ctx.book.end(alert, report.time, details)

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        heap, due = self._heap, self._due
        while heap and heap[0][0] < now:  # silent *longer* than the threshold
            deadline, mmsi = heapq.heappop(heap)
            if due.get(mmsi) != deadline:
                continue  # superseded by an earlier deadline
            del due[mmsi]
            vessel = ctx.picture.get(mmsi)
            if vessel is None:  # forgotten
                self._limit.pop(mmsi, None)
                continue
            if ctx.book.find(self.name, mmsi, any_zone=True) is not None:
                continue
            limit = self.threshold(ctx, vessel)
            true_deadline = vessel.last_seen + limit
            if true_deadline >= now:
                due[mmsi] = true_deadline
                heapq.heappush(heap, (true_deadline, mmsi))
                continue
            proof = self.eligible(ctx, vessel, now, limit)
            if isinstance(proof, dict):
                self._open(ctx, vessel, limit, proof, now, vessel.last_report)
            elif proof is not None:  # its receivers' clocks run behind: not silent yet
                due[mmsi] = proof
                heapq.heappush(heap, (proof, mmsi))

    def _rebuild(self, ctx: RuleContext) -> None:
        self._overrides = any(
            "dark_moving_s" in z.overrides or "dark_stationary_s" in z.overrides
            for z in ctx.zones)
        self._heap, self._due, self._limit = [], {}, {}
        for vessel in ctx.picture.vessels.values():
            if can_go_dark(vessel.mmsi) and (
                    ctx.book.find(self.name, vessel.mmsi, any_zone=True) is None):
                self._schedule(ctx, vessel)

    def on_zones(self, ctx: RuleContext) -> None:
        self._rebuild(ctx)

    def on_forget(self, ctx: RuleContext, mmsis: Set[int]) -> None:
        for mmsi in mmsis:
            self._limit.pop(mmsi, None)
            self._due.pop(mmsi, None)  # its heap entry is then skipped as superseded
