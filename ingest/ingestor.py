"""The ingest core: lines in, de-duplicated decoded reports out, everything counted.

Synchronous and allocation-light on purpose: it runs once per line, and the asyncio
sources only feed it. Message time is resolved here (DESIGN "Time is message time"):
tag block ``c:`` → a time carried by the line (prefix, suffix, ``$PGHP``) → for live
sources the receive time → for recorded logs the UTC of the stream's own base-station
reports carried forward, else the source's previous line time carried forward.
A live line whose own time is ahead of its receive time by more than the allowed lead
comes from a receiver clock that is wrong (nothing is heard before it is sent): its
receive time is used instead, and it is counted (``clock_ahead``). So is one stamped
further behind its arrival than a late feed can be (days, years: a broken or forged clock;
``clock_behind``); a recorded log keeps its old times, they are the point of replay.
Recorded lines seen before any time are held until the first base-station time that a second
report agrees with arrives (bounded), so they are not stamped with a made-up or forged time.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ingest.assembly import Assembler, Dropped
from ingest.decode import DecodeError, build_report, decode_payload, sentence_station
from ingest.framing import Meta, Sentence, frame
from ingest.health import ReceiverHealth, SourceHealth
from ingest.positions import FIRST_CHARS as _POSITION_FIRST_CHARS
from ingest.positions import position_report
from ingest.report import Report

log = logging.getLogger(__name__)
_NOTHING: Sequence[Report] = ()
#: A journal entry (see ``Ingestor.journal``): a receiver, the message time it was heard at,
#: and the report its copy duplicates (None: only the receiver's newest time moved on).
Heard = tuple[str, float, Report | None]
#: One line to decode: source name, bytes, receive time (None for recorded lines).
LineInput = tuple[str, bytes, float | None]
#: Decoded lines (``Ingestor.decode_run``): each line's reports, and the journal's length
#: once the line was fed.
Decoded = list[tuple[Sequence[Report], int]]
#: A base-station time further than this from the carried clock is suspect (bad clock).
_CLOCK_JUMP_S = 3600.0
_CLOCK_CONFIRMATIONS = 3
#: How far a station time may run ahead of another station's before that one agrees: real
#: stations keep GPS time (the Gladstone log's agree within 2 s, the Danish feed's 23 s).
_STATION_AGREE_S = 60.0
#: Another station heard within this many lines of the source is a witness for the clock.
_WITNESS_LINES = 1000
#: Stations remembered per source for that (their newest time and line).
_MAX_STATIONS = 256
#: Lines ahead in a row agree when this close (the next after a gap in a recording).
_AGREE_S = _CLOCK_JUMP_S
#: How far a recorded line may run ahead of every line before it. Not the live lead: the
#: lines before are a lower bound of its arrival, no more (a satellite feed's lines come
#: stamped tens of minutes apart in any order: +2,512 s in libais's ORBCOMM sample).
_RECORDED_LEAD_S = _CLOCK_JUMP_S
#: Lines in a row, ahead alike, that confirm one receiver's time with no other between.
_SOLE_CONFIRMATIONS = 30
#: Times a recording carries itself, judged against its other lines when far ahead.
_OWN_TIMES = frozenset(("tagblock", "line", None))
_MAX_HELD = 5000
#: Most reports remembered for de-duplication. Housekeeping forgets them by message time
#: (two windows: about 12,000 at 2,000 msg/s); this bound holds when it cannot, e.g. after
#: one line from a clock far ahead, which stalls housekeeping until message time catches up.
_MAX_RECENT = 200_000
_HOUSEKEEPING_S = 1.0
#: The longest delay of a live feed that duplicates are still merged across (memory: the
#: messages of this long are kept).
MAX_MERGED_DELAY_S = 300.0
#: Recent lines and how they framed (framing is a pure function of the bytes).
_FRAME_CACHE = 4096
_FILL_KEY = (b"", b"/1", b"/2", b"/3", b"/4", b"/5")


@dataclass(slots=True)
class _SourceState:
    health: SourceHealth
    gatehouse_time: float | None = None
    gatehouse_station: str | None = None
    clock: float | None = None
    #: Station times far from the clock, in a row: (time, MMSI).
    suspect_clock: list[tuple[float, int]] = field(default_factory=list)
    #: Newest time and line of each base station heard (oldest first), the clock's witnesses.
    stations: dict[int, tuple[float, int]] = field(default_factory=dict)
    held: list[Sentence] = field(default_factory=list)
    #: Station times heard while lines are held, none agreed with yet: (time, MMSI).
    first_times: list[tuple[float, int]] = field(default_factory=list)
    last_time: float | None = None
    nominal_next: float = 0.0
    untimed: bool = False
    #: How far its last live line's own time ran behind its arrival (a feed's delay).
    delay: float = 0.0


@dataclass(slots=True)
class IngestProgress:
    """An ingestor's clock and counters (``Ingestor.progress``), e.g. sent between processes."""

    newest: float | None
    sources: dict[str, SourceHealth]
    receivers: dict[str, ReceiverHealth]
    untimed_sources: set[str]


