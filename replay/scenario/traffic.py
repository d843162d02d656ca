"""Vessels and the ordinary traffic of a port: arrivals along the channel to a berth, ships
moored and at anchor, departures out to sea, tugs, a pilot boat and class B craft.

:class:`World` is the shared workshop: the layout, the seeded generator, the time span, the
vessels made so far and helpers that anomaly injectors use as well.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely

from geofence.zones import Zone
from replay.scenario.kinematics import (
    KN,
    STATUS_MOORED,
    STATUS_UNDER_WAY,
    XY,
    Anchored,
    Caps,
    Drift,
    Follow,
    Hold,
    Plan,
    Route,
)
from replay.scenario.layout import Layout, random_point

#: Ship MIDs (ITU) used for ordinary traffic: Australia, Panama, Liberia, Marshall Islands,
#: Singapore, Hong Kong, Malta, Bahamas, Greece, Japan, Korea, China, Netherlands, Norway...
SHIP_MIDS = (503, 351, 352, 353, 636, 538, 563, 564, 477, 215, 248, 311, 240, 431, 440, 412,
             413, 244, 257, 219, 232, 235, 533, 525)
_WORDS_A = ("NORTHERN", "CAPE", "PACIFIC", "GOLDEN", "OCEAN", "CORAL", "SOUTHERN", "GREAT",
            "BLUE", "STAR", "SILVER", "EASTERN", "ROYAL", "GLOBAL", "SEA", "IRON")
_WORDS_B = ("HORIZON", "SPIRIT", "PIONEER", "TRADER", "EXPRESS", "VOYAGER", "HARMONY", "GRACE",
            "PRIDE", "FORTUNE", "MARINER", "QUEEN", "DAWN", "WIND", "EAGLE", "CROWN")
_SMALL = ("SEA BREEZE", "WAVE RIDER", "OSPREY", "PELICAN", "MARLIN", "DOLPHIN", "TRITON",
          "SANDPIPER", "KESTREL", "SEAHAWK", "REEF RUNNER", "SALTY DOG")
_PORTS = ("SINGAPORE", "QINGDAO", "NEWCASTLE", "BRISBANE", "KOBE", "BUSAN", "PORT HEDLAND",
          "SHANGHAI", "DAMPIER", "ROTTERDAM")

Interval = tuple[float, float]


@dataclass(slots=True)
class Vessel:
    """One transmitter: identity over time, motion plan, and what it does wrong."""

    mmsi: int
    ais_class: str  # "A", "B" or "SART"
    role: str
    plan: Plan
    static: list[tuple[float, dict[str, Any]]]  # (from time, static fields), time order
    length: int
    silences: list[Interval] = field(default_factory=list)  # transponder off
    #: (from time, dx, dy): the first position report at or after the time is displaced
    glitches: list[tuple[float, float, float]] = field(default_factory=list)
    static_now: list[float] = field(default_factory=list)  # extra static messages
    rng: random.Random = field(default_factory=random.Random)

    def static_at(self, t: float) -> dict[str, Any]:
        current = self.static[0][1]
        for since, fields in self.static:
            if since <= t:
                current = fields
        return current

    def silent(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.silences)


class World:
    """The scenario under construction."""

    def __init__(self, layout: Layout, rng: random.Random, start: float, end: float) -> None:
        self.layout = layout
        self.rng = rng
        self.start, self.end = start, end
        self.vessels: list[Vessel] = []
        self.used_mmsi: set[int] = set()
        #: receiver name -> intervals when it hears nothing
        self.receiver_silences: dict[str, list[Interval]] = {
            r.name: [] for r in layout.receivers}
        #: spans injectors need heard: (plan, from, to, step)
        self.reserved: list[tuple[Plan, float, float, float]] = []
        #: (receiver, from, to): receivers that must not go silent then (whoever else hears)
        self.protected: list[tuple[str, float, float]] = []

    @property
    def duration(self) -> float:
        return self.end - self.start

    # -- identities -----------------------------------------------------------------------

    def new_mmsi(self, mid: int | None = None) -> int:
        while True:
            m = mid if mid is not None else self.rng.choice(SHIP_MIDS)
            mmsi = m * 1_000_000 + self.rng.randrange(100_000, 999_999) // 10 * 10
            if mmsi not in self.used_mmsi:
                self.used_mmsi.add(mmsi)
                return mmsi

    def ship_static(self, shiptype: int, length: int, *, small: bool = False) -> dict[str, Any]:
        r = self.rng
        name = r.choice(_SMALL) if small else f"{r.choice(_WORDS_A)} {r.choice(_WORDS_B)}"
        beam = max(3, length // 6)
        bow = int(length * r.uniform(0.75, 0.9))
        port = beam // 2
        static: dict[str, Any] = {
            "shipname": name,
            "callsign": "".join(r.choice(string.ascii_uppercase) for _ in range(2))
            + "".join(r.choice(string.digits) for _ in range(r.choice((3, 4)))),
            "shiptype": shiptype, "to_bow": bow, "to_stern": length - bow, "to_port": port,
            "to_starboard": beam - port,
        }
        if not small:
            static["imo"] = 9_000_000 + r.randrange(100_000, 899_999)
            static["draught"] = round(r.uniform(4.0, 14.0), 1)
            static["destination"] = "PORT" if r.random() < 0.5 else r.choice(_PORTS)
        return static

    def add(self, mmsi: int, ais_class: str, role: str, plan: Plan, static: dict[str, Any],
            ) -> Vessel:
        length = int(static.get("to_bow", 10)) + int(static.get("to_stern", 5))
        vessel = Vessel(mmsi=mmsi, ais_class=ais_class, role=role, plan=plan,
                        static=[(-math.inf, static)], length=length,
                        rng=random.Random(self.rng.getrandbits(64)))
        self.vessels.append(vessel)
        return vessel

    # -- reception ------------------------------------------------------------------------

    def receiver_up(self, name: str, t: float) -> bool:
        return not any(a <= t < b for a, b in self.receiver_silences[name])

    def heard(self, x: float, y: float, t: float) -> list[str]:
        return [n for n in self.layout.heard_by(x, y) if self.receiver_up(n, t)]

    def heard_span(self, plan: Plan, t0: float, t1: float, step: float = 20.0, *,
                   reserve: bool = True) -> bool:
        """Every moment of the plan in [t0, t1] is heard by at least one live receiver.

        With ``reserve`` a span that is heard is remembered: a receiver outage placed later
        must leave it heard (see :meth:`outage_fits`).
        """
        t = max(t0, plan.t0)
        while t <= min(t1, plan.t1):
            k = plan.at(t)
            if k is None or not self.heard(k.x, k.y, t):
                return False
            t += step
        if reserve:
            self.reserved.append((plan, t0, t1, step))
        return True

    def outage_fits(self, name: str, t0: float, t1: float, gap_s: float = 0.0) -> bool:
        """Would silencing receiver ``name`` in [t0, t1) leave every reserved span heard,
        and every outage placed before detectable?

        An outage must not overlap another (one inside another is no new silence; with
        every receiver off, message time stands still) and must be ``gap_s`` (the rule's
        silence) clear of the same receiver's others, so each is an alert of its own.
        """
        if any(n == name and a < t1 and b > t0 for n, a, b in self.protected):
            return False
        for other, spans in self.receiver_silences.items():
            gap = gap_s if other == name else 0.0
            if any(a - gap < t1 and b + gap > t0 for a, b in spans):
                return False
        spans = self.receiver_silences[name]
        spans.append((t0, t1))
        try:
            return all(self.heard_span(plan, max(a, t0 - step), min(b, t1 + step), step,
                                       reserve=False)
                       for plan, a, b, step in self.reserved if a < t1 and b > t0)
        finally:
            spans.pop()

    def finish_plans(self) -> None:
        """Vessels whose plan ends early stay where they are (vanishing would be dark)."""
        for vessel in self.vessels:
            plan = vessel.plan
            if plan.t1 >= self.end or vessel.role == "clone":
                continue
            k = plan.at(plan.t1)
            if k is None:
                continue
            if k.speed > 1.0:
                # Way off gently (a sudden halt would be a sudden_stop), then lie stopped.
                v = k.speed * KN
                run = v * v / (2 * 0.05)
                c = math.radians(k.course)
                ahead = (k.x + math.sin(c) * run, k.y + math.cos(c) * run)
                plan.add(Route([(k.x, k.y), ahead], plan.t1, k.speed, v_start_kn=k.speed,
                               accel=0.05, status=k.status))
                k = plan.at(plan.t1)
                assert k is not None
            moored = k.status == STATUS_MOORED
            plan.add(Hold((k.x, k.y), plan.t1, self.end + 600.0, vessel.rng,
                          status=STATUS_MOORED if moored else STATUS_UNDER_WAY,
                          heading=k.heading, jitter_m=3.0, speed_kn=0.0 if moored else 0.2))

    # -- motion helpers -------------------------------------------------------------------

    def cap(self, margin_kn: float = 1.0) -> Caps:
        """Speed caps that keep ordinary traffic under every zone's limit."""
        lay = self.layout

        def cap(xs: Sequence[float], ys: Sequence[float]) -> list[float | None]:
            return [None if limit is None else max(1.0, limit - margin_kn)
                    for limit in lay.speed_limits(xs, ys)]
        return cap

    def water_point(self, area: Any = None, *, away_from_berths_m: float = 0.0,
                    inset_m: float = 0.0) -> XY | None:
        """A point in open water (optionally inside ``area``), clear of berths by a margin."""
        region = self.layout.water if area is None else area.intersection(self.layout.water)
        if inset_m:
            region = region.intersection(self.layout.coverage.buffer(-inset_m))
        if away_from_berths_m and self.layout.berths:
            region = region.difference(shapely.union_all(
                [b.metric.buffer(away_from_berths_m) for b in self.layout.berths]))
        for z in self.layout.zones.of_kind("channel"):
            region = region.difference(z.metric.buffer(100.0))
        return random_point(self.rng, region)

    def inbound_path(self, target: XY, sea: XY | None = None, *, keep_m: float = 0.0,
                     ) -> list[XY]:
        """Sea → channel (outer end first) → the vertex nearest the target → target.

        ``keep_m`` shifts the channel part to starboard of inbound traffic (negative: to
        port, which is starboard for a departure that runs the path backwards), so inbound
        and outbound ships pass port to port rather than on one line.
        """
        lay = self.layout
        line = lay.centreline
        if not line:
            sea = sea or lay.sea_point(self.rng, target)
            return [sea, target]
        exit_i = lay.channel_exit(target)
        sea = sea or lay.sea_point(self.rng, line[0])
        lane = line[: exit_i + 1]
        if keep_m and len(lane) >= 2 and lay.channel is not None:
            edge = lay.channel.metric.boundary
            shifted = []
            for i, (x, y) in enumerate(lane):
                a, b = lane[max(i - 1, 0)], lane[min(i + 1, len(lane) - 1)]
                dx, dy = b[0] - a[0], b[1] - a[1]
                n = math.hypot(dx, dy) or 1.0
                half = edge.distance(shapely.Point(x, y))
                k = math.copysign(min(abs(keep_m), 0.4 * half), keep_m)
                shifted.append((x + dy / n * k, y - dx / n * k))
            lane = shifted
        return [sea, *lane, target]

    def usable_berths(self) -> list[Zone]:
        """Berths reachable from the channel without crossing a restricted zone."""
        out = []
        for berth in self.layout.berths:
            rep = berth.metric.representative_point()
            path = self.inbound_path((rep.x, rep.y), sea=(0.0, 0.0))
            if len(path) < 3 or self.layout.clear(path[-2], path[-1]):
                out.append(berth)
        return out


