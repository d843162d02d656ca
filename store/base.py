"""The store contract: errors, value types and the ``Store`` protocol both backends implement.

Errors (translated at the backend boundary, ``raise ... from exc``)::

    StoreError              anything the store could not do
    ├── StoreUnavailable    the database cannot do it right now (retry later)
    │   ├── StoreUnreachable  no connection to it
    │   └── StoreTimedOut     it did not answer in time (a lock held, the server overloaded)
    ├── StoreRefused        refused, neither known to be about a row nor about the database
    └── NotFound            the alert (or other object) asked for does not exist

Times are Unix seconds (message time for data from the pipeline, wall time for operator
acts); read methods return JSON-ready dicts with ISO 8601 ``Z`` times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

from geofence.alert import AlertEvent
from ingest.report import Report


class StoreError(Exception):
    """The store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The database cannot do it now, for its own state, not the rows' (connection refused,
    server shutting down, timeout, a refusal, a damaged SQLite file): retry later."""

    #: What happened, in the writer's log: a subclass says when it knows more.
    what = "database unavailable"


class StoreUnreachable(StoreUnavailable):
    """No connection to the database (refused, lost, not made in time)."""

    what = "database unreachable"


class StoreTimedOut(StoreUnavailable):
    """Connected, but the database did not answer in time: a lock held past the timeout
    (another connection writing, a table locked), or the server overloaded. Said as such:
    the log called it "unreachable", and the operator looked for a network fault."""

    what = "database timed out"


class StoreRefused(StoreError):
    """The database refused a write for a reason known neither as an outage nor as an
    error about a row (an exception a trigger or a function raised): the writer splits the
    batch to find the rows it is about, and sets them aside only once it took others."""


class NotFound(StoreError):
    """The object asked for does not exist."""


class Conflict(StoreError):
    """The act contradicts one already made (an alert acknowledged or resolved twice)."""


@dataclass(slots=True, frozen=True)
class AlertQuery:
    """Filters for :meth:`Store.alerts`; ``None`` means "any".

    ``mmsi`` matches either vessel of an alert; ``start``/``end`` select alerts whose active
    span ``[started_at, ended_at or ∞)`` overlaps the range; ``rule``, ``state``,
    ``risk_area`` and ``severity`` may each be one value or a non-empty tuple of values (any
    of them).
    ``after``: only alerts after this one in the listing's order (newest started first,
    then id): a page that new alerts cannot shift.
    """

    rule: str | tuple[str, ...] | None = None
    state: str | tuple[str, ...] | None = None
    risk_area: str | tuple[str, ...] | None = None
    severity: str | tuple[str, ...] | None = None
    zone: str | None = None
    mmsi: int | None = None
    start: float | None = None
    end: float | None = None
    drill: bool | None = None
    after: str | None = None
    limit: int = 100
    offset: int = 0


@dataclass(slots=True, frozen=True)
class VesselState:
    """Serialised rule state of one vessel (``state`` is the rules' own JSON, or the error
    reading it), for restart."""

    mmsi: int
    time: float
    state: dict[str, Any] | Exception


@dataclass(slots=True, frozen=True)
class VesselStateJSON:
    """A :class:`VesselState` to save, its state already JSON text (encoded by the caller a
    few vessels at a time, so a large picture does not hold up the event loop)."""

    mmsi: int
    time: float
    state: str


@dataclass(slots=True, frozen=True)
class OutboxMessage:
    """One MQTT message waiting to be published."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


@dataclass(slots=True, frozen=True)
class Snooze:
    rule: str
    mmsi: int
    until: float
    actor: str
    note: str | None = None
    created: float = 0.0


#: What an operator can do while the database is away (see QueuedAct).
ActAction = Literal["ack", "resolve", "snooze", "unsnooze"]
ACT_ACTIONS: frozenset[str] = frozenset(get_args(ActAction))


