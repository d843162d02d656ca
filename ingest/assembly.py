"""Multipart assembly with a time to live and a bound on pending groups per source.

pyais's own buffer never expires, so a lost fragment would sit forever and a reused
sequence id could glue two messages together. Here a group is keyed by (source,
receiving station, channel, sequence id, fragment count); a fragment that does not fit its
group (out of order: a gap, a number seen twice, a new first fragment) ends the old group as
*inconsistent*, and groups older than the TTL (message time) are *expired*. Neither is ever
glued to another. A group whose first fragment names its receiving station is timed out on
that station's clock: a satellite feed's stations (satellites) are hours apart, and another
station's line between two fragments says nothing about this one's.

Every bound is per source: a source flooding first fragments (a UDP port open to anyone)
pushes out only its own pending groups, never those of another feed. Memory stays bounded
by the number of sources (configured) times the bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ingest.framing import Sentence

#: (source, receiving station or None, channel, sequence id, fragment count)
GroupKey = tuple[str, str | None, str, bytes, int]
#: A station's group is given up once its source's clock is this far past it, even if the
#: station is never heard again (the limit of a recorded line's lead, see the ingestor).
STATION_GONE_S = 3600.0


@dataclass(slots=True)
class _Group:
    started: float
    station: str | None  # of its first fragment (tag-block ``s:``), if it names one
    parts: dict[int, Sentence] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    """One source's pending groups and what it takes to key its continuations."""

    groups: OrderedDict[GroupKey, _Group] = field(default_factory=OrderedDict)
    #: (channel, sequence id, count) -> station of the group it last started: where a
    #: continuation fragment without a tag-block station belongs.
    started_by: dict[tuple[str, bytes, int], str | None] = field(default_factory=dict)
    #: station -> newest time of a fragment it sent: its clock, for the stations heard on
    #: fragments alone so far.
    station_clock: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Dropped:
    """Fragments given up on, counted by why, per source."""

    source: str
    reason: str  # "expired" | "inconsistent" | "overflow"
    fragments: int


class Assembler:
    """Collects fragments until a group is complete.

    ``max_groups`` bounds each source's pending groups on its own: beyond it, that source's
    oldest group goes (``overflow``, counted on that source).
    """

    def __init__(self, ttl_s: float = 5.0, max_groups: int = 1000) -> None:
        self.ttl_s = ttl_s
        self.max_groups = max_groups
        self._sources: dict[str, _Pending] = {}

    def __len__(self) -> int:
        return sum(len(pending.groups) for pending in self._sources.values())

    def pending(self, source: str) -> int:
        """Groups of ``source`` waiting for a fragment."""
        state = self._sources.get(source)
        return 0 if state is None else len(state.groups)

    def add(self, source: str, sentence: Sentence, now: float,
            dropped: list[Dropped]) -> list[Sentence] | None:
        """Add a fragment; the complete group in order when it is, else ``None``.

        Groups given up on are appended to ``dropped``.
        """
        # A national feed is many stations behind one source, and two of them can use the
        # same sequence id at once: their fragments must not meet (tag-block ``s:``).
        state = self._sources.get(source)
        if state is None:
            state = self._sources[source] = _Pending()
        groups = state.groups
        base = (sentence.channel, sentence.seq, sentence.count)
        # The tag block's group id tells the fragments of one message apart best: a
        # continuation carries it even where only the first fragment names its station.
        station = sentence.station if sentence.group is None else f"g:{sentence.group}"
        if sentence.station is not None:
            self._note_station(state, sentence.station, now)
        if sentence.number == 1:
            if len(state.started_by) >= 4 * self.max_groups:
                state.started_by.clear()
            state.started_by[base] = station
        elif station is None:
            station = state.started_by.get(base)
        key = (source, station, sentence.channel, sentence.seq, sentence.count)
        group = groups.get(key)
        if group is not None and sentence.number != len(group.parts) + 1:
            # Fragments of one source arrive in order: a gap, a repeated number or a new
            # first fragment means the old group lost one. Ending it here is what keeps
            # fragments 1 and 3 of one message from completing with fragment 2 of the next.
            del groups[key]
            dropped.append(Dropped(source, "inconsistent", len(group.parts)))
            group = None
        elif group is not None and now - group.started > self.ttl_s:
            # Late by message time, even if housekeeping has not run since.
            del groups[key]
            dropped.append(Dropped(source, "expired", len(group.parts)))
            group = None
        if group is None:
            if sentence.number != 1:
                # A continuation without its first fragment: nothing to attach it to.
                dropped.append(Dropped(source, "inconsistent", 1))
                return None
            group = _Group(started=now, station=sentence.station)
            groups[key] = group
            if len(groups) > self.max_groups:
                _, old = groups.popitem(last=False)
                dropped.append(Dropped(source, "overflow", len(old.parts)))
        group.parts[sentence.number] = sentence
        if len(group.parts) == sentence.count:
            del groups[key]
            return [group.parts[n] for n in range(1, sentence.count + 1)]
        return None

    def _note_station(self, state: _Pending, station: str, time: float) -> None:
        clock = state.station_clock
        if station not in clock and len(clock) >= 4 * self.max_groups:
            clock.clear()
        if time > clock.get(station, time - 1.0):
            clock[station] = time

    def expire(self, now_of: Callable[[str, str | None], float],
               dropped: list[Dropped]) -> None:
        """Give up on groups older than the TTL at their own clock: ``now_of(source, None)``,
        the source's message time (a feed stamped minutes behind another source's clock
        would otherwise lose every group between its fragments), or for a group whose first
        fragment names its station, ``now_of(source, station)``, that station's (or the
        newest fragment it sent), and at most :data:`STATION_GONE_S` behind the source's."""
        for source, state in self._sources.items():
            if not state.groups:
                continue
            source_now = now_of(source, None)
            for key, group in list(state.groups.items()):
                if group.station is None:
                    stale = group.started < source_now - self.ttl_s
                else:
                    station_now = max(now_of(source, group.station),
                                      state.station_clock.get(group.station, group.started))
                    stale = (group.started < station_now - self.ttl_s
                             or group.started < source_now - STATION_GONE_S)
                if stale:
                    del state.groups[key]
                    dropped.append(Dropped(source, "expired", len(group.parts)))

    def drain(self, dropped: list[Dropped]) -> None:
        """End of input: every pending group is expired."""
        for source, state in self._sources.items():
            for group in state.groups.values():
                dropped.append(Dropped(source, "expired", len(group.parts)))
            state.groups.clear()