# -- ordinary traffic ---------------------------------------------------------------------


def _ship(world: World, role: str) -> tuple[int, dict[str, Any], int]:
    r = world.rng
    shiptype = {"cargo": r.choice((70, 79)), "tanker": r.choice((80, 84)),
                "passenger": 60}.get(role, 70)
    length = r.randrange(90, 290, 5)
    return world.new_mmsi(), world.ship_static(shiptype, length), length


def moored_ship(world: World, berth: Zone, t0: float, t1: float, *, role: str = "cargo",
                ) -> Vessel:
    mmsi, static, _ = _ship(world, role)
    plan = Plan()
    plan.add(Hold(world.layout.berth_point(world.rng, berth), t0, t1, world.rng))
    return world.add(mmsi, "A", role, plan, static)


def arrival(world: World, berth: Zone, t_start: float, *, role: str = "cargo") -> Vessel:
    r = world.rng
    mmsi, static, _ = _ship(world, role)
    target = world.layout.berth_point(r, berth)
    plan = Plan()
    route = Route(world.inbound_path(target, keep_m=r.uniform(50.0, 120.0)), t_start,
                  r.uniform(10.0, 14.0), cap=world.cap(r.uniform(0.8, 2.0)),
                  v_start_kn=r.uniform(9.0, 12.0), accel=r.uniform(0.03, 0.08))
    plan.add(route)
    plan.add(Hold(target, route.t1, world.end + 3600, r))
    return world.add(mmsi, "A", role, plan, static)


