"""The store contract: one test suite, run against real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from geofence.alert import Alert, AlertEvent, AlertState, RiskArea, Severity, Transition
from ingest.ingestor import sources_final_after
from ingest.report import Report, iso_time
from store import (
    AlertQuery,
    Conflict,
    NotFound,
    QueuedAct,
    Store,
    StoreError,
    VesselState,
    VesselStateJSON,
    open_store,
)

T0 = 1_767_261_600.0  # 2026-01-01T10:00:00Z
A, B, C = 244123456, 244654321, 211000001


def pos(mmsi: int, t: float, lat: float = 51.9, lon: float = 4.1, speed: float | None = 5.5,
        msg_type: int = 1, **extra: Any) -> Report:
    return Report(mmsi=mmsi, msg_type=msg_type, time=t, time_source="tagblock",
                  sources=["rx1", "rx2"], nmea=["!AIVDM,..."], lat=lat, lon=lon, speed=speed,
                  course=87.5, heading=88, status=0, extra=extra)


def static(mmsi: int, t: float, **fields: Any) -> Report:
    return Report(mmsi=mmsi, msg_type=5, time=t, time_source="tagblock", sources=["rx1"],
                  nmea=[], **fields)


def alert_event(transition: Transition, alert: Alert, t: float) -> AlertEvent:
    return AlertEvent(transition, alert.to_dict(), t)


def dark(mmsi: int = A, start: float = T0, drill: bool = False, zone: str = "berth_3") -> Alert:
    return Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                 severity=Severity.WARNING, mmsi=mmsi, started_at=start, zone=zone,
                 shipname="NORDIC", lat=51.9, lon=4.1, drill=drill, details={"gap_s": 700})


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hw.db'}"
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def store(store_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(store_url, tmp_path, max_age=0.05)
    await s.start()
    yield s
    await s.stop()


async def test_positions_round_trip_with_values(store: Store) -> None:
    for i in range(50):
        store.on_report(pos(A, T0 + i * 10, lat=51.9 + i * 1e-4, speed=5.5 + i / 10))
    store.on_report(pos(B, T0 + 5, lat=52.0, lon=4.2, speed=None, drill=True))
    store.on_report(static(C, T0, shipname="NO POSITION"))  # no position: no row
    await store.flush()

    assert await store.position_count() == 51
    track = await store.track(A, T0, T0 + 1000)
    assert len(track) == 50
    assert track[0] == {"time": iso_time(T0), "lat": 51.9, "lon": 4.1, "speed": 5.5,
                        "course": 87.5, "heading": 88}
    assert track[-1]["time"] == iso_time(T0 + 490)
    assert track[-1]["lat"] == pytest.approx(51.9 + 49e-4)
    assert [p["time"] for p in track] == sorted(p["time"] for p in track)
    assert await store.track(A, T0 + 100, T0 + 120) == track[10:13]
    assert await store.track(B, T0, T0 + 10, drill=False) == []
    drill_track = await store.track(B, T0, T0 + 10, drill=True)
    assert drill_track[0]["speed"] is None


async def test_an_integer_beyond_64_bits_sets_its_row_aside_not_the_database_down(
        store: Store) -> None:
    """The drivers refuse to bind an int beyond 64 bits themselves (sqlite3: OverflowError;
    asyncpg: its client-side DataError, an InterfaceError), before the database sees it:
    about the row, so it is set aside; taken for an outage, it was retried for ever and
    held every row behind it."""
    for i in range(2):
        store.on_report(pos(A, T0 + i * 10))
    store.on_report(pos(1 << 70, T0 + 15))
    for i in range(2, 4):
        store.on_report(pos(A, T0 + i * 10))
    await store.flush()
    stats = store.stats()
    assert (stats.db_up, stats.written_positions, stats.rejected) == (True, 4, 1)
    assert [p["time"] for p in await store.track(A, T0, T0 + 100)] == [
        iso_time(T0 + i * 10) for i in range(4)]


async def refuse_in_a_trigger(store_url: str, mmsi: int) -> None:
    """A trigger that refuses ``mmsi``'s positions: SQLite's RAISE is a constraint error
    (about the row), PostgreSQL's RAISE EXCEPTION is P0001, known as neither."""
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        with conn:
            conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON positions WHEN NEW.mmsi = "
                         f"{mmsi} BEGIN SELECT RAISE(ABORT, 'refused by the trigger'); END")
        conn.close()
        return
    pg = await asyncpg.connect(store_url)
    try:
        await pg.execute(f"""
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                IF NEW.mmsi = {mmsi} THEN RAISE EXCEPTION 'refused by the trigger'; END IF;
                RETURN NEW; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON positions FOR EACH ROW
                EXECUTE FUNCTION refuse()""")
    finally:
        await pg.close()


async def written_or_set_aside(store: Store, count: int) -> None:
    """Until ``count`` rows are written or set aside (a few back-off passes at most)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        await store.flush()
        stats = store.stats()
        if stats.written_positions + stats.written_statics + stats.rejected >= count:
            return
        await asyncio.sleep(0.05)


async def test_rows_refused_for_reasons_not_foreseen_are_set_aside_and_the_rest_written(
        store_url: str, store: Store, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A trigger's exception on PostgreSQL (P0001), a name the SQLite driver cannot encode
    (a lone surrogate, e.g. from JSON: UnicodeEncodeError): neither an outage nor one of the
    errors known to be about a row. Taken for an outage, the batch was retried for ever and
    held every row behind it. The batch is split: those rows are set aside, logged once
    with their reason, and the others written."""
    await refuse_in_a_trigger(store_url, B)
    store.on_report(pos(A, T0))
    store.on_report(static(C, T0 + 1, shipname="NORDIC \ud800"))
    for i in range(1, 6):
        store.on_report(pos(A, T0 + i * 10))
    store.on_report(pos(B, T0 + 55))
    for i in range(6, 9):
        store.on_report(pos(A, T0 + i * 10))
    with caplog.at_level(logging.ERROR, logger="store"):
        await written_or_set_aside(store, 11)
    stats = store.stats()
    assert (stats.db_up, stats.written_positions, stats.written_statics, stats.rejected,
            stats.queued, stats.spool_pending) == (True, 9, 0, 2, 0, 0)
    assert [p["time"] for p in await store.track(A, T0, T0 + 100)] == [
        iso_time(T0 + i * 10) for i in range(9)]
    assert await store.track(B, T0, T0 + 100) == []
    kept = [json.loads(line) for line in
            next(tmp_path.glob("*.rejected.jsonl")).read_text().splitlines()]
    assert [(k["item"][0], k["item"][1][0], k["item"][1][1]) for k in kept] == [
        ("s", C, T0 + 1), ("p", T0 + 55, B)]
    assert "surrogates not allowed" in kept[0]["error"]
    assert "refused by the trigger" in kept[1]["error"]
    said = [r.getMessage() for r in caplog.records if "row rejected" in r.getMessage()]
    assert len(said) == 2


