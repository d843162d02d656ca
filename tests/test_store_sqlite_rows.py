"""SQLite positions: the multi-row INSERTs store exactly what one row at a time would."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from geofence.alert import Alert, AlertEvent, AlertState, RiskArea, Severity, Transition
from ingest.report import Report
from store.sqlite import SqliteStore

T0 = 1_767_261_600.0


def report(i: int) -> Report:
    """Varied values: missing speed/course/heading/status, several receiver lists, drills,
    fixes the rules rejected."""
    sources = [["rx1"], ["rx1", "rx2"], ["rx2", "rx1"], ["north", "søndre"], []][i % 5]
    return Report(mmsi=244000000 + i % 7, msg_type=(1, 3, 18)[i % 3], time=T0 + i * 0.37,
                  time_source="tagblock", sources=list(sources), nmea=[],
                  lat=51.9 + i * 1.234567e-7, lon=-4.1 - i * 7.654321e-7,
                  speed=None if i % 4 == 0 else i / 10, course=None if i % 6 == 0 else 0.1 * i,
                  heading=None if i % 5 == 0 else i % 360, status=None if i % 9 == 0 else i % 16,
                  extra={"drill": True} if i % 11 == 0 else
                  {"suspect": "position_jump"} if i % 13 == 0 else {})


def expected(r: Report) -> tuple[Any, ...]:
    """The row as the former ``executemany`` of one tuple per report stored it."""
    drill = bool(r.extra.get("drill", False))
    return (r.time, r.mmsi, r.lat, r.lon, r.speed, r.course, r.heading, r.status, r.msg_type,
            json.dumps(r.sources), int(drill), int(r.fix_rejected))


def stored(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT * FROM positions").fetchall())


@pytest.mark.parametrize("chunk", [None, 1, 3])
async def test_bulk_positions_match_row_by_row(tmp_path: Path, chunk: int | None) -> None:
    path = tmp_path / "hw.db"
    store = SqliteStore(path, batch_size=700, max_age=0.05)
    await store.start()
    if chunk is not None:  # as a library with a low parameter limit would give
        store._chunk = chunk
    reports = [report(i) for i in range(1537)]  # full chunks and every power-of-two remainder
    for r in reports:
        store.on_report(r)
    for r in reports[100:900]:  # replayed again: ignored, within and across batches
        store.on_report(r)
    await store.flush()
    await store.stop()
    assert stored(path) == sorted(expected(r) for r in reports)
    with sqlite3.connect(path) as conn:  # missing values are NULL (bound as NaN), not NaN
        nulls = conn.execute("SELECT count(*) FROM positions WHERE speed IS NULL").fetchone()
    assert nulls[0] == sum(r.speed is None for r in reports) > 0


async def test_chunk_follows_the_parameter_limit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hw.db")
    await store.start()
    try:
        assert store._chunk >= 1
        assert store._chunk * 11 <= sqlite3.connect(":memory:").getlimit(
            sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        await store.stop()


def static_report(i: int) -> Report:
    """Static data of 150 vessels (more than one statement's worth), changing as i grows."""
    return Report(mmsi=211000000 + i % 150, msg_type=5, time=T0 + i, time_source="tagblock",
                  sources=["rx1"], nmea=[], shipname=f"SHIP {i % 150}",
                  destination=("HAMBURG", "ROTTERDAM", None)[(i // 150) % 3],
                  draught=None if i % 4 == 0 else 5.0 + (i // 150) / 10)


def statics_of(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return (sorted(conn.execute("SELECT * FROM vessels").fetchall()),
                sorted(conn.execute("SELECT * FROM vessel_history").fetchall()))


async def test_static_batches_match_one_report_per_batch(tmp_path: Path) -> None:
    reports = [static_report(i) for i in range(600)]
    bulk = SqliteStore(tmp_path / "bulk.db", batch_size=1000, max_age=5.0)
    single = SqliteStore(tmp_path / "single.db", batch_size=1, max_age=5.0)
    for store in (bulk, single):
        await store.start()
        for r in reports:
            store.on_report(r)
            if store is single:
                await store.flush()  # one report per transaction, as the former code wrote
        await store.stop()
    vessels, history = statics_of(tmp_path / "bulk.db")
    assert (vessels, history) == statics_of(tmp_path / "single.db")
    assert len(vessels) == 150
    assert len(history) > 2 * len(vessels)  # first sighting, then later changes


async def test_a_partial_batch_is_written_within_the_flush_interval(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hw.db", batch_size=1000, max_age=0.05)
    await store.start()
    try:
        for i in range(10):
            store.on_report(report(i))
        for _ in range(400):  # no flush(): the interval alone must bring them in
            if await store.position_count() == 10:
                break
            await asyncio.sleep(0.025)
        assert await store.position_count() == 10
    finally:
        await store.stop()


def alert_events() -> list[AlertEvent]:
    """Three alerts' new/update/end, interleaved, and a replayed (duplicate) transition."""
    events: list[AlertEvent] = []
    alerts = [Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                    severity=Severity.WARNING, mmsi=244000000 + k, started_at=T0 + k,
                    zone="berth_3", lat=51.9, lon=4.1, details={"gap_s": 600})
              for k in range(3)]
    for k, alert in enumerate(alerts):
        events.append(AlertEvent(Transition.NEW, alert.to_dict(), T0 + k))
    for k, alert in enumerate(alerts):
        alert.details = {"gap_s": 700 + k}
        events.append(AlertEvent(Transition.UPDATE, alert.to_dict(), T0 + 10 + k))
    alerts[1].state, alerts[1].ended_at = AlertState.ENDED, T0 + 20
    events.append(AlertEvent(Transition.END, alerts[1].to_dict(), T0 + 20))
    events.append(AlertEvent(Transition.NEW, alerts[2].to_dict(), T0 + 2))  # replayed
    return events


def alerts_of(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Alerts (less the wall-clock updated_at) and the audit trail with its ids."""
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        alerts = [tuple(r[k] for k in r.keys() if k != "updated_at")  # noqa: SIM118
                  for r in conn.execute("SELECT * FROM alerts ORDER BY id")]
        audit = [tuple(r) for r in conn.execute("SELECT * FROM alert_audit ORDER BY id")]
    return alerts, audit


async def test_alert_batches_match_one_transition_per_batch(tmp_path: Path) -> None:
    bulk = SqliteStore(tmp_path / "bulk.db", batch_size=1000, max_age=5.0)
    single = SqliteStore(tmp_path / "single.db", batch_size=1, max_age=5.0)
    for store in (bulk, single):
        await store.start()
        for event in alert_events():
            store.on_alert(event)
            if store is single:
                await store.flush()
        await store.stop()
    alerts, audit = alerts_of(tmp_path / "bulk.db")
    assert (alerts, audit) == alerts_of(tmp_path / "single.db")
    assert sorted(a[4] for a in alerts) == ["ended", "open", "open"]  # state
    assert [a[4] for a in audit] == ["new", "new", "new", "end"]  # action; replay ignored


@pytest.mark.parametrize("inline", [False, True])
async def test_replay_writes_inline_on_the_loop_thread_with_the_same_rows(
        tmp_path: Path, inline: bool) -> None:
    """``inline_writes`` (replays) stores the same rows, written by the event loop's thread."""
    path = tmp_path / "hw.db"
    store = SqliteStore(path, batch_size=300, max_age=0.05, inline_writes=inline)
    await store.start()
    writers: set[int] = set()
    assert store._wconn is not None
    store._wconn.set_trace_callback(lambda _sql: writers.add(threading.get_ident()))
    reports = [report(i) for i in range(1000)]
    for r in reports:
        store.on_report(r)
    await store.flush()
    await store.stop()
    assert stored(path) == sorted(expected(r) for r in reports)
    main = threading.get_ident()
    assert writers and (writers == {main} if inline else main not in writers)


async def test_a_file_another_process_locks_fails_inline_writes_fast_and_loses_nothing(
        tmp_path: Path) -> None:
    """Inline batch writes (replays) do not wait out the 10 s busy timeout on the event loop:
    the write fails, the rows stay buffered, and they are written once the lock is gone."""
    path = tmp_path / "hw.db"
    store = SqliteStore(path, batch_size=50, max_age=0.01, inline_writes=True)
    await store.start()
    statements: list[str] = []
    assert store._wconn is not None
    store._wconn.set_trace_callback(statements.append)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing
        reports = [report(i) for i in range(120)]
        for r in reports:
            store.on_report(r)
        await store.flush()  # one failed try while the database is away
        down = store.stats()
        assert (down.db_up, down.written_positions) == (False, 0)
        assert down.failures >= 1
        # The lock was waited for 100 ms, then the connection's usual 10 s came back.
        assert statements[:3] == ["PRAGMA busy_timeout=100", "BEGIN IMMEDIATE",
                                  "PRAGMA busy_timeout=10000"]
        other.execute("ROLLBACK")
        for _ in range(100):  # the writer retries with back-off
            await store.flush()
            if store.stats().db_up and store.stats().queued == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        other.close()
        await store.stop()
    assert store.stats().written_positions == 120
    assert stored(path) == sorted(expected(r) for r in reports)


async def caught_up(store: Any) -> None:
    """Flush until the database is back and the spool written (the writer retries with
    back-off); bounded by a count of short sleeps, the assertions after it judge."""
    for _ in range(100):
        await store.flush()
        if store.stats().db_up and store.stats().spool_pending == 0:
            return
        await asyncio.sleep(0.1)


def _damage(path: Path, page: int, size: int, data: bytes | None = None) -> bytes:
    """Overwrite ``page`` (1-based) of the file with ``data`` (zeros); what it held."""
    with path.open("r+b") as fh:
        fh.seek((page - 1) * size)
        held = fh.read(size)
        fh.seek((page - 1) * size)
        fh.write(bytes(size) if data is None else data)
    return held


async def test_a_damaged_file_is_an_outage_and_its_rows_are_written_once_it_is_repaired(
        tmp_path: Path) -> None:
    """"database disk image is malformed" is a plain sqlite3.DatabaseError, which the store
    took for an error about the rows: every row went to the rejected file, never to be
    written. As on PostgreSQL, only an error about the row itself sets it aside: a damaged
    file is an outage, the rows are spooled, and written once the file is good again."""
    path = tmp_path / "hw.db"
    store = SqliteStore(path, batch_size=50, max_age=0.05)  # a live run's: a writer thread
    rejected = tmp_path / "hw.db.spool.rejected.jsonl"
    await store.start()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        before = [report(i) for i in range(100)]
        for r in before:
            store.on_report(r)
        await store.flush()
        assert store.stats().written_positions == 100
        # The positions table's root page zeroed on disk, once checkpointed into the file;
        # another connection's write makes the store's read its pages again.
        assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        size = other.execute("PRAGMA page_size").fetchone()[0]
        root = other.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'positions'").fetchone()[0]
        good = _damage(path, root, size)
        other.execute("PRAGMA user_version = 1")
        during = [report(i) for i in range(100, 220)]
        for r in during:
            store.on_report(r)
        await store.flush()  # one failed try
        down = store.stats()
        assert (down.db_up, down.rejected, down.queued, down.spool_pending) == (
            False, 0, 0, 120)
        assert not rejected.exists()
        _damage(path, root, size, good)  # repaired
        other.execute("PRAGMA user_version = 2")
        await caught_up(store)
    finally:
        other.close()
        await store.stop()
    stats = store.stats()
    assert (stats.written_positions, stats.duplicate_positions, stats.rejected) == (220, 0, 0)
    assert stored(path) == sorted(expected(r) for r in before + during)
    assert not rejected.exists()


async def test_a_file_whose_header_is_damaged_is_a_database_not_up_at_start(
        tmp_path: Path) -> None:
    """"file is not a database" stopped the live service's start as a bad setting (exit 2)
    instead of being waited for, like any database that is not up."""
    from store.base import StoreUnavailable

    path = tmp_path / "hw.db"
    store = SqliteStore(path)
    await store.start()
    store.on_report(report(0))
    await store.stop()
    good = _damage(path, 1, 100)
    with pytest.raises(StoreUnavailable, match="file is not a database"):
        await SqliteStore(path).start()
    _damage(path, 1, 100, good)
    again = SqliteStore(path)
    await again.start()
    try:
        assert await again.position_count() == 1
    finally:
        await again.stop()


async def test_a_row_sqlite_refuses_for_itself_is_still_set_aside(tmp_path: Path) -> None:
    """A row too big for the connection's length limit (DataError, as PostgreSQL's class 54)
    goes to the rejected file; the others are written, and the database is up."""
    path = tmp_path / "hw.db"
    store = SqliteStore(path, batch_size=50, max_age=0.05)
    await store.start()
    assert store._wconn is not None
    store._wconn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)
    try:
        good = [report(i) for i in range(10)]
        big = Report(mmsi=244000099, msg_type=1, time=T0, time_source="tagblock",
                     sources=[f"rx{i}" for i in range(300)], nmea=[], lat=51.9, lon=4.1)
        for r in [*good[:5], big, *good[5:]]:
            store.on_report(r)
        await store.flush()
        stats = store.stats()
    finally:
        await store.stop()
    assert (stats.db_up, stats.written_positions, stats.rejected) == (True, 10, 1)
    kept = [json.loads(line) for line in
            (tmp_path / "hw.db.spool.rejected.jsonl").read_text().splitlines()]
    assert [(k["item"][1][1], k["error"]) for k in kept] == [
        (244000099, f"SQLite {path}: string or blob too big")]
    assert stored(path) == sorted(expected(r) for r in good)


async def test_a_lock_another_connection_holds_is_said_as_a_timeout_not_unreachable(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """"database is locked" (SQLITE_BUSY: another connection writing past the busy timeout)
    was logged as "database unreachable", and the operator looked for a missing file or
    disk rather than for the other writer."""
    path = tmp_path / "hw.db"
    store = SqliteStore(path, batch_size=50, max_age=0.01, inline_writes=True)  # 0.1 s wait
    await store.start()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing
        with caplog.at_level(logging.WARNING):
            for i in range(120):
                store.on_report(report(i))
            await store.flush()  # one failed try
            assert not store.stats().db_up
            other.execute("ROLLBACK")
            await caught_up(store)
    finally:
        other.close()
        await store.stop()
    spool = tmp_path / "hw.db.spool.jsonl"
    assert caplog.messages == [
        f"store: database timed out (SQLite {path}: database is locked: another connection "
        f"held a lock on it past the busy timeout); spooling to {spool} until it is back",
        "store: database back; catching up"]
    assert store.stats().written_positions == 120


async def test_other_writes_still_wait_for_a_lock_in_a_replay(tmp_path: Path) -> None:
    """A snooze is not retried like a batch: inline or not, it waits for the lock."""
    path = tmp_path / "hw.db"
    store = SqliteStore(path, inline_writes=True)
    await store.start()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.5, other.execute, ("ROLLBACK",))
        release.start()
        await store.snooze("loitering", 244000001, T0 + 3600, "duty officer")
        release.join()
        assert [(s.rule, s.mmsi) for s in await store.snoozes()] == [("loitering", 244000001)]
    finally:
        other.close()
        await store.stop()


async def test_a_flush_waits_for_the_rows_queued_before_it_not_for_a_busy_producer(
        tmp_path: Path) -> None:
    """A replay at full speed kept the queue from ever emptying: an operator's ack, which
    flushes first so its alert is stored, waited for the end of the replay."""
    store = SqliteStore(tmp_path / "hw.db", batch_size=500, max_age=0.05)
    await store.start()
    before = [report(i) for i in range(2000)]
    for r in before:
        store.on_report(r)
    produced = len(before)

    async def busy() -> None:  # more rows at every turn of the loop, for ever
        nonlocal produced
        while True:
            for _ in range(200):
                store.on_report(report(produced))
                produced += 1
            await asyncio.sleep(0)

    producer = asyncio.create_task(busy())
    try:
        async with asyncio.timeout(60):  # hung for ever before; returns in well under 1 s
            await store.flush()
        assert await store.position_count() >= len(before)
        assert produced > len(before)  # the producer ran during the flush
    finally:
        producer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await producer
        await store.stop()
    assert await_count(tmp_path / "hw.db") == produced


def await_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM positions").fetchone()[0])
