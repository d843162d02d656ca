"""Anomaly injectors, one small function per rule, in a registry.

Each injector adds the vessels (or receiver outages) that should make its rule fire and
returns :class:`~replay.scenario.truth.Expectation` items: anomalies carry the window in which
the alert must start, controls (no window) name cases that must *not* alert, side effects (no
window, ``side_effect``) alerts the injection raises besides its own. Windows follow
the rule definitions in DESIGN.md with the thresholds of the ``RulesConfig`` in use; for
rules whose alert may be stamped either at the start of the condition or once it has held,
the window covers both. An injector raises :class:`Skip` when the zones or the time span
leave no room for it; the reason goes into the truth file.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.geometry import LineString

from geofence.rules.source_silent import SourceSilent
from geofence.zones import Zone
from harbourwatch.config import RulesConfig
from replay.scenario.kinematics import (
    KN,
    STATUS_SART,
    STATUS_UNDER_WAY,
    XY,
    Anchored,
    Drift,
    Follow,
    Hold,
    Plan,
    Route,
)
from replay.scenario.layout import Layout, random_point, unit
from replay.scenario.traffic import Vessel, World, drift_plan, exit_time
from replay.scenario.truth import Expectation

TRIES = 80
#: How far inside the watch area (``watch_area: port``) injected tracks keep.
WATCH_INSET_M = 300.0


class Skip(Exception):
    """The injector cannot place its anomaly in this port or time span."""


@dataclass(slots=True)
class Context:
    config: RulesConfig
    rules: frozenset[str]
    traffic: dict[str, list[Vessel]]
    notes: dict[str, Any] = field(default_factory=dict)


Injector = Callable[[World, Context], list[Expectation]]
#: (rule, injector) in run order: receiver outages first, so later injectors can avoid them.
INJECTORS: list[tuple[str, Injector]] = []


def injector(rule: str) -> Callable[[Injector], Injector]:
    def register(fn: Injector) -> Injector:
        INJECTORS.append((rule, fn))
        return fn
    return register


# -- helpers ------------------------------------------------------------------------------


def _open_water(world: World, *, inset: float = 0.0, berth_clear: float = 700.0,
                channel_clear: float = 200.0) -> Any:
    """Water at least ``inset`` inside coverage, away from berths and channels."""
    lay = world.layout
    region = lay.water
    if inset:
        region = region.intersection(lay.coverage.buffer(-inset))
    parts = [b.metric.buffer(berth_clear) for b in lay.berths]
    parts += [z.metric.buffer(channel_clear) for z in lay.zones.of_kind("channel")]
    parts += [z.metric.buffer(100.0) for z in lay.anchorages]
    if parts:
        region = region.difference(shapely.union_all(parts))
    return region


def _time(world: World, lo: float, hi: float, need_after: float) -> float:
    """A time in [start + lo*span, start + hi*span] leaving ``need_after`` before the end."""
    a = world.start + lo * world.duration
    b = min(world.start + hi * world.duration, world.end - need_after)
    if b <= a:
        raise Skip(f"needs {need_after / 60:.0f} min after {lo:.0%} of the scenario")
    return world.rng.uniform(a, b)


def _small_static(world: World, shiptype: int, length: int) -> dict[str, Any]:
    return world.ship_static(shiptype, length, small=length < 40)


def _rename(world: World, static: dict[str, Any]) -> dict[str, Any]:
    new = dict(static)
    r = world.rng
    old = static["shipname"]
    while new["shipname"] == old:
        new["shipname"] = world.ship_static(70, 100)["shipname"]
    if r.random() < 0.5:
        new["callsign"] = "".join(r.choice(string.ascii_uppercase) for _ in range(2)) + "".join(
            r.choice(string.digits) for _ in range(4))
    return new


def _heard_or_skip(world: World, plan: Plan, t0: float, t1: float, what: str) -> None:
    if not world.heard_span(plan, t0, t1):
        raise Skip(f"{what}: not heard throughout")


# -- current rules ----------------------------------------------------------------------------


@injector("dark_vessel")
def dark_vessel(world: World, ctx: Context) -> list[Expectation]:
    cfg = ctx.config.dark_vessel
    r = world.rng
    for _ in range(TRIES):
        radius = r.uniform(700.0, 1500.0)
        region = _open_water(world, inset=cfg.edge_m + radius + 600.0,
                             berth_clear=800.0 + radius, channel_clear=300.0 + radius)
        centre = random_point(r, region)
        if centre is None:
            raise Skip("no open water 2 km inside coverage")
        gap = cfg.moving_s * r.uniform(1.4, 2.2)
        ts = _time(world, 0.15, 0.75, gap + 400.0)
        speed = r.uniform(5.0, 8.0)
        plan = Plan()
        plan.add(Drift(centre, radius, speed, world.start - 600, world.end + 600,
                       phase=r.uniform(0, 6.28)))
        if not world.heard_span(plan, ts - 600.0, ts + gap + 120.0):
            continue
        # The rule trusts the receivers that heard the vessel before it fell silent: they
        # must stay up throughout, whoever else would hear it meanwhile.
        k = plan.at(ts)
        assert k is not None
        for name in world.layout.heard_by(k.x, k.y):
            world.protected.append((name, ts - cfg.receiver_window_s - 60.0, ts + gap + 120.0))
        mmsi = world.new_mmsi()
        v = world.add(mmsi, "A", "fishing", plan, world.ship_static(30, r.randrange(20, 45)))
        v.silences.append((ts, ts + gap))
        return [Expectation("dark_vessel", mmsi, f"AIS off for {gap:.0f} s at {speed:.1f} kn",
                            window=(ts - 30.0, ts + 2.0))]
    raise Skip("no place heard throughout the gap")


@injector("loitering")
def loitering(world: World, ctx: Context) -> list[Expectation]:
    cfg = ctx.config.loitering
    r = world.rng
    lay = world.layout
    if not lay.berths:
        raise Skip("no berth")
    out: list[Expectation] = []
    for _ in range(TRIES):
        berth = r.choice(lay.berths)
        reach = berth.get("loiter_range_m", cfg.range_m)
        radius = r.uniform(30.0, 70.0)
        others = shapely.union_all([b.metric.buffer(radius + 80.0) for b in lay.berths])
        ring = berth.metric.buffer(reach - radius - 120.0).difference(others)
        ring = ring.intersection(lay.water)
        for z in lay.zones.of_kind("channel"):
            ring = ring.difference(z.metric.buffer(radius + 50.0))
        centre = random_point(r, ring)
        if centre is None:
            continue
        dwell = berth.get("loiter_s", cfg.loiter_s) + r.uniform(300.0, 900.0)
        t_arrive = _time(world, 0.1, 0.55, dwell + 300.0)
        origin = world.water_point(away_from_berths_m=reach + 300.0)
        leave = world.water_point(away_from_berths_m=reach + 300.0)
        if origin is None or leave is None or not lay.clear(origin, centre) or not lay.clear(
                centre, leave):
            continue
        speed = r.uniform(0.4, min(1.5, cfg.speed_kn - 0.4))
        plan = drift_plan(world, centre, t_arrive, dwell, approach_from=origin, radius=radius,
                          speed_kn=speed, leave_to=leave, phase=r.uniform(0, 6.28))
        if not world.heard_span(plan, t_arrive - 120.0, t_arrive + dwell):
            continue
        mmsi = world.new_mmsi()
        world.add(mmsi, "A", "loiterer", plan, world.ship_static(r.choice((30, 31, 70)),
                                                                 r.randrange(20, 90, 5)))
        out.append(Expectation("loitering", mmsi,
                               f"{speed:.1f} kn for {dwell:.0f} s near {berth.id}",
                               window=(t_arrive - 120.0, t_arrive + 60.0)))
        break
    else:
        raise Skip("no spot near a berth that is heard")
    for v in ctx.traffic.get("moored", [])[:2]:
        out.append(Expectation("loitering", v.mmsi, "moored in its berth for hours"))
    return out


@injector("speeding")
def speeding(world: World, ctx: Context) -> list[Expectation]:
    r = world.rng
    lay = world.layout
    if not lay.centreline or lay.channel is None:
        raise Skip("no channel")
    limit = lay.speed_limit_at(*lay.centreline[len(lay.centreline) // 2], margin_m=0.0)
    if limit is None:
        raise Skip("the channel has no speed limit")
    berths = world.usable_berths()
    target = lay.berth_point(r, r.choice(berths)) if berths else lay.centreline[-1]
    speed = limit + r.uniform(3.0, 8.0)
    fast_b = r.random() < 0.4
    path = world.inbound_path(target)
    probe = Route(path, 0.0, speed, v_start_kn=speed, accel=0.15)
    limited = lay.in_watch(shapely.union_all(
        [poly for poly, lim in lay.limits if lim < speed - 1.0]), WATCH_INSET_M)
    t_rel = probe.first_inside(limited)
    if t_rel is None:
        raise Skip("the channel has no speed limit below the speeder's speed" + (
            "" if lay.watch is None else " inside the watch area (watch_area: port)"))
    t_in = _time(world, 0.1, 0.7, 600.0)
    plan = Plan()
    plan.add(Route(path, t_in - t_rel, speed, v_start_kn=speed, accel=0.15))
    plan.add(Hold(target, plan.t1, world.end + 3600, r))
    _heard_or_skip(world, plan, t_in, t_in + 180.0, "speeding")
    mmsi = world.new_mmsi()
    if fast_b:
        world.add(mmsi, "B", "speedboat", plan, world.ship_static(37, r.randrange(8, 15)))
    else:
        world.add(mmsi, "A", "fast_craft", plan, world.ship_static(40, r.randrange(30, 60)))
    hold = ctx.config.speeding.hold_s
    return [Expectation("speeding", mmsi, f"{speed:.1f} kn where the limit is {limit:g} kn",
                        window=(t_in - 10.0, t_in + hold + (90.0 if fast_b else 40.0)))]


def _visit(world: World, zone: Zone, t_in_target: float) -> tuple[Plan, float]:
    """In from open water, a few slow circles inside the zone (≥ 3 kn), and out again."""
    r = world.rng
    lay = world.layout
    inscribed = shapely.maximum_inscribed_circle(zone.metric).length
    radius = max(10.0, min(120.0, inscribed * 0.4))
    # The circle stays inside: a second entry would be a second alert.
    inner = zone.metric.buffer(-(radius + 25.0))
    middle = random_point(r, inner if not inner.is_empty else zone.metric)
    if middle is None:
        raise Skip(f"{zone.id} has no room inside")
    centre_pt = (middle[0] + radius, middle[1])
    avoid_others = None
    others = [z.metric.buffer(100.0) for z in lay.restricted if z is not zone]
    if others:
        avoid_others = shapely.union_all(others)
    for _ in range(TRIES):
        origin = world.water_point(away_from_berths_m=0.0)
        if origin is None or math.dist(origin, centre_pt) < 800.0:
            continue
        if avoid_others is not None and LineString([origin, centre_pt]).intersects(avoid_others):
            continue
        speed = r.uniform(3.5, 6.0)
        probe = Route([origin, centre_pt], 0.0, speed, cap=world.cap(1.0), v_start_kn=speed,
                      v_end_kn=3.5, accel=0.1)
        t_rel = probe.first_inside(zone.metric)
        if t_rel is None:
            continue
        t0 = t_in_target - t_rel
        plan = Plan()
        approach = Route([origin, centre_pt], t0, speed, cap=world.cap(1.0), v_start_kn=speed,
                         v_end_kn=3.5, accel=0.1)
        plan.add(approach)
        dwell = r.uniform(300.0, 700.0)
        circle = Drift((centre_pt[0] - radius, centre_pt[1]), radius, 3.5, approach.t1,
                       approach.t1 + dwell)
        plan.add(circle)
        k = circle.at(circle.t1)
        plan.add(Route([(k.x, k.y), origin], circle.t1, speed, cap=world.cap(1.0),
                       v_start_kn=3.5, v_end_kn=speed, accel=0.1))
        if world.heard_span(plan, t_in_target - 60.0, approach.t1 + dwell):
            return plan, t_in_target
    raise Skip(f"no heard approach to {zone.id}")


@injector("restricted_entry")
def restricted_entry(world: World, ctx: Context) -> list[Expectation]:
    r = world.rng
    cfg = ctx.config.restricted_entry
    zones = world.layout.restricted
    if not zones:
        raise Skip("no restricted or security zone")
    if world.layout.watch is not None:
        zones = [z for z in zones if world.layout.watch.contains(z.metric)]
        if not zones:
            raise Skip("no restricted or security zone inside the watch area "
                       "(watch_area: port: coverage and port limit)")
    zone = r.choice(zones)
    allowed = set(cfg.allowed_mmsi) | {m for z in zones for m in z.get("allowed_mmsi") or ()}
    t_in = _time(world, 0.1, 0.5, 1500.0)
    plan, _ = _visit(world, zone, t_in)
    mmsi = world.new_mmsi()
    while mmsi in allowed:
        mmsi = world.new_mmsi()
    world.add(mmsi, "A", "intruder", plan, world.ship_static(r.choice((30, 37, 52, 70)),
                                                             r.randrange(12, 80)))
    out = [Expectation("restricted_entry", mmsi, f"not allowed in {zone.id}",
                       window=(t_in - 5.0, t_in + 60.0))]
    # Control: a vessel that may be there, in a zone (maybe another one) that allows it.
    permits = [(z, sorted(set(cfg.allowed_mmsi) | set(z.get("allowed_mmsi") or ())))
               for z in zones]
    permits = [(z, ok) for z, ok in permits if ok]
    if permits:
        ok_zone, oks = r.choice(permits)
        ok = oks[0]
        t_ok = _time(world, 0.05, 0.8, 1500.0)
        plan_ok, _ = _visit(world, ok_zone, t_ok)
        world.used_mmsi.add(ok)
        world.add(ok, "A", "allowed", plan_ok, world.ship_static(33, r.randrange(40, 90)))
        out.append(Expectation("restricted_entry", ok, f"allowed in {ok_zone.id}"))
    return out


@injector("emergency_device")
def emergency_device(world: World, ctx: Context) -> list[Expectation]:
    r = world.rng
    for _ in range(TRIES):
        start = world.water_point(away_from_berths_m=900.0)
        if start is None:
            raise Skip("no open water")
        heading = r.uniform(0, 2 * math.pi)
        end = (start[0] + math.sin(heading) * 2000.0, start[1] + math.cos(heading) * 2000.0)
        if not world.layout.clear(start, end):
            continue
        t_on = _time(world, 0.05, 0.8, 300.0)
        plan = Plan()
        plan.add(Route([start, end], t_on, r.uniform(0.5, 1.5), v_start_kn=1.0, accel=0.01,
                       status=STATUS_SART))
        if not world.heard_span(plan, t_on, t_on + 300.0):
            continue
        mmsi = 970_000_000 + r.randrange(1000, 999_999)
        world.used_mmsi.add(mmsi)
        v = world.add(mmsi, "SART", "sart", plan, {"shipname": "SART ACTIVE", "shiptype": 0})
        v.static = [(-math.inf, {"shipname": "SART ACTIVE", "shiptype": 0})]
        return [Expectation("emergency_device", mmsi, "AIS-SART switched on",
                            window=(t_on - 1.0, t_on + 5.0))]
    raise Skip("no heard place for a SART")


# -- issue 4 rules (used only when registered) ------------------------------------------------


def _mover(world: World, t0: float, t1: float, speed: float, *, inset: float = 500.0,
           ) -> Plan | None:
    """Open water, straight legs at ``speed`` (under every limit), from t0 to past t1."""
    r = world.rng
    lay = world.layout
    region = _open_water(world, inset=inset, berth_clear=700.0)
    pts = [random_point(r, region)]
    if pts[0] is None:
        return None
    for _ in range(60):
        nxt = random_point(r, region)
        last = pts[-1]
        if nxt is not None and last is not None and math.dist(last, nxt) > 1500 and lay.clear(
                last, nxt):
            pts.append(nxt)
            probe = Route([p for p in pts if p is not None], t0, speed, v_start_kn=speed,
                          cap=world.cap(1.0), accel=0.1)
            if probe.t1 > t1:
                plan = Plan()
                plan.add(probe)
                return plan
    return None


@injector("position_jump")
def position_jump(world: World, ctx: Context) -> list[Expectation]:
    r = world.rng
    for _ in range(TRIES):
        tj = _time(world, 0.1, 0.85, 120.0)
        plan = _mover(world, tj - r.uniform(300.0, 900.0), tj + 300.0, r.uniform(6.0, 10.0))
        if plan is None or not world.heard_span(plan, tj - 60.0, tj + 60.0):
            continue
        mmsi = world.new_mmsi()
        v = world.add(mmsi, "A", "cargo", plan, world.ship_static(70, r.randrange(80, 200)))
        d = r.uniform(3000.0, 8000.0)
        a = r.uniform(0, 2 * math.pi)
        v.glitches.append((tj, d * math.cos(a), d * math.sin(a)))
        return [Expectation("position_jump", mmsi, f"one fix {d:.0f} m off",
                            window=(tj - 1.0, tj + 15.0))]
    raise Skip("no heard track")


@injector("mmsi_conflict")
def mmsi_conflict(world: World, ctx: Context) -> list[Expectation]:
    r = world.rng
    cfg = ctx.config.mmsi_conflict
    for _ in range(TRIES):
        both = r.uniform(cfg.window_s, 2 * cfg.window_s) + 300.0
        t0 = _time(world, 0.1, 0.7, both + 60.0)
        a = _mover(world, t0 - 600.0, t0 + both, r.uniform(5.0, 9.0))
        b = _mover(world, t0, t0 + both, r.uniform(5.0, 9.0))
        if a is None or b is None:
            continue
        ka, kb = a.at(t0), b.at(t0)
        if ka is None or kb is None or math.hypot(ka.x - kb.x, ka.y - kb.y) < 3000.0:
            continue
        if not (world.heard_span(a, t0, t0 + both) and world.heard_span(b, t0, t0 + both)):
            continue
        b.phases[-1].t1 = min(b.phases[-1].t1, t0 + both)
        mmsi = world.new_mmsi()
        world.add(mmsi, "A", "cargo", a, world.ship_static(70, r.randrange(80, 200)))
        world.add(mmsi, "A", "clone", b, world.ship_static(30, r.randrange(20, 40)))
        # The rule sees one vessel leaping between the two, with two identities.
        return [Expectation("mmsi_conflict", mmsi, "two transmitters share the MMSI",
                            window=(t0 - 5.0, t0 + cfg.window_s + 60.0)),
                Expectation("position_jump", mmsi, "the MMSI's fixes leap between the two "
                            "transmitters", side_effect=True),
                Expectation("identity_change", mmsi, "the two transmitters send different "
                            "static data", side_effect=True)]
    raise Skip("no two heard tracks far apart")


@injector("invalid_mmsi")
def invalid_mmsi(world: World, ctx: Context) -> list[Expectation]:
    r = world.rng
    for _ in range(TRIES):
        t_on = _time(world, 0.05, 0.8, 900.0)
        plan = _mover(world, t_on, world.end, r.uniform(4.0, 7.0))
        if plan is None or not world.heard_span(plan, t_on, t_on + 600.0):
            continue
        # MIDs are 201-775; 1xx is never allocated (111 is SAR aircraft: avoided).
        mid = r.choice((100, 105, 123, 150, 170, 199))
        mmsi = mid * 1_000_000 + r.randrange(100_000, 999_999)
        world.used_mmsi.add(mmsi)
        cls = "B" if r.random() < 0.5 else "A"
        world.add(mmsi, cls, "misconfigured", plan, world.ship_static(37, r.randrange(8, 30)))
        return [Expectation("invalid_mmsi", mmsi, f"unallocated MID {mid}",
                            window=(t_on - 1.0, t_on + 400.0))]
    raise Skip("no heard track")


@injector("identity_change")
def identity_change(world: World, ctx: Context) -> list[Expectation]:
    r = world.rng
    # A ship renamed once already is left alone: a second change (one per round) would go
    # out of time order into its static data, and the truth's old name would be wrong.
    moored = [v for v in ctx.traffic.get("moored", []) if len(v.static) == 1]
    tc = _time(world, 0.3, 0.8, 120.0)
    if moored and r.random() < 0.5:
        v = moored[-1]
    else:
        plan = _mover(world, world.start - 60.0, world.end, r.uniform(4.0, 7.0))
        if plan is None:
            raise Skip("no track")
        mmsi = world.new_mmsi()
        v = world.add(mmsi, r.choice(("A", "B")), "renamed", plan,
                      world.ship_static(r.choice((30, 37, 70)), r.randrange(10, 60)))
    k = v.plan.at(tc)
    first = max(world.start, v.plan.t0) + 30.0
    if k is None or not world.heard_span(v.plan, tc - 2.0, tc + 2.0, 1.0) or not (
            world.heard_span(v.plan, first - 2.0, first + 2.0, 1.0)):
        raise Skip("the vessel is not heard when it changes")
    old = v.static[-1][1]
    new = _rename(world, old)
    v.static.append((tc, new))
    v.static_now += [first, tc]
    return [Expectation("identity_change", v.mmsi,
                        f"{old['shipname']} -> {new['shipname']}",
                        window=(tc - 1.0, tc + 5.0))]


@injector("encounter")
def encounter(world: World, ctx: Context) -> list[Expectation]:
    cfg = ctx.config.encounter
    r = world.rng
    out: list[Expectation] = []
    exempt = set(ctx.config.exempt_shiptypes)
    place: XY | None = None
    for _ in range(TRIES):
        centre = random_point(r, _open_water(world, inset=300.0, berth_clear=900.0))
        if centre is None:
            raise Skip("no open water")
        dwell = cfg.duration_s + r.uniform(300.0, 900.0)
        t_meet = _time(world, 0.1, 0.6, dwell + 200.0)
        # Close enough that a class B partner's 3-minute-old fix (it may have gone half
        # round its small drift circle since) is still within the distance.
        sep = r.uniform(0.2, 0.45) * cfg.distance_m
        phase = r.uniform(0, 6.28)
        speed = r.uniform(0.3, min(1.0, cfg.speed_kn - 0.3))
        plans = []
        for off in ((0.0, 0.0), (sep, 0.0)):
            origin = world.water_point(away_from_berths_m=900.0)
            leave = world.water_point(away_from_berths_m=900.0)
            if origin is None or leave is None or math.dist(origin, centre) < 1500 or not (
                    world.layout.clear(origin, centre) and world.layout.clear(centre, leave)):
                break
            plans.append(drift_plan(world, centre, t_meet, dwell, approach_from=origin,
                                    offset=off, radius=25.0, speed_kn=speed, phase=phase,
                                    leave_to=leave))
        if len(plans) < 2 or not all(world.heard_span(p, t_meet, t_meet + dwell)
                                     for p in plans):
            continue
        types = [t for t in (30, 70, 80, 37) if t not in exempt] or [70]
        a = world.new_mmsi()
        b = world.new_mmsi()
        world.add(a, "A", "meeting", plans[0], world.ship_static(r.choice(types), 60))
        world.add(b, r.choice(("A", "B")), "meeting", plans[1],
                  world.ship_static(r.choice(types), 20))
        out.append(Expectation("encounter", a, f"{sep:.0f} m apart at {speed:.1f} kn",
                               window=(t_meet - 180.0, t_meet + cfg.duration_s + 180.0),
                               other_mmsi=b))
        place = centre
        break
    else:
        raise Skip("no heard meeting place")
    out += _tug_alongside(world, ctx, place)
    return out


def _tug_alongside(world: World, ctx: Context, avoid: XY) -> list[Expectation]:
    """Control: a tug made fast alongside a ship stopped in open water (tugs are exempt)."""
    r = world.rng
    exempt = ctx.config.exempt_shiptypes
    tug_type = 52 if 52 in exempt else (exempt[0] if exempt else None)
    if tug_type is None:
        return []
    for _ in range(TRIES):
        centre = random_point(r, _open_water(world, inset=300.0, berth_clear=900.0))
        if centre is None or math.dist(centre, avoid) < 1500.0:
            continue
        dwell = ctx.config.encounter.duration_s + r.uniform(300.0, 900.0)
        t0 = _time(world, 0.05, 0.7, dwell + 100.0)
        ship_plan = Plan()
        ship_plan.add(Drift(centre, 50.0, r.uniform(0.3, 1.0), t0, t0 + dwell))
        if not world.heard_span(ship_plan, t0, t0 + dwell):
            continue
        tug_plan = Plan()
        tug_plan.add(Follow(ship_plan, (35.0, 10.0), t0, t0 + dwell))
        ship = world.new_mmsi()
        tug = world.new_mmsi(503)
        world.add(ship, "A", "assisted", ship_plan, world.ship_static(70, r.randrange(90, 200)))
        world.add(tug, "A", "tug", tug_plan, world.ship_static(tug_type, 30))
        return [Expectation("encounter", ship, "tug alongside a stopped ship", other_mmsi=tug)]
    return []


@injector("collision_risk")
def collision_risk(world: World, ctx: Context) -> list[Expectation]:
    cfg = ctx.config.collision_risk
    r = world.rng
    lay = world.layout
    close_zones = [z.metric for z in lay.zones if z.get("cpa_m") is not None]
    # Both tracks well within reception and, with watch_area: port, inside the watch area
    # (coverage and port limit): a vessel outside it is no subject of the rules.
    heard = lay.in_watch(lay.reception.buffer(-800.0), WATCH_INSET_M)
    if lay.port_limit is not None:
        allowed = heard.difference(lay.port_limit.buffer(300.0))
        if close_zones:
            allowed = allowed.union(shapely.union_all(close_zones).intersection(heard))
    else:
        allowed = heard
    if allowed.is_empty:
        raise Skip(_collision_room(lay) + (", and no zone sets its own cpa_m"
                                           if lay.port_limit is not None else ""))
    edge = lay.port_limit.boundary if lay.port_limit is not None else None
    before, after = cfg.tcpa_s + r.uniform(60.0, 180.0), 240.0
    for _ in range(TRIES * 3):
        meet = random_point(r, allowed)
        if meet is None:
            break
        v1, v2 = r.uniform(8.0, 13.0), r.uniform(8.0, 13.0)
        a1 = r.uniform(0, 2 * math.pi)
        if edge is not None:
            # Along the port limit, where the band outside it is long enough.
            at = edge.project(shapely.Point(meet))
            p, q = edge.interpolate(at - 50.0), edge.interpolate(at + 50.0)
            a1 = math.atan2(q.x - p.x, q.y - p.y) + math.radians(r.uniform(-15.0, 15.0))
            a1 += math.pi if r.random() < 0.5 else 0.0
        a2 = a1 + math.pi + math.radians(r.uniform(-110.0, 110.0))
        d1, d2 = (math.sin(a1), math.cos(a1)), (math.sin(a2), math.cos(a2))
        cpa = r.uniform(0.1, 0.5) * cfg.cpa_m
        side = unit(-d1[1], d1[0])
        m2 = (meet[0] + side[0] * cpa, meet[1] + side[1] * cpa)
        legs = []
        for m, d, v in ((meet, d1, v1), (m2, d2, v2)):
            s = v * KN
            legs.append([(m[0] - d[0] * s * before, m[1] - d[1] * s * before),
                         (m[0] + d[0] * s * after, m[1] + d[1] * s * after)])
        # The rule judges a pair when one of the two is outside the port limit.
        if not (allowed.contains(LineString(legs[0])) and heard.contains(LineString(legs[1]))):
            continue
        if not all(lay.clear(*leg) for leg in legs):
            continue
        if any(LineString(leg).intersects(poly) for leg in legs for poly, _ in lay.limits
               if poly is not lay.port_limit and not poly.equals(lay.port_limit or poly)):
            continue
        tm = _time(world, 0.1, 0.8, after + 60.0)
        if tm - before < world.start:
            continue
        plans = []
        for leg, v in zip(legs, (v1, v2), strict=True):
            plan = Plan()
            plan.add(Route(leg, tm - before, v, v_start_kn=v, v_end_kn=v, accel=0.1))
            plans.append(plan)
        if not all(world.heard_span(p, tm - before, tm) for p in plans):
            continue
        a, b = world.new_mmsi(), world.new_mmsi()
        world.add(a, "A", "crossing", plans[0],
                  world.ship_static(_not_exempt(ctx, 70), r.randrange(100, 250)))
        world.add(b, "A", "crossing", plans[1],
                  world.ship_static(_not_exempt(ctx, 80), r.randrange(100, 250)))
        return [Expectation("collision_risk", a, f"CPA {cpa:.0f} m at {v1:.0f}/{v2:.0f} kn",
                            window=(tm - before - 60.0, tm - 30.0), other_mmsi=b)]
    raise Skip(f"no room for two crossing tracks: {_collision_room(lay)}")


def _collision_room(lay: Layout) -> str:
    """Where collision_risk would have to be planted, for a Skip's reason."""
    where = "" if lay.port_limit is None else " outside the port limit (where the rule applies)"
    if lay.watch is None:
        return f"no water{where} within reception"
    return f"no water{where} inside the watch area (watch_area: port: coverage and port limit)"