async def test_a_row_refused_alone_waits_for_others_to_show_the_database_takes_writes(
        store_url: str, store: Store, tmp_path: Path) -> None:
    """A batch no row of which goes in for a reason not foreseen may be a fault every row
    meets (a bug): nothing is set aside, the rows are kept as in an outage. Once rows that
    do go in are queued behind it, the refused row is set aside."""
    await refuse_in_a_trigger(store_url, B)
    store.on_report(static(C, T0, shipname="NORDIC \ud800"))
    store.on_report(pos(B, T0 + 1))
    await store.flush()
    stats = store.stats()
    # One of the two is refused for a reason not foreseen on either database (SQLite: the
    # name; PostgreSQL: the trigger), so neither is set aside yet.
    assert (stats.db_up, stats.rejected, stats.spool_pending) == (False, 0, 2)
    store.on_report(pos(A, T0 + 2))
    await written_or_set_aside(store, 3)
    stats = store.stats()
    assert (stats.db_up, stats.written_positions, stats.rejected, stats.spool_pending) == (
        True, 1, 2, 0)
    assert len(next(tmp_path.glob("*.rejected.jsonl")).read_text().splitlines()) == 2


async def test_prune_drops_what_retention_no_longer_keeps(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only TimescaleDB's policy dropped old rows: SQLite and plain PostgreSQL grew for ever."""
    monkeypatch.setattr("store.sqlite.PRUNE_ROWS", 3)  # both drop them in bites
    monkeypatch.setattr("store.postgres.PRUNE_ROWS", 3)
    for i in range(20):
        store.on_report(pos(A, T0 + i * 10))
    await store.flush()
    await store.save_source_health(T0 + 50, {"rx1": {"messages": 1}})
    await store.save_source_health(T0 + 150, {"rx1": {"messages": 2}})
    if getattr(store, "timescaledb", False):  # its retention policy drops the chunks
        assert await store.prune(T0 + 100) == 0 and await store.position_count() == 20
    else:
        assert await store.prune(T0 + 100) == 10
        assert [p["time"] for p in await store.track(A, T0, T0 + 1000)] == [
            iso_time(T0 + i * 10) for i in range(10, 20)]
        assert await store.position_count() == 10
    assert await store.latest_source_health() == {"rx1": {"messages": 2}}
    assert await store.prune(T0 + 100) == 0


async def test_positions_are_idempotent(store: Store) -> None:
    reports = [pos(A, T0 + i) for i in range(100)]
    for r in reports:
        store.on_report(r)
    await store.flush()
    for r in [*reports[50:], pos(A, T0 + 500)]:  # a catch-up overlapping what is stored
        store.on_report(r)
    await store.flush()
    assert await store.position_count(A) == 101
    stats = store.stats()
    assert (stats.written_positions, stats.duplicate_positions) == (101, 50)
    # Same key in one batch, and a different message type at the same time: kept apart.
    store.on_report(pos(B, T0))
    store.on_report(pos(B, T0))
    store.on_report(pos(B, T0, msg_type=3))
    await store.flush()
    assert await store.position_count(B) == 2
    stats = store.stats()
    assert (stats.written_positions, stats.duplicate_positions) == (103, 51)


async def test_positions_are_held_until_no_duplicate_can_add_a_receiver(
        store_url: str, tmp_path: Path) -> None:
    hold = sources_final_after(3.0)  # 7 s of message time
    store = open_store(store_url, tmp_path, batch_size=1, max_age=0.01, hold_s=hold)
    await store.start()
    try:
        first = pos(A, T0)
        first.sources[:] = ["rx1"]
        store.on_report(first)
        await asyncio.sleep(0.1)  # a queued row would be written by now (batches of one)
        first.sources.append("rx2")  # a later duplicate, applied by the pipeline
        held = []
        for i in range(1, 10):
            store.on_report(pos(B, T0 + i))
            held.append(store.stats().held_positions)
        # Released once the newest message is more than 7 s past it: at T0 + 8.
        assert held == [2, 3, 4, 5, 6, 7, 8, 8, 8]
        await store.flush(held=False)  # what an operator's act needs: the queue, not these
        assert store.stats().held_positions == 8
        await store.flush()  # everything, held rows included
        assert store.stats().held_positions == 0
        assert await store.position_count() == 10
        [row] = [p for p in await store.picture_at(T0 + 0.5, window=1.0) if p["mmsi"] == A]
        assert row["sources"] == ["rx1", "rx2"]
    finally:
        await store.stop()


async def test_a_clock_far_ahead_does_not_keep_positions_out_of_the_database(
        store_url: str, tmp_path: Path) -> None:
    # A short hold so that its wall-clock bound (twice the hold) comes in a test's time.
    store = open_store(store_url, tmp_path, max_age=0.02, hold_s=0.2)
    await store.start()
    try:
        store.on_report(pos(A, T0))
        store.on_report(pos(B, T0 + 86_400))  # one receiver's clock a day ahead
        for i in range(1, 51):
            store.on_report(pos(A, T0 + i))  # message time never catches up with it
        assert store.stats().held_positions == 51  # all but the first, behind the clock
        async with asyncio.timeout(30):  # released by wall time within the writer's passes
            while store.stats().held_positions or store.stats().queued:
                await asyncio.sleep(0.05)
        assert store.stats().held_positions == 0
        assert store.stats().written_positions == 52  # written without a flush
        assert await store.position_count() == 52
    finally:
        await store.stop()


async def test_track_is_downsampled_for_long_ranges(store: Store) -> None:
    for i in range(1000):
        store.on_report(pos(A, T0 + i, lat=50 + i / 1000))
    await store.flush()
    track = await store.track(A, T0, T0 + 999, max_points=100)
    # 1000 s in at most 100 buckets: 10 s each, the earliest fix of every bucket.
    assert [p["time"] for p in track] == [iso_time(T0 + 10 * k) for k in range(100)]
    assert track[3]["lat"] == pytest.approx(50.03)
    assert len(await store.track(A, T0, T0 + 999, max_points=1000)) == 1000


async def test_a_fix_the_rules_rejected_is_kept_but_out_of_tracks_unless_asked(
        store: Store) -> None:
    """A spoofed position (a jump the rules rejected) was drawn into the vessel's track and
    the picture at a past moment: 300 km off and back."""
    store.on_report(pos(A, T0, lat=51.9))
    store.on_report(pos(A, T0 + 20, lat=51.9001))
    store.on_report(pos(A, T0 + 31, lat=49.2, suspect="position_jump"))
    store.on_report(pos(A, T0 + 40, lat=51.9002))
    await store.flush()
    assert await store.position_count(A) == 4
    assert [p["lat"] for p in await store.track(A, T0, T0 + 60)] == [51.9, 51.9001, 51.9002]
    every = await store.track(A, T0, T0 + 60, rejected=True)
    assert [(p["lat"], p.get("rejected", False)) for p in every] == [
        (51.9, False), (51.9001, False), (49.2, True), (51.9002, False)]
    assert [p["lat"] for p in await store.picture_at(T0 + 35) if p["mmsi"] == A] == [51.9001]
    # Downsampled to two 30 s buckets: the second's first fix is the rejected one, left out.
    assert [p["lat"] for p in await store.track(A, T0, T0 + 60, max_points=2)] == [
        51.9, 51.9002]


async def test_picture_at_a_past_moment(store: Store) -> None:
    store.on_report(static(A, T0 - 100, shipname="NORDIC", callsign="PD1234", shiptype=70))
    store.on_report(pos(A, T0, lat=51.0))
    store.on_report(pos(A, T0 + 60, lat=51.1))
    store.on_report(pos(A, T0 + 120, lat=51.2))
    store.on_report(pos(B, T0 - 7200, lat=52.0))  # outside the window at T0+60
    store.on_report(pos(B, T0 + 30, lat=52.1, drill=True))
    await store.flush()

    picture = await store.picture_at(T0 + 60)
    assert [(v["mmsi"], v["lat"], v["time"]) for v in picture] == [
        (A, 51.1, iso_time(T0 + 60)), (B, 52.1, iso_time(T0 + 30))]
    assert picture[0]["shipname"] == "NORDIC"
    assert picture[0]["sources"] == ["rx1", "rx2"]
    assert picture[1]["drill"] is True
    assert [v["mmsi"] for v in await store.picture_at(T0 + 60, drill=False)] == [A]
    assert [v["mmsi"] for v in await store.picture_at(T0 + 30, window=7300)] == [A, B]
    assert await store.picture_at(T0 - 8000) == []


async def test_static_data_and_its_history(store: Store) -> None:
    store.on_report(static(A, T0, shipname="NORDIC", callsign="PD1234", imo=9123456))
    store.on_report(static(A, T0 + 360, shipname="NORDIC", destination="ROTTERDAM"))
    store.on_report(static(A, T0 + 720, shipname="BALTIC", destination="ROTTERDAM"))
    await store.flush()
    vessel = await store.vessel(A)
    assert vessel is not None
    assert (vessel["shipname"], vessel["callsign"], vessel["imo"], vessel["destination"]) == (
        "BALTIC", "PD1234", 9123456, "ROTTERDAM")
    history = await store.vessel_history(A)
    assert [h["time"] for h in history] == [iso_time(T0), iso_time(T0 + 360),
                                            iso_time(T0 + 720)]
    assert history[2]["changes"] == {"shipname": ["NORDIC", "BALTIC"]}
    # Replaying the same reports (a catch-up) adds no history.
    store.on_report(static(A, T0 + 720, shipname="BALTIC", destination="ROTTERDAM"))
    await store.flush()
    assert len(await store.vessel_history(A)) == 3
    assert await store.vessel(B) is None
    # A late copy of an older report (another receiver, past the duplicate window) fills
    # only what is unknown: it renamed the vessel back, with a false history entry.
    store.on_report(static(A, T0 + 500, shipname="NORDIC", draught=7.5))
    await store.flush()
    vessel = await store.vessel(A)
    assert vessel is not None and (vessel["shipname"], vessel["draught"]) == ("BALTIC", 7.5)
    late = [h["changes"] for h in await store.vessel_history(A) if h["time"] == iso_time(T0 + 500)]
    assert late == [{"draught": [None, 7.5]}]


async def test_a_drills_static_data_stays_out_of_the_vessel_records(store: Store) -> None:
    store.on_report(static(A, T0, shipname="REAL NAME"))
    store.on_report(static(A, T0 + 10, shipname="DRILL NAME", extra={"drill": True}))
    await store.flush()
    vessel = await store.vessel(A)
    assert vessel is not None and vessel["shipname"] == "REAL NAME"
    assert len(await store.vessel_history(A)) == 1


async def test_alert_lifecycle_and_audit(store: Store) -> None:
    alert = dark()
    store.on_alert(alert_event(Transition.NEW, alert, T0 + 700))
    await store.flush()
    stored = await store.alert(alert.id)
    assert {k: stored[k] for k in alert.to_dict()} == alert.to_dict()
    assert stored["acknowledged_by"] is None

    acked = await store.ack(alert.id, "duty-officer", "watching it", at=T0 + 800)
    assert acked["state"] == "acknowledged"
    assert (acked["acknowledged_by"], acked["ack_note"]) == ("duty-officer", "watching it")
    # A rule update after the ack keeps the operator's state.
    alert.details = {"gap_s": 900}
    store.on_alert(alert_event(Transition.UPDATE, alert, T0 + 900))
    await store.flush()
    assert (await store.alert(alert.id))["state"] == "acknowledged"
    assert (await store.alert(alert.id))["details"] == {"gap_s": 900}
    assert [a["id"] for a in await store.open_alerts()] == [alert.id]

    alert.state, alert.ended_at = AlertState.ENDED, T0 + 1000
    store.on_alert(alert_event(Transition.END, alert, T0 + 1000))
    await store.flush()
    ended = await store.alert(alert.id)
    assert (ended["state"], ended["ended_at"]) == ("ended", iso_time(T0 + 1000))
    assert await store.open_alerts() == []

    resolved = await store.resolve(alert.id, "harbour-master", "false alarm", at=T0 + 1100)
    assert (resolved["state"], resolved["resolved_by"]) == ("resolved", "harbour-master")
    trail = await store.audit(alert.id)
    assert [(a["actor"], a["action"], a["before"], a["after"]) for a in trail] == [
        ("rules", "new", None, "open"),
        ("duty-officer", "ack", "open", "acknowledged"),
        ("rules", "end", "acknowledged", "ended"),
        ("harbour-master", "resolve", "ended", "resolved"),
    ]
    assert trail[1]["note"] == "watching it"
    assert trail[1]["time"] == iso_time(T0 + 800)
    # Catch-up replays the same transitions: no duplicate audit rows, state unchanged.
    store.on_alert(alert_event(Transition.NEW, dark(), T0 + 700))
    store.on_alert(alert_event(Transition.END, alert, T0 + 1000))
    await store.flush()
    assert len(await store.audit(alert.id)) == 4
    assert (await store.alert(alert.id))["state"] == "resolved"

    with pytest.raises(NotFound):
        await store.alert("nope")
    with pytest.raises(NotFound):
        await store.ack("nope", "x")


async def test_an_alert_resolved_before_its_end_is_still_the_rules_at_a_restart(
        store: Store) -> None:
    """Resolved while its condition held, it is among the alerts the rules take back at
    start-up until the rules end it (left out, it never got its end, and the rules opened
    a second alert on the same condition)."""
    alert = dark()
    store.on_alert(alert_event(Transition.NEW, alert, T0 + 700))
    await store.flush()
    await store.resolve(alert.id, "harbour-master", "pilot on scene", at=T0 + 800)
    held = await store.open_alerts()
    assert [(a["id"], a["state"], a["ended_at"]) for a in held] == [
        (alert.id, "resolved", None)]
    alert.state, alert.ended_at = AlertState.ENDED, T0 + 1000
    store.on_alert(alert_event(Transition.END, alert, T0 + 1000))
    await store.flush()
    assert await store.open_alerts() == []
    ended = await store.alert(alert.id)
    assert (ended["state"], ended["ended_at"]) == ("resolved", iso_time(T0 + 1000))


async def test_the_same_log_replayed_again_reopens_its_ended_alerts_in_step(
        store: Store) -> None:
    """A second replay into the same database runs each alert again: while it runs the row
    is open (it said "ended" with no ended_at), and it ends again; a resolve is kept."""
    first, resolved = dark(A, T0), dark(B, T0)
    for alert in (first, resolved):
        store.on_alert(alert_event(Transition.NEW, alert, T0))
        alert.state, alert.ended_at = AlertState.ENDED, T0 + 60
        store.on_alert(alert_event(Transition.END, alert, T0 + 60))
    await store.flush()
    await store.resolve(resolved.id, "duty", "towed away")
    for alert in (first, resolved):  # the second run
        alert.state, alert.ended_at = AlertState.OPEN, None
        store.on_alert(alert_event(Transition.NEW, alert, T0))
    await store.flush()
    again = await store.alert(first.id)
    assert (again["state"], again["ended_at"]) == ("open", None)
    assert (await store.alert(resolved.id))["state"] == "resolved"
    first.state, first.ended_at = AlertState.ENDED, T0 + 60
    store.on_alert(alert_event(Transition.END, first, T0 + 60))
    await store.flush()
    assert (await store.alert(first.id))["state"] == "ended"


async def test_a_drill_run_again_is_an_exercise_of_its_own(store_url: str,
                                                           tmp_path: Path) -> None:
    """The same drill log replayed into the same database: its alerts start afresh for
    the trainees (the store kept the last exercise's resolve, while MQTT, the stream and
    the alerts file said "open"); the audit trail keeps both exercises."""
    alert = dark(drill=True)
    first = open_store(store_url, tmp_path, max_age=0.05, drill=True)
    await first.start()
    try:
        first.on_alert(alert_event(Transition.NEW, alert, T0))
        await first.flush()
        await first.resolve(alert.id, "trainer", "well spotted")
    finally:
        await first.stop()
    second = open_store(store_url, tmp_path, max_age=0.05, drill=True)
    await second.start()
    try:
        assert await second.begin_exercise() == 1  # as a new exercise starts
        second.on_alert(alert_event(Transition.NEW, alert, T0))
        await second.flush()
        again = await second.alert(alert.id)
        assert (again["state"], again["acknowledged_by"], again["resolved_by"]) == (
            "open", None, None)
        await second.ack(alert.id, "trainee")
        # Within this run each act is made once, as in a live one.
        with pytest.raises(Conflict, match="already acknowledged by trainee"):
            await second.ack(alert.id, "trainee-2")
        await second.resolve(alert.id, "trainee")
        with pytest.raises(Conflict, match="already resolved by trainee"):
            await second.resolve(alert.id, "trainee-2")
        second.on_alert(alert_event(Transition.NEW, alert, T0))  # written again: same run
        await second.flush()
        assert (await second.alert(alert.id))["state"] == "resolved"
        trail = await second.audit(alert.id)
        assert [(a["actor"], a["action"], a["after"], a["note"]) for a in trail] == [
            ("rules", "new", "open", None),
            ("trainer", "resolve", "resolved", "well spotted"),
            ("rules", "new", "open", "a new drill run"),
            ("trainee", "ack", "acknowledged", None),
            ("trainee", "resolve", "resolved", None),
        ]
    finally:
        await second.stop()
    real = dark()  # a real alert written again keeps its operator's acts (backlog, catch-up)
    live = open_store(store_url, tmp_path, max_age=0.05)
    await live.start()
    try:
        live.on_alert(alert_event(Transition.NEW, real, T0))
        await live.flush()
        await live.resolve(real.id, "duty")
        live.on_alert(alert_event(Transition.NEW, real, T0))
        await live.flush()
        assert (await live.alert(real.id))["state"] == "resolved"
    finally:
        await live.stop()


async def test_a_resumed_drill_keeps_the_acts_made_before_it_was_cut(
        store_url: str, tmp_path: Path) -> None:
    """A drill resumed with --start took the alerts it restored for an earlier exercise's:
    a trainee's resolve after the cut cleared the ack made before it."""
    alert = dark(drill=True)
    first = open_store(store_url, tmp_path, max_age=0.05, drill=True)
    await first.start()
    try:
        first.on_alert(alert_event(Transition.NEW, alert, T0))
        await first.flush()
        await first.ack(alert.id, "trainee", "patrol boat sent")
    finally:
        await first.stop()
    resumed = open_store(store_url, tmp_path, max_age=0.05, drill=True)
    await resumed.start()
    try:
        resumed.continue_exercise([alert.id])
        with pytest.raises(Conflict, match="already acknowledged by trainee"):
            await resumed.ack(alert.id, "trainee-2")
        done = await resumed.resolve(alert.id, "trainee")
        assert (done["state"], done["acknowledged_by"], done["resolved_by"]) == (
            "resolved", "trainee", "trainee")
    finally:
        await resumed.stop()


async def test_a_resumed_drill_acts_on_an_alert_ended_before_the_cut_as_it_stands(
        store_url: str, tmp_path: Path) -> None:
    """A resumed drill restores the alerts open at the cut: one that had ended before it
    was taken for an earlier exercise's, and a trainee's ack after the cut cleared its end
    (listed open again) and would have cleared its resolve too."""
    ended, resolved = dark(A, drill=True), dark(B, T0 + 5, drill=True)
    first = open_store(store_url, tmp_path, max_age=0.05, drill=True)
    await first.start()
    try:
        for a in (ended, resolved):
            first.on_alert(alert_event(Transition.NEW, a, a.started_at))
            a.state, a.ended_at = AlertState.ENDED, T0 + 60
            first.on_alert(alert_event(Transition.END, a, T0 + 60))
        await first.flush()
        await first.resolve(resolved.id, "trainee", message_at=T0 + 70)
    finally:
        await first.stop()
    resumed = open_store(store_url, tmp_path, max_age=0.05, drill=True)
    await resumed.start()
    try:
        resumed.continue_exercise([])  # nothing was open at the cut
        acked = await resumed.ack(ended.id, "trainee-2", message_at=T0 + 90)
        assert (acked["state"], acked["ended_at"], acked["acknowledged_by"]) == (
            "ended", iso_time(T0 + 60), "trainee-2")
        with pytest.raises(Conflict, match="already resolved by trainee"):
            await resumed.ack(resolved.id, "trainee-2", message_at=T0 + 90)
    finally:
        await resumed.stop()


async def test_a_new_exercise_takes_no_act_on_an_alert_until_it_raises_it(
        store_url: str, tmp_path: Path) -> None:
    """An act by id on an alert the last exercise left, before this one raised it, was
    taken, its earlier acts cleared, and dated on the rules' clock before this exercise's
    ``new``: a negative time to acknowledge. Refused now (409), the row left as it was;
    once raised, the first of two acks at once is taken; an ack queued while the database
    was away, behind its alert's ``new`` in the same batch, is this exercise's."""
    alert, other = dark(drill=True), dark(B, T0 + 5, drill=True)
    first = open_store(store_url, tmp_path, max_age=0.05, drill=True)
    await first.start()
    try:
        for a in (alert, other):
            first.on_alert(alert_event(Transition.NEW, a, a.started_at))
        alert.state, alert.ended_at = AlertState.ENDED, T0 + 60
        first.on_alert(alert_event(Transition.END, alert, T0 + 60))
        await first.flush()
        await first.resolve(alert.id, "trainer", message_at=T0 + 90)
    finally:
        await first.stop()
    second = open_store(store_url, tmp_path, max_age=0.05, drill=True)
    await second.start()
    try:
        assert await second.begin_exercise() == 2
        why = (f"alert {alert.id} was raised by an earlier exercise; this exercise has not "
               "raised it yet")
        for act in (second.ack, second.resolve):
            with pytest.raises(Conflict) as refused:
                await act(alert.id, "trainee", message_at=T0 + 1)
            assert str(refused.value) == why
        left = await second.alert(alert.id)
        assert (left["state"], left["ended_at"], left["resolved_by"]) == (
            "resolved", iso_time(T0 + 60), "trainer")
        assert [a["actor"] for a in await second.audit(alert.id)] == ["rules", "rules",
                                                                      "trainer"]
        fresh = dark(drill=True)  # this run's new, as MQTT showed it to the trainees
        second.on_alert(alert_event(Transition.NEW, fresh, T0 + 20))
        await second.flush()
        acts = await asyncio.gather(
            second.ack(alert.id, "t1", message_at=T0 + 30),
            second.ack(alert.id, "t2", message_at=T0 + 30), return_exceptions=True)
        assert sorted(type(a).__name__ for a in acts) == ["Conflict", "dict"]
        stored = await second.alert(alert.id)
        assert (stored["state"], stored["ended_at"], stored["resolved_by"]) == (
            "acknowledged", None, None)
        assert [a["actor"] for a in await second.audit(alert.id)
                if a["action"] == "ack"] == [stored["acknowledged_by"]]
        second.on_alert(alert_event(Transition.NEW, other, T0 + 25))
        assert second.queue_act(QueuedAct("ack", "t3", 1.0, alert_id=other.id,
                                          message_at=T0 + 26))
        await second.flush()
        queued = await second.alert(other.id)
        assert (queued["state"], queued["acknowledged_by"]) == ("acknowledged", "t3")
    finally:
        await second.stop()


async def test_alert_filters(store: Store) -> None:
    a1 = dark(A, T0)
    a2 = dark(B, T0 + 3600, drill=True, zone="anchorage")
    a3 = Alert(rule="speeding", risk_area=RiskArea.PORT_OPERATIONS, severity=Severity.INFO,
               mmsi=C, other_mmsi=None, started_at=T0 + 7200, zone="channel")
    a4 = Alert(rule="encounter", risk_area=RiskArea.CRIMINAL_ACTIVITY,
               severity=Severity.WARNING, mmsi=C, other_mmsi=A, started_at=T0 + 100)
    for a in (a1, a2, a3, a4):
        store.on_alert(alert_event(Transition.NEW, a, a.started_at))
    a1.state, a1.ended_at = AlertState.ENDED, T0 + 600
    store.on_alert(alert_event(Transition.END, a1, T0 + 600))
    await store.flush()

    async def ids(**filters: Any) -> list[str]:
        return [a["id"] for a in await store.alerts(AlertQuery(**filters))]

    assert await ids() == [a3.id, a2.id, a4.id, a1.id]  # newest first
    assert await ids(rule="dark_vessel") == [a2.id, a1.id]
    assert await ids(state="ended") == [a1.id]
    assert await ids(state=("open", "acknowledged")) == [a3.id, a2.id, a4.id]
    assert await ids(risk_area="port_operations") == [a3.id]
    assert await ids(zone="anchorage") == [a2.id]
    assert await ids(mmsi=A) == [a4.id, a1.id]  # either vessel of the alert
    assert await ids(drill=True) == [a2.id]
    assert await ids(start=T0 + 700, end=T0 + 5000) == [a2.id, a4.id]  # a1 ended before
    assert await ids(limit=2, offset=1) == [a2.id, a4.id]
    # Keyset pages: an alert arriving between two pages shifts nothing.
    first = await ids(limit=2)
    a5 = Alert(rule="speeding", risk_area=RiskArea.PORT_OPERATIONS, severity=Severity.INFO,
               mmsi=A, other_mmsi=None, started_at=T0 + 9000, zone="channel")
    a6 = Alert(rule="speeding", risk_area=RiskArea.PORT_OPERATIONS, severity=Severity.INFO,
               mmsi=B, other_mmsi=None, started_at=T0 + 100, zone="channel")  # a4's time
    for a in (a5, a6):
        store.on_alert(alert_event(Transition.NEW, a, a.started_at))
    await store.flush()
    rest = await ids(after=first[-1], limit=10)
    tied = sorted([a4.id, a6.id])
    assert first == [a3.id, a2.id] and rest == [*tied, a1.id]
    assert await ids(after=tied[0]) == [tied[1], a1.id]  # ties broken by id
    assert await ids(after=a1.id) == []
    assert await ids(after=a3.id, rule="dark_vessel") == [a2.id, a1.id]


async def test_snoozes(store: Store) -> None:
    snooze = await store.snooze("dark_vessel", A, T0 + 3600, "duty-officer", "known", at=T0)
    assert (snooze.rule, snooze.mmsi, snooze.until) == ("dark_vessel", A, T0 + 3600)
    await store.snooze("loitering", B, T0 + 600, "duty-officer", at=T0)
    assert [(s.rule, s.mmsi) for s in await store.snoozes()] == [
        ("dark_vessel", A), ("loitering", B)]
    assert [s.mmsi for s in await store.snoozes(active_at=T0 + 1000)] == [A]
    assert (await store.snoozes())[0].note == "known"
    assert await store.unsnooze("dark_vessel", A, "duty-officer") is True
    assert await store.unsnooze("dark_vessel", A, "duty-officer") is False
    assert [s.mmsi for s in await store.snoozes()] == [B]
    # The table forgot the lifted snooze; the audit trail says who muted and lifted what.
    acts = await store.snooze_acts()
    assert [(a["action"], a["rule"], a["mmsi"]) for a in acts] == [
        ("unsnooze", "dark_vessel", A), ("snooze", "loitering", B), ("snooze", "dark_vessel", A)]
    assert acts[2] == {"time": iso_time(T0), "actor": "duty-officer", "action": "snooze",
                       "rule": "dark_vessel", "mmsi": A, "until": iso_time(T0 + 3600),
                       "note": "known"}
    assert acts[0]["until"] is None and acts[0]["note"] is None
    assert [a["action"] for a in await store.snooze_acts(rule="dark_vessel", mmsi=A)] == [
        "unsnooze", "snooze"]
    assert [a["mmsi"] for a in await store.snooze_acts(mmsi=B)] == [B]
    assert [a["action"] for a in await store.snooze_acts(limit=1)] == ["unsnooze"]
    assert await store.snooze_acts(rule="speeding") == []
    # Several rules: any of them (the API's comma-separated ``rule``).
    assert [(a["action"], a["rule"]) for a in await store.snooze_acts(
        rule=("loitering", "speeding"))] == [("snooze", "loitering")]
    assert len(await store.snooze_acts(rule=("loitering", "dark_vessel"))) == 3


async def test_zone_versions(store: Store) -> None:
    assert await store.latest_zones() is None
    v1 = {"type": "FeatureCollection", "features": []}
    v2 = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None,
                                                      "properties": {"id": "berth_3"}}]}
    first = await store.save_zones(v1, "admin", at=T0)
    assert (await store.latest_zones() or {})["file_sha256"] is None  # no zones file
    second = await store.save_zones(v2, "admin2", at=T0 + 1, file_sha256="ab" * 32)
    assert second > first
    latest = await store.latest_zones()
    assert latest == {"version": second, "time": iso_time(T0 + 1), "actor": "admin2",
                      "geojson": v2, "file_sha256": "ab" * 32}


