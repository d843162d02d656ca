"""The engine's shortcuts give the answers of the plain computations they stand for."""

from __future__ import annotations

import math
import random
from itertools import pairwise

import shapely

from geofence.alert import Alert, AlertState, RiskArea, Severity
from geofence.alertbook import snapshot
from geofence.neighbours import Grid
from geofence.picture import Vessel, update_membership
from geofence.projection import Projector
from geofence.zones import ZoneSet
from tests.rulekit import lonlat, port_zones


def plain_ids_at(zones: ZoneSet, x: float, y: float) -> tuple[str, ...]:
    """Every zone tested exactly, in file order (what the grid of cells shortcuts)."""
    return tuple(z.id for z in zones.zones if shapely.contains_xy(z.metric, x, y))


def test_ids_at_matches_exact_tests_inside_on_edges_and_far_away() -> None:
    zones = port_zones()
    rng = random.Random(7)
    x0, y0, x1, y1 = shapely.total_bounds([z.metric for z in zones.zones])
    points = [(rng.uniform(x0 - 5000, x1 + 5000), rng.uniform(y0 - 5000, y1 + 5000))
              for _ in range(3000)]
    # Vertices and edge midpoints of every zone: on the boundary, contains is false.
    for zone in zones.zones:
        ring = list(zone.metric.exterior.coords)
        points += ring
        points += [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in pairwise(ring)]
    points += [(x0 - 1e6, y0), (x1 + 0.5, y1 + 0.5), (float("nan"), y0)]
    inside = 0
    for x, y in points:
        expected = plain_ids_at(zones, x, y)
        assert zones.ids_at(x, y) == expected, (x, y)
        assert [z.id for z in zones.zones_at(x, y)] == list(expected)
        inside += bool(expected)
    assert inside > 500  # the sample does reach into the zones
    assert ZoneSet.empty("EPSG:32631").ids_at(500_000.0, 5_700_000.0) == ()


def test_project_gives_the_projectors_answer_and_is_lazy_without_zones() -> None:
    zones = port_zones()
    assert zones.crs is not None
    projector = Projector(zones.crs)
    rng = random.Random(3)
    points = [lonlat(rng.uniform(-3000, 3000), rng.uniform(-3000, 3000)) for _ in range(200)]
    for lon, lat in points + points:  # asked twice: the same answer
        assert zones.project(lon, lat) == projector.forward(lon, lat)
    lazy = ZoneSet.empty()
    assert lazy.project(4.1, 51.9) == lazy.project(4.1, 51.9)
    assert lazy.crs == "EPSG:32631"


def test_project_ahead_gives_the_scalar_projection() -> None:
    from geofence.engine import Engine
    from harbourwatch.config import RulesConfig
    from ingest.report import Report

    zones = port_zones()
    engine = Engine(RulesConfig(), zones)
    rng = random.Random(5)
    reports = [Report(mmsi=244_000_000 + i, msg_type=1, time=1.0, time_source="tagblock",
                      sources=["rx"], nmea=[], lat=lat, lon=lon)
               for i in range(300)
               for lon, lat in (lonlat(rng.uniform(-9000, 9000), rng.uniform(-9000, 9000)),)]
    reports.append(Report(mmsi=1, msg_type=5, time=1.0, time_source="tagblock", sources=[],
                          nmea=[]))  # no position: not projected
    engine.project_ahead([(reports[:150], 0), (reports[150:], 0)])
    assert len(engine._ahead) == 300
    for report in reports[:-1]:
        assert report.lat is not None and report.lon is not None
        x, y, inside = engine._ahead[(report.lon, report.lat)]
        assert (x, y) == zones.project(report.lon, report.lat)
        assert inside == zones.ids_at(x, y)
    engine.project_ahead([(reports[:3], 0)])  # too few to vectorise: projected one by one
    assert engine._ahead == {}


def test_snapshot_is_to_dict_with_details_copied() -> None:
    details = {"reports": [{"time": "2026-01-01T10:00:00Z", "sources": ["rx1"]}],
               "speeds": [3.5, None], "nested": {"a": [1, {"b": 2}]}}
    open_alert = Alert(rule="encounter", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                       severity=Severity.WARNING, mmsi=244000001, other_mmsi=244000002,
                       started_at=1_767_261_600.25, shipname="A", zone="berth_1",
                       lat=51.9, lon=4.1, details=details)
    ended = Alert(rule="zone_entry", risk_area=RiskArea.PORT_OPERATIONS,
                  severity=Severity.INFO, mmsi=244000003, started_at=1_767_261_601.0,
                  state=AlertState.ENDED, ended_at=1_767_261_601.0, drill=True)
    for alert in (open_alert, ended):
        snap = snapshot(alert)
        assert snap == alert.to_dict()
        assert list(snap) == list(alert.to_dict())  # the same key order for every sink
    snap = snapshot(open_alert)
    snap["details"]["reports"][0]["sources"].append("rx2")
    snap["details"]["nested"]["a"][1]["b"] = 3
    assert open_alert.details["reports"][0]["sources"] == ["rx1"]
    assert open_alert.details["nested"] == {"a": [1, {"b": 2}]}


