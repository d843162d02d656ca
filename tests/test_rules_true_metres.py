"""Distances in true metres far from the projection's central meridian.

The zones' projection is the port's UTM zone; a national or satellite feed brings vessels
thousands of km from its central meridian, where a projected metre is k true ones (k = 1.053
at FAR, 2,070 km east of UTM 31's 3°E). Positions here are laid out on the ellipsoid
(``Geod.fwd``) and distances checked against ``Geod.inv``: before the correction every
distance-based rule judged them 5 % too far apart.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from pyproj import Geod, Proj

from geofence.projection import SCALE_TOLERANCE, Projector
from geofence.zones import ZoneSet
from ingest.report import Report
from tests.rulekit import Run, collection, course_along, lonlat, report, span

GEOD = Geod(ellps="WGS84")
FAR = (28.5, 43.2)  # lon, lat: off Varna, 2,070 km east of UTM 31's central meridian
SHIP, OTHER, BEACON = 244000010, 244000020, 244000001
KN = 1852.0 / 3600.0


def far(east: float, north: float) -> tuple[float, float]:
    """lon, lat ``east`` true metres then ``north`` true metres (geodesics) from FAR."""
    lon, lat = FAR
    if east:
        lon, lat, _ = GEOD.fwd(lon, lat, 90.0 if east > 0 else 270.0, abs(east))
    if north:
        lon, lat, _ = GEOD.fwd(lon, lat, 0.0 if north > 0 else 180.0, abs(north))
    return float(lon), float(lat)


def far_report(mmsi: int, t: float, east: float, north: float, **kw: Any) -> Report:
    lon, lat = far(east, north)
    return replace(report(mmsi, t, 0.0, 0.0, **kw), lon=lon, lat=lat)


def true_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(GEOD.inv(a[0], a[1], b[0], b[1])[2])


def far_rect(zone_id: str, kind: str, e0: float, n0: float, e1: float, n1: float
             ) -> dict[str, Any]:
    ring = [far(e0, n0), far(e1, n0), far(e1, n1), far(e0, n1), far(e0, n0)]
    return {"type": "Feature", "properties": {"id": zone_id, "name": zone_id, "kind": kind},
            "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}}


def far_zones(*features: dict[str, Any]) -> ZoneSet:
    """Zones off Varna measured in UTM 31 (as a port's projection override, or a national
    zone file whose centre lies far west)."""
    return ZoneSet.from_geojson(collection(*features), projection="EPSG:32631")


def test_the_scale_factor_far_east_is_5_percent() -> None:
    k = Projector("EPSG:32631").scale(*FAR)
    assert k == pytest.approx(Proj("EPSG:32631").get_factors(*FAR).meridional_scale,
                              rel=5e-5)
    assert 1.05 < k < 1.056


# -- the scale factor itself --------------------------------------------------------------

@pytest.mark.parametrize("crs", ["EPSG:32631", "EPSG:32756", "EPSG:27700"])
@pytest.mark.parametrize("lat", [-70.0, -43.0, 0.0, 20.0, 52.0, 70.0])
@pytest.mark.parametrize("east_km", [0.0, 300.0, 1000.0, 2000.0, 3000.0])
def test_scale_matches_geodesic_distances(crs: str, lat: float, east_km: float) -> None:
    """Projected length of 500 m geodesics in four directions over their true length: k,
    the same in every direction (transverse Mercator is conformal). Measured: UTM within
    5.4e-5 up to 2,000 km from the central meridian, 2.2e-4 at 3,000 km; the British grid
    1e-4 more (its datum shift from WGS 84). Within the zone k is taken as 1."""
    projector = Projector(crs)
    lon0 = projector._lon0
    assert lon0 is not None
    lon = lon0 + east_km / (111.32 * math.cos(math.radians(lat)))
    k = projector.scale(lon, lat)
    for azimuth in (0.0, 45.0, 90.0, 150.0):
        lon2, lat2, _ = GEOD.fwd(lon, lat, azimuth, 500.0)
        x1, y1 = projector.forward(lon, lat)
        x2, y2 = projector.forward(float(lon2), float(lat2))
        ratio = math.hypot(x2 - x1, y2 - y1) / 500.0
        if east_km <= 300.0:
            assert k == 1.0 and abs(ratio - 1.0) < SCALE_TOLERANCE
        else:
            assert k == pytest.approx(ratio, rel=2e-4 if east_km <= 2000.0 else 4e-4)


@pytest.mark.parametrize("crs", ["EPSG:32631", "EPSG:32756", "EPSG:27700", "EPSG:25832"])
def test_within_the_flat_range_the_scale_is_one_at_every_latitude(crs: str) -> None:
    """``Projector.flat`` lets the rules skip the trigonometry: at its edges pyproj's k is
    still within the tolerance of 1, from the equator to 84°."""
    projector = Projector(crs)
    x0, x1 = projector.flat
    assert 300_000 < (x1 - x0) / 2 < 340_000  # UTM: a whole zone at the equator (±334 km)
    factors = Proj(crs)
    for lat in np.arange(-84.0, 84.5, 2.0):
        for x in (x0 + 1.0, x1 - 1.0):
            _, y = projector.forward(projector._lon0 or 0.0, float(lat))
            lon, lat_edge = projector.inverse(x, y)
            k = factors.get_factors(lon, lat_edge).meridional_scale
            assert abs(k - 1.0) < SCALE_TOLERANCE
            assert projector.scale_at(x, lon, lat_edge) == 1.0


def test_other_projections_take_pyprojs_scale() -> None:
    """Web Mercator at 52°N stretches by 1/cos φ; LAEA (EPSG:3035, not conformal) is within
    the tolerance over Europe's middle."""
    assert Projector("EPSG:3857").scale(4.0, 52.0) == pytest.approx(
        1.0 / math.cos(math.radians(52.0)), rel=2e-3)
    assert Projector("EPSG:3035").scale(10.0, 52.0) == 1.0
    assert Projector("EPSG:3857").flat[0] > Projector("EPSG:3857").flat[1]  # empty


