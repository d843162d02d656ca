"""The source protocol and what every source shares: a name, a link state, counters.

A source reads bytes from one place (UDP port, TCP feed, serial port, file or stdin), cuts
them into lines and puts :class:`ingest.lines.RawLine` on a :class:`LineQueue`. It does not
look inside the lines. Live sources run until cancelled and survive their link going away;
file sources return at end of file.

Errors: a source that cannot start at all (port in use, file missing) raises
:class:`SourceError` from :meth:`Source.run`; a live link that breaks is retried, never raised.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ingest.sources.queue import LineQueue

log = logging.getLogger(__name__)

StatusListener = Callable[[str, bool], None]
"""Called as ``listener(source_name, online)`` on every change of a source's link state.

It runs inside the source's task and must not block: enqueue, don't publish."""

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class SourceError(Exception):
    """A source could not start (bad address, port in use, file missing ...)."""


class SourceReadError(SourceError):
    """A source failed after it started (a log that breaks off): a runtime failure."""


def validate_name(name: str) -> str:
    """Return ``name`` if it is a usable slug (it becomes an MQTT topic level and a label)."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"bad source name {name!r}: use 1-64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return name


def slugify(text: str) -> str:
    """Lower-case ``text`` with every run of other characters turned into one '-'."""
    slug = re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")
    return slug[:64].rstrip("-") or "source"


@dataclass(slots=True)
class SourceStats:
    """Transport-level counters of one source (the ingestor counts what lines contain)."""

    lines: int = 0
    """Lines handed to the queue (accepted or, for UDP, dropped there)."""
    bytes: int = 0
    """Bytes read, line endings included."""
    partial_lines: int = 0
    """Unterminated fragments thrown away when a link broke."""
    overlong: int = 0
    """Unterminated runs longer than the splitter's bound, thrown away."""
    connects: int = 0
    """Successful connections (opens, binds) so far."""
    connect_failures: int = 0
    """Failed connection attempts."""
    disconnects: int = 0
    """Links lost after they were up."""
    refused_datagrams: int = 0
    """UDP datagrams from a sender outside the source's ``allow_from``, dropped."""
    last_line_at: float | None = None
    """Wall time the last line arrived (its messages' own times may lag or lead it)."""


@runtime_checkable
class Source(Protocol):
    """What the pipeline needs from a source."""

    name: str

    @property
    def connected(self) -> bool:
        """True while the link is up (bound, connected, open)."""
        ...

    @property
    def stats(self) -> SourceStats: ...

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call ``listener(name, online)`` on every link state change from now on."""
        ...

    def remove_status_listener(self, listener: StatusListener) -> None: ...

    async def run(self, queue: LineQueue) -> None:
        """Read until cancelled (live) or to the end (file), putting lines on ``queue``."""
        ...


class SourceBase:
    """Name, link state and listeners shared by the concrete sources."""

    def __init__(self, name: str) -> None:
        self.name = validate_name(name)
        self._connected = False
        self._listeners: list[StatusListener] = []
        self._stats = SourceStats()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stats(self) -> SourceStats:
        return self._stats

    def probe(self) -> socket.socket | None:
        """Take what this source will listen on, for the caller to hold while it probes the
        run's other sources and then close (SourceError when it is taken), so a run fails
        before its outputs start; nothing to take by default."""
        return None

    def add_status_listener(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    def remove_status_listener(self, listener: StatusListener) -> None:
        self._listeners.remove(listener)

    def _set_connected(self, online: bool) -> None:
        if online == self._connected:
            return
        self._connected = online
        if online:
            self._stats.connects += 1
        for listener in list(self._listeners):
            try:
                listener(self.name, online)
            except Exception:
                # A broken listener (say, the MQTT feed) must not take the source down.
                log.exception("status listener failed for source %s", self.name)

    def __repr__(self) -> str:
        state = "online" if self._connected else "offline"
        return f"<{type(self).__name__} {self.name} {state}>"
