"""The ``scenario`` and ``score`` commands as a security officer runs them: the README's
drill recipe on the demo port, and what the commands say about bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.paths import FIXTURES
from tests.test_service import cli

PORT = FIXTURES / "demo-port" / "port.yaml"


def test_the_readme_drill_on_the_demo_port_scores_every_anomaly(tmp_path: Path) -> None:
    """scenario --config, replay with the same config as a drill, score: 100 %. The truth
    once took the default rules and planted the collision pair outside the port limit,
    where the demo port's watch_area: port watches no vessel: missed on every seed."""
    log, truth, alerts = tmp_path / "drill.nmea", tmp_path / "drill-truth.json", \
        tmp_path / "drill.jsonl"
    made = cli("scenario", "--config", PORT, "--seed", "3", "--hours", "2", "--out", log,
               "--truth", truth)
    assert made.returncode == 0, made.stderr
    played = cli("replay", log, "--config", PORT, "--drill", "--serve", "off", "--mqtt", "off",
                 "--db", f"sqlite:///{tmp_path / 'drill.db'}", "--alerts-out", alerts)
    assert played.returncode == 0, played.stderr
    scored = cli("score", truth, alerts)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    planted = json.loads(truth.read_text())
    assert len(planted["anomalies"]) >= 12
    assert list(planted["skipped"]) == ["collision_risk"]
    assert "watch area" in planted["skipped"]["collision_risk"]


def _write_truth(path: Path) -> None:
    from replay.scenario import Expectation, Truth

    t0 = 1_767_225_600.0
    truth = Truth(seed=1, start=t0, end=t0 + 3600, zones="z", rules=["loitering"],
                  receivers=["rx-a"],
                  anomalies=[Expectation("loitering", 2, "near berth_1", window=(t0, t0 + 60))],
                  controls=[Expectation("loitering", 1, "moored for hours")])
    path.write_text(truth.dumps())


def _line(id_: str, mmsi: int, transition: str, *, drill: bool = True) -> str:
    return json.dumps({"id": id_, "rule": "loitering", "mmsi": mmsi, "other_mmsi": None,
                       "started_at": "2026-01-01T00:00:30Z", "drill": drill,
                       "transition": transition})


def test_score_reports_each_false_alarm_once_and_the_unexpected(tmp_path: Path) -> None:
    """A control's alert with a new and an end line was printed and counted twice; alerts on
    vessels neither planted nor controls were invisible; a live run's alerts went unnoticed."""
    truth, alerts = tmp_path / "t.json", tmp_path / "a.jsonl"
    _write_truth(truth)
    alerts.write_text("\n".join([_line("p", 2, "new"), _line("c", 1, "new"),
                                 _line("c", 1, "end"), _line("u", 3, "new", drill=False)])
                      + "\n")
    scored = cli("score", truth, alerts)
    assert scored.returncode == 1
    out = scored.stdout.splitlines()
    assert [line.split(":")[0] for line in out[:-1]] == ["false alarm", "unexpected"]
    assert out[1].startswith("unexpected: loitering 3: alert u started 2026-01-01T00:00:30Z")
    assert out[-1] == ("1 of 1 anomalies detected in their windows; 1 false alarms on 1 "
                       "controls; 1 unexpected alerts (listed, not failing)")
    assert "1 of 4 alert lines are not marked drill: true" in scored.stderr
    # Unexpected alone: listed, exit 0.
    alerts.write_text(_line("p", 2, "new") + "\n" + _line("u", 3, "new") + "\n")
    scored = cli("score", truth, alerts)
    assert (scored.returncode, scored.stderr) == (0, "")