def departure(world: World, berth: Zone, t_leave: float, *, role: str = "cargo",
              exit_at: float | None = None) -> Vessel:
    """Leaves a berth for the sea; with ``exit_at`` it is timed to pass out of reception
    then (it may have cast off before the scenario starts)."""
    r = world.rng
    mmsi, static, _ = _ship(world, role)
    origin = world.layout.berth_point(r, berth)
    path = list(reversed(world.inbound_path(origin, keep_m=-r.uniform(50.0, 120.0))))
    speed, margin, accel = r.uniform(10.0, 14.0), r.uniform(0.8, 2.0), r.uniform(0.03, 0.08)
    route = Route(path, t_leave, speed, cap=world.cap(margin), v_end_kn=12.0, accel=accel)
    if exit_at is not None:
        gone = exit_time(world, route)
        if gone is not None:
            t_leave += exit_at - gone
            route = Route(path, t_leave, speed, cap=world.cap(margin), v_end_kn=12.0,
                          accel=accel)
    plan = Plan()
    plan.add(Hold(origin, min(world.start, t_leave) - 3600, t_leave, r))
    plan.add(route)
    return world.add(mmsi, "A", role, plan, static)


def exit_time(world: World, route: Route) -> float | None:
    """When an outbound route passes out of reception for good."""
    reception = world.layout.reception
    for i in range(len(route.xs) - 1, 0, -1):
        if shapely.contains_xy(reception, route.xs[i], route.ys[i]):
            return route.times[i] if i < len(route.xs) - 1 else None
    return None


