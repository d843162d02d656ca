"""The whole service through its command line: replay determinism and pacing, restart after
a kill, a live UDP run, snoozes. Real processes, real sockets, real SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from geofence.alert import Alert, AlertEvent, RiskArea, Severity, Transition
from harbourwatch.alerts_file import AlertsFileSink
from harbourwatch.options import ServiceOptions, resolve_config
from harbourwatch.pipeline import Pipeline
from harbourwatch.service import file_sha256, load_zones
from harbourwatch.snoozes import SnoozeBook
from harbourwatch.timeutil import iso_time, parse_iso
from ingest.ingestor import Ingestor
from replay.player import play
from replay.scenario import generate_scenario
from store import open_store
from tests.ingest_helpers import position, single, tag_block
from tests.paths import FIXTURES
from tests.services.mosquitto import free_port

if TYPE_CHECKING:
    import httpx

DEMO_ZONES = FIXTURES / "demo-port" / "zones.geojson"
DEMO_CONFIG = FIXTURES / "demo-port" / "port.yaml"
DEMO_LOG = FIXTURES / "demo-port" / "ais-gladstone-2012-01-27.txt.gz"


def cli(*args: str | Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harbourwatch.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **kw)


def wait_said(proc: subprocess.Popen[str], text: str, timeout: float = 60.0) -> list[str]:
    """Wait until the service's stderr has a line with ``text``; its lines so far (read on
    in a thread, so the pipe never fills). ``store: ...`` comes once its signal handlers
    are in place: a signal sent before that killed it (a loaded machine starts slowly)."""
    assert proc.stderr is not None
    stream = proc.stderr
    lines: list[str] = []

    def read() -> None:
        for line in stream:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert proc.poll() is None or any(text in line for line in lines), "".join(lines)
        assert time.monotonic() < deadline, f"{text!r} not said:\n{''.join(lines)}"
        time.sleep(0.05)
    return lines


def alerts_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Half an hour of synthetic Gladstone traffic with anomalies (ground truth alongside)."""
    folder = tmp_path_factory.mktemp("scenario")
    log, truth = folder / "port.nmea", folder / "truth.json"
    generate_scenario(DEMO_ZONES, seed=11, hours=0.75, out=log, truth=truth)
    return log, json.loads(truth.read_text())


