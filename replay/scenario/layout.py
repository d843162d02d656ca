"""The port as the generator sees it: zones in metres, reception areas, a channel centreline.

Everything here is derived from a :class:`~geofence.zones.ZoneSet` and one seeded
``random.Random``; nothing depends on the wall clock or on iteration order of sets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.geometry import LineString, Point, Polygon

from geofence.zones import Zone, ZoneSet
from harbourwatch.config import RulesConfig

XY = tuple[float, float]

#: How far outside the coverage/port-limit zones the receivers still hear (metres).
REACH_M = (2500.0, 4000.0)


class LayoutError(ValueError):
    """Zones the generator cannot build traffic on (no coverage and no port limit)."""


def unit(dx: float, dy: float) -> XY:
    n = math.hypot(dx, dy) or 1.0
    return dx / n, dy / n


def random_point(rng: random.Random, area: Any, tries: int = 500) -> XY | None:
    """A uniformly drawn point inside ``area`` (None when the area is empty)."""
    if area is None or area.is_empty:
        return None
    x0, y0, x1, y1 = area.bounds
    for _ in range(tries):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if shapely.contains_xy(area, x, y):
            return x, y
    return None


@dataclass(slots=True)
class ReceiverArea:
    """One receiver: where it hears (metric polygon) and its base-station site."""

    name: str
    area: Any
    site: XY
    base_mmsi: int


@dataclass(slots=True)
class Layout:
    zones: ZoneSet
    config: RulesConfig
    coverage: Any
    reception: Any
    receivers: list[ReceiverArea]
    berths: list[Zone]
    anchorages: list[Zone]
    restricted: list[Zone]
    port_limit: Any
    channel: Zone | None
    centreline: list[XY]  # outer (sea) end first
    sea_dir: XY
    limits: list[tuple[Any, float]]  # (metric polygon, max_speed_kn)
    avoid: Any  # restricted/security zones, buffered: normal traffic keeps out
    water: Any  # where free-roaming traffic may go
    exclusive: dict[str, Any] = field(default_factory=dict)  # receiver -> area only it hears
    #: With ``rules.watch_area: port`` the coverage and port limit together (only vessels
    #: inside are subjects of the rules); None when the rules watch everywhere.
    watch: Any = None

    def in_watch(self, area: Any, inset_m: float = 0.0) -> Any:
        """``area`` cut to the watch area (``inset_m`` inside its edge); as is without one."""
        if self.watch is None:
            return area
        return area.intersection(self.watch.buffer(-inset_m) if inset_m else self.watch)

    # -- conversions ------------------------------------------------------------------------

    def lonlat(self, x: float, y: float) -> XY:
        return self.zones.unproject(x, y)

    # -- queries ----------------------------------------------------------------------------

    def speed_limit_at(self, x: float, y: float, margin_m: float = 150.0) -> float | None:
        """The strictest limit of any speed-limited zone within ``margin_m`` of the point."""
        best: float | None = None
        for poly, limit in self.limits:
            if shapely.dwithin(poly, Point(x, y), margin_m) and (best is None or limit < best):
                best = limit
        return best

    def speed_limits(self, xs: Sequence[float], ys: Sequence[float], margin_m: float = 150.0,
                     ) -> list[float | None]:
        """:meth:`speed_limit_at` for many points at once."""
        best: list[float | None] = [None] * len(xs)
        if not self.limits or not len(xs):
            return best
        points = shapely.points(xs, ys)
        for poly, limit in self.limits:
            near = shapely.dwithin(poly, points, margin_m)
            for i in near.nonzero()[0].tolist():
                current = best[i]
                if current is None or limit < current:
                    best[i] = limit
        return best

    def heard_by(self, x: float, y: float) -> list[str]:
        return [r.name for r in self.receivers if shapely.contains_xy(r.area, x, y)]

    def clear(self, a: XY, b: XY, avoid: Any | None = None) -> bool:
        """A straight leg from a to b that keeps out of the avoided zones."""
        avoid = self.avoid if avoid is None else avoid
        return avoid is None or not LineString([a, b]).intersects(avoid)

    def berth_point(self, rng: random.Random, berth: Zone) -> XY:
        """A mooring spot well inside the berth (GPS jitter must not leave it)."""
        inner = berth.metric.buffer(-40.0)
        point = random_point(rng, inner) if not inner.is_empty else None
        if point is None:
            rep = berth.metric.representative_point()
            point = (rep.x, rep.y)
        return point

    def channel_exit(self, target: XY) -> int:
        """Index of the centreline vertex nearest a target (where traffic leaves it)."""
        return min(range(len(self.centreline)),
                   key=lambda i: math.dist(self.centreline[i], target))

    def sea_point(self, rng: random.Random, start: XY, spread_deg: float = 35.0) -> XY:
        """A point seaward of ``start`` just outside reception."""
        angle = math.atan2(self.sea_dir[1], self.sea_dir[0]) + math.radians(
            rng.uniform(-spread_deg, spread_deg))
        d = math.cos(angle), math.sin(angle)
        dist = 1000.0
        while dist < 200_000 and shapely.contains_xy(self.reception, start[0] + d[0] * dist,
                                                     start[1] + d[1] * dist):
            dist += 1000.0
        dist += rng.uniform(500.0, 3000.0)
        return start[0] + d[0] * dist, start[1] + d[1] * dist


def _centreline(channel: Any, inner_hint: XY | None) -> list[XY]:
    """Mid-points of cross-sections along the channel's long axis, outer end first."""
    rect = channel.minimum_rotated_rectangle
    coords = list(rect.exterior.coords)[:4]
    edges = [(coords[i], coords[(i + 1) % 4]) for i in range(4)]
    a, b = max(edges[:2], key=lambda e: math.dist(*e))
    ax = unit(b[0] - a[0], b[1] - a[1])
    normal = (-ax[1], ax[0])
    length = math.dist(a, b)
    cx, cy = rect.centroid.x, rect.centroid.y
    half = max(math.dist(*edges[0]), math.dist(*edges[1])) * 2
    points: list[XY] = []
    steps = max(8, int(length // 200))
    for i in range(1, steps):
        s = -length / 2 + length * i / steps
        px, py = cx + ax[0] * s, cy + ax[1] * s
        cut = LineString([(px - normal[0] * half, py - normal[1] * half),
                          (px + normal[0] * half, py + normal[1] * half)])
        piece = channel.intersection(cut)
        parts = [g for g in getattr(piece, "geoms", [piece]) if not g.is_empty
                 and g.geom_type == "LineString"]
        if not parts:
            continue
        ref = Point(points[-1]) if points else Point(px, py)
        best = min(parts, key=lambda g: g.distance(ref)) if points else max(
            parts, key=lambda g: g.length)
        mid = best.interpolate(0.5, normalized=True)
        points.append((mid.x, mid.y))
    inner = channel.buffer(-30.0)
    points = [p for p in points if shapely.contains_xy(inner, *p)] or points
    if inner_hint is not None and points and math.dist(points[0], inner_hint) < math.dist(
            points[-1], inner_hint):
        points.reverse()
    return points


def build_layout(zones: ZoneSet, config: RulesConfig, rng: random.Random) -> Layout:
    cov_zones = zones.of_kind("coverage")
    limit_zones = zones.of_kind("port_limit")
    coverage = shapely.union_all([z.metric for z in cov_zones]) if cov_zones else None
    port_limit = shapely.union_all([z.metric for z in limit_zones]) if limit_zones else None
    if coverage is None and port_limit is None:
        raise LayoutError(f"{zones.source}: zones need a coverage or port_limit zone")
    core = shapely.union_all([g for g in (coverage, port_limit) if g is not None])
    reception = core.buffer(rng.uniform(*REACH_M))
    if coverage is None:
        coverage = core
    berths = list(zones.of_kind("berth"))
    anchorages = list(zones.of_kind("anchorage"))
    restricted = [z for z in zones if z.kind in config.restricted_entry.kinds]
    avoid = (shapely.union_all([z.metric.buffer(config.membership.exit_margin_m + 80.0)
                                for z in restricted]) if restricted else None)
    limits: list[tuple[Any, float]] = []
    for zone in zones:
        own = zone.get("max_speed_kn")
        if own is None and zone.kind in config.speeding.default_kinds:
            own = config.speeding.max_speed_kn
        if own is not None:
            limits.append((zone.metric, float(own)))
    channels = sorted(zones.of_kind("channel"), key=lambda z: -z.metric.area)
    channel = channels[0] if channels else None
    hint: XY | None = None
    if berths:
        c = shapely.union_all([b.metric for b in berths]).centroid
        hint = (c.x, c.y)
    centreline = _centreline(channel.metric, hint) if channel is not None else []
    if len(centreline) >= 2:
        outer, inner = centreline[0], centreline[-1]
        sea_dir = unit(outer[0] - inner[0], outer[1] - inner[1])
    else:
        centre = coverage.centroid
        ref = hint or (centre.x + 1.0, centre.y)
        sea_dir = unit(centre.x - ref[0], centre.y - ref[1])
        centreline = []
    water = coverage
    if avoid is not None:
        water = water.difference(avoid)
    for b in berths:
        water = water.difference(b.metric.buffer(50.0))
    receivers = _split_receivers(rng, reception, zones)
    layout = Layout(zones=zones, config=config, coverage=coverage, reception=reception,
                    receivers=receivers, berths=berths, anchorages=anchorages,
                    restricted=restricted, port_limit=port_limit, channel=channel,
                    centreline=centreline, sea_dir=sea_dir, limits=limits, avoid=avoid,
                    water=water, watch=core if config.watch_area == "port" else None)
    for r in receivers:
        others = [o.area for o in receivers if o is not r]
        layout.exclusive[r.name] = r.area.difference(shapely.union_all(others))
    return layout


def _split_receivers(rng: random.Random, reception: Any, zones: ZoneSet) -> list[ReceiverArea]:
    """Two receivers splitting the reception area along its long axis, overlapping."""
    rect = reception.minimum_rotated_rectangle
    coords = list(rect.exterior.coords)[:4]
    e0, e1 = (coords[0], coords[1]), (coords[1], coords[2])
    a, b = max((e0, e1), key=lambda e: math.dist(*e))
    ax = unit(b[0] - a[0], b[1] - a[1])
    length = math.dist(a, b)
    cx, cy = rect.centroid.x, rect.centroid.y
    split = rng.uniform(-0.1, 0.1) * length
    overlap = rng.uniform(0.2, 0.35) * length
    big = length * 4
    normal = (-ax[1], ax[0])

    def half_plane(s0: float, s1: float) -> Polygon:
        p = [(cx + ax[0] * s + normal[0] * n, cy + ax[1] * s + normal[1] * n)
             for s, n in ((s0, -big), (s1, -big), (s1, big), (s0, big))]
        return Polygon(p)

    areas = [reception.intersection(half_plane(-big, split + overlap / 2)),
             reception.intersection(half_plane(split - overlap / 2, big))]
    names = ["rx-" + rng.choice(["north", "hill", "tower", "pier", "light"]),
             "rx-" + rng.choice(["south", "mole", "quay", "fort", "point"])]
    out = []
    mid = rng.choice([503, 211, 244, 257, 232, 219])
    for i, (name, area) in enumerate(zip(names, areas, strict=True)):
        rep = area.representative_point()
        shapely.prepare(area)
        out.append(ReceiverArea(name=name, area=area, site=(rep.x, rep.y),
                                base_mmsi=mid * 10_000 + rng.randrange(1000, 9999) + i))
    return out