@dataclass(slots=True, frozen=True)
class QueuedAct:
    """An operator act made while the database was away (``action``: ack, resolve, snooze,
    unsnooze). The writer stores it in queue order, after the alert rows queued before it,
    with the operator's name and wall time as given (and, for an ack or resolve, the rules'
    clock then, ``message_at``); spooled when queued, so neither a stop nor a crash before
    the database is back loses it."""

    action: ActAction
    actor: str
    at: float
    note: str | None = None
    alert_id: str | None = None
    rule: str | None = None
    mmsi: int | None = None
    until: float | None = None
    #: None in a spool written before it was kept: the act is stored without it.
    message_at: float | None = None

    def __post_init__(self) -> None:
        """ValueError for an act that cannot be written as it was made (an unknown action
        was written as an ack)."""
        if self.action not in ACT_ACTIONS:
            raise ValueError(f"unknown operator act {self.action!r}")
        if not isinstance(self.actor, str) or not isinstance(self.at, int | float):
            raise ValueError("an operator act needs its actor and time")
        if self.action in ("ack", "resolve") and not isinstance(self.alert_id, str):
            raise ValueError(f"{self.action} needs an alert id")
        if self.action in ("snooze", "unsnooze") and (
                not isinstance(self.rule, str) or not isinstance(self.mmsi, int)):
            raise ValueError(f"{self.action} needs a rule and an MMSI")
        if self.action == "snooze" and not isinstance(self.until, int | float):
            raise ValueError("snooze needs an end")

    @property
    def dedup(self) -> str:
        """Its audit row's key: a batch written again after an ambiguous failure (the
        commit made, its answer lost) finds it and does not act twice."""
        what = self.alert_id if self.alert_id is not None else f"{self.rule}:{self.mmsi}"
        return f"act|{self.action}|{what}|{self.actor}|{self.at!r}"

    def to_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> QueuedAct:
        return cls(**{name: row.get(name) for name in cls.__slots__})  # type: ignore[arg-type]


