"""``collision_risk``: two vessels under way closing to a small CPA within a short TCPA.

Both faster than ``speed_kn`` with a known course, neither of an exempt ship type; CPA below
``cpa_m`` with ``0 < TCPA < tcpa_s``. CPA/TCPA are computed in metres in the zones'
projection, each vessel dead-reckoned from its last fix (speed over ground, course over
ground) to the time of the report being judged. Course over ground is true; the grid's
north differs from it by the meridian convergence at the fix, which is taken off before the
course becomes a velocity in projected metres (3° at 12.6°E in UTM 32: uncorrected, a CPA
4 km ahead is off by 200 m). Lengths are true metres: far from the projection's central
meridian (a national feed's vessels) a true metre measures ``k`` projected ones (1.05 at
2,000 km), so each vessel's velocity is turned into projected metres per second with the
scale factor at its fix, and the pair's separation and CPA back into true metres with the
mean of the two (``search_m`` is widened by it too). Close passing is normal in a basin or a
channel, so a pair is judged only when at least one of the two is outside the port limit
(everywhere, when no ``port_limit`` zone exists) or inside a zone that sets its own
``cpa_m`` (and optionally ``tcpa_s``); when such zones apply, the smallest ``cpa_m`` among
them is the limit.

A pair opens only at a relative speed of ``min_relative_kn`` or more: vessels steaming in
company (a tug and its tow 300 m apart) keep their distance, so they are at their CPA
already, and the sign of a TCPA near zero flickers with every report.

State-based with hysteresis: it opens when the condition first holds and ends when the
vessels have passed (TCPA ≤ 0), when CPA or TCPA exceed ``end_factor`` times their limits,
when either slows to ``end_speed_kn`` or less (below ``speed_kn``: a vessel in an open pair
stays in the grid between the two), or when either has not reported for ``max_age_s`` (as
of its last fix plus ``max_age_s``, "silent", whether the other's report or the sweep finds
it). A report more than ``max_age_s`` behind the rules' clock (a satellite pass delivered
late) updates the vessel's fix but opens no pair, nor ends one as passed: no live evidence.
Within ``reopen_s`` of its end a pair opens again only for a markedly closer approach (a CPA
under ``REOPEN_CLOSER`` times the ended alert's smallest): a fix jittering about the passing
point, or a speed dipping and recovering, does not fire it again.

Neighbours within ``search_m`` come from two grids (all vessels under way; those where the
rule applies), so a vessel inside the port limit only looks for watched neighbours and no
report ever looks at all vessels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from geofence.alert import RiskArea, Severity
from geofence.neighbours import Grid, Pairs, pair_key
from geofence.picture import Vessel, zone_ids_here
from geofence.rules.base import BaseRule, RuleContext, pair_evidence
from geofence.rules.encounter import is_exempt
from ingest.report import Report

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

KN_TO_MS = 1852.0 / 3600.0
SWEEP_EVERY_S = 60.0
REOPEN_CLOSER = 0.5  # within reopen_s, a pair re-opens only under this × its last min CPA


class Motion(NamedTuple):
    """A vessel's last fix as the grids keep it."""

    time: float
    vx: float  # projected metres per second (true ones times k)
    vy: float
    k: float  # the projection's scale factor at the fix (1.0 near the port)
    speed: float  # knots: a vessel between end_speed_kn and speed_kn opens no pair
    watched: bool
    cpa_m: float | None  # a zone's own limits, when the vessel is in such a zone
    tcpa_s: float | None
    zone: str | None


_new_motion = tuple.__new__


def cpa_tcpa(rx: float, ry: float, vx: float, vy: float) -> tuple[float, float | None]:
    """CPA (m) and TCPA (s) of relative position ``r`` and relative velocity ``v``.

    TCPA is None when the relative velocity is (nearly) zero: the distance does not change.
    """
    vv = vx * vx + vy * vy
    if vv < 1e-9:
        return math.hypot(rx, ry), None
    tcpa = -(rx * vx + ry * vy) / vv
    return math.hypot(rx + vx * tcpa, ry + vy * tcpa), tcpa


