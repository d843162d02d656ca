"""A vessel that relocates itself out of coverage before switching off, over a real UDP
socket into ``harbourwatch run``: dark_vessel still calls it dark."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.ingest_helpers import position
from tests.test_sar_report_live import OTHER, SART, VESSEL, _stamped
from tests.test_service import DEMO_ZONES, free_udp_port, wait_said


def test_three_reports_50_km_out_before_switching_off_do_not_escape_dark_vessel(
        tmp_path: Path) -> None:
    """Three agreeing fixes far from the last are accepted as a relocation (the old fix
    was the bad one); sent by the vessel itself in three seconds before it switched off,
    they put its last fix outside coverage and dark_vessel never called it dark."""
    port = free_udp_port()
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "-v", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp_path / 'live.db'}",
         "--alerts-out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    lines.append(_stamped(t0 + 900, position(mmsi=SART, lat=-23.80, lon=151.40)))
    try:
        wait_said(proc, "listening on UDP")  # -v says it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for start in range(0, len(lines), 20):
                sock.sendto("".join(line + "\r\n" for line in lines[start:start + 20])
                            .encode(), ("127.0.0.1", port))
        deadline = time.monotonic() + 30
        while not (out.exists() and "emergency_device" in out.read_text()):
            assert proc.poll() is None
            assert time.monotonic() < deadline, "the lines were not all processed"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [(a["rule"], a["transition"]) for a in alerts
            if a["mmsi"] == VESSEL and a["rule"] in ("position_jump", "dark_vessel")]
    assert mine == [("position_jump", "new"), ("position_jump", "end"), ("dark_vessel", "new")]
    dark = next(a for a in alerts if a["rule"] == "dark_vessel")
    before = dark["details"]["before_jump"]  # judged on the fix before the relocation
    assert (before["lat"], before["lon"], before["jumped_at"]) == (
        -23.85, 151.3527, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 93)))
