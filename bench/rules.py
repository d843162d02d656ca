"""What the picture and all rules add per report, at 1,000 vessels and 200 zones.

    python bench/rules.py [--vessels 1000] [--zones 200] [--messages 100000] [--repeat N]
                          [--profile] [--floor] [--instructions] [--alerts-out FILE.jsonl]

Synthetic, seeded and the same every run: 200 zones of every kind (one port limit, one
coverage area, berths, anchorages, channels with speed limits, restricted zones with allowed
MMSIs, security zones) in a 12 × 10 km port, and 1,000 vessels (class A and B; moored, at
anchor and under way, bouncing inside the port) reporting at their class's intervals, with
their static reports (types 5 and 24). Every report is encoded with ``pyais.encode_dict``
and carries an NMEA tag block with its message time, so the ingest path is the real one.

Lines are built first; then, in the same run:

- *ingest*: ``Ingestor.feed("rx1", line, None)`` for every line, then ``flush()``;
- *ingest + rules*: the production path, ``Pipeline.feed_lines`` with no sinks, in runs of
  ``READ_AHEAD_LINES`` lines as a replay or a busy live feed gives them (each run decoded,
  then its reports through ``Engine.process`` and the timers on message time), then
  ``finish()``.

Both are the best of ``--repeat`` runs, with the garbage collector tuned as the service tunes
it after start-up (``harbourwatch.gctune.tune_gc``); figures are µs per decoded message and
the share the picture and rules add to ingest's cost. Target (issue 3): at most +30 %.
``--floor`` also times the least any pure-Python engine can do per report, on the same decoded
reports: look the vessel up, store five fields, call 16 rules that each read two attributes
(:func:`python_floor`); its share of ingest is how much of the +30 % budget Python's call and
attribute overhead alone takes, before any projection, zone test or rule logic.
``--instructions`` counts machine instructions instead of timing (``valgrind --tool=callgrind``
must be installed): each stage runs once in its own process under callgrind, and each stage's
count is its run's total less the run that stops one stage earlier, so start-up and building
the corpus cancel out. Counts repeat to the instruction whatever else the host is doing, where
timings on a shared host wander; use ``--messages 20000`` to keep it to a few minutes.
``--profile`` prints a cProfile of the rules part alone (the same reports, already decoded,
through ``Pipeline.handle_report``). ``--alerts-out`` writes every alert transition of one run as a
JSON line (sorted keys, as ``harbourwatch replay --alerts-out``): compare two versions of the
engine with ``cmp`` to show an optimisation changes no alert.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import heapq
import json
import math
import os
import pstats
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyais

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geofence.engine import Engine  # noqa: E402
from geofence.zones import ZoneSet  # noqa: E402
from harbourwatch.config import RulesConfig  # noqa: E402
from harbourwatch.gctune import tune_gc  # noqa: E402
from harbourwatch.pipeline import READ_AHEAD_LINES, Pipeline  # noqa: E402
from ingest.ingestor import Ingestor  # noqa: E402
from ingest.nmea import xor_checksum  # noqa: E402
from ingest.report import Report  # noqa: E402

LAT0, LON0 = 51.90, 4.10  # south-west corner of the port
PORT_W, PORT_H = 12_000.0, 10_000.0  # metres
EDGE = 300.0  # vessels keep this far inside the port limit
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(LAT0 + PORT_H / 2 / M_PER_DEG_LAT))
T0 = 1_700_000_000  # message time of the first report
KN = 1852.0 / 3600.0  # m/s per knot
Fields = dict[str, str | int | float | bytes | bool]  # what pyais.encode_dict takes
MIDS = (244, 211, 636, 538, 257, 219, 265, 235)

#: (kind, width m, height m) of the zones after the port limit and coverage, in turn.
ZONE_KINDS: tuple[tuple[str, float, float], ...] = (
    ("berth", 60.0, 300.0), ("anchorage", 1200.0, 1200.0), ("channel", 250.0, 3000.0),
    ("restricted", 300.0, 300.0), ("security", 200.0, 200.0),
)


def lonlat(x: float, y: float) -> tuple[float, float]:
    return LON0 + x / M_PER_DEG_LON, LAT0 + y / M_PER_DEG_LAT


def rect(x: float, y: float, w: float, h: float) -> list[list[list[float]]]:
    corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)]
    return [[list(lonlat(cx, cy)) for cx, cy in corners]]


def make_zones(count: int, rng: random.Random) -> dict[str, Any]:
    """A FeatureCollection: port limit, coverage, then ``count - 2`` zones of every kind."""
    features: list[dict[str, Any]] = [
        _feature("port", "port_limit", rect(0, 0, PORT_W, PORT_H)),
        _feature("coverage", "coverage", rect(-4000, -4000, PORT_W + 8000, PORT_H + 8000)),
    ]
    for index in range(count - 2):
        kind, w, h = ZONE_KINDS[index % len(ZONE_KINDS)]
        if rng.random() < 0.5:
            w, h = h, w
        x = rng.uniform(0, PORT_W - w)
        y = rng.uniform(0, PORT_H - h)
        props: dict[str, Any] = {}
        if kind == "channel":
            props["max_speed_kn"] = 8.0
        elif kind == "restricted":
            props["allowed_mmsi"] = [244_000_000 + index]
        elif kind == "berth":
            props["loiter_s"] = 1800.0
        features.append(_feature(f"{kind}-{index}", kind, rect(x, y, w, h), props))
    return {"type": "FeatureCollection", "features": features}


def _feature(zid: str, kind: str, rings: list[list[list[float]]],
             props: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {"id": zid, "name": zid, "kind": kind, **(props or {})}}


@dataclass(slots=True)
class Ship:
    mmsi: int
    class_b: bool
    x: float
    y: float
    speed: float  # knots
    course: float  # degrees
    status: int  # 0 under way, 1 at anchor, 5 moored
    last: float = 0.0
    next_static: float = 0.0

    @property
    def interval(self) -> float:
        """ITU-R M.1371 reporting intervals, simplified."""
        if self.class_b:
            return 30.0 if self.speed > 2 else 180.0
        return 10.0 if self.speed > 2 else 60.0  # moored class A: once a minute (not 3)

    def advance(self, t: float) -> None:
        dist = self.speed * KN * (t - self.last)
        self.last = t
        if dist == 0:
            return
        rad = math.radians(self.course)
        x, y = self.x + dist * math.sin(rad), self.y + dist * math.cos(rad)
        # Turn back before the port limit: traffic stays inside the port.
        if not EDGE <= x <= PORT_W - EDGE:
            self.course = (360.0 - self.course) % 360.0
            x = min(max(x, EDGE), PORT_W - EDGE)
        if not EDGE <= y <= PORT_H - EDGE:
            self.course = (180.0 - self.course) % 360.0
            y = min(max(y, EDGE), PORT_H - EDGE)
        self.x, self.y = x, y


def make_ships(count: int, rng: random.Random) -> list[Ship]:
    ships: list[Ship] = []
    for index in range(count):
        mmsi = MIDS[index % len(MIDS)] * 1_000_000 + 100_000 + index
        roll = rng.random()
        speed, status = ((0.0, 5) if roll < 0.3 else (0.2, 1) if roll < 0.5
                         else (round(rng.uniform(3, 14), 1), 0))
        ships.append(Ship(mmsi, rng.random() < 0.2, rng.uniform(EDGE, PORT_W - EDGE),
                          rng.uniform(EDGE, PORT_H - EDGE), speed, round(rng.uniform(0, 359), 1),
                          status))
    return ships


def tagged(sentences: list[str], t: int) -> list[bytes]:
    """Sentences with an NMEA 4.10 tag block carrying the message time on the first."""
    body = f"c:{t}".encode()
    head = b"\\" + body + b"*%02X\\" % xor_checksum(body)
    return [head + sentences[0].encode()] + [s.encode() for s in sentences[1:]]


def encode(ship: Ship, t: int, seq: int) -> list[bytes]:
    lon, lat = lonlat(ship.x, ship.y)
    if t >= ship.next_static:
        ship.next_static = t + 360.0
        if ship.class_b:
            static_a: Fields = {"type": 24, "mmsi": ship.mmsi, "partno": 0,
                                "shipname": f"B{ship.mmsi}"}
            static_b: Fields = {"type": 24, "mmsi": ship.mmsi, "partno": 1, "shiptype": 37,
                                "callsign": f"C{ship.mmsi % 100000}", "to_bow": 8,
                                "to_stern": 4, "to_port": 2, "to_starboard": 2}
            return (tagged(pyais.encode_dict(static_a, sentence_type="VDM"), t)
                    + tagged(pyais.encode_dict(static_b, sentence_type="VDM"), t))
        static: Fields = {"type": 5, "mmsi": ship.mmsi, "imo": 9_000_000 + ship.mmsi % 1_000_000,
                  "shipname": f"SHIP {ship.mmsi}", "callsign": f"C{ship.mmsi % 100000}",
                  "shiptype": 70, "to_bow": 120, "to_stern": 30, "to_port": 12,
                  "to_starboard": 12, "draught": 8.5, "destination": "BENCH"}
        return tagged(pyais.encode_dict(static, sentence_type="VDM", seq_id=seq % 10), t)
    fields: Fields = {
        "type": 18 if ship.class_b else 1, "mmsi": ship.mmsi, "lat": lat, "lon": lon,
        "speed": ship.speed, "course": ship.course, "heading": round(ship.course) % 360,
        "second": t % 60, "accuracy": 1}
    if not ship.class_b:
        fields["status"] = ship.status
    return tagged(pyais.encode_dict(fields, sentence_type="VDM"), t)


def make_lines(ships: list[Ship], messages: int, rng: random.Random) -> list[bytes]:
    """``messages`` reports in message-time order, each ship at its own interval."""
    queue = [(T0 + rng.uniform(0, s.interval), i) for i, s in enumerate(ships)]
    heapq.heapify(queue)
    for ship in ships:
        ship.last = T0
        ship.next_static = T0 + rng.uniform(0, 360)
    lines: list[bytes] = []
    for seq in range(messages):
        t, index = heapq.heappop(queue)
        ship = ships[index]
        ship.advance(t)
        lines.extend(encode(ship, int(t), seq))
        heapq.heappush(queue, (t + ship.interval * rng.uniform(0.9, 1.1), index))
    return lines


# -- timing -------------------------------------------------------------------------------

def run_ingest(lines: Sequence[bytes]) -> int:
    ingestor = Ingestor()
    feed = ingestor.feed
    count = 0
    for line in lines:
        count += len(feed("rx1", line, None))
    return count + len(ingestor.flush())


def new_pipeline(zones: ZoneSet) -> Pipeline:
    return Pipeline(Ingestor(), Engine(RulesConfig(), zones), [])


def feed_in_runs(pipeline: Pipeline, lines: Sequence[bytes]) -> None:
    """As a replay or a busy live feed gives them: runs of ``READ_AHEAD_LINES`` lines."""
    feed_lines = pipeline.feed_lines
    for start in range(0, len(lines), READ_AHEAD_LINES):
        feed_lines([("rx1", line, None) for line in lines[start:start + READ_AHEAD_LINES]])
    pipeline.finish()


def run_full(lines: Sequence[bytes], zones: ZoneSet) -> Pipeline:
    pipeline = new_pipeline(zones)
    feed_in_runs(pipeline, lines)
    return pipeline


def best_of(repeat: int, job: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        tune_gc()
        start = time.perf_counter()
        job()
        best = min(best, time.perf_counter() - start)
        gc.unfreeze()
    return best


class _FloorVessel:
    __slots__ = ("course", "last_time", "lat", "lon", "mmsi", "speed")

    def __init__(self, mmsi: int) -> None:
        self.mmsi = mmsi
        self.lat: float | None = None
        self.lon: float | None = None
        self.speed: float | None = None
        self.course: float | None = None
        self.last_time = 0.0


class _FloorRule:
    """A rule that does nothing but what every rule does: be called and look at the report."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = 0

    def on_report(self, vessel: _FloorVessel, report: Report) -> None:
        if vessel.speed is not None and report.time > 0.0:
            self.seen += 1


