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