def test_two_max_speed_replays_give_identical_alert_files(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    log, _ = scenario
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / f"alerts-{run}.jsonl"
        done = cli("replay", log, "--zones", DEMO_ZONES, "--speed", "max", "--no-progress",
                   "--db", f"sqlite:///{tmp_path / run}.db", "--alerts-out", out)
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    # Tracks, operator notes and alerts are not for every local user (they were 0644).
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {"0o640"}
    rules = {a["rule"] for a in alerts_of(tmp_path / "alerts-a.jsonl")}
    assert {"speeding", "restricted_entry", "emergency_device"} <= rules


def test_a_drill_is_scored_against_its_truth_from_the_command_line(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """The README pointed at a Python call that took a parsed Truth, not its file."""
    log, truth = scenario
    truth_file = log.parent / "truth.json"
    out = tmp_path / "alerts.jsonl"
    done = cli("replay", log, "--zones", DEMO_ZONES, "--no-progress", "--drill",
               "--db", f"sqlite:///{tmp_path / 'd.db'}", "--alerts-out", out)
    assert done.returncode == 0, done.stderr
    scored = cli("score", truth_file, out)
    anomalies = len(truth["anomalies"])
    assert (scored.returncode, scored.stdout.splitlines()[-1].split(";")[0]) == (
        0, f"{anomalies} of {anomalies} anomalies detected in their windows")
    planted = truth["anomalies"][0]
    kept = [line for line in out.read_text().splitlines()
            if not (json.loads(line)["rule"] == planted["rule"]
                    and json.loads(line)["mmsi"] == planted["mmsi"])]
    out.write_text("\n".join(kept) + "\n")
    scored = cli("score", truth_file, out)
    assert scored.returncode == 1
    assert scored.stdout.startswith(f"missed: {planted['rule']} ")
    assert cli("score", truth_file, tmp_path / "none.jsonl").returncode == 2


def test_replay_at_60x_holds_message_time(scenario: tuple[Path, dict[str, Any]],
                                          tmp_path: Path) -> None:
    """Ten minutes of traffic at --speed 60 take ten seconds (within 10 %)."""
    log, truth = scenario
    start = parse_iso(truth["start"]) + 600.0
    excerpt = tmp_path / "ten-minutes.nmea"
    lines = [line for line in log.read_text().splitlines()
             if start <= float(line.split("c:")[1].split("*")[0]) <= start + 600.0]
    excerpt.write_text("\n".join(lines) + "\n")
    config = resolve_config(ServiceOptions(zones=DEMO_ZONES))
    from geofence.engine import Engine

    pipeline = Pipeline(Ingestor(), Engine(config.rules, load_zones(config)))

    async def timed() -> tuple[float, float]:
        began = time.monotonic()
        result = await play([str(excerpt)], pipeline, speed=60.0)
        assert result.first_time is not None and result.last_time is not None
        return time.monotonic() - began, (result.last_time - result.first_time) / 60.0

    took, expected = asyncio.run(timed())
    assert expected == pytest.approx(10.0, abs=0.2)
    assert expected * 0.9 <= took <= expected * 1.1, (took, expected)


def test_a_stopped_replay_ends_between_two_message_times(
        scenario: tuple[Path, dict[str, Any]]) -> None:
    """Cancelled wherever it was, part of a second's reports had been judged: --start at
    that second judged them twice, a second later skipped the rest."""
    log, _ = scenario
    config = resolve_config(ServiceOptions(zones=DEMO_ZONES))
    from geofence.engine import Engine

    def judged(stop_after: int | None) -> tuple[list[float], float | None]:
        pipeline = Pipeline(Ingestor(), Engine(config.rules, load_zones(config)))
        times: list[float] = []
        stop = asyncio.Event()
        handle = pipeline.handle_report

        def counted(report: Any) -> None:
            times.append(report.time)
            if len(times) == stop_after:
                stop.set()  # mid-second: several reports share each second of this log
            handle(report)

        pipeline.handle_report = counted  # type: ignore[method-assign]
        result = asyncio.run(play([str(log)], pipeline, speed=None, stop=stop))
        return times, result.resume_at

    everything, resume_at = judged(None)
    assert resume_at is None
    times, resume_at = judged(1000)
    assert resume_at is not None and len(times) >= 1000
    assert times == [t for t in everything if t < resume_at]


def _open_dark(db: Path) -> list[tuple[str, str, int]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return list(conn.execute(
                "SELECT id, state, mmsi FROM alerts WHERE rule = 'dark_vessel'"))
    except sqlite3.OperationalError:
        return []


def test_a_vessel_dark_before_a_kill_is_still_dark_after_restart(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    log, truth = scenario
    dark = next(a for a in truth["anomalies"] if a["rule"] == "dark_vessel")
    db = tmp_path / "hw.db"
    common = ["--zones", DEMO_ZONES, "--db", f"sqlite:///{db}", "--no-progress"]
    first = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "replay", str(log), "--speed", "200",
         *map(str, common)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not _open_dark(db):
            assert first.poll() is None, "replay ended before the vessel went dark"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = _open_dark(db)
    assert [(s, m) for _, s, m in before] == [("open", dark["mmsi"])]
    # Restart just after the vessel's last report (the first run was surely past it) and
    # play to the end; the reports between that and the kill are played again.
    with sqlite3.connect(db) as conn:
        (started,) = conn.execute("SELECT started_at FROM alerts WHERE rule = 'dark_vessel'"
                                  ).fetchone()
    out = tmp_path / "after.jsonl"
    done = cli("replay", log, "--start", str(float(started) + 1), "--speed", "max",
               "--alerts-out", out,
               *common)
    assert done.returncode == 0, done.stderr
    after = [a for a in alerts_of(out) if a["rule"] == "dark_vessel"]
    # No second "new": the restarted service knew the vessel was dark, and ended that alert
    # when the vessel came back.
    assert [(a["transition"], a["id"]) for a in after] == [("end", before[0][0])], (before, after)
    assert after[0]["details"]["gap_s"] > 600
    assert _open_dark(db) == [(before[0][0], "ended", dark["mmsi"])]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("stamp_ahead_s", [None, 7200], ids=["untimed", "clock-ahead"])
def test_live_run_over_udp_raises_alerts_and_stops_cleanly(tmp_path: Path,
                                                           stamp_ahead_s: int | None) -> None:
    """A live line is timed by its arrival when it has no time of its own, and when its
    receiver stamps it ahead of its arrival (a clock on local time, say)."""
    port = free_udp_port()
    out = tmp_path / "alerts.jsonl"
    # A live run adds (a restart erased the log), on a line of its own after a crash cut
    # the last one.
    out.write_text('{"earlier": "run"}\n{"cut": ')
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp_path / 'live.db'}",
         "--alerts-out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sart = single(position(mmsi=970012345, lat=-23.83, lon=151.25, speed=0.0))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            deadline = time.monotonic() + 30
            while not (out.exists() and "emergency_device" in out.read_text()):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "no alert from the live run"
                stamp = ("" if stamp_ahead_s is None
                         else tag_block(s="rx-local-time", c=int(time.time()) + stamp_ahead_s))
                sock.sendto((stamp + sart + "\r\n").encode(), ("127.0.0.1", port))
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[:2] == ['{"earlier": "run"}', '{"cut": ']
    alert = next(a for a in map(json.loads, lines[2:]) if a["rule"] == "emergency_device")
    assert alert["mmsi"] == 970012345 and alert["severity"] == "critical"
    assert alert["transition"] == "new" and alert["drill"] is False
    assert abs(parse_iso(alert["started_at"]) - time.time()) < 120


def test_a_snoozed_rule_is_recorded_but_not_pushed(tmp_path: Path) -> None:
    event = AlertEvent.__new__(AlertEvent)
    alert = {"id": "x1", "rule": "speeding", "mmsi": 244123456, "other_mmsi": None,
             "risk_area": "port_operations", "severity": "warning", "state": "open",
             "shipname": None, "zone": "channel", "lat": 1.0, "lon": 2.0,
             "started_at": "2026-01-01T10:00:00Z", "ended_at": None, "drill": False,
             "details": {}}
    from geofence.alert import Transition

    event = AlertEvent(Transition.NEW, alert, parse_iso("2026-01-01T10:00:00Z"))
    later = AlertEvent(Transition.NEW, {**alert, "id": "x2",
                                        "started_at": "2026-01-01T12:00:00Z"},
                       parse_iso("2026-01-01T12:00:00Z"))

    pushed = _Pushed()

    async def run() -> tuple[list[dict[str, Any]], list[str]]:
        store = open_store(f"sqlite:///{tmp_path / 's.db'}")
        record = AlertsFileSink(tmp_path / "alerts.jsonl")
        await store.start()
        await record.start()
        snoozes = SnoozeBook([("speeding", 244123456, parse_iso("2026-01-01T11:00:00Z"))])
        pipeline = Pipeline(Ingestor(), _NoRules(), [store, record, pushed], snoozes=snoozes)
        pipeline.emit([event, later])
        await record.stop()
        await store.stop()
        reopened = open_store(f"sqlite:///{tmp_path / 's.db'}")
        await reopened.start()
        stored = await reopened.alerts()
        await reopened.stop()
        return stored, [a["id"] for a in alerts_of(tmp_path / "alerts.jsonl")]

    stored, filed = asyncio.run(run())
    assert sorted(a["id"] for a in stored) == ["x1", "x2"]  # both recorded
    assert filed == ["x1", "x2"]  # the alerts file is a record too
    assert pushed.ids == ["x2"]  # the snoozed one was not pushed; the rule re-armed after


class _Pushed:
    """A sink that pushes (as MQTT and the stream do): no ``keeps_snoozed``."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def on_report(self, report: Any) -> None:
        return None

    def on_alert(self, event: AlertEvent) -> None:
        self.ids.append(event.alert["id"])


class _NoRules:
    def process(self, report: Any) -> list[AlertEvent]:
        return []

    def tick(self, now: float) -> list[AlertEvent]:
        return []

    def source_heard(self, receiver: str, time: float) -> None:
        return None

    def report_heard_by(self, report: Any, receiver: str) -> None:
        return None

    def open_alerts(self) -> list[Any]:
        return []


def test_bad_config_exits_2_naming_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "port.yaml"
    config.write_text("version: 1\nport:\n  name: x\nrules:\n  dark_vessel:\n    moving_s: -5\n")
    done = cli("replay", FIXTURES / "pyais" / "messages.ais", "--config", config)
    assert done.returncode == 2
    assert f"{config}:6: rules.dark_vessel.moving_s" in done.stderr


def test_env_is_clean() -> None:
    assert "HARBOURWATCH_DB_URL" not in os.environ


def test_a_published_alert_still_ends_when_its_rule_is_snoozed_later() -> None:
    from geofence.alert import Transition

    base = {"id": "a1", "rule": "loitering", "mmsi": 244123456, "other_mmsi": None,
            "state": "open"}
    book = SnoozeBook()
    opened = AlertEvent(Transition.NEW, base, 100.0)
    assert not book.muted(opened)  # published
    book.snooze("loitering", 244123456, 10_000.0)
    ended = AlertEvent(Transition.END, {**base, "state": "ended"}, 200.0)
    assert not book.muted(ended)  # its end reaches those who saw it open
    second = AlertEvent(Transition.NEW, {**base, "id": "a2"}, 300.0)
    assert book.muted(second)
    assert book.muted(AlertEvent(Transition.END, {**base, "id": "a2", "state": "ended"}, 400.0))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_sigterm_during_a_replay_stops_cleanly_and_keeps_what_was_seen(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path, sig: signal.Signals) -> None:
    """SIGHUP too: a closed terminal killed the service, losing what was buffered."""
    log, _ = scenario
    db = tmp_path / "hw.db"
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "replay", str(log), "--zones",
         str(DEMO_ZONES), "--speed", "100", "--no-progress", "--db", f"sqlite:///{db}",
         "--alerts-out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    written = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM alerts")}
        positions = conn.execute("SELECT count(*) FROM positions").fetchone()[0]
    assert set(written) == stored  # every alert pushed was also stored: nothing lost at stop
    assert positions > 0


def test_replaying_the_same_log_twice_into_one_database_gives_the_same_alerts(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    log, _ = scenario
    db = f"sqlite:///{tmp_path / 'same.db'}"
    files = []
    for run in ("first", "second"):
        out = tmp_path / f"{run}.jsonl"
        done = cli("replay", log, "--zones", DEMO_ZONES, "--speed", "max", "--no-progress",
                   "--db", db, "--alerts-out", out)
        assert done.returncode == 0, done.stderr
        files.append(out.read_bytes())
    assert files[0] == files[1] and files[0]


def _alerts_by_drill(path: Path) -> dict[int, set[str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id, drill FROM alerts").fetchall()
    return {flag: {i for i, d in rows if d == flag} for flag in (0, 1)}


def test_a_drill_replayed_into_the_live_database_leaves_the_real_alerts_alone(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """The same log as a real run, then as a drill, into one database: the drill's alerts
    are its own (they took over the real ones, ids and all, and marked them drill)."""
    log, _ = scenario
    db = tmp_path / "port.db"
    for flags in ((), ("--drill",)):
        done = cli("replay", log, "--zones", DEMO_ZONES, "--speed", "max", "--no-progress",
                   "--db", f"sqlite:///{db}", "--alerts-out", tmp_path / f"out{len(flags)}",
                   *flags)
        assert done.returncode == 0, done.stderr
    real = {a["id"] for a in alerts_of(tmp_path / "out0")}
    drill = {a["id"] for a in alerts_of(tmp_path / "out1")}
    assert real and len(drill) == len(real) and not real & drill
    assert _alerts_by_drill(db) == {0: real, 1: drill}


def test_a_replay_resumed_where_no_replay_saved_its_state_says_it_starts_afresh(
        tmp_path: Path) -> None:
    """--start into a database no replay saved its state in (a new one, or one that only a
    release before schema 2 wrote: its replays saved none) cannot give the alerts of one
    whole run; it started from a clean slate at --start and said nothing."""
    db = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "upgrade" / "schema-1-a7fc40d.db", db)
    done = cli("replay", DEMO_LOG, "--config", DEMO_CONFIG, "--speed", "max", "--no-progress",
               "--serve", "off", "--mqtt", "off", "--db", f"sqlite:///{db}",
               "--start", "2012-01-27T11:53:00Z")
    assert done.returncode == 0, done.stderr
    assert ("replay: no replay saved its state in this database, so --start "
            "2012-01-27T11:53:00Z cannot resume one: the rules start there from a clean "
            "slate (a replay cut short by a release before schema version 2 saved none)"
            ) in done.stderr
    # Now a replay saved its state there: the same --start again says what it does then.
    again = cli("replay", DEMO_LOG, "--config", DEMO_CONFIG, "--speed", "max",
                "--no-progress", "--serve", "off", "--mqtt", "off", "--db", f"sqlite:///{db}",
                "--start", "2012-01-27T11:53:00Z")
    assert again.returncode == 0, again.stderr
    assert "the replay state saved in this database is as of" in again.stderr
    assert "no replay saved its state" not in again.stderr


def test_a_replay_cut_short_and_resumed_with_start_gives_the_alerts_of_one_run(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """A replay saves its rules' state (its own, apart from the live service's), so the
    rest of the log with --start carries on where it stopped: pending timers, open alerts
    and all (the resumed run started from a clean slate, and re-raised or delayed alerts)."""
    log, _ = scenario
    lines = log.read_text().splitlines(keepends=True)
    first_half = tmp_path / "first-half.nmea"
    first_half.write_text("".join(lines[:len(lines) // 2]))
    cut = int(lines[len(lines) // 2 - 1].split("c:")[1].split("*")[0])
    db = tmp_path / "resumed.db"
    live_state = ("live", 244000001, 1.0, '{"messages": 1}')  # to be left alone

    def replay(path: Path, db: Path, out: str, *more: str | int) -> list[str]:
        done = cli("replay", path, "--zones", DEMO_ZONES, "--speed", "max", "--no-progress",
                   "--db", f"sqlite:///{db}", "--alerts-out", tmp_path / out, *map(str, more))
        assert done.returncode == 0, done.stderr
        return sorted((tmp_path / out).read_text().splitlines())

    whole = replay(log, tmp_path / "whole.db", "whole.jsonl")
    before = replay(first_half, db, "before.jsonl")
    # The live service's state and one of its open alerts, on a vessel of the log.
    later = next(json.loads(line) for line in whole if json.loads(line)["mmsi"])
    live_alert = Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                       severity=Severity.WARNING, mmsi=later["mmsi"], started_at=cut - 7200)
    asyncio.run(_store_alert(db, tmp_path, live_alert))
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO vessel_state VALUES (?, ?, ?, ?)", live_state)
        scopes = dict(conn.execute("SELECT scope, count(*) FROM vessel_state GROUP BY scope"))
    assert scopes["replay"] > 0
    after = replay(log, db, "after.jsonl", "--start", cut + 1)
    assert sorted(before + after) == whole and after
    # The same resume again: the saved state is as of the log's end, so nothing is raised
    # again, and it is said (it was silent).
    again = cli("replay", log, "--zones", DEMO_ZONES, "--speed", "max", "--no-progress",
                "--db", f"sqlite:///{db}", "--start", str(cut + 1))
    assert again.returncode == 0
    assert "the replay state saved in this database is as of" in again.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT * FROM vessel_state WHERE scope = 'live'").fetchall() == [
            live_state]
        assert conn.execute("SELECT state FROM alerts WHERE id = ?",
                            (live_alert.id,)).fetchone() == ("open",)


def _first_half(log: Path, drill: Path) -> int:
    """``drill``: the first half of a scenario log (a drill is resumed on the same file:
    write the whole log there after it); the message time of its last line."""
    lines = log.read_text().splitlines(keepends=True)
    drill.write_text("".join(lines[:len(lines) // 2]))
    return int(lines[len(lines) // 2 - 1].split("c:")[1].split("*")[0])


def test_a_drill_cut_short_and_resumed_with_start_gives_the_alerts_of_one_drill(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """A drill saved no state: resumed with --start it began from a clean slate (dwell
    times lost, every vessel in a zone entering it again), though --help promised to resume.
    A drill from the beginning, or a --start that is no resume of the saved drill, is a new
    exercise from a clean slate, and says so."""
    log, _ = scenario
    played = tmp_path / "drill.nmea"
    db = tmp_path / "drill.db"

    def drill(path: Path, out: str, *more: str | int) -> tuple[list[str], str]:
        done = cli("replay", path, "--zones", DEMO_ZONES, "--speed", "max", "--no-progress",
                   "--drill", "--db", f"sqlite:///{db}", "--alerts-out", tmp_path / out,
                   *map(str, more))
        assert done.returncode == 0, done.stderr
        return sorted((tmp_path / out).read_text().splitlines()), done.stderr

    whole, _ = drill(log, "whole.jsonl")
    cut = _first_half(log, played)
    before, _ = drill(played, "before.jsonl")
    played.write_bytes(log.read_bytes())
    after, said = drill(played, "after.jsonl", "--start", cut + 1)
    assert sorted(before + after) == whole and after
    assert "drill: resuming the exercise" in said
    # The saved drill played another file: --start on this one is a new exercise.
    _first_half(log, played)
    drill(played, "before.jsonl")
    fresh, said = drill(log, "fresh.jsonl", "--start", cut + 1)
    assert "begins a new exercise there from a clean slate: the drill saved in this " \
           "database played other logs" in said
    assert fresh != after


def test_a_replay_stopped_by_a_signal_says_where_to_resume_and_resumes_there(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """Nothing said where a replay stopped; and cut anywhere, part of a second was judged
    and --start could neither skip nor judge the rest exactly. It stops between two
    message times, says which, and a drill resumed there equals one never cut."""
    log, _ = scenario
    db = f"sqlite:///{tmp_path / 'drill.db'}"
    flags = ("--zones", DEMO_ZONES, "--no-progress", "--drill", "--db", db)
    whole = cli("replay", log, *flags, "--db", f"sqlite:///{tmp_path / 'whole.db'}",
                "--alerts-out", tmp_path / "whole.jsonl")
    assert whole.returncode == 0, whole.stderr
    # 45 minutes at 150x: 18 s, cut after a few.
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "replay", str(log), *map(str, flags),
         "--speed", "150", "--alerts-out", str(tmp_path / "before.jsonl")],
        stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    said = [proc.stderr.readline()]
    assert "store:" in said[0]
    # Cut once a few alerts are out: a fixed 4 s after "store:" can all go on the rest of
    # the start-up on a loaded machine (nothing judged, no "stopped at" said).
    before = tmp_path / "before.jsonl"
    deadline = time.monotonic() + 60
    while not (before.exists() and before.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    said += proc.stderr.readlines()
    assert proc.wait(timeout=30) == 0, said
    stop = next(line for line in said if " stopped at " in line)
    at, resume = stop.split(" stopped at ")[1].split("; resume with --start ")
    assert at == resume.strip()
    after = cli("replay", log, *flags, "--start", resume.strip(), "--alerts-out",
                tmp_path / "after.jsonl")
    assert after.returncode == 0, after.stderr
    parts = [(tmp_path / f"{run}.jsonl").read_text().splitlines() for run in ("before", "after")]
    assert all(parts)
    assert sorted(parts[0] + parts[1]) == sorted(
        (tmp_path / "whole.jsonl").read_text().splitlines())


def test_a_start_past_the_end_of_the_log_is_said(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """It said "replayed N lines, 0 reports" and nothing else."""
    log, _ = scenario
    last = int(log.read_text().splitlines()[-1].split("c:")[1].split("*")[0])
    done = cli("replay", log, "--zones", DEMO_ZONES, "--no-progress",
               "--db", f"sqlite:///{tmp_path / 'x.db'}", "--start", str(last + 3600))
    assert done.returncode == 0, done.stderr
    said = (f"--start {iso_time(last + 3600)} is past the end of the log(s): the last "
            "message time in them is ")
    assert said in done.stderr
    # The last report's (the log's last line is a duplicate of one a second before).
    assert last - 5 <= parse_iso(done.stderr.split(said)[1].split()[0]) <= last


def test_a_new_drill_discards_the_last_exercises_unsent_alerts_and_a_resumed_one_keeps_them(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """Left in the drill outbox (the broker away), they went out as the first messages of
    the next exercise."""
    log, _ = scenario
    played = tmp_path / "drill.nmea"
    cut = _first_half(log, played)
    db = tmp_path / "drill.db"
    closed = free_port()  # the training broker is away: alerts stay in the outbox

    def drill(path: Path, *more: str | int) -> str:
        done = cli("replay", path, "--zones", DEMO_ZONES, "--speed", "max", "--no-progress",
                   "--drill", "--db", f"sqlite:///{db}", "--mqtt", f"mqtt://127.0.0.1:{closed}",
                   "--mqtt-prefix", "hwtest/drill", *map(str, more))
        assert done.returncode == 0, done.stderr
        return done.stderr

    asyncio.run(_outbox_add(db, tmp_path, b'{"earlier": 1}', b'{"earlier": 2}'))
    said = drill(played)
    left = asyncio.run(_outbox_payloads(db, tmp_path))
    assert left and not [p for p in left if b"earlier" in p]
    assert ("drill: a new exercise: discarded 2 MQTT alert messages an earlier exercise "
            "left unsent") in said
    played.write_bytes(log.read_bytes())
    said = drill(played, "--start", cut + 1)
    assert "drill: resuming the exercise" in said and "discarded" not in said
    assert asyncio.run(_outbox_payloads(db, tmp_path))[:len(left)] == left


async def _outbox_add(db: Path, folder: Path, *payloads: bytes) -> None:
    store = open_store(f"sqlite:///{db}", folder)
    await store.start()
    try:
        for payload in payloads:
            await store.outbox_add("hwtest/drill/drill/alerts", payload, scope="drill")
    finally:
        await store.stop()


async def _outbox_payloads(db: Path, folder: Path) -> list[bytes]:
    store = open_store(f"sqlite:///{db}", folder)
    await store.start()
    try:
        return [m.payload for m in await store.outbox_pending(100_000, scope="drill")]
    finally:
        await store.stop()


async def _store_alert(db: Path, folder: Path, alert: Alert) -> None:
    store = open_store(f"sqlite:///{db}", folder)
    await store.start()
    try:
        store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), alert.started_at))
        await store.flush()
    finally:
        await store.stop()


def test_a_udp_port_in_use_is_a_message_and_exit_2(tmp_path: Path) -> None:
    """It was a 48-line ExceptionGroup traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        done = cli("run", "--zones", DEMO_ZONES, "--udp", f"127.0.0.1:{port}",
                   "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"harbourwatch: source udp-{port}: cannot listen on UDP 127.0.0.1:{port}: "
        f"[Errno 98] Address already in use: another process listens on it (`ss -lunp "
        f"'sport = :{port}'` names it), or another of this run's sources does; stop it, or "
        f"set another port (--udp 127.0.0.1:{port})")
    assert "Traceback" not in done.stderr
    # Nothing started: a second instance said "stopped" on MQTT over the one running.
    assert not (tmp_path / "x.db").exists()


def _udp_in_use(source: str, host: str, port: int, setting: str) -> str:
    """What ``run`` says last when a UDP source's port is taken, ``setting`` its line."""
    return (f"harbourwatch: source {source}: cannot listen on UDP {host}:{port}: "
            f"[Errno 98] Address already in use: another process listens on it (`ss -lunp "
            f"'sport = :{port}'` names it), or another of this run's sources does; stop it, "
            f"or set another port ({setting})")


def test_a_udp_port_in_use_names_the_config_line_that_chose_it(tmp_path: Path) -> None:
    """It said what failed, not what to do."""
    config = tmp_path / "port.yaml"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config.write_text(f"version: 1\nport: {{name: t, zones: {DEMO_ZONES}}}\nsources:\n"
                          "  - kind: udp\n    name: harbour\n    host: 127.0.0.1\n"
                          f"    port: {port}\n")
        done = cli("run", "--config", config, "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == _udp_in_use("harbour", "127.0.0.1", port,
                                                       f"{config}:7: sources.0.port")
    assert not (tmp_path / "x.db").exists()


def test_an_api_port_in_use_is_a_message_and_exit_2(tmp_path: Path) -> None:
    """It ran on without its API, logged an error and exited 1 at the end."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("run", "--zones", DEMO_ZONES, "--serve", f"127.0.0.1:{port}",
                   "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"harbourwatch: API on 127.0.0.1:{port} cannot be served: Address already in use: "
        f"another process listens on it (`ss -ltnp 'sport = :{port}'` names it); stop it, "
        "or set another port (--serve)")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()  # nothing started


def test_an_api_port_in_use_names_the_config_line_that_chose_it(tmp_path: Path) -> None:
    config = tmp_path / "port.yaml"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(f"version: 1\nport: {{name: t, zones: {DEMO_ZONES}}}\napi:\n"
                          f"  enabled: true\n  port: {port}\n")
        done = cli("run", "--config", config, "--db", f"sqlite:///{tmp_path / 'x.db'}",
                   env={**os.environ, "HARBOURWATCH_API_TOKENS": "ops:admin:a-secret-token-1"})
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"harbourwatch: API on 127.0.0.1:{port} cannot be served: Address already in use: "
        f"another process listens on it (`ss -ltnp 'sport = :{port}'` names it); stop it, "
        f"or set another port ({config}:5: api.port)")


def test_the_api_address_check_binds_every_address_of_a_name() -> None:
    """``localhost`` may resolve to ::1 first; uvicorn binds 127.0.0.1 as well."""
    from api.server import ApiAddressError, check_address

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ApiAddressError, match="Address already in use"):
            check_address("localhost", port)
    check_address("localhost", port)  # free again


def test_zones_saved_with_no_record_of_the_file_go_by_its_mtime(tmp_path: Path) -> None:
    """A version saved before the store kept the zones file's content with it (schema 5):
    a PUT /zones after the file was written wins at start-up; writing the file afterwards
    wins again. The added zone went away at every restart."""
    from harbourwatch.service import _zones_in_force

    zones_file = tmp_path / "zones.geojson"
    zones_file.write_text(DEMO_ZONES.read_text())
    os.utime(zones_file, (1_700_000_000, 1_700_000_000))
    config = resolve_config(ServiceOptions(zones=zones_file))
    from_file = load_zones(config)
    added = json.loads(zones_file.read_text())
    added["features"].append({**added["features"][-1], "properties": {
        **added["features"][-1]["properties"], "id": "new_security", "kind": "security"}})

    async def in_force() -> set[str]:
        store = open_store(f"sqlite:///{tmp_path / 'z.db'}", tmp_path)
        await store.start()
        try:
            if await store.latest_zones() is None:
                await store.save_zones(added, "admin")
            return {zone.id for zone in await _zones_in_force(store, config, from_file)}
        finally:
            await store.stop()

    assert "new_security" in asyncio.run(in_force())
    zones_file.write_text(zones_file.read_text())  # edited after the PUT
    assert "new_security" not in asyncio.run(in_force())


def test_a_saved_version_in_force_says_the_warnings_the_file_did_not(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only the saved version's warnings the file's load already said are held back."""
    from harbourwatch.service import _zones_in_force

    zones_file = tmp_path / "zones.geojson"
    zones_file.write_text(DEMO_ZONES.read_text())
    config = resolve_config(ServiceOptions(zones=zones_file))
    from_file = load_zones(config)
    saved = json.loads(zones_file.read_text())
    saved["features"][0]["properties"]["colur"] = "red"

    async def in_force() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'z.db'}", tmp_path)
        await store.start()
        try:
            await store.save_zones(saved, "admin", file_sha256=file_sha256(zones_file))
            with caplog.at_level(logging.WARNING, logger="harbourwatch.service"):
                await _zones_in_force(store, config, from_file)
        finally:
            await store.stop()

    asyncio.run(in_force())
    assert [r.getMessage() for r in caplog.records if "colur" in r.getMessage()] == [
        "<zones>: feature 'port_limit': unknown property 'colur' ignored"]


def _zones_run(zones_file: Path, db: Path, work: Callable[[httpx.Client], None],
               *flags: str) -> str:
    """Run the live service with its API (and ``flags``), ``work(http)`` with an admin's
    client once it answers, stop it; its log."""
    import httpx

    api = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(zones_file),
         "--serve", f"127.0.0.1:{api}", "--db", f"sqlite:///{db}", *flags],
        env={**os.environ, "HARBOURWATCH_API_TOKENS": "duty:admin:zones-test"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api}",
                          headers={"Authorization": "Bearer zones-test"}) as http:
            for _ in range(300):  # up to 30 s for the start
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/health").status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise AssertionError("the API never answered")
            work(http)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, said = proc.communicate(timeout=60)
    assert proc.returncode == 0, said
    return said