def _score(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    from harbourwatch.cli import main

    code = main(["score", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("alerts", "message"), [
    ('[1,2]', "a.jsonl:2: not an alert (a JSON object), got [1, 2]"),
    ('{"id":"x"}', "a.jsonl:2: rule: missing or not text\nharbourwatch: {dir}/a.jsonl:2: "
                   "started_at: missing"),
    ('{"id":"x","rule":"loitering"}', "a.jsonl:2: started_at: missing"),
    ('{"id":"x","rule":"loitering","started_at":"garbage"}',
     "a.jsonl:2: started_at: not an ISO 8601 time: 'garbage'"),
    ('{"id":"x","rule":"loitering","started_at":"2026-01-01T00:00:00Z","mmsi":"abc"}',
     "a.jsonl:2: mmsi: expected a number or null, got \"abc\""),
    ('{"id": "x", bad}', "a.jsonl:2: not JSON: Expecting property name enclosed in double "
                         "quotes (column 13)"),
])
def test_score_names_the_file_and_line_of_a_bad_alert(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], alerts: str, message: str) -> None:
    """These gave tracebacks, or a JSON error naming neither file nor line, with exit 1."""
    truth = tmp_path / "t.json"
    _write_truth(truth)
    path = tmp_path / "a.jsonl"
    path.write_text(_line("p", 2, "new") + "\n" + alerts + "\n")
    expected = f"harbourwatch: {path.parent}/{message}\n".replace("{dir}", str(path.parent))
    assert _score(capsys, truth, path) == (2, "", expected)


def test_score_says_what_is_wrong_with_the_truth_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The zones file given as truth said 'seed'; an empty one, a JSON error."""
    alerts = tmp_path / "a.jsonl"
    alerts.write_text(_line("p", 2, "new") + "\n")
    zones = FIXTURES / "demo-port" / "zones.geojson"
    code, _, err = _score(capsys, zones, alerts)
    assert (code, err) == (2, f"harbourwatch: {zones}: not a scenario truth file (a zones "
                              "file?): no seed, start, end, zones, rules, receivers, anomalies, "
                              "controls\n")
    empty = tmp_path / "empty.json"
    empty.write_text("\n")
    assert _score(capsys, empty, alerts)[::2] == (
        2, f"harbourwatch: {empty}: empty file (expected the truth file `scenario` wrote)\n")
    broken = tmp_path / "broken.json"
    _write_truth(broken)
    broken.write_text(broken.read_text().replace('"window": [', '"window": ["x", '))
    code, _, err = _score(capsys, broken, alerts)
    assert code == 2 and f"{broken}: anomalies[0].window: expected [start, end]" in err


def test_score_of_an_empty_alerts_file_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth, alerts = tmp_path / "t.json", tmp_path / "a.jsonl"
    _write_truth(truth)
    alerts.write_text("")
    code, out, err = _score(capsys, truth, alerts)
    assert code == 1 and out.startswith("missed: loitering 2 ")
    assert err == (f"harbourwatch: warning: {alerts}: no alerts at all (the --alerts-out file "
                   "of the replay of this scenario's log?)\n")


def _scenario(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    from harbourwatch.cli import main

    code = main(["scenario", *map(str, args)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("hours", ["49", "inf", "nan", "0", "-1"])
def test_scenario_hours_out_of_range_is_a_message_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], hours: str) -> None:
    """--hours 49 and inf gave tracebacks (the 48 h limit was checked only inside)."""
    code, err = _scenario(capsys, "--zones", FIXTURES / "demo-port" / "zones.geojson",
                          f"--hours={hours}", "--out", tmp_path / "s.nmea", "--truth",
                          tmp_path / "t.json")
    assert (code, err) == (2, f"harbourwatch: --hours {float(hours):g}: must be more than 0 "
                              "and at most 48\n")
    assert list(tmp_path.iterdir()) == []


def test_scenario_refuses_one_file_for_log_and_truth(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--out x --truth x wrote the log, then the truth over it."""
    log = tmp_path / "x"
    code, err = _scenario(capsys, "--zones", FIXTURES / "demo-port" / "zones.geojson",
                          "--out", log, "--truth", tmp_path / "." / "x")
    assert (code, err) == (2, f"harbourwatch: --out and --truth name the same file ({log}): "
                              "the truth would overwrite the log\n")
    assert not log.exists()


def test_scenario_needs_a_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_zones = tmp_path / "port.yaml"
    no_zones.write_text("version: 1\nport: {name: p}\n")
    for args, message in (
            ((), "give --config PORT.yaml, --zones ZONES.geojson, or both"),
            (("--config", no_zones), f"{no_zones}: port.zones: no zones file; give --zones"),
            (("--config", tmp_path / "none.yaml"),
             f"{tmp_path / 'none.yaml'}: cannot read: No such file or directory")):
        code, err = _scenario(capsys, *args, "--out", tmp_path / "s", "--truth", tmp_path / "t")
        assert (code, err) == (2, f"harbourwatch: {message}\n")
