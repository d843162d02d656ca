"""Builders for rule tests: a test port laid out in metres, reports at given offsets, and a
small driver that feeds an engine and collects alert transitions.

Offsets are metres east/north of ORIGIN in UTM 31N, converted to lon/lat once here, so a
test can say "200 m outside the berth" and mean it. They are grid metres: grid north is 0.79°
west of true north at ORIGIN (4°E, 1° east of the zone's central meridian), so a vessel
moving along a grid axis reports a true course that differs from the axis's bearing
(:func:`course_along`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pyproj import Proj

from geofence.alert import AlertEvent
from geofence.engine import Engine
from geofence.projection import Projector
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from ingest.report import Report

T0 = 1_767_268_800.0  # 2026-01-01T12:00:00Z
ORIGIN = (4.0, 52.0)  # lon, lat
PROJ = Projector("EPSG:32631")
X0, Y0 = PROJ.forward(*ORIGIN)
_FACTORS = Proj("EPSG:32631")


def lonlat(dx: float, dy: float) -> tuple[float, float]:
    """The lon/lat of a point ``dx`` m east and ``dy`` m north of ORIGIN."""
    return PROJ.inverse(X0 + dx, Y0 + dy)


def course_along(grid_bearing: float, dx: float, dy: float) -> float:
    """The true course (COG) of a vessel at the offset moving on ``grid_bearing`` in the
    test's metres: the bearing plus pyproj's meridian convergence there."""
    gamma = _FACTORS.get_factors(*lonlat(dx, dy)).meridian_convergence
    return (grid_bearing + gamma) % 360.0


def rect(zone_id: str, kind: str, x0: float, y0: float, x1: float, y1: float,
         **props: Any) -> dict[str, Any]:
    """A rectangular zone Feature given in metres from ORIGIN."""
    ring = [lonlat(x0, y0), lonlat(x1, y0), lonlat(x1, y1), lonlat(x0, y1), lonlat(x0, y0)]
    return {"type": "Feature",
            "properties": {"id": zone_id, "name": zone_id.replace("_", " "), "kind": kind,
                           **props},
            "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


#: The test port: 40 km coverage, 6 km port limit, a berth, a security zone, a restricted
#: zone, and a channel with a 6 kn limit.
PORT_FEATURES = (
    rect("coverage", "coverage", -20000, -20000, 20000, 20000),
    rect("port", "port_limit", -3000, -3000, 3000, 3000),
    rect("berth_1", "berth", 0, 0, 200, 50),
    rect("security_1", "security", 1000, 1000, 1100, 1100),
    rect("restricted_1", "restricted", -2000, -2000, -1500, -1500, allowed_mmsi=[244000999]),
    rect("channel_1", "channel", -2500, -2600, 2500, -2400, max_speed_kn=6),
)


def port_zones(*extra: dict[str, Any]) -> ZoneSet:
    return ZoneSet.from_geojson(collection(*PORT_FEATURES, *extra))


def zones_moved_east(degrees: float) -> ZoneSet:
    """The port's zones moved ``degrees`` of longitude east: 5° puts them in UTM 32, where
    ORIGIN's metres are some 411 km west of UTM 31's."""
    features = []
    for feature in PORT_FEATURES:
        ring = feature["geometry"]["coordinates"][0]
        features.append({**feature, "geometry": {"type": "Polygon", "coordinates": [
            [[lon + degrees, lat] for lon, lat in ring]]}})
    return ZoneSet.from_geojson(collection(*features))


def rules_config(**sections: Any) -> RulesConfig:
    """A RulesConfig with some sections overridden, e.g. ``dark_vessel={"moving_s": 60}``."""
    return RulesConfig.model_validate(sections)


def report(mmsi: int, t: float, dx: float | None = None, dy: float | None = None, *,
           speed: float | None = 0.0, course: float | None = 0.0, status: int | None = 0,
           sources: Sequence[str] = ("rx1",), msg_type: int = 1, **fields: Any) -> Report:
    """A position report (time ``T0 + t``) at an offset in metres, or without position."""
    lat = lon = None
    if dx is not None and dy is not None:
        lon, lat = lonlat(dx, dy)
    return Report(mmsi=mmsi, msg_type=msg_type, time=T0 + t, time_source="tagblock",
                  sources=list(sources), nmea=[], lat=lat, lon=lon, speed=speed,
                  course=course, status=status, **fields)


class Run:
    """An engine and every transition it produced."""

    def __init__(self, zones: ZoneSet | None = None, config: RulesConfig | None = None,
                 **sections: Any) -> None:
        self.engine = Engine(config or rules_config(**sections),
                             zones if zones is not None else port_zones())
        self.events: list[AlertEvent] = []

    def feed(self, *reports: Report) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        for rep in reports:
            out += self.engine.process(rep)
        self.events += out
        return out

    def play(self, *streams: Iterable[Report]) -> list[AlertEvent]:
        """Several report streams merged in message-time order (stable)."""
        merged = sorted((r for stream in streams for r in stream), key=lambda r: r.time)
        return self.feed(*merged)

    def tick(self, t: float) -> list[AlertEvent]:
        out = self.engine.tick(T0 + t)
        self.events += out
        return out

    def of(self, rule: str, transition: str | None = None) -> list[AlertEvent]:
        return [e for e in self.events if e.alert["rule"] == rule
                and (transition is None or e.transition == transition)]

    def track(self, mmsi: int, times: Iterable[float], dx: float, dy: float,
              **kw: Any) -> None:
        """Reports at a fixed place at each time."""
        for t in times:
            self.feed(report(mmsi, t, dx, dy, **kw))

    def beacon(self, times: Iterable[float], receiver: str = "rx1",
               mmsi: int = 244000001) -> None:
        """Another vessel heard by ``receiver`` (keeps that receiver alive)."""
        for t in times:
            self.feed(report(mmsi, t, 5000, 5000, sources=(receiver,)))


def span(start: float, stop: float, step: float) -> list[float]:
    """start, start+step, … up to and including stop."""
    out, t = [], start
    while t <= stop + 1e-9:
        out.append(t)
        t += step
    return out


def at(mmsi: int, times: Iterable[float], dx: float, dy: float, **kw: Any) -> list[Report]:
    """Reports of one vessel at a fixed place at each time."""
    return [report(mmsi, t, dx, dy, **kw) for t in times]
