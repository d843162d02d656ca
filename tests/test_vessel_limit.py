"""rules.picture.max_vessels: forged MMSIs over an open feed cannot grow the rules' picture,
the API's picture or the MQTT feed's tables without bound (one type 1 per new MMSI took the
service from 119 MB to 808 MB), and real vessels keep their place."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from api.mqtt import MqttFeed
from api.picture import LivePicture
from geofence.engine import Engine
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from tests.ingest_helpers import position, single, tag_block
from tests.rulekit import T0, lonlat, port_zones, rect, rules_config
from tests.test_service import DEMO_ZONES, free_udp_port, wait_said

LIMIT = 40


def _line(mmsi: int, dx: float, dy: float, status: int = 0) -> bytes:
    lon, lat = lonlat(dx, dy)
    return single({"type": 1, "mmsi": mmsi, "lat": lat, "lon": lon, "speed": 5.0,
                   "course": 90.0, "heading": 90, "status": status}).encode()


class _Rig:
    """The real pipeline: NMEA lines in, the engine, the API's picture and the MQTT feed."""

    def __init__(self, *zones: dict[str, Any], **rules: Any) -> None:
        self.engine = Engine(rules_config(picture={"max_vessels": LIMIT}, **rules),
                             port_zones(*zones))
        self.picture = LivePicture(900.0, max_vessels=LIMIT)
        self.feed = MqttFeed("mqtt://127.0.0.1:1", prefix="hwtest/limit")  # never connected
        self.pipeline = Pipeline(Ingestor(), self.engine, [self.picture, self.feed],
                                 live=True)
        self.t = T0

    def hear(self, mmsis: list[int], *, times: int = 1, status: int = 0,
             east_m: float = 0.0) -> None:
        for again in range(times):  # each time elsewhere: not a duplicate
            for n, mmsi in enumerate(mmsis):
                self.t += 0.01
                self.pipeline.feed_line(
                    "udp", _line(mmsi, east_m + 100.0 * (n % 50), 100.0 + 10 * again, status),
                    self.t)

    def held(self) -> tuple[set[int], set[int], set[int]]:
        return (set(self.engine.picture.vessels), {v["mmsi"] for v in self.picture.vessels()},
                set(self.feed._vessels))