async def test_outbox_in_order(store: Store) -> None:
    ids = [await store.outbox_add("hw/alerts", f'{{"n": {i}}}', qos=1) for i in range(3)]
    retained = await store.outbox_add("hw/alerts/dark_vessel/x", b"", qos=1, retain=True)
    pending = await store.outbox_pending(10)
    assert [m.id for m in pending] == [*ids, retained]
    assert pending[0].payload == b'{"n": 0}'
    assert (pending[3].retain, pending[3].payload, pending[3].qos) == (True, b"", 1)
    await store.outbox_done(ids[:2])
    assert [m.id for m in await store.outbox_pending(10)] == [ids[2], retained]
    assert [m.id for m in await store.outbox_pending(1)] == [ids[2]]
    # Each run drains its own: a drill into the live database took the live service's.
    drill = await store.outbox_add("hw/drill/alerts", b"{}", qos=1, scope="drill")
    assert [m.id for m in await store.outbox_pending(10)] == [ids[2], retained]
    assert [m.id for m in await store.outbox_pending(10, scope="drill")] == [drill]
    # A new exercise drops the last one's unsent messages, and only the drill's.
    assert await store.outbox_discard("drill") == 1
    assert await store.outbox_discard("drill") == 0
    assert await store.outbox_pending(10, scope="drill") == []
    assert [m.id for m in await store.outbox_pending(10)] == [ids[2], retained]


