"""Decoding lines ahead of the rules changes nothing: the same reports, receivers and alerts
whether lines reach the pipeline one at a time or in runs of any length."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from geofence.alert import AlertEvent
from geofence.engine import Engine
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from ingest.report import Report
from ingest.sources.base import SourceError
from replay import player
from replay.scenario import build_scenario
from tests.ingest_helpers import position, single, tag_block
from tests.scenario_helpers import DEMO_ZONES

T0 = 1_700_000_000


class Recorder:
    """A sink that keeps what each report and alert looked like when it arrived."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.reports: list[Report] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def on_report(self, report: Report) -> None:
        self.reports.append(report)
        self.seen.append(("report", report.mmsi, report.time, tuple(report.sources)))

    def on_alert(self, event: AlertEvent) -> None:
        self.seen.append(("alert", str(event.transition), event.time,
                          json.dumps(event.alert, sort_keys=True)))


class HeardSpy(Engine):
    """The real engine, also noting when it is told a receiver was heard."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heard: list[tuple[str, float]] = []

    def source_heard(self, receiver: str, time: float) -> None:
        self.heard.append((receiver, time))
        super().source_heard(receiver, time)


def run(lines: Sequence[bytes], zones: ZoneSet, read_ahead: int
        ) -> tuple[Recorder, HeardSpy, Pipeline]:
    recorder = Recorder()
    engine = HeardSpy(RulesConfig(), zones)
    pipeline = Pipeline(Ingestor(), engine, [recorder])
    feed = iter(lines)
    while run := [("log", line, None) for line in islice(feed, read_ahead)]:
        pipeline.feed_lines(run)
    pipeline.finish()
    return recorder, engine, pipeline


def line(receiver: str, t: float, **fields: Any) -> bytes:
    return (tag_block(s=receiver, c=int(t)) + single(position(**fields))).encode()


def test_a_later_duplicate_is_not_seen_by_the_report_it_repeats_before_its_line() -> None:
    # rx2's copy of vessel 1's report arrives after vessel 2's report, in the same run.
    lines = [line("rx1", T0, mmsi=244000001), line("rx1", T0 + 1, mmsi=244000002, lat=51.91),
             line("rx2", T0 + 1, mmsi=244000001)]
    for read_ahead in (1, 3):
        recorder, engine, _ = run(lines, ZoneSet.from_geojson(DEMO_ZONES), read_ahead)
        assert [s[3] for s in recorder.seen] == [("rx1",), ("rx1",)]
        first = recorder.reports[0]
        assert first.sources == ["rx1", "rx2"]  # the duplicate still counts, in its turn
        # ... and in the vessel's receivers, at the report's time (dark_vessel asks them).
        assert dict(engine.picture.vessels[244000001].sources) == {"rx1": T0, "rx2": T0}


@cache
def scenario_lines() -> tuple[bytes, ...]:
    scenario = build_scenario(ZoneSet.from_geojson(DEMO_ZONES), seed=5, hours=1.0, scale=0.5)
    return tuple(text.encode("ascii") for text in scenario.lines)


def test_any_read_ahead_gives_the_line_by_line_result() -> None:
    lines = scenario_lines()
    zones = ZoneSet.from_geojson(DEMO_ZONES)
    one, one_engine, one_pipeline = run(lines, zones, 1)
    alerts = [s for s in one.seen if s[0] == "alert"]
    assert len(alerts) > 20
    # The scenario's two receivers overlap: many reports gain a receiver after delivery,
    # and receivers are heard through duplicates alone; both must land in the same place.
    grown = sum(len(r.sources) > len(s[3]) for r, s in
                zip(one.reports, [s for s in one.seen if s[0] == "report"], strict=True))
    assert grown > 100
    assert len(one_engine.heard) > 100
    for read_ahead in (7, 100, len(lines)):
        other, other_engine, other_pipeline = run(lines, ZoneSet.from_geojson(DEMO_ZONES),
                                                  read_ahead)
        assert other.seen == one.seen, read_ahead
        assert other_engine.heard == one_engine.heard, read_ahead
        assert [r.sources for r in other.reports] == [r.sources for r in one.reports]
        assert other_pipeline.stats() == one_pipeline.stats()


async def test_a_log_that_breaks_off_plays_every_line_before_the_break(tmp_path: Path) -> None:
    log = tmp_path / "cut.nmea.gz"
    data = gzip.compress(b"\n".join(scenario_lines()[:3000]) + b"\n")
    log.write_bytes(data[: len(data) * 2 // 3])  # a log cut short in transfer

    async def handled(read_ahead: int) -> int:
        recorder = Recorder()
        pipeline = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.from_geojson(DEMO_ZONES)),
                            [recorder])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(player, "READ_AHEAD_LINES", read_ahead)
            with pytest.raises(SourceError):
                await player.play([str(log)], pipeline, speed=None)
        return len(recorder.reports)

    line_by_line = await handled(1)
    assert line_by_line > 1000
    assert await handled(100) == line_by_line


def test_live_timers_advance_from_message_time_not_to_the_wall_clock() -> None:
    """A live feed stamped 300 s behind its arrival (a national feed's delay): between lines
    the timers move on by the wall time elapsed, so nothing looks silent until it is."""
    engine = Engine(RulesConfig(), ZoneSet.empty(None))
    recorder = Recorder()
    pipeline = Pipeline(Ingestor(), engine, [recorder], live=True)
    stamp = 1_767_268_800
    for second in range(0, 30, 2):
        for rx, mmsi in (("rx-a", 244000001), ("rx-b", 244000002)):
            line = tag_block(s=rx, c=stamp + second) + single(position(mmsi=mmsi))
            pipeline.feed_lines([("national", line.encode(), stamp + second + 300.0)])
        pipeline.wall_tick(1000.0 + second)  # a wall tick between lines: nothing silent
    assert [s for s in recorder.seen if s[0] == "alert"] == []
    pipeline.wall_tick(1000.0 + 28 + 120)  # quiet for 120 s: not yet
    assert [s for s in recorder.seen if s[0] == "alert"] == []
    pipeline.wall_tick(1000.0 + 28 + 122)  # quiet for longer: both receivers silent
    silent = [json.loads(s[3]) for s in recorder.seen if s[0] == "alert"]
    assert sorted((a["rule"], a["details"]["receiver"], a["started_at"]) for a in silent) == [
        ("source_silent", "rx-a", "2026-01-01T12:02:28Z"),
        ("source_silent", "rx-b", "2026-01-01T12:02:28Z")]


def test_the_clock_does_not_step_back_when_the_source_ahead_falls_silent() -> None:
    """A receiver timed by arrival and a national feed 90 s behind it: when the receiver
    stops, message time moved on only with the feed's older stamps, so the wall ticks
    started again from them and its silence was noticed 90 s late."""
    engine = Engine(RulesConfig(), ZoneSet.empty(None))
    recorder = Recorder()
    pipeline = Pipeline(Ingestor(), engine, [recorder], live=True)
    start = 1_767_268_800
    noticed = None
    for second in range(0, 300, 2):
        arrival = start + second
        lines = [("national", (tag_block(s="amsa-1", c=arrival - 90)
                               + single(position(mmsi=244000002))).encode(), arrival)]
        if second <= 60:
            lines.append(("udp", single(position(mmsi=244000001)).encode(), arrival))
        pipeline.feed_lines(lines)
        pipeline.wall_tick(1000.0 + second + 1)
        silent = [json.loads(s[3]) for s in recorder.seen if s[0] == "alert"]
        if silent and noticed is None:
            noticed = second + 1
            assert [(a["details"]["receiver"], a["started_at"]) for a in silent] == [
                ("udp", "2026-01-01T12:03:00Z")]
    assert noticed == 183  # last line at 60 s; the first tick with the clock past 180 s


@pytest.mark.parametrize("delay", [0.0, 120.0])
def test_a_feed_stamped_behind_its_arrival_is_not_silent_and_its_vessels_can_go_dark(
        delay: float) -> None:
    """A receiver timed by arrival beside a national feed whose stamps run ``delay`` s
    behind: the feed's station was judged silent by its stamps against the arrival clock
    (source_silent opened and closed 118 times in 20 minutes), and a vessel only it heard
    could then never be called dark."""
    engine = Engine(RulesConfig(), ZoneSet.from_geojson(DEMO_ZONES))
    recorder = Recorder()
    pipeline = Pipeline(Ingestor(), engine, [recorder], live=True)
    start, stop = 1_767_268_800, 300
    in_transit: list[tuple[float, str]] = []  # (arrival, line) of the national feed
    for second in range(0, 1300):
        arrival = start + second
        if second % 10 == 0:
            quay_only = single(position(mmsi=503000104, lat=-23.80 + second * 1e-5,
                                        lon=151.42, speed=10.0, course=0.0))
            feed_only = single(position(mmsi=503000105, lat=-23.88 + second * 1e-5,
                                        lon=151.45, speed=10.0, course=0.0))
            moored = single(position(mmsi=503000199, lat=-23.85, lon=151.40, speed=0.0,
                                     status=5))  # keeps both receivers busy throughout
            quay = [moored] + ([quay_only] if second < stop else [])
            pipeline.feed_lines([("rx-quay", line.encode(), arrival) for line in quay])
            in_transit += [(arrival + delay, tag_block(s="amsa-102", c=arrival) + line)
                           for line in [moored] + ([feed_only] if second < stop else [])]
        due = [line for when, line in in_transit if when <= arrival]
        in_transit = [(when, line) for when, line in in_transit if when > arrival]
        pipeline.feed_lines([("national", line.encode(), arrival) for line in due])
        pipeline.wall_tick(5000.0 + second)
    alerts = [a for s in recorder.seen if s[0] == "alert"
              and (a := json.loads(s[3]))["rule"] in ("dark_vessel", "source_silent")]
    assert sorted((a["rule"], a["mmsi"], a["started_at"]) for a in alerts) == [
        ("dark_vessel", 503000104, "2026-01-01T12:04:50Z"),
        ("dark_vessel", 503000105, "2026-01-01T12:04:50Z")]


def _silent_receivers_lines() -> list[tuple[float, bytes]]:
    """(arrival, line): rx1 hears vessel 1 every second throughout; rx2 hears vessel 2 every
    2 s until 60 s; rx3 only ever repeats rx1's reports (duplicates, stamped a little
    behind, arriving just after) until 40 s. Stamps in milliseconds, off the whole second,
    so a tick's clock is not the clock at a line."""
    out = []
    for k in range(300):
        stamp = T0 + 0.3 + k
        out.append((stamp, tag_block(s="rx1", c=int(stamp * 1000)) + single(position(
            mmsi=244000001, lat=51.9 + k * 1e-5))))
        if k <= 40:
            out.append((stamp + 0.05, tag_block(s="rx3", c=int((stamp - 0.2) * 1000))
                        + single(position(mmsi=244000001, lat=51.9 + k * 1e-5))))
        if k % 2 == 0 and k <= 60:
            out.append((stamp + 0.45, tag_block(s="rx2", c=int((stamp + 0.45) * 1000))
                        + single(position(mmsi=244000002, lat=51.8 + k * 1e-5))))
    out.sort(key=lambda item: item[0])
    return [(arrival, text.encode()) for arrival, text in out]


