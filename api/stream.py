"""The live stream hub: alert transitions and position updates as server-sent events.

The hub is a ``harbourwatch.sinks.Sink``: the pipeline calls ``on_report``/``on_alert``,
which only encode once and append to a bounded ring shared by all clients (nothing at all
when no client listens). A client that reads too slowly loses its oldest events (counted,
and told with a ``dropped`` event so it can re-read ``GET /alerts``); ingest never waits
for a client, and its cost does not grow with the number of clients.

Events (``text/event-stream``)::

    event: alert      data: {"type": "new"|"update"|"end", "alert": {...}}
    event: position   data: {"mmsi": ..., "time": ..., "lat": ..., "lon": ..., ...}
    event: dropped    data: {"dropped": <total lost so far by this client, null: unknown>}

Alerts and positions carry an ``id`` (``<run>-<seq>``). A client that reconnects with it as
``Last-Event-ID`` (browsers' EventSource do) gets what it missed while it was away, as far as
the ring still holds it: alerts always (they go to the ring even with nobody listening),
positions if another client was listening. An id of an earlier run of the service, or one
the ring no longer holds, is told with ``dropped``.

Each client's writer sends everything queued in one chunk, waiting ``linger_s`` after the
first event so that at thousands of reports per second a client costs one write per
linger period rather than one per event.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from geofence.alert import AlertEvent
from geofence.picture import NON_VESSEL_TYPES
from harbourwatch.operator_acts import as_pushed
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

    def matches(self, kind: str, mmsi: int | None, other: int | None, lon: float | None,
                lat: float | None, rule: str | None) -> bool:
        if kind not in self.kinds:
            return False
        if self.rules is not None and kind == "alert" and rule not in self.rules:
            return False
        if self.vessels is not None and mmsi not in self.vessels and other not in self.vessels:
            return False
        if self.bbox is not None and lon is not None and lat is not None:
            return _inside(self.bbox, lon, lat)
        return True


def _inside(bbox: tuple[float, float, float, float], lon: float, lat: float) -> bool:
    return bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]


#: One ring entry: seq, kind, mmsi, other_mmsi, lon, lat, rule, encoded event.
_Entry = tuple[int, str, int | None, int | None, float | None, float | None, str | None, bytes]


class Subscriber:
    """One client: a cursor into the hub's ring; falling a whole ring behind drops events."""

    def __init__(self, hub: StreamHub, filt: StreamFilter, last_event_id: str | None = None
                 ) -> None:
        self.hub = hub
        self.filter = filt
        self.everything = filt == StreamFilter()
        self.cursor = hub.seq  # only what happens after subscribing
        self.dropped = 0
        #: Resumed from an id this hub cannot place: what was missed is unknown.
        self.lost_unknown = False
        if last_event_id is not None:
            run, _, seq = last_event_id.rpartition("-")
            # isascii: "²".isdigit() is true, and int("²") raises
            if run == hub.run_id and seq.isascii() and seq.isdigit() and int(seq) <= hub.seq:
                self.cursor = int(seq)  # take() counts what the ring no longer holds
            else:
                self.lost_unknown = True
        self.sent = 0
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.hub._wake_all()

    def take(self) -> list[bytes]:
        """Encoded events since the cursor that pass the filter (drops counted)."""
        hub = self.hub
        newest, size, ring = hub.seq, hub.ring_size, hub._ring
        oldest = newest - size
        if self.cursor < oldest:
            self.dropped += oldest - self.cursor
            self.cursor = oldest
        seqs = range(self.cursor + 1, newest + 1)
        self.cursor = newest
        if self.everything:
            return [ring[s % size][7] for s in seqs]
        filt = self.filter
        return [e[7] for e in (ring[s % size] for s in seqs) if filt.matches(*e[1:7])]

    async def chunks(self, linger_s: float, keepalive_s: float = _KEEPALIVE_S
                     ) -> AsyncIterator[bytes]:
        """What to write to the client, until the hub closes."""
        reported = 0
        hub = self.hub
        yield b": connected\n\n"
        if self.lost_unknown:
            yield _encode("dropped", {"dropped": None})
        while not self.closed:
            if hub.seq == self.cursor:
                try:
                    await asyncio.wait_for(hub._new.wait(), keepalive_s)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                hub._new.clear()  # every waiter is already woken
                if linger_s > 0 and not self.closed:
                    await asyncio.sleep(linger_s)  # let a burst gather into one write
            parts = self.take()
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
    dropped: int
    #: Clients turned away at ``max_clients``.
    refused: int = 0


class StreamFull(Exception):
    """``max_clients`` streams are open already."""


