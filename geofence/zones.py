"""Zones from a GeoJSON FeatureCollection, projected to metres, behind shapely STRtrees.

Each Feature carries ``properties.id`` (slug), ``name``, ``kind`` and optional rule overrides
(:class:`ZoneOverrides`). Loading rejects invalid geometry, unknown kinds, missing or duplicate
ids and non-polygons with the feature id (or index) and the reason, all problems at once.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from shapely.geometry import mapping, shape

from geofence.mid import Mmsi
from geofence.projection import ProjectionError, Projector

log = logging.getLogger(__name__)
#: Zones wider or taller than this (degrees) stretch distances in one UTM zone: warned about.
_WIDEST_DEG = 6.0

KINDS: tuple[str, ...] = (
    "port_limit", "coverage", "berth", "anchorage", "restricted", "channel", "security",
)
#: Test with ``fullmatch``: ``match`` let "berth_1\n" through (``$`` matches before a final
#: newline). The pattern keeps ``^...$`` for the API's query parameters, whose (Rust) regex
#: engine reads ``$`` as the end of the text.
ZONE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: Properties that style a map (geojson.io, QGIS) and are kept without a warning.
STYLE_PROPERTIES = frozenset({
    "description", "title", "stroke", "stroke-width", "stroke-opacity", "fill", "fill-opacity",
    "marker-color", "marker-size", "marker-symbol", "color",
})


class ZoneError(ValueError):
    """Zones that cannot be loaded; ``errors`` holds one line per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


class ZoneOverrides(BaseModel):
    """Per-zone rule overrides, given as Feature properties (all optional).

    Strict: JSON ``true`` is no speed limit (it was taken as 1 kn), ``"8"`` no number.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    max_speed_kn: float | None = Field(None, gt=0, le=60, description="speeding: limit in the zone")
    speeding_hold_s: float | None = Field(None, ge=0, le=3600, description="speeding: hold time")
    loiter_s: float | None = Field(None, gt=0, le=86400, description="loitering: dwell time")
    loiter_speed_kn: float | None = Field(None, gt=0, le=10, description="loitering: speed below")
    loiter_range_m: float | None = Field(None, ge=0, le=10000,
                                         description="loitering: distance from this zone")
    allowed_mmsi: list[Mmsi] | None = Field(None, description="restricted_entry: allowed MMSIs")
    cpa_m: float | None = Field(None, gt=0, le=20000,
                                description="collision_risk: CPA limit inside this zone")
    tcpa_s: float | None = Field(None, gt=0, le=7200, description="collision_risk: TCPA limit")
    encounter_m: float | None = Field(None, gt=0, le=5000, description="encounter: distance")
    encounter_s: float | None = Field(None, gt=0, le=86400, description="encounter: duration")
    dark_moving_s: float | None = Field(None, gt=0, le=86400,
                                        description="dark_vessel: silence when moving")
    dark_stationary_s: float | None = Field(None, gt=0, le=86400,
                                            description="dark_vessel: silence when stationary")
    events: bool | None = Field(None, description="zone_entry/zone_exit on or off for this zone")


OVERRIDE_NAMES = frozenset(ZoneOverrides.model_fields)
#: Side of the grid cells that cache STRtree answers (metres).
CELL_M = 250.0
#: Cached cells kept at most (a cell is ~100 bytes plus its tuples).
MAX_CELLS = 200_000
#: Exact points remembered by :meth:`ZoneSet.near` (vessels at rest ask from the same one).
MAX_NEAR_POINTS = 20_000
#: Slack (metres) around the zones' bounds inside which :meth:`ZoneSet.ids_at` asks the grid:
#: a point farther out is in no zone, whatever the rounding of its cell.
BOUNDS_SLACK_M = 1.0


@dataclass(slots=True, eq=False)
class Zone:
    """One zone: WGS 84 geometry (rings oriented), metric geometry (prepared) and overrides."""

    id: str
    name: str
    kind: str
    geometry: Any
    metric: Any
    overrides: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    #: bounding box of ``metric`` (x0, y0, x1, y1), set with it
    box: tuple[float, float, float, float] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """An override, or ``default`` when the zone does not set it."""
        return self.overrides.get(key, default)

    def distance(self, x: float, y: float) -> float:
        """Metres from the point to the zone (0 inside)."""
        return float(self.metric.distance(point(x, y)))

    def edge_distance(self, x: float, y: float) -> float:
        """Metres from the point to the zone's boundary (inside or outside)."""
        return float(self.metric.boundary.distance(point(x, y)))

    def to_feature(self) -> dict[str, Any]:
        props = dict(self.properties)
        props.update({"id": self.id, "name": self.name, "kind": self.kind})
        return {"type": "Feature", "properties": props, "geometry": mapping(self.geometry)}