@pytest.mark.parametrize(("crs", "exact"), [("EPSG:32631", 0.9996), ("EPSG:27700", 0.9996012717),
                                           ("EPSG:3031", None), ("EPSG:2154", None)])
def test_min_scale_is_under_the_scale_anywhere(crs: str, exact: float | None) -> None:
    """position_jump lowers its projected pre-filter by it: no true jump may measure less."""
    projector = Projector(crs)
    if exact is not None:  # transverse Mercator: k0, on the central meridian
        assert projector.min_scale == exact
    rng = np.random.default_rng(7)
    lons, lats = rng.uniform(-180, 180, 5000), rng.uniform(-89.9, 89.9, 5000)
    minor = np.asarray(Proj(crs).get_factors(lons, lats, errcheck=False).tissot_semiminor)
    minor = minor[np.isfinite(minor) & (minor > 0)]
    # pyproj differentiates numerically: 0.99959999 on the meridian (position_jump allows 1e-6)
    assert minor.min() >= projector.min_scale * (1 - 1e-6)
    assert projector.min_scale > 0.97  # and not so low that every move goes to the ellipsoid
    assert minor.min() < projector.min_scale * 1.01


# -- collision_risk -----------------------------------------------------------------------

def head_on(run: Run, offset: float, distance: float = 4000.0, speed: float = 10.0
            ) -> None:
    """SHIP at FAR on true course 090, OTHER ``distance`` m east and ``offset`` m north of it
    on 270, both at ``speed``: both report once."""
    run.feed(far_report(SHIP, 0, 0.0, 0.0, speed=speed, course=90.0),
             far_report(OTHER, 0, distance, offset, speed=speed, course=270.0))


