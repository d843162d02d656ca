"""rules.picture.max_vessels: forged MMSIs over an open feed cannot grow the rules' picture,
the API's picture or the MQTT feed's tables without bound (one type 1 per new MMSI took the
service from 119 MB to 808 MB), and real vessels keep their place."""

from __future__ import annotations

import logging

import pytest

from api.mqtt import MqttFeed
from api.picture import LivePicture
from geofence.engine import Engine
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from tests.ingest_helpers import single
from tests.rulekit import T0, lonlat, port_zones, rules_config

LIMIT = 40


def _line(mmsi: int, dx: float, dy: float, status: int = 0) -> bytes:
    lon, lat = lonlat(dx, dy)
    return single({"type": 1, "mmsi": mmsi, "lat": lat, "lon": lon, "speed": 5.0,
                   "course": 90.0, "heading": 90, "status": status}).encode()


class _Rig:
    """The real pipeline: NMEA lines in, the engine, the API's picture and the MQTT feed."""

    def __init__(self) -> None:
        self.engine = Engine(rules_config(picture={"max_vessels": LIMIT}), port_zones())
        self.picture = LivePicture(900.0, max_vessels=LIMIT)
        self.feed = MqttFeed("mqtt://127.0.0.1:1", prefix="hwtest/limit")  # never connected
        self.pipeline = Pipeline(Ingestor(), self.engine, [self.picture, self.feed],
                                 live=True)
        self.t = T0

    def hear(self, mmsis: list[int], *, times: int = 1, status: int = 0) -> None:
        for again in range(times):  # each time elsewhere: not a duplicate
            for n, mmsi in enumerate(mmsis):
                self.t += 0.01
                self.pipeline.feed_line(
                    "udp", _line(mmsi, 100.0 * (n % 50), 100.0 + 10 * again, status), self.t)

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
