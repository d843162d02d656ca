"""The ``scenario`` and ``score`` commands as a security officer runs them: the README's
drill recipe on the demo port, and what the commands say about bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

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
