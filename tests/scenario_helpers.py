"""Shared by the scenario tests: a small synthetic port (drawn in metres) and a replay of a
scenario through the production pipeline (ingestor, engine, pipeline, a collecting sink).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import shapely
from shapely.geometry import LineString, Polygon, box

from geofence.alert import AlertEvent
from geofence.engine import Engine
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from ingest.report import Report
from tests.paths import FIXTURES
from tests.rulekit import lonlat

DEMO_ZONES = FIXTURES / "demo-port" / "zones.geojson"
ALLOWED_MMSI = 219_000_123


def _feature(zone_id: str, kind: str, geom: Any, **props: Any) -> dict[str, Any]:
    ring = [list(lonlat(x, y)) for x, y in geom.exterior.coords]
    return {"type": "Feature",
            "properties": {"id": zone_id, "name": zone_id.replace("_", " "), "kind": kind,
                           **props},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def synthetic_port() -> dict[str, Any]:
    """A port unlike the demo: a bent channel from the south-east, a quay with berths, a
    marina, a naval pier (restricted, one vessel allowed), a security zone, an anchorage
    partly outside the port limit, coverage an irregular hexagon."""
    berths = {
        "quay_1": box(-3000, 200, -2600, 380),
        "quay_2": box(-2450, 200, -2050, 380),
        "quay_3": box(-1700, -900, -1450, -500),
        "marina": box(-600, 700, -250, 950),
    }
    channel_line = LineString([(-2300, -60), (0, -1100), (5000, -3600), (9500, -4200)])
    channel = channel_line.buffer(260, cap_style="flat").difference(
        shapely.union_all([b.buffer(30) for b in berths.values()]))
    if channel.geom_type == "MultiPolygon":
        channel = max(channel.geoms, key=lambda g: g.area)
    coverage = Polygon([(-15000, -2000), (-9000, 11000), (8000, 12000), (17000, 1000),
                        (12000, -13000), (-6000, -12000)])
    features = [
        _feature("coverage", "coverage", coverage),
        _feature("port", "port_limit", box(-7000, -6500, 6500, 5000)),
        _feature("fairway", "channel", channel, max_speed_kn=6),
        _feature("roads", "anchorage", box(6000, 1000, 11000, 5000)),
        _feature("naval_pier", "restricted", box(-4600, -1600, -3800, -900),
                 allowed_mmsi=[ALLOWED_MMSI]),
        _feature("fuel_jetty", "security", box(1200, 1400, 1500, 1700)),
        *(_feature(zid, "berth", geom) for zid, geom in berths.items()),
    ]
    return {"type": "FeatureCollection", "features": features}


class Collector:
    """A sink that keeps every alert's latest state and every transition."""

    def __init__(self) -> None:
        self.alerts: dict[str, dict[str, Any]] = {}
        self.events: list[AlertEvent] = []
        self.reports = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def on_report(self, report: Report) -> None:
        self.reports += 1

    def on_alert(self, event: AlertEvent) -> None:
        self.events.append(event)
        self.alerts[event.alert["id"]] = event.alert


def replay(lines: Iterable[str], zones: ZoneSet, config: RulesConfig | None = None,
           ) -> tuple[Collector, Pipeline]:
    """Lines through the production path, as ``harbourwatch replay`` runs them."""
    collector = Collector()
    pipeline = Pipeline(Ingestor(), Engine(config or RulesConfig(), zones), sinks=[collector])
    for line in lines:
        pipeline.feed_line("scenario", line.encode("ascii"), None)
    pipeline.finish()
    return collector, pipeline


def alerts_of(collector: Collector, rules: Sequence[str]) -> list[dict[str, Any]]:
    return [a for a in collector.alerts.values() if a["rule"] in rules]
