"""A ``--speed max`` replay decoded in a second process gives exactly the in-process result:
the same reports with the same receivers, the same alerts and receiver news in the same
order, the same counters; a log that breaks off or a child that dies is reported."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from ingest.sources.base import SourceError
from replay import decoding
from replay.decoding import DecodingFailed, DecodingProcess
from replay.player import ReplayResult, play
from tests.paths import ROOT
from tests.scenario_helpers import DEMO_ZONES
from tests.test_read_ahead import HeardSpy, Recorder, line, scenario_lines


@pytest.fixture
def single_threaded() -> Iterator[None]:
    """The decoding process is forked only with no other Python thread alive (the service
    forks before the store starts its threads): wait out threads other tests left ending."""
    deadline = time.monotonic() + 20
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
    yield


def _pipeline() -> tuple[Pipeline, Recorder, HeardSpy]:
    recorder = Recorder()
    engine = HeardSpy(RulesConfig(), ZoneSet.from_geojson(DEMO_ZONES))
    return Pipeline(Ingestor(), engine, [recorder]), recorder, engine


async def _play(paths: list[str], *, in_child: bool, start: float | None = None
                ) -> tuple[ReplayResult, Recorder, HeardSpy, Pipeline]:
    pipeline, recorder, engine = _pipeline()
    decoder = DecodingProcess.start(paths, pipeline.ingestor) if in_child else None
    assert (decoder is not None) == in_child
    try:
        result = await play(paths, pipeline, speed=None, start=start, decoder=decoder)
    finally:
        if decoder is not None:
            decoder.close()
    return result, recorder, engine, pipeline


def _write(path: Path, lines: tuple[bytes, ...] | list[bytes]) -> str:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


@pytest.mark.parametrize("chunk_lines", [7, decoding.CHUNK_LINES])
async def test_the_decoding_process_gives_the_in_process_result(
        tmp_path: Path, single_threaded: None, chunk_lines: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "CHUNK_LINES", chunk_lines)  # the fork copies it
    log = _write(tmp_path / "two-receivers.nmea", scenario_lines())
    here, here_seen, here_engine, here_pipeline = await _play([log], in_child=False)
    there, there_seen, there_engine, there_pipeline = await _play([log], in_child=True)
    assert here.reports > 5000
    assert there == here
    # Reports gain receivers from later duplicates (the journal crosses the process
    # boundary by report number), and receivers are heard through duplicates alone.
    assert sum(len(r.sources) > 1 for r in here_seen.reports) > 100
    assert there_seen.seen == here_seen.seen
    assert [r.sources for r in there_seen.reports] == [r.sources for r in here_seen.reports]
    assert [r.nmea for r in there_seen.reports] == [r.nmea for r in here_seen.reports]
    assert there_engine.heard == here_engine.heard
    assert len([s for s in here_seen.seen if s[0] == "alert"]) > 20
    # The parent's ingestor shows the child's counters and clock (/stats, /sources, ticks).
    assert there_pipeline.stats() == here_pipeline.stats()
    assert there_pipeline.ingestor.newest == here_pipeline.ingestor.newest
    assert ([r.to_dict() for r in there_pipeline.ingestor.receivers.values()]
            == [r.to_dict() for r in here_pipeline.ingestor.receivers.values()])


async def test_merged_logs_a_start_time_and_held_lines_match_too(
        tmp_path: Path, single_threaded: None, caplog: pytest.LogCaptureFixture) -> None:
    lines = scenario_lines()
    by_receiver = [[line for line in lines if b"s:" + rx in line]
                   for rx in (b"rx-light", b"rx-south")]
    assert all(len(part) > 1000 for part in by_receiver)
    paths = [_write(tmp_path / f"rx{i}.nmea", part) for i, part in enumerate(by_receiver, 1)]
    # A log with no time at all (no tag blocks, no base stations): held, then released.
    paths.append(_write(tmp_path / "untimed.nmea", [
        line.split(b"\\")[-1] for line in by_receiver[0][:200] if b",,A,4" not in line
        and b",,B,4" not in line]))
    start = float(lines[0].split(b"c:")[1][:10]) + 1800
    here, here_seen, _, here_pipeline = await _play(paths, in_child=False, start=start)
    there, there_seen, _, there_pipeline = await _play(paths, in_child=True, start=start)
    assert here.skipped > 1000 and here.untimed_sources == ["untimed"]
    assert "no timestamps in untimed: played at time 0; dated 1970, not beside the timed " \
        "logs: replay it on its own" in caplog.messages
    assert there == here
    assert there_seen.seen == here_seen.seen
    assert there_pipeline.stats() == here_pipeline.stats()


async def test_a_duplicate_finds_its_report_after_an_older_message_came_again(
        tmp_path: Path, single_threaded: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Vessel 1's message comes again beyond the de-duplication window (a new report), after
    # vessel 2's; then rx2's copy of vessel 2's report must still find it, a chunk later.
    monkeypatch.setattr(decoding, "CHUNK_LINES", 1)
    t0 = 1_700_000_000
    log = _write(tmp_path / "repeat.nmea", [
        line("rx1", t0, mmsi=244000001), line("rx1", t0 + 4, mmsi=244000002, lat=51.91),
        line("rx1", t0 + 4, mmsi=244000001), line("rx2", t0 + 5, mmsi=244000002, lat=51.91)])
    here, here_seen, _, _ = await _play([log], in_child=False)
    there, there_seen, _, _ = await _play([log], in_child=True)
    assert [r.sources for r in here_seen.reports] == [["rx1"], ["rx1", "rx2"], ["rx1"]]
    assert [r.sources for r in there_seen.reports] == [["rx1"], ["rx1", "rx2"], ["rx1"]]
    assert there == here


async def test_a_log_that_breaks_off_plays_every_line_before_the_break(
        tmp_path: Path, single_threaded: None) -> None:
    data = gzip.compress(b"\n".join(scenario_lines()[:3000]) + b"\n")
    log = tmp_path / "cut.nmea.gz"
    log.write_bytes(data[: len(data) * 2 // 3])
    counts = []
    for in_child in (False, True):
        pipeline, recorder, _ = _pipeline()
        decoder = DecodingProcess.start([str(log)], pipeline.ingestor) if in_child else None
        try:
            with pytest.raises(SourceError, match=r"cut\.nmea\.gz"):
                await play([str(log)], pipeline, speed=None, decoder=decoder)
        finally:
            if decoder is not None:
                decoder.close()
        counts.append(len(recorder.reports))
    assert counts[0] > 1000
    assert counts[1] == counts[0]


@pytest.mark.parametrize("wait_for_death", [False, True])
async def test_a_child_that_dies_fails_the_replay_clearly(
        tmp_path: Path, single_threaded: None, wait_for_death: bool) -> None:
    log = _write(tmp_path / "port.nmea", scenario_lines())
    pipeline, _, _ = _pipeline()
    decoder = DecodingProcess.start([log], pipeline.ingestor)
    assert decoder is not None and decoder.pid is not None
    os.kill(decoder.pid, signal.SIGKILL)
    if wait_for_death:
        deadline = time.monotonic() + 10
        while _running(decoder.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    try:
        with pytest.raises(DecodingFailed, match=r"ended unexpectedly \(exit code -9\)"):
            await play([log], pipeline, speed=None, decoder=decoder)
    finally:
        decoder.close()


async def test_a_replay_cut_short_stops_the_child(tmp_path: Path, single_threaded: None) -> None:
    log = _write(tmp_path / "port.nmea", scenario_lines())
    pipeline, _, _ = _pipeline()
    decoder = DecodingProcess.start([log], pipeline.ingestor)
    assert decoder is not None
    runs = decoder.runs(pipeline)
    lines, reports = await anext(runs)
    assert lines == decoding.CHUNK_LINES and len(list(reports)) > 0
    await runs.aclose()
    decoder.close()
    assert decoder.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(decoder.pid, 0)  # gone, and reaped


class _NeedsTwoArguments(Exception):
    def __init__(self, what: str, where: int) -> None:
        super().__init__(f"{what} at {where}")


@pytest.mark.parametrize("error", [KeyError("boom"), _NeedsTwoArguments("boom", 7)])
async def test_an_error_in_the_child_is_raised_with_the_childs_traceback(
        tmp_path: Path, single_threaded: None, monkeypatch: pytest.MonkeyPatch,
        error: Exception) -> None:
    log = _write(tmp_path / "port.nmea", scenario_lines())
    real_feed = Ingestor.feed
    calls = 0

    def failing_feed(self: Ingestor, source: str, data: bytes, received: float | None = None
                     ) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2000:
            raise error
        return real_feed(self, source, data, received)

    monkeypatch.setattr(Ingestor, "feed", failing_feed)  # the fork copies it
    pipeline, _, _ = _pipeline()
    decoder = DecodingProcess.start([log], pipeline.ingestor)
    assert decoder is not None
    try:
        with pytest.raises(Exception) as raised:
            await play([log], pipeline, speed=None, decoder=decoder)
    finally:
        decoder.close()
    if isinstance(error, KeyError):
        assert type(raised.value) is KeyError and raised.value.args == ("boom",)
    else:  # it would not survive pickling: its type and text come as a RuntimeError
        assert type(raised.value) is RuntimeError
        assert str(raised.value) == "_NeedsTwoArguments: boom at 7"
    cause = str(raised.value.__cause__)
    assert "in the decoding process" in cause and "failing_feed" in cause


def test_the_decoding_process_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    log = _write(tmp_path / "port.nmea", list(scenario_lines()) * 20)
    parent = subprocess.Popen([sys.executable, "-c", _STALLED_PARENT, log],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not _running(child), "the decoding process outlived its parent"
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)


#: A parent that starts a replay, then stops reading: the child blocks writing to it.
_STALLED_PARENT = """
import asyncio, sys
from geofence.engine import Engine
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from replay.decoding import DecodingProcess