class StreamHub:
    """Fans alerts and positions out to SSE clients; a ``Sink``, never blocking ingest.

    Events go once into a shared ring of ``ring_size`` entries, whatever the number of
    clients; each client's writer reads from its own cursor and filters there, so the cost
    on the ingest path does not grow with clients. A client more than a ring behind loses
    the oldest events (counted) and is told with a ``dropped`` event.
    """

    def __init__(self, *, ring_size: int = 10_000, linger_s: float = 0.05,
                 max_clients: int = 100) -> None:
        """``max_clients``: each stream holds a connection, a file descriptor and a writer
        task; 1,100 idle ones were all accepted."""
        self.ring_size = ring_size
        self.linger_s = linger_s
        self.max_clients = max_clients
        self.refused = 0
        #: Tells this run's event ids from an earlier run's (seq starts again at 0).
        self.run_id = secrets.token_hex(4)
        self._run = self.run_id.encode()
        self.seq = 0
        self._ring: list[_Entry] = [(0, "", None, None, None, None, None, b"")] * ring_size
        self._subs: set[Subscriber] = set()
        self._new = asyncio.Event()
        self._closed = False
        self._dropped_gone = 0

    # -- Sink ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._closed = False

    async def stop(self) -> None:
        self.close()

    def _append(self, entry_tail: tuple[str, int | None, int | None, float | None,
                                        float | None, str | None, bytes]) -> None:
        self.seq = seq = self.seq + 1
        kind, mmsi, other, lon, lat, rule, encoded = entry_tail
        self._ring[seq % self.ring_size] = (seq, kind, mmsi, other, lon, lat, rule,
                                            b"id: %s-%d\n%s" % (self._run, seq, encoded))
        if not self._new.is_set():
            self._new.set()

    def on_report(self, report: Report) -> None:
        if (not self._subs or report.lat is None or report.lon is None or report.own
                or report.fix_rejected  # a spoofed jump is not the vessel's position
                or report.not_admitted  # beyond max_vessels: not in the picture either
                or report.msg_type in NON_VESSEL_TYPES):  # stations: no vessel (picture)
            return
        self._append(("position", report.mmsi, None, report.lon, report.lat, None,
                      _encode("position", position_payload(report))))

    def on_alert(self, event: AlertEvent) -> None:
        self.publish_alert(str(event.transition), event.alert)

    def publish_alert(self, transition: str, alert: Mapping[str, Any]) -> None:
        """An alert transition from the rules, or an operator act (``update``); kept in the
        ring with nobody listening too, for a client that reconnects. Shaped as MQTT has
        it (``as_pushed``): the same fields whichever of them made it."""
        self._append(("alert", alert.get("mmsi"), alert.get("other_mmsi"), alert.get("lon"),
                      alert.get("lat"), alert.get("rule"),
                      _encode("alert", {"type": transition, "alert": as_pushed(alert)})))

    # -- clients ------------------------------------------------------------------------

    def _wake_all(self) -> None:
        self._new.set()

    def subscribe(self, filt: StreamFilter, last_event_id: str | None = None) -> Subscriber:
        """A new client; :class:`StreamFull` (counted) when ``max_clients`` are open."""
        if len(self._subs) >= self.max_clients:
            self.refused += 1
            raise StreamFull(f"{len(self._subs)} live streams open (api.max_stream_clients)")
        sub = Subscriber(self, filt, last_event_id)
        if self._closed:
            sub.closed = True
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            self._dropped_gone += sub.dropped
        sub.close()

    async def stream(self, filt: StreamFilter, last_event_id: str | None = None
                     ) -> AsyncIterator[bytes]:
        """The body of one SSE response; unsubscribes when the client goes away."""
        async for chunk in self.events(self.subscribe(filt, last_event_id)):
            yield chunk

    async def events(self, sub: Subscriber) -> AsyncIterator[bytes]:
        """The body of the SSE response of a client subscribed already (its place taken
        when the request was answered); unsubscribes when the client goes away."""
        try:
            async for chunk in sub.chunks(self.linger_s):
                yield chunk
        finally:
            self.unsubscribe(sub)

    def close(self) -> None:
        """End every stream (at shutdown, so the server need not wait for them)."""
        self._closed = True
        for sub in self._subs:
            sub.closed = True
        self._wake_all()

    @property
    def clients(self) -> int:
        return len(self._subs)

    def stats(self) -> HubStats:
        dropped = self._dropped_gone + sum(s.dropped for s in self._subs)
        return HubStats(clients=len(self._subs), events=self.seq, dropped=dropped,
                        refused=self.refused)


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