def _after_gatehouse(state: _SourceState, sentence: Sentence
                     ) -> tuple[Sentence, float | None, str | None, str | None]:
    """The sentence after a ``$PGHP`` line, its time and time source by that line, and the
    line's shore station (``None`` when the sentence carries it).

    ``$PGHP`` times the sentence ahead of its own prefix or trailing epoch (a tag block
    comes first): in a satellite feed ``$PGHP`` is when the message was heard, the trailing
    epoch when it reached the ground, up to hours later. Its station is the receiver, as a
    tag block's ``s:`` is. A timed single-part sentence is returned as it is (one per
    message of a $PGHP feed: no copy); a fragment, or a sentence that may wait for a time,
    is copied with both (framed sentences are shared by identical lines), so its multipart
    group takes them from its first fragment.
    """
    time, station = state.gatehouse_time, state.gatehouse_station
    state.gatehouse_time = state.gatehouse_station = None
    time_source = sentence.time_source
    if time is None or time_source == "tagblock":
        time = sentence.time
    else:
        time_source = "line"
    if sentence.count == 1 and time is not None:
        return sentence, time, time_source, None if sentence.station else station
    copy = replace(sentence, time=time, time_source=time_source,
                   station=sentence.station or station)
    return copy, time, time_source, None


def sources_final_after(dedup_window_s: float) -> float:
    """Message time after a report's own by which no duplicate can add to its ``sources``.

    A report is remembered for duplicates until housekeeping (every ``_HOUSEKEEPING_S`` of
    message time) finds it two windows older than the newest message. (Housekeeping drops
    reports oldest-inserted first, so with message times far out of line order a report
    can stay a little longer: then a very late duplicate's receiver can be missed.) Beside
    a live feed stamped behind its arrival reports are remembered that much longer, so its
    late copies merge; their receivers come after this and miss the stored row.
    """
    return 2 * dedup_window_s + _HOUSEKEEPING_S


def _witness(stations: dict[int, tuple[float, int]], mmsi: int, since: int,
             floor: float) -> float | None:
    """The newest time of a station other than ``mmsi`` heard from line ``since`` on;
    ``None`` when there is none, or none at ``floor`` or later (one far behind the clock
    witnesses nothing: a station stamped in the past would freeze the clock)."""
    newest: float | None = None
    for other, (stamp, line) in reversed(stations.items()):
        if line < since:
            break  # oldest heard first: the rest are older still
        if other != mmsi and stamp >= floor and (newest is None or stamp > newest):
            newest = stamp
    return newest


def _first_time(first: list[tuple[float, int]], mmsi: int, stamp: float) -> float | None:
    """A log's first station time, once a report agrees with it (within
    ``_STATION_AGREE_S``): of another station, or two more of the same one (one more while
    no other station was heard). ``None`` meanwhile (this one kept in ``first``): the first
    station of a log has nothing else to be judged by, and one forged type 4 there timed
    the lines before the real stations' (in the demo log, seven years ahead)."""
    agreeing = [(earlier, other) for earlier, other in first
                if abs(stamp - earlier) <= _STATION_AGREE_S]
    own = sum(1 for _, other in agreeing if other == mmsi)
    if own < len(agreeing) or own >= _CLOCK_CONFIRMATIONS - 1 or (
            own and all(other == mmsi for _, other in first)):
        return agreeing[0][0]
    first.append((stamp, mmsi))
    return None