async def test_the_rules_state_of_an_engine_that_saw_nothing_saves(store: Store) -> None:
    """Its clock is -inf (PostgreSQL refused that as a time, every 30 s and at stop)."""
    from geofence.engine import Engine
    from geofence.zones import ZoneSet
    from harbourwatch.config import RulesConfig
    from harbourwatch.service import save_state

    await save_state(store, Engine(RulesConfig(), ZoneSet.empty(None)))
    assert await store.load_engine_state() == {
        "receivers": {}, "rule:encounter": [], "rule:collision_risk": [], "open_alerts": [],
        "muted_alerts": []}


async def test_source_health_snapshots(store: Store) -> None:
    await store.save_source_health(T0, {"rx1": {"messages": 10}, "rx2": {"messages": 3}})
    await store.save_source_health(T0 + 60, {"rx1": {"messages": 25}})
    assert await store.latest_source_health() == {"rx1": {"messages": 25},
                                                 "rx2": {"messages": 3}}


def encoded(state: VesselState) -> VesselStateJSON:
    return VesselStateJSON(state.mmsi, state.time, json.dumps(state.state))


async def test_restart_restores_vessel_state_and_open_alerts(store_url: str,
                                                             tmp_path: Path) -> None:
    first = open_store(store_url, tmp_path)
    await first.start()
    states = [VesselState(A, T0 + 50, {"dark": {"since": T0 - 700, "inside": ["coverage"]}}),
              VesselState(B, T0 + 51, {"anchor": {"centre": [4.1, 51.9], "radius_m": 80.5}})]
    await first.save_vessel_states([encoded(s) for s in states])
    engine_parts = {"receivers": {"rx1": [T0 + 50, None, 7], "rx2": [T0 + 20, T0 - 5, 3]},
                    "rule:encounter": [[A, B, {"since": T0, "min_distance": 80.5}]]}
    # A part of an earlier save that the later one has not (a rule with nothing to keep
    # now) is gone: it came back at the next restore (a re-open hold of another replay).
    await first.save_engine_state(T0 + 40, {"receivers": {}, "rule:collision_risk": [[1]]})
    await first.save_engine_state(T0 + 50, engine_parts)  # the parts replaced
    still_open, closed = dark(A, T0), dark(B, T0 + 10)
    first.on_alert(alert_event(Transition.NEW, still_open, T0))
    first.on_alert(alert_event(Transition.NEW, closed, T0 + 10))
    closed.state, closed.ended_at = AlertState.ENDED, T0 + 20
    first.on_alert(alert_event(Transition.END, closed, T0 + 20))
    first.on_report(pos(A, T0 + 50))
    await first.stop()  # stop flushes what is queued

    second = open_store(store_url, tmp_path)
    await second.start()
    try:
        assert await second.load_vessel_states() == {A: states[0], B: states[1]}
        restored = [Alert.from_dict(a) for a in await second.open_alerts()]
        assert [a.to_dict() for a in restored] == [still_open.to_dict()]
        assert await second.position_count() == 1
        assert await second.load_engine_state() == engine_parts
        assert await second.schema_version() == 7  # type: ignore[attr-defined]
        # replace=True makes the saved set a snapshot
        await second.save_vessel_states([encoded(states[1])], replace=True)
        assert list(await second.load_vessel_states()) == [B]
        # A replay's state is its own: it neither reads nor replaces the live service's.
        await second.save_vessel_states([encoded(states[0])], replace=True, scope="replay")
        await second.save_engine_state(T0 + 60, {"receivers": {}}, "replay")
        assert list(await second.load_vessel_states("replay")) == [A]
        assert list(await second.load_vessel_states()) == [B]
        assert await second.load_engine_state("replay") == {"receivers": {}}
        assert await second.load_engine_state() == engine_parts
    finally:
        await second.stop()


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from store.postgres import PostgresStore
    from store.sqlite import SqliteStore

    default = open_store(None, tmp_path)
    assert isinstance(default, SqliteStore)
    assert default.path == tmp_path / "harbourwatch.db"
    monkeypatch.chdir(tmp_path)
    cwd_default = open_store(None, None)
    assert isinstance(cwd_default, SqliteStore)
    assert cwd_default.path == tmp_path / "harbourwatch.db"
    absolute = open_store(f"sqlite:///{tmp_path}/x/y.db", None)
    assert isinstance(absolute, SqliteStore)
    assert absolute.path == tmp_path / "x" / "y.db"
    relative = open_store("sqlite:///rel.db", tmp_path / "cfg")
    assert isinstance(relative, SqliteStore)
    assert relative.path == tmp_path / "rel.db"  # the working directory's, named in full
    with pytest.raises(StoreError, match=r"use sqlite:///relative\.db or sqlite:////absolute\.db"):
        open_store("sqlite://rel.db", None)  # it made /rel.db
    pg = open_store("postgresql://u:p@127.0.0.1:5432/hw", tmp_path)
    assert isinstance(pg, PostgresStore)
    with pytest.raises(StoreError, match="unknown database URL"):
        open_store("mysql://x", tmp_path)


