"""The collaborators the HTTP app is built from, as small protocols.

The app depends on these shapes, never on the concrete pipeline, engine or store classes,
so it can be built over a real store in tests and wired differently by the service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from api.auth import Authenticator
from api.stream import StreamHub
from geofence.zones import ZoneSet
from store.base import Snooze, Store


class PictureView(Protocol):
    """The live picture: JSON-ready vessel dicts (``api.picture.LivePicture`` is one)."""

    def vessels(self) -> Iterable[Mapping[str, Any]]: ...

    def vessel(self, mmsi: int) -> Mapping[str, Any] | None: ...


class ZoneTarget(Protocol):
    """Where new zones take effect (``harbourwatch.pipeline.Pipeline`` is one: the alerts
    the change ends go to the sinks)."""

    def set_zones(self, zones: ZoneSet) -> Sequence[str] | None:
        """What went wrong applying them, the zones in force all the same (a rule that
        raised on them), for the answer's ``warnings``."""
        ...


class SnoozeTarget(Protocol):
    """Optional: rules told directly about snoozes (the store keeps them in any case)."""

    def snooze(self, rule: str, mmsi: int, until: float, made: Snooze | None = None
               ) -> None: ...

    def unsnooze(self, rule: str, mmsi: int) -> None: ...

    def is_muted(self, alert_id: str) -> bool:
        """An open alert a snooze muted: never pushed, its acts neither."""
        ...

    def is_snoozed(self, rule: str, mmsi: int) -> bool:
        """Whether a snooze of ``rule`` for ``mmsi`` is kept: one that mutes, or one run out
        whose record is held (``DELETE /snoozes`` while the database is away)."""
        ...

    def kept(self) -> list[Snooze] | None:
        """The store's snoozes as the rules hold them, with their records (``GET /snoozes``
        while the database is away); ``None`` when they are not all held."""
        ...


class AlertMemory(Protocol):
    """The alerts the running rules hold (``harbourwatch.alert_memory.EngineAlerts``), as
    the store gives them: the alert list while the database is away."""

    #: Memory holds the alerts of the run's own kind only.
    drill: bool

    def alerts(self) -> list[dict[str, Any]]: ...

    def alert(self, alert_id: str) -> dict[str, Any] | None: ...


#: ``Pipeline.stats``-shaped counters (``reports``, ``alert_events``, ``sources``...).
StatsProvider = Callable[[], Mapping[str, Any]]
#: ``{"sources": {name: SourceHealth.to_dict()}, "receivers": {name: ReceiverHealth...}}``.
SourcesProvider = Callable[[], Mapping[str, Any]]


class HasHealth(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class _HasSourceHealth(Protocol):
    @property
    def health(self) -> HasHealth: ...


class IngestorView(Protocol):
    """What :func:`sources_of` reads from ``ingest.ingestor.Ingestor``."""

    @property
    def sources(self) -> Mapping[str, _HasSourceHealth]: ...
    @property
    def receivers(self) -> Mapping[str, HasHealth]: ...


def sources_of(ingestor: IngestorView,
               transport: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
               ) -> SourcesProvider:
    """A :data:`SourcesProvider` over an ingestor's live counters, each source's merged
    with ``transport``'s (lines the queue dropped, links lost: what never reached ingest)."""

    def provide() -> dict[str, Any]:
        sources = {n: s.health.to_dict() for n, s in ingestor.sources.items()}
        for name, counters in (transport() if transport is not None else {}).items():
            sources[name] = {**sources.get(name, {"name": name}), **counters}
        return {"sources": sources,
                "receivers": {n: r.to_dict() for n, r in ingestor.receivers.items()}}

    return provide


def _nothing() -> Mapping[str, Any]:
    return {}


@dataclass(slots=True)
class ApiDeps:
    """Everything ``create_app`` needs; only ``store`` and ``auth`` are required."""

    store: Store
    auth: Authenticator
    picture: PictureView | None = None
    hub: StreamHub | None = None
    #: The zones running now (GET /zones before any PUT).
    zones: ZoneSet = field(default_factory=ZoneSet.empty)
    zone_target: ZoneTarget | None = None
    snooze_target: SnoozeTarget | None = None
    #: The alerts the running rules hold: while the database is away the alert list is
    #: served from them and operator acts are queued (None: a store-only API answers 503).
    alert_memory: AlertMemory | None = None
    stats: StatsProvider = _nothing
    sources: SourcesProvider = _nothing
    #: The MQTT feed's ``status()``, when the run feeds a broker.
    mqtt: StatsProvider | None = None
    #: The rules' clock (message time, moved on by the wall clock while every source is
    #: silent) for snoozes, default track ranges and zone versions: a snooze in a drill
    #: replay covers drill time, and a live one ends when the rules re-arm.
    clock: Callable[[], float] = time.time
    #: Told of every operator act (ack, resolve) with the updated alert, e.g. the MQTT feed.
    operator_updates: list[Callable[[Mapping[str, Any]], None]] = field(default_factory=list)
    #: Told of every operator act as a record (``act``: ack, resolve, snooze, unsnooze; who,
    #: note, wall ``time``, ``message_time`` on the rules' clock), e.g. a drill's alerts file.
    act_records: list[Callable[[Mapping[str, Any]], None]] = field(default_factory=list)
    #: The service runs a drill: a track shows its positions unless asked otherwise (a drill
    #: replayed into the live database shares it with the real positions of the same log).
    drill: bool = False
    #: PUT /zones saves a new version of the port's zones (the live service). A replay or a
    #: drill only applies it to itself: saved, it became the live service's zones.
    saves_zones: bool = True
    #: The SHA-256 of the zones file's bytes as they are now (None: no file, or unreadable),
    #: saved with each version: the next start keeps the version until the file changes.
    zones_file_sha256: Callable[[], str | None] | None = None
    version: str = "0.1.0"
    extra: dict[str, Any] = field(default_factory=dict)