def decode_all(lines: Sequence[bytes]) -> list[Report]:
    ingestor = Ingestor()
    reports: list[Report] = []
    for line in lines:
        reports.extend(ingestor.feed("rx1", line, None))
    return reports + ingestor.flush()


def python_floor(reports: Sequence[Report], rules: int = 16) -> int:
    """The least a picture and ``rules`` rules in Python do per report (see ``--floor``)."""
    vessels: dict[int, _FloorVessel] = {}
    called = [_FloorRule() for _ in range(rules)]
    for report in reports:
        vessel = vessels.get(report.mmsi)
        if vessel is None:
            vessel = vessels[report.mmsi] = _FloorVessel(report.mmsi)
        vessel.lat, vessel.lon = report.lat, report.lon
        vessel.speed, vessel.course = report.speed, report.course
        vessel.last_time = report.time
        for rule in called:
            rule.on_report(vessel, report)
    return len(vessels)


#: What ``--stage`` runs after building the corpus, and which stage's run each is measured from.
STAGES: dict[str, str | None] = {"corpus": None, "ingest": "corpus", "full": "ingest",
                                 "decode": "corpus", "floor": "decode"}


def run_stage(stage: str, lines: Sequence[bytes], zones: ZoneSet) -> None:
    """One stage, once, for a count of its instructions (see ``--instructions``)."""
    tune_gc()
    if stage == "ingest":
        run_ingest(lines)
    elif stage == "full":
        run_full(lines, zones)
    elif stage in ("decode", "floor"):
        reports = decode_all(lines)
        if stage == "floor":
            python_floor(reports)


