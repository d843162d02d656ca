"""Fixes the port's projection has no point for: UTM goes to infinity 90° of longitude from
its central meridian near the equator. A national or satellite feed hears vessels there (from
a Danish port, Singapore Strait; from Gladstone, the Indian Ocean), and one such fix in the
collision grid stopped the whole service with ``ValueError: cannot convert float NaN``.
"""

from __future__ import annotations

import math

from pyproj import Transformer

from geofence.engine import Engine
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from ingest.ingestor import Ingestor
from ingest.report import Report
from tests.ingest_helpers import feed_all
from tests.paths import FIXTURES
from tests.rulekit import T0, Run, collection, rect, report

KN = 1852.0 / 3600.0
#: 90° east of UTM 31's central meridian (3°E), a degree north of the equator.
NOWHERE = (93.0, 1.0)  # lon, lat


def at_nowhere(mmsi: int, t: float, east_m: float, speed: float, course: float) -> Report:
    lon, lat = NOWHERE
    return Report(mmsi=mmsi, msg_type=1, time=T0 + t, time_source="tagblock",
                  sources=["sat"], nmea=[], lat=lat, lon=lon + east_m / 111_000.0,
                  speed=speed, course=course, status=0)


def test_fixes_without_a_place_in_the_projection_are_reports_without_a_position() -> None:
    run = Run()
    assert not all(map(math.isfinite, run.engine.zones.project(*NOWHERE)))
    # Two vessels closing head-on there (a collision_risk pair, had they a place), and one
    # in the port: the service goes on and judges the port's vessel as before.
    for t in range(0, 120, 10):
        run.feed(at_nowhere(244000111, t, -1000.0 + t * 5 * KN, 10.0, 90.0),
                 at_nowhere(244000222, t, 1000.0 - t * 5 * KN, 10.0, 270.0),
                 report(244000333, t, 100, 25, speed=0.0))
    assert run.engine.counters["unprojectable"] == 24
    far = run.engine.picture.vessels[244000111]
    assert (far.x, far.y, far.fix_time, len(far.history)) == (None, None, None, 0)
    assert run.engine.picture.vessels[244000333].zones.keys() >= {"berth_1", "port"}
    assert run.of("collision_risk") == []


def test_a_zone_change_that_leaves_a_vessel_without_a_place_takes_its_position_away() -> None:
    run = Run()
    lon, lat = NOWHERE
    run.feed(*(Report(mmsi=244000444, msg_type=1, time=T0 + t, time_source="tagblock",
                      sources=["sat"], nmea=[], lat=lat, lon=lon - 45.0, speed=10.0,
                      course=90.0, status=0) for t in (0.0, 10.0)))
    vessel = run.engine.picture.vessels[244000444]
    assert vessel.x is not None and len(vessel.history) == 2
    # Zones drawn 45° west (UTM 24): the vessel is now 90° east of the central meridian.
    west = rect("far_west", "coverage", -1000, -1000, 1000, 1000)
    ring = west["geometry"]["coordinates"][0]
    west["geometry"]["coordinates"] = [[[x - 49.0, y - 51.0] for x, y in ring]]
    run.engine.set_zones(ZoneSet.from_geojson(collection(west)))
    assert (vessel.x, vessel.y, len(vessel.history)) == (None, None, 0)


def test_a_satellite_log_replayed_for_a_danish_port_runs_to_its_end() -> None:
    """The exactEarth fixture (Indian Ocean, 70–107°E) against zones at Esbjerg (UTM 32,
    9°E): 12 of its fixes are within a few degrees of 99°E near the equator."""
    esbjerg = {"type": "Feature",
               "properties": {"id": "esbjerg", "name": "Esbjerg", "kind": "coverage"},
               "geometry": {"type": "Polygon", "coordinates": [[
                   [8.2, 55.3], [8.6, 55.3], [8.6, 55.6], [8.2, 55.6], [8.2, 55.3]]]}}
    engine = Engine(RulesConfig(), ZoneSet.from_geojson(collection(esbjerg)))
    lines = (FIXTURES / "risky" / "exact-earth-with-tag-block.txt").read_bytes().splitlines()
    reports = feed_all(Ingestor(), "sat", [line + b"\n" for line in lines], flush=True)
    for rep in reports:
        engine.process(rep)
    assert len(reports) == 200
    nowhere = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True)
    expected = [r.mmsi for r in reports if r.lat is not None and r.lon is not None
                and not all(map(math.isfinite, nowhere.transform(r.lon, r.lat)))]
    assert len(expected) == 12
    assert engine.counters["unprojectable"] == 12
    assert engine.counters["reports"] + engine.counters["not_vessels"] == 200