async def main() -> None:
    pipeline = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.empty(None)))
    decoder = DecodingProcess.start([sys.argv[1]], pipeline.ingestor)
    await anext(decoder.runs(pipeline))
    print(decoder.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by init)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_no_fork_with_one_cpu(tmp_path: Path, single_threaded: None) -> None:
    log = _write(tmp_path / "port.nmea", scenario_lines()[:10])
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.fail("this test needs a machine with two CPUs")
    os.sched_setaffinity(0, {min(cpus)})
    try:
        assert DecodingProcess.start([log], Ingestor()) is None
    finally:
        os.sched_setaffinity(0, cpus)
    decoder = DecodingProcess.start([log], Ingestor())
    assert decoder is not None
    decoder.close()


def test_no_fork_while_another_thread_runs_nor_for_stdin(tmp_path: Path,
                                                         single_threaded: None) -> None:
    log = _write(tmp_path / "port.nmea", scenario_lines()[:10])
    assert DecodingProcess.start(["-"], Ingestor()) is None
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert DecodingProcess.start([log], Ingestor()) is None
    finally:
        release.set()
        other.join()


def test_the_replay_command_decodes_in_a_second_process_with_the_paced_result(
        tmp_path: Path) -> None:
    log = _write(tmp_path / "port.nmea", scenario_lines())
    outputs = []
    for speed in ("max", "1000000"):
        alerts = tmp_path / f"alerts-{speed}.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "harbourwatch.cli", "-v", "replay", log, "--zones",
             str(DEMO_ZONES), "--speed", speed, "--no-progress", "--alerts-out", str(alerts),
             "--db", f"sqlite:///{tmp_path / f'{speed}.db'}"],
            capture_output=True, text=True, timeout=300, check=True)
        assert ("decoding in process" in done.stderr) == (speed == "max"), done.stderr
        outputs.append(alerts.read_text())
    assert outputs[0].count("\n") > 20
    assert outputs[0] == outputs[1]


def test_the_replay_command_reports_a_log_that_breaks_off(tmp_path: Path) -> None:
    data = gzip.compress(b"\n".join(scenario_lines()) + b"\n")
    log = tmp_path / "cut.nmea.gz"
    log.write_bytes(data[: len(data) * 2 // 3])
    outputs = []
    for speed in ("max", "1000000"):
        alerts = tmp_path / f"alerts-{speed}.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "harbourwatch.cli", "replay", str(log), "--zones",
             str(DEMO_ZONES), "--speed", speed, "--no-progress", "--alerts-out", str(alerts),
             "--db", f"sqlite:///{tmp_path / f'{speed}.db'}"],
            capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr
        assert "harbourwatch: replay stopped: cannot read" in done.stderr
        assert "Traceback" not in done.stderr
        outputs.append(alerts.read_text())
    assert outputs[0].count("\n") > 10
    assert outputs[0] == outputs[1]