def anchored(world: World, anchorage: Zone, t0: float, t1: float, *,
             drag: tuple[float, float, float] | None = None, point: XY | None = None,
             ) -> Vessel:
    r = world.rng
    mmsi, static, length = _ship(world, r.choice(("cargo", "tanker")))
    if point is None:
        point = random_point(r, anchorage.metric.buffer(-400.0)) or random_point(
            r, anchorage.metric)
    assert point is not None
    plan = Plan()
    plan.add(Anchored(point, length * r.uniform(0.9, 1.6), t0, t1, r, drag=drag))
    return world.add(mmsi, "A", "anchored", plan, static)


def class_b_wanderer(world: World, t0: float, t1: float) -> Vessel | None:
    """A pleasure or fishing craft moving between points of open water."""
    r = world.rng
    lay = world.layout
    points: list[XY] = []
    first = world.water_point()
    if first is None:
        return None
    points.append(first)
    for _ in range(40):
        nxt = world.water_point()
        if nxt is not None and lay.clear(points[-1], nxt) and math.dist(points[-1], nxt) > 800:
            points.append(nxt)
        if len(points) >= 6:
            break
    if len(points) < 2:
        return None
    small = r.random() < 0.6
    static = world.ship_static(37 if small else 30, r.randrange(8, 25), small=True)
    mmsi = world.new_mmsi()
    plan = Plan()
    route = Route(points, t0, r.uniform(4.0, 8.0), cap=world.cap(1.0), v_start_kn=3.0,
                  v_end_kn=0.0, accel=0.2)
    plan.add(route)
    if route.t1 < t1:
        plan.add(Hold(route.end, route.t1, t1, r, status=15, jitter_m=5.0, speed_kn=0.3))
    return world.add(mmsi, "B", "pleasure" if small else "fishing", plan, static)


