"""Per-source and per-receiver counters: they feed /sources, /metrics and `source_silent`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ingest.report import iso_time


@dataclass(slots=True)
class SourceHealth:
    """Counters of one source (a connection, a device, a file).

    Every line read is counted once: ``lines == sentences + meta + sum(rejected)``.
    """

    name: str
    lines: int = 0
    sentences: int = 0
    meta: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    by_type: Counter[int] = field(default_factory=Counter)
    decode_errors: Counter[str] = field(default_factory=Counter)
    fragments_dropped: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    own_messages: int = 0
    clock_rejected: int = 0
    clock_ahead: int = 0
    #: Live lines stamped further behind their arrival than a late feed can be.
    clock_behind: int = 0
    #: Lines whose station was beyond ``max_receivers``: counted as the source's own.
    stations_over_limit: int = 0
    #: Lines whose date-time prefix did not time them (unreadable, e.g. a named zone, or
    #: implausible): the sentence was kept, timed from elsewhere.
    prefix_time_unused: int = 0
    last_heard: float | None = None
    last_received: float | None = None

    @property
    def checksum_failures(self) -> int:
        return self.rejected["checksum"] + self.rejected["tagblock_checksum"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lines": self.lines,
            "sentences": self.sentences,
            "meta": self.meta,
            "rejected": dict(sorted(self.rejected.items())),
            "checksum_failures": self.checksum_failures,
            "messages": self.messages,
            "by_type": {str(k): v for k, v in sorted(self.by_type.items())},
            "decode_errors": dict(sorted(self.decode_errors.items())),
            "fragments_dropped": dict(sorted(self.fragments_dropped.items())),
            "duplicates": self.duplicates,
            "own_messages": self.own_messages,
            "clock_rejected": self.clock_rejected,
            "clock_ahead": self.clock_ahead,
            "clock_behind": self.clock_behind,
            "stations_over_limit": self.stations_over_limit,
            "prefix_time_unused": self.prefix_time_unused,
            "last_heard": None if self.last_heard is None else iso_time(self.last_heard),
        }


@dataclass(slots=True)
class ReceiverHealth:
    """A receiver: the tag-block station (``s:``) when lines carry one, else the source."""

    name: str
    source: str
    messages: int = 0
    last_heard: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "messages": self.messages,
            "last_heard": None if self.last_heard is None else iso_time(self.last_heard),
        }