async def test_a_postgresql_url_asyncpg_cannot_read_is_named_not_a_traceback(
        tmp_path: Path) -> None:
    store = open_store("postgresql://hw:pw@127.0.0.1:55432hw", tmp_path)
    with pytest.raises(StoreError, match=r"^store.url \(--db\): not a PostgreSQL URL asyncpg "
                       r"can read: invalid literal for int\(\) with base 10: '55432hw'"):
        await store.start()
    await store.stop()


async def test_a_version_1_sqlite_database_is_migrated_in_place(tmp_path: Path) -> None:
    """A database written by a release before the engine state was kept: version 2 adds
    its table and keeps every row."""
    import sqlite3

    from store import migrations

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in migrations.SQLITE[0][1]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute("INSERT INTO vessel_state VALUES (?, ?, ?)", (A, T0, '{"messages": 3}'))
        conn.execute("INSERT INTO zones (time, actor, geojson) VALUES (?, 'duty', '{}')", (T0,))
    store = open_store(f"sqlite:///{path}", tmp_path)
    await store.start()
    try:
        assert await store.schema_version() == 7  # type: ignore[attr-defined]
        assert await store.load_vessel_states() == {A: VesselState(A, T0, {"messages": 3})}
        assert await store.load_engine_state() == {}
        # Saved before the file's content was kept: the start goes by its mtime.
        assert await store.latest_zones() == {"version": 1, "time": iso_time(T0),
                                              "actor": "duty", "geojson": {},
                                              "file_sha256": None}
    finally:
        await store.stop()