def _agreeing_first(first: list[tuple[float, int]], time: float) -> float | None:
    """The earliest station time held in ``first`` that a line's own time agrees with."""
    return next((earlier for earlier, _ in first
                 if abs(time - earlier) <= _STATION_AGREE_S), None)


def _remember_station(stations: dict[int, tuple[float, int]], mmsi: int, stamp: float,
                      line: int) -> None:
    """Keep a station's newest time and line, most recently heard last (bounded)."""
    stations.pop(mmsi, None)
    stations[mmsi] = (stamp, line)
    if len(stations) > _MAX_STATIONS:
        del stations[next(iter(stations))]


class Ingestor:
    """Frame, time, assemble, de-duplicate and decode lines from any number of sources."""

    def __init__(self, *, fragment_ttl_s: float = 5.0, max_pending_groups: int = 1000,
                 dedup_window_s: float = 3.0, nominal_rate: float | None = None,
                 max_clock_lead_s: float = 10.0, max_clock_lag_s: float = 86400.0,
                 max_receivers: int = 2000) -> None:
        """``nominal_rate`` (lines/s): how a recorded log with no time at all is timed.

        ``None`` leaves such lines untimed (``time_source`` ``none``, JSON time null);
        replay sets a rate so a log without timestamps still plays, in order.
        ``max_clock_lead_s``: how far a live line's own time may run ahead of its receive
        time (clock error and jitter) before the receive time replaces it;
        ``max_clock_lag_s``: how far behind it (a satellite or national feed's delay).
        """
        self.assembler = Assembler(fragment_ttl_s, max_pending_groups)
        self.dedup_window_s = dedup_window_s
        self.sources: dict[str, _SourceState] = {}
        self.receivers: dict[str, ReceiverHealth] = {}
        self.newest: float | None = None
        self._recent: OrderedDict[bytes, Report] = OrderedDict()
        self._next_housekeeping = float("-inf")
        self._dropped: list[Dropped] = []
        self._framed: dict[bytes, Sentence | Meta | str] = {}
        self.nominal_rate = nominal_rate
        self.max_clock_lead_s = max_clock_lead_s
        self.max_clock_lag_s = max_clock_lag_s
        #: Distinct receivers kept: a feed open to injection can name any number of
        #: stations, each a receiver (tables, metrics, a source_silent alert once silent).
        self.max_receivers = max_receivers
        self._receivers_full_warned = False
        self._clock_ahead_warned: set[str] = set()
        self._clock_behind_warned: set[str] = set()
        #: Recorded lines ahead of every line so far, in a row (``_confirmed``).
        self._ahead: list[tuple[float, str]] = []
        self.untimed_sources: set[str] = set()
        #: When a consumer sets a list here, what a line tells about reports already
        #: returned is appended to it instead of applied: a duplicate's receiver (not added
        #: to the first copy's ``sources``) and each receiver's newest time (``last_heard``
        #: is still updated). A consumer that decodes lines ahead of its rules applies the
        #: entries in line order, so its results do not depend on how far ahead it ran.
        self.journal: list[Heard] | None = None

    # -- public -------------------------------------------------------------------------

    def health(self, source: str) -> SourceHealth:
        return self._state(source).health

    def feed(self, source: str, data: bytes, received: float | None = None) -> Sequence[Report]:
        """Process one line; the reports it completes (usually none or one)."""
        state = self.sources.get(source)
        if state is None:
            state = self._state(source)
        health = state.health
        health.lines += 1
        if received is not None:
            health.last_received = received
        # Overlapping receivers send byte-identical lines: frame each line once.
        framed = self._framed.get(data)
        if framed is None:
            framed = frame(data)
            if len(self._framed) >= _FRAME_CACHE:
                self._framed.clear()
            self._framed[data] = framed
        if type(framed) is Sentence:
            health.sentences += 1
            if framed.prefix_unused:
                health.prefix_time_unused += 1
            return self._sentence(source, state, framed, received)
        if type(framed) is Meta:
            health.meta += 1
            if framed.gatehouse:  # it speaks for the next line only: one replaces the other
                state.gatehouse_time, state.gatehouse_station = framed.time, framed.station
            return _NOTHING
        # The sentence a pending $PGHP line spoke for: it is gone, so is what it said.
        state.gatehouse_time = state.gatehouse_station = None
        health.rejected[framed] += 1  # type: ignore[index]
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: rejected (%s): %r", source, framed, data[:200])
        return _NOTHING

    def decode_run(self, lines: Iterable[LineInput] | None) -> tuple[Decoded, list[Heard]]:
        """Feed ``lines`` with a journal of their own; ``None``: the end of input, the
        reports still held (``flush``) as one line.

        For a consumer that decodes lines ahead of its rules (``Pipeline.decode_ahead``,
        ``replay.decoding``): it applies the journal in line order, just before each line's
        reports. A run that raises leaves no journal set for the next.
        """
        journal: list[Heard] = []
        self.journal = journal
        try:
            if lines is None:
                return [(self.flush(), len(journal))], journal
            feed = self.feed
            return [(feed(source, data, received), len(journal))
                    for source, data, received in lines], journal
        finally:
            self.journal = None

    def oldest_remembered(self) -> Report | None:
        """The oldest report a later duplicate can still add its receiver to (None: none)."""
        return next(iter(self._recent.values()), None)

    def progress(self) -> IngestProgress:
        """What this ingestor has counted so far, to show in another process."""
        return IngestProgress(self.newest, {n: s.health for n, s in self.sources.items()},
                              self.receivers, self.untimed_sources)

    def follow(self, progress: IngestProgress) -> None:
        """Show ``progress`` of an ingestor that decodes elsewhere as this one's own."""
        self.newest = progress.newest
        for name, health in progress.sources.items():
            self._state(name).health = health
        self.receivers.update(progress.receivers)
        self.untimed_sources.update(progress.untimed_sources)

    def flush(self) -> list[Report]:
        """End of input: release held lines (with no time at all), expire partial groups."""
        out: list[Report] = []
        for source, state in self.sources.items():
            held, state.held = state.held, []
            if state.first_times:
                # No second report agreed: the first station time, there is no other.
                out.extend(self._release(source, state, held, state.first_times[0][0]))
                continue
            for sentence in held:
                self._untimed(source, state, sentence, out)
        self.assembler.drain(self._dropped)
        self._count_dropped()
        return out

    # -- internals ----------------------------------------------------------------------

    def _state(self, source: str) -> _SourceState:
        state = self.sources.get(source)
        if state is None:
            state = self.sources[source] = _SourceState(SourceHealth(source))
        return state

    def _sentence(self, source: str, state: _SourceState, sentence: Sentence,
                  received: float | None) -> Sequence[Report]:
        station = None  # a $PGHP line's station, for a single-part sentence
        if state.gatehouse_time is not None or state.gatehouse_station is not None:
            sentence, time, time_source, station = _after_gatehouse(state, sentence)
        elif (sentence.number > 1 and sentence.time_source == "line"
              and state.last_time is not None):
            # A continuation keeps the clock of the fragment before it, not its own line
            # time (in a satellite log the first is timed by $PGHP, the rest by when they
            # reached the ground, hours later: the group would expire).
            time, time_source = state.last_time, "carried"
        else:
            time, time_source = sentence.time, sentence.time_source
        if time is None:
            if sentence.number > 1 and state.last_time is not None:
                # A continuation fragment is timed with the fragment before it (a tag block
                # or $PGHP on the first part), not with its arrival (a feed's tag blocks may
                # run behind arrival by more than a group's time to live) nor the
                # base-station clock.
                time, time_source = state.last_time, "carried"
            elif received is not None:
                time, time_source = received, "receive"
            elif state.clock is not None:
                time, time_source = state.clock, "basestation"
            elif state.untimed:
                out: list[Report] = []
                self._untimed(source, state, sentence, out)
                return out or _NOTHING
            elif state.last_time is not None:
                # The source's previous line time (a log timed on some lines only).
                time, time_source = state.last_time, "carried"
            else:
                return self._hold(source, state, sentence)
        if received is not None:
            if time > received + self.max_clock_lead_s:
                sentence = self._clock_ahead(source, state, sentence, time, received)
                time, time_source = received, "receive"
            elif time < received - self.max_clock_lag_s:
                sentence = self._clock_behind(source, state, sentence, time, received)
                time, time_source = received, "receive"
            state.delay = received - time
        elif time_source in _OWN_TIMES and self.newest is not None:
            # A recording has no arrival to judge by: the other lines' times stand in, when
            # another receiver's are among them (a log of one receiver may be a sample of
            # lines hours apart).
            receiver = sentence.station or source
            known = self.receivers
            if time > self.newest + _RECORDED_LEAD_S and (
                    len(known) > 1 or (known and receiver not in known)):
                if not self._confirmed(time, receiver):
                    carried = state.last_time if state.last_time is not None else self.newest
                    sentence = self._clock_ahead(source, state, sentence, time, carried,
                                                 "the log's other lines")
                    time, time_source = carried, "carried"
            elif self._ahead:
                self._ahead.clear()
        state.last_time = time
        placed: list[Report] = []
        if state.held:
            # The first time of any kind also times the lines held before it: a station
            # time held that this line's time agrees with, else the line's.
            held, state.held = state.held, []
            stamp = _agreeing_first(state.first_times, time)
            if stamp is not None:
                placed.extend(self._release(source, state, held, stamp))
            else:
                state.first_times.clear()
                for item in held:
                    self._place(source, state, item, time, "carried", placed)
        self._place(source, state, sentence, time, time_source or "line", placed, station)
        return placed or _NOTHING

    def _over_limit(self, station: str, source: str, health: SourceHealth) -> str:
        """A station beyond ``max_receivers``: its line counts as the source's own."""
        health.stations_over_limit += 1
        if not self._receivers_full_warned:
            self._receivers_full_warned = True
            log.warning("%s: %d receivers known; station %r and any further new one count as "
                        "their source's own (ingest.max_receivers; a feed open to injection "
                        "can name any number)", source, len(self.receivers), station[:40])
        return source

    def _clock_ahead(self, source: str, state: _SourceState, sentence: Sentence, time: float,
                     received: float, judged_by: str = "their arrival") -> Sentence:
        """A line timed ahead of its arrival (live) or of the log's other lines (recorded):
        count it, warn once per receiver, and time it by ``received`` (a copy: framed
        sentences are shared by identical lines; a multipart group then takes the corrected
        time from its first fragment)."""
        state.health.clock_ahead += 1
        receiver = sentence.station or source
        if receiver not in self._clock_ahead_warned:
            self._clock_ahead_warned.add(receiver)
            log.warning("%s: receiver %s stamps lines %.0f s ahead of %s (its clock is "
                        "wrong?); using %s instead", source, receiver, time - received,
                        judged_by, "the receive time" if judged_by == "their arrival"
                        else "the time carried from its source's previous line")
        live = judged_by == "their arrival"
        return replace(sentence, time=received, time_source="receive" if live else "carried")

    def _clock_behind(self, source: str, state: _SourceState, sentence: Sentence,
                      time: float, received: float) -> Sentence:
        """A live line timed further behind its arrival than a late feed can be: count it,
        warn once per receiver, and time it by its arrival (a copy, as ``_clock_ahead``)."""
        state.health.clock_behind += 1
        receiver = sentence.station or source
        if receiver not in self._clock_behind_warned:
            self._clock_behind_warned.add(receiver)
            log.warning("%s: receiver %s stamps lines %.0f s behind their arrival (its clock "
                        "is wrong?); using the receive time instead", source, receiver,
                        received - time)
        return replace(sentence, time=received, time_source="receive")

    def _confirmed(self, time: float, receiver: str) -> bool:
        """Whether a recorded line's time, ahead of every line so far, is confirmed by the
        lines just before it: ``_CLOCK_CONFIRMATIONS`` in a row, ahead alike, from two
        receivers or more (the recording resumed after a gap), or ``_SOLE_CONFIRMATIONS``
        from one receiver alone (the others stayed silent). Any
        line not ahead breaks the run: a receiver stepped ahead of the others, its lines
        between theirs, confirms nothing, nor does one line from a clock far out."""
        ahead = self._ahead
        if ahead and abs(time - ahead[-1][0]) > _AGREE_S:
            ahead.clear()
        ahead.append((time, receiver))
        if len(ahead) < _CLOCK_CONFIRMATIONS:
            return False
        if all(r == receiver for _, r in ahead) and (
                len(ahead) < _SOLE_CONFIRMATIONS):
            return False  # a receiver alone: only after a long run with no other between
        ahead.clear()
        return True

    def _place(self, source: str, state: _SourceState, sentence: Sentence, time: float,
               time_source: str, out: list[Report], station: str | None = None) -> None:
        """Assemble, de-duplicate and decode a timed sentence; ``station``: its receiver
        when the sentence names none (a ``$PGHP`` line's, for a single-part sentence)."""
        newest = self.newest
        if newest is None or time > newest:
            self.newest = newest = time
        if newest >= self._next_housekeeping:
            self._housekeeping(newest)
        if sentence.count == 1:
            payload = sentence.payload
            fill = sentence.fill
            group = None
        else:
            group = self.assembler.add(source, sentence, time, self._dropped)
            if self._dropped:
                self._count_dropped()
            if group is None:
                return
            payload = b"".join([p.payload for p in group])
            fill = group[-1].fill
            # The group's time and receiver are those of its first fragment.
            first = group[0]
            if first.time is not None:
                time = first.time
                time_source = first.time_source or time_source
            if first.station is not None:
                sentence = first
        receiver = sentence.station or station or source
        health = state.health
        timed = time_source != "none"  # an untimed log's 0.0 was heard at no time
        if timed:
            health.last_heard = time
        rx = self.receivers.get(receiver)
        if rx is None:
            if len(self.receivers) >= self.max_receivers and receiver != source:
                receiver = self._over_limit(receiver, source, health)
                rx = self.receivers.get(receiver)
            if rx is None:
                rx = self.receivers[receiver] = ReceiverHealth(receiver, source)
        rx.messages += 1
        if timed and (rx.last_heard is None or time > rx.last_heard):
            rx.last_heard = time
            if self.journal is not None:
                self.journal.append((receiver, time, None))

        # The same message whether one sentence or several ('/' is not a payload character).
        key = payload if fill == 0 else payload + _FILL_KEY[fill]
        seen = self._recent.get(key)
        if seen is not None and abs(time - seen.time) <= self.dedup_window_s:
            health.duplicates += 1
            if self.journal is not None:
                self.journal.append((receiver, time, seen))
            elif receiver not in seen.sources:
                seen.sources.append(receiver)
            return
        if group is None:
            nmea = [sentence.raw.decode()]
        else:
            nmea = [p.raw.decode() for p in group]
        report = None
        if fill == 0 and len(payload) == 28 and payload[0] in _POSITION_FIRST_CHARS:
            report = position_report(payload, time, time_source, [receiver], nmea,
                                     sentence.own, sentence.channel)
        if report is None:
            try:
                msg = decode_payload(payload, fill)
                report = build_report(msg, payload, fill, time, time_source, [receiver],
                                      nmea, sentence.own, sentence.channel)
            except DecodeError as exc:
                health.decode_errors[str(exc.args[0])] += 1
                return
        recent = self._recent
        if seen is not None:
            # Re-inserted at the end, so the reports remembered stay in the order they were
            # made (the oldest first: see ``oldest_remembered``).
            del recent[key]
        recent[key] = report
        if len(recent) > _MAX_RECENT:
            recent.popitem(last=False)
        health.messages += 1
        health.by_type[report.msg_type] += 1
        if report.own:
            health.own_messages += 1
        if report.msg_type == 4 or report.msg_type == 11:
            self._station_clock(state, report)
        out.append(report)

    def _hold(self, source: str, state: _SourceState, sentence: Sentence) -> Sequence[Report]:
        """A recorded line with no time yet: wait for the stream's first base-station time
        that a second report agrees with (``_first_time``), at most ``_MAX_HELD`` lines."""
        state.held.append(sentence)
        stamp = None
        if sentence.count == 1:
            found = sentence_station(sentence.payload, sentence.fill)
            if found is not None:
                stamp = _first_time(state.first_times, *found)
        if stamp is None and len(state.held) < _MAX_HELD:
            return _NOTHING
        if stamp is None and state.first_times:
            stamp = state.first_times[0][0]  # none agreed: the first, there is no other
        held, state.held = state.held, []
        if stamp is None:
            out: list[Report] = []
            for item in held:
                self._untimed(source, state, item, out)
            return out
        return self._release(source, state, held, stamp)

    def _release(self, source: str, state: _SourceState, held: list[Sentence],
                 stamp: float) -> list[Report]:
        """Time the held lines by the first station time; the clock starts there."""
        state.clock = stamp
        state.first_times.clear()
        out: list[Report] = []
        for item in held:
            self._place(source, state, item, stamp, "basestation", out)
        return out

    def _untimed(self, source: str, state: _SourceState, sentence: Sentence,
                 out: list[Report]) -> None:
        """A line of a log that has no time at all: nominal time, or none."""
        self.untimed_sources.add(source)
        state.untimed = True
        if self.nominal_rate is None:
            self._place(source, state, sentence, 0.0, "none", out)
            return
        time = state.nominal_next
        state.nominal_next += 1.0 / self.nominal_rate
        state.last_time = time
        self._place(source, state, sentence, time, "nominal", out)

    def _station_clock(self, state: _SourceState, report: Report) -> None:
        """Carry the base-station UTC forward; ignore one station's bad or forged clock.

        A time ahead of the clock moves it only while no other station heard lately (in the
        source's last ``_WITNESS_LINES`` lines) says it is more than ``_STATION_AGREE_S``
        earlier: one station's word, within the hour, moved it, and as the clock never
        goes back, everything after was stamped at the forged time. A time more than
        ``_CLOCK_JUMP_S`` from the clock needs ``_CLOCK_CONFIRMATIONS`` in a row from two
        stations or more (``_SOLE_CONFIRMATIONS`` from one alone).
        """
        stamp = report.extra.get("station_time")
        if not isinstance(stamp, float):
            return
        mmsi = report.mmsi
        line = state.health.lines
        clock = state.clock
        floor = -math.inf if clock is None else clock - _STATION_AGREE_S
        witness = _witness(state.stations, mmsi, line - _WITNESS_LINES, floor)
        _remember_station(state.stations, mmsi, stamp, line)
        if clock is None:
            state.clock = stamp
            return
        if abs(stamp - clock) <= _CLOCK_JUMP_S:
            state.suspect_clock.clear()
            if stamp <= clock:
                return
            if witness is None or stamp <= witness + _STATION_AGREE_S:
                state.clock = stamp
                return
            state.health.clock_rejected += 1  # ahead of the others: one may confirm it
            return
        state.health.clock_rejected += 1
        suspects = state.suspect_clock
        if suspects and abs(stamp - suspects[-1][0]) > _STATION_AGREE_S:
            suspects.clear()
        suspects.append((stamp, mmsi))
        if len(suspects) >= _CLOCK_CONFIRMATIONS and (
                len(suspects) >= _SOLE_CONFIRMATIONS or any(m != mmsi for _, m in suspects)):
            # Several stations agree on a new time: it is our clock that was wrong.
            state.clock = stamp
            suspects.clear()

    def _housekeeping(self, now: float) -> None:
        self._next_housekeeping = now + _HOUSEKEEPING_S
        def source_now(source: str, station: str | None) -> float:
            if station is not None:
                # A station's newest message (its fragments the assembler knows itself).
                rx = self.receivers.get(station)
                return -math.inf if rx is None or rx.last_heard is None else rx.last_heard
            state = self.sources.get(source)
            return now if state is None or state.last_time is None else state.last_time

        self.assembler.expire(source_now, self._dropped)
        if self._dropped:
            self._count_dropped()
        recent = self._recent
        # Kept for as long as the slowest live feed runs behind (bounded): its copy of a
        # message another receiver gave at once arrives that much later, with the same time.
        delay = max((s.delay for s in self.sources.values()), default=0.0)
        limit = now - 2 * self.dedup_window_s - min(max(delay, 0.0), MAX_MERGED_DELAY_S)
        while recent:
            key, report = next(iter(recent.items()))
            if report.time >= limit:
                break
            del recent[key]

    def _count_dropped(self) -> None:
        for item in self._dropped:
            self._state(item.source).health.fragments_dropped[item.reason] += item.fragments
        self._dropped.clear()
