"""Multipart assembly with a time to live and a bound on pending groups.

pyais's own buffer never expires, so a lost fragment would sit forever and a reused
sequence id could glue two messages together. Here a group is keyed by (source,
receiving station, channel, sequence id, fragment count); a fragment that does not fit its
group (out of order: a gap, a number seen twice, a new first fragment) ends the old group as
*inconsistent*, and groups older than the TTL (message time) are *expired*. Neither is ever
glued to another. A group whose first fragment names its receiving station is timed out on
that station's clock: a satellite feed's stations (satellites) are hours apart, and another
station's line between two fragments says nothing about this one's.
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
class Dropped:
    """Fragments given up on, counted by why, per source."""

    source: str
    reason: str  # "expired" | "inconsistent" | "overflow"
    fragments: int


class Assembler:
    """Collects fragments until a group is complete."""

    def __init__(self, ttl_s: float = 5.0, max_groups: int = 1000) -> None:
        self.ttl_s = ttl_s
        self.max_groups = max_groups
        self._groups: OrderedDict[GroupKey, _Group] = OrderedDict()
        #: (source, channel, sequence id, count) -> station of the group it last started:
        #: where a continuation fragment without a tag-block station belongs.
        self._started_by: dict[tuple[str, str, bytes, int], str | None] = {}
        #: (source, station) -> newest time of a fragment it sent: its clock, for the
        #: stations heard on fragments alone so far.
        self._station_clock: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, source: str, sentence: Sentence, now: float,
            dropped: list[Dropped]) -> list[Sentence] | None:
        """Add a fragment; the complete group in order when it is, else ``None``.

        Groups given up on are appended to ``dropped``.
        """
        # A national feed is many stations behind one source, and two of them can use the
        # same sequence id at once: their fragments must not meet (tag-block ``s:``).
        base = (source, sentence.channel, sentence.seq, sentence.count)
        # The tag block's group id tells the fragments of one message apart best: a
        # continuation carries it even where only the first fragment names its station.
        station = sentence.station if sentence.group is None else f"g:{sentence.group}"
        if sentence.station is not None:
            self._note_station(source, sentence.station, now)
        if sentence.number == 1:
            if len(self._started_by) >= 4 * self.max_groups:
                self._started_by.clear()
            self._started_by[base] = station
        elif station is None:
            station = self._started_by.get(base)
        key = (source, station, sentence.channel, sentence.seq, sentence.count)
        group = self._groups.get(key)
        if group is not None and sentence.number != len(group.parts) + 1:
            # Fragments of one source arrive in order: a gap, a repeated number or a new
            # first fragment means the old group lost one. Ending it here is what keeps
            # fragments 1 and 3 of one message from completing with fragment 2 of the next.
            del self._groups[key]
            dropped.append(Dropped(source, "inconsistent", len(group.parts)))
            group = None
        elif group is not None and now - group.started > self.ttl_s:
            # Late by message time, even if housekeeping has not run since.
            del self._groups[key]
            dropped.append(Dropped(source, "expired", len(group.parts)))
            group = None
        if group is None:
            if sentence.number != 1:
                # A continuation without its first fragment: nothing to attach it to.
                dropped.append(Dropped(source, "inconsistent", 1))
                return None
            group = _Group(started=now, station=sentence.station)
            self._groups[key] = group
            if len(self._groups) > self.max_groups:
                old_key, old = self._groups.popitem(last=False)
                dropped.append(Dropped(old_key[0], "overflow", len(old.parts)))
        group.parts[sentence.number] = sentence
        if len(group.parts) == sentence.count:
            del self._groups[key]
            return [group.parts[n] for n in range(1, sentence.count + 1)]
        return None

    def _note_station(self, source: str, station: str, time: float) -> None:
        clock = self._station_clock
        if (source, station) not in clock and len(clock) >= 4 * self.max_groups:
            clock.clear()
        if time > clock.get((source, station), time - 1.0):
            clock[(source, station)] = time

    def expire(self, now_of: Callable[[str, str | None], float],
               dropped: list[Dropped]) -> None:
        """Give up on groups older than the TTL at their own clock: ``now_of(source, None)``,
        the source's message time (a feed stamped minutes behind another source's clock
        would otherwise lose every group between its fragments), or for a group whose first
        fragment names its station, ``now_of(source, station)``, that station's (or the
        newest fragment it sent), and at most :data:`STATION_GONE_S` behind the source's."""
        for key, group in list(self._groups.items()):
            source_now = now_of(key[0], None)
            if group.station is None:
                stale = group.started < source_now - self.ttl_s
            else:
                station_now = max(now_of(key[0], group.station),
                                  self._station_clock.get((key[0], group.station), group.started))
                stale = (group.started < station_now - self.ttl_s
                         or group.started < source_now - STATION_GONE_S)
            if stale:
                del self._groups[key]
                dropped.append(Dropped(key[0], "expired", len(group.parts)))

    def drain(self, dropped: list[Dropped]) -> None:
        """End of input: every pending group is expired."""
        for key, group in self._groups.items():
            dropped.append(Dropped(key[0], "expired", len(group.parts)))
        self._groups.clear()