@dataclass(slots=True)
class WriterStats:
    """Counters of the background writer (for /metrics and /stats)."""

    queued: int = 0
    #: positions stored, and those ignored because their key (mmsi, time, msg_type, drill)
    #: was already stored (a catch-up, a replay, or two reports sharing a key)
    written_positions: int = 0
    duplicate_positions: int = 0
    #: positions waiting until no duplicate can add a receiver to them (store.common)
    held_positions: int = 0
    written_statics: int = 0
    written_alerts: int = 0
    spooled: int = 0
    rejected: int = 0
    batches: int = 0
    failures: int = 0
    #: operator acts made while the database was away: stored, refused by it when
    #: written (the alert acted on meanwhile), and still queued or spooled
    written_acts: int = 0
    dropped_acts: int = 0
    pending_acts: int = 0
    db_up: bool = True
    #: the database is back and alert transitions or acts queued while it was away, or
    #: behind the rows an earlier run spooled, are not all written yet (the API answers the
    #: alert list from memory meanwhile)
    catching_up: bool = False
    spool_pending: int = 0
    #: wall time (Unix seconds) the database last took a write: with rows ``queued``, a
    #: writer stuck behind a lock shows by its age (``db_up`` stays true until the timeout)
    last_write_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Store(Protocol):
    """What the service, the API and the MQTT feed use. Implements ``harbourwatch.sinks.Sink``."""

    #: ``True`` when positions live in a TimescaleDB hypertable (PostgreSQL only).
    timescaledb: bool
    #: Human-readable description of the backend, for the start-up log.
    description: str

    # --- sink (never blocks) ---------------------------------------------------------------
    async def start(self) -> None: ...
    def on_report(self, report: Report) -> None: ...
    def on_alert(self, event: AlertEvent) -> None: ...
    async def stop(self) -> None: ...
    async def flush(self, *, held: bool = True) -> None:
        """Wait until everything queued so far is written (or spooled while the DB is down);
        ``held``: positions held for late duplicates' receivers too."""

    async def spooled_alerts_written(self) -> None:
        """Wait until the alert transitions and acts an earlier run spooled are written (at
        start-up, before the rules' state is read back); its positions follow later."""

    def stats(self) -> WriterStats: ...

    # --- reading -------------------------------------------------------------------------
    # ``rejected``: also the fixes the rules rejected (marked ``"rejected": true``).
    async def track(self, mmsi: int, start: float, end: float, max_points: int = 2000,
                    drill: bool | None = None, rejected: bool = False
                    ) -> list[dict[str, Any]]: ...
    async def picture_at(self, t: float, window: float = 3600.0,
                         drill: bool | None = None) -> list[dict[str, Any]]: ...
    async def position_count(self, mmsi: int | None = None) -> int: ...
    async def vessel(self, mmsi: int) -> dict[str, Any] | None: ...
    async def vessel_history(self, mmsi: int) -> list[dict[str, Any]]: ...
    async def alerts(self, query: AlertQuery | None = None) -> list[dict[str, Any]]: ...
    async def count_alerts(self, query: AlertQuery) -> int:
        """How many alerts match ``query``'s filters, over every page (its ``after``,
        ``limit`` and ``offset`` aside)."""
    async def alert(self, alert_id: str) -> dict[str, Any]: ...
    async def audit(self, alert_id: str) -> list[dict[str, Any]]: ...
    async def alert_summary(self, query: AlertQuery) -> dict[str, Any]:
        """Counts and response times of the alerts that started in ``[query.start,
        query.end)`` and match its other filters (see ``store.common.summary``)."""
    async def open_alerts(self) -> list[dict[str, Any]]:
        """Alerts whose condition the rules still follow: open, acknowledged, and resolved
        by an operator before it ended (the rules end it when it no longer holds)."""

    # --- operator acts (audited) ---------------------------------------------------------
    # ``message_at``: the rules' clock when the act was taken (a drill's debrief reads the
    # trainees' response times on it); ``at`` is the wall time.
    async def ack(self, alert_id: str, actor: str, note: str | None = None,
                  at: float | None = None, *, message_at: float | None = None
                  ) -> dict[str, Any]: ...
    async def resolve(self, alert_id: str, actor: str, note: str | None = None,
                      at: float | None = None, *, message_at: float | None = None
                      ) -> dict[str, Any]: ...
    async def snooze(self, rule: str, mmsi: int, until: float, actor: str,
                     note: str | None = None, at: float | None = None) -> Snooze: ...
    async def snoozes(self, active_at: float | None = None) -> list[Snooze]: ...
    async def unsnooze(self, rule: str, mmsi: int, actor: str,
                       at: float | None = None) -> bool: ...
    def queue_act(self, act: QueuedAct) -> bool:
        """Write ``act`` with the writer's rows (the database is away: see QueuedAct). True
        once it is on disk (spooled with the rows queued before it), False when the spool
        cannot be written (logged): it is then queued in memory only."""
    def continue_exercise(self, alert_ids: Iterable[str]) -> None:
        """A drill resumed: ``alert_ids`` (restored open) are this run's exercise, not an
        earlier one's whose acts its ``new`` clears."""

    def watch_dropped_acts(self, listener: Callable[[QueuedAct], None]) -> None:
        """Call ``listener`` with each queued act the database refused when written (so
        whoever showed it can show the store's alert instead)."""

    # Snooze and unsnooze acts, newest first, on ``rule`` (one, or a tuple: any of them)
    # and ``mmsi`` (see store.common.snooze_acts).
    async def snooze_acts(self, rule: str | tuple[str, ...] | None = None,
                          mmsi: int | None = None,
                          limit: int = 100) -> list[dict[str, Any]]: ...

    # --- zones, restart state, health, outbox ---------------------------------------------
    async def save_zones(self, geojson: Mapping[str, Any], actor: str,
                         at: float | None = None, file_sha256: str | None = None) -> int:
        """A new version; ``file_sha256``: the zones file's bytes' SHA-256 when it was saved
        (the live service's start takes this version until the file's content changes)."""
        ...
    async def latest_zones(self) -> dict[str, Any] | None:
        """The last version saved: ``version``, ``time``, ``actor``, ``geojson``,
        ``file_sha256`` (None: saved before it was kept, or with no zones file)."""
        ...
    # Saved rule state has a scope: "live" for the service, "replay" for replays.
    async def save_vessel_states(self, states: Iterable[VesselStateJSON], replace: bool = False,
                                 scope: str = "live") -> None: ...
    async def load_vessel_states(self, scope: str = "live") -> dict[int, VesselState]:
        """A state that cannot be read back (not JSON) is the exception reading it raised,
        as in ``load_engine_state``."""
        ...
    async def save_engine_state(self, time: float, parts: Mapping[str, Any],
                                scope: str = "live") -> None: ...
    async def load_engine_state(self, scope: str = "live") -> dict[str, Any]:
        """Each part as saved; a part that cannot be read back (not JSON: a damaged
        SQLite file) is the exception reading it raised, for the rules to say and start
        that part afresh (``Engine.restore``) instead of the start failing."""
        ...
    async def prune(self, before: float) -> int:
        """Drop positions and receiver-health snapshots older than ``before`` (Unix seconds):
        ``store.retention_days`` where no TimescaleDB policy does it. Positions dropped."""
        ...
    async def save_source_health(self, time: float,
                                 health: Mapping[str, Mapping[str, Any]]) -> None: ...
    async def latest_source_health(self) -> dict[str, dict[str, Any]]: ...
    # The outbox is per scope ("live", "replay", "drill"): each run drains its own.
    async def outbox_add(self, topic: str, payload: bytes | str, qos: int = 1,
                         retain: bool = False, scope: str = "live") -> int: ...
    async def outbox_pending(self, limit: int = 100, scope: str = "live"
                             ) -> list[OutboxMessage]: ...
    async def outbox_done(self, ids: Iterable[int]) -> None: ...
    async def outbox_discard(self, scope: str) -> int:
        """Drop every message of ``scope`` (a new drill: the last exercise's unsent alerts
        are not this one's); how many."""
        ...
    async def begin_exercise(self) -> int:
        """A new drill exercise: the drill alerts stored are an earlier exercise's, left out
        of ``drill=true`` listings until this one raises them again; how many."""
        ...