def _silences(pipeline: Pipeline, recorder: Recorder) -> list[tuple[Any, ...]]:
    return sorted((json.loads(s[3])["details"]["receiver"], s[1], json.loads(s[3])["id"],
                   json.loads(s[3])["started_at"], json.loads(s[3])["ended_at"])
                  for s in recorder.seen if s[0] == "alert"
                  and json.loads(s[3])["rule"] == "source_silent")


@pytest.mark.parametrize("seed", range(4))
def test_a_silent_receiver_is_dated_by_message_times_not_by_batches_or_ticks(
        seed: int) -> None:
    """The same lines, replayed in runs of any length or fed live in batches with wall ticks
    anywhere between them, give the same source_silent alerts, with the same start and id:
    the start is the port's clock (the newest message time) at the line the receiver was
    last heard in, plus silent_s. (The time a receiver was heard was taken when the next
    tick came, so the start and the id moved with batching and, live, with the wall clock:
    12:04:22.811Z replayed, 12:04:22.141Z live on the Danish log.)"""
    import random

    lines = _silent_receivers_lines()
    recorder = Recorder()
    replayed = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.empty(None)), [recorder])
    for start in range(0, len(lines), 400):
        replayed.feed_lines([("log", data, None) for _, data in lines[start:start + 400]])
    replayed.finish()
    expected = _silences(replayed, recorder)

    rnd = random.Random(seed)
    recorder = Recorder()
    live = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.empty(None)), [recorder],
                    live=True)
    index = 0
    while index < len(lines):
        batch = lines[index:index + rnd.randint(1, 5)]
        index += len(batch)
        live.feed_lines([("udp", data, arrival + 0.5) for arrival, data in batch])
        if rnd.random() < 0.6:
            live.wall_tick(batch[-1][0] - T0 + rnd.random() * 0.4)
    live.finish()
    assert _silences(live, recorder) == expected
    assert [(rx, started) for rx, _, _, started, _ in expected] == [
        ("rx2", "2023-11-14T22:16:20.750Z"),  # its last line, stamped 60.75 s, + 120 s
        ("rx3", "2023-11-14T22:16:00.300Z")]  # its last copy came after rx1's 40.3 s line


