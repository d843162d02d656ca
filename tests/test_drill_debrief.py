"""A drill's debrief: the trainees' acts dated on the drill's message clock, in the store's
audit trail (SQLite and PostgreSQL), on ``GET /alerts/{id}`` and in the ``--alerts-out``
file, and ``harbourwatch debrief`` reading each alert's time to acknowledge from it.

A real replay paced at ``--speed 4`` serves the real HTTP API: the trainee acknowledges
while the rules' clock stands at a known report's time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harbourwatch.timeutil import iso_time
from store import AlertQuery, open_store
from tests.api_helpers import stored_audit
from tests.ingest_helpers import position, single, tag_block
from tests.paths import FIXTURES
from tests.services.mosquitto import free_port
from tests.test_service_power_cut import wait_for

DEMO_ZONES = FIXTURES / "demo-port" / "zones.geojson"
T0 = 1_782_200_000  # 2026-06-23T07:33:20Z
SART, SHIP = 970012345, 244123456
TOKEN = "op-debrief-test"
SPEED = 4.0


def _line(t: int, mmsi: int) -> str:
    return tag_block(s="rx1", c=t) + single(position(mmsi=mmsi, lat=-23.83, lon=151.25,
                                                     speed=0.0))


def _log(path: Path) -> Path:
    """The SART raises ``emergency_device`` at T0; a ship is heard at T0+40 and T0+80 (the
    last line): at --speed 4 the rules' clock stands at T0+40 for ten seconds of wall time."""
    path.write_text("".join(_line(t, m) + "\r\n"
                            for t, m in ((T0, SART), (T0 + 40, SHIP), (T0 + 80, SHIP))))
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'drill.db'}"
    return str(request.getfixturevalue("pg_dsn"))