async def test_a_version_1_postgres_database_is_migrated_in_place_with_timescaledb_if_offered(
        pg_dsn: str, tmp_path: Path) -> None:
    """A version 1 database with rows: version 2 keeps them. Positions become a hypertable
    with its policies exactly when the server preloads TimescaleDB
    (``HARBOURWATCH_PG_PRELOAD=timescaledb``), and stay a plain table otherwise."""
    import asyncpg

    from store import migrations
    from store.postgres import PostgresStore
    from tests.services.postgres import preload_options

    with_timescale = "timescaledb" in preload_options()
    recent = float(int(time.time()) - 3600)  # inside the retention window, which is wall time
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        for statement in migrations.POSTGRES[0][1]:
            await conn.execute(statement)
        await conn.execute("INSERT INTO schema_version VALUES (1)")
        await conn.execute("INSERT INTO vessel_state VALUES ($1, to_timestamp($2), $3)",
                           A, T0, '{"messages": 3}')
        await conn.execute(
            "INSERT INTO positions (time, mmsi, lat, lon, msg_type, sources, drill) "
            "VALUES (to_timestamp($1), $2, 51.9, 4.1, 1, '{rx1}', false)", recent, A)
        await conn.execute("INSERT INTO zones (time, actor, geojson) "
                           "VALUES (to_timestamp($1), 'duty', '{}')", T0)
    finally:
        await conn.close()
    store = PostgresStore(pg_dsn, spool_path=tmp_path / "spool.jsonl",
                          retention=timedelta(days=30))
    await store.start()
    try:
        assert await store.schema_version() == 7
        assert await store.load_vessel_states() == {A: VesselState(A, T0, {"messages": 3})}
        assert await store.load_engine_state() == {}
        assert await store.latest_zones() == {"version": 1, "time": iso_time(T0),
                                              "actor": "duty", "geojson": {},
                                              "file_sha256": None}
        track = await store.track(A, recent - 1, recent + 1)
        assert [p["time"] for p in track] == [iso_time(recent)]
        assert store.timescaledb is with_timescale, store.description
    finally:
        await store.stop()
    conn = await asyncpg.connect(pg_dsn)
    try:
        extension = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        if not with_timescale:
            assert extension is None
            return
        assert await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'positions' AND compression_enabled") == 1
        jobs = {row["proc_name"]: row["config"] for row in await conn.fetch(
            "SELECT proc_name, config FROM timescaledb_information.jobs "
            "WHERE hypertable_name = 'positions'")}
        assert set(jobs) == {"policy_compression", "policy_retention"}
        assert '"drop_after": "30 days"' in jobs["policy_retention"]
        assert '"compress_after": "7 days"' in jobs["policy_compression"]
        # The row written before the hypertable existed was moved into a chunk.
        assert await conn.fetchval("SELECT count(*) FROM ONLY positions") == 0
        assert await conn.fetchval("SELECT count(*) FROM positions") == 1
    finally:
        await conn.close()