def test_zones_saved_over_the_api_stay_until_the_zones_file_content_changes(
        tmp_path: Path) -> None:
    """The file won whenever its mtime was newer than the saved version: a touch, a config
    tool writing the same file again or a restore from backup dropped the duty officer's
    zones at the next restart. The file now wins only when its content has changed."""
    zones_file = tmp_path / "zones.geojson"
    zones_file.write_text(DEMO_ZONES.read_text())
    db = tmp_path / "live.db"
    added = json.loads(zones_file.read_text())
    added["features"].append({**added["features"][-1], "properties": {
        **added["features"][-1]["properties"], "id": "new_security", "kind": "security"}})
    seen: list[dict[str, Any]] = []

    def put(http: httpx.Client) -> None:
        answer = http.put("/zones", json=added)
        assert answer.status_code == 200, answer.text
        seen.append(answer.json())

    def get(http: httpx.Client) -> None:
        seen.append(http.get("/zones").json())

    _zones_run(zones_file, db, put)
    version = seen[0]["version"]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        saved_at = conn.execute("SELECT time FROM zones WHERE version = ?",
                                (version,)).fetchone()[0]
    os.utime(zones_file, (saved_at + 60, saved_at + 60))  # touched after the PUT
    said = _zones_run(zones_file, db, get)
    ids = [f["properties"]["id"] for f in seen[1]["features"]]
    assert "new_security" in ids and seen[1]["version"] == version, said
    assert f"zones: using version {version} saved over the API by duty" in said
    assert f"({zones_file} unchanged since)" in said

    edited = json.loads(zones_file.read_text())
    edited["features"][0]["properties"]["name"] = "Renamed in the file"
    zones_file.write_text(json.dumps(edited))
    os.utime(zones_file, (saved_at - 60, saved_at - 60))  # older, but another content
    said = _zones_run(zones_file, db, get)
    names = {f["properties"]["id"]: f["properties"].get("name") for f in seen[2]["features"]}
    assert "new_security" not in names and seen[2]["version"] is None, said
    assert names[edited["features"][0]["properties"]["id"]] == "Renamed in the file"
    assert f"zones: {zones_file} has changed since version {version} saved over the API" in said