def geodesic_cpa(offset: float, distance: float = 4000.0, speed: float = 10.0
                 ) -> tuple[float, float]:
    """(CPA m, TCPA s) of :func:`head_on` on the ellipsoid: each vessel sails its geodesic
    from its fix, the distance between them taken with ``Geod.inv`` every 0.1 s."""
    t = np.arange(0.0, 600.0, 0.1)
    ship, other = FAR, far(distance, offset)
    lon1, lat1, _ = GEOD.fwd(np.full_like(t, ship[0]), np.full_like(t, ship[1]),
                             np.full_like(t, 90.0), speed * KN * t)
    lon2, lat2, _ = GEOD.fwd(np.full_like(t, other[0]), np.full_like(t, other[1]),
                             np.full_like(t, 270.0), speed * KN * t)
    gaps = np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])
    i = int(gaps.argmin())
    return float(gaps[i]), float(t[i])


def test_cpa_far_from_the_central_meridian_is_the_geodesic_one() -> None:
    """300 m abeam: the alert's CPA, TCPA and distance within 1 % of the ellipsoid's
    (projected, the CPA was 316 m and the distance 4,212 m)."""
    run = Run()
    head_on(run, 300.0)
    (event,) = run.of("collision_risk")
    details = event.alert["details"]
    cpa, tcpa = geodesic_cpa(300.0)
    assert details["cpa_m"] == pytest.approx(cpa, rel=0.01)
    assert details["tcpa_s"] == pytest.approx(tcpa, rel=0.01)
    assert details["distance_m"] == pytest.approx(true_m(FAR, far(4000.0, 300.0)), rel=0.01)


def test_a_true_cpa_just_under_0_25_nm_far_away_alerts_just_over_does_not() -> None:
    """450 m true is under the 463 m limit: projected it was 474 m, and no alert."""
    run = Run()
    head_on(run, 450.0)
    (event,) = run.of("collision_risk")
    assert event.alert["details"]["cpa_m"] == pytest.approx(geodesic_cpa(450.0)[0], rel=0.01)
    run = Run()
    head_on(run, 475.0)
    assert run.of("collision_risk") == []


def test_search_m_is_true_metres_far_away() -> None:
    """4.9 km apart closing at 30 kn (TCPA 317 s) to 100 m: a neighbour within ``search_m``
    (5 km), though 5.16 km apart in projected metres."""
    run = Run()
    head_on(run, 100.0, distance=4900.0, speed=15.0)
    (event,) = run.of("collision_risk")
    assert event.alert["details"]["distance_m"] == pytest.approx(4900.0, rel=0.01)


def test_near_the_port_distances_are_as_projected() -> None:
    """Within the port's UTM zone the scale factor is taken as 1: a CPA laid out 450 m
    abeam in projected metres is reported as exactly that, as before the correction."""
    projector = Projector("EPSG:32631")
    for dx, dy in ((0.0, 0.0), (-20000.0, -20000.0), (20000.0, 20000.0)):
        lon, lat = lonlat(dx, dy)
        assert projector.scale(lon, lat) == 1.0
        assert projector.scale_at(projector.forward(lon, lat)[0], lon, lat) == 1.0
    run = Run()
    v, y = 10.0 * KN, 8000.0
    for t in (0.0, 10.0):
        x1, x2 = -2000.0 + v * t, 2000.0 - v * t
        run.feed(report(SHIP, t, x1, y, speed=10.0, course=course_along(90.0, x1, y)),
                 report(OTHER, t, x2, y + 450.0, speed=10.0,
                        course=course_along(270.0, x2, y + 450.0)))
    (event,) = run.of("collision_risk")
    assert event.alert["details"]["cpa_m"] == 450.0
    assert event.alert["details"]["distance_m"] == 4025.2  # hypot(4000, 450)


# -- encounter ----------------------------------------------------------------------------

def test_encounter_at_195_true_metres_far_away() -> None:
    """195 m apart (205 m projected) and slow for 900 s: an encounter, reported at 195 m;
    205 m apart is none."""
    run = Run()
    for t in span(0, 960, 60):
        run.feed(far_report(SHIP, t, 0.0, 0.0, speed=0.5),
                 far_report(OTHER, t, 195.0, 0.0, speed=0.5))
    (event,) = run.of("encounter")
    assert event.alert["details"]["distance_m"] == pytest.approx(195.0, rel=0.01)
    run = Run()
    for t in span(0, 960, 60):
        run.feed(far_report(SHIP, t, 0.0, 0.0, speed=0.5),
                 far_report(OTHER, t, 205.0, 0.0, speed=0.5))
    assert run.of("encounter") == []


