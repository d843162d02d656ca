"""The live stream hub: alert transitions and position updates as server-sent events.

The hub is a ``harbourwatch.sinks.Sink``: the pipeline calls ``on_report``/``on_alert``,
which only filter, encode once and append to each client's bounded queue. A client that
reads too slowly loses its oldest queued events (counted, and told with a ``dropped``
event so it can re-read ``GET /alerts``); ingest never waits for a client.

Events (``text/event-stream``)::

    event: alert      data: {"type": "new"|"update"|"end", "alert": {...}}
    event: position   data: {"mmsi": ..., "time": ..., "lat": ..., "lon": ..., ...}
    event: dropped    data: {"dropped": <total lost so far by this client>}

Each client's writer sends everything queued in one chunk, waiting ``linger_s`` after the
first event so that at thousands of reports per second a client costs one write per
linger period rather than one per event.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from geofence.alert import AlertEvent
from ingest.report import Report, iso_time

KINDS = ("alert", "position")
_KEEPALIVE_S = 15.0


@dataclass(slots=True, frozen=True)
class StreamFilter:
    """What one client wants; ``None`` means everything.

    ``bbox`` (min_lon, min_lat, max_lon, max_lat) applies to positions and to alerts that
    have a position; ``rules`` to alerts only; ``vessels`` to both (either vessel of an
    alert); ``kinds`` picks alerts, positions or both.
    """

    bbox: tuple[float, float, float, float] | None = None
    rules: frozenset[str] | None = None
    vessels: frozenset[int] | None = None
    kinds: frozenset[str] = frozenset(KINDS)

    def wants_position(self, mmsi: int, lon: float, lat: float) -> bool:
        if "position" not in self.kinds:
            return False
        if self.vessels is not None and mmsi not in self.vessels:
            return False
        return self.bbox is None or _inside(self.bbox, lon, lat)

    def wants_alert(self, alert: Mapping[str, Any]) -> bool:
        if "alert" not in self.kinds:
            return False
        if self.rules is not None and alert.get("rule") not in self.rules:
            return False
        if self.vessels is not None and not (
                alert.get("mmsi") in self.vessels or alert.get("other_mmsi") in self.vessels):
            return False
        if self.bbox is not None:
            lon, lat = alert.get("lon"), alert.get("lat")
            if lon is not None and lat is not None and not _inside(self.bbox, lon, lat):
                return False
        return True


def _inside(bbox: tuple[float, float, float, float], lon: float, lat: float) -> bool:
    return bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]


class Subscriber:
    """One client: a bounded queue of encoded events, oldest dropped first when full."""

    def __init__(self, filt: StreamFilter, max_queue: int) -> None:
        self.filter = filt
        self.max_queue = max_queue
        self.queue: deque[bytes] = deque()
        self.dropped = 0
        self.sent = 0
        self.closed = False
        self._wake = asyncio.Event()

    def put(self, chunk: bytes) -> None:
        queue = self.queue
        if len(queue) >= self.max_queue:
            queue.popleft()
            self.dropped += 1
        queue.append(chunk)
        if not self._wake.is_set():
            self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def chunks(self, linger_s: float, keepalive_s: float = _KEEPALIVE_S
                     ) -> AsyncIterator[bytes]:
        """What to write to the client, until the hub closes."""
        reported = 0
        yield b": connected\n\n"
        while not self.closed:
            try:
                await asyncio.wait_for(self._wake.wait(), keepalive_s)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if linger_s > 0 and not self.closed:
                await asyncio.sleep(linger_s)
            self._wake.clear()
            parts = list(self.queue)
            self.queue.clear()
            if self.dropped != reported:
                reported = self.dropped
                parts.insert(0, _encode("dropped", {"dropped": reported}))
            if parts:
                self.sent += len(parts)
                yield b"".join(parts)


@dataclass(slots=True)
class HubStats:
    clients: int
    events: int
    delivered: int
    dropped: int


class StreamHub:
    """Fans alerts and positions out to SSE clients; a ``Sink``, never blocking ingest."""

    def __init__(self, *, max_queue: int = 1000, linger_s: float = 0.05) -> None:
        self.max_queue = max_queue
        self.linger_s = linger_s
        self._subs: set[Subscriber] = set()
        self._closed = False
        self.events = 0
        self.delivered = 0
        self._dropped_gone = 0

    # -- Sink ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._closed = False

    async def stop(self) -> None:
        self.close()

    def on_report(self, report: Report) -> None:
        subs = self._subs
        if not subs or report.lat is None or report.lon is None or report.own:
            return
        mmsi, lon, lat = report.mmsi, report.lon, report.lat
        chunk: bytes | None = None
        for sub in subs:
            if sub.filter.wants_position(mmsi, lon, lat):
                if chunk is None:
                    chunk = _encode("position", position_payload(report))
                    self.events += 1
                sub.put(chunk)
                self.delivered += 1

    def on_alert(self, event: AlertEvent) -> None:
        self.publish_alert(str(event.transition), event.alert)

    def publish_alert(self, transition: str, alert: Mapping[str, Any]) -> None:
        """An alert transition from the rules, or an operator act (``update``)."""
        chunk: bytes | None = None
        for sub in self._subs:
            if sub.filter.wants_alert(alert):
                if chunk is None:
                    chunk = _encode("alert", {"type": transition, "alert": dict(alert)})
                    self.events += 1
                sub.put(chunk)
                self.delivered += 1

    # -- clients ------------------------------------------------------------------------

    def subscribe(self, filt: StreamFilter) -> Subscriber:
        sub = Subscriber(filt, self.max_queue)
        if self._closed:
            sub.close()
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            self._dropped_gone += sub.dropped
        sub.close()

    async def stream(self, filt: StreamFilter) -> AsyncIterator[bytes]:
        """The body of one SSE response; unsubscribes when the client goes away."""
        sub = self.subscribe(filt)
        try:
            async for chunk in sub.chunks(self.linger_s):
                yield chunk
        finally:
            self.unsubscribe(sub)

    def close(self) -> None:
        """End every stream (at shutdown, so the server need not wait for them)."""
        self._closed = True
        for sub in self._subs:
            sub.close()

    @property
    def clients(self) -> int:
        return len(self._subs)

    def stats(self) -> HubStats:
        dropped = self._dropped_gone + sum(s.dropped for s in self._subs)
        return HubStats(clients=len(self._subs), events=self.events,
                        delivered=self.delivered, dropped=dropped)


def position_payload(report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mmsi": report.mmsi, "time": iso_time(report.time), "lat": report.lat,
        "lon": report.lon, "speed": report.speed, "course": report.course,
        "heading": report.heading, "status": report.status,
    }
    if report.shipname is not None:
        out["shipname"] = report.shipname
    if report.extra and report.extra.get("drill"):
        out["drill"] = True
    return out


def _encode(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def parse_csv_ints(text: str | None, what: str) -> frozenset[int] | None:
    if text is None or not text.strip():
        return None
    try:
        return frozenset(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated integers") from None


def parse_csv(text: str | None) -> frozenset[str] | None:
    if text is None or not text.strip():
        return None
    return frozenset(v.strip() for v in text.split(",") if v.strip())


def filter_of(bbox: tuple[float, float, float, float] | None, rules: Iterable[str] | None,
              vessels: Iterable[int] | None, kinds: Iterable[str] | None) -> StreamFilter:
    return StreamFilter(bbox=bbox, rules=None if rules is None else frozenset(rules),
                        vessels=None if vessels is None else frozenset(vessels),
                        kinds=frozenset(KINDS if kinds is None else kinds))