def velocity(speed_kn: float, course_deg: float, convergence: float = 0.0
             ) -> tuple[float, float]:
    """Grid east and north components (m/s) of a speed and a true course; ``convergence``
    (radians, :meth:`geofence.projection.Projector.convergence`) is the angle from grid
    north to true north at the fix, so the grid bearing is the course minus it."""
    speed = speed_kn * KN_TO_MS
    rad = math.radians(course_deg) - convergence
    return speed * math.sin(rad), speed * math.cos(rad)


class CollisionRisk(BaseRule):
    name = "collision_risk"
    needs_fix = True

    def __init__(self, config: RulesConfig) -> None:
        cfg = config.collision_risk
        self.speed_kn = cfg.speed_kn
        self.cpa_m = cfg.cpa_m
        self.tcpa_s = cfg.tcpa_s
        self.end_factor = cfg.end_factor
        self.search_m = cfg.search_m
        self.max_age_s = cfg.max_age_s
        self.end_speed_kn = min(cfg.end_speed_kn, cfg.speed_kn)
        self.reopen_s = cfg.reopen_s
        min_relative = cfg.min_relative_kn * KN_TO_MS
        self._min_relative2 = min_relative * min_relative  # (m/s)², against vv
        self.exempt = frozenset(config.exempt_shiptypes)
        self.moving: Grid[Motion] = Grid(self.search_m / 2)
        self.watched: Grid[Motion] = Grid(self.search_m / 2)
        self.pairs = Pairs()
        #: pair -> (time its alert ended, its smallest CPA): the re-opening hold
        self._ended: dict[tuple[int, int], tuple[float, float]] = {}
        self._has_port_limit = False
        self._zone_limits = False
        self._loosest_cpa = self.cpa_m * self.end_factor  # no pair can pass wider (on_zones)
        self._loosest_tcpa = self.tcpa_s * self.end_factor
        self._next_sweep = float("-inf")
        #: the zones' Projector.convergence and .scale, once there is a projection
        #: (on_zones resets them), and the x range where the scale is 1 (Projector.flat)
        self._convergence: Callable[[float, float], float] | None = None
        self._scale: Callable[[float, float], float] | None = None
        self._flat = (math.inf, -math.inf)
        #: zone ids at a fix -> (watched, cpa, tcpa, zone): few distinct sets, many reports
        self._places: dict[tuple[str, ...], tuple[bool, float | None, float | None,
                                                  str | None]] = {}

    # -- where the rule applies -----------------------------------------------------------

    def _motion(self, ctx: RuleContext, vessel: Vessel, t: float, x: float) -> Motion:
        """The vessel's motion as of its fix at ``t``, projected to ``x`` (its easting)."""
        assert vessel.speed is not None and vessel.course is not None
        assert vessel.lon is not None and vessel.lat is not None
        convergence = self._convergence
        if convergence is None:
            convergence = self._take_projection(ctx)
        vx, vy = velocity(vessel.speed, vessel.course, convergence(vessel.lon, vessel.lat))
        x0, x1 = self._flat
        if x0 < x < x1:
            k = 1.0  # near the port: one comparison, no trigonometry
        else:
            assert self._scale is not None  # set with _convergence
            k = self._scale(vessel.lon, vessel.lat)
            vx, vy = vx * k, vy * k
        if not ctx.zones.zones:
            return Motion(t, vx, vy, k, vessel.speed, True, None, None, None)
        # Where the fix is, not the confirmed membership: a pair is judged at once.
        inside = zone_ids_here(vessel, ctx.zones)
        place = self._places.get(inside)
        if place is None:
            place = self._places[inside] = self._place(ctx, inside)
        # Motion(...) without the namedtuple's Python-level __new__: one per report.
        return _new_motion(Motion, (t, vx, vy, k, vessel.speed, *place))

    def _take_projection(self, ctx: RuleContext) -> Callable[[float, float], float]:
        """The zones' projection's convergence (returned), scale and flat range."""
        projector = ctx.zones.projector  # set: the fix was projected
        assert projector is not None
        self._scale, self._flat = projector.scale, projector.flat
        self._convergence = projector.convergence
        return self._convergence

    def _place(self, ctx: RuleContext, inside: tuple[str, ...]
               ) -> tuple[bool, float | None, float | None, str | None]:
        """(watched, cpa, tcpa, zone) for a fix inside these zones (the same for any fix)."""
        cpa = tcpa = None
        zone_id = None
        in_port = in_channel = False
        by_id = ctx.zones.by_id
        for zid in inside:
            zone = by_id.get(zid)
            if zone is None:
                continue
            if zone.kind == "port_limit":
                in_port = True
            elif zone.kind == "channel":
                in_channel = True
            own = zone.get("cpa_m") if self._zone_limits else None
            if own is not None and (cpa is None or own < cpa):
                cpa, tcpa, zone_id = float(own), zone.get("tcpa_s"), zone.id
        # Close passing is normal inside the port and in a fairway (DESIGN), even where the
        # channel runs out beyond the port limit: judged there only with a zone's own cpa_m.
        sheltered = (self._has_port_limit and in_port) or in_channel
        watched = cpa is not None or not sheltered
        return watched, cpa, tcpa, zone_id

    def _limits(self, a: Motion, b: Motion) -> tuple[float, float, str | None]:
        """(cpa, tcpa, zone) for a pair: a zone's own limits when either is in one."""
        best: Motion | None = None
        best_cpa = math.inf
        for m in (a, b):
            if m.cpa_m is not None and m.cpa_m < best_cpa:
                best, best_cpa = m, m.cpa_m
        if best is None:
            return self.cpa_m, self.tcpa_s, None
        return best_cpa, best.tcpa_s or self.tcpa_s, best.zone

    # -- reports --------------------------------------------------------------------------

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        if not ctx.fix_accepted:
            return
        mmsi = vessel.mmsi
        speed, course = vessel.speed, vessel.course
        # Between end_speed_kn and speed_kn a vessel stays only for the pairs it is in.
        if speed is None or course is None or speed <= self.end_speed_kn or (
                speed <= self.speed_kn and not self.pairs.has(mmsi)) or (
                is_exempt(vessel, self.exempt)):
            if mmsi in self.moving or self.pairs.has(mmsi):  # the common case skips this
                self._leave(ctx, mmsi, report.time, "slow_or_exempt", report)
            return
        assert vessel.x is not None and vessel.y is not None
        t = report.time
        x, y = vessel.x, vessel.y
        me = self._motion(ctx, vessel, t, x)
        self.moving.put(mmsi, x, y, me)
        if me.watched:
            self.watched.put(mmsi, x, y, me)
        else:
            self.watched.remove(mmsi)
        max_age = self.max_age_s
        if ctx.now - t > max_age:
            # Far behind the rules' clock (a satellite pass delivered minutes late): kept as
            # the vessel's last fix, but no evidence of a live risk, nor of one over.
            return
        grid = self.moving if me.watched else self.watched
        met: set[tuple[int, int]] = set()
        in_pairs = self.pairs.has(mmsi)
        open_kn = self.speed_kn
        can_open = speed > open_kn
        loose_cpa2 = self._loosest_cpa * self._loosest_cpa
        loose_tcpa = self._loosest_tcpa
        mvx, mvy, mk = me.vx, me.vy, me.k
        for other, ox, oy, them in grid.near(x, y, self.search_m * mk):
            age = t - them.time
            if other == mmsi:
                continue
            if age > max_age:
                # Not dead-reckoned any further: its pair ends as of then (not "passed").
                if in_pairs and pair_key(mmsi, other) in self.pairs.state:
                    self._end_pair(ctx, pair_key(mmsi, other), t, "silent",
                                   ended_at=them.time + max_age)
                continue
            # Dead-reckon the other vessel to now (this one is at its fix), then the cheap
            # tests first: most neighbours are moving apart or pass far off.
            rvx, rvy = them.vx - mvx, them.vy - mvy
            rx, ry = ox + them.vx * age - x, oy + them.vy * age - y
            vv = rvx * rvx + rvy * rvy
            dot = rx * rvx + ry * rvy
            if vv < 1e-9 or dot >= 0 or -dot > loose_tcpa * vv:
                continue  # constant distance, opening, or too far off in time
            tcpa = -dot / vv  # seconds: the same in projected and true metres
            cx, cy = rx + rvx * tcpa, ry + rvy * tcpa
            if mk != 1.0 or them.k != 1.0:
                # Projected metres to true ones (far from the central meridian).
                inv = 2.0 / (mk + them.k)
                cx, cy, rx, ry, vv = cx * inv, cy * inv, rx * inv, ry * inv, vv * inv * inv
            if cx * cx + cy * cy > loose_cpa2:
                continue
            cpa = math.hypot(cx, cy)
            cpa_lim, tcpa_lim, zone = self._limits(me, them)
            key = pair_key(mmsi, other)
            state = self.pairs.state.get(key)
            if state is not None:
                if tcpa <= tcpa_lim * self.end_factor and cpa <= cpa_lim * self.end_factor:
                    met.add(key)
                    state["min_cpa"] = min(state["min_cpa"], cpa)
                continue
            if tcpa >= tcpa_lim or cpa >= cpa_lim or not can_open or them.speed <= open_kn:
                continue
            if vv < self._min_relative2:
                continue  # in company: not closing
            held = self._ended.get(key)
            if held is not None:
                if t - held[0] < self.reopen_s and cpa >= held[1] * REOPEN_CLOSER:
                    continue  # the same encounter again: no new alert
                del self._ended[key]
            partner = ctx.picture.get(other)
            if partner is None or is_exempt(partner, self.exempt):
                continue  # its static data came after its last position
            met.add(key)
            self._open(ctx, key, vessel, partner, report, cpa, tcpa, math.hypot(rx, ry),
                       cpa_lim, tcpa_lim, zone, age)
        if in_pairs:
            for key in self.pairs.of(mmsi) - met:
                self._end_pair(ctx, key, t, "passed_or_clear", report)

    def _open(self, ctx: RuleContext, key: tuple[int, int], vessel: Vessel, partner: Vessel,
              report: Report, cpa: float, tcpa: float, distance: float, cpa_lim: float,
              tcpa_lim: float, zone: str | None, partner_age: float) -> None:
        """``partner_age``: how old the partner's last fix is; the distances are from where
        it is dead-reckoned to be now, its ``lat``/``lon`` are where it was."""
        first, second = (vessel, partner) if vessel.mmsi == key[0] else (partner, vessel)
        t = report.time
        alert = ctx.book.open(
            self.name, risk_area=RiskArea.PORT_OPERATIONS, severity=Severity.WARNING,
            mmsi=key[0], other_mmsi=key[1], started_at=t, time=t, zone=zone,
            shipname=first.shipname, lat=first.lat, lon=first.lon,
            details={"cpa_m": round(cpa, 1), "tcpa_s": round(tcpa, 1),
                     "distance_m": round(distance, 1), "cpa_limit_m": cpa_lim,
                     "tcpa_limit_s": tcpa_lim, "other_shipname": second.shipname,
                     "other_lat": second.lat, "other_lon": second.lon,
                     # How old each fix is (the reporting vessel's: 0): a partner heard
                     # 98 s ago is reckoned on, and its position is that old.
                     "fix_ages_s": [0.0, round(partner_age, 1)] if first is vessel
                     else [round(partner_age, 1), 0.0],
                     "speeds": [first.speed, second.speed],
                     "courses": [first.course, second.course],
                     "reports": [pair_evidence(report)]})
        if alert is not None:
            self.pairs.add(key, {"alert": alert.id, "min_cpa": cpa})

    def _leave(self, ctx: RuleContext, mmsi: int, t: float, reason: str,
               report: Report | None = None, ended_at: float | None = None) -> None:
        self.moving.remove(mmsi)
        self.watched.remove(mmsi)
        for key in self.pairs.of(mmsi):
            self._end_pair(ctx, key, t, reason, report, ended_at)

    def _end_pair(self, ctx: RuleContext, key: tuple[int, int], t: float, reason: str,
                  report: Report | None = None, ended_at: float | None = None) -> None:
        """End a pair's alert, noticed at ``t``; ``ended_at``, when earlier, is when the
        condition ended (a silent vessel's last fix plus ``max_age_s``)."""
        state = self.pairs.remove(key)
        alert = ctx.book.get(str(state["alert"])) if state is not None else None
        if alert is None or state is None:
            return
        if ended_at is not None and ended_at >= t:
            ended_at = None
        self._ended[key] = (t if ended_at is None else ended_at, float(state["min_cpa"]))
        details: dict[str, Any] = {"end_reason": reason,
                                   "min_cpa_m": round(float(state["min_cpa"]), 1)}
        if report is not None:
            details["exit"] = pair_evidence(report)
        ctx.book.end(alert, t, details, ended_at=ended_at)

    # -- timers, zones, restart -----------------------------------------------------------

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_S
        max_age = self.max_age_s
        horizon = now - max_age
        for mmsi in self.moving.members():
            entry = self.moving.get(mmsi)
            if entry is not None and entry[2].time < horizon:
                # Ended as of its last fix plus max_age_s, not at this sweep (up to a
                # minute later, and later still on a quiet feed).
                self._leave(ctx, mmsi, now, "silent", ended_at=entry[2].time + max_age)
        for key in list(self.pairs.state):
            if any(m not in self.moving for m in key):
                fixes = [v.fix_time if (v := ctx.picture.get(m)) is not None
                         and v.fix_time is not None else -math.inf for m in key]
                last = min(fixes)
                self._end_pair(ctx, key, now, "silent",
                               ended_at=last + max_age if last > -math.inf else None)
        held = now - self.reopen_s
        self._ended = {key: v for key, v in self._ended.items() if v[0] >= held}

    def on_zones(self, ctx: RuleContext) -> None:
        # Whether a vessel is watched depends on the zones, so the grids are built again
        # from the picture (left empty, a pair's partner would be missing at the next
        # report and the pair ended as passed while the two still close).
        self._places = {}
        self._convergence = self._scale = None  # the projection may change with the zones
        self._has_port_limit = bool(ctx.zones.of_kind("port_limit"))
        self._zone_limits = any("cpa_m" in z.overrides for z in ctx.zones)
        self._loosest_cpa = max([self.cpa_m, *(z.get("cpa_m", 0.0) for z in ctx.zones)]
                                ) * self.end_factor
        self._loosest_tcpa = max([self.tcpa_s, *(z.get("tcpa_s", 0.0) for z in ctx.zones)]
                                 ) * self.end_factor
        self.moving = Grid(self.search_m / 2)
        self.watched = Grid(self.search_m / 2)
        self._next_sweep = ctx.now + SWEEP_EVERY_S
        for vessel in ctx.picture.vessels.values():
            t, x, y = vessel.fix_time, vessel.x, vessel.y
            if (t is None or x is None or y is None or vessel.speed is None
                    or vessel.course is None or vessel.speed <= self.end_speed_kn
                    or (vessel.speed <= self.speed_kn and not self.pairs.has(vessel.mmsi))
                    or is_exempt(vessel, self.exempt) or not ctx.in_watch_area(vessel)):
                continue
            motion = self._motion(ctx, vessel, t, x)
            self.moving.put(vessel.mmsi, x, y, motion)
            if motion.watched:
                self.watched.put(vessel.mmsi, x, y, motion)

    def saved_state(self) -> Any:
        """Pairs whose alert ended within ``reopen_s``: a restart must not lift the hold."""
        return [[*key, *held] for key, held in self._ended.items()]

    def load_state(self, ctx: RuleContext, state: Any) -> None:
        for first, second, ended, min_cpa in state:
            self._ended[pair_key(int(first), int(second))] = (float(ended), float(min_cpa))

    def on_restore(self, ctx: RuleContext) -> None:
        # The grids: the engine's on_zones after this builds them.
        self.pairs = Pairs()
        self._ended = {}
        for alert in ctx.book.of_rule(self.name):
            if alert.mmsi is not None and alert.other_mmsi is not None:
                self.pairs.add(pair_key(alert.mmsi, alert.other_mmsi),
                               {"alert": alert.id,
                                "min_cpa": alert.details.get("cpa_m", self.cpa_m)})
