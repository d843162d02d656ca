"""A second transmitter using a real vessel's MMSI, over a real UDP socket into
``harbourwatch run``: it must not hide the vessel from the rules and the API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.ingest_helpers import position, single, tag_block
from tests.services.mosquitto import free_port
from tests.test_service import DEMO_ZONES, free_udp_port, wait_said

REAL = 503338000
WHARF = (-23.7793, 151.1975)  # inside the restricted works wharf of the demo port
ELSEWHERE = (-23.85, 151.35)  # 17 km away, in the port's coverage


def _at(t: int, place: tuple[float, float], nudge: int = 0, mmsi: int = REAL) -> str:
    """A report stamped ``t`` (behind its arrival: kept as stamped)."""
    lat, lon = place
    return tag_block(c=t) + single(position(mmsi=mmsi, lat=lat + nudge * 1e-5, lon=lon,
                                            speed=0.5, course=10.0, heading=10))


def _transitions(out: Path, rule: str) -> list[str]:
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    return [a["transition"] for a in alerts if a["rule"] == rule and a["mmsi"] == REAL]


def test_a_spoofer_with_the_mmsi_of_a_vessel_in_a_restricted_zone_does_not_hide_it(
        tmp_path: Path) -> None:
    """Five fixes 17 km away between two of the vessel's own (position_jump accepts three
    agreeing fixes as a relocation), then one more after the next of the vessel's: the third
    switch opens mmsi_conflict. The conflict used to keep the picture on the spoofer's
    track, every fix of the vessel's rejected: /vessels showed it 17 km away and its
    restricted_entry stayed ended while it lay in the wharf."""
    port, api = free_udp_port(), free_port()
    out = tmp_path / "alerts.jsonl"
    env = {**os.environ, "HARBOURWATCH_API_TOKENS": "duty:viewer:seekrit"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "-v", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{port}", "--serve", f"127.0.0.1:{api}",
         "--db", f"sqlite:///{tmp_path / 'live.db'}", "--alerts-out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    t0 = int(time.time()) - 600
    lines = [_at(t0 + 10 * k, WHARF) for k in range(5)]
    lines += [_at(t0 + 41 + k, ELSEWHERE, nudge=k) for k in range(5)]
    lines += [_at(t0 + 50, WHARF), _at(t0 + 51, ELSEWHERE, nudge=6)]
    lines += [_at(t0 + 60 + 10 * k, WHARF) for k in range(4)]
    lines += [_at(t0 + 100, WHARF, mmsi=970012345)]  # an AIS-SART: all before it is done
    vessel: dict[str, Any] = {}
    try:
        wait_said(proc, "listening on UDP")  # -v says it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto("".join(line + "\r\n" for line in lines).encode(),
                        ("127.0.0.1", port))
        deadline = time.monotonic() + 30
        while not (out.exists() and "emergency_device" in out.read_text()):
            assert proc.poll() is None
            assert time.monotonic() < deadline, "the lines were not all processed"
            time.sleep(0.2)
        vessel = httpx.get(f"http://127.0.0.1:{api}/vessels/{REAL}", timeout=10,
                           headers={"Authorization": "Bearer seekrit"}).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert _transitions(out, "mmsi_conflict") == ["new"]
    # Ended by the spoofer's relocation, raised again once the vessel's own fixes count.
    assert _transitions(out, "restricted_entry") == ["new", "end", "new"]
    assert (round(vessel["lat"], 4), round(vessel["lon"], 4)) == WHARF
