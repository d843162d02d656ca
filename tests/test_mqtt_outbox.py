"""Outbox implementations: order, done, persistence across a reopen, store adapter."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.outbox import MemoryOutbox, Outbox, OutboxEntry, SqliteOutbox, StoreOutbox


class SyncStore:
    """A minimal store with ``outbox_*`` methods returning tuples (real SQLite).

    The project's ``store.SqliteStore`` returns ``OutboxMessage`` objects; the adapter takes
    both. It is not used here because its ``stop()`` does not return when only the outbox
    was used (reported to the lead).
    """

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE TABLE o (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT,"
                        " payload BLOB, qos INTEGER, retain INTEGER, scope TEXT)")

    def outbox_add(self, topic: str, payload: bytes, qos: int, retain: bool,
                   scope: str = "live") -> int:
        cur = self.db.execute("INSERT INTO o (topic, payload, qos, retain, scope) "
                              "VALUES (?,?,?,?,?)", (topic, payload, qos, retain, scope))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def outbox_pending(self, limit: int,
                       scope: str = "live") -> list[tuple[int, str, bytes, int, bool]]:
        rows = self.db.execute("SELECT id, topic, payload, qos, retain FROM o WHERE scope = ? "
                               "ORDER BY id LIMIT ?", (scope, limit)).fetchall()
        return [(i, t, p, q, bool(r)) for i, t, p, q, r in rows]

    def outbox_done(self, ids: list[int]) -> None:
        self.db.executemany("DELETE FROM o WHERE id = ?", [(i,) for i in ids])


class AsyncStore(SyncStore):
    async def outbox_add(self, topic: str, payload: bytes, qos: int,  # type: ignore[override]
                         retain: bool, scope: str = "live") -> int:
        return SyncStore.outbox_add(self, topic, payload, qos, retain, scope)

    async def outbox_pending(  # type: ignore[override]
        self, limit: int, scope: str = "live"
    ) -> list[tuple[int, str, bytes, int, bool]]:
        return SyncStore.outbox_pending(self, limit, scope)

    async def outbox_done(self, ids: list[int]) -> None:  # type: ignore[override]
        SyncStore.outbox_done(self, ids)


@pytest.fixture(params=["memory", "sqlite", "store-sync", "store-async"])
async def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outbox]:
    box: Outbox
    if request.param == "memory":
        box = MemoryOutbox()
    elif request.param == "sqlite":
        box = SqliteOutbox(tmp_path / "outbox.db")
    elif request.param == "store-sync":
        box = StoreOutbox(SyncStore(tmp_path / "store.db"))
    else:
        box = StoreOutbox(AsyncStore(tmp_path / "store.db"))
    yield box
    await box.close()


async def test_order_and_done(outbox: Outbox) -> None:
    ids = [await outbox.add(f"t/{i}", f"p{i}".encode(), 1, i % 2 == 0) for i in range(5)]
    assert ids == sorted(ids)
    pending = await outbox.pending(3)
    assert [e.topic for e in pending] == ["t/0", "t/1", "t/2"]
    assert pending[0] == OutboxEntry(ids[0], "t/0", b"p0", 1, True)
    await outbox.done([ids[0], ids[1]])
    assert [e.payload for e in await outbox.pending(10)] == [b"p2", b"p3", b"p4"]
    await outbox.done([])
    await outbox.done(ids[2:])
    assert await outbox.pending(10) == []


async def test_empty_payload_kept(outbox: Outbox) -> None:
    await outbox.add("t/clear", b"", 1, True)
    assert [(e.payload, e.retain) for e in await outbox.pending(1)] == [(b"", True)]


async def test_sqlite_outbox_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = SqliteOutbox(path)
    first = await box.add("a", b"1", 1, False)
    await box.add("b", b"2", 1, False)
    await box.done([first])
    await box.close()  # as after a crash: the file is all that is left

    again = SqliteOutbox(path)
    assert [(e.topic, e.payload) for e in await again.pending(10)] == [("b", b"2")]
    third = await again.add("c", b"3", 1, True)
    assert third > first  # ids keep increasing: order survives restarts
    assert again.count() == 2
    await again.close()