def _drill(tmp_path: Path, db_url: str, out: Path | None,
           acts: Callable[[httpx.Client, subprocess.Popen[str]], None],
           log: Path | None = None) -> str:
    """A paced drill replay of ``log`` (the scenario's, by default) serving its API to a
    trainee, ``acts`` done on it while it runs; it must stop cleanly. Returns its log."""
    api = free_port()
    played = log if log is not None else _log(tmp_path / "drill.nmea")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "replay", str(played),
         "--zones", str(DEMO_ZONES), "--drill", "--speed", str(SPEED), "--no-progress",
         "--serve", f"127.0.0.1:{api}", "--mqtt", "off", "--db", db_url,
         *(["--alerts-out", str(out)] if out is not None else [])],
        env={**os.environ, "HARBOURWATCH_API_TOKENS": f"trainee:operator:{TOKEN}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api}", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            acts(http, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr
    return stderr


def _heard_at(http: httpx.Client, mmsi: int, t: int) -> bool:
    return any(v["mmsi"] == mmsi and v["time"] == iso_time(t)
               for v in http.get("/vessels").json()["vessels"])


def _sart_alert(http: httpx.Client) -> dict[str, Any] | None:
    found = http.get("/alerts", params={"rule": "emergency_device"}).json()["alerts"]
    return found[0] if found else None


def test_a_trainees_acts_are_dated_on_the_drills_message_clock_end_to_end(
        tmp_path: Path, db_url: str) -> None:
    out = tmp_path / "drill.jsonl"
    seen: dict[str, Any] = {}

    def acts(http: httpx.Client, proc: subprocess.Popen[str]) -> None:
        alert = wait_for(proc, lambda: _sart_alert(http), "the SART's alert on the API")
        # The rules' clock at T0+40: the ship's first report played, its second not yet.
        wait_for(proc, lambda: _heard_at(http, SHIP, T0 + 40), "the ship heard at T0+40")
        acked = http.post(f"/alerts/{alert['id']}/ack", json={"note": "lifeboat called"})
        assert acked.status_code == 200, acked.text
        assert not _heard_at(http, SHIP, T0 + 80), "the ack came too late to be at T0+40"
        snoozed = http.post("/snoozes", json={"rule": "emergency_device", "mmsi": SART,
                                              "duration_s": 600})
        assert snoozed.status_code == 201, snoozed.text
        # The log played out: the clock stands at its last report.
        wait_for(proc, lambda: _heard_at(http, SHIP, T0 + 80), "the ship heard at T0+80")
        resolved = http.post(f"/alerts/{alert['id']}/resolve", json={"note": "found"})
        assert resolved.status_code == 200, resolved.text
        seen["id"] = alert["id"]
        seen["detail"] = http.get(f"/alerts/{alert['id']}").json()

    _drill(tmp_path, db_url, out, acts)
    alert_id = seen["detail"]["id"]
    trail = [(a["actor"], a["action"], a["message_time"]) for a in seen["detail"]["audit"]]
    assert trail == [("rules", "new", iso_time(T0)),
                     ("trainee", "ack", iso_time(T0 + 40)),
                     ("trainee", "resolve", iso_time(T0 + 80))]
    # The act's own time is still the wall clock's, this year, not the log's.
    assert abs(time.time() - _seconds(seen["detail"]["audit"][1]["time"])) < 300

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    acts_out = [line for line in lines if "act" in line]
    assert [(a["act"], a.get("alert_id"), a["actor"], a["message_time"], a.get("raised_at"))
            for a in acts_out] == [
        ("ack", alert_id, "trainee", iso_time(T0 + 40), iso_time(T0)),
        ("snooze", None, "trainee", iso_time(T0 + 40), None),
        ("resolve", alert_id, "trainee", iso_time(T0 + 80), iso_time(T0)),
    ]
    assert all("transition" not in a for a in acts_out)
    assert (acts_out[0]["note"], acts_out[0]["rule"], acts_out[0]["severity"],
            acts_out[0]["drill"], acts_out[0]["state"]) == (
        "lifeboat called", "emergency_device", "critical", True, "acknowledged")
    assert (acts_out[1]["rule"], acts_out[1]["mmsi"], acts_out[1]["until"]) == (
        "emergency_device", SART, iso_time(T0 + 40 + 600))

    debrief = subprocess.run(
        [sys.executable, "-m", "harbourwatch.cli", "debrief", str(out),
         "--severity", "critical"], capture_output=True, text=True, timeout=60)
    assert debrief.returncode == 0, debrief.stderr
    assert debrief.stdout.splitlines() == [
        f"{iso_time(T0)} emergency_device {SART} critical {alert_id}: acknowledged by "
        f"trainee at {iso_time(T0 + 40)} after 40 s; resolved by trainee at "
        f"{iso_time(T0 + 80)} after 80 s",
        "1 alert; 1 acknowledged (time to acknowledge: median 40 s, longest 40 s); "
        "1 resolved; 0 neither acknowledged nor resolved",
    ]

    # The store keeps both clocks after the run (read directly, not through the API).
    assert _stored_message_times(db_url, tmp_path, alert_id) == [
        ("new", iso_time(T0)), ("ack", iso_time(T0 + 40)), ("resolve", iso_time(T0 + 80))]


def _seconds(text: str) -> float:
    from harbourwatch.timeutil import parse_iso

    return parse_iso(text)


def _stored_message_times(db_url: str, folder: Path, alert_id: str) -> list[tuple[str, str]]:
    return [(a["action"], a["message_time"])
            for a in asyncio.run(stored_audit(db_url, folder, alert_id))]


# --- the store: both clocks kept, also for an act queued while the database was away ---------

async def test_an_act_keeps_the_rules_clock_in_its_audit_row_and_a_queued_one_too(
        db_url: str, tmp_path: Path) -> None:
    from geofence.alert import Alert, AlertEvent, RiskArea, Severity, Transition
    from store import QueuedAct

    def sart(mmsi: int) -> Alert:
        return Alert(rule="emergency_device", risk_area=RiskArea.PORT_OPERATIONS,
                     severity=Severity.CRITICAL, mmsi=mmsi, started_at=T0, drill=True)

    first, second = sart(SART), sart(SART + 1)
    wall = time.time()
    store = open_store(db_url, tmp_path, max_age=0.05, drill=True)
    await store.start()
    try:
        for alert in (first, second):
            store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0 + 5))
        await store.flush()
        await store.ack(first.id, "trainee", at=wall, message_at=T0 + 40)
        await store.resolve(first.id, "trainee", at=wall + 1)  # no rules' clock given
        store.queue_act(QueuedAct("ack", "trainee", wall + 2, alert_id=second.id,
                                  message_at=T0 + 65))
        await store.flush()
        trails = [await store.audit(a.id) for a in (first, second)]
    finally:
        await store.stop()
    assert [[(a["action"], a["time"], a["message_time"]) for a in trail] for trail in trails] == [
        [("new", iso_time(T0 + 5), iso_time(T0 + 5)),
         ("ack", iso_time(wall), iso_time(T0 + 40)),
         ("resolve", iso_time(wall + 1), None)],
        [("new", iso_time(T0 + 5), iso_time(T0 + 5)),
         ("ack", iso_time(wall + 2), iso_time(T0 + 65))],
    ]


