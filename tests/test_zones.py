"""Zone loading (validation with feature ids and reasons), projection and spatial queries."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import shapely

from geofence.projection import Projector, utm_epsg
from geofence.zones import ZoneError, ZoneSet
from tests.paths import FIXTURES
from tests.rulekit import PORT_FEATURES, collection, lonlat, port_zones, rect


def errors_of(obj: Any) -> list[str]:
    with pytest.raises(ZoneError) as info:
        ZoneSet.from_geojson(obj)
    return info.value.errors


def test_loads_projects_to_utm_and_queries() -> None:
    zones = port_zones()
    assert zones.crs == "EPSG:32631" and len(zones) == 6
    berth = zones.by_id["berth_1"]
    assert berth.kind == "berth" and berth.name == "berth 1"
    assert berth.metric.area == pytest.approx(200 * 50, rel=1e-3)
    x, y = zones.project(*lonlat(100, 25))
    assert [z.id for z in zones.zones_at(x, y)] == ["coverage", "port", "berth_1"]
    near = zones.near(*zones.project(*lonlat(100, 300)), 500, ["berth", "security"])
    assert [(z.id, round(d)) for z, d in near] == [("berth_1", 250)]
    found = zones.distance_to_kind(*zones.project(*lonlat(1300, 1050)), "security")
    assert found is not None and found[0].id == "security_1" and round(found[1]) == 200
    assert zones.distance_to_kind(x, y, "anchorage") is None
    edge = zones.coverage_edge_distance(*zones.project(*lonlat(0, 18000)))
    assert edge == pytest.approx(2000, abs=1)
    assert zones.coverage_edge_distance(*zones.project(*lonlat(0, 25000))) is None
    assert zones.by_id["restricted_1"].get("allowed_mmsi") == [244000999]
    assert zones.by_id["channel_1"].get("max_speed_kn") == 6.0


def test_clockwise_rings_are_normalised_and_round_trip() -> None:
    feature = rect("b", "berth", 0, 0, 100, 100)
    ring = feature["geometry"]["coordinates"][0]
    feature["geometry"]["coordinates"][0] = ring[::-1]  # clockwise
    zones = ZoneSet.from_geojson(collection(feature))
    assert shapely.get_exterior_ring(zones.by_id["b"].geometry).is_ccw
    again = ZoneSet.from_geojson(zones.to_geojson())
    assert again.to_geojson() == zones.to_geojson()


def test_invalid_geometry_names_feature_and_reason() -> None:
    bowtie = rect("bow", "berth", 0, 0, 100, 100)
    a, b, c, d, _ = bowtie["geometry"]["coordinates"][0]
    bowtie["geometry"]["coordinates"][0] = [a, c, b, d, a]
    (error,) = errors_of(collection(bowtie))
    # Where, as GeoJSON has it ([lon, lat]), and what to do: shapely says
    # "Self-intersection[151.2 -23.8]".
    crossing = re.fullmatch(
        r"<zones>: feature 'bow': invalid geometry: self-intersection at \[(\S+), (\S+)\] "
        r"\(\[lon, lat\]; two edges cross there: put each ring's positions in order round "
        r"it, or make two zones\)", error)
    assert crossing is not None, error
    lon, lat = map(float, crossing.groups())
    (ax, ay), (bx, by) = a, c  # the crossing of the two diagonals a-c and b-d: their middle
    assert (lon, lat) == pytest.approx(((ax + bx) / 2, (ay + by) / 2), abs=1e-6)


def test_every_problem_reported_at_once() -> None:
    unknown = rect("a", "marina", 0, 0, 10, 10)
    dup1 = rect("d", "berth", 0, 0, 10, 10)
    dup2 = rect("d", "berth", 20, 20, 30, 30)
    noid = rect("x", "berth", 0, 0, 10, 10)
    del noid["properties"]["id"]
    point = {"type": "Feature", "properties": {"id": "p", "kind": "berth"},
             "geometry": {"type": "Point", "coordinates": [4.0, 52.0]}}
    bad_override = rect("s", "channel", 0, 0, 10, 10, max_speed_kn="fast")
    slug = rect("Berth 3", "berth", 0, 0, 10, 10)
    errors = errors_of(collection(unknown, dup1, dup2, noid, point, bad_override, slug))
    assert errors == [
        "<zones>: feature 'a': unknown kind 'marina' (expected one of port_limit, coverage, "
        "berth, anchorage, restricted, channel, security)",
        "<zones>: feature 'd': duplicate id 'd'",
        "<zones>: features[3]: missing properties.id",
        "<zones>: feature 'p': geometry must be Polygon or MultiPolygon, not 'Point'",
        "<zones>: feature 's': property max_speed_kn: Input should be a valid number",
        "<zones>: feature 'Berth 3': id 'Berth 3' is not a slug (a-z, 0-9, _ and -)",
    ]


def test_an_id_with_a_trailing_newline_is_no_slug() -> None:
    """``ZONE_ID.match`` took "berth_1\\n": ``$`` matches before a final newline."""
    assert errors_of(collection(rect("berth_1\n", "berth", 0, 0, 10, 10))) == [
        "<zones>: feature 'berth_1\\n': id 'berth_1\\n' is not a slug (a-z, 0-9, _ and -)"]


def test_every_bundled_zones_file_loads() -> None:
    paths = sorted(FIXTURES.glob("**/*.geojson"))
    assert paths  # fixtures/demo-port/zones.geojson
    for path in paths:
        assert len(ZoneSet.from_geojson(path)) > 0, path


def test_lat_lon_swapped_is_caught() -> None:
    feature = rect("z", "berth", 0, 0, 10, 10)
    feature["geometry"]["coordinates"][0] = [[lat, lon + 100] for lon, lat in
                                             feature["geometry"]["coordinates"][0]]
    (error,) = errors_of(collection(feature))
    assert "out of range" in error


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "zones.geojson"
    path.write_text('{"type": "FeatureCollection",\n "features": [}')
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:2: not JSON")
    path.write_text(json.dumps({"type": "Feature"}))
    assert errors_of(path) == [f"{path}: not a GeoJSON FeatureCollection"]
    assert errors_of(tmp_path / "missing.geojson")[0].startswith(
        f"{tmp_path / 'missing.geojson'}: cannot read")


def test_unknown_properties_warn_styling_does_not() -> None:
    zones = ZoneSet.from_geojson(collection(
        rect("a", "berth", 0, 0, 10, 10, max_speed_knots=5, fill="#ff0000")))
    assert zones.warnings == ["<zones>: feature 'a': unknown property 'max_speed_knots' ignored "
                              "(did you mean 'max_speed_kn'?)"]


def test_an_unclosed_ring_is_closed_with_a_warning() -> None:
    feature = rect("a", "berth", 0, 0, 100, 100)
    ring = feature["geometry"]["coordinates"][0]
    del ring[-1]
    zones = ZoneSet.from_geojson(collection(feature, rect("b", "berth", 200, 0, 300, 100)))
    assert zones.warnings == [
        "<zones>: feature 'a': 1 ring(s) not closed (GeoJSON repeats the first position at "
        "the end); closed from the last position to the first"]
    assert zones.by_id["a"].metric.area == pytest.approx(100 * 100, rel=1e-3)


def test_a_zone_across_the_antimeridian_is_refused_not_read_as_a_band() -> None:
    ring = [[179.9, -17.0], [-179.9, -17.0], [-179.9, -16.9], [179.9, -16.9], [179.9, -17.0]]
    feature = {"type": "Feature", "properties": {"id": "fiji", "kind": "berth"},
               "geometry": {"type": "Polygon", "coordinates": [ring]}}
    assert errors_of(collection(feature)) == [
        "<zones>: feature 'fiji': spans 359.8° of longitude: zones across the antimeridian "
        "are not supported"]


def test_a_duplicate_of_a_faulty_feature_and_text_coordinates_are_reported() -> None:
    faulty = rect("d", "marina", 0, 0, 10, 10)
    duplicate = rect("d", "berth", 20, 20, 30, 30)
    text = rect("t", "berth", 40, 40, 50, 50)
    text["geometry"]["coordinates"][0] = [[str(c) for c in p]
                                          for p in text["geometry"]["coordinates"][0]]
    errors = errors_of(collection(faulty, duplicate, text))
    assert errors[1:] == [
        "<zones>: feature 'd': duplicate id 'd'",
        "<zones>: feature 't': malformed coordinates: a position is [lon, lat], finite numbers"]


def test_nan_coordinates_and_json_nested_too_deeply_are_reasons_not_tracebacks(
        tmp_path: Path) -> None:
    feature = rect("n", "berth", 0, 0, 10, 10)
    feature["geometry"]["coordinates"][0][1][0] = float("nan")
    assert errors_of(collection(feature)) == [
        "<zones>: feature 'n': malformed coordinates: a position is [lon, lat], finite numbers"]
    path = tmp_path / "deep.geojson"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert errors_of(path) == [f"{path}: not GeoJSON: nested too deeply to read"]


def test_projection_override_and_empty_set() -> None:
    zones = ZoneSet.from_geojson(collection(*PORT_FEATURES), projection="EPSG:3035")
    assert zones.crs == "EPSG:3035"
    with pytest.raises(ZoneError, match="not projected"):
        ZoneSet.from_geojson(collection(*PORT_FEATURES), projection="EPSG:4326")
    with pytest.raises(ZoneError) as caught:  # feet: every threshold would be in feet
        ZoneSet.from_geojson(collection(*PORT_FEATURES), projection="EPSG:2263")
    assert caught.value.errors == ["<zones>: CRS 'EPSG:2263' measures in US survey foot, not "
                                   "metres: every distance in the config and zones is in metres"]
    empty = ZoneSet.empty()
    assert empty.crs is None and empty.zones_at(0, 0) == []
    empty.project(-70.6, -33.0)
    assert empty.crs == "EPSG:32719"


def test_utm_zone_choice_and_projector_round_trip() -> None:
    assert utm_epsg(4.0, 52.0) == "EPSG:32631"
    assert utm_epsg(-180.0, 10.0) == "EPSG:32601"
    assert utm_epsg(180.0, -10.0) == "EPSG:32760"
    proj = Projector("EPSG:32631")
    lon, lat = proj.inverse(*proj.forward(4.1, 51.9))
    assert (lon, lat) == pytest.approx((4.1, 51.9), abs=1e-9)


def test_zones_that_are_not_utf8_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "zones.geojson"
    path.write_bytes(b'{"type": "FeatureCollection",\n "features": []}\n\xff')
    with pytest.raises(ZoneError) as caught:
        ZoneSet.from_geojson(path)
    assert caught.value.errors == [f"{path}:3: not UTF-8 text (byte 47)"]


def test_a_zone_override_of_true_is_no_number() -> None:
    features = [*PORT_FEATURES]
    bad = json.loads(json.dumps(features[-1]))
    bad["properties"]["id"], bad["properties"]["max_speed_kn"] = "fast_lane", True
    with pytest.raises(ZoneError) as caught:
        ZoneSet.from_geojson(collection(*features, bad))
    assert any("fast_lane" in e and "max_speed_kn" in e for e in caught.value.errors), (
        caught.value.errors)


def test_a_zone_allowed_mmsi_of_ten_digits_names_the_zone() -> None:
    features = [*PORT_FEATURES]
    bad = json.loads(json.dumps(features[-1]))
    bad["properties"]["id"], bad["properties"]["allowed_mmsi"] = "pier_9", [2441234567]
    with pytest.raises(ZoneError) as caught:
        ZoneSet.from_geojson(collection(*features, bad))
    assert any("pier_9" in e and "allowed_mmsi" in e and "999999999" in e
               for e in caught.value.errors), caught.value.errors


def test_zones_of_millions_of_vertices_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from geofence import zones as zones_module

    monkeypatch.setattr(zones_module, "MAX_POSITIONS", 9)
    assert len(ZoneSet.from_geojson(collection(rect("a", "berth", 0, 0, 10, 10)))) == 1
    # Counted before any geometry is built (b's fault is never looked at).
    assert errors_of(collection(rect("a", "berth", 0, 0, 10, 10),
                                rect("b", "marina", 20, 0, 30, 10))) == [
        "<zones>: 10 positions in all, over the limit of 9 (simplify the outlines)"]