_TOO_DEEP = "not GeoJSON: nested too deeply to read"
#: Positions of all the zones together: a port's zones have hundreds, a detailed coastline
#: tens of thousands.
MAX_POSITIONS = 200_000


def _feature_label(index: int, feature: Any) -> str:
    if isinstance(feature, dict):
        props = feature.get("properties")
        if isinstance(props, dict) and isinstance(props.get("id"), str):
            return f"feature {props['id']!r}"
        if isinstance(feature.get("id"), str):
            return f"feature {feature['id']!r}"
    return f"features[{index}]"  # the JSON path: the first is features[0]


def _parse_geometry(raw: Any) -> tuple[Any, str | None]:
    """A valid, oriented (Multi)Polygon, or the reason it is not one."""
    if not isinstance(raw, dict):
        return None, "missing geometry"
    if raw.get("type") not in ("Polygon", "MultiPolygon"):
        return None, f"geometry must be Polygon or MultiPolygon, not {raw.get('type')!r}"
    if not _numeric_positions(raw.get("coordinates"), 2 if raw["type"] == "Polygon" else 3):
        return None, "malformed coordinates: a position is [lon, lat], finite numbers"
    try:
        geom = shape(raw)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        return None, f"malformed coordinates: {exc}"
    if geom.is_empty:
        return None, "empty geometry"
    lon_min, lat_min, lon_max, lat_max = geom.bounds
    if not (-180 <= lon_min <= lon_max <= 180 and -90 <= lat_min <= lat_max <= 90):
        return None, "coordinates out of range (GeoJSON is [lon, lat] in WGS 84)"
    if lon_max - lon_min > 180:
        # A box from 179.9 to -179.9 is read as the 359.8° band the other way round.
        return None, (f"spans {lon_max - lon_min:.1f}° of longitude: zones across the "
                      "antimeridian are not supported")
    if not shapely.is_valid(geom):
        return None, f"invalid geometry: {_invalid_reason(shapely.is_valid_reason(geom))}"
    return shapely.orient_polygons(geom, exterior_cw=False), None


#: GEOS's "Self-intersection[151.2 -23.8]": what, and where (x y, here lon lat).
_GEOS_REASON = re.compile(r"(?P<what>[^\[]+)\[(?P<x>\S+) (?P<y>\S+)\]")


def _invalid_reason(reason: str) -> str:
    """GEOS's reason in GeoJSON's terms, and for a crossing outline what to do about it."""
    found = _GEOS_REASON.fullmatch(reason)
    if found is None:
        return reason
    what = found["what"].strip().lower()
    said = f"{what} at [{found['x']}, {found['y']}] ([lon, lat]"
    if what in ("self-intersection", "ring self-intersection"):
        return (f"{said}; two edges cross there: put each ring's positions in order "
                "round it, or make two zones)")
    return f"{said})"


def _numeric_positions(coords: Any, depth: int) -> bool:
    """Every position ``depth`` lists down is numbers (shapely would take "151.2" too)."""
    if not isinstance(coords, list | tuple):
        return False
    if depth == 0:
        return 2 <= len(coords) <= 3 and all(
            isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c)
            for c in coords)
    return all(_numeric_positions(item, depth - 1) for item in coords)