async def test_schema_6_dates_the_rules_earlier_rows_on_message_time_and_leaves_acts_null(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version 5 database's audit rows: a rule transition's time is message time already,
    an act's is wall time and its rules' clock was never kept (null, not made up)."""
    from geofence.alert import Alert, RiskArea, Severity
    from store import migrations

    alert = Alert(rule="emergency_device", risk_area=RiskArea.PORT_OPERATIONS,
                  severity=Severity.CRITICAL, mmsi=SART, started_at=T0, drill=True)
    key = "SQLITE" if db_url.startswith("sqlite") else "POSTGRES"
    monkeypatch.setattr(migrations, key, getattr(migrations, key)[:5])
    wall = time.time()
    old = open_store(db_url, tmp_path, max_age=0.05)
    await old.start()
    try:
        assert await old.schema_version() == 5  # type: ignore[attr-defined]
        await _old_rows(old, db_url, alert.id, [("rules", "new", T0), ("trainee", "ack", wall)])
    finally:
        await old.stop()
    monkeypatch.undo()
    store = open_store(db_url, tmp_path)
    await store.start()
    try:
        assert await store.schema_version() == 7  # type: ignore[attr-defined]
        trail = await store.audit(alert.id)
    finally:
        await store.stop()
    assert [(a["action"], a["time"], a["message_time"]) for a in trail] == [
        ("new", iso_time(T0), iso_time(T0)), ("ack", iso_time(wall), None)]


async def _old_rows(store: Any, db_url: str, alert_id: str,
                   rows: list[tuple[str, str, float]]) -> None:
    """Audit rows as a version 5 release stored them: no message_time column to write."""
    if db_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(store.path) as conn:
            conn.executemany("INSERT INTO alert_audit (alert_id, time, actor, action) "
                             "VALUES (?, ?, ?, ?)", [(alert_id, t, who, what)
                                                     for who, what, t in rows])
        return
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        for who, what, t in rows:
            await conn.execute("INSERT INTO alert_audit (alert_id, time, actor, action) "
                               "VALUES ($1, to_timestamp($2), $3, $4)", alert_id, t, who, what)
    finally:
        await conn.close()


# --- harbourwatch debrief and score on a drill's file --------------------------------------

def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harbourwatch.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def _transition(alert_id: str, rule: str, severity: str, transition: str = "new",
                ) -> dict[str, Any]:
    return {"id": alert_id, "rule": rule, "severity": severity, "mmsi": SHIP,
            "started_at": iso_time(T0), "drill": True, "details": {}, "other_mmsi": None,
            "transition": transition}


def _act(act: str, alert_id: str, at: int, raised: int | None, actor: str = "trainee"
         ) -> dict[str, Any]:
    return {"act": act, "alert_id": alert_id, "actor": actor, "rule": "speeding",
            "severity": "warning", "mmsi": SHIP, "started_at": iso_time(T0),
            "message_time": iso_time(at), "raised_at": None if raised is None else iso_time(raised),
            "time": "2026-11-27T07:00:00Z", "note": None}


def test_the_debrief_lists_each_alerts_answers_and_the_median_time_to_acknowledge(
        tmp_path: Path) -> None:
    out = tmp_path / "drill.jsonl"
    lines = [_transition("a1", "speeding", "warning"),
             _act("ack", "a1", T0 + 150, T0 + 60),
             _transition("a2", "loitering", "warning"),
             _transition("z1", "zone_entry", "info"),
             _act("ack", "a1", T0 + 200, T0 + 60, actor="second"),  # only the first counts
             _transition("a1", "speeding", "warning", "end"),
             _act("resolve", "a0", T0 + 300, None),  # raised before the file (resumed drill)
             _act("ack", "a2", T0 + 400, T0 + 100),
             {"act": "snooze", "actor": "trainee", "rule": "loitering", "mmsi": SHIP,
              "message_time": iso_time(T0 + 10), "time": "2026-11-27T07:00:00Z"}]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = _cli("debrief", out, "--severity", "warning,critical")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{iso_time(T0)} speeding {SHIP} warning a1: acknowledged by trainee at "
        f"{iso_time(T0 + 150)} after 90 s; not resolved",
        f"{iso_time(T0)} loitering {SHIP} warning a2: acknowledged by trainee at "
        f"{iso_time(T0 + 400)} after 300 s (5.0 min); not resolved",
        f"{iso_time(T0)} speeding {SHIP} warning a0: not acknowledged; resolved by trainee at "
        f"{iso_time(T0 + 300)} (raised before this file)",
        "3 alerts; 2 acknowledged (time to acknowledge: median 195 s (3.2 min), longest "
        "300 s (5.0 min)); 1 resolved; 0 neither acknowledged nor resolved",
    ]
    every = _cli("debrief", out)
    assert every.stdout.splitlines()[2] == (
        f"{iso_time(T0)} zone_entry {SHIP} info z1: not acknowledged; not resolved")
    # The score of a drill reads past the acts (they are no alerts).
    from replay.scenario.scorefiles import load_alerts

    assert [a["id"] for a in load_alerts(out)] == ["a1", "a2", "z1", "a1"]


def test_an_act_dated_before_its_alert_was_raised_is_listed_but_not_timed(
        tmp_path: Path) -> None:
    """A file joined from two runs, or edited: an ack dated before its ``raised_at`` was
    timed at -30 s, and the median with it."""
    out = tmp_path / "drill.jsonl"
    lines = [_transition("a1", "speeding", "warning"), _act("ack", "a1", T0 + 30, T0 + 60),
             _transition("a2", "loitering", "warning"), _act("ack", "a2", T0 + 140, T0 + 100)]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = _cli("debrief", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{iso_time(T0)} speeding {SHIP} warning a1: acknowledged by trainee at "
        f"{iso_time(T0 + 30)} (dated before it was raised at {iso_time(T0 + 60)}: not timed); "
        "not resolved",
        f"{iso_time(T0)} loitering {SHIP} warning a2: acknowledged by trainee at "
        f"{iso_time(T0 + 140)} after 40 s; not resolved",
        "2 alerts; 2 acknowledged (time to acknowledge: median 40 s, longest 40 s); "
        "0 resolved; 0 neither acknowledged nor resolved",
    ]


def test_a_debrief_of_a_line_it_cannot_read_names_the_file_and_line(tmp_path: Path) -> None:
    out = tmp_path / "drill.jsonl"
    out.write_text(json.dumps(_transition("a1", "speeding", "warning")) + "\n"
                   + json.dumps({**_act("ack", "a1", T0, T0), "message_time": "soon"}) + "\n"
                   + "{\n" + json.dumps({"what": 1}) + "\n")
    done = _cli("debrief", out)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"harbourwatch: {out}:2: message_time: not an ISO 8601 time",
        f"harbourwatch: {out}:3: not JSON (Expecting property name enclosed in double quotes)",
        f"harbourwatch: {out}:4: neither an alert transition (id, rule) nor an operator act "
        "(act)",
    ]
    assert _cli("debrief", out, "--severity", "urgent").stderr == (
        "harbourwatch: --severity: unknown severity urgent; give info, warning or critical, "
        "comma-separated\n")
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps(_transition("a1", "speeding", "warning")) + "\n")
    done = _cli("debrief", plain)
    assert done.returncode == 0
    assert "no operator acts (only a --drill run writes them" in done.stderr


# --- a new exercise: the last one's alerts are its history ---------------------------------

def _first_exercise_acked(tmp_path: Path, db_url: str) -> tuple[Path, str]:
    """A first exercise of a drill whose SART alert comes 40 s in, acknowledged by a
    trainee: the log (the ship at T0, the SART at T0+40, the ship at T0+80) and the
    alert's id."""
    log = tmp_path / "late.nmea"
    log.write_text("".join(_line(t, m) + "\r\n"
                           for t, m in ((T0, SHIP), (T0 + 40, SART), (T0 + 80, SHIP))))
    first = subprocess.run(
        [sys.executable, "-m", "harbourwatch.cli", "replay", str(log), "--zones",
         str(DEMO_ZONES), "--drill", "--speed", "max", "--no-progress", "--serve", "off",
         "--mqtt", "off", "--db", db_url], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    return log, asyncio.run(_ack_sart(db_url, tmp_path))


def test_a_new_exercise_lists_the_last_ones_alerts_no_more_until_it_raises_them(
        tmp_path: Path, db_url: str) -> None:
    """The store keeps one row per drill alert id, the last run's: run again, the drill
    listed under drill=true the SART alert it had not raised yet, in the last exercise's
    state (acknowledged), as if the trainees had it before them."""
    log, earlier = _first_exercise_acked(tmp_path, db_url)
    seen: dict[str, Any] = {}

    def during(http: httpx.Client, proc: subprocess.Popen[str]) -> None:
        wait_for(proc, lambda: _heard_at(http, SHIP, T0), "the ship heard at T0")
        seen["current"] = http.get("/alerts", params={"rule": "emergency_device"}).json()
        seen["any"] = http.get("/alerts", params={"rule": "emergency_device",
                                                  "drill": "any"}).json()
        assert not _heard_at(http, SART, T0 + 40), "the SART came before the list was read"
        seen["raised"] = wait_for(proc, lambda: _sart_alert(http),
                                  "the SART's alert raised again")

    stderr = _drill(tmp_path, db_url, None, during, log=log)
    assert (seen["current"]["total"], seen["current"]["alerts"]) == (0, [])
    assert [(a["id"], a["state"], a["acknowledged_by"]) for a in seen["any"]["alerts"]] == [
        (earlier, "acknowledged", "earlier-trainee")]
    assert (seen["raised"]["id"], seen["raised"]["state"], seen["raised"]["acknowledged_by"]) \
        == (earlier, "open", None)
    # The SART's and the ship's zone entry at T0+80.
    assert ("drill: a new exercise: 2 alerts of an earlier exercise listed under drill=true "
            "no more until raised again") in stderr


def test_a_new_exercise_refuses_acts_on_an_alert_it_has_not_raised_yet_end_to_end(
        tmp_path: Path, db_url: str) -> None:
    """A trainee with an alert's id from the last exercise acked it before this one raised
    it: 200, and the ack's message time (T0) came before the alert's ``new`` (T0+40), so
    the summary's time to acknowledge was -40 s."""
    log, earlier = _first_exercise_acked(tmp_path, db_url)
    seen: dict[str, Any] = {}

    def during(http: httpx.Client, proc: subprocess.Popen[str]) -> None:
        wait_for(proc, lambda: _heard_at(http, SHIP, T0), "the ship heard at T0")
        seen["ack"] = http.post(f"/alerts/{earlier}/ack", json={"note": "seen last time"})
        seen["resolve"] = http.post(f"/alerts/{earlier}/resolve")
        seen["left"] = http.get(f"/alerts/{earlier}").json()
        assert not _heard_at(http, SART, T0 + 40), "the SART came before the acts"
        wait_for(proc, lambda: _sart_alert(http), "the SART's alert raised again")
        seen["own"] = http.post(f"/alerts/{earlier}/ack")
        seen["summary"] = http.get("/alerts/summary").json()

    out = tmp_path / "drill.jsonl"
    _drill(tmp_path, db_url, out, during, log=log)
    why = (f"alert {earlier} was raised by an earlier exercise; this exercise has not "
           "raised it yet")
    for refused in (seen["ack"], seen["resolve"]):
        assert (refused.status_code, refused.json().get("error")) == (409, why)
    left = seen["left"]  # as the last exercise left it, its trail untouched
    assert (left["state"], left["acknowledged_by"], left["resolved_by"]) == (
        "acknowledged", "earlier-trainee", None)
    assert [(a["actor"], a["action"]) for a in left["audit"]] == [
        ("rules", "new"), ("earlier-trainee", "ack")]
    own = seen["own"]
    assert own.status_code == 200, own.text
    trail = own.json()["audit"]
    assert [(a["actor"], a["action"], a["note"]) for a in trail] == [
        ("rules", "new", None), ("earlier-trainee", "ack", None),
        ("rules", "new", "a new drill run"), ("trainee", "ack", None)]
    raised, acked = (_seconds(trail[i]["message_time"]) for i in (2, 3))
    assert raised == T0 + 40 and acked in (T0 + 40, T0 + 80)
    assert seen["summary"]["time_to_acknowledge"]["all"] == {
        "count": 1, "median_s": acked - raised, "p90_s": acked - raised,
        "longest_s": acked - raised}
    acts = [line for line in out.read_text().splitlines() if '"act"' in line]
    assert [(a["act"], a["raised_at"]) for a in map(json.loads, acts)] == [
        ("ack", iso_time(T0 + 40))]
    debrief = _cli("debrief", out)
    assert f"acknowledged by trainee at {iso_time(int(acked))} after {acked - raised:.0f} s" \
        in debrief.stdout


def test_a_drill_in_the_live_database_cannot_act_on_a_real_alert_end_to_end(
        tmp_path: Path, db_url: str) -> None:
    """A drill replayed into the live database served its trainees an API on it: an ack
    or resolve of a real alert by its id closed it for the watch."""
    live = subprocess.run(  # the watch's run: the SART's real alert, left open
        [sys.executable, "-m", "harbourwatch.cli", "replay", str(_log(tmp_path / "live.nmea")),
         "--zones", str(DEMO_ZONES), "--speed", "max", "--no-progress", "--serve", "off",
         "--mqtt", "off", "--db", db_url], capture_output=True, text=True, timeout=120)
    assert live.returncode == 0, live.stderr
    real = asyncio.run(_stored_sart(db_url, tmp_path, drill=False))
    assert (real["state"], real["drill"]) == ("open", False)
    seen: dict[str, Any] = {}

    def acts(http: httpx.Client, proc: subprocess.Popen[str]) -> None:
        drill_alert = wait_for(proc, lambda: _sart_alert(http), "the SART's drill alert")
        assert drill_alert["id"] != real["id"]
        seen["ack"] = http.post(f"/alerts/{real['id']}/ack", json={"note": "trainee"})
        seen["resolve"] = http.post(f"/alerts/{real['id']}/resolve", json={"note": "x"})
        seen["own"] = http.post(f"/alerts/{drill_alert['id']}/ack")

    _drill(tmp_path, db_url, tmp_path / "drill.jsonl", acts)
    why = f"alert {real['id']} is not a drill's: a drill run acts only on drill alerts"
    for refused in (seen["ack"], seen["resolve"]):
        assert (refused.status_code, refused.json().get("error")) == (409, why)
    assert seen["own"].status_code == 200, seen["own"].text
    after = asyncio.run(_stored_sart(db_url, tmp_path, drill=False))
    assert (after["id"], after["state"], after["acknowledged_by"], after["resolved_by"]) == (
        real["id"], "open", None, None)
    acted = [json.loads(line) for line in (tmp_path / "drill.jsonl").read_text().splitlines()
             if '"act"' in line]
    assert [(a["act"], a["alert_id"]) for a in acted] == [("ack", seen["own"].json()["id"])]


async def test_a_run_acts_only_on_alerts_of_its_own_kind_also_when_queued(
        db_url: str, tmp_path: Path) -> None:
    """The live service acting on a drill alert (by its id: the live lists leave them out)
    closed it under the trainees, and its update reached the watch's stream."""
    from geofence.alert import Alert, AlertEvent, RiskArea, Severity, Transition
    from store import Conflict, QueuedAct

    def sart(drill: bool) -> Alert:
        return Alert(rule="emergency_device", risk_area=RiskArea.PORT_OPERATIONS,
                     severity=Severity.CRITICAL, mmsi=SART, started_at=T0, drill=drill)

    drill_alert = sart(True)
    trainees = open_store(db_url, tmp_path, max_age=0.05, drill=True)
    await trainees.start()
    try:
        trainees.on_alert(AlertEvent(Transition.NEW, drill_alert.to_dict(), T0))
        await trainees.flush()
    finally:
        await trainees.stop()
    live = open_store(db_url, tmp_path, max_age=0.05)
    await live.start()
    try:
        with pytest.raises(Conflict) as refused:
            await live.ack(drill_alert.id, "duty")
        assert str(refused.value) == (
            f"alert {drill_alert.id} is a drill's: only a drill run acts on drill alerts")
        with pytest.raises(Conflict):
            await live.resolve(drill_alert.id, "duty")
        # Queued while the database was away: set aside, not stored.
        live.queue_act(QueuedAct("resolve", "duty", time.time(), alert_id=drill_alert.id))
        await live.flush()
        stored = await live.alert(drill_alert.id)
        trail = await live.audit(drill_alert.id)
    finally:
        await live.stop()
    assert (stored["state"], stored["acknowledged_by"], stored["resolved_by"]) == (
        "open", None, None)
    assert [a["action"] for a in trail] == ["new"]


async def _stored_sart(db_url: str, folder: Path, *, drill: bool) -> dict[str, Any]:
    """The SART's alert of the kind ``drill`` as the store holds it."""
    store = open_store(db_url, folder)
    await store.start()
    try:
        (alert,) = await store.alerts(AlertQuery(rule="emergency_device", drill=drill))
        return alert
    finally:
        await store.stop()


async def _ack_sart(db_url: str, folder: Path) -> str:
    """The first exercise's trainee acknowledged the SART alert (a drill run's act)."""
    store = open_store(db_url, folder, drill=True)
    await store.start()
    try:
        (alert,) = await store.alerts(AlertQuery(rule="emergency_device", drill=True))
        await store.ack(alert["id"], "earlier-trainee")
        return str(alert["id"])
    finally:
        await store.stop()


async def test_an_act_whose_line_cannot_be_written_is_logged_and_still_answered(
        caplog: pytest.LogCaptureFixture) -> None:
    """The act is made and stored when its line is written: a full disk must not turn the
    trainee's answer into a 500."""
    import logging

    from harbourwatch.alerts_file import AlertsFileSink

    sink = AlertsFileSink(Path("/dev/full"), acts=True)
    await sink.start()
    try:
        with caplog.at_level(logging.ERROR):
            sink.on_act({"act": "snooze", "actor": "trainee", "rule": "speeding",
                         "mmsi": SHIP, "message_time": iso_time(T0)})
    finally:
        with contextlib.suppress(OSError):
            await sink.stop()
    assert any("/dev/full: the snooze by trainee could not be written" in m
               for m in caplog.messages), caplog.messages
