"""``mmsi_conflict``: one MMSI in two places at once (VALIDATE phase).

Two transmitters sharing an MMSI (a cloned or spoofed identity, or a careless install) make
the track jump back and forth. The rule follows the raw fixes of a vessel as up to two
tracks, ``a`` (where the vessel was first) and ``b`` (the other place); a fix belongs to the
track it could have reached without a jump (the ``position_jump`` definition: at least
``min_distance_m`` at more than ``max_speed_kn``). A switch between tracks is a jump; a fix
that fits neither starts a new ``b``. ``jumps`` switches within ``window_s`` open the alert
(state-based; it starts at the first of those jumps). While it is open, every fix of track
``b`` is rejected and every fix of ``a`` accepted (``position_jump`` leaves such a vessel's
jumps to this rule), so the picture follows the track the vessel had before the first jump,
also when another transmitter's fixes had moved it to theirs; an open ``position_jump``
alert for the vessel is ended in its favour. It ends after ``window_s`` without a jump.

Nothing is kept for a vessel whose fixes never jump, nor for a placeholder MMSI
(:func:`~geofence.mid.is_placeholder`: 111111111, 123456789, …): unrelated transponders
share it, so two places at once are expected of it, not evidence of a cloned identity, and
``invalid_mmsi`` already names the number.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from geofence.alert import RiskArea, Severity
from geofence.mid import is_placeholder
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, Phase, RuleContext, evidence, reprojected
from geofence.rules.position_jump import JumpTest, judged
from ingest.report import Report

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig


class MmsiConflict(BaseRule):
    name = "mmsi_conflict"
    needs_fix = True
    phase = Phase.VALIDATE

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.mmsi_conflict
        self.test = JumpTest(config)
        self.jumps = cfg.jumps
        self.window_s = cfg.window_s

    def on_zones(self, ctx: RuleContext) -> None:
        if not self.test.on_zones(ctx):
            return
        # Track heads are kept in projected metres, measured against the next fixes: they
        # follow the zones' projection, from their lat/lon.
        for vessel in ctx.picture.vessels.values():
            state = vessel.rule_state.get(self.name)
            if state is not None:
                self._reproject(ctx, vessel, state)

    def _reproject(self, ctx: RuleContext, vessel: Vessel, state: dict[str, Any]) -> None:
        for member in ("a", "b"):
            head = state.get(member)
            if head is None:
                continue
            xy = reprojected(ctx, head[3], head[4])
            if xy is None:
                state[member] = None  # no place in the new projection: a fix starts it anew
            else:
                head[1], head[2] = xy
        if state.get("a") is None and not state.get("alert"):
            del vessel.rule_state[self.name]  # nothing left to follow

    def _fits(self, ctx: RuleContext, head: list[Any] | None, x: float, y: float, lat: float,
              lon: float, t: float) -> float | None:
        """Distance to a track head ``[t, x, y, lat, lon]`` when the fix continues it,
        else None."""
        if head is None:
            return None
        if self.test.jump_distance(ctx, x, y, lat, lon, head[1], head[2], head[3], head[4],
                                   t - head[0]) is not None:
            return None
        return math.hypot(x - head[1], y - head[2])

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        if not judged(report, vessel):
            return
        t = report.time
        x, y = ctx.x, ctx.y  # projected once by the engine
        lat, lon = report.lat, report.lon
        assert x is not None and y is not None and lat is not None and lon is not None
        state = vessel.rule_state.get(self.name)
        if state is None:
            prev = ctx.prev_fix
            if prev is None or not self.test.jumps_from_prev(ctx, x, y, lat, lon, t):
                return  # the common case: no jump, nothing kept
            if is_placeholder(vessel.mmsi):
                return  # many devices send it: two places are expected
            state = vessel.rule_state[self.name] = {
                "a": [prev.time, prev.x, prev.y, prev.lat, prev.lon], "b": None,
                "last": "a", "jumps": []}
        fit_a = self._fits(ctx, state["a"], x, y, lat, lon, t)
        fit_b = self._fits(ctx, state["b"], x, y, lat, lon, t)
        if fit_a is not None and (fit_b is None or fit_a <= fit_b):
            member = "a"
        else:
            member = "b"  # continues b, or a third place that becomes the new b
        state[member] = [t, x, y, lat, lon]
        jumps: list[float] = [j for j in state["jumps"] if j > t - self.window_s]
        if member != state["last"]:
            jumps.append(t)
            state["last"] = member
        state["jumps"] = jumps
        alert_id = state.get("alert")
        alert = ctx.book.get(str(alert_id)) if alert_id else None
        if alert is None and len(jumps) >= self.jumps:
            alert = self._open(ctx, vessel, report, state, jumps)
        if alert is not None:
            # The picture follows track a, where the vessel was before the first jump,
            # not whichever track it held when the alert opened: three agreeing fixes of a
            # second transmitter between two of the vessel's own moved the picture there
            # (position_jump's relocation), and the alert then kept it there, the vessel's
            # own fixes all rejected and its restricted_entry ended.
            if member == "b":
                ctx.reject_fix(self.name)
            return
        if not jumps and member == "a":
            del vessel.rule_state[self.name]  # settled on one track again

    def _open(self, ctx: RuleContext, vessel: Vessel, report: Report, state: dict[str, Any],
              jumps: list[float]) -> Any:
        heads = [head for head in (state["a"], state["b"]) if head is not None]
        apart = (math.hypot(heads[0][1] - heads[1][1], heads[0][2] - heads[1][2])
                 if len(heads) == 2 else None)
        alert = ctx.book.open(
            self.name, risk_area=RiskArea.INFORMATION_SECURITY, severity=Severity.WARNING,
            mmsi=vessel.mmsi, started_at=jumps[0], time=report.time,
            shipname=vessel.shipname, lat=vessel.lat, lon=vessel.lon,
            details={"jumps": len(jumps), "window_s": self.window_s,
                     "places": [{"lat": head[3], "lon": head[4]} for head in heads],
                     "apart_m": None if apart is None else round(apart, 1),
                     "reports": [evidence(report)]})
        if alert is None:
            return None
        state["alert"] = alert.id
        jump_alert = ctx.book.find("position_jump", vessel.mmsi)
        if jump_alert is not None:
            ctx.book.end(jump_alert, report.time, {"end_reason": "mmsi_conflict",
                                                   "mmsi_conflict": alert.id})
        return alert

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        for alert in ctx.book.of_rule(self.name):
            vessel = ctx.picture.get(alert.mmsi) if alert.mmsi is not None else None
            state = vessel.rule_state.get(self.name) if vessel is not None else None
            jumps = state.get("jumps", []) if state else []
            last = max(jumps) if jumps else alert.started_at
            if now - last >= self.window_s:
                ctx.book.end(alert, now, {"end_reason": "no_jumps"}, ended_at=last)
                if vessel is not None:
                    vessel.rule_state.pop(self.name, None)
