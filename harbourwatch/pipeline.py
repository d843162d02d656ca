"""The pipeline that joins the stages: lines → ingest → picture and rules → sinks.

Data flows one way. The consumer loop is the only place that calls the ingestor and the
engine, so neither needs locks. Rules run on message time; the engine's timers are
advanced whenever the newest message time moves on by a second, and in live mode also by the
wall time elapsed since it last did (so a receiver that falls silent is noticed although no
line arrives).

Lines are decoded a run at a time (up to :data:`READ_AHEAD_LINES`) before their reports
go to the rules: each stage then keeps its code and data in the CPU caches (replays run
13-15 % faster than alternating line by line). The ingestor journals what a later line
tells about earlier reports and receivers, and the pipeline applies it in line order, so
no result depends on how the lines were grouped (live batches follow arrival, replays are
fixed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from geofence.alert import Alert, AlertEvent
from harbourwatch.operator_acts import OperatorActs
from harbourwatch.sinks import Sink
from harbourwatch.snoozes import SnoozeBook
from ingest.ingestor import Decoded, Heard, Ingestor, LineInput
from ingest.report import Report
from ingest.sources.queue import LineQueue, LineQueueClosed

if TYPE_CHECKING:
    from geofence.zones import ZoneSet

log = logging.getLogger(__name__)
_NEVER = float("-inf")

_TICK_S = 1.0
#: Most lines decoded ahead of the rules (live batches are whatever is queued, up to this).
READ_AHEAD_LINES = 400


class RuleEngine(Protocol):
    """What the pipeline needs from ``geofence.engine.Engine``."""

    #: What the rules did with the reports (suspect fixes, outside the watch area, ...).
    counters: dict[str, int]
    #: The newest message time the rules have seen (restored at start-up; -inf: none).
    newest: float

    def process(self, report: Report) -> list[AlertEvent]: ...

    def tick(self, now: float) -> list[AlertEvent]: ...

    def source_heard(self, receiver: str, time: float) -> None: ...

    def report_heard_by(self, report: Report, receiver: str) -> None: ...

    def drain(self) -> list[AlertEvent]: ...

    def set_zones(self, zones: ZoneSet) -> list[AlertEvent]: ...

    def open_alerts(self) -> list[Alert]: ...


class Pipeline:
    """Feeds lines through ingest and rules, hands results to every sink.

    Lines go in through ``feed_line``, ``feed_lines`` or ``decode_ahead`` (or come decoded
    with their journal through ``in_line_order``), never through the ingestor itself: the
    rules learn of receivers heard only through the ingestor's journal, which the pipeline
    sets for each run.
    """

    def __init__(self, ingestor: Ingestor, engine: RuleEngine, sinks: Iterable[Sink] = (),
                 *, live: bool = False, snoozes: SnoozeBook | None = None) -> None:
        self.ingestor = ingestor
        self.engine = engine
        self.sinks: list[Sink] = list(sinks)
        self.live = live
        self.reports = 0
        self.alert_events = 0
        #: Alert transitions by (rule, transition): what /metrics labels them by.
        self.alert_transitions: dict[tuple[str, str], int] = {}
        self.own_reports = 0
        self._next_tick = float("-inf")
        self.started_wall = time.time()
        self.snoozes = snoozes if snoozes is not None else SnoozeBook()
        self.muted = 0
        #: Acks and resolves, kept in later transitions of the same alerts.
        self.operator_acts = OperatorActs()
        #: Sink class name -> calls that raised (see ``_sink_failed``).
        self.sink_failures: dict[str, int] = {}
        #: Reports, ticks, receivers heard and zone changes the rules raised on
        #: (see ``_rules_failed``; ``rule_failures`` adds those at start).
        self._rule_failures = 0
        #: A replay's ``--start``: lines stamped before it are skipped (``replay.player``),
        #: so the receivers they name are not heard either (``_apply``).
        self.skip_before: float | None = None
        # Message time as the live clock last saw it, and when (time.monotonic()).
        self._wall_newest = _NEVER
        self._wall_since = 0.0
        #: Vessels the rules evicted at their bound (``Engine.evicted``; optional).
        self._evicted: list[int] | None = getattr(engine, "evicted", None)

    # -- synchronous core (also used directly by benchmarks and tests) --------------------

    def feed_line(self, source: str, data: bytes, received: float | None) -> None:
        self.feed_lines(((source, data, received),))

    def feed_lines(self, lines: Iterable[LineInput]) -> None:
        """Decode ``lines``, then hand their reports to the rules and sinks."""
        for report in self.decode_ahead(lines):
            self.handle_report(report)

    def decode_ahead(self, lines: Iterable[LineInput]) -> Iterator[Report]:
        """Decode every line first, then yield the reports in order.

        Before a line's reports are yielded, what the ingestor journaled for that line and
        those before it is applied, so each report is exactly what it would be line by
        line (e.g. ``sources`` without the receivers of duplicates in later lines). Each
        run keeps its own journal: a run left unfinished (an exception, a cancelled replay)
        applies the rest when it is closed and never disturbs the next one.
        """
        return self.in_line_order(*self.ingestor.decode_run(lines))

    def held_reports(self) -> Iterator[Report]:
        """End of input: the reports the ingestor still holds, in order (see ``finish``)."""
        return self.in_line_order(*self.ingestor.decode_run(None))

    def in_line_order(self, decoded: Decoded, journal: list[Heard]) -> Iterator[Report]:
        """The reports of decoded lines, each line's ``(reports, journal length after it)``,
        with the journal applied just before them (also for lines decoded in another
        process: ``replay.decoding``)."""
        # Optional (``Engine.project_ahead``): the run's positions projected in one call.
        project_ahead = getattr(self.engine, "project_ahead", None)
        if project_ahead is not None:
            project_ahead(decoded)
        applied = 0
        try:
            for reports, mark in decoded:
                if mark > applied:
                    self._apply(journal, applied, mark)
                    applied = mark
                yield from reports
        finally:
            self._apply(journal, applied, len(journal))

    def _apply(self, journal: list[Heard], start: int, stop: int) -> None:
        """Journal entries ``start:stop``: receivers' times, duplicates' receivers.

        The engine hears each receiver here, in line order, not at the next tick: when a
        receiver was last heard, on the port's clock, is then a matter of message times and
        line order only (told at a tick, it was the clock at that tick, and so depended on
        how lines were batched and, live, on the wall clock: ``source_silent``'s start and
        id with it).
        """
        engine = self.engine
        hooks: list[Callable[[Report, str], None]] | None = None
        skip_before = self.skip_before
        for index in range(start, stop):
            receiver, time, duplicate_of = journal[index]
            if skip_before is not None and time < skip_before:
                # Judged by the run that saved the state resumed: heard again after the
                # restore, a receiver silent at the cut was heard at the restored clock
                # (its source_silent alert ended at --start, and a second one opened).
                continue
            if duplicate_of is None:
                try:
                    engine.source_heard(receiver, time)
                except Exception:
                    # Its transitions leave with the next report or tick, as on success.
                    self._rule_failed(f"receiver {receiver} heard")
            elif receiver not in duplicate_of.sources:
                duplicate_of.sources.append(receiver)
                # The vessel's receivers too: Picture.note copied the sources already.
                engine.report_heard_by(duplicate_of, receiver)
                if hooks is None:  # sinks that show a report's receivers (the API's picture)
                    hooks = [hook for sink in self.sinks
                             if (hook := getattr(sink, "on_duplicate", None)) is not None]
                for hook in hooks:
                    hook(duplicate_of, receiver)

    def handle_report(self, report: Report) -> None:
        """Rules first, then sinks: a report and the alerts it caused leave together."""
        self.reports += 1
        if report.own:
            # Own-ship (VDO) is kept apart: stored and shown, but never a target of the rules.
            self.own_reports += 1
            events: list[AlertEvent] = []
        else:
            try:
                events = self.engine.process(report)
            except Exception:
                events = self._rules_failed(report)
            if self._evicted:
                self._drop_vessels(self._evicted)
        for sink in self.sinks:
            try:
                sink.on_report(report)
            except Exception:
                self._sink_failed(sink)
        if events:
            self.emit(events)
        if report.time >= self._next_tick:
            self.tick(report.time)

    def _drop_vessels(self, evicted: list[int]) -> None:
        """Vessels the rules no longer hold leave the sinks' per-vessel tables too (the API's
        picture, the MQTT feed): with only what the rules admitted going on, those tables are
        bound by ``rules.picture.max_vessels`` as well."""
        mmsis = tuple(evicted)
        evicted.clear()
        for sink in self.sinks:
            drop = getattr(sink, "drop_vessels", None)
            if drop is not None:
                try:
                    drop(mmsis)
                except Exception:
                    self._sink_failed(sink)

    def tick(self, now: float) -> None:
        self._next_tick = now + _TICK_S
        try:
            events = self.engine.tick(now)
        except Exception:
            events = self._rules_failed(None)
        if events:
            self.emit(events)

    def finish(self) -> None:
        """End of input: release what the ingestor still holds, run the last timers."""
        for report in self.held_reports():
            self.handle_report(report)
        newest = self.ingestor.newest
        if newest is not None:
            self.tick(newest)

    def emit(self, events: list[AlertEvent]) -> None:
        """Hand alert transitions to every sink (also used for zone swaps by the API)."""
        self.alert_events += len(events)
        acts = self.operator_acts
        counts = self.alert_transitions
        for event in events:
            key = (str(event.alert["rule"]), str(event.transition))
            counts[key] = counts.get(key, 0) + 1
            if acts:
                event = acts.over(event)
            if self.snoozes.muted(event):
                # Recorded, not pushed: only sinks that keep snoozed alerts get it.
                self.muted += 1
                for sink in self.sinks:
                    if getattr(sink, "keeps_snoozed", False):
                        self._to_sink(sink, event)
                continue
            for sink in self.sinks:
                self._to_sink(sink, event)

    def _to_sink(self, sink: Sink, event: AlertEvent) -> None:
        try:
            sink.on_alert(event)
        except Exception:
            self._sink_failed(sink)

    def _sink_failed(self, sink: Sink) -> None:
        """One output failing (a full disk under the alerts file, a bug) must not stop ingest
        and the other outputs: counted (``/stats`` ``sink_failures``) and logged, the first
        time and then every thousandth."""
        name = type(sink).__name__
        failures = self.sink_failures[name] = self.sink_failures.get(name, 0) + 1
        if failures == 1 or failures % 1000 == 0:
            log.exception("%s failed (%d times so far); ingest and the other outputs go on",
                          name, failures)

    def set_zones(self, zones: ZoneSet) -> list[str]:
        """New zones for the running rules (the API's ``PUT /zones``), the alerts they end
        handed to the sinks. A rule raising on them is counted and logged as on a report;
        every other rule took them, and the zones are in force. Returns what went wrong,
        for the API's answer (``warnings``)."""
        try:
            events = self.engine.set_zones(zones)
            problems = []
        except Exception as exc:
            events = self._rules_failed(None, "a zone change")
            problems = [f"a rule raised on the new zones ({type(exc).__name__}: {exc}); "
                        "the zones are in force and the other rules took them: counted "
                        "in rule_failures, see the service's log"]
        if events:
            self.emit(events)
        return problems

    def _rules_failed(self, report: Report | None, what: str = "a tick"
                      ) -> list[AlertEvent]:
        """A rule raising on one report (or tick) must not stop the watch: anyone with an
        AIS transmitter can send the report that finds a bug, and every later report would
        go unjudged. Counted (``/stats`` ``rule_failures``, and a failed exit at stop) and
        logged with the report, the first time and then every thousandth; every other rule
        judged it (``Engine._judge``), their transitions are kept, and the report still
        goes to the sinks."""
        if report is not None:
            what = f"MMSI {report.mmsi}, type {report.msg_type}, {report.nmea}"
        self._rule_failed(what)
        return self.engine.drain()

    def _rule_failed(self, what: str) -> None:
        """Counted and logged (in an ``except`` block), the first time and every thousandth;
        also when a receiver heard or a zone change is what a rule raised on."""
        self._rule_failures += 1
        if self._rule_failures == 1 or self._rule_failures % 1000 == 0:
            log.exception("the rules raised on %s (%d times so far); the other rules judged it",
                          what, self.rule_failures)

    @property
    def rule_failures(self) -> int:
        """Everything the rules raised on: also their hooks at start and at a restart
        (``Engine.start_failures``: each said once, in a warning, when it came)."""
        return self._rule_failures + getattr(self.engine, "start_failures", 0)

    # -- asyncio driving ------------------------------------------------------------------

    async def start_sinks(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def stop_sinks(self) -> None:
        for sink in reversed(self.sinks):
            try:
                await sink.stop()
            except Exception:
                log.exception("sink %r failed to stop cleanly", sink)

    async def consume(self, queue: LineQueue) -> None:
        """Take lines until the queue closes: whatever is queued, up to a read-ahead run."""
        ticker = asyncio.create_task(self._wall_ticks()) if self.live else None
        try:
            while True:
                try:
                    batch = await queue.get_many(READ_AHEAD_LINES)
                except LineQueueClosed:
                    break
                self.feed_lines([(line.source, line.data, line.received) for line in batch])
            self.finish()
        finally:
            if ticker is not None:
                ticker.cancel()

    async def _wall_ticks(self) -> None:
        """Live only: timers advance with the wall clock when no message arrives."""
        while True:
            await asyncio.sleep(_TICK_S)
            self.wall_tick(time.monotonic())

    def wall_tick(self, monotonic_now: float) -> None:
        """Advance the timers by the wall time elapsed since message time last moved on.

        Never to the wall clock itself: a feed stamped behind its arrival (a national feed's
        delay, a drill piping an old recording in) would make every receiver and vessel
        look silent. Before the first message, the clock restored at start-up moves on.
        """
        newest = self.ingestor.newest
        if newest is None:
            # No line yet: the clock restored at start-up, taken once (the ticks move the
            # engine's clock on).
            newest = self._wall_newest if self._wall_newest != _NEVER else self.engine.newest
            if newest == _NEVER:
                return
        if (self._wall_newest == _NEVER
                or newest > self._wall_newest + (monotonic_now - self._wall_since)):
            # Message time moved on past the clock: take it. Not when it moved on less (a
            # feed stamped behind its arrival, once a source ahead of it fell silent): the
            # clock would step back by that feed's delay, and silences be noticed late.
            self._wall_newest, self._wall_since = newest, monotonic_now
        self.tick(self._wall_newest + (monotonic_now - self._wall_since))

    def stats(self) -> dict[str, Any]:
        return {
            "reports": self.reports,
            "own_reports": self.own_reports,
            "alert_events": self.alert_events,
            "alert_transitions": {f"{rule}/{transition}": n for (rule, transition), n
                                  in sorted(self.alert_transitions.items())},
            "open_alerts": dict(sorted(Counter(
                a.rule for a in self.engine.open_alerts()
                if not self.operator_acts.resolved(a.id)).items())),
            "muted_by_snooze": self.muted,
            "sink_failures": dict(self.sink_failures),
            "rule_failures": self.rule_failures,
            "rules": dict(self.engine.counters),
            "sources": {n: s.health.to_dict() for n, s in self.ingestor.sources.items()},
        }