def _not_exempt(ctx: Context, shiptype: int) -> int:
    """``shiptype``, or a merchant type the config does not exempt from the traffic rules."""
    exempt = set(ctx.config.exempt_shiptypes)
    return next((t for t in (shiptype, 70, 79, 80, 89, 60) if t not in exempt), shiptype)


@injector("anchor_drag")
def anchor_drag(world: World, ctx: Context) -> list[Expectation]:
    cfg = ctx.config.anchor_drag
    r = world.rng
    if not world.layout.anchorages:
        raise Skip("no anchorage")
    out: list[Expectation] = []
    for _ in range(TRIES):
        anchorage = r.choice(world.layout.anchorages)
        speed = r.uniform(1.0, 1.6) * KN
        t_d = world.start + cfg.learn_s + r.uniform(240.0, 600.0)
        length = r.randrange(90, 200, 5)
        radius = length * r.uniform(0.9, 1.3)
        limit = max(radius + cfg.margin_m, cfg.min_radius_m)
        worst = (radius + limit + 60.0) / speed + (cfg.reports + 1) * 180.0 + 60.0
        if t_d + worst > world.end:
            raise Skip("needs the learning time, a drag and two reports outside")
        point = random_point(r, world.layout.in_watch(anchorage.metric).buffer(
            -(radius + 600.0)))
        if point is None:
            continue
        a = r.uniform(0, 2 * math.pi)
        plan = Plan()
        plan.add(Anchored(point, radius, world.start - 300.0, world.end + 600.0, r,
                          drag=(t_d, speed * math.sin(a), speed * math.cos(a))))
        # Heard while dragging; a receiver outage during the learning half hour only
        # thins the reports the circle is learned from.
        if not world.heard_span(plan, t_d - 60.0, t_d + worst, step=60.0):
            continue
        mmsi = world.new_mmsi()
        world.add(mmsi, "A", "anchored", plan, world.ship_static(70, length))
        out.append(Expectation("anchor_drag", mmsi, f"anchor drags at {speed / KN:.1f} kn",
                               window=(t_d, t_d + worst)))
        break
    else:
        raise Skip("no heard anchoring spot")
    for v in ctx.traffic.get("anchored", [])[:2]:
        out.append(Expectation("anchor_drag", v.mmsi, "swinging at anchor, holding"))
    return out