async def test_a_flood_of_one_shot_mmsis_evicts_only_vessels_heard_once() -> None:
    rig = _Rig()
    real = [244000000 + n for n in range(LIMIT // 2)]
    rig.hear(real, times=2)
    rig.hear([503100000 + n for n in range(2000)])  # forged, each heard once
    engine, picture, feed = rig.held()
    assert len(engine) == LIMIT and len(picture) <= LIMIT and len(feed) <= LIMIT
    assert set(real) <= engine and set(real) <= picture and set(real) <= feed
    assert picture <= engine and feed <= engine  # only what the rules hold goes on
    # A real newcomer still gets in, and stays once heard again.
    rig.hear([244999999])
    rig.hear([503200000 + n for n in range(500)])
    assert 244999999 not in rig.held()[0]  # heard once, among the flood: evicted
    rig.hear([244999998], times=2)
    rig.hear([503300000 + n for n in range(500)])
    assert all(244999998 in table for table in rig.held())
    stats = rig.pipeline.stats()["rules"]
    assert stats["vessels_evicted"] == 2000 + 1 + 500 + 1 + 500 - LIMIT // 2
    assert stats["vessels_over_limit"] == 0


async def test_beyond_the_bound_a_new_mmsi_is_refused_counted_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    rig = _Rig()
    caplog.set_level(logging.WARNING, logger="geofence.engine")
    rig.hear([503000000 + n for n in range(LIMIT)], times=2)  # forged twice: held
    rig.hear([503100000 + n for n in range(300)])
    engine, picture, feed = rig.held()
    assert len(engine) == len(picture) == len(feed) == LIMIT
    assert not engine & set(range(503100000, 503100300))
    assert rig.pipeline.stats()["rules"]["vessels_over_limit"] == 300
    assert len([r for r in caplog.records if "max_vessels" in r.message]) == 1


async def test_vessels_heard_twice_give_way_to_a_newcomer_once_silent_past_the_rules(
        ) -> None:
    """Forged MMSIs sent twice each are never "heard once": they used to keep every real
    newcomer out until forgotten (24 h). Once silent past the live picture and dark_vessel's
    thresholds (1,800 s) the longest silent gives way; one with an open alert does not."""
    rig = _Rig(emergency_device={"end_after_s": 7200})  # the SART's alert stays open
    sart = 970010001
    rig.hear([sart], times=2, status=14, east_m=30_000)  # outside every zone, alerting
    forged = [503000000 + n for n in range(LIMIT - 1)]
    rig.hear(forged, times=2, east_m=30_000)  # outside every zone: no dark_vessel
    rig.t += 1_700.0
    rig.hear([244999990])
    assert 244999990 not in rig.held()[0]  # not silent long enough: still refused
    rig.t += 102.0  # the SART and forged[0] now silent 1,802 s, past 1,800 s + a tick
    rig.hear([244999991], times=2)
    engine, picture, feed = rig.held()
    assert 244999991 in engine and sart in engine and forged[0] not in engine
    assert set(forged[1:]) <= engine
    assert 244999991 in picture and 244999991 in feed  # the others aged out of them
    stats = rig.pipeline.stats()["rules"]
    assert (stats["vessels_evicted"], stats["vessels_over_limit"]) == (1, 1)


async def test_a_vessel_in_a_zone_gives_way_too_once_silent_past_the_rules() -> None:
    """A flood placed inside the port's zones is held no longer: with dark_vessel off the
    silence needed is the live picture's (900 s) and a tick."""
    rig = _Rig(dark_vessel={"enabled": False})
    forged = [503000000 + n for n in range(LIMIT)]
    rig.hear(forged, times=2)  # inside coverage and the port limit
    assert all(rig.engine.picture.vessels[m].zones for m in forged)
    rig.t += 901.5
    rig.hear([244999991])
    assert 244999991 in rig.held()[0] and forged[0] not in rig.held()[0]


async def test_a_zones_own_dark_threshold_keeps_its_vessels_that_long() -> None:
    """A zone may give dark_vessel a longer silence (2 h here): its vessels silent for the
    rule's 1,800 s are not yet past it, and evicted they could never be called dark."""
    rig = _Rig(rect("quiet", "anchorage", 5000, 0, 15000, 1000, dark_moving_s=7200))
    forged = [503000000 + n for n in range(LIMIT)]
    rig.hear(forged, times=2, east_m=6000)
    assert all("quiet" in rig.engine.picture.vessels[m].zones for m in forged)
    rig.t += 1_802.0
    rig.hear([244999991])
    assert 244999991 not in rig.held()[0]
    rig.t += 7_202.0 - 1_802.0  # past the zone's 7,200 s and a tick
    rig.hear([244999992])
    assert 244999992 in rig.held()[0] and forged[0] not in rig.held()[0]


async def test_a_vessel_heard_once_with_an_open_alert_is_never_evicted() -> None:
    rig = _Rig()
    sart = 970010001  # one AIS-SART report opens a critical alert
    rig.hear([sart], status=14)
    assert rig.engine.book.has_open(sart)
    rig.hear([503100000 + n for n in range(1000)])
    assert all(sart in table for table in rig.held())


def test_the_bound_is_far_above_a_port_and_within_config_bounds() -> None:
    assert rules_config().picture.max_vessels == 20_000
    with pytest.raises(ValueError):
        rules_config(picture={"max_vessels": 0})


async def test_the_counters_reach_the_metrics() -> None:
    from api.metrics import ServiceCollector, make_registry, render

    rig = _Rig()
    rig.hear([503000000 + n for n in range(LIMIT)], times=2)
    rig.hear([503100000 + n for n in range(3)])
    text = render(make_registry(ServiceCollector(stats=rig.pipeline.stats))).decode()
    assert "harbourwatch_rules_vessels_over_limit_total 3.0" in text.splitlines()
    assert "harbourwatch_rules_vessels_evicted_total 0.0" in text.splitlines()


def test_a_live_service_full_of_forged_vessels_heard_twice_still_watches_a_newcomer(
        tmp_path: Path) -> None:
    """Over a real UDP socket into ``harbourwatch run``: ten forged MMSIs, each sent twice
    an hour ago (stamped so; a stamp behind arrival is kept), fill a picture of ten. A real
    vessel entering the restricted works wharf now was not admitted, so never alerted."""
    port = free_udp_port()
    config = tmp_path / "port.yaml"
    config.write_text(
        f"version: 1\nport: {{name: limit, zones: {DEMO_ZONES}}}\n"
        f"sources: [{{kind: udp, name: rx, host: 127.0.0.1, port: {port}}}]\n"
        "rules: {picture: {max_vessels: 10}}\n")
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "-v", "run", "--config", str(config),
         "--db", f"sqlite:///{tmp_path / 'live.db'}", "--alerts-out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hour_ago = int(time.time()) - 3600
    forged = [tag_block(c=hour_ago + again) + single(position(
        mmsi=503000000 + n, lat=-20.0 - n * 0.01, lon=150.0 + again * 0.001))  # far out
              for again in range(2) for n in range(10)]
    newcomer = single(position(mmsi=244999999, lat=-23.7793, lon=151.1975, speed=1.0))
    try:
        wait_said(proc, "listening on UDP")  # -v says it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto("".join(line + "\r\n" for line in forged).encode(),
                        ("127.0.0.1", port))
            deadline = time.monotonic() + 30
            while not (out.exists() and "restricted_entry" in out.read_text()):
                assert proc.poll() is None
                assert time.monotonic() < deadline, "the newcomer was never watched"
                sock.sendto((newcomer + "\r\n").encode(), ("127.0.0.1", port))
                time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    alert = next(a for a in map(json.loads, out.read_text().splitlines())
                 if a["rule"] == "restricted_entry")
    assert (alert["mmsi"], alert["zone"], alert["transition"]) == (
        244999999, "works_wharf", "new")