def _lines_saying(said: str, text: str) -> list[str]:
    """The messages of the log lines containing ``text`` (time, level and logger cut)."""
    return [line.split(": ", 1)[-1] for line in said.splitlines() if text in line]


def test_a_verbose_start_names_the_store_once(tmp_path: Path) -> None:
    """With -v the store's line came twice, from the store at INFO and the service at
    WARNING."""
    db = tmp_path / "live.db"
    said = _zones_run(DEMO_ZONES, db, lambda http: None, "-v")
    assert _lines_saying(said, "store: SQLite (WAL)") == [f"store: SQLite (WAL) at {db}"], said


def test_a_start_warns_of_a_zone_property_once(tmp_path: Path) -> None:
    """A start with zones saved over the API from a file with an unknown property warned
    of it three times: loading the file, loading the saved version in force, and at the
    first GET /zones (comparing the running zones with the saved ones)."""
    zones = json.loads(DEMO_ZONES.read_text())
    zones["features"][0]["properties"]["colur"] = "red"
    zones_file = tmp_path / "zones.geojson"
    zones_file.write_text(json.dumps(zones))
    db = tmp_path / "live.db"
    unknown = "unknown property 'colur' ignored"

    def put(http: httpx.Client) -> None:
        answer = http.put("/zones", json=http.get("/zones").json())
        assert answer.status_code == 200, answer.text
        assert [w.endswith(unknown) for w in answer.json()["warnings"]] == [True]

    said = _zones_run(zones_file, db, put)
    assert _lines_saying(said, unknown) == [
        f"{zones_file}: feature 'port_limit': {unknown}",  # the start's load of the file
        f"<zones>: feature 'port_limit': {unknown}"], said  # the PUT's

    def get(http: httpx.Client) -> None:
        assert http.get("/zones").json()["version"] == 1

    said = _zones_run(zones_file, db, get)
    assert "zones: using version 1 saved over the API" in said
    assert _lines_saying(said, unknown) == [
        f"{zones_file}: feature 'port_limit': {unknown}"], said


