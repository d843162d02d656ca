"""Outages: PostgreSQL stopped mid-stream; every row arrives exactly once when it returns."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from geofence.alert import Alert, AlertEvent, RiskArea, Severity, Transition
from ingest.report import Report
from store.base import Store
from store.postgres import PostgresStore
from tests.services.mosquitto import MosquittoBroker, free_port
from tests.services.postgres import PostgresServer

T0 = 1_767_261_600.0
VESSELS = [244000000 + i for i in range(20)]


def report(i: int) -> Report:
    mmsi = VESSELS[i % len(VESSELS)]
    return Report(mmsi=mmsi, msg_type=1, time=T0 + i * 0.5, time_source="tagblock",
                  sources=["rx1"], nmea=[], lat=51.9 + i * 1e-6, lon=4.1, speed=3.0)


async def counts(dsn: str) -> tuple[int, int, float, float]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT (mmsi, time, msg_type)) AS d, "
            "extract(epoch FROM min(time)) AS lo, extract(epoch FROM max(time)) AS hi "
            "FROM positions")
    finally:
        await conn.close()
    return int(row["n"]), int(row["d"]), float(row["lo"]), float(row["hi"])


async def drain(store: Store) -> None:
    """Flush until the writer holds nothing (bounded by tries, not by time)."""
    for _ in range(200):
        await store.flush()
        stats = store.stats()
        if stats.db_up and stats.queued == 0 and stats.spool_pending == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"writer never caught up: {store.stats()}")


async def test_outage_mid_stream_every_position_exactly_once(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    store = PostgresStore(pg_dsn, spool_path=tmp_path / "spool.jsonl", batch_size=200,
                          max_age=0.01, memory_limit=1000, retry_max=0.3)
    await store.start()
    total = 6000
    alert = Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                  severity=Severity.WARNING, mmsi=VESSELS[0], started_at=T0 + 100)
    try:
        for i in range(total):
            store.on_report(report(i))
            if i % 100 == 99:
                await asyncio.sleep(0)  # let the writer run while the stream goes on
            if i == 1500:
                # Stop the server while batches are being written (in a thread, so the
                # writer keeps running into the outage).
                await asyncio.to_thread(postgres_server.stop, "fast")
            if i == 2000:
                store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0 + 1000))
            if i == 4500:
                for _ in range(200):  # let the writer try, fail and overflow to disk
                    await asyncio.sleep(0.05)
                    if not store.stats().db_up and store.stats().spooled:
                        break
                assert not store.stats().db_up
                await asyncio.to_thread(postgres_server.start)
        await drain(store)
        stats = store.stats()
    finally:
        if not postgres_server.is_running():
            postgres_server.start()
        await store.stop()

    n, distinct, lo, hi = await counts(pg_dsn)
    assert (n, distinct) == (total, total)
    assert (lo, hi) == (T0, T0 + (total - 1) * 0.5)
    assert stats.failures > 0  # the outage was seen
    assert stats.spooled > 0  # and the memory bound pushed rows to disk
    assert not (tmp_path / "spool.jsonl").exists()

    reopened = PostgresStore(pg_dsn, spool_path=tmp_path / "spool.jsonl")
    await reopened.start()
    try:
        assert (await reopened.alert(alert.id))["state"] == "open"
        assert [a["action"] for a in await reopened.audit(alert.id)] == ["new"]
        assert await reopened.position_count(VESSELS[3]) == total // len(VESSELS)
    finally:
        await reopened.stop()


async def test_rows_spooled_at_stop_reach_the_database_on_next_start(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    first = PostgresStore(pg_dsn, spool_path=spool, batch_size=100, max_age=0.01,
                          retry_max=0.2)
    await first.start()
    try:
        for i in range(500):
            first.on_report(report(i))
        await drain(first)
        postgres_server.stop("fast")
        for i in range(500, 1200):
            first.on_report(report(i))
        await first.flush()
    finally:
        await first.stop()  # database away: the rest goes to the spool
    assert spool.exists()
    assert first.stats().spool_pending == 700

    postgres_server.start()
    # Replay overlap: the new run sees some of the same reports again.
    second = PostgresStore(pg_dsn, spool_path=spool, batch_size=100, max_age=0.01)
    await second.start()
    try:
        for i in range(1100, 1300):
            second.on_report(report(i))
        await drain(second)
    finally:
        await second.stop()
    n, distinct, _lo, hi = await counts(pg_dsn)
    assert (n, distinct) == (1300, 1300)
    assert hi == T0 + 1299 * 0.5
    assert not spool.exists()


async def test_postgres_stopped_in_the_middle_of_a_replay(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    """The production replay path (scenario log → ingest → rules → PostgresStore), with the
    server stopped a third of the way in and started again two thirds in: every position
    the replay produced is stored exactly once, and the alerts too."""
    from geofence.engine import Engine
    from harbourwatch.options import ServiceOptions, resolve_config
    from harbourwatch.pipeline import Pipeline
    from harbourwatch.service import load_zones
    from ingest.ingestor import Ingestor
    from replay.player import play
    from replay.scenario import generate_scenario
    from tests.paths import FIXTURES

    zones_path = FIXTURES / "demo-port" / "zones.geojson"
    log = tmp_path / "port.nmea"
    generate_scenario(zones_path, seed=21, hours=0.5, out=log, truth=tmp_path / "truth.json",
                      scale=0.5)
    config = resolve_config(ServiceOptions(zones=zones_path))
    store = PostgresStore(pg_dsn, spool_path=tmp_path / "spool.jsonl", batch_size=200,
                          max_age=0.01, memory_limit=1000, retry_max=0.3)
    await store.start()
    seen: list[Report] = []
    alert_ids: set[str] = set()

    class Outage:
        """A sink that stops and restarts the server at fixed points of the replay."""

        async def start(self) -> None: ...
        async def stop(self) -> None: ...
        def on_alert(self, event: AlertEvent) -> None:
            alert_ids.add(event.alert["id"])

        def on_report(self, report: Report) -> None:
            seen.append(report)
            if len(seen) == 1500:
                postgres_server.stop("fast")
            elif len(seen) == 3000:
                postgres_server.start()

    pipeline = Pipeline(Ingestor(), Engine(config.rules, load_zones(config)), [store, Outage()])
    try:
        await play([str(log)], pipeline, speed=None)
        assert len(seen) > 3000
        if not postgres_server.is_running():
            postgres_server.start()
        await drain(store)
        assert store.stats().failures > 0  # the outage was seen
    finally:
        if not postgres_server.is_running():
            postgres_server.start()
        await store.stop()
    keys = {(r.mmsi, round(r.time, 3), r.msg_type) for r in seen if r.lat is not None}
    n, distinct, _, _ = await counts(pg_dsn)
    assert n == distinct == len(keys)
    conn = await asyncpg.connect(pg_dsn)
    try:
        stored_alerts = await conn.fetchval("SELECT count(*) FROM alerts")
    finally:
        await conn.close()
    assert stored_alerts == len(alert_ids) > 0


async def test_the_mqtt_feed_goes_on_while_its_outbox_database_is_away(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path,
        mosquitto: MosquittoBroker) -> None:
    """The MQTT outbox lives in PostgreSQL: while it is away vessels are still published on
    the same connection (it was dropped and re-made in a loop, vessels and all), and the
    alerts raised meanwhile follow, in order, once it is back."""
    import aiomqtt

    from api.mqtt import MqttFeed
    from api.outbox import StoreOutbox

    mosquitto.start()
    store = PostgresStore(pg_dsn, spool_path=tmp_path / "spool.jsonl", max_age=0.01,
                          retry_max=0.3)
    await store.start()
    prefix = f"hwtest/outage-{tmp_path.name[-8:]}"
    feed = MqttFeed(f"mqtt://{mosquitto.host}:{mosquitto.port}", prefix=prefix,
                    outbox=StoreOutbox(store), backoff_initial_s=0.2, backoff_max_s=1.0)
    alerts = [Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                    severity=Severity.WARNING, mmsi=VESSELS[i], started_at=T0 + i)
              for i in range(3)]
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, username=mosquitto.username,
                                  password=mosquitto.password) as sub:
            await sub.subscribe(f"{prefix}/alerts", qos=1)
            await sub.subscribe(f"{prefix}/vessels/+", qos=1)
            await feed.start()
            await asyncio.wait_for(feed.wait_connected(), 15)
            await asyncio.to_thread(postgres_server.stop, "fast")
            for i, alert in enumerate(alerts):
                feed.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0 + i))
            feed.on_report(report(0))
            got: list[str] = []
            async with asyncio.timeout(30):
                async for message in sub.messages:
                    got.append(str(message.topic))
                    if message.topic.matches(f"{prefix}/vessels/+"):
                        break
            assert got == [f"{prefix}/vessels/{VESSELS[0]}"]  # no alert yet: no outbox
            assert feed.counters["connects"] == 1 and feed.counters["outbox_outages"] >= 1
            await asyncio.to_thread(postgres_server.start)
            sent: list[int] = []
            async with asyncio.timeout(30):
                async for message in sub.messages:
                    if str(message.topic) == f"{prefix}/alerts":
                        assert isinstance(message.payload, bytes)
                        sent.append(json.loads(message.payload)["alert"]["mmsi"])
                        if len(sent) == len(alerts):
                            break
            assert sent == VESSELS[:3]
            assert feed.counters["connects"] == 1
    finally:
        if not postgres_server.is_running():
            postgres_server.start()
        await feed.stop()
        await store.stop()


def test_a_position_spooled_before_the_suspect_column_reads_as_not_rejected(
        tmp_path: Path) -> None:
    """Rows spooled by the release before schema 3 have 11 values: the writer needs 12."""
    from store.spool import Spool

    path = tmp_path / "spool.jsonl"
    old = ["p", [1767261600.0, 244123456, 51.9, 4.1, 5.5, 87.5, 88, 0, 1, ["rx1"], False]]
    path.write_text(json.dumps(old) + "\n")
    (item,), _ = Spool(path).peek(10)
    assert item == ("p", (1767261600.0, 244123456, 51.9, 4.1, 5.5, 87.5, 88, 0, 1, ["rx1"],
                          False, False))


async def test_a_database_refusing_writes_is_an_outage_not_bad_rows(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    """A database that refuses writes for its own state (here read-only, as a standby after
    a failover; a rotated password or a full disk alike) keeps the rows buffered and
    catches them up; each row was set aside as bad, and lost."""
    name = pg_dsn.rsplit("/", 1)[1]
    store = PostgresStore(pg_dsn, spool_path=tmp_path / "spool.jsonl", batch_size=50,
                          max_age=0.01, retry_max=0.2)
    await store.start()
    try:
        for i in range(100):
            store.on_report(report(i))
        await drain(store)
        postgres_server.sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        postgres_server.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        failures = store.stats().failures
        for i in range(100, 300):
            store.on_report(report(i))
        # Until the writer has met the refusal, past the cut connection (bounded by tries).
        for _ in range(300):
            await store.flush()
            if store.stats().failures >= failures + 2 or store.stats().rejected:
                break
            await asyncio.sleep(0.05)
        assert store.stats().rejected == 0 and not store.stats().db_up
        postgres_server.sql(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        postgres_server.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        await drain(store)
        assert (await counts(pg_dsn))[:2] == (300, 300)
        assert store.stats().rejected == 0
    finally:
        await store.stop()


@pytest.mark.parametrize("timeout", ["command", "lock"])
async def test_a_lock_held_past_the_timeout_is_said_as_a_timeout_not_unreachable(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, timeout: str) -> None:
    """The writer's COPY waited behind LOCK TABLE in another session until a timeout (the
    client's command timeout, or the server's ``lock_timeout``), and the log said "database
    unreachable": the operator looked for a network fault, not for the session holding the
    lock. The rows are kept, and written once the lock is gone."""
    name = pg_dsn.rsplit("/", 1)[1]
    if timeout == "lock":
        postgres_server.sql(f"ALTER DATABASE \"{name}\" SET lock_timeout = '300ms'")
    spool = tmp_path / "spool.jsonl"
    faster = {"command_timeout": 1.0} if timeout == "command" else {}  # not a minute
    store = PostgresStore(pg_dsn, spool_path=spool, batch_size=50, max_age=0.01,
                          retry_max=0.2, **faster)
    await store.start()
    locker = await asyncpg.connect(pg_dsn)
    try:
        await locker.execute("BEGIN")
        await locker.execute("LOCK TABLE positions IN ACCESS EXCLUSIVE MODE")
        with caplog.at_level(logging.WARNING, logger="store"):
            for i in range(100):
                store.on_report(report(i))
            await store.flush()  # one failed try
            assert not store.stats().db_up and store.stats().rejected == 0
            await locker.execute("ROLLBACK")
            await drain(store)
    finally:
        await locker.close()
        await store.stop()
    cause = {"command": "PostgreSQL did not answer in time: a lock held on a table, the "
                        "server overloaded, or the network cut off",
             "lock": "PostgreSQL (55P03): canceling statement due to lock timeout"}[timeout]
    said = [r.getMessage() for r in caplog.records if r.name == "store.writer"]
    assert said == [f"store: database timed out ({cause}); spooling to {spool} until it is "
                    "back", "store: database back; catching up"]
    assert (await counts(pg_dsn))[:2] == (100, 100)


async def test_a_connection_not_made_in_time_is_unreachable_not_a_lock(
        tmp_path: Path) -> None:
    """A server that takes the TCP connection and never answers (packets dropped beyond
    it) is unreachable; the connect's timeout was said as a lock held or an overload."""
    import socket

    from store.base import StoreTimedOut, StoreUnreachable

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        store = PostgresStore(f"postgresql://hw@127.0.0.1:{port}/hw",
                              spool_path=tmp_path / "spool.jsonl", connect_timeout=0.5)
        with pytest.raises(StoreUnreachable) as err:
            await store.start()
    assert str(err.value) == "PostgreSQL unreachable: no connection within 0.5 s"
    assert err.value.what == "database unreachable"
    assert not isinstance(err.value, StoreTimedOut)


