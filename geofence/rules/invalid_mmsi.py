"""``invalid_mmsi``: an MMSI that no ship station may carry (ITU MID table, :mod:`geofence.mid`).

Flagged: more than nine digits, a MID that is not allocated, a group-call number. Classified
and not flagged: ship MMSIs, coast/base stations (00…), aids to navigation (99…), SAR aircraft
(111…), craft of a parent ship (98…), handhelds (8…), and the emergency devices 970/972/974
(``emergency_device`` handles those). One event per MMSI, not one per report: the vessel's
``rule_state`` remembers it was flagged (and survives a restart with the vessel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geofence.alert import RiskArea, Severity
from geofence.mid import classify, is_ship_mmsi, mmsi_text
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, vessel_fields
from ingest.report import Report

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig


class InvalidMmsi(BaseRule):
    name = "invalid_mmsi"

    def __init__(self, config: RulesConfig) -> None:
        self.config = config.invalid_mmsi

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        mmsi = vessel.mmsi
        if is_ship_mmsi(mmsi) or self.name in vessel.rule_state:
            return
        kind = classify(mmsi)
        if kind.valid:
            vessel.rule_state[self.name] = {"kind": kind.kind}
            return
        vessel.rule_state[self.name] = {"kind": kind.kind, "reason": kind.reason}
        ctx.book.event(
            self.name, risk_area=RiskArea.INFORMATION_SECURITY, severity=Severity.WARNING,
            mmsi=mmsi, time=report.time, **vessel_fields(vessel),
            details={"mmsi_text": mmsi_text(mmsi) if mmsi <= 999_999_999 else str(mmsi),
                     "reason": kind.reason, "mid": kind.mid, "country": kind.country,
                     "reports": [evidence(report)]})
