"""The outbox of MQTT alert messages: written before publishing, marked done after the ack.

An alert message is added here first; the feed publishes pending entries in id order and
marks them done only once the broker has acknowledged them (QoS 1). While the broker is
away entries wait; after a crash a persistent outbox still holds what was never acked, so
delivery is at least once, in order (a consumer de-duplicates on the alert id and type).

Implementations:

- :class:`MemoryOutbox`: in-process, for tests and for running without a store.
- :class:`SqliteOutbox`: its own SQLite file (stdlib ``sqlite3``), survives a crash.
- :class:`StoreOutbox`: adapts the store (``outbox_add``/``outbox_pending``/``outbox_done``,
  sync or async methods) once the store provides them.
"""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

_T = TypeVar("_T")


class OutboxEntry(NamedTuple):
    """One message waiting for the broker's acknowledgement."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox(Protocol):
    """Ordered, at-least-once queue of messages; ids increase in insertion order."""

    async def add(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Keep one message; return its id."""
        ...

    async def pending(self, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` messages not yet done, in id order."""
        ...

    async def done(self, ids: Sequence[int]) -> None:
        """Forget acknowledged messages."""
        ...

    async def close(self) -> None:
        """Release resources (no-op for most)."""
        ...


class MemoryOutbox:
    """In-memory outbox: survives broker outages, not a crash of the process."""

    def __init__(self) -> None:
        self._entries: dict[int, OutboxEntry] = {}
        self._next = 1

    async def add(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        entry_id = self._next
        self._next += 1
        self._entries[entry_id] = OutboxEntry(entry_id, topic, bytes(payload), qos, retain)
        return entry_id

    async def pending(self, limit: int) -> list[OutboxEntry]:
        out: list[OutboxEntry] = []
        for entry in self._entries.values():  # dicts keep insertion (= id) order
            if len(out) >= limit:
                break
            out.append(entry)
        return out

    async def done(self, ids: Sequence[int]) -> None:
        for entry_id in ids:
            self._entries.pop(entry_id, None)

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._entries)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS mqtt_outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    qos     INTEGER NOT NULL,
    retain  INTEGER NOT NULL
)
"""


class SqliteOutbox:
    """Outbox in a SQLite file (WAL): a crash does not lose an unacknowledged alert.

    Calls are synchronous and short (one small transaction each); alerts are rare, so
    this does not hold up the event loop in practice. ``AUTOINCREMENT`` keeps ids
    increasing even after the table has been emptied, so order survives restarts.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the add must be on disk before we tell ourselves it is safe.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    async def add(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        cur = self._db.execute(
            "INSERT INTO mqtt_outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
            (topic, bytes(payload), qos, int(retain)),
        )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    async def pending(self, limit: int) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM mqtt_outbox ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [OutboxEntry(int(i), str(t), bytes(p), int(q), bool(r)) for i, t, p, q, r in rows]

    async def done(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        self._db.execute("BEGIN")
        self._db.executemany("DELETE FROM mqtt_outbox WHERE id = ?", [(i,) for i in ids])
        self._db.execute("COMMIT")

    async def close(self) -> None:
        self._db.close()

    def count(self) -> int:
        """Entries not yet acknowledged (for tests and stats)."""
        row = self._db.execute("SELECT count(*) FROM mqtt_outbox").fetchone()
        return int(row[0])


class OutboxStore(Protocol):
    """What the store offers for the outbox; its methods may be plain or ``async``.

    ``outbox_pending`` rows are either objects with ``id, topic, payload, qos, retain``
    attributes (``store.OutboxMessage``) or ``(id, topic, payload, qos, retain)`` tuples.
    """

    def outbox_add(
        self, topic: str, payload: bytes, qos: int, retain: bool, scope: str
    ) -> int | Awaitable[int]: ...

    def outbox_pending(self, limit: int,
                       scope: str) -> Iterable[Any] | Awaitable[Iterable[Any]]: ...

    def outbox_done(self, ids: list[int]) -> Awaitable[None] | None: ...


def _entry(row: Any) -> OutboxEntry:
    if isinstance(row, tuple):
        i, t, p, q, r = row
    else:
        i, t, p, q, r = row.id, row.topic, row.payload, row.qos, row.retain
    payload = p.encode() if isinstance(p, str) else bytes(p)
    return OutboxEntry(int(i), str(t), payload, int(q), bool(r))


async def _resolve(value: _T | Awaitable[_T]) -> _T:
    if inspect.isawaitable(value):
        return await value
    return value


class StoreOutbox:
    """:class:`Outbox` over the store's ``outbox_*`` methods (SQLite or PostgreSQL).

    ``scope`` ("live", "replay", "drill") keeps each run's messages its own: a drill into
    the live database drained the live service's outbox to the training broker."""

    def __init__(self, store: OutboxStore, scope: str = "live") -> None:
        self._store = store
        self.scope = scope

    async def add(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        return int(await _resolve(self._store.outbox_add(topic, bytes(payload), qos, retain,
                                                         scope=self.scope)))

    async def pending(self, limit: int) -> list[OutboxEntry]:
        rows = await _resolve(self._store.outbox_pending(limit, scope=self.scope))
        return [_entry(row) for row in rows]

    async def done(self, ids: Sequence[int]) -> None:
        if ids:
            await _resolve(self._store.outbox_done(list(ids)))

    async def close(self) -> None:
        return None  # the store belongs to its owner