def test_an_alerts_file_that_cannot_be_written_is_a_message_and_exit_2(tmp_path: Path) -> None:
    done = cli("replay", FIXTURES / "pyais" / "messages.ais", "--zones", DEMO_ZONES,
               "--db", f"sqlite:///{tmp_path / 'x.db'}", "--alerts-out", tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"harbourwatch: --alerts-out {tmp_path}: cannot write: Is a directory")


def test_a_live_restart_restores_alerts_opened_after_the_last_save(tmp_path: Path) -> None:
    """A crash comes between two saves: an alert opened since the last one is still the
    service's to reconcile (only a replay's resume is limited to the alerts it saved)."""
    from geofence.engine import Engine
    from harbourwatch.config import RulesConfig
    from harbourwatch.service import restore_state, save_state

    late = Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                 severity=Severity.WARNING, mmsi=244000001, started_at=1_767_268_800.0)

    async def restored() -> list[str]:
        store = open_store(f"sqlite:///{tmp_path / 'live.db'}", tmp_path)
        await store.start()
        try:
            await save_state(store, Engine(RulesConfig(), load_zones(
                resolve_config(ServiceOptions(zones=DEMO_ZONES)))))
            store.on_alert(AlertEvent(Transition.NEW, late.to_dict(), late.started_at))
            await store.flush()
            engine = Engine(RulesConfig(), load_zones(resolve_config(
                ServiceOptions(zones=DEMO_ZONES))))
            await restore_state(store, engine)
            return [a.id for a in engine.open_alerts()]
        finally:
            await store.stop()

    assert asyncio.run(restored()) == [late.id]


def test_a_resolved_alert_whose_condition_holds_is_the_rules_after_a_restart(
        tmp_path: Path) -> None:
    """The harbour master resolved a speeding alert while the ship still sped: the rules
    kept it until the ship slowed. After a restart they had dropped it, opened a new alert
    on the same ship at once, and the resolved one never got its end."""
    from geofence.engine import Engine
    from harbourwatch.operator_acts import OperatorActs
    from harbourwatch.service import restore_state, save_state
    from tests.rulekit import port_zones, report, rules_config, span

    ship = 244123456

    def speeding(times: list[float], knots: float) -> list[Any]:
        return [report(ship, t, 0.0, -2500.0, speed=knots) for t in times]

    async def restart() -> tuple[str, list[str], list[AlertEvent], dict[str, Any]]:
        store = open_store(f"sqlite:///{tmp_path / 'live.db'}", tmp_path)
        await store.start()
        try:
            first = Engine(rules_config(), port_zones())
            for rep in speeding([0, 5, *span(10, 70, 10)], 8.0):
                for event in first.process(rep):
                    store.on_alert(event)
            await store.flush()
            (alert,) = first.open_alerts()
            await store.resolve(alert.id, "harbour-master", "pilot told the master")
            await save_state(store, first)
            second, acts = Engine(rules_config(), port_zones()), OperatorActs()
            await restore_state(store, second, acts)
            held = [a.id for a in second.open_alerts()]
            events = []
            for rep in speeding(span(80, 300, 10), 8.0) + speeding(span(310, 400, 10), 2.0):
                events += second.process(rep)
            for event in events:
                store.on_alert(acts.over(event))
            await store.flush()
            return alert.id, held, events, await store.alert(alert.id)
        finally:
            await store.stop()

    resolved, held, events, row = asyncio.run(restart())
    assert held == [resolved]
    assert [(str(e.transition), e.alert["id"]) for e in events] == [("end", resolved)]
    assert (row["state"], row["resolved_by"]) == ("resolved", "harbour-master")
    assert row["ended_at"] is not None