def callgrind_total(argv: Sequence[str], stage: str) -> int:
    """Instructions of one ``--stage`` run under callgrind (its own process, nothing kept)."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, str(Path(__file__).resolve()), *argv, "--stage", stage]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no count for --stage {stage}:\n{done.stderr}")
    return int(found.group(1))


def count_instructions(argv: Sequence[str]) -> None:
    """Per stage: its instructions, and ingest+rules and the floor as a share of ingest."""
    # Counts do not depend on what else runs, so the stages share the cores.
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        counted = {stage: pool.submit(callgrind_total, argv, stage) for stage in STAGES}
    totals = {stage: job.result() for stage, job in counted.items()}
    own = {stage: totals[stage] - totals[before] for stage, before in STAGES.items() if before}
    print("machine instructions (callgrind), each stage less the run before it:")
    print(f"  ingest alone       {own['ingest'] / 1e6:9,.0f} M")
    print(f"  picture and rules  {own['full'] / 1e6:9,.0f} M   "
          f"{own['full'] / own['ingest'] * 100:+.0f} % of ingest")
    print(f"  python floor       {own['floor'] / 1e6:9,.0f} M   "
          f"{own['floor'] / own['ingest'] * 100:+.0f} % of ingest")


def profile_rules(lines: Sequence[bytes], zones: ZoneSet, top: int = 30) -> None:
    """cProfile of the rules alone: decoded reports through ``handle_report``."""
    reports = decode_all(lines)
    pipeline = new_pipeline(zones)
    profiler = cProfile.Profile()
    profiler.enable()
    for report in reports:
        pipeline.handle_report(report)
    profiler.disable()
    print(f"\ncProfile of Pipeline.handle_report over {len(reports):,} decoded reports "
          f"(the picture and rules only; top {top} by own time):")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vessels", type=int, default=1000)
    parser.add_argument("--zones", type=int, default=200)
    parser.add_argument("--messages", type=int, default=100_000,
                        help="reports to generate (static reports span 1-2 lines)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure, best kept")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of the picture and rules")
    parser.add_argument("--floor", action="store_true",
                        help="also time the least a pure-Python engine does per report")
    parser.add_argument("--instructions", action="store_true",
                        help="count machine instructions per stage with valgrind's callgrind "
                             "instead of timing")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--alerts-out", type=Path, metavar="FILE.jsonl",
                        help="write every alert transition of one run as a JSON line "
                             "(to check that an optimisation changes no alert)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    zones = ZoneSet.from_geojson(make_zones(args.zones, rng))
    lines = make_lines(make_ships(args.vessels, rng), args.messages, rng)
    if args.stage is not None:
        run_stage(args.stage, lines, zones)
        return 0
    if args.instructions:
        corpus = ["--vessels", str(args.vessels), "--zones", str(args.zones),
                  "--messages", str(args.messages), "--seed", str(args.seed)]
        count_instructions(corpus)
        return 0
    probe = run_full(lines, zones)
    if args.alerts_out is not None:
        write_alerts(lines, zones, args.alerts_out)
    engine = probe.engine
    assert isinstance(engine, Engine)
    stats = engine.stats()
    print(f"python {sys.version.split()[0]}, best of {args.repeat}")
    print(f"{len(zones)} zones, {stats['vessels']:,} vessels, {len(lines):,} lines, "
          f"{probe.reports:,} reports over {lines_span(lines):.0f} s of message time; "
          f"{probe.alert_events:,} alert transitions, {stats['open_alerts']} open at the end")
    messages = probe.reports
    ingest_s = best_of(args.repeat, lambda: run_ingest(lines))
    full_s = best_of(args.repeat, lambda: run_full(lines, zones))
    ingest_us = ingest_s / messages * 1e6
    full_us = full_s / messages * 1e6
    added = (full_s - ingest_s) / ingest_s * 100
    print(f"  ingest alone       {ingest_s:7.3f} s  {ingest_us:7.1f} µs/msg  "
          f"{messages / ingest_s:>9,.0f} msg/s")
    print(f"  ingest + rules     {full_s:7.3f} s  {full_us:7.1f} µs/msg  "
          f"{messages / full_s:>9,.0f} msg/s")
    print(f"  picture and rules  {full_us - ingest_us:+7.1f} µs/msg   {added:+.0f} % of ingest")
    print("target (<= +30 %):", "met" if added <= 30 else "NOT met")
    if args.floor:
        reports = decode_all(lines)
        floor_s = best_of(args.repeat, lambda: python_floor(reports))
        print(f"  python floor       {floor_s / messages * 1e6:+7.1f} µs/msg   "
              f"{floor_s / ingest_s * 100:+.0f} % of ingest (a vessel lookup, five stores, "
              "16 rule calls)")
    if args.profile:
        profile_rules(lines, zones)
    return 0


def write_alerts(lines: Sequence[bytes], zones: ZoneSet, path: Path) -> None:
    """Every alert transition of one full run, as ``--alerts-out`` of a replay writes it."""
    with path.open("w", encoding="utf-8") as out:
        pipeline = new_pipeline(zones)
        pipeline.sinks.append(_LineSink(out))
        feed_in_runs(pipeline, lines)


class _LineSink:
    """A minimal synchronous sink: alert transitions as sorted-key JSON lines."""

    def __init__(self, out: Any) -> None:
        self.out = out

    async def start(self) -> None:
        return None

    def on_report(self, report: Report) -> None:
        return None

    def on_alert(self, event: Any) -> None:
        record = dict(event.alert)
        record["transition"] = str(event.transition)
        self.out.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")

    async def stop(self) -> None:
        return None


def lines_span(lines: Sequence[bytes]) -> float:
    """Message time from the first to the last tag block."""
    times = [int(line[3:line.index(b"*")]) for line in (lines[0], lines[-1])
             if line.startswith(b"\\c:")]
    return times[-1] - times[0] if len(times) == 2 else 0.0


if __name__ == "__main__":
    sys.exit(main())
