"""``zone_entry`` / ``zone_exit``: instantaneous events when membership (with inertia) changes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geofence.alert import RiskArea, Severity
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, first_inside, vessel_fields
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
        self.inertia = config.membership.inertia_reports

    def _wanted(self, zone: Zone) -> bool:
        override = zone.get("events")
        return bool(override) if override is not None else zone.kind in self.kinds

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        zones = ctx.entered if self.entering else ctx.exited
        for zone in zones:
            if self._wanted(zone):
                details: dict[str, Any] = {"zone_kind": zone.kind, "zone_name": zone.name,
                           "reports": [evidence(report)]}
                first = first_inside(vessel, self.inertia) if self.entering else None
                if first is not None:
                    details["first_inside"] = first
                if self.entering and self._first_seen_inside(vessel):
                    details["first_seen_inside"] = True
                elif self.entering and self._always_inside(vessel, zone):
                    # Every fix remembered is inside: the zone came around the vessel (a
                    # zone change over the API, or the file at a restart), no crossing.
                    details["inside_when_zones_changed"] = True
                ctx.book.event(self.name, risk_area=RiskArea.PORT_OPERATIONS,
                               severity=Severity.INFO, mmsi=vessel.mmsi, time=report.time,
                               zone=zone.id, **vessel_fields(vessel), details=details)

    def _first_seen_inside(self, vessel: Vessel) -> bool:
        """Whether the vessel's fixes so far are just those that confirmed the entry: it
        was inside when first seen (at start-up, or its AIS switched on at a berth), so
        no crossing was observed. A full history cannot tell."""
        fixes = len(vessel.history)
        return fixes <= self.inertia and fixes != vessel.history.maxlen

    @staticmethod
    def _always_inside(vessel: Vessel, zone: Zone) -> bool:
        return all(zone.distance(fix.x, fix.y) == 0.0 for fix in vessel.history)


class ZoneEntry(_ZoneEvent):
    name = "zone_entry"
    entering = True


class ZoneExit(_ZoneEvent):
    name = "zone_exit"
    entering = False