def test_a_muted_alert_stays_muted_across_a_restart_and_its_acts_are_not_pushed(
        tmp_path: Path) -> None:
    """Its ack went to MQTT as an update (a retained alert the platform never saw open,
    never cleared, as its end was muted); after a restart it was unmuted altogether."""
    from geofence.engine import Engine
    from harbourwatch.config import RulesConfig
    from harbourwatch.service import _operator_acts_to, restore_state, save_state

    def engine() -> Engine:
        return Engine(RulesConfig(), load_zones(resolve_config(ServiceOptions(zones=DEMO_ZONES))))

    muted, heard = (Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                          severity=Severity.WARNING, mmsi=mmsi, started_at=1_767_268_800.0)
                    for mmsi in (503999001, 503999002))
    first = SnoozeBook([("dark_vessel", 503999001, muted.started_at + 3600)])
    pushed = _Pushed()

    async def restart() -> SnoozeBook:
        store = open_store(f"sqlite:///{tmp_path / 'live.db'}", tmp_path)
        await store.start()
        try:
            for alert in (muted, heard):
                opened = AlertEvent(Transition.NEW, alert.to_dict(), alert.started_at)
                assert first.muted(opened) is (alert is muted)
                store.on_alert(opened)
            await store.flush()
            before = engine()
            before.restore([], [muted, heard], {})
            await save_state(store, before, muted=first.muted_ids)
            after = SnoozeBook()  # the snooze itself has run out meanwhile
            await restore_state(store, engine(), snoozes=after)
            return after
        finally:
            await store.stop()

    after = asyncio.run(restart())
    forward = _operator_acts_to(pushed, lambda: muted.started_at + 60, after)
    for alert in (muted, heard):
        forward({**alert.to_dict(), "state": "acknowledged"})
    assert pushed.ids == [heard.id]
    ended = AlertEvent(Transition.END, {**muted.to_dict(), "state": "ended"}, 1_767_270_000.0)
    assert after.muted(ended)


def test_sighup_is_left_alone_under_nohup(tmp_path: Path) -> None:
    port = free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp_path / 'n.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # as nohup does
    try:
        wait_said(proc, "store: ")  # started, its own signal handlers in place
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None  # still running, as the operator asked
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_a_live_stop_is_said_in_the_log(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C or systemd's SIGTERM stopped the service without a word, even with -v: the
    journal could not tell a clean stop from a hang that was killed."""
    port = free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp_path / 's.db'}", "-v"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Its sources start once the rules' state is restored (a signal before then is a stop
    # during start-up, said otherwise).
    said = wait_said(proc, "listening on UDP")
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    time.sleep(0.2)  # the reading thread takes the last lines
    messages = [line.split(": ", 1)[1].strip() for line in said if " WARNING " in line]
    assert messages[-2:] == [f"{sig.name}: stopping", f"stopped ({sig.name})"]


def test_a_replay_whose_alerts_file_fills_the_disk_exits_1(
        scenario: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """The replay goes on to the end (store, API), but its alerts file is incomplete."""
    log, _ = scenario
    done = cli("replay", log, "--zones", DEMO_ZONES, "--db", f"sqlite:///{tmp_path / 'f.db'}",
               "--alerts-out", "/dev/full")
    assert done.returncode == 1
    assert "outputs failed (calls that raised): {'AlertsFileSink':" in done.stderr


def test_a_file_source_that_breaks_off_in_a_run_is_a_runtime_failure(tmp_path: Path) -> None:
    import gzip as gz

    broken = tmp_path / "cut.nmea.gz"
    whole = gz.compress((single(position()) + "\n").encode() * 2000)
    broken.write_bytes(whole[:len(whole) // 2])
    config = tmp_path / "port.yaml"
    config.write_text(f"version: 1\nport: {{name: t, zones: {DEMO_ZONES}}}\n"
                      f"sources:\n  - {{kind: file, name: cut, path: {broken}}}\n")
    done = cli("run", "--config", config, "--db", f"sqlite:///{tmp_path / 'c.db'}")
    assert done.returncode == 1
    assert "harbourwatch: run stopped: cannot read" in done.stderr


def test_a_large_picture_is_saved_a_chunk_at_a_time_with_the_loop_turning(
        tmp_path: Path) -> None:
    """Encoding 24,000 vessels at once held the event loop for 1.7 s; a report judged while
    the save runs reaches the vessels not yet encoded."""
    from geofence.engine import Engine
    from harbourwatch.service import STATE_SAVE_CHUNK, save_state
    from tests.rulekit import port_zones, report, rules_config

    engine = Engine(rules_config(), port_zones())
    count = STATE_SAVE_CHUNK * 5
    for i in range(count):
        engine.process(report(244000000 + i, 0, -15000 + i % 50 * 600, -15000 + i // 50 * 600))
    first, last = (engine.picture.vessels[244000000 + i] for i in (0, count - 1))

    async def run() -> dict[int, Any]:
        store = open_store(f"sqlite:///{tmp_path / 's.db'}", tmp_path)
        await store.start()

        async def meanwhile() -> None:
            await asyncio.sleep(0)  # the save's first turn
            first.messages = last.messages = 99

        try:
            await asyncio.gather(save_state(store, engine), meanwhile())
            return {m: s.state for m, s in (await store.load_vessel_states()).items()}
        finally:
            await store.stop()

    saved = asyncio.run(run())
    assert len(saved) == count
    assert saved[first.mmsi]["messages"] == 1  # encoded before the loop's first turn
    assert saved[last.mmsi]["messages"] == 99  # encoded after it


def test_the_api_runs_on_the_rules_clock_while_the_feed_is_quiet(tmp_path: Path) -> None:
    """A snooze took the newest line's time while the rules' clock moved on with the wall
    clock: it ended early, and was listed active after the rules had re-armed."""
    import httpx

    udp, api = free_udp_port(), free_port()  # the API is TCP: a port free for TCP
    token = "op-clock-test"
    line_time = 1_700_000_000
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{udp}", "--serve", f"127.0.0.1:{api}",
         "--db", f"sqlite:///{tmp_path / 'live.db'}"],
        env={**os.environ, "HARBOURWATCH_API_TOKENS": f"duty:operator:{token}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = tag_block(s="rx1", c=line_time) + single(position(mmsi=244123456, lat=-23.83,
                                                             lon=151.25, speed=0.0))
    auth = {"Authorization": f"Bearer {token}"}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
                httpx.Client(base_url=f"http://127.0.0.1:{api}", headers=auth) as http:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the line never reached the picture"
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/vessels").json().get("vessels"):
                        break
                sock.sendto((line + "\r\n").encode(), ("127.0.0.1", udp))
                time.sleep(0.2)
            # The feed is quiet: the rules' clock moves on by the wall time, in ticks of a
            # second from the first tick after the line; 3 s of sleep can move it on by
            # less than 2 s when the ticks run late (a loaded machine): ask again until then.
            time.sleep(3)
            deadline = time.monotonic() + 30
            while True:
                snooze = http.post("/snoozes", json={"rule": "speeding", "mmsi": 244123456,
                                                     "duration_s": 60}).json()
                if parse_iso(snooze["until"]) >= line_time + 60 + 2:
                    break
                assert time.monotonic() < deadline, snooze  # the line's time, for ever
                time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert parse_iso(snooze["until"]) >= line_time + 60 + 2


def test_an_api_no_token_opens_is_said_at_start(tmp_path: Path) -> None:
    """The README's first run example answered 401 to everything, and nothing said why."""
    import httpx

    api = free_port()  # TCP: free_udp_port() may name one a TCP server holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "replay", str(FIXTURES / "pyais" /
                                                                 "messages.ais"),
         "--zones", str(DEMO_ZONES), "--serve", f"127.0.0.1:{api}", "--no-progress",
         "--db", f"sqlite:///{tmp_path / 'r.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{api}/vessels").status_code == 401:
                    break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "API: no tokens (api.tokens, HARBOURWATCH_API_TOKENS) and api.open_read is " \
        "false" in (proc.stderr.read() if proc.stderr else "")


def test_a_malformed_token_variable_stops_the_start_and_check_config(tmp_path: Path) -> None:
    """The API task failed alone: the service ran on without its API and exited 0."""
    env = {**os.environ, "HARBOURWATCH_API_TOKENS": "duty:superuser:tok"}
    done = cli("run", "--zones", DEMO_ZONES, "--serve", f"127.0.0.1:{free_port()}",
               "--db", f"sqlite:///{tmp_path / 'x.db'}", env=env)
    assert done.returncode == 2
    said = ("api.tokens: HARBOURWATCH_API_TOKENS: entry 1: unknown role (viewer, operator "
            "or admin; entries are name:role:token)")
    assert done.stderr.splitlines()[-1] == f"harbourwatch: {said}"
    assert not (tmp_path / "x.db").exists()  # nothing started
    checked = cli("check-config", "--zones", DEMO_ZONES, env=env)
    assert checked.returncode == 2
    assert checked.stderr.splitlines()[-1] == f"harbourwatch: <flags>: {said}"