@injector("sudden_stop")
def sudden_stop(world: World, ctx: Context) -> list[Expectation]:
    cfg = ctx.config.sudden_stop
    r = world.rng
    region = _open_water(world, inset=300.0, berth_clear=900.0)
    for _ in range(TRIES):
        a, b = random_point(r, region), random_point(r, region)
        if a is None or b is None or math.dist(a, b) < 2500 or not world.layout.clear(a, b):
            continue
        if any(LineString([a, b]).intersects(poly) for poly, _ in world.layout.limits
               if not poly.equals(world.layout.port_limit or poly)):
            continue
        speed = max(cfg.from_kn + r.uniform(2.0, 5.0), 9.0)
        d = unit(b[0] - a[0], b[1] - a[1])
        stop_len = (speed * KN) ** 2 / (2 * 0.5)
        brake_at = (b[0] - d[0] * stop_len, b[1] - d[1] * stop_len)
        ts = _time(world, 0.1, 0.8, cfg.hold_s * 6 + 300.0)
        cruise = Route([a, brake_at], 0.0, speed, v_start_kn=speed, v_end_kn=speed, accel=0.1)
        plan = Plan()
        cruise = Route([a, brake_at], ts - cruise.t1, speed, v_start_kn=speed, v_end_kn=speed,
                       accel=0.1)
        plan.add(cruise)
        brake = Route([brake_at, b], ts, speed, v_start_kn=speed, v_end_kn=0.1, accel=0.5,
                      decel=0.5)
        plan.add(brake)
        held = cfg.hold_s * r.uniform(4.0, 8.0)
        plan.add(Hold(b, brake.t1, brake.t1 + held, r, status=STATUS_UNDER_WAY,
                      speed_kn=0.2, jitter_m=2.0))
        if not world.heard_span(plan, ts - 120.0, brake.t1 + held):
            continue
        mmsi = world.new_mmsi()
        world.add(mmsi, "A", "grounded", plan, world.ship_static(70, r.randrange(80, 200)))
        return [Expectation("sudden_stop", mmsi, f"{speed:.1f} kn to a stop in "
                            f"{brake.t1 - ts:.0f} s", window=(ts - 15.0, ts + cfg.hold_s + 90.0))]
    raise Skip("no heard open-water track")


