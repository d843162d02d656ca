"""Whose spool a run opens: each kind of run (live, replay, drill) has its own, and one process
owns it (a lock). A drill run with the port's config opened the live service's spool and wrote
its rows into the drill database. Real files, real processes, real SQLite."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from geofence.alert import AlertEvent, Transition
from store import open_store
from store.base import AlertQuery, StoreError, StoreUnavailable
from store.spool import Spool
from tests.ingest_helpers import position, single, tag_block
from tests.paths import FIXTURES
from tests.test_service import free_udp_port
from tests.test_store_queued_acts import T0, dark
from tests.test_store_spool import items_of

DEMO_ZONES = FIXTURES / "demo-port" / "zones.geojson"
#: The vessel whose rows the live service spooled (the log's is another).
LIVE_MMSI = 211000001
LOG_MMSI = 244123456


def port_config(tmp_path: Path, spool_dir: Path) -> Path:
    """The port's config with the spool where the README's systemd section puts it."""
    config = tmp_path / "etc" / "port.yaml"
    config.parent.mkdir()
    config.write_text(f"version: 1\nport:\n  name: test\n  zones: {DEMO_ZONES}\n"
                      f"store:\n  spool_dir: {spool_dir}\n")
    return config


def live_spool(spool_dir: Path) -> dict[str, bytes]:
    """The live service's spool, as an outage left it: positions, alerts and an act."""
    Spool(spool_dir / "harbourwatch-spool.jsonl").append(items_of(dark(LIVE_MMSI)))
    return files(spool_dir)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def tiny_log(tmp_path: Path) -> Path:
    log = tmp_path / "tiny.nmea"
    log.write_text("".join(tag_block(s="rx1", c=int(T0) + i)
                           + single(position(mmsi=LOG_MMSI, lat=-23.83, lon=151.25)) + "\n"
                           for i in range(3)))
    return log


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harbourwatch.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", ["--drill", "--no-progress"], ids=["drill", "replay"])
def test_a_replay_with_the_live_config_leaves_the_live_spool_alone(
        tmp_path: Path, kind: str) -> None:
    """The README's drill command beside a live service whose database is away."""
    spool_dir = tmp_path / "state"
    spool_dir.mkdir()
    config = port_config(tmp_path, spool_dir)
    before = live_spool(spool_dir)
    db = tmp_path / "drill.db"
    done = cli("replay", tiny_log(tmp_path), "--config", config, kind, "--serve", "off",
               "--mqtt", "off", "--db", f"sqlite:///{db}", "--alerts-out",
               tmp_path / "drill.jsonl", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "spooled rows from an earlier run" not in done.stderr
    assert {name: data for name, data in files(spool_dir).items()
            if name.startswith("harbourwatch-spool")} == before  # untouched
    with sqlite3.connect(db) as conn:
        stored = {m for (m,) in conn.execute("SELECT DISTINCT mmsi FROM positions")}
        alerts = conn.execute("SELECT count(*) FROM alerts WHERE mmsi = ?",
                              (LIVE_MMSI,)).fetchone()
    assert stored == {LOG_MMSI}  # the log's, none of the live service's
    assert alerts == (0,)


def test_each_kind_of_run_and_database_has_its_own_spool(tmp_path: Path) -> None:
    """The live service keeps the name it always had (an upgrade finds its rows); replays and
    drills have their own, per database, also in PostgreSQL's default (the config's
    directory) and beside an SQLite file."""
    from store import spool_file

    spools = tmp_path / "spool"
    pg = "postgresql://hw:secret@localhost:5432/harbour"

    def spool_of(url: str, scope: str, spool_dir: Path | None = spools) -> Path:
        store = open_store(url, tmp_path, spool_dir=spool_dir, scope=scope)
        return store._writer._spool.path  # type: ignore[attr-defined]

    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    assert spool_of(a, "live") == spool_of(b, "live") == spools / "harbourwatch-spool.jsonl"
    assert spool_of(pg, "live", None) == tmp_path / "harbourwatch-spool.jsonl"
    assert spool_of(a, "live", None) == tmp_path / "a.db.spool.jsonl"
    named = {spool_of(url, scope, where) for url in (a, b, pg) for scope in ("replay", "drill")
             for where in (spools, None)}
    assert len(named) == 12
    assert not named & {spools / "harbourwatch-spool.jsonl", tmp_path / "harbourwatch-spool.jsonl",
                        tmp_path / "a.db.spool.jsonl", tmp_path / "b.db.spool.jsonl"}
    # The same database, whatever its password: the same spool.
    assert spool_of(pg, "drill") == spool_of(pg.replace("secret", "rotated"), "drill")
    assert spool_file("drill", "sqlite:/x.db", sqlite=tmp_path / "x.db") == (
        tmp_path / "x.db.drill-spool.jsonl")


def test_a_second_process_on_the_same_spool_is_refused(tmp_path: Path) -> None:
    """Two live services with one config (another database given to the second): the second
    stops at start, exit 2, naming the spool; after a kill -9 of the first, the lock is gone
    with it and the spool is the next start's."""
    spool_dir = tmp_path / "state"
    config = port_config(tmp_path, spool_dir)
    spool = spool_dir / "harbourwatch-spool.jsonl"

    def run(db: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "harbourwatch.cli", "run", "--config", str(config),
             "--udp", f"127.0.0.1:{free_udp_port()}", "--serve", "off", "--mqtt", "off",
             "--db", f"sqlite:///{tmp_path / db}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    first = run("live.db")
    try:
        said = ""
        deadline = time.monotonic() + 60
        assert first.stderr is not None
        while "store: SQLite" not in said:  # started: the spool is held
            assert first.poll() is None and time.monotonic() < deadline, said
            said += first.stderr.readline()
        second = run("other.db")
        try:
            _out, err = second.communicate(timeout=30)
        finally:
            if second.poll() is None:  # started beside the first: the defect
                second.kill()
                second.wait()
        assert second.returncode == 2, err
        assert f"spool {spool} is in use by another harbourwatch process (pid {first.pid})" in err
        assert first.poll() is None  # the owner goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    async def after_the_kill() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'live.db'}", tmp_path, spool_path=spool)
        await store.start()
        await store.stop()

    asyncio.run(after_the_kill())


async def test_one_spool_one_store_in_a_process_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stores on different spools run side by side; a second on the same spool is refused
    before it opens its database, and takes it once the first has stopped, with the rows the
    first spooled (the lock leaves the spool's appends, catch-up and removal alone)."""
    spool = tmp_path / "spool.jsonl"
    first = open_store(f"sqlite:///{tmp_path / 'a.db'}", tmp_path, spool_path=spool)
    other = open_store(f"sqlite:///{tmp_path / 'b.db'}", tmp_path)  # b.db.spool.jsonl

    async def away(batch: Any) -> int:
        raise StoreUnavailable("database away (test)")

    monkeypatch.setattr(first, "write_batch", away)
    await first.start()
    await other.start()
    second = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path, spool_path=spool)
    try:
        with pytest.raises(StoreError, match=f"spool {spool} is in use by another harbourwatch "
                                             f"process \\(pid {os.getpid()}\\)"):
            await second.start()
        assert not (tmp_path / "c.db").exists()
        for event in (AlertEvent(Transition.NEW, dark().to_dict(), T0),
                      AlertEvent(Transition.NEW, dark(LIVE_MMSI).to_dict(), T0)):
            first.on_alert(event)
    finally:
        await other.stop()
        await first.stop()  # the database away: spooled
    assert Spool(spool).pending == 2
    assert not spool.with_name("spool.jsonl.lock").exists()  # given up
    await second.start()
    try:
        await second.flush()
        assert len(await second.alerts(AlertQuery())) == 2
    finally:
        await second.stop()
    assert sorted(p.name for p in tmp_path.iterdir() if "spool" in p.name) == []