def test_a_live_run_drops_positions_older_than_the_retention(tmp_path: Path) -> None:
    """Only TimescaleDB's policy dropped them: the default SQLite store grew for ever."""
    from tests.api_helpers import pos

    db = tmp_path / "live.db"

    async def seed() -> None:
        store = open_store(f"sqlite:///{db}", tmp_path)
        await store.start()
        for age_days in (400, 1):  # the default retention is 90 days
            store.on_report(pos(244123456, time.time() - age_days * 86400, -23.83, 151.25))
        await store.flush()
        await store.stop()

    asyncio.run(seed())
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{free_udp_port()}", "--db", f"sqlite:///{db}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            with contextlib.closing(sqlite3.connect(db)) as conn:
                kept = conn.execute("SELECT count(*) FROM positions").fetchone()[0]
            if kept == 1:
                break
            assert time.monotonic() < deadline, f"{kept} positions still stored"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_two_udp_sources_on_one_port_spelt_apart_stop_the_start(tmp_path: Path) -> None:
    """127.0.0.1:P and 0.0.0.0:P passed the config; the second bind failed only after the
    store and MQTT had started."""
    port = free_udp_port()
    config = tmp_path / "port.yaml"
    config.write_text(f"version: 1\nport: {{name: t, zones: {DEMO_ZONES}}}\nsources:\n"
                      f"  - {{kind: udp, name: a, host: 127.0.0.1, port: {port}}}\n"
                      f"  - {{kind: udp, name: b, host: 0.0.0.0, port: {port}}}\n")
    done = cli("run", "--config", config, "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == _udp_in_use("b", "0.0.0.0", port,
                                                       f"{config}:5: sources.1.port")
    assert not (tmp_path / "x.db").exists()


def test_scenario_says_what_it_skipped(tmp_path: Path) -> None:
    """The reasons were only inside the truth file."""
    done = cli("scenario", "--zones", DEMO_ZONES, "--out", tmp_path / "s.nmea", "--truth",
               tmp_path / "t.json", "--hours", "0.2")
    assert done.returncode == 0, done.stderr
    skipped = json.loads((tmp_path / "t.json").read_text())["skipped"]
    assert skipped and [f"skipped {rule}: {why}" for rule, why in skipped.items()] == \
        done.stdout.splitlines()[1:]


def test_a_periodic_save_during_a_database_outage_is_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """An hour's outage logged "could not save the rules' state" 120 times."""
    from harbourwatch.service import _periodically
    from store import StoreUnavailable

    calls: list[int] = []

    async def work() -> None:
        calls.append(1)
        if len(calls) <= 4:
            raise StoreUnavailable("PostgreSQL unreachable")

    async def run() -> None:
        task = asyncio.create_task(_periodically(0.01, "save the rules' state", work,
                                                 at_once=True))
        while len(calls) < 6:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert caplog.messages == [
        "could not save the rules' state (PostgreSQL unreachable); will retry",
        "could save the rules' state again"]


def test_a_drill_keeps_no_receiver_health(tmp_path: Path) -> None:
    """A drill saving its rules' state every 30 s stored its exercise's receivers among the
    port's health snapshots, which have no drill marker."""
    from geofence.engine import Engine
    from harbourwatch.service import _save_all

    config = resolve_config(ServiceOptions(zones=DEMO_ZONES))
    pipeline = Pipeline(Ingestor(), Engine(config.rules, load_zones(config), drill=True))
    line = tag_block(s="rx-drill", c=1_767_268_800) + single(position(lat=-23.83, lon=151.25))
    pipeline.feed_line("drill", line.encode(), None)

    async def saved(scope: str) -> dict[str, Any]:
        store = open_store(f"sqlite:///{tmp_path / f'{scope}.db'}", tmp_path, drill=True)
        await store.start()
        try:
            await _save_all(store, pipeline.engine, pipeline, scope, None)
            return await store.latest_source_health()
        finally:
            await store.stop()

    assert asyncio.run(saved("drill")) == {}
    assert asyncio.run(saved("replay"))  # a replay's are kept, as before


def test_a_signal_stops_a_start_waiting_for_the_database_to_take_the_spooled_alerts(
        tmp_path: Path) -> None:
    """The start writes what an earlier run spooled before reading the rules' state back,
    trying until the database takes it; a database another process keeps locked held the
    start there, deaf to SIGTERM. Stopped, the spool stays for the next start."""
    from store.rows import alert_row
    from store.sqlite import SqliteStore

    db = tmp_path / "hw.db"

    async def create() -> None:
        store = SqliteStore(db)
        await store.start()
        await store.stop()

    asyncio.run(create())
    alert = Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                  severity=Severity.WARNING, mmsi=244123456, started_at=1_767_261_600.0)
    spool = tmp_path / "hw.db.spool.jsonl"
    line = json.dumps(["a", list(alert_row(AlertEvent(Transition.NEW, alert.to_dict(),
                                                      1_767_261_600.0)))]) + "\n"
    spool.write_text(line)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # held: every write of the service waits, then fails
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
             "--udp", f"127.0.0.1:{free_udp_port()}", "--db", f"sqlite:///{db}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            said = ""
            assert proc.stderr is not None
            while "spooled rows from an earlier run" not in said:
                assert proc.poll() is None and time.monotonic() < deadline, said
                said += proc.stderr.readline()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)  # a write waits up to 10 s for the lock, then gives up
        finally:
            if proc.poll() is None:
                proc.kill()
        said += proc.stderr.read()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert code == 0, said
    assert "stopped before the rules' state was restored: the alerts and acts an earlier " \
           "run spooled are not written yet" in said
    assert spool.read_text() == line  # still spooled, for the next start


def test_a_store_that_cannot_stop_cleanly_makes_the_run_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop that could neither write nor spool its rows has lost them: exit 1, not 0."""
    from harbourwatch.cli import main
    from store.base import StoreError
    from store.sqlite import SqliteStore

    real = SqliteStore.stop

    async def stop(self: SqliteStore) -> None:
        await real(self)
        raise StoreError("cannot write spool (test): No space left on device")

    monkeypatch.setattr(SqliteStore, "stop", stop)
    log = tmp_path / "tiny.nmea"
    log.write_text("".join(tag_block(s="rx1", c=1_767_261_600 + i)
                           + single(position(mmsi=244123456, lat=-23.83, lon=151.25)) + "\n"
                           for i in range(3)))
    code = main(["replay", str(log), "--zones", str(DEMO_ZONES), "--speed", "1000",
                 "--no-progress", "--db", f"sqlite:///{tmp_path / 'hw.db'}"])
    assert code == 1


def test_a_signal_stops_a_start_waiting_for_the_database_to_answer(tmp_path: Path) -> None:
    """A database that takes the connection and does not answer (packets dropped on the
    way, another start's migration holding its lock) held the store's start, the signal
    handlers already set: SIGTERM did nothing until the connect timed out, and the run then
    failed (exit 2) as if the database were at fault."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(60)
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
             "--udp", f"127.0.0.1:{free_udp_port()}",
             "--db", f"postgresql://hw@127.0.0.1:{port}/hw"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        try:
            conn, _ = silent.accept()  # the store's start is connecting
            with conn:
                proc.send_signal(signal.SIGTERM)
                _out, said = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, said
    assert "stopped while the store was starting" in said
    assert "did not answer in time" not in said
    assert not list(tmp_path.iterdir())  # nothing spooled, nothing saved


def test_a_live_start_tries_an_sqlite_file_it_cannot_open_again_until_it_can(
        tmp_path: Path) -> None:
    """The live service waits for a database that is not up at start; with SQLite its second
    try died ("cannot schedule new futures after shutdown": the first try had shut the
    store's threads down) and the service exited with a traceback."""
    db = tmp_path / "live.db"
    db.mkdir()  # in the file's way: SQLite cannot open it
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{free_udp_port()}", "--db", f"sqlite:///{db}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        said = wait_said(proc, "the database is not up: trying again in 1 s")
        db.rmdir()
        for _ in range(600):  # up to 60 s for the next tries
            if any("store: SQLite (WAL) at" in line for line in said):
                break
            assert proc.poll() is None, "".join(said)
            time.sleep(0.1)
        else:
            raise AssertionError("".join(said))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, "".join(said)
    assert "unable to open database file" in "".join(said)  # said with the first try
    with contextlib.closing(sqlite3.connect(db)) as conn:  # the service's own file now
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] >= 1


