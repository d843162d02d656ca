"""``emergency_device``: an AIS-SART (970), MOB device (972) or EPIRB-AIS (974) is heard.

Devices send position reports (type 1) and safety broadcasts (type 14, "SART ACTIVE"); a
97x MMSI on any other message is a garbled one (a type 27 at the noise floor with a longitude
of 200° made a critical EPIRB alert) and is not judged.

State-based so a device transmitting every minute gives one alert: it opens on the first
report, moves with the device (updates at most once a minute, only when it moved ≥ 100 m),
and ends once the device has been silent for ``end_after_s``.

A device in test mode (navigational status 15, or "... TEST" in its safety text, IEC
61097-14; an active one sends 14 and "... ACTIVE") is heard at every annual survey: its
alert is ``info``, ``details.mode`` "test"; it ends (``reason: active``) and a critical
alert of its own opens as soon as the device reports active.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from geofence.alert import RiskArea, Severity, alert_id
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, kept_elsewhere, vessel_fields
from ingest.report import Report, iso_time

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

DEVICES = {970: "ais_sart", 972: "mob", 974: "epirb"}
#: What AIS-SART, MOB and EPIRB-AIS devices transmit (ITU-R M.1371: position reports and
#: safety-related broadcasts); 2 and 3 as well, the other class A position reports.
DEVICE_MESSAGE_TYPES = frozenset({1, 2, 3, 14})
UPDATE_MOVE_M = 100.0
UPDATE_EVERY_S = 60.0
#: The navigational status of a device in test mode; an active one sends 14.
TEST_STATUS = 15


def device_mode(report: Report) -> str:
    """``"test"`` or ``"active"``; anything unclear counts as active (fail safe)."""
    text = report.extra.get("text") if report.extra else None
    if text is not None:
        return "test" if "TEST" in text.upper() else "active"
    return "test" if report.status == TEST_STATUS else "active"


def device_kind(mmsi: int) -> str | None:
    """The emergency device type of a 9-digit 97x MMSI, else None."""
    if 970_000_000 <= mmsi < 975_000_000:
        return DEVICES.get(mmsi // 1_000_000)
    return None


class EmergencyDevice(BaseRule):
    name = "emergency_device"
    non_ship_only = True  # 97x devices are no ship MMSIs
    msg_types = DEVICE_MESSAGE_TYPES

    def __init__(self, config: RulesConfig) -> None:
        self.end_after_s = config.emergency_device.end_after_s

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        kind = device_kind(vessel.mmsi)
        if kind is None:
            return
        mode = device_mode(report)
        alert = ctx.book.find(self.name, vessel.mmsi)
        escalated = False
        if alert is not None and mode == "active" and alert.details.get("mode") == "test":
            # A distress is a new alert: an operator's ack of the survey's test must not
            # carry over, nor a snooze that muted the test. Its id is its own (opened in the
            # same second it had the test alert's, and consumers de-duplicate on ids).
            ctx.book.end(alert, report.time, {"reason": "active"})
            alert, escalated = None, True
        if alert is None:
            ctx.book.open(self.name, risk_area=RiskArea.PORT_OPERATIONS,
                          severity=Severity.CRITICAL if mode == "active" else Severity.INFO,
                          mmsi=vessel.mmsi, started_at=report.time, time=report.time,
                          **vessel_fields(vessel),
                          details={"device": kind, "mode": mode, "status": report.status,
                                   "text": report.extra.get("text"),
                                   "reports": [evidence(report)]},
                          alert_id=alert_id(self.name, vessel.mmsi, None, "after-test",
                                            report.time, ctx.book.drill) if escalated else "")
            vessel.rule_state[self.name] = {"updated": report.time, "x": vessel.x,
                                            "y": vessel.y, "crs": ctx.zones.crs}
            return
        state = vessel.rule_state.setdefault(self.name, {
            "updated": report.time, "x": vessel.x, "y": vessel.y, "crs": ctx.zones.crs})
        if not ctx.fix_accepted or vessel.x is None or vessel.y is None:
            return
        if state.get("x") is None:
            state.update(x=vessel.x, y=vessel.y, crs=ctx.zones.crs)
            return
        moved = math.hypot(vessel.x - state["x"], vessel.y - state["y"])
        if moved >= UPDATE_MOVE_M and report.time - state["updated"] >= UPDATE_EVERY_S:
            state.update(updated=report.time, x=vessel.x, y=vessel.y, crs=ctx.zones.crs)
            ctx.book.update(alert, report.time, lat=vessel.lat, lon=vessel.lon,
                            details={"last_report": evidence(report)})

    def on_zones(self, ctx: RuleContext) -> None:
        # Where the alert was last updated is kept in metres alone: after zones in another
        # projection (also across a restart) it is carried over through lat/lon. Where the
        # new projection has no point for it, the next fix takes its place.
        for state, carry, crs in kept_elsewhere(ctx, self.name):
            if state.get("x") is None:
                continue
            xy = carry(state["crs"], state["x"], state["y"])
            state.update(x=None if xy is None else xy[0], y=None if xy is None else xy[1],
                         crs=crs)

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        for alert in ctx.book.of_rule(self.name):
            vessel = ctx.picture.get(alert.mmsi) if alert.mmsi is not None else None
            last = vessel.last_seen if vessel is not None else alert.started_at
            if now - last > self.end_after_s:
                if vessel is not None:
                    vessel.rule_state.pop(self.name, None)
                ctx.book.end(alert, now, {"last_heard": iso_time(last)},
                             ended_at=last + self.end_after_s)