def test_a_live_start_waits_for_a_database_not_up_yet(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    """A box back from a power cut starts the service before its database: the live service
    waits for it (it exited, and systemd's start limit left it down), and runs once it is
    up; a signal stops the wait cleanly."""
    import signal
    import subprocess
    import sys
    import time

    from tests.paths import FIXTURES

    zones = FIXTURES / "demo-port" / "zones.geojson"
    command = [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(zones),
               "--udp", f"127.0.0.1:{free_port()}", "--db", pg_dsn, "--serve", "off"]

    def started(*, until: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path)
        assert proc.stderr is not None
        said = ""
        deadline = time.monotonic() + 60
        while until not in said:
            assert proc.poll() is None and time.monotonic() < deadline, said
            said += proc.stderr.readline()
        return proc, said

    postgres_server.stop()
    try:
        proc, said = started(until="the database is not up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        said += proc.stderr.read() if proc.stderr else ""
        assert "stopped while the store was starting" in said and "Traceback" not in said

        proc, said = started(until="the database is not up")
        postgres_server.start()
        more = ""
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        while "store: PostgreSQL" not in more:  # the line naming the store, once started
            assert proc.poll() is None and time.monotonic() < deadline, said + more
            more += proc.stderr.readline()
        # It names the database it uses, as the server says (a URL can point anywhere).
        name = pg_dsn.rsplit("/", 1)[1]
        assert f"; database {name} as postgres on 127.0.0.1:{postgres_server.port}" in more
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, more + (proc.stderr.read() or "")
    finally:
        if not postgres_server.is_running():
            postgres_server.start()


async def test_an_unreadable_client_file_is_named_not_taken_for_the_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncpg reads ~/.pgpass: a HOME the service's user may not read said "PostgreSQL
    unreachable: PermissionError(13, …)", and a live start would wait for ever. (Faked: the
    tests run as root, whom file permissions do not stop.)"""
    from store.base import StoreError, StoreUnavailable

    async def create_pool(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", "/root/.pgpass")

    monkeypatch.setattr(asyncpg, "create_pool", create_pool)
    store = PostgresStore("postgresql://hw@127.0.0.1:1/hw", spool_path=tmp_path / "s.jsonl")
    with pytest.raises(StoreError, match=r"cannot read /root/\.pgpass: Permission denied") as err:
        await store.start()
    assert not isinstance(err.value, StoreUnavailable)
