"""A crash or power cut during a database outage: an operator act answered 202 is on disk
before the answer, an alert transition within one retry pass (real SQLite, real files; the
outage is the store's ``write_batch`` raising StoreUnavailable, the crash a copy of the spool
taken without a stop)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from geofence.alert import AlertEvent, Transition
from store.base import QueuedAct, StoreError, StoreUnavailable
from store.spool import Spool
from store.sqlite import SqliteStore
from tests.test_store_queued_acts import MMSI, T0, WALL, dark

POSITION = (T0, MMSI, -23.8, 151.4, 3.0, None, None, None, 1, ["rx1"], False, False)


def away(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The database away until the returned flag is cleared (``down.clear()``)."""
    down = [True]
    real = store.write_batch

    async def write_batch(batch: Any) -> int:
        if down:
            raise StoreUnavailable("database away (test)")
        return await real(batch)

    monkeypatch.setattr(store, "write_batch", write_batch)
    return down


async def found_away(store: SqliteStore) -> None:
    """A row to write, so that the writer tries and finds the database away."""
    store._writer.put(("p", (T0 - 1, *POSITION[1:])))
    await until(lambda: not store.stats().db_up, "the writer found the database away")


async def until(check: Any, what: str, limit: float = 10.0) -> None:
    for _ in range(int(limit / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {limit} s: {what}")


def crash_copy(spool: Path, to: Path) -> Path:
    """The spool's files as a power cut would leave them (nothing more is written)."""
    to.mkdir()
    for path in spool.parent.glob(spool.stem + "*"):
        shutil.copy(path, to / path.name)
    return to / spool.name


async def restarted(tmp_path: Path, spool: Path) -> SqliteStore:
    """The next start, over a fresh database (only what the spool kept can be in it)."""
    store = SqliteStore(tmp_path / "after.db", spool_path=spool, max_age=0.01)
    await store.start()
    await store.spooled_alerts_written()
    await store.flush()
    return store


async def test_an_act_queued_while_the_database_is_away_is_on_disk_when_queued(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept in memory up to store.buffer_rows, the ack a 202 had answered was lost by a
    power cut; now it is spooled when queued, after the alert and positions before it."""
    spool = tmp_path / "spool.jsonl"
    store = SqliteStore(tmp_path / "hw.db", spool_path=spool, max_age=0.01,
                        memory_limit=100_000)
    away(store, monkeypatch)
    await store.start()
    try:
        await found_away(store)
        alert = dark()
        store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0))
        for i in range(3):
            store._writer.put(("p", (T0 + i, *POSITION[1:])))
        # No await in between: what a 202 right after this finds on disk.
        assert store.queue_act(QueuedAct("ack", "duty", WALL, "seen", alert_id=alert.id))
        copy = crash_copy(spool, tmp_path / "crash")
        assert store.stats().queued == 0 and store.stats().pending_acts == 1
    finally:
        await store.stop()
    got, _mark = Spool(copy).peek(100)
    assert [kind for kind, _row in got] == ["p", "a", "p", "p", "p", "o"]  # in queue order
    after = await restarted(tmp_path, copy)
    try:
        row = await after.alert(alert.id)
        assert (row["state"], row["acknowledged_by"], row["ack_note"]) == (
            "acknowledged", "duty", "seen")
        assert await after.position_count() == 4
    finally:
        await after.stop()


async def test_alert_transitions_raised_while_the_database_is_away_reach_the_spool_in_a_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """They stayed in memory up to store.buffer_rows (a quiet port: hours), and a power cut
    lost them; now every retry pass spools the queue, and when the database is back every
    row is written once and the counters settle."""
    spool = tmp_path / "spool.jsonl"
    store = SqliteStore(tmp_path / "hw.db", spool_path=spool, max_age=0.01,
                        memory_limit=100_000)
    monkeypatch.setattr(store._writer, "_retry_initial", 0.01)
    monkeypatch.setattr(store._writer, "_retry_max", 0.05)
    down = away(store, monkeypatch)
    await store.start()
    try:
        await found_away(store)
        alert = dark()
        store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0))
        store._writer.put(("p", POSITION))
        # A retry pass is at most retry_max (here 0.05 s) away: a generous deadline.
        await until(lambda: Spool(spool).alerts_pending == 1, "the alert on disk", 5.0)
        copy = crash_copy(spool, tmp_path / "crash")
        assert store.stats().catching_up is False  # the database is not back yet
        down.clear()
        await until(lambda: store.stats().db_up and not store.stats().catching_up
                    and not store.stats().spool_pending and not store.stats().queued,
                    "caught up")
        assert (await store.alert(alert.id))["state"] == "open"
        assert await store.position_count() == 2
        stats = store.stats()
        assert (stats.pending_acts, stats.written_alerts, stats.spooled) == (0, 1, 3)
    finally:
        await store.stop()
    assert not spool.exists()
    after = await restarted(tmp_path, copy)
    try:
        assert (await after.alert(alert.id))["state"] == "open"
    finally:
        await after.stop()


def hold_position_writes(store: SqliteStore, monkeypatch: pytest.MonkeyPatch
                         ) -> tuple[asyncio.Event, asyncio.Event]:
    """Writes with positions wait, once begun (``writing``), until ``release`` is set."""
    real = store.write_batch
    writing, release = asyncio.Event(), asyncio.Event()

    async def write_batch(batch: Any) -> int:
        if batch.positions and not release.is_set():
            writing.set()
            await release.wait()
        return await real(batch)

    monkeypatch.setattr(store, "write_batch", write_batch)
    return writing, release


async def test_an_act_spooled_while_a_write_of_the_queue_is_in_flight_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The act spools the queue's front while the writer has it in hand: the write then
    succeeds, and the writer takes off the queue only what is still there."""
    store = SqliteStore(tmp_path / "hw.db", max_age=0.01)
    writing, release = hold_position_writes(store, monkeypatch)
    await store.start()
    try:
        alert = dark()
        store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0))
        store._writer.put(("p", POSITION))
        await asyncio.wait_for(writing.wait(), 10)
        store._writer.put(("p", (T0 + 1, *POSITION[1:])))
        assert store.queue_act(QueuedAct("ack", "duty", WALL, alert_id=alert.id))
        for i in (2, 3):  # after the act, still queued: not the write's to take off
            store._writer.put(("p", (T0 + i, *POSITION[1:])))
        release.set()
        await until(lambda: not store.stats().spool_pending and not store.stats().queued,
                    "written")
        await store.flush()
        assert (await store.alert(alert.id))["acknowledged_by"] == "duty"
        assert await store.position_count() == 4
        assert store.stats().failures == 0  # nor did the writer fail on an empty queue
        stats = store.stats()
        assert (stats.pending_acts, stats.written_acts, stats.catching_up) == (0, 1, False)
    finally:
        release.set()  # a failed assertion never leaves the write waiting
        await store.stop()


async def test_an_act_spooled_while_the_spool_is_being_written_keeps_the_rows_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer read the spool to its end and wrote it; an act spooled during that write
    (with an alert before it) is not removed with the rows it has written."""
    spool = tmp_path / "spool.jsonl"
    Spool(spool).append([("p", (T0 + i, *POSITION[1:])) for i in range(3)])
    store = SqliteStore(tmp_path / "hw.db", spool_path=spool, max_age=0.01)
    writing, release = hold_position_writes(store, monkeypatch)
    await store.start()
    try:
        await asyncio.wait_for(writing.wait(), 10)
        alert = dark()
        store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0))
        assert store.queue_act(QueuedAct("ack", "duty", WALL, alert_id=alert.id))
        release.set()
        await until(lambda: not store.stats().spool_pending and not store.stats().queued,
                    "written")
        await store.flush()
        row = await store.alert(alert.id)
        assert (row["state"], row["acknowledged_by"]) == ("acknowledged", "duty")
        assert await store.position_count() == 3
    finally:
        release.set()
        await store.stop()


async def test_an_act_the_spool_cannot_take_stays_queued_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A full disk: the act is queued in memory all the same (it is applied), logged, and
    ``queue_act`` says it is not on disk (the API's 202 then says ``memory``)."""
    store = SqliteStore(tmp_path / "hw.db", max_age=0.01)
    down = away(store, monkeypatch)
    real_append = store._writer._spool.append

    def append(items: list[Any]) -> None:
        raise StoreError("cannot write spool (test): No space left on device")

    await store.start()
    try:
        await found_away(store)
        alert = dark()
        store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0))
        monkeypatch.setattr(store._writer._spool, "append", append)
        with caplog.at_level(logging.ERROR):
            assert store.queue_act(QueuedAct("ack", "duty", WALL, alert_id=alert.id)) is False
        assert any("queued in memory only, not on disk" in m for m in caplog.messages)
        assert store.stats().pending_acts == 1 and store.stats().queued == 2
        assert not store._writer._spool.acts_pending
        monkeypatch.setattr(store._writer._spool, "append", real_append)
        down.clear()
        await until(lambda: store.stats().db_up and not store.stats().catching_up, "back")
        await store.flush()
        assert (await store.alert(alert.id))["acknowledged_by"] == "duty"
    finally:
        await store.stop()