async def test_a_version_2_postgres_database_takes_the_suspect_column_compressed_or_not(
        pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema 3 adds ``positions.suspect``. With TimescaleDB its chunks may be compressed
    already (``HARBOURWATCH_PG_PRELOAD=timescaledb``): the column is added all the same and
    the old rows read as not rejected."""
    import asyncpg

    from store import migrations
    from store.postgres import PostgresStore

    recent = float(int(time.time()) - 3600)
    monkeypatch.setattr(migrations, "POSTGRES", migrations.POSTGRES[:2])
    old = PostgresStore(pg_dsn, spool_path=tmp_path / "spool.jsonl")
    await old.start()
    try:
        assert await old.schema_version() == 2
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(
                "INSERT INTO positions (time, mmsi, lat, lon, msg_type, sources, drill) "
                "VALUES (to_timestamp($1), $2, 51.9, 4.1, 1, '{rx1}', false)", recent, A)
            if old.timescaledb:
                compressed = await conn.fetch(
                    "SELECT compress_chunk(c) FROM show_chunks('positions') c")
                assert len(compressed) == 1
        finally:
            await conn.close()
    finally:
        await old.stop()
    monkeypatch.undo()
    store = PostgresStore(pg_dsn, spool_path=tmp_path / "spool.jsonl")
    await store.start()
    try:
        assert await store.schema_version() == 7
        store.on_report(pos(A, recent + 1, lat=49.0, suspect="position_jump"))
        await store.flush()
        every = await store.track(A, recent - 1, recent + 2, rejected=True)
        assert [(p["lat"], p.get("rejected", False)) for p in every] == [
            (51.9, False), (49.0, True)]
        assert [p["lat"] for p in await store.track(A, recent - 1, recent + 2)] == [51.9]
    finally:
        await store.stop()


def test_timescaledb_windows_are_said_in_days() -> None:
    from datetime import timedelta

    from store.postgres import _span

    assert (_span(timedelta(days=7)), _span(timedelta(days=1)),
            _span(timedelta(hours=36))) == ("7 days", "1 day", "1 day, 12:00:00")


async def test_a_database_an_upgrade_migrated_is_refused_by_an_older_release(
        store_url: str, tmp_path: Path) -> None:
    from store import StoreError

    first = open_store(store_url, tmp_path)
    await first.start()
    latest = await first.schema_version()  # type: ignore[attr-defined]
    await first.stop()
    if store_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            conn.execute("INSERT INTO schema_version VALUES (?)", (latest + 1,))
    else:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(store_url)
        await conn.execute("INSERT INTO schema_version VALUES ($1)", latest + 1)
        await conn.close()
    newer = open_store(store_url, tmp_path)
    with pytest.raises(StoreError) as refused:
        await newer.start()
    await newer.stop()
    # Which database (a port may have several: a replay's, a drill's), and both ways on.
    where = (f"SQLite {store_url.removeprefix('sqlite:///')}" if store_url.startswith("sqlite")
             else f"PostgreSQL database {store_url.rsplit('/', 1)[1]}")
    assert str(refused.value) == (
        f"{where}: schema version {latest + 1} is newer than this harbourwatch knows "
        f"({latest}): a later release migrated it; run that release or a later one, or, to "
        "go back to this one, restore the backup taken before that upgrade")


async def test_saves_of_the_rules_state_may_overlap(store: Store) -> None:
    """The periodic save and the one at stop overlap: on PostgreSQL the second broke the
    key (its DELETE did not see the first's rows) and the state at stop was lost."""
    parts = [{"receivers": {f"rx{i}": [T0, None, i]}, "open_alerts": []} for i in range(8)]
    await asyncio.gather(*(store.save_engine_state(T0 + i, p) for i, p in enumerate(parts)))
    assert await store.load_engine_state() in parts
