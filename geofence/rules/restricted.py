"""``restricted_entry``: a vessel inside a restricted/security zone it is not allowed in.

State-based: opens on the (inertia-confirmed) entry, ends on the confirmed exit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geofence.alert import RiskArea, Severity
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, first_inside, vessel_fields
from geofence.zones import Zone
from ingest.report import Report

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig


class RestrictedEntry(BaseRule):
    name = "restricted_entry"
    zone_changes_only = True

    def __init__(self, config: RulesConfig) -> None:
        self.kinds = frozenset(config.restricted_entry.kinds)
        self.allowed = frozenset(config.restricted_entry.allowed_mmsi)
        self.inertia = config.membership.inertia_reports

    def allowed_in(self, zone: Zone, mmsi: int) -> bool:
        return mmsi in self.allowed or mmsi in (zone.get("allowed_mmsi") or ())

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        for zone in ctx.entered:
            if zone.kind in self.kinds and not self.allowed_in(zone, vessel.mmsi):
                severity = Severity.CRITICAL if zone.kind == "security" else Severity.WARNING
                details: dict[str, Any] = {"zone_kind": zone.kind, "zone_name": zone.name,
                                           "reports": [evidence(report)]}
                first = first_inside(vessel, self.inertia)
                if first is not None:
                    details["first_inside"] = first
                ctx.book.open(self.name, risk_area=RiskArea.CRIMINAL_ACTIVITY,
                              severity=severity, mmsi=vessel.mmsi, started_at=report.time,
                              time=report.time, zone=zone.id, **vessel_fields(vessel),
                              details=details)
        for zone in ctx.exited:
            alert = ctx.book.find(self.name, vessel.mmsi, zone=zone.id)
            if alert is not None:
                ctx.book.end(alert, report.time,
                             {"dwell_s": round(report.time - alert.started_at, 1),
                              "exit": evidence(report)})

    def on_zones(self, ctx: RuleContext) -> None:
        """A zone removed, or now allowing the vessel, ends its alert."""
        for alert in ctx.book.of_rule(self.name):
            zone = ctx.zones.by_id.get(alert.zone or "")
            if zone is None or zone.kind not in self.kinds or (
                    alert.mmsi is not None and self.allowed_in(zone, alert.mmsi)):
                ctx.book.end(alert, ctx.now, {"end_reason": "zones changed"})