# -- anchor_drag --------------------------------------------------------------------------

def test_anchor_drag_limit_is_true_metres_far_away() -> None:
    """Anchored 30 min in one place (limit: the 150 m floor), then 145 m off (153 m
    projected: a drag before the correction) is none, 160 m off is, reported as 160 m."""
    run = Run()
    for t in span(0, 1800, 60):
        run.feed(far_report(SHIP, t, 0.0, 0.0, status=1, speed=0.1))
    for t in (1860, 1920):
        run.feed(far_report(SHIP, t, 0.0, 145.0, status=1, speed=0.1))
    assert run.of("anchor_drag") == []
    for t in (1980, 2040):
        run.feed(far_report(SHIP, t, 0.0, 160.0, status=1, speed=0.1))
    (event,) = run.of("anchor_drag")
    assert event.alert["details"]["limit_m"] == 150.0
    assert event.alert["details"]["distance_m"] == pytest.approx(160.0, rel=0.01)


def test_anchor_swing_radius_is_true_metres_far_away() -> None:
    """Swinging 100 m north and south of its anchor: radius 100 m, limit 200 m, not 105 and
    205 (projected)."""
    run = Run()
    for i, t in enumerate(span(0, 1800, 60)):
        run.feed(far_report(SHIP, t, 0.0, 100.0 if i % 2 else -100.0, status=1, speed=0.1))
    run.feed(far_report(SHIP, 1860, 0.0, 0.0, status=1, speed=0.1))
    state = run.engine.picture.vessels[SHIP].rule_state["anchor_drag"]
    assert state["radius"] == pytest.approx(100.0, rel=0.01)
    assert state["limit"] == pytest.approx(200.0, rel=0.01)


# -- loitering ----------------------------------------------------------------------------

def test_loitering_range_is_true_metres_far_away() -> None:
    """Slow 490 m north of a berth (516 m projected) for 1200 s: loitering, at 490 m."""
    zones = far_zones(far_rect("berth_far", "berth", 0.0, 0.0, 200.0, 50.0))
    run = Run(zones)
    for t in span(0, 1200, 60):
        run.feed(far_report(SHIP, t, 100.0, 540.0, speed=0.5))
    (event,) = run.of("loitering")
    assert event.alert["zone"] == "berth_far"
    assert event.alert["details"]["distance_m"] == pytest.approx(490.0, rel=0.01)


# -- dark_vessel --------------------------------------------------------------------------

def dark_run(east: float) -> Run:
    """SHIP silent after 100 s at ``east`` m in a coverage zone ±10 km east-west, ±5 km
    north-south around FAR, while the receiver still hears another vessel."""
    run = Run(far_zones(far_rect("coverage_far", "coverage", -10000.0, -5000.0,
                                 10000.0, 5000.0)))
    run.play([far_report(SHIP, t, east, 0.0, speed=8.0, course=0.0)
              for t in span(0, 100, 10)],
             [far_report(BEACON, t, 0.0, 0.0, speed=0.0) for t in span(0, 900, 30)])
    return run


def test_dark_edge_distance_is_true_metres_far_away() -> None:
    """1,950 m from the coverage edge (2,053 m projected) is too near it to be called dark;
    2,100 m is, with the edge distance reported in true metres."""
    assert dark_run(10000.0 - 1950.0).of("dark_vessel") == []
    (event,) = dark_run(10000.0 - 2100.0).of("dark_vessel")
    assert event.alert["details"]["edge_distance_m"] == pytest.approx(2100.0, rel=0.01)


def test_dark_reappearance_distance_is_true_metres_far_away() -> None:
    run = dark_run(0.0)
    run.feed(far_report(SHIP, 901, 3000.0, 0.0, speed=8.0, course=0.0))
    end = run.of("dark_vessel", "end")[0].alert
    assert end["details"]["distance_m"] == pytest.approx(3000.0, rel=0.01)