def test_a_feed_stamped_further_behind_than_silent_s_stays_heard_when_the_source_ahead_stops(
        ) -> None:
    """Silences are dated by message time, but judged live by the engine's clock: a national
    feed 150 s behind a receiver timed by arrival is heard all the time, also once that
    receiver has fallen silent and the wall ticks carry the clock on (judged by message time
    alone, its station opened and closed an alert at every tick)."""
    engine = Engine(RulesConfig(), ZoneSet.empty(None))
    recorder = Recorder()
    pipeline = Pipeline(Ingestor(), engine, [recorder], live=True)
    start = 1_767_268_800
    for second in range(0, 400, 2):
        arrival = start + second
        lines = []
        if second <= 60:
            lines.append(("udp", single(position(mmsi=244000001)).encode(), arrival))
        lines.append(("national", (tag_block(s="amsa-1", c=arrival - 150)
                                   + single(position(mmsi=244000002))).encode(), arrival))
        pipeline.feed_lines(lines)
        pipeline.wall_tick(1000.0 + second + 1)
    silent = [json.loads(s[3]) for s in recorder.seen if s[0] == "alert"]
    assert [(a["details"]["receiver"], a["started_at"]) for a in silent] == [
        ("udp", "2026-01-01T12:03:00Z")]


def test_a_receiver_counts_each_message_once() -> None:
    """Heard in line order from the journal and again by its report: counted twice."""
    engine = Engine(RulesConfig(), ZoneSet.from_geojson(DEMO_ZONES))
    pipeline = Pipeline(Ingestor(), engine, [])
    lines = [("udp", (tag_block(s="rx1", c=T0 + i) + single(position(
        mmsi=244000000 + i, lat=-23.83, lon=151.26))).encode(), None) for i in range(100)]
    pipeline.feed_lines(lines)
    pipeline.finish()
    assert engine.picture.receivers["rx1"].messages == 100


