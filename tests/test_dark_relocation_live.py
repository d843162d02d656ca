"""A vessel that relocates itself out of coverage before switching off, over a real UDP
socket into ``harbourwatch run``: dark_vessel still calls it dark."""

from __future__ import annotations

import time
from pathlib import Path

from tests.ingest_helpers import position
from tests.test_sar_report_live import OTHER, VESSEL, _stamped, alerts_of_live_run


def test_three_reports_50_km_out_before_switching_off_do_not_escape_dark_vessel(
        tmp_path: Path) -> None:
    """Three agreeing fixes far from the last are accepted as a relocation (the old fix
    was the bad one); sent by the vessel itself in three seconds before it switched off,
    they put its last fix outside coverage and dark_vessel never called it dark."""
    t0 = int(time.time()) - 2000
    lines = [_stamped(t0 + 10 * k, position(mmsi=VESSEL, lat=-23.85, lon=151.35 + 0.0003 * k,
                                             speed=6.0, course=90.0, heading=90))
             for k in range(10)]
    lines += [_stamped(t0 + 91 + k, position(mmsi=VESSEL, lat=-23.4, lon=151.8 + 0.0001 * k,
                                              speed=6.0, course=90.0, heading=90))
              for k in range(3)]  # 50 km out: outside coverage and the port limit
    lines += [_stamped(t0 + 5 + 10 * k, position(mmsi=OTHER, lat=-23.80, lon=151.40, speed=0.0))
              for k in range(90)]
    lines.sort(key=lambda line: int(line.split("c:")[1].split("*")[0]))
    alerts = alerts_of_live_run(tmp_path, lines, t0)
    mine = [(a["rule"], a["transition"]) for a in alerts
            if a["mmsi"] == VESSEL and a["rule"] in ("position_jump", "dark_vessel")]
    assert mine == [("position_jump", "new"), ("position_jump", "end"), ("dark_vessel", "new")]
    dark = next(a for a in alerts if a["rule"] == "dark_vessel")
    before = dark["details"]["before_jump"]  # judged on the fix before the relocation
    assert (before["lat"], before["lon"], before["jumped_at"]) == (
        -23.85, 151.3527, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 93)))
