"""Per-report cost of the engine with every rule, at 500, 1,000 and 5,000 vessels in view.

    python bench/pairwise.py [--vessels 500,1000,5000] [--seconds 120] [--repeat 3]
                             [--layout port|density]

A synthetic port (40 km coverage, a 12 km port limit, 40 berths, two anchorages, a channel;
with ``--layout density`` the same port scaled up so the density stays that of 500 vessels)
is filled with vessels: 40 % moored in berths, 15 % at anchor and 5 % drifting at 0.8 kn
between the port limit and the anchorages (reporting every 180 s), 30 % under way inside
the port limit and 10 % under way at sea (every 10 s, 6–15 kn). Every
vessel first reports for two 180 s cycles (all in the picture and the grids, zone
memberships confirmed); then ``--seconds`` of message time are timed, report by report
through ``Engine.process``. The figure is wall time per report, best of ``--repeat`` fresh
runs, once with all rules and once with the pairwise rules (encounter, collision_risk)
off, so their share shows. The "near" columns are the mean number of grid entries a report
of that kind looks at (slow: encounter; moving: collision_risk).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geofence.engine import Engine
from geofence.projection import Projector
from geofence.rules.collision_risk import CollisionRisk
from geofence.rules.encounter import Encounter
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from ingest.report import Report

T0 = 1_767_268_800.0
PROJ = Projector("EPSG:32631")
X0, Y0 = PROJ.forward(4.0, 52.0)
KN = 1852.0 / 3600.0
PORT_HALF = 6000.0
COVER_HALF = 20000.0


def lonlat(dx: float, dy: float) -> tuple[float, float]:
    return PROJ.inverse(X0 + dx, Y0 + dy)


def rect(zone_id: str, kind: str, x0: float, y0: float, x1: float, y1: float,
         scale: float = 1.0) -> dict[str, Any]:
    x0, y0, x1, y1 = x0 * scale, y0 * scale, x1 * scale, y1 * scale
    ring = [lonlat(x0, y0), lonlat(x1, y0), lonlat(x1, y1), lonlat(x0, y1), lonlat(x0, y0)]
    return {"type": "Feature", "properties": {"id": zone_id, "kind": kind},
            "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}}


def berths() -> list[tuple[float, float, float, float]]:
    """40 berths of 250 × 60 m along four quays inside the port."""
    out = []
    for quay in range(4):
        y = -4000.0 + quay * 2000.0
        for k in range(10):
            x = -4500.0 + k * 600.0
            out.append((x, y, x + 250.0, y + 60.0))
    return out


def zones(scale: float = 1.0) -> ZoneSet:
    features = [rect("coverage", "coverage", -COVER_HALF, -COVER_HALF, COVER_HALF, COVER_HALF,
                     scale),
                rect("port", "port_limit", -PORT_HALF, -PORT_HALF, PORT_HALF, PORT_HALF, scale),
                rect("channel", "channel", -500, -PORT_HALF, 500, PORT_HALF, scale),
                rect("anch_n", "anchorage", -4000, 9000, 4000, 14000, scale),
                rect("anch_s", "anchorage", -4000, -14000, 4000, -9000, scale)]
    features += [rect(f"berth_{i}", "berth", *b, scale) for i, b in enumerate(berths())]
    return ZoneSet.from_geojson({"type": "FeatureCollection", "features": features})


class Ship:
    """One synthetic vessel: where it is, how it moves, how often it reports."""

    def __init__(self, mmsi: int, kind: str, rng: random.Random, scale: float) -> None:
        self.mmsi = mmsi
        self.kind = kind
        self.phase = rng.uniform(0, 180.0 if kind in ("moored", "anchored") else 10.0)
        self.period = 10.0 if kind in ("port", "sea") else 180.0
        self.speed = 0.0
        self.course = 0.0
        self.status = 0
        if kind == "moored":
            x0, y0, x1, y1 = rng.choice(berths())
            self.x, self.y, self.status = rng.uniform(x0, x1), rng.uniform(y0, y1), 5
        elif kind == "anchored":
            self.x = rng.uniform(-3900, 3900)
            self.y = rng.choice((1, -1)) * rng.uniform(9100, 13900)
            self.status, self.speed = 1, 0.1
        elif kind == "drifting":  # fishing or waiting outside any zone, slow
            self.x = rng.uniform(-COVER_HALF + 3000, COVER_HALF - 3000)
            self.y = rng.uniform(PORT_HALF + 500, 8500) * rng.choice((1, -1))
            self.speed, self.course = 0.8, rng.uniform(0, 360)
        else:
            half = PORT_HALF - 500 if kind == "port" else COVER_HALF - 3000
            while True:
                self.x, self.y = rng.uniform(-half, half), rng.uniform(-half, half)
                if kind == "port" or max(abs(self.x), abs(self.y)) > PORT_HALF + 500:
                    break
            self.speed, self.course = rng.uniform(6, 15), rng.uniform(0, 360)
        self.x, self.y = self.x * scale, self.y * scale

    def report(self, t: float) -> Report:
        if self.speed >= 1:
            rad = math.radians(self.course)
            dx, dy = self.speed * KN * t * math.sin(rad), self.speed * KN * t * math.cos(rad)
        else:
            dx = dy = 0.0
        lon, lat = lonlat(self.x + dx, self.y + dy)
        return Report(mmsi=self.mmsi, msg_type=1, time=T0 + t, time_source="tagblock",
                      sources=["rx1"], nmea=[], lat=lat, lon=lon, speed=self.speed,
                      course=self.course, status=self.status)


def fleet(n: int, scale: float, seed: int = 7) -> list[Ship]:
    rng = random.Random(seed)
    kinds = ["moored"] * 40 + ["anchored"] * 15 + ["drifting"] * 5 + ["port"] * 30 + [
        "sea"] * 10
    return [Ship(244_000_000 + i, kinds[i % 100], rng, scale) for i in range(n)]


def reports(ships: list[Ship], start: float, stop: float) -> list[Report]:
    out: list[Report] = []
    for ship in ships:
        t = start + ship.phase
        while t < stop:
            out.append(ship.report(t))
            t += ship.period
    out.sort(key=lambda r: r.time)
    return out


def run_once(n: int, seconds: float, pairwise: bool,
             scale: float = 1.0) -> tuple[float, int, Engine]:
    config = RulesConfig.model_validate(
        {} if pairwise else {"encounter": {"enabled": False},
                             "collision_risk": {"enabled": False}})
    engine = Engine(config, zones(scale))
    ships = fleet(n, scale)
    for rep in reports(ships, 0.0, 360.0):  # warm-up: everybody in view, zones confirmed
        engine.process(rep)
    timed = reports(ships, 360.0, 360.0 + seconds)
    process = engine.process
    start = time.perf_counter()
    for rep in timed:
        process(rep)
    return time.perf_counter() - start, len(timed), engine


def near_counts(engine: Engine) -> tuple[float, float]:
    """Mean grid entries looked at per query: encounter (slow), collision (moving)."""
    enc = next(r for r in engine.rules if isinstance(r, Encounter))
    col = next(r for r in engine.rules if isinstance(r, CollisionRisk))
    slow = []
    for m in enc.grid.members():
        found = enc.grid.get(m)
        if found is not None:
            slow.append(len(enc.grid.near(found[0], found[1], enc._reach)))
    moving = []
    for m in col.moving.members():
        entry = col.moving.get(m)
        if entry is None:
            continue
        x, y, motion = entry
        grid = col.moving if motion.watched else col.watched
        moving.append(len(grid.near(x, y, col.search_m)))
    return _mean(slow), _mean(moving)


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vessels", default="500,1000,5000")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layout", choices=("port", "density"), default="port",
                        help="port: one 40 km port for every count (density grows with the "
                             "count); density: the port scaled so 500 vessels per 40 km "
                             "square stays the density")
    args = parser.parse_args()
    print(f"{'vessels':>8} {'reports':>8} {'all rules':>11} {'no pairwise':>12} "
          f"{'pairwise':>9} {'near slow':>10} {'near moving':>12} {'alerts open':>12}")
    for n in (int(v) for v in args.vessels.split(",")):
        best_all = best_base = math.inf
        count = 0
        engine: Engine | None = None
        scale = math.sqrt(n / 500) if args.layout == "density" else 1.0
        for _ in range(args.repeat):
            spent, count, engine = run_once(n, args.seconds, True, scale)
            best_all = min(best_all, spent)
            spent, _, _ = run_once(n, args.seconds, False, scale)
            best_base = min(best_base, spent)
        assert engine is not None
        slow, moving = near_counts(engine)
        per_all, per_base = best_all / count * 1e6, best_base / count * 1e6
        print(f"{n:>8} {count:>8} {per_all:>8.1f} µs {per_base:>9.1f} µs "
              f"{per_all - per_base:>6.1f} µs {slow:>10.1f} {moving:>12.1f} "
              f"{len(engine.book):>12}")


if __name__ == "__main__":
    main()