def tug_escort(world: World, base: Zone, ship: Vessel) -> Vessel | None:
    """A tug from its base joins an arriving ship for the inner channel and stays alongside."""
    r = world.rng
    route = ship.plan.phases[0]
    if not isinstance(route, Route) or len(route.xs) < 20:
        return None
    meet_i = int(len(route.xs) * r.uniform(0.7, 0.85))
    meet_t = route.time_at_index(meet_i)
    home = world.layout.berth_point(r, base)
    mmsi = world.new_mmsi(503)
    static = world.ship_static(52, r.randrange(25, 35), small=True)
    static["shipname"] = "SMIT " + r.choice(("KESTREL", "ORCA", "WILLET", "TERN", "ROSS"))
    plan = Plan()
    meet = (route.xs[meet_i], route.ys[meet_i])
    out = Route([home, meet], 0.0, 9.0, cap=world.cap(1.0), v_end_kn=route.v[meet_i] / KN,
                accel=0.2)
    lead = out.t1 - out.t0
    out = Route([home, meet], meet_t - lead, 9.0, cap=world.cap(1.0),
                v_end_kn=route.v[meet_i] / KN, accel=0.2)
    plan.add(Hold(home, world.start - 3600, out.t0, r))
    plan.add(out)
    side = r.choice((-1.0, 1.0)) * r.uniform(30.0, 45.0)
    follow_end = min(ship.plan.phases[0].t1 + 600.0, world.end + 600)
    plan.add(Follow(ship.plan, (side, side * 0.3), out.t1, follow_end))
    if follow_end < world.end:
        k = ship.plan.at(follow_end)
        assert k is not None
        back = Route([(k.x + side, k.y + side * 0.3), home], follow_end, 8.0, cap=world.cap(1.0),
                     v_start_kn=0.5, accel=0.2)
        plan.add(back)
        plan.add(Hold(home, back.t1, world.end + 3600, r))
    return world.add(mmsi, "A", "tug", plan, static)


def pilot_boat(world: World, base: Zone, ship: Vessel) -> Vessel | None:
    """The pilot boat runs out to an arriving ship at the channel entrance and back."""
    r = world.rng
    route = ship.plan.phases[0]
    if not isinstance(route, Route) or not world.layout.centreline:
        return None
    entrance = world.layout.centreline[0]
    i = min(range(len(route.xs)), key=lambda j: math.dist((route.xs[j], route.ys[j]), entrance))
    meet_t = route.time_at_index(i)
    meet = (route.xs[i] + 60.0, route.ys[i] + 60.0)
    home = world.layout.berth_point(r, base)
    path = [*list(reversed(world.inbound_path(home)))[:-1], meet]
    speed = r.uniform(16.0, 22.0)
    probe = Route(path, 0.0, speed, cap=world.cap(1.0), v_end_kn=8.0, accel=0.4)
    out = Route(path, meet_t - probe.t1 - 120.0, speed, cap=world.cap(1.0), v_end_kn=8.0,
                accel=0.4)
    mmsi = world.new_mmsi(503)
    static = world.ship_static(50, r.randrange(14, 20), small=True)
    static["shipname"] = "PILOT " + r.choice(("HAWK", "EAGLE", "FALCON", "OSPREY"))
    plan = Plan()
    plan.add(Hold(home, world.start - 3600, out.t0, r))
    plan.add(out)
    wait = Drift(meet, 80.0, 2.5, out.t1, out.t1 + 240.0)
    plan.add(wait)
    k = wait.at(wait.t1)
    back = Route([(k.x, k.y), *path[::-1][1:]], wait.t1, speed, cap=world.cap(1.0),
                 v_start_kn=2.5, accel=0.4)
    plan.add(back)
    plan.add(Hold(home, back.t1, world.end + 3600, r))
    return world.add(mmsi, "A", "pilot", plan, static)