def test_exit_margin_shortcut_decides_as_the_exact_distance() -> None:
    """Leaving a zone: the bounding-box shortcut never changes when membership ends."""
    zones = port_zones()
    berth = zones.by_id["berth_1"]
    assert berth.box is not None
    x0, y0, x1, y1 = berth.box
    rng = random.Random(11)
    for _ in range(400):
        # Just outside the berth, from inside the margin to well beyond it.
        x = rng.choice([x0 - rng.uniform(0, 60), x1 + rng.uniform(0, 60),
                        rng.uniform(x0, x1)])
        y = rng.choice([y0 - rng.uniform(0, 60), y1 + rng.uniform(0, 60)])
        outcomes = []
        for box in (berth.box, None):  # the shortcut, then the exact distance alone
            berth.box = box
            vessel = Vessel(244000001, 0.0, 0.0, x=x, y=y)
            vessel.zones[berth.id] = None
            for zone in zones.zones:  # confirmed in every zone that holds the point
                if zone.id != berth.id and shapely.contains_xy(zone.metric, x, y):
                    vessel.zones[zone.id] = None
            steps = [update_membership(vessel, zones, 2, 20.0) for _ in range(2)]
            outcomes.append(([[z.id for z in e] for e, _ in steps],
                             [[z.id for z in x_] for _, x_ in steps], dict(vessel.pending),
                             list(vessel.zones)))
        berth.box = (x0, y0, x1, y1)
        assert outcomes[0] == outcomes[1], (x, y)


def test_grid_near_lists_the_block_by_cell_then_insertion() -> None:
    """Sparse or crowded grid, the neighbours come in the same order: by cell (i, then j)."""
    rng = random.Random(5)
    for count in (5, 400):  # fewer occupied cells than the block holds, and many more
        grid: Grid[int] = Grid(100.0)
        for key in range(count):
            grid.put(key, rng.uniform(-2000, 2000), rng.uniform(-2000, 2000), key * 10)
        for _ in range(50):
            x, y = rng.uniform(-2100, 2100), rng.uniform(-2100, 2100)
            radius = rng.choice([80.0, 150.0, 450.0])
            reach = max(1, math.ceil(radius / 100.0))
            ci, cj = int(x // 100.0), int(y // 100.0)
            expected = []
            for i in range(ci - reach, ci + reach + 1):
                for j in range(cj - reach, cj + reach + 1):
                    for key in range(count):
                        entry = grid.get(key)
                        assert entry is not None
                        px, py, payload = entry
                        if (int(px // 100.0), int(py // 100.0)) == (i, j) and (
                                (px - x) ** 2 + (py - y) ** 2 <= radius * radius):
                            expected.append((key, px, py, payload))
            assert grid.near(x, y, radius) == expected


def test_dark_vessel_per_report_shortcuts_agree_with_threshold_and_can_go_dark() -> None:
    from geofence.alertbook import AlertBook
    from geofence.picture import Picture
    from geofence.rules.base import RuleContext
    from geofence.rules.dark import DarkVessel, can_go_dark
    from harbourwatch.config import RulesConfig

    config = RulesConfig()
    zones = port_zones()
    rule = DarkVessel(config)
    ctx = RuleContext(config, zones, Picture(), AlertBook())
    for status in (None, 0, 1, 5, 8, 15):
        for speed in (None, 0.0, 1.99, 2.0, 2.01, 12.0):
            vessel = Vessel(244_000_001, 0.0, 100.0, status=status, speed=speed, messages=2)
            rule._due.clear()
            rule._schedule(ctx, vessel)
            assert rule._limit[vessel.mmsi] == rule.threshold(ctx, vessel), (status, speed)
    ranges = (970_000_000 <= m < 975_000_000 or 111_000_000 <= m < 112_000_000
              for m in range(0, 1_000_000_000, 997))
    for mmsi, in_ranges in zip(range(0, 1_000_000_000, 997), ranges, strict=True):
        assert in_ranges or can_go_dark(mmsi), mmsi
    # Inside the ranges can_go_dark() decides: devices and SAR aircraft cannot, 973… can.
    assert [can_go_dark(m) for m in (970_123_456, 972_000_001, 974_999_999, 973_000_000,
                                     111_244_001)] == [False, False, False, True, False]
