"""A report from a clock far ahead cannot move the rules' clock on its own: one bad line
changes no alert, while a real gap in a log (or the wall clock, live) still moves it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from geofence.engine import Engine
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from tests.rulekit import T0, Run, report
from tests.scenario_helpers import DEMO_ZONES
from tests.test_read_ahead import Recorder, line, scenario_lines

DAY = 86_400.0


def _alerts(lines: Sequence[bytes]) -> tuple[list[Any], Pipeline]:
    recorder = Recorder()
    pipeline = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.from_geojson(DEMO_ZONES)),
                        [recorder])
    pipeline.feed_lines([("log", data, None) for data in lines])
    pipeline.finish()
    return [s for s in recorder.seen if s[0] == "alert"], pipeline


def test_one_line_a_day_ahead_changes_no_alert() -> None:
    lines = list(scenario_lines())
    middle = len(lines) // 2
    when = float(lines[middle].split(b"c:")[1][:10])
    bad = line("rx-bad", when + DAY, mmsi=503999001, lat=51.95, lon=4.05)
    expected, _ = _alerts(lines)
    alerts, pipeline = _alerts([*lines[:middle], bad, *lines[middle:]])
    assert len(expected) > 20
    assert alerts == expected
    engine = pipeline.engine
    assert isinstance(engine, Engine)
    assert pipeline.stats()["rules"]["clock_ahead"] == 1  # shown in /stats
    assert "rx-bad" not in engine.picture.receivers  # nor heard at the bad time
    assert engine.newest < when + 3600


def test_a_gap_in_the_log_moves_the_clock_with_the_next_report_from_another_receiver() -> None:
    run = Run()
    run.feed(report(244000001, 0, 0, 0, sources=["rx1"]),
             report(244000002, 1, 50, 50, sources=["rx2"]))
    run.feed(report(244000001, 7200, 0, 0, sources=["rx1"]))
    assert run.engine.newest == T0 + 1
    assert run.engine.counters["clock_ahead"] == 1
    run.feed(report(244000001, 7210, 0, 0, sources=["rx1"]))  # the same receiver: not yet
    assert run.engine.newest == T0 + 1
    run.feed(report(244000002, 7211, 50, 50, sources=["rx2"]))
    assert run.engine.newest == T0 + 7211
    assert run.engine.counters["clock_ahead"] == 2
    assert run.engine.picture.vessels[244000002].last_seen == T0 + 7211


def test_with_one_receiver_its_next_report_confirms_the_gap() -> None:
    run = Run()
    run.feed(report(244000001, 0, 0, 0))
    run.feed(report(244000002, 5000, 50, 50))
    assert run.engine.newest == T0
    run.feed(report(244000001, 5001, 0, 0))
    assert run.engine.newest == T0 + 5001
    assert run.engine.counters["clock_ahead"] == 1


def test_when_only_one_of_two_receivers_comes_back_its_reports_confirm_the_gap() -> None:
    run = Run()
    run.feed(report(244000001, 0, 0, 0, sources=["rx1"]),
             report(244000002, 1, 50, 50, sources=["rx2"]))
    for t in range(7200, 7320, 10):
        run.feed(report(244000001, t, 0, 0, sources=["rx1"]))
        assert run.engine.newest == T0 + 1
    # rx1 alone for source_silent's silent_s (120 s): rx2 would count as silent by now.
    run.feed(report(244000001, 7320, 0, 0, sources=["rx1"]))
    assert run.engine.newest == T0 + 7320
    assert run.engine.counters["clock_ahead"] == 12


def test_a_receiver_with_a_bad_clock_never_moves_it() -> None:
    run = Run()
    for i in range(0, 600, 10):
        run.feed(report(244000001, i, 0, 0, sources=["good"]),
                 report(244000002, i + DAY, 50, 50, sources=["bad"]),
                 report(244000003, i + DAY + 1, 80, 80, sources=["bad"]))
    assert run.engine.newest == T0 + 590
    assert run.engine.counters["clock_ahead"] == 120
    assert set(run.engine.picture.vessels) == {244000001}
    assert set(run.engine.picture.receivers) == {"good"}
    # A duplicate heard only by the bad receiver cannot move it either.
    run.engine.source_heard("bad", T0 + 600 + DAY)
    assert run.engine.newest == T0 + 590 and "bad" not in run.engine.picture.receivers


def test_the_wall_clock_is_believed_and_message_ticks_are_not() -> None:
    run = Run()
    run.feed(report(244000001, 0, 0, 0))
    run.engine.tick(T0 + DAY, message_time=True)
    assert run.engine.newest == T0
    run.engine.tick(T0 + DAY)  # live: the wall clock
    assert run.engine.newest == T0 + DAY


def test_the_pipeline_ticks_on_after_a_line_from_a_clock_ahead() -> None:
    # The pipeline's own next tick follows the rules' clock, not the bad line's time: the
    # receivers heard only through duplicates are still passed on every second.
    pipeline = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.from_geojson(DEMO_ZONES)))
    pipeline.feed_lines([("log", line("rx1", T0, mmsi=244000001), None),
                         ("log", line("bad", T0 + DAY, mmsi=244000002), None),
                         ("log", line("rx1", T0 + 5, mmsi=244000004), None),
                         ("log", line("rx2", T0 + 6, mmsi=244000004), None),  # a copy
                         ("log", line("rx1", T0 + 10, mmsi=244000003, lat=51.91), None)])
    engine = pipeline.engine
    assert isinstance(engine, Engine)
    assert pipeline.ingestor.sources["log"].health.duplicates == 1
    assert engine.newest == T0 + 10
    assert engine.picture.receivers["rx2"].last_heard == T0 + 6


async def test_live_wall_ticks_follow_the_wall_clock_not_a_line_from_a_clock_ahead() -> None:
    pipeline = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.from_geojson(DEMO_ZONES)),
                        live=True)
    now = time.time()
    pipeline.feed_lines([("udp", line("rx1", now, mmsi=244000001), now),
                         ("udp", line("bad", now + DAY, mmsi=244000002), now)])
    engine = pipeline.engine
    assert isinstance(engine, Engine)
    assert engine.newest < now + 1
    ticking = asyncio.create_task(pipeline._wall_ticks())
    await asyncio.sleep(1.5)  # one wall tick (every second)
    ticking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticking
    assert now + 1 <= engine.newest < now + 60