def _rings(geometry: Any) -> Iterator[list[Any]]:
    """The rings of a (Multi)Polygon geometry as given, before shapely reads it (what is
    not a list is skipped)."""
    coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if not isinstance(coords, list):
        return
    polygons = coords if geometry.get("type") == "MultiPolygon" else [coords]
    for polygon in polygons:
        if isinstance(polygon, list):
            yield from (ring for ring in polygon if isinstance(ring, list))


def _positions_in(feature: Any) -> int:
    return sum(len(ring) for ring in _rings(
        feature.get("geometry") if isinstance(feature, dict) else None))


def _unclosed_rings(geometry: Any) -> int:
    """Rings whose last position is not their first (shapely closes them silently)."""
    return sum(1 for ring in _rings(geometry) if ring and ring[0] != ring[-1])


def _parse_feature(index: int, feature: Any, seen: set[str],
                   warnings: list[str]) -> tuple[Zone | None, list[str]]:
    label = _feature_label(index, feature)
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return None, [f"{label}: not a GeoJSON Feature"]
    props = feature.get("properties")
    if not isinstance(props, dict):
        props = {}
    errors: list[str] = []
    zone_id = props.get("id", feature.get("id"))
    if zone_id is None:
        errors.append(f"{label}: missing properties.id")
    elif not isinstance(zone_id, str) or not ZONE_ID.fullmatch(zone_id):
        errors.append(f"{label}: id {zone_id!r} is not a slug (a-z, 0-9, _ and -)")
    elif zone_id in seen:
        errors.append(f"{label}: duplicate id {zone_id!r}")
    else:
        seen.add(zone_id)  # also when the feature has other faults: its duplicates are said
    kind = props.get("kind")
    if kind not in KINDS:
        errors.append(f"{label}: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    geom, reason = _parse_geometry(feature.get("geometry"))
    if reason:
        errors.append(f"{label}: {reason}")
    elif unclosed := _unclosed_rings(feature.get("geometry")):
        warnings.append(f"{label}: {unclosed} ring(s) not closed (GeoJSON repeats the first "
                        "position at the end); closed from the last position to the first")
    overrides_raw = {k: v for k, v in props.items() if k in OVERRIDE_NAMES}
    try:
        overrides = ZoneOverrides.model_validate(overrides_raw).model_dump(exclude_none=True)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            errors.append(f"{label}: property {where}: {err['msg']}")
        overrides = {}
    for key in props:
        if key not in OVERRIDE_NAMES and key not in STYLE_PROPERTIES and key not in (
                "id", "name", "kind"):
            close = difflib.get_close_matches(key, sorted(OVERRIDE_NAMES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            warnings.append(f"{label}: unknown property {key!r} ignored{hint}")
    if errors:
        return None, errors
    assert isinstance(zone_id, str) and isinstance(kind, str)
    extra = {k: v for k, v in props.items() if k not in ("id", "name", "kind")}
    name = props.get("name")
    return Zone(id=zone_id, name=name if isinstance(name, str) and name else zone_id,
                kind=kind, geometry=geom, metric=None, overrides=overrides,
                properties=extra), []


def parse_features(obj: Any, source: str = "<zones>") -> tuple[list[Zone], list[str]]:
    """Validate a FeatureCollection; return zones (not yet projected) and warnings."""
    if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection":
        raise ZoneError([f"{source}: not a GeoJSON FeatureCollection"])
    features = obj.get("features")
    if not isinstance(features, list):
        raise ZoneError([f"{source}: FeatureCollection has no 'features' list"])
    positions = sum(_positions_in(feature) for feature in features)
    if positions > MAX_POSITIONS:
        # Counted before any geometry is built: 3 million vertices held the rules for
        # seconds (shapely builds and validates them all), and every GET /zones sent 120 MB.
        raise ZoneError([f"{source}: {positions} positions in all, over the limit of "
                         f"{MAX_POSITIONS} (simplify the outlines)"])
    zones: list[Zone] = []
    errors: list[str] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for index, feature in enumerate(features):
        zone, problems = _parse_feature(index, feature, seen, warnings)
        errors.extend(f"{source}: {p}" for p in problems)
        if zone is not None:
            zones.append(zone)
    if errors:
        raise ZoneError(errors)
    return zones, [f"{source}: {w}" for w in warnings]


_ALLOW_NAN = np.intc(0)  # shapely.HandleNaN.allow, the default of shapely.Point


def point(x: float, y: float) -> shapely.Point:
    """``shapely.Point(x, y)`` straight from the GEOS ufunc (a third of the cost)."""
    geom: shapely.Point = shapely.lib.points((x, y), _ALLOW_NAN)
    return geom


#: ``shapely.contains_xy`` of one point without its wrapper (which only re-prepares the
#: geometry); zone geometries are prepared at load. Shapely 2.2 has a scalar entry point
#: (what ``Geometry.contains`` uses) that skips numpy's ufunc machinery: ~0.07 µs a test
#: instead of ~1 µs; older versions call the ufunc (the same GEOS predicate either way).
_contains_xy = getattr(shapely.lib, "contains_xy_scalar", shapely.lib.contains_xy)
#: A zone in a grid cell: (zone, covers the whole cell, its metric bounding box).
_CellZone = tuple["Zone", bool, float, float, float, float]
#: A grid cell: (the ids when every zone covers the whole cell, else None; its zones).
_Cell = tuple[tuple[str, ...] | None, tuple[_CellZone, ...]]


class ZoneSet:
    """Zones with their metric geometry and spatial indexes; immutable once built.

    With no zones and no projection override the projector is chosen lazily, as the UTM
    zone of the first point projected.
    """

    def __init__(self, zones: Sequence[Zone] = (), *, projection: str | None = None,
                 source: str = "<zones>", warnings: Sequence[str] = ()) -> None:
        self.source = source
        self.warnings = list(warnings)
        self.zones: tuple[Zone, ...] = tuple(zones)
        self.by_id: dict[str, Zone] = {z.id: z for z in self.zones}
        self._projector: Projector | None = None
        if projection:
            self._projector = Projector(projection)
        elif self.zones:
            lon0, lat0, lon1, lat1 = shapely.total_bounds([z.geometry for z in self.zones])
            self._projector = Projector.around((lon0 + lon1) / 2, (lat0 + lat1) / 2)
            if lon1 - lon0 > _WIDEST_DEG or lat1 - lat0 > _WIDEST_DEG:
                self.warnings.append(
                    f"{source}: the zones span {lon1 - lon0:.1f}° of longitude and "
                    f"{lat1 - lat0:.1f}° of latitude, measured in metres in one UTM zone "
                    f"({self._projector.crs}), which stretches far from it (a zone "
                    "far from the others, or [lat, lon] swapped?)")
        if self._projector is not None:
            self._project_all(self._projector)
        self._build_indexes()

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_geojson(cls, obj_or_path: Any, *, projection: str | None = None,
                     log_warnings: bool = True) -> ZoneSet:
        """Load from a parsed FeatureCollection, a path, or GeoJSON text. ``log_warnings``
        False: the warnings are only kept in ``warnings`` (a load the user did not ask for,
        of zones already said, must not say them again)."""
        source = "<zones>"
        obj = obj_or_path
        if isinstance(obj_or_path, Path) or (
                isinstance(obj_or_path, str) and not obj_or_path.lstrip().startswith("{")):
            path = Path(obj_or_path)
            source = str(path)
            try:
                obj = json.loads(path.read_text(encoding="utf-8-sig"))  # an editor's BOM
            except OSError as exc:
                raise ZoneError([f"{source}: cannot read: {exc.strerror or exc}"]) from exc
            except json.JSONDecodeError as exc:
                raise ZoneError([f"{source}:{exc.lineno}: not JSON: {exc.msg}"]) from exc
            except RecursionError:
                raise ZoneError([f"{source}: {_TOO_DEEP}"]) from None
            except UnicodeDecodeError as exc:
                line = path.read_bytes()[:exc.start].count(b"\n") + 1
                raise ZoneError([f"{source}:{line}: not UTF-8 text (byte {exc.start})"]) from exc
        elif isinstance(obj_or_path, str):
            try:
                obj = json.loads(obj_or_path)
            except json.JSONDecodeError as exc:
                raise ZoneError([f"{source}:{exc.lineno}: not JSON: {exc.msg}"]) from exc
            except RecursionError:
                raise ZoneError([f"{source}: {_TOO_DEEP}"]) from None
        zones, warnings = parse_features(obj, source)
        try:
            zone_set = cls(zones, projection=projection, source=source, warnings=warnings)
        except ProjectionError as exc:
            raise ZoneError([f"{source}: {exc}"]) from exc
        for warning in zone_set.warnings if log_warnings else ():
            log.warning("%s", warning)  # a misspelt override sets no limit: say so
        return zone_set

    @classmethod
    def empty(cls, projection: str | None = None) -> ZoneSet:
        return cls((), projection=projection)

    def to_geojson(self) -> dict[str, Any]:
        return {"type": "FeatureCollection", "features": [z.to_feature() for z in self.zones]}

    def _project_all(self, projector: Projector) -> None:
        for zone in self.zones:
            zone.metric = shapely.transform(zone.geometry, projector.forward_arrays,
                                            interleaved=False)
            shapely.prepare(zone.metric)
            x0, y0, x1, y1 = (float(v) for v in zone.metric.bounds)
            zone.box = (x0, y0, x1, y1)

    def _build_indexes(self) -> None:
        # Per-report queries go through a grid of cells; each cell asks the STRtree once
        # which zones cover it entirely and which cross it, so a report costs a dict lookup
        # plus an exact test only for zones whose boundary runs through its cell.
        self._cells: dict[tuple[int, int], _Cell] = {}
        self._near_cells: dict[tuple[float, tuple[str, ...], int, int], tuple[Zone, ...]] = {}
        self._near_points: dict[tuple[float, float, float, tuple[str, ...]],
                                tuple[tuple[Zone, float], ...]] = {}
        self._tree = shapely.STRtree([z.metric for z in self.zones])
        # Points outside every zone's bounds (traffic along the coast, far from the port)
        # need no cell: with no zones the bounds are NaN and every point is outside.
        x0, y0, x1, y1 = (shapely.total_bounds([z.metric for z in self.zones])
                          if self.zones else (math.nan,) * 4)
        slack = BOUNDS_SLACK_M
        self._bounds = (float(x0) - slack, float(y0) - slack, float(x1) + slack,
                        float(y1) + slack)
        self._kinds: dict[str, tuple[Zone, ...]] = {}
        self._kind_trees: dict[str, Any] = {}
        for kind in KINDS:
            members = tuple(z for z in self.zones if z.kind == kind)
            self._kinds[kind] = members
            if members:
                self._kind_trees[kind] = shapely.STRtree([z.metric for z in members])
        coverage = self._kinds["coverage"]
        # One coverage zone is its own union (unioning it alone cost seconds on a detailed
        # outline).
        self._coverage = (None if not coverage else coverage[0].metric if len(coverage) == 1
                          else shapely.union_all([z.metric for z in coverage]))
        self._coverage_edge = None if self._coverage is None else self._coverage.boundary
        if self._coverage is not None:
            shapely.prepare(self._coverage)
            shapely.prepare(self._coverage_edge)

    # -- queries --------------------------------------------------------------------------

    @property
    def projector(self) -> Projector | None:
        return self._projector

    @property
    def crs(self) -> str | None:
        return None if self._projector is None else self._projector.crs

    def __len__(self) -> int:
        return len(self.zones)

    def __iter__(self) -> Iterator[Zone]:
        return iter(self.zones)

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self.by_id

    def project(self, lon: float, lat: float) -> tuple[float, float]:
        """WGS 84 to metres (the projector is fixed on first use when there are no zones)."""
        projector = self._projector
        if projector is None:
            projector = self._projector = Projector.around(lon, lat)
        return projector.forward(lon, lat)

    def unproject(self, x: float, y: float) -> tuple[float, float]:
        if self._projector is None:
            raise ValueError("no projection chosen yet")
        return self._projector.inverse(x, y)

    def of_kind(self, kind: str) -> tuple[Zone, ...]:
        return self._kinds.get(kind, ())

    def _cell(self, key: tuple[int, int]) -> _Cell:
        i, j = key
        box = shapely.box(i * CELL_M, j * CELL_M, (i + 1) * CELL_M, (j + 1) * CELL_M)
        out = []
        for index in sorted(self._tree.query(box, predicate="intersects").tolist()):
            zone = self.zones[index]
            assert zone.box is not None  # set with the metric geometry
            out.append((zone, bool(zone.metric.contains(box)), *zone.box))
        if len(self._cells) >= MAX_CELLS:
            self._cells.clear()
        # Most cells lie wholly inside every zone they touch: their answer is fixed.
        fixed = tuple(e[0].id for e in out) if all(e[1] for e in out) else None
        cell = self._cells[key] = (fixed, tuple(out))
        return cell

    def zones_at(self, x: float, y: float) -> list[Zone]:
        """Zones containing the point, in file order."""
        by_id = self.by_id
        return [by_id[zid] for zid in self.ids_at(x, y)]

    def ids_at(self, x: float, y: float) -> tuple[str, ...]:
        """Ids of the zones containing the point, in file order."""
        x0, y0, x1, y1 = self._bounds
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            return ()
        key = (int(x // CELL_M), int(y // CELL_M))
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cell(key)
        fixed = cell[0]
        if fixed is not None:
            return fixed
        # Outside a zone's bounding box it cannot contain the point: GEOS is asked only
        # for zones whose box holds it (written out: this runs for most reports).
        return tuple([zone.id for zone, whole, zx0, zy0, zx1, zy1 in cell[1]
                      if whole or (zx0 <= x <= zx1 and zy0 <= y <= zy1
                                   and _contains_xy(zone.metric, x, y))])

    def near(self, x: float, y: float, distance: float,
             kinds: Iterable[str] | None = None) -> list[tuple[Zone, float]]:
        """Zones within ``distance`` metres (0 inside), of the given kinds, nearest first."""
        kinds_key = tuple(KINDS if kinds is None else kinds)
        i, j = int(x // CELL_M), int(y // CELL_M)
        key = (distance, kinds_key, i, j)
        found = self._near_cells.get(key)
        if found is None:
            box = shapely.box(i * CELL_M, j * CELL_M, (i + 1) * CELL_M, (j + 1) * CELL_M)
            hits: set[str] = set()
            for kind in kinds_key:
                tree = self._kind_trees.get(kind)
                if tree is not None:
                    members = self._kinds[kind]
                    hits.update(members[k].id for k in
                                tree.query(box, predicate="dwithin", distance=distance))
            found = tuple(z for z in self.zones if z.id in hits)
            if len(self._near_cells) >= MAX_CELLS:
                self._near_cells.clear()
            self._near_cells[key] = found
        if not found:
            return []
        # A vessel at rest asks again from the very same point: answer from the last time.
        point_key = (x, y, distance, kinds_key)
        known = self._near_points.get(point_key)
        if known is not None:
            return list(known)
        here = point(x, y)
        out = [(zone, d) for zone in found
               if (d := float(zone.metric.distance(here))) <= distance]
        out.sort(key=lambda item: item[1])
        if len(self._near_points) >= MAX_NEAR_POINTS:
            self._near_points.clear()
        self._near_points[point_key] = tuple(out)
        return out

    def distance_to_kind(self, x: float, y: float, kind: str) -> tuple[Zone, float] | None:
        """The nearest zone of a kind and its distance in metres (0 inside), or None."""
        tree = self._kind_trees.get(kind)
        if tree is None:
            return None
        here = point(x, y)
        index = tree.query_nearest(here, all_matches=False)
        zone = self._kinds[kind][int(index[0])]
        return zone, float(zone.metric.distance(here))

    def coverage_edge_distance(self, x: float, y: float) -> float | None:
        """Metres from a point inside the union of coverage zones to its edge; None outside."""
        coverage, edge = self._coverage, self._coverage_edge
        if coverage is None or edge is None:
            return None
        here = point(x, y)
        if not coverage.contains(here):
            return None
        return float(edge.distance(here))