# -- receiver outage (last: it must not hide the others) -------------------------------


@injector("source_silent")
def source_silent(world: World, ctx: Context) -> list[Expectation]:
    cfg = ctx.config
    r = world.rng
    lay = world.layout
    alerted = [rec for rec in lay.receivers if SourceSilent(cfg).watches(rec.name)]
    if not alerted:
        raise Skip("rules.source_silent.receivers leaves out the scenario's receivers ("
                   + ", ".join(rec.name for rec in lay.receivers) + ")")
    # Long enough for whichever receiver is taken (one may have a limit of its own).
    silent_s = max(cfg.source_silent.silent_s_for(rec.name) for rec in alerted)
    longest = max(silent_s + 60.0, cfg.dark_vessel.moving_s + r.uniform(180.0, 540.0))
    if min(longest, 0.3 * world.duration) < silent_s + 30.0:
        raise Skip("scenario too short for a receiver outage")
    # Long enough to test dark_vessel's receiver check if it fits between the anomalies'
    # heard spans; else a short one.
    for attempt in range(2 * TRIES):
        length = min(longest, 0.3 * world.duration) if attempt < TRIES else (
            silent_s + r.uniform(60.0, 240.0))
        rec = r.choice(alerted)
        t0 = _time(world, 0.1, 0.8, length + 300.0)
        limit = cfg.source_silent.silent_s_for(rec.name)
        if world.outage_fits(rec.name, t0, t0 + length, gap_s=limit):
            break
    else:
        raise Skip("every outage would hide an injected anomaly")
    world.receiver_silences[rec.name].append((t0, t0 + length))
    ctx.notes["outage"] = (rec.name, t0, t0 + length)
    out = [Expectation("source_silent", None, f"{rec.name} off for {length:.0f} s",
                       window=(t0 + limit - 30.0, t0 + limit + 2.0), receiver=rec.name)]
    if "dark_vessel" in ctx.rules and length > cfg.dark_vessel.moving_s + 60.0:
        out += _only_receiver_control(world, ctx, rec.name)
    return out