def ordinary_traffic(world: World, *, scale: float = 1.0) -> dict[str, list[Vessel]]:
    """The day's normal business, varied by the seed; returns vessels by role for controls.

    ``scale`` (0-1] thins the counts (at least one of each kind stays).
    """
    r = world.rng

    def count(lo: int, hi: int, *, per_span: bool = False) -> int:
        # Movements grow with the length of the scenario (counts are per 90 minutes).
        factor = max(1.0, world.duration / 5400.0) if per_span else 1.0
        return max(1, round(r.randint(lo, hi) * scale * factor))

    lay = world.layout
    out: dict[str, list[Vessel]] = {"moored": [], "arrival": [], "departure": [],
                                    "anchored": [], "class_b": [], "tug": [], "pilot": []}
    berths = world.usable_berths() if lay.centreline else list(lay.berths)
    span = world.duration
    if berths:
        for _ in range(count(2, 5)):
            out["moored"].append(moored_ship(world, r.choice(berths), world.start - 7200,
                                             world.end + 3600))
        for _ in range(count(2, 4, per_span=True)):
            t = world.start + r.uniform(-0.3, 0.45) * span
            out["arrival"].append(arrival(world, r.choice(berths), t))
        for i in range(count(1, 3, per_span=True)):
            t = world.start + r.uniform(0.05, 0.6) * span
            # The first one is seen off: it passes out of reception during the scenario.
            exit_at = world.start + r.uniform(0.1, 0.5) * span if i == 0 else None
            out["departure"].append(departure(world, r.choice(berths), t, exit_at=exit_at))
    for anchorage in lay.anchorages:
        for _ in range(count(1, 3)):
            out["anchored"].append(anchored(world, anchorage, world.start - 7200,
                                            world.end + 3600))
    for _ in range(count(2, 5, per_span=True)):
        v = class_b_wanderer(world, world.start + r.uniform(-600, 0.5 * span), world.end + 600)
        if v is not None:
            out["class_b"].append(v)
    if berths and out["arrival"]:
        base = r.choice(berths)
        ship = r.choice(out["arrival"])
        tug = tug_escort(world, base, ship)
        if tug is not None:
            out["tug"].append(tug)
        pilot = pilot_boat(world, base, r.choice(out["arrival"]))
        if pilot is not None:
            out["pilot"].append(pilot)
    return out


def drift_plan(world: World, centre: XY, t_arrive: float, dwell: float, *,
               approach_from: XY | None = None, offset: XY = (0.0, 0.0),
               radius: float = 60.0, speed_kn: float = 0.8, phase: float = 0.0,
               leave_to: XY | None = None, approach_kn: float = 6.0) -> Plan:
    """Approach a spot, drift there slowly for ``dwell`` seconds, then leave (optional)."""
    r = world.rng
    plan = Plan()
    cx, cy = centre[0] + offset[0], centre[1] + offset[1]
    start_on_circle = (cx + radius * math.cos(phase), cy + radius * math.sin(phase))
    if approach_from is not None:
        probe = Route([approach_from, start_on_circle], 0.0, approach_kn, cap=world.cap(1.0),
                      v_start_kn=approach_kn, v_end_kn=speed_kn, accel=0.1)
        plan.add(Route([approach_from, start_on_circle], t_arrive - probe.t1, approach_kn,
                       cap=world.cap(1.0), v_start_kn=approach_kn, v_end_kn=speed_kn,
                       accel=0.1))
    drift = Drift(centre, radius, speed_kn, t_arrive, t_arrive + dwell, phase=phase,
                  offset=offset)
    plan.add(drift)
    if leave_to is not None:
        k = drift.at(drift.t1)
        plan.add(Route([(k.x, k.y), leave_to], drift.t1, approach_kn, cap=world.cap(1.0),
                       v_start_kn=speed_kn, accel=0.1))
    del r
    return plan
