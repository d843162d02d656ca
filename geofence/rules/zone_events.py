"""``zone_entry`` / ``zone_exit``: instantaneous events when membership (with inertia) changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geofence.alert import RiskArea, Severity
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, vessel_fields
from geofence.zones import Zone
from ingest.report import Report

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig, ZoneEventConfig


class _ZoneEvent(BaseRule):
    entering = True
    zone_changes_only = True

    def __init__(self, config: RulesConfig) -> None:
        section: ZoneEventConfig = getattr(config, self.name)
        self.kinds = frozenset(section.kinds)

    def _wanted(self, zone: Zone) -> bool:
        override = zone.get("events")
        return bool(override) if override is not None else zone.kind in self.kinds

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        zones = ctx.entered if self.entering else ctx.exited
        for zone in zones:
            if self._wanted(zone):
                ctx.book.event(self.name, risk_area=RiskArea.PORT_OPERATIONS,
                               severity=Severity.INFO, mmsi=vessel.mmsi, time=report.time,
                               zone=zone.id, **vessel_fields(vessel),
                               details={"zone_kind": zone.kind, "zone_name": zone.name,
                                        "reports": [evidence(report)]})


class ZoneEntry(_ZoneEvent):
    name = "zone_entry"
    entering = True


class ZoneExit(_ZoneEvent):
    name = "zone_exit"
    entering = False
