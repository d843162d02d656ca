"""``identity_change``: name, callsign, IMO or ship type changes for one MMSI.

The rule keeps its own copy of each watched field (``fields``) in the vessel's
``rule_state``, so what counts is a field that had a value and now has another, never a
field seen for the first time: a class B vessel's first 24A (name) and 24B (callsign, type)
arriving separately are not a change, nor is a class A vessel's first message 5. One event
per report that changes something, listing every field changed. Values are compared after
the usual clean-up (upper case, ``@`` padding and repeated blanks removed; IMO 0 and ship
type 0 mean "not available").

Two transmitters on one MMSI with different static data would flip a field back and forth
on every static report: a change back to a value the field had within ``flap_s`` is counted
in the state (``flaps``) rather than alerted again.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from geofence.alert import RiskArea, Severity
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, vessel_fields
from ingest.report import STATIC_TYPES, Report

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

_BLANKS = re.compile(r"\s+")


def clean(field: str, value: Any) -> Any:
    """The comparable form of a static value, or None when it means "not available"."""
    if value is None:
        return None
    if field in ("imo", "shiptype"):
        return int(value) or None
    text = _BLANKS.sub(" ", str(value).replace("@", " ")).strip().upper()
    return text or None


class IdentityChange(BaseRule):
    name = "identity_change"
    msg_types = STATIC_TYPES

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.identity_change
        self.fields = tuple(cfg.fields)
        self.flap_s = cfg.flap_s

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        if report.msg_type not in STATIC_TYPES:
            return
        t = report.time
        state = vessel.rule_state.get(self.name)
        if state is None:
            state = vessel.rule_state[self.name] = {"known": {}, "past": {}}
        known: dict[str, Any] = state["known"]
        past: dict[str, list[list[Any]]] = state["past"]
        changes: dict[str, dict[str, Any]] = {}
        for name in self.fields:
            value = clean(name, getattr(report, name))
            if value is None:
                continue
            old = known.get(name)
            known[name] = value
            if old is None or old == value:
                continue
            earlier = past.setdefault(name, [])
            earlier[:] = [p for p in earlier if t - p[1] <= self.flap_s and p[0] != old]
            flap = any(p[0] == value for p in earlier)
            earlier.append([old, t])
            if flap:
                state["flaps"] = int(state.get("flaps", 0)) + 1
                continue
            changes[name] = {"old": old, "new": value}
        if not changes:
            return
        ctx.book.event(
            self.name, risk_area=RiskArea.CRIMINAL_ACTIVITY, severity=Severity.WARNING,
            mmsi=vessel.mmsi, time=t, **vessel_fields(vessel),
            details={"changes": changes, "ais_class": vessel.ais_class,
                     "reports": [evidence(report)]})
