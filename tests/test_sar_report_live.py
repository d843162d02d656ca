"""Message 9 (a SAR aircraft's position) with a vessel's MMSI, over a real UDP socket into
``harbourwatch run``: anyone can transmit it, and its position was never judged."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.ingest_helpers import position, single, tag_block
from tests.test_service import DEMO_ZONES, free_udp_port, wait_said

VESSEL, OTHER, SART = 503338001, 503338002, 970012345


def _stamped(t: int, data: dict[str, object]) -> str:
    """Stamped ``t`` (behind its arrival: kept as stamped)."""
    return tag_block(c=t) + single(data)


def alerts_of_live_run(tmp_path: Path, lines: list[str], t0: int) -> list[dict[str, Any]]:
    """The alert transitions of ``harbourwatch run`` (demo zones, SQLite, UDP on 127.0.0.1)
    fed ``lines`` in datagrams of 20, then an AIS-SART at ``t0 + 900``: its alert, the last,
    says every line before it was judged."""
    port = free_udp_port()
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "-v", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp_path / 'live.db'}",
         "--alerts-out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_one_sar_report_outside_coverage_does_not_keep_a_vessel_from_going_dark(
        tmp_path: Path) -> None:
    """A vessel under way deep inside coverage sends one message 9 with its own MMSI,
    placed 50 km out, then switches off. The report went into the picture unjudged, so the
    vessel's last fix was outside coverage and dark_vessel never called it dark; judged,
    it is a jump (rejected) and the vessel is dark 600 s after its last real report."""
    t0 = int(time.time()) - 2000
    lines = [_stamped(t0 + 10 * k, position(mmsi=VESSEL, lat=-23.85, lon=151.35 + 0.0003 * k,
                                             speed=6.0, course=90.0, heading=90))
             for k in range(10)]
    lines.append(_stamped(t0 + 95, {"type": 9, "mmsi": VESSEL, "lat": -23.4, "lon": 151.8,
                                    "speed": 6, "course": 90.0, "alt": 0}))
    # Another vessel keeps the receiver heard (a silent receiver makes no one dark).
    lines += [_stamped(t0 + 5 + 10 * k, position(mmsi=OTHER, lat=-23.80, lon=151.40, speed=0.0))
              for k in range(90)]
    lines.sort(key=lambda line: int(line.split("c:")[1].split("*")[0]))
    alerts = alerts_of_live_run(tmp_path, lines, t0)
    dark = [a for a in alerts if a["rule"] == "dark_vessel" and a["mmsi"] == VESSEL]
    assert [a["transition"] for a in dark] == ["new"]
    assert (dark[0]["lat"], dark[0]["lon"]) == (-23.85, 151.3527)  # its last real fix