def test_a_start_whose_restore_fails_keeps_the_state_saved_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed replay whose reading back of the rules' state fails saved, at its stop, the
    empty state it had over the one the last run saved."""
    from harbourwatch import service
    from harbourwatch.cli import main
    from store.base import StoreError

    log = tmp_path / "tiny.nmea"
    log.write_text("".join(tag_block(s="rx1", c=1_767_261_600 + 10 * i)
                           + single(position(mmsi=244123456, lat=-23.83, lon=151.25)) + "\n"
                           for i in range(6)))
    db = tmp_path / "hw.db"
    args = ["replay", str(log), "--zones", str(DEMO_ZONES), "--speed", "1000", "--no-progress",
            "--db", f"sqlite:///{db}"]
    assert main(args) == 0

    def saved() -> list[tuple[Any, ...]]:
        with sqlite3.connect(db) as conn:
            return sorted(conn.execute("SELECT * FROM vessel_state WHERE scope = 'replay'"))

    before = saved()
    assert before  # the control: the first run saved the vessel

    async def restore_state(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise StoreError("a damaged saved state (test)")

    monkeypatch.setattr(service, "restore_state", restore_state)
    assert main([*args, "--start", "2026-01-01T10:00:30Z"]) == 2
    assert saved() == before


def test_a_replay_resumed_over_damaged_saved_state_resumes_and_says_what_was_lost(
        tmp_path: Path) -> None:
    """A saved part that was not JSON (a disk fault, a hand edit of the SQLite file)
    stopped the resumed replay with a traceback, nothing judged. It resumes: the rule whose
    part it was starts afresh (said, and the run's exit status 1 as for any rule failure),
    the alerts it had open are those started by --start (said)."""
    lines = [tag_block(s="rx1", c=1_767_261_600 + 10 * i)
             + single(position(mmsi=244123456, lat=-23.83, lon=151.25)) + "\n"
             for i in range(12)]
    log, first_half = tmp_path / "tiny.nmea", tmp_path / "first-half.nmea"
    log.write_text("".join(lines))
    first_half.write_text("".join(lines[:6]))
    db = tmp_path / "hw.db"
    args = ["--zones", DEMO_ZONES, "--speed", "max", "--no-progress", "--db", f"sqlite:///{db}"]
    first = cli("replay", first_half, *args)
    assert first.returncode == 0 and "6 reports, 1 alert transitions" in first.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE engine_state SET state = '[[2440' WHERE scope = 'replay' "
                     "AND part IN ('rule:encounter', 'open_alerts', 'muted_alerts')")
        assert conn.total_changes == 3
    done = cli("replay", log, *args, "--start", "2026-01-01T10:01:00Z")
    said = [line.split(": ", 1)[1] for line in done.stderr.splitlines() if ": " in line]
    assert done.returncode == 1, done.stderr
    reason = "(JSONDecodeError: Expecting ',' delimiter: line 1 column 7 (char 6))"
    assert f"the saved state part open_alerts could not be read {reason}: the alerts " \
           "started by --start are taken" in said
    assert f"the saved state part muted_alerts could not be read {reason}: which open " \
           "alerts a snooze muted: none is taken as muted" in said
    assert f"rule encounter: its saved state cannot be read {reason}; it starts afresh: " \
           "what it knew before the restart is lost (counted in rule_failures)" in said
    assert "the rules raised 1 times (logged): the failing rule did not judge those " \
           "reports, ticks, receivers or zone changes, or started afresh; the other rules " \
           "did" in done.stderr
    # The lines from --start judged, the vessel's entry not raised again: its state is back.
    assert "replayed 12 lines, 6 reports, 0 alert transitions" in done.stderr


def test_a_live_start_over_a_damaged_rule_state_starts_and_says_so(tmp_path: Path) -> None:
    """The live service did not come up at all over a saved rule state that was not JSON
    (a traceback at every start, under systemd a restart loop). It listens; the rule starts
    afresh, said; the stop's exit status is 1 as for any rule failure."""
    port = free_udp_port()
    db = tmp_path / "s.db"
    argv = [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
            "--udp", f"127.0.0.1:{port}", "--db", f"sqlite:///{db}", "-v"]

    def started() -> tuple[int, list[str]]:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        said = wait_said(proc, "listening on UDP")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        time.sleep(0.2)  # the reading thread takes the last lines
        return code, [line.split(": ", 1)[1].strip() for line in said if ": " in line]

    assert started()[0] == 0  # saves the rules' state at stop
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("UPDATE engine_state SET state = '[[' WHERE scope = 'live' "
                            "AND part = 'rule:encounter'").rowcount == 1
    code, said = started()
    assert code == 1
    assert "rule encounter: its saved state cannot be read (JSONDecodeError: Expecting value: " \
           "line 1 column 3 (char 2)); it starts afresh: what it knew before the restart is " \
           "lost (counted in rule_failures)" in said


def test_a_drill_whose_saved_exercise_cannot_be_read_is_a_new_one_and_says_why(
        tmp_path: Path) -> None:
    """Not JSON, the saved exercise stopped the drill's start (a JSONDecodeError out of the
    store); now --start begins a new exercise, and the log says why."""
    from harbourwatch.exercise import PART, why_new

    exercise = {"logs": ["drill.nmea"]}

    async def why() -> str | None:
        store = open_store(f"sqlite:///{tmp_path / 'hw.db'}", tmp_path)
        await store.start()
        try:
            await store.save_engine_state(1.0, {PART: {**exercise, "as_of": 1.0}}, "drill")
            with sqlite3.connect(tmp_path / "hw.db") as conn:
                conn.execute("UPDATE engine_state SET state = '{\"logs\": [' "
                             "WHERE part = ?", (PART,))
            return why_new(await store.load_engine_state("drill"), exercise, 2.0)
        finally:
            await store.stop()

    assert asyncio.run(why()) == ("the drill saved in this database cannot be read (Expecting "
                                  "value: line 1 column 11 (char 10))")


def test_a_replay_cut_during_a_receiver_outage_resumes_with_its_alert_still_open(
        tmp_path: Path) -> None:
    """Cut while a receiver was silent, the resumed replay ended its ``source_silent``
    alert at ``--start`` and opened a second one 120 s later: the lines skipped before
    ``--start`` told the rules their receivers were heard at the restored clock (the
    drill of the README's scenario, cut at 07:51:08 in rx-pier's outage, did so)."""
    t0 = 1_782_196_980
    lines = []
    for s in range(0, 1200, 10):
        # rx-quiet is silent from t0+300 to t0+900; rx-busy hears on throughout.
        for rx, mmsi in (("rx-busy", 244000001), ("rx-quiet", 244000002)):
            if rx == "rx-quiet" and 300 <= s < 900:
                continue
            lines.append(tag_block(s=rx, c=t0 + s)
                         + single(position(mmsi=mmsi, lat=-23.83, lon=151.25, speed=0.0)))
    log = tmp_path / "outage.nmea"
    log.write_text("\n".join(lines) + "\n")
    cut = t0 + 600  # the outage began at t0+290 (last heard), alerted at t0+410
    first_part = tmp_path / "first-part.nmea"
    first_part.write_text("\n".join(line for line in lines
                                     if int(line.split("c:")[1].split("*")[0]) < cut) + "\n")

    def replay(path: Path, db: str, out: str, *more: str | int) -> list[dict[str, Any]]:
        done = cli("replay", path, "--zones", DEMO_ZONES, "--speed", "max", "--no-progress",
                   "--db", f"sqlite:///{tmp_path / db}", "--alerts-out", tmp_path / out,
                   *map(str, more))
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in (tmp_path / out).read_text().splitlines()
                if json.loads(line)["rule"] == "source_silent"]

    whole = replay(log, "whole.db", "whole.jsonl")
    assert [(a["transition"], a["started_at"], a["ended_at"]) for a in whole] == [
        ("new", iso_time(t0 + 410), None), ("end", iso_time(t0 + 410), iso_time(t0 + 900))]
    before = replay(first_part, "cut.db", "before.jsonl")
    after = replay(log, "cut.db", "after.jsonl", "--start", cut)
    assert before + after == whole
