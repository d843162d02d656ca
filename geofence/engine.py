"""The engine: reports in, alert transitions out, on message time only.

Per report: receivers' silences judged, then receivers heard → timers (at most every
``tick_interval_s`` of message time) → VALIDATE rules (may veto the fix) → picture update
and zone membership → OBSERVE rules.
Per-report work is a projection, one STRtree query and the checks of rules that cheaply
decide they have something to do; silence timers live in heaps and run on ticks.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from geofence.alert import Alert, AlertEvent
from geofence.alertbook import AlertBook
from geofence.eviction import SilentQueue
from geofence.mid import is_device, is_ship_mmsi
from geofence.picture import (
    NON_VESSEL_TYPES,
    Picture,
    Receiver,
    Vessel,
    remember_zone_ids,
    update_membership,
)
from geofence.restore_clamp import clamp_receiver, clamp_vessel
from geofence.rules import REGISTRY, BaseRule, Phase, Rule, RuleContext, build_rules
from geofence.zones import ZoneSet
from ingest.report import Report, iso_time

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0
#: The zones that bound the port's area with ``watch_area: port``.
WATCH_KINDS = ("coverage", "port_limit")


def _eviction_silence_s(config: RulesConfig, zones: ZoneSet) -> float:
    """How long a held vessel must be silent before a new MMSI may take its place at the
    bound: out of the live picture, and past the silence after which ``dark_vessel`` would
    have opened an alert on it (an open alert keeps it), a zone's own threshold included,
    with a tick to spare: timers run at ticks."""
    silence = config.picture.live_s
    dark = config.dark_vessel
    if dark.enabled:
        silence = max(silence, dark.moving_s, dark.stationary_s, *(
            float(zone.overrides[key]) for zone in zones
            for key in ("dark_moving_s", "dark_stationary_s") if key in zone.overrides))
    return silence + config.picture.tick_interval_s


def zone_set_warnings(config: RulesConfig, zones: ZoneSet) -> list[str]:
    """What a zone set leaves the rules unable to do, for the log and ``check-config``."""
    if not len(zones):
        return []  # no zones at all is said where the zones are loaded
    out = []
    if config.watch_area == "port" and not any(zones.of_kind(k) for k in WATCH_KINDS):
        out.append("rules.watch_area is port, but the zones have no coverage or port_limit "
                   "zone: every vessel heard is a subject of the rules")
    if config.dark_vessel.enabled and not zones.of_kind("coverage"):
        out.append("the zones have no coverage zone: dark_vessel judges only vessels whose "
                   "last fix is inside coverage, so no vessel can be called dark (draw where "
                   "the port's receivers hear)")
    return out


#: The highest speed a ship's report can give, meaning "this or more" (102.3 is "not
#: available"); a SAR aircraft's (type 9) goes to 1022 kn.
UNRELIABLE_SPEED_KN = 102.2
SAR_TYPE = 9
#: A ship's answer to a UTC inquiry (type 10): a station message, but with its own position.
UTC_RESPONSE_TYPE = 11
#: ``extra["suspect"]`` of a station message carrying a vessel's MMSI (``_station_message``).
STATION_MESSAGE = "station_message"
_NEVER = float("-inf")
_NO_ZONES: list[Any] = []
#: What follows a rule raising at a restart (``Engine._restore_rule``), or on the zones at
#: start or at a restart (the zones are in force, as on a live swap).
AFRESH = "it starts afresh: what it knew before the restart is lost"
ZONES_TAKEN = "the other rules took the zones"
#: Fewer positions than this in a run are projected one by one (an array call costs ~3 µs).
PROJECT_AHEAD_MIN = 8


class Engine:
    """The live picture plus every enabled rule; one per pipeline, not thread-safe."""

    def __init__(self, config: RulesConfig, zones: ZoneSet, *, drill: bool = False,
                 rules: Sequence[Rule] | None = None) -> None:
        self.config = config
        self.zones = zones
        self.drill = drill
        self.picture = Picture(history_len=config.picture.history_len,
                               live_s=config.picture.live_s,
                               silent_s_for=config.source_silent.silent_s_for)
        self.book = AlertBook(drill=drill)
        self.rules: list[Rule] = (sorted(rules, key=lambda r: r.phase) if rules is not None
                                  else build_rules(config))
        # Rules that keep BaseRule's no-op on_report cost nothing per report.
        reporting = [r for r in self.rules
                     if getattr(type(r), "on_report", None) is not BaseRule.on_report]
        self._validators = [r for r in reporting if r.phase == Phase.VALIDATE]
        # Rules flagged ``zone_changes_only`` run only on reports that enter or leave a zone.
        self._observers = [r for r in reporting if r.phase != Phase.VALIDATE
                           and not getattr(r, "zone_changes_only", False)]
        self._zone_observers = [r for r in reporting if r.phase != Phase.VALIDATE
                                and getattr(r, "zone_changes_only", False)]
        # Rules that declare what they need (BaseRule.needs_fix, msg_types, non_ship_only)
        # are not called on other reports: observers per kind of report, built on first use.
        self._blind_validators = [r for r in self._validators
                                  if not getattr(r, "needs_fix", False)]
        self._observer_sets: dict[tuple[int, bool, bool], list[Rule]] = {}
        self.ctx = RuleContext(config, zones, self.picture, self.book)
        self.ctx.in_watch_area = self.in_watch_area
        self.newest = float("-inf")
        #: The port's clock for receivers (``Receiver.heard_at``): the newest message time
        #: any receiver was heard at, in line order. Message time only: ``newest`` also moves
        #: with ticks (in live mode by the wall clock), and a receiver's silence judged from
        #: it would start at whatever moment a tick came.
        self.heard_newest = float("-inf")
        self.counters = {"reports": 0, "suspect": 0, "not_vessels": 0, "untimed": 0,
                         "forgotten": 0, "outside_watch_area": 0, "vessels_evicted": 0,
                         "vessels_over_limit": 0, "unprojectable": 0}
        self._max_vessels = config.picture.max_vessels
        #: MMSIs admitted, oldest first, that may still be heard only once: the candidates
        #: for eviction at ``max_vessels`` (checked, and pruned, lazily).
        self._once: dict[int, None] = {}
        #: MMSIs evicted at ``max_vessels``, for the sinks to drop (the pipeline empties it).
        self.evicted: list[int] = []
        #: held vessels, longest silent first: evicted at the bound when no vessel heard
        #: once is left, once silent past the live picture and any dark_vessel threshold
        self._silent = SilentQueue(_eviction_silence_s(config, zones))
        self._full_warned = False
        self._tick_s = config.picture.tick_interval_s
        self._inertia = config.membership.inertia_reports
        self._margin = config.membership.exit_margin_m
        self._next_tick = float("-inf")
        self._next_sweep = float("-inf")
        #: Restored alerts on a vessel the restored picture lacks -> the message time of the
        #: restart: no sweep forgets such a vessel, so they are ended here (see ``_sweep``).
        self._orphans: dict[str, float] = {}
        self._resume_pending = False
        self._watch_kinds: tuple[str, ...] = ()
        self._warned: set[str] = set()
        #: The first exception a rule raised in this ``process`` or ``tick`` (``_judge``).
        self._raised: Exception | None = None
        #: (lon, lat) -> (x, y, ids of the zones there) of the run's positions (project_ahead)
        self._ahead: dict[tuple[float, float], tuple[float, float, tuple[str, ...]]] = {}
        #: ``before_heard(ctx, receiver, now)`` of the rules that have one (``source_silent``).
        self._heard_hooks: list[Callable[[RuleContext, Receiver, float], None]] = [
            hook for rule in self.rules
            if (hook := getattr(rule, "before_heard", None)) is not None]
        #: Rule hooks that raised outside any report: on the zones at start, or taking back
        #: their state at a restart (``restore``); each said in a warning. The pipeline
        #: counts them among its ``rule_failures``.
        self.start_failures = 0
        #: ``on_station(ctx, report)`` of the rules that judge station messages (base
        #: stations, AtoN: no vessels, so no vessel rule sees them): ``invalid_mmsi``.
        self._station_hooks: list[Callable[[RuleContext, Report], None]] = [
            hook for rule in self.rules
            if (hook := getattr(rule, "on_station", None)) is not None]
        self._set_watch_area()
        for rule in self.rules:
            self._set_up(rule, lambda rule: rule.on_zones(self.ctx),
                         "raised on the zones at start", ZONES_TAKEN)

    def _set_watch_area(self) -> None:
        """With ``watch_area: port``, the zones that bound where alerts are raised."""
        for warning in zone_set_warnings(self.config, self.zones):
            if warning not in self._warned:  # once: the live service sets zones twice
                self._warned.add(warning)
                log.warning("%s", warning)
        wanted = self.config.watch_area == "port"
        watched = wanted and any(self.zones.of_kind(kind) for kind in WATCH_KINDS)
        self._watch_kinds = WATCH_KINDS if watched else ()

    def in_watch_area(self, vessel: Vessel) -> bool:
        """Whether the vessel is a subject of the rules (always, with no watch area)."""
        return not self._watch_kinds or not self._outside_watch_area(vessel, vessel.x,
                                                                     vessel.y)

    def _outside_watch_area(self, vessel: Vessel, x: float | None, y: float | None) -> bool:
        mmsi = vessel.mmsi
        if is_device(mmsi) or self.book.has_open(mmsi) or vessel.zones:
            # Emergency devices everywhere; open alerts run to their end; a vessel still a
            # member of a zone stays a subject until its exits are confirmed (leaving the
            # port limit is always leaving the watch area).
            return False
        if x is None or y is None:
            # A report with no position (static and voyage data): where the vessel was.
            x, y = vessel.x, vessel.y
            if x is None or y is None:
                return True
        kinds = self._watch_kinds
        return not any(zone.kind in kinds for zone in self.zones.zones_at(x, y))

    # -- input ----------------------------------------------------------------------------

    def project_ahead(self, runs: Iterable[tuple[Sequence[Report], int]]) -> None:
        """Project every position of a decoded run in one vectorised pyproj call, and find
        the zones containing each (``ZoneSet.ids_at``) while the grid is in the caches.

        ``runs`` is what ``Ingestor.decode_run`` gives (each line's reports). ``process``
        then looks a report's position up instead of projecting it alone: the same
        numbers (pyproj projects an array point by point). Keyed on the position itself,
        so a report this run did not hold is simply projected as before.
        """
        projector = self.zones.projector
        lons: list[float] = []
        lats: list[float] = []
        if projector is not None:
            for reports, _mark in runs:
                for report in reports:
                    lat, lon = report.lat, report.lon
                    if lat is not None and lon is not None:
                        lons.append(lon)
                        lats.append(lat)
        if len(lons) < PROJECT_AHEAD_MIN:
            self._ahead = {}
            return
        assert projector is not None
        x_array, y_array = projector.forward_arrays(np.array(lons, dtype=float),
                                                    np.array(lats, dtype=float))
        placed = np.isfinite(x_array) & np.isfinite(y_array)
        if not placed.all():
            # Left to ``process``, which takes such a fix as no position (``_project``).
            lons = np.array(lons)[placed].tolist()
            lats = np.array(lats)[placed].tolist()
            x_array, y_array = x_array[placed], y_array[placed]
        xs, ys = x_array.tolist(), y_array.tolist()
        ids_at = self.zones.ids_at
        self._ahead = dict(zip(zip(lons, lats, strict=True),
                               [(x, y, ids_at(x, y)) for x, y in zip(xs, ys, strict=True)],
                               strict=True))

    def process(self, report: Report) -> list[AlertEvent]:
        """One decoded report; returns the alert transitions it caused (in order)."""
        if report.time_source == "none":
            self.counters["untimed"] += 1  # rules need message time
            return []
        t = report.time
        if self._resume_pending:
            self._resume(t)
        picture = self.picture
        clock = self.heard_newest
        if t > clock:
            self.heard_newest = clock = t
        now = self.newest if self.newest > clock else clock
        for name in report.sources:
            self._before_heard(name, now)
            picture.hear(name, t, clock, now)
        if t >= self._next_tick:
            self._advance(t)
        elif t > self.newest:
            self.newest = self.ctx.now = t
        if report.own or report.msg_type in NON_VESSEL_TYPES:
            self.counters["not_vessels"] += 1
            if not report.own:
                self._station_message(report)
            return self._drained()
        self.counters["reports"] += 1
        speed = report.speed
        if speed is not None and speed >= UNRELIABLE_SPEED_KN and report.msg_type != SAR_TYPE:
            # "102.2 kn or more": a broken log in practice (a moored vessel reported
            # speeding, an anchored one on a collision course). The rules take it as no
            # speed; the sinks keep what was sent (the copy shares ``extra`` and ``sources``).
            report = replace(report, speed=None)
        vessel = picture.vessels.get(report.mmsi)
        if vessel is None:
            vessel = self._admit(report)
            if vessel is None:
                # Beyond max_vessels: the sinks keep it out of their tables too.
                report.extra["not_admitted"] = True
                return self._drained()
        ctx = self.ctx
        ctx.suspect = None
        ctx.fix_accepted = False
        history = vessel.history
        ctx.prev_seen = vessel.last_seen if vessel.messages else None
        ctx.prev_fix = history[-1] if history else None
        ctx.prev_report = vessel.last_report
        ctx.entered = ctx.exited = _NO_ZONES
        ctx.prev_jump = None
        # Projected once here, for the validators and the picture alike.
        x = y = None
        inside = None  # the zones at (x, y), when project_ahead found them
        lat, lon = report.lat, report.lon
        if lat is not None and lon is not None:
            if lat == vessel.lat and lon == vessel.lon and vessel.x is not None:
                x, y = vessel.x, vessel.y  # at rest: no need to project again
            else:
                ahead = self._ahead.get((lon, lat))  # projected with its run
                if ahead is not None:
                    x, y, inside = ahead
                else:
                    x, y = self._project(lon, lat)
        ctx.x, ctx.y = x, y
        if self._watch_kinds and self._outside_watch_area(vessel, x, y):
            # Outside the port's area: kept in the picture, never a subject of the rules.
            self.counters["outside_watch_area"] += 1
            picture.note(vessel, report)
            picture.move(vessel, report, x, y)
            return self._drained()
        self._judge(self._validators if x is not None else self._blind_validators,
                    vessel, report)
        picture.note(vessel, report)
        if ctx.suspect is None:
            picture.move(vessel, report, x, y)
            if x is not None and vessel.fix_time == t:
                ctx.fix_accepted = True
                if inside is not None and y is not None:
                    remember_zone_ids(vessel, x, y, inside)  # found with its run
                # A SAR aircraft flying over a zone is neither in nor out of it (a
                # helicopter over a wharf was a restricted entry, over a channel speeding).
                if (vessel.zones or self.zones.zones) and report.msg_type != SAR_TYPE:
                    entered, exited = update_membership(
                        vessel, self.zones, self._inertia, self._margin)
                    if entered or exited:
                        ctx.entered, ctx.exited = entered, exited
                        self._judge(self._zone_observers, vessel, report)
        else:
            self.counters["suspect"] += 1
            # Sinks see why: the API's picture and the MQTT feed keep the spoofed fix out.
            report.extra["suspect"] = ctx.suspect
        key = (report.msg_type, ctx.fix_accepted, is_ship_mmsi(vessel.mmsi))
        observers = self._observer_sets.get(key)
        if observers is None:
            observers = self._observers_for(key)
        self._judge(observers, vessel, report)
        return self._drained()

    def _station_message(self, report: Report) -> None:
        """A base station's or AtoN's message: judged by the rules that judge stations, and
        its position, when it carries the MMSI of a class A or B vessel, marked as a fix
        the rules rejected (stored, but no point of that vessel's track: a forged type 21
        with a ship's MMSI drew a spike into it). A type 11 is the ship's own answer to an
        inquiry: its position is the ship's."""
        vessel = self.picture.vessels.get(report.mmsi)
        # A vessel: one heard on class A or B messages (an AtoN sending type 6 is none).
        if (vessel is not None and vessel.ais_class is not None and report.lat is not None
                and report.msg_type != UTC_RESPONSE_TYPE):
            self.counters["suspect"] += 1
            report.extra["suspect"] = STATION_MESSAGE
        if self._station_hooks:
            self._judge_station(report)

    def _judge_station(self, report: Report) -> None:
        """A station message (base station, AtoN) to the rules that judge stations, unless
        the watch area leaves it out: a station with no position, or placed outside it."""
        if self._watch_kinds:
            lat, lon = report.lat, report.lon
            if lat is None or lon is None:
                return
            x, y = self._project(lon, lat)
            if x is None or y is None or not any(
                    zone.kind in self._watch_kinds for zone in self.zones.zones_at(x, y)):
                return
        rest = iter(self._station_hooks)
        while True:  # as ``_judge``: one hook raising leaves the others judging
            try:
                for hook in rest:
                    hook(self.ctx, report)
                return
            except Exception as exc:
                self._failed(exc)

    def _judge(self, rules: list[Rule], vessel: Vessel, report: Report) -> None:
        """Each rule's ``on_report``; one that raises costs only its own judgement of the
        report: the rules after it still see it (stopped there, restricted_entry missed an
        exit the picture had taken, and its alert never ended). ``_drained`` raises it."""
        ctx = self.ctx
        rest = iter(rules)
        while True:
            try:
                for rule in rest:
                    rule.on_report(ctx, vessel, report)
                return
            except Exception as exc:
                self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """The first rule failure of this report or tick, raised once the others ran."""
        if self._raised is None:
            self._raised = exc

    def _drained(self) -> list[AlertEvent]:
        """The transitions made, or the first exception a rule raised meanwhile (the
        pipeline counts and logs it, then takes the transitions with ``drain``)."""
        self._raise_failure()
        return self.book.drain()

    def _raise_failure(self) -> None:
        """Raise the first rule failure kept by ``_failed``, if any, and forget it."""
        if self._raised is not None:
            exc, self._raised = self._raised, None
            raise exc

    def _project(self, lon: float, lat: float) -> tuple[float | None, float | None]:
        """A fix in the port's metres, or (None, None) where the projection has no point.

        Transverse Mercator (UTM) goes to infinity 90° of longitude from its central meridian
        near the equator: from a port in Denmark, Singapore Strait; from Gladstone, the
        Indian Ocean at 54–72° E. A national or satellite feed hears vessels there, and one
        such fix in a pairwise rule's grid stopped the whole service. The rules take it as
        a report without a position (counted as ``unprojectable``); the sinks keep it.
        """
        x, y = self.zones.project(lon, lat)
        if math.isfinite(x) and math.isfinite(y):
            return x, y
        self.counters["unprojectable"] += 1
        if "unprojectable" not in self._warned:
            self._warned.add("unprojectable")
            log.warning("a fix at %.4f, %.4f has no place in the zones' projection %s (about "
                        "90° of longitude from it): the rules take such fixes as reports "
                        "without a position (counted: unprojectable)", lat, lon,
                        self.zones.crs)
        return None, None

    def _admit(self, report: Report) -> Vessel | None:
        """A new MMSI: a vessel of its own while fewer than ``max_vessels`` are held, else
        in place of the oldest one heard only once (a forged or garbled MMSI is heard once;
        a real vessel reports every few seconds to minutes), else of the one silent longest
        and long enough to be past every silence rule, else none (counted).

        Refusing outright would let a flood of forged MMSIs keep every real newcomer out of
        the rules for ``forget_s``: sent twice each, so none is heard only once, 40,000
        lines did so for 24 h. Evicting the longest silent at once would drop real vessels
        that may be about to be called dark.
        """
        if len(self.picture.vessels) >= self._max_vessels and not self._evict_one():
            self.counters["vessels_over_limit"] += 1
            if not self._full_warned:
                self._full_warned = True
                log.warning("%d vessels held, each heard within %.0f s or with an open alert "
                            "or, heard once, in a zone: MMSI %d and any further new one are "
                            "not admitted until one is silent that long "
                            "(rules.picture.max_vessels; a feed open to injection can forge "
                            "any number)", len(self.picture.vessels), self._silent.silence_s,
                            report.mmsi)
            return None
        self._once[report.mmsi] = None
        return self.picture.vessel_for(report)

    def _evict_one(self) -> bool:
        """Drop the oldest vessel heard only once with no open alert nor zone, else the
        longest silent one past ``SilentQueue.silence_s`` with no open alert; whether one
        was."""
        vessels, once, book = self.picture.vessels, self._once, self.book
        while once:
            mmsi = next(iter(once))
            del once[mmsi]
            vessel = vessels.get(mmsi)
            if vessel is None or vessel.messages > 1 or book.has_open(mmsi) \
                    or vessel.zones:
                continue  # heard again, forgotten, or of note: no longer a candidate
            self._evict(mmsi)
            return True
        silent = self._silent.take(vessels, self.newest, book.has_open)
        if silent is None:
            return False
        self._evict(silent)
        return True

    def _evict(self, mmsi: int) -> None:
        del self.picture.vessels[mmsi]
        self._tell_rules(lambda rule: rule.on_forget(self.ctx, {mmsi}))
        self.counters["vessels_evicted"] += 1
        self.evicted.append(mmsi)

    def _observers_for(self, key: tuple[int, bool, bool]) -> list[Rule]:
        msg_type, fix, ship = key
        chosen = [rule for rule in self._observers
                  if (fix or not getattr(rule, "needs_fix", False))
                  and not (ship and getattr(rule, "non_ship_only", False))
                  and not (msg_type == SAR_TYPE and getattr(rule, "vessels_only", False))
                  and ((types := getattr(rule, "msg_types", None)) is None
                       or msg_type in types)]
        self._observer_sets[key] = chosen
        return chosen

    def tick(self, now: float) -> list[AlertEvent]:
        """Run timers up to ``now`` (message time, or wall time in live mode).

        A tick is no message: after a restart the downtime is judged at the first message
        (``process``, ``source_heard``), not at a live tick near the restored clock.
        """
        if now >= self._next_tick:
            self._advance(now)
        return self._drained()

    def source_heard(self, receiver: str, time: float) -> None:
        """A receiver was heard at message time ``time``, told in line order before the
        line's reports (``Pipeline.in_line_order``): also when no report of it reaches the
        rules (a duplicate, own ship, a message that did not decode).

        No timers run here: they run on ticks, and a receiver's state must not depend on
        when those come (live ticks follow the wall clock).
        """
        if self._resume_pending:
            self._resume(time)
        clock = self.heard_newest
        if time > clock:
            self.heard_newest = clock = time
        now = max(clock, self.newest)
        self._before_heard(receiver, now)
        # Not counted: the line's report (if any) counts it when it reaches the rules.
        self.picture.hear(receiver, time, clock, now, 0)
        # Raised once heard; the transitions stay for the next ``process`` or ``tick``.
        self._raise_failure()

    def _before_heard(self, receiver: str, now: float) -> None:
        """Rules that judge a receiver's silence (``source_silent``) do so at ``now`` before
        it is heard: replayed, no tick may have come during the silence (ticks come with
        lines), and the receivers of the line that ends it would otherwise look just heard
        when the timers run at that line; live, the wall clock's ticks noticed it."""
        if self._heard_hooks:
            rec = self.picture.receivers.get(receiver)
            if rec is not None:
                rest = iter(self._heard_hooks)
                while True:  # as ``_judge``: one hook raising leaves the others judging
                    try:
                        for hook in rest:
                            hook(self.ctx, rec, now)
                        return
                    except Exception as exc:
                        self._failed(exc)

    def report_heard_by(self, report: Report, receiver: str) -> None:
        """``receiver`` heard ``report`` too: a duplicate of it, added to its ``sources``
        after the report reached the rules (ingest merges copies within its window).

        The vessel counts it among its receivers at the report's time, as if the copy had
        come first: ``dark_vessel`` asks which receivers heard a vessel, and cutting the
        faster receiver as a vessel switches off must not excuse the silence. A report the
        picture did not take (own ship, untimed, not a vessel) or has not taken yet (its
        copy came in the same line: ``Picture.note`` copies the receiver then) is left alone.
        """
        if report.own or report.time_source == "none" or report.msg_type in NON_VESSEL_TYPES:
            return
        vessel = self.picture.vessels.get(report.mmsi)
        if vessel is not None and vessel.sources.get(receiver, _NEVER) < report.time:
            vessel.sources[receiver] = report.time

    def _advance(self, now: float) -> None:
        if now > self.newest:
            self.newest = self.ctx.now = now
        self._next_tick = now + self._tick_s
        ctx = self.ctx
        self._tell_rules(lambda rule: rule.on_tick(ctx, now))  # one raising: others still run
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Drop vessels silent for ``forget_s``, ending the alerts still open on them first.

        Kept while an alert was open, a vessel that never came back (a dark one, a garbled
        MMSI) kept its alert and its state for as long as the service ran.
        """
        forget_s = self.config.picture.forget_s
        if self._orphans:
            self._end_orphans(now, forget_s)
        gone = set(self.picture.forget(now - forget_s))
        vessels = self.picture.vessels
        self._once = {m: None for m in self._once
                      if (v := vessels.get(m)) is not None and v.messages <= 1}
        if not gone:
            return
        for alert in self.book.open_alerts():
            if alert.mmsi in gone or alert.other_mmsi in gone:
                self.book.end(alert, now, {"end_reason": "forgotten", "forget_s": forget_s})
        self._tell_rules(lambda rule: rule.on_forget(self.ctx, gone))
        self.counters["forgotten"] += len(gone)

    def _tell_rules(self, tell: Callable[[Rule], object]) -> None:
        """``tell`` each rule of a change (a tick, vessels forgotten, zones replaced); one raising
        misses only that change, as in ``_judge``: stopped there, the rules after it kept
        the state of vessels gone or of zones removed. ``_failed`` keeps the exception."""
        rest = iter(self.rules)
        while True:
            try:
                for rule in rest:
                    tell(rule)
                return
            except Exception as exc:
                self._failed(exc)

    def _end_orphans(self, now: float, forget_s: float) -> None:
        """End restored alerts whose vessel was not in the restored picture and has not
        been heard in ``forget_s`` since the restart, as if it had been forgotten then (an
        alert opened after the last state save, then a crash; one an operator resolved
        while it held, which releases before this one dropped at a restart). Heard again,
        the vessel is in the picture and the sweep judges it like any other."""
        vessels, book = self.picture.vessels, self.book
        for alert_id, since in list(self._orphans.items()):
            alert = book.get(alert_id)
            if alert is None or (alert.mmsi in vessels and (
                    alert.other_mmsi is None or alert.other_mmsi in vessels)):
                del self._orphans[alert_id]
            elif since == _NEVER:  # restored with no time at all: count from here
                self._orphans[alert_id] = now
            elif now - since >= forget_s:
                del self._orphans[alert_id]
                book.end(alert, now, {"end_reason": "forgotten", "forget_s": forget_s})

    # -- zones, alerts, restart -----------------------------------------------------------

    def set_zones(self, zones: ZoneSet) -> list[AlertEvent]:
        """Swap zones without restarting; vessels keep their state.

        Vessels are re-projected, memberships of removed zones dropped silently, and rules
        end alerts tied to zones that are gone; those transitions are returned. A rule
        raising on the change is raised once every other rule took the new zones (they are
        in force; its transitions are kept for ``drain``).
        """
        self.zones = self.ctx.zones = zones
        self._silent.silence_s = _eviction_silence_s(self.config, zones)
        self._ahead = {}  # projected with the old zones' projection
        self._set_watch_area()
        for vessel in self.picture.vessels.values():
            _reproject(vessel, zones)
        self._tell_rules(lambda rule: rule.on_zones(self.ctx))
        return self._drained()

    def drain(self) -> list[AlertEvent]:
        """The transitions made since ``process`` or ``tick`` last returned: those of a call
        that raised (the pipeline keeps them, see ``Pipeline._rules_failed``)."""
        return self.book.drain()

    def open_alerts(self) -> list[Alert]:
        """Active alerts (open or acknowledged), for the store and the API."""
        return self.book.open_alerts()

    def saved_state(self) -> dict[str, Any]:
        """What the rules know that belongs to no vessel, in JSON parts, for a restart:
        the receivers' continuity and rules' own state (see ``restore``)."""
        parts: dict[str, Any] = {"receivers": {
            rec.name: [rec.last_heard, None if rec.up_since == _NEVER else rec.up_since,
                       rec.messages, rec.heard_at, rec.heard_live]
            for rec in self.picture.receivers.values()}}
        for rule in self.rules:
            state = rule.saved_state()
            if state is not None:
                parts[f"rule:{rule.name}"] = state
        return parts

    def restore(self, vessels: Iterable[Vessel | dict[str, Any]],
                open_alerts: Iterable[Alert], saved: Mapping[str, Any] | None = None, *,
                latest: float | None = None) -> None:
        """Resume after a restart from saved vessel states, still-active alerts and what
        ``saved_state`` gave (``saved``).

        Receivers come back with their continuity; without it (state saved before it was
        kept), they are rebuilt from the vessels' ``sources``. When the next message time
        comes more than its ``silent_s`` after a receiver was last heard, its continuity starts
        again there (so the downtime cannot make vessels dark) and its silence counts from
        there for ``source_silent`` (an alert open already stays open).

        ``latest`` (live: wall time plus ``max_clock_lead_s``): saved times after it came
        from a clock running ahead that nothing guarded (a line stamped a year ahead made
        every vessel and receiver look heard for a year after a restart); they are taken
        as ``latest``, and the log says how many vessels and receivers had them.

        A rule raising as it takes its state back, or whose saved part cannot be read,
        starts afresh; the others restore as before (``_restore_rule``). A saved part the
        store could not read is the exception it raised reading it.
        """
        picture = self.picture
        saved = saved or {}
        ahead = {"vessels": 0, "receivers": self._restore_receivers(saved.get("receivers"),
                                                                    latest)}
        for vessel in self._vessels_from(vessels):
            if latest is not None and clamp_vessel(vessel, latest):
                ahead["vessels"] += 1
            if vessel.history.maxlen != picture.history_len:
                vessel.history = deque(vessel.history, maxlen=picture.history_len)
            _reproject(vessel, self.zones)
            picture.vessels[vessel.mmsi] = vessel
            if vessel.messages <= 1:
                self._once[vessel.mmsi] = None
            self.newest = max(self.newest, vessel.last_seen)
            for name, heard in vessel.sources.items():
                rec = picture.receivers.get(name)
                if rec is None:
                    picture.hear(name, heard, heard, heard)
                    picture.receivers[name].up_since = float("-inf")
                elif heard > rec.last_heard:
                    rec.last_heard = heard
                    rec.heard_at = max(rec.heard_at, heard)
                    rec.heard_live = max(rec.heard_live, heard)
        if ahead["vessels"] or ahead["receivers"]:
            log.warning("restored state: %d vessels and %d receivers had times after %s "
                        "(a clock running ahead); taken as that time", ahead["vessels"],
                        ahead["receivers"], iso_time(latest or 0.0))
        self.ctx.now = self.newest
        self.heard_newest = max([self.heard_newest, self.newest,
                                 *(rec.heard_at for rec in picture.receivers.values())])
        self.book.restore(open_alerts)
        held = picture.vessels
        self._orphans = {
            alert.id: self.newest for alert in self.book.open_alerts()
            if (alert.mmsi is not None and alert.mmsi not in held)
            or (alert.other_mmsi is not None and alert.other_mmsi not in held)}
        self._resume_pending = True
        for rule in self.rules:
            self._restore_rule(rule, saved.get(f"rule:{rule.name}"))
        self._left_over(saved)
        # The zones may have changed while the service was down (the file won over a version
        # saved over the API, or was edited): alerts of zones gone or changed end as a live
        # swap ends them; the vessels' memberships of removed zones went without an exit.
        for rule in self.rules:
            self._set_up(rule, lambda rule: rule.on_zones(self.ctx),
                         "raised on the zones at the restart", ZONES_TAKEN)

    @staticmethod
    def _vessels_from(items: Iterable[Vessel | dict[str, Any]]) -> Iterator[Vessel]:
        """The saved vessels; one this version cannot take back (a field it does not know,
        saved by a later one; a value of another kind) is left out and said, not the
        start stopped: it starts afresh when heard again."""
        unread: dict[object, str] = {}
        for item in items:
            if isinstance(item, Vessel):
                yield item
                continue
            try:
                vessel = Vessel.from_state(item)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                unread[item.get("mmsi") if isinstance(item, dict) else None] = unread_reason(exc)
                continue
            yield vessel
        vessels_left_out(unread)

    def _restore_receivers(self, saved: Any, latest: float | None) -> int:
        """The receivers' continuity; how many had times after ``latest``. Saved state that
        cannot be read (not JSON, or of another shape) is said: those receivers are rebuilt
        from their vessels' ``sources``, as from state saved before continuity was kept."""
        if saved is None:
            return 0
        if not isinstance(saved, Mapping):
            log.warning("the receivers' saved continuity could not be read (%s): they are "
                        "rebuilt from their vessels' receivers", unread_reason(saved))
            return 0
        ahead = 0
        unread: list[str] = []
        for name, kept in saved.items():
            try:
                # heard_at: the port's clock when last heard (not kept before stop 15: its
                # own stamp then); without it a feed stamped behind its arrival looked silent
                # right after a restart. heard_live: the engine's clock then (kept since
                # heard_at is message time only; before, heard_at was both).
                heard, up_since, messages, *clocks = kept
                times = (float(heard), _NEVER if up_since is None else float(up_since),
                         float(clocks[0] if clocks else heard))
                live = float(clocks[1]) if len(clocks) > 1 else times[2]
                count = int(messages)
            except (TypeError, ValueError) as exc:
                unread.append(f"{name} ({unread_reason(exc)})")
                continue
            restored = self.picture.new_receiver(name, times[0], times[1])
            restored.messages, restored.heard_at, restored.heard_live = count, times[2], live
            if latest is not None and clamp_receiver(restored, latest):
                ahead += 1
        if unread:
            log.warning("the saved continuity of receiver %s could not be read: rebuilt from "
                        "their vessels' receivers", ", ".join(unread))
        return ahead

    def _restore_rule(self, rule: Rule, state: Any) -> None:
        """``on_restore``, then ``load_state`` of what the rule saved. Either raising (a bug,
        a saved state of an older shape or that the store could not read) costs that rule
        its saved state only: it starts afresh (``on_restore`` again drops what a load
        that broke off took), and every other rule restores as before."""
        if not self._set_up(rule, lambda rule: rule.on_restore(self.ctx),
                            "raised rebuilding its state", AFRESH):
            return
        if state is None:
            return
        if isinstance(state, Exception):  # a part the store could not read (not JSON)
            self._start_failed(rule, "its saved state cannot be read", state, AFRESH,
                               trace=False)
        elif not self._set_up(rule, lambda rule: rule.load_state(self.ctx, state),
                              "raised taking back its saved state", AFRESH):
            self._set_up(rule, lambda rule: rule.on_restore(self.ctx),
                         "raised starting afresh", AFRESH)

    def _set_up(self, rule: Rule, call: Callable[[Rule], object], what: str,
                then: str) -> bool:
        """``call`` the rule's hook outside any report; False (said and counted) if it
        raised: the service starts, or a replay resumes, without that rule's part."""
        try:
            call(rule)
        except Exception as exc:
            self._start_failed(rule, what, exc, then, trace=True)
            return False
        return True

    def _start_failed(self, rule: Rule, what: str, exc: Exception, then: str, *,
                      trace: bool) -> None:
        """Said once, with the traceback of a rule's own bug; counted (``start_failures``)."""
        self.start_failures += 1
        log.warning("rule %s: %s (%s: %s); %s (counted in rule_failures)", rule.name, what,
                    type(exc).__name__, exc, then, exc_info=exc if trace else None)

    def _left_over(self, saved: Mapping[str, Any]) -> None:
        """Say which saved rule states no rule here takes back (the next save drops them)."""
        mine = {f"rule:{rule.name}" for rule in self.rules}
        known = {name for name, _factory in REGISTRY}
        for part in sorted(saved):
            name = part.removeprefix("rule:")
            if part.startswith("rule:") and part not in mine:
                why = ("the rule is switched off" if name in known
                       else "this version has no such rule")
                log.warning("the state rule %s saved is not restored: %s (it is dropped at "
                            "the next save)", name, why)

    def _resume(self, now: float) -> None:
        self._resume_pending = False
        for rec in self.picture.receivers.values():
            if now - rec.heard_live > rec.silent_s:
                rec.up_since = rec.silence_from = now

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "vessels": len(self.picture), "open_alerts": len(self.book),
                "receivers": len(self.picture.receivers)}


def vessels_left_out(unread: Mapping[Any, str]) -> None:
    """Say the saved vessels not restored (MMSI -> why), in one warning."""
    if unread:
        shown = "; ".join(f"{mmsi}: {why}" for mmsi, why in list(unread.items())[:5])
        log.warning("the saved state of %d vessel%s could not be read (MMSI %s%s): left out, "
                    "each starts afresh when heard again", len(unread),
                    "" if len(unread) == 1 else "s", shown, "; …" if len(unread) > 5 else "")


def unread_reason(value: object) -> str:
    """Why a saved part could not be read, for a warning: the exception reading it, or the
    kind of value found where an object was saved."""
    if isinstance(value, Exception):
        return f"{type(value).__name__}: {value}"
    return f"a {type(value).__name__} where an object was saved"


def _reproject(vessel: Vessel, zones: ZoneSet) -> None:
    vessel._inside_at = None
    if vessel.lat is not None and vessel.lon is not None:
        x, y = zones.project(vessel.lon, vessel.lat)
        # Where the new projection has no point (Engine._project), no position for the rules.
        placed = math.isfinite(x) and math.isfinite(y)
        vessel.x, vessel.y = (x, y) if placed else (None, None)
    if vessel.history:
        vessel.history = deque(
            (fix._replace(x=xy[0], y=xy[1]) for fix in vessel.history
             for xy in (zones.project(fix.lon, fix.lat),)
             if math.isfinite(xy[0]) and math.isfinite(xy[1])), maxlen=vessel.history.maxlen)
    for zid in [z for z in vessel.zones if z not in zones.by_id]:
        del vessel.zones[zid]
    for zid in [z for z in vessel.pending if z not in zones.by_id]:
        del vessel.pending[zid]
