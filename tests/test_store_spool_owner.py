"""Whose spool a run opens: each kind of run (live, replay, drill) has its own. A drill run with
the port's config opened the live service's spool and wrote its rows into the drill database.
Real files, real processes, real SQLite."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from store import open_store
from store.spool import Spool
from tests.ingest_helpers import position, single, tag_block
from tests.paths import FIXTURES
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