def _quiet_then_back_lines() -> list[tuple[float, bytes]]:
    """(arrival, line): rx-a and rx-b every 10 s from 0 to 20 s, both quiet for 150 s, then
    every 10 s from 180 to 210 s again (the reviewer's capture, quietcap.nmea, in short)."""
    out = []
    for k in (*range(0, 30, 10), *range(180, 220, 10)):
        for rx, mmsi, lat in (("rx-a", 311000001, -23.845), ("rx-b", 311000002, -23.86456)):
            stamp = T0 + k
            out.append((stamp, tag_block(s=rx, c=stamp) + single(position(
                mmsi=mmsi, lat=lat, lon=151.3 + k * 1e-5))))
    return [(arrival, text.encode()) for arrival, text in out]


@pytest.mark.parametrize("run", [1, 2, 400])
def test_receivers_quiet_together_for_longer_than_silent_s_are_both_silent_when_replayed(
        run: int) -> None:
    """Two receivers quiet for 150 s (silent_s 120) then back: replayed, both get a
    source_silent alert (started 120 s after each was last heard, ended when each was heard
    again), as live, where the wall clock's ticks notice both during the quiet. The first
    receiver heard after the quiet was taken as heard before the timers ran at its line, so
    only the second one alerted on a replay."""
    lines = _quiet_then_back_lines()
    recorder = Recorder()
    replayed = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.empty(None)), [recorder])
    for start in range(0, len(lines), run):
        replayed.feed_lines([("log", data, None) for _, data in lines[start:start + run]])
    replayed.finish()
    got = _silences(replayed, recorder)
    first_id = {rx: alert_id for rx, transition, alert_id, _, _ in got if transition == "new"}
    assert [(rx, transition, started, ended) for rx, transition, _, started, ended in got] == [
        ("rx-a", "end", "2023-11-14T22:15:40Z", "2023-11-14T22:16:20Z"),
        ("rx-a", "new", "2023-11-14T22:15:40Z", None),
        ("rx-b", "end", "2023-11-14T22:15:40Z", "2023-11-14T22:16:20Z"),
        ("rx-b", "new", "2023-11-14T22:15:40Z", None)]

    recorder = Recorder()
    live = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.empty(None)), [recorder],
                    live=True)
    index = 0
    for second in range(0, 215):
        batch = []
        while index < len(lines) and lines[index][0] <= T0 + second:
            batch.append(lines[index])
            index += 1
        if batch:
            live.feed_lines([("udp", data, arrival) for arrival, data in batch])
        live.wall_tick(second + 0.5)
    live.finish()
    assert _silences(live, recorder) == got
    assert set(first_id) == {"rx-a", "rx-b"}
