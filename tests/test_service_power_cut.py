"""The admin review's case, through the command line: the database away, an ack answered 202,
the service killed (a power cut), the database back and the service restarted: the ack is in
the database. Real processes, real sockets, real SQLite (away while another connection holds
its write lock past the 10 s busy timeout)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.ingest_helpers import position, single
from tests.test_service import DEMO_ZONES, free_udp_port

TOKEN = "op-power-cut-test"
SART = 970123456  # an AIS-SART: emergency_device opens on its first report


def started(db: Path, udp: int, api: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
         "--udp", f"127.0.0.1:{udp}", "--serve", f"127.0.0.1:{api}", "--db", f"sqlite:///{db}"],
        env={**os.environ, "HARBOURWATCH_API_TOKENS": f"duty:operator:{TOKEN}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stored(db: Path) -> list[tuple[str, str, str | None]]:
    """The SART's alerts in the database: id, state, acknowledged by."""
    with contextlib.closing(sqlite3.connect(db, timeout=0.5)) as conn:
        try:
            return conn.execute("SELECT id, state, acked_by FROM alerts WHERE "
                                "rule = 'emergency_device'").fetchall()
        except sqlite3.OperationalError:  # not created yet, or locked
            return []


def wait_for(proc: subprocess.Popen[str], check: Any, what: str, limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        with contextlib.suppress(httpx.TransportError):
            found = check()
            if found:
                return found
        assert time.monotonic() < deadline, f"not within {limit} s: {what}"
        time.sleep(0.2)


def test_an_ack_answered_202_during_an_outage_survives_a_kill(tmp_path: Path) -> None:
    db, udp, api = tmp_path / "live.db", free_udp_port(), free_udp_port()
    line = (single(position(mmsi=SART, lat=-23.83, lon=151.25, speed=0.0)) + "\r\n").encode()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    proc = started(db, udp, api)
    lock: sqlite3.Connection | None = None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api}", headers=auth,
                          timeout=30) as http, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            def heard() -> list[tuple[str, str, str | None]]:
                sock.sendto(line, ("127.0.0.1", udp))
                return stored(db)

            ((alert_id, state, _by),) = wait_for(proc, heard, "the SART's alert stored")
            assert state == "open"
            # The database away: another process holds its write lock.
            lock = sqlite3.connect(db, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")

            def away() -> bool:
                sock.sendto(line, ("127.0.0.1", udp))  # a row for the writer to try
                return http.get("/stats").json()["store"]["db_up"] is False

            wait_for(proc, away, "the writer found the database away")
            acked = http.post(f"/alerts/{alert_id}/ack", json={"note": "rescue under way"})
            assert acked.status_code == 202, acked.text
        proc.send_signal(signal.SIGKILL)  # the power cut
        proc.wait(timeout=30)
        lock.execute("ROLLBACK")
        lock.close()
        lock = None
        assert stored(db) == [(alert_id, "open", None)]  # not written before the kill
        proc = started(db, udp, api)
        wait_for(proc, lambda: stored(db) == [(alert_id, "acknowledged", "duty")],
                 "the ack written by the restart")
        assert acked.headers["x-harbourwatch-queued"] == "disk"  # as the 202 said
    finally:
        if lock is not None:
            lock.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
