"""Vessel motion as phases of a plan: routes with acceleration limits, mooring, anchoring,
drifting and following another vessel. Positions are metres in the zones' projection.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import shapely

KN = 1852.0 / 3600.0  # metres per second in one knot
XY = tuple[float, float]

STATUS_UNDER_WAY = 0
STATUS_AT_ANCHOR = 1
STATUS_MOORED = 5
STATUS_SART = 14
STATUS_UNDEFINED = 15


@dataclass(slots=True)
class Kin:
    """The state a transponder reports: position, speed (kn), course, heading, status."""

    x: float
    y: float
    speed: float
    course: float
    heading: float
    status: int


def bearing(dx: float, dy: float) -> float:
    """Compass bearing in degrees of a metric displacement."""
    return math.degrees(math.atan2(dx, dy)) % 360.0


#: Speed caps (kn, None = none) for many points at once.
Caps = Callable[[Sequence[float], Sequence[float]], list[float | None]]


class Phase:
    t0: float
    t1: float

    def at(self, t: float) -> Kin:
        raise NotImplementedError


class Route(Phase):
    """Along a polyline with per-point speed caps (kn) and an acceleration limit.

    Speeds come from a forward and a backward pass over points every ~25 m, so a vessel
    slows down *before* a speed-limited zone and before its destination.
    """

    def __init__(self, points: Sequence[XY], t0: float, cruise_kn: float, *,
                 cap: Caps | None = None,
                 v_start_kn: float = 0.0, v_end_kn: float = 0.0, accel: float = 0.05,
                 decel: float | None = None, status: int = STATUS_UNDER_WAY) -> None:
        xs: list[float] = []
        ys: list[float] = []
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            n = max(1, int(math.dist((ax, ay), (bx, by)) // 25.0))
            for i in range(n):
                xs.append(ax + (bx - ax) * i / n)
                ys.append(ay + (by - ay) * i / n)
        xs.append(points[-1][0])
        ys.append(points[-1][1])
        v = [cruise_kn * KN] * len(xs)
        if cap is not None:
            for i, c in enumerate(cap(xs, ys)):
                if c is not None:
                    v[i] = min(v[i], c * KN)
        v[0] = min(v[0], max(v_start_kn, 0.3) * KN)
        v[-1] = min(v[-1], max(v_end_kn, 0.3) * KN)
        ds = [math.dist((xs[i - 1], ys[i - 1]), (xs[i], ys[i])) for i in range(1, len(xs))]
        for i in range(1, len(v)):
            v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * accel * ds[i - 1]))
        # Taking the way off is gentle unless told otherwise: 7 kn to 1 kn in 30 s or less
        # is what ``sudden_stop`` looks for.
        brake = decel if decel is not None else min(accel, 0.06)
        for i in range(len(v) - 2, -1, -1):
            v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * brake * ds[i]))
        times = [t0]
        for i in range(1, len(v)):
            times.append(times[-1] + 2 * ds[i - 1] / max(v[i - 1] + v[i], 0.1))
        self.xs, self.ys, self.v, self.times = xs, ys, v, times
        self.t0, self.t1 = t0, times[-1]
        self.status = status

    def at(self, t: float) -> Kin:
        i = bisect.bisect_right(self.times, t)
        if i <= 0:
            i = 1
        if i >= len(self.times):
            i = len(self.times) - 1
        ta, tb = self.times[i - 1], self.times[i]
        f = 0.0 if tb <= ta else min(1.0, max(0.0, (t - ta) / (tb - ta)))
        x = self.xs[i - 1] + (self.xs[i] - self.xs[i - 1]) * f
        y = self.ys[i - 1] + (self.ys[i] - self.ys[i - 1]) * f
        speed = (self.v[i - 1] + (self.v[i] - self.v[i - 1]) * f) / KN
        course = bearing(self.xs[i] - self.xs[i - 1], self.ys[i] - self.ys[i - 1])
        return Kin(x, y, speed, course, course, self.status)

    @property
    def end(self) -> XY:
        return self.xs[-1], self.ys[-1]

    def time_at_index(self, i: int) -> float:
        return self.times[i]

    def first_inside(self, area: Any) -> float | None:
        """The first time the route is inside ``area`` (to the ~25 m step), or None."""
        inside = shapely.contains_xy(area, self.xs, self.ys)
        hits = inside.nonzero()[0]
        return None if not len(hits) else self.times[int(hits[0])]


class Hold(Phase):
    """At rest (moored, or stopped): a few metres of GPS jitter, speed 0 or nearly."""

    def __init__(self, point: XY, t0: float, t1: float, rng: random.Random, *,
                 status: int = STATUS_MOORED, heading: float | None = None,
                 jitter_m: float = 3.0, speed_kn: float = 0.0) -> None:
        self.point, self.t0, self.t1, self.rng = point, t0, t1, rng
        self.status = status
        self.heading = rng.uniform(0, 360) if heading is None else heading
        self.jitter = jitter_m
        self.speed = speed_kn

    def at(self, t: float) -> Kin:
        r = self.rng
        return Kin(self.point[0] + r.gauss(0, self.jitter), self.point[1] + r.gauss(0, self.jitter),
                   round(self.speed * r.uniform(0.5, 1.5), 1), r.uniform(0, 360),
                   (self.heading + r.gauss(0, 1.0)) % 360, self.status)


class Anchored(Phase):
    """Swinging on a circle around the anchor (radius ~ ship length plus chain), bow to it.

    ``drag`` (from time, vx, vy m/s) moves the anchor itself: an anchor that does not hold.
    """

    def __init__(self, anchor: XY, radius: float, t0: float, t1: float, rng: random.Random,
                 *, drag: tuple[float, float, float] | None = None) -> None:
        self.anchor, self.radius, self.t0, self.t1 = anchor, radius, t0, t1
        self.rng = rng
        self.theta0 = rng.uniform(0, 2 * math.pi)
        # A ship swings slowly with wind and tide: a few tens of degrees either side over
        # hours (the full reversal comes with the tide, ~6 h).
        # Kept within a few tens of metres over a scenario's hours (anchor_drag learns the
        # circle in its first half hour and allows 100 m more).
        self.amp = min(rng.uniform(0.15, 0.4), rng.uniform(40.0, 70.0) / max(radius, 1.0))
        self.period = rng.uniform(3 * 3600.0, 6 * 3600.0)
        self.drag = drag

    def anchor_at(self, t: float) -> XY:
        if self.drag is None or t <= self.drag[0]:
            return self.anchor
        dt = t - self.drag[0]
        return self.anchor[0] + self.drag[1] * dt, self.anchor[1] + self.drag[2] * dt

    def at(self, t: float) -> Kin:
        w = 2 * math.pi / self.period
        theta = self.theta0 + self.amp * math.sin(w * (t - self.t0))
        ax, ay = self.anchor_at(t)
        x = ax + self.radius * math.cos(theta) + self.rng.gauss(0, 2.0)
        y = ay + self.radius * math.sin(theta) + self.rng.gauss(0, 2.0)
        dtheta = self.amp * w * math.cos(w * (t - self.t0))
        vx, vy = -math.sin(theta) * dtheta * self.radius, math.cos(theta) * dtheta * self.radius
        if self.drag is not None and t > self.drag[0]:
            vx, vy = vx + self.drag[1], vy + self.drag[2]
        speed = math.hypot(vx, vy) / KN
        heading = bearing(ax - x, ay - y)
        return Kin(x, y, round(speed, 1), bearing(vx, vy), heading, STATUS_AT_ANCHOR)


class Drift(Phase):
    """Slow circles around a centre (loitering, waiting, lying together).

    Two drifts with the same centre, period and phase but different ``offset`` move as one.
    """

    def __init__(self, centre: XY, radius: float, speed_kn: float, t0: float, t1: float, *,
                 phase: float = 0.0, offset: XY = (0.0, 0.0),
                 status: int = STATUS_UNDER_WAY) -> None:
        self.centre, self.radius, self.t0, self.t1 = centre, radius, t0, t1
        self.omega = speed_kn * KN / max(radius, 1.0)
        self.phase, self.offset, self.status = phase, offset, status
        self.speed = speed_kn

    def at(self, t: float) -> Kin:
        a = self.phase + self.omega * (t - self.t0)
        x = self.centre[0] + self.offset[0] + self.radius * math.cos(a)
        y = self.centre[1] + self.offset[1] + self.radius * math.sin(a)
        course = bearing(-math.sin(a), math.cos(a))
        return Kin(x, y, self.speed, course, course, self.status)


class Follow(Phase):
    """Keeps station on another vessel's plan at a fixed offset (tug alongside, escort)."""

    def __init__(self, leader: Plan, offset: XY, t0: float, t1: float) -> None:
        self.leader, self.offset, self.t0, self.t1 = leader, offset, t0, t1

    def at(self, t: float) -> Kin:
        k = self.leader.at(t)
        if k is None:
            raise ValueError("leader has no state")
        return Kin(k.x + self.offset[0], k.y + self.offset[1], k.speed, k.course, k.course,
                   STATUS_UNDER_WAY)


class Plan:
    """Contiguous phases; the vessel exists from the first phase's start to the last's end."""

    def __init__(self) -> None:
        self.phases: list[Phase] = []

    def add(self, phase: Phase) -> Phase:
        self.phases.append(phase)
        return phase

    @property
    def t0(self) -> float:
        return self.phases[0].t0

    @property
    def t1(self) -> float:
        return self.phases[-1].t1

    def phase_at(self, t: float) -> Phase | None:
        if not self.phases or t < self.t0 or t > self.t1:
            return None
        for phase in self.phases:
            if t <= phase.t1:
                return phase
        return None

    def at(self, t: float) -> Kin | None:
        phase = self.phase_at(t)
        return None if phase is None else phase.at(t)