def _only_receiver_control(world: World, ctx: Context, name: str) -> list[Expectation]:
    """A vessel heard by the silent receiver alone: its silence is not the vessel's."""
    r = world.rng
    radius = r.uniform(250.0, 500.0)
    region = _open_water(world, inset=ctx.config.dark_vessel.edge_m + radius + 500.0,
                         berth_clear=800.0 + radius, channel_clear=300.0 + radius)
    region = region.intersection(world.layout.exclusive[name].buffer(-radius - 300.0))
    centre = random_point(r, region)
    if centre is None:
        return []
    plan = Plan()
    plan.add(Drift(centre, radius, r.uniform(4.0, 7.0), world.start - 600, world.end + 600,
                   phase=r.uniform(0, 6.28)))
    mmsi = world.new_mmsi()
    world.add(mmsi, "A", "fishing", plan, world.ship_static(30, r.randrange(20, 45)))
    return [Expectation("dark_vessel", mmsi,
                        f"trawling where only {name} hears it; {name} goes silent")]


def ordinary_controls(world: World, ctx: Context) -> list[Expectation]:
    """Controls drawn from ordinary traffic: a departure that leaves reception is not dark."""
    out = []
    moving_s = ctx.config.dark_vessel.moving_s
    for v in ctx.traffic.get("departure", []):
        route = v.plan.phases[1] if len(v.plan.phases) > 1 else None
        if not isinstance(route, Route):
            continue
        gone = exit_time(world, route)
        if gone is None or not world.start + 300.0 < gone < world.end - moving_s - 300.0:
            continue
        # Reserved: a receiver outage must not be what silences it.
        if world.heard_span(v.plan, world.start, gone - 30.0, step=30.0):
            out.append(Expectation("dark_vessel", v.mmsi, "left coverage across its edge"))
    return out
