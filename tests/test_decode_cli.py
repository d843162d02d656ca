"""``harbourwatch decode`` as a user runs it: a real subprocess on real files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ingest.report import POSITION_TYPES
from tests.ingest_helpers import fixture, position, single

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")
DESIGN_FIELDS = {
    "mmsi", "lat", "lon", "speed", "course", "heading", "turn", "status", "accuracy",
    "shipname", "callsign", "imo", "shiptype", "to_bow", "to_stern", "to_port",
    "to_starboard", "draught", "destination", "time", "msg_type", "sources", "nmea",
}


def _decode(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "harbourwatch.cli", "decode", *args],
        input=stdin, capture_output=True, timeout=120, check=False,
    )


def test_decode_gzip_log_with_stats() -> None:
    path = fixture("demo-port", "ais-gladstone-2012-01-27.txt.gz")
    result = _decode(str(path), "--stats")
    assert result.returncode == 0, result.stderr.decode()
    reports: list[dict[str, Any]] = [json.loads(line) for line in result.stdout.splitlines()]
    stats = json.loads(result.stderr)
    (source,) = stats["sources"]
    assert source["name"] == "ais-gladstone-2012-01-27"  # as replay names it
    assert source["lines"] == 44687
    assert source["lines"] == (source["sentences"] + source["meta"]
                               + sum(source["rejected"].values()))
    assert source["messages"] == len(reports)
    assert sum(source["by_type"].values()) == len(reports)
    assert source["checksum_failures"] >= 3
    seen: set[str] = set()
    for report in reports:
        seen.update(report)
        assert isinstance(report["mmsi"], int)
        assert 1 <= report["msg_type"] <= 27
        assert ISO_Z.match(report["time"]), report["time"]
        assert report["time"].startswith("2012-01-27T")
        assert report["sources"]
        assert all(n.startswith("!") for n in report["nmea"])
        if report["msg_type"] in POSITION_TYPES:  # "not available" is null, not left out
            assert report["lat"] is None or -90 <= report["lat"] <= 90
            assert report["lon"] is None or -180 <= report["lon"] <= 180
        if report["msg_type"] in (1, 2, 3):
            assert {"speed", "course", "heading", "turn", "status"} <= set(report)
    assert seen >= DESIGN_FIELDS  # every design field occurs somewhere
    assert stats["receivers"]


def test_decode_without_stats_keeps_stderr_quiet() -> None:
    result = _decode(str(fixture("libais", "typeexamples.nmea")))
    assert result.returncode == 0
    assert result.stderr == b""
    assert len(result.stdout.splitlines()) == 26


def test_decode_stdin() -> None:
    lines = (single(position(mmsi=211000001)) + "\n" + "garbage\n").encode()
    result = _decode("-", "--stats", stdin=lines)
    assert result.returncode == 0
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert report["mmsi"] == 211000001
    assert report["lat"] == 51.9
    assert report["time"] is None  # a log with no time at all
    stats = json.loads(result.stderr)
    assert stats["sources"][0]["name"] == "stdin"
    assert stats["sources"][0]["rejected"] == {"junk": 1}


def test_missing_file_exits_2_with_a_clear_message_as_replay_does(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-log.nmea"
    result = _decode(str(missing))
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode() == f"harbourwatch: {missing}: no such file\n"


def test_bad_usage_exits_2() -> None:
    result = _decode()
    assert result.returncode == 2
    assert b"FILE" in result.stderr


def test_two_receivers_logs_of_one_file_name_stay_two_sources(tmp_path: Path) -> None:
    """a/rx.txt and b/rx.txt: one source, so one receiver's lines counted as duplicates
    of the other's."""
    line = single(position(mmsi=244000001)) + "\n"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "rx.txt").write_text(line)
    result = _decode(str(tmp_path / "a" / "rx.txt"), str(tmp_path / "b" / "rx.txt"), "--stats")
    assert result.returncode == 0, result.stderr.decode()
    stats = json.loads(result.stderr)
    assert [s["name"] for s in stats["sources"]] == ["rx", "rx-2"]
    (report,) = [json.loads(out) for out in result.stdout.splitlines()]
    assert report["sources"] == ["rx", "rx-2"]


def test_verbose_goes_before_or_after_the_command() -> None:
    """``harbourwatch run -v`` was a usage error: -v had to come before the command."""
    from harbourwatch.cli import build_parser

    parser = build_parser()
    counts = [(args := parser.parse_args(argv)).verbose + args.verbose_after for argv in (
        ["decode", "x.nmea"], ["decode", "-v", "x.nmea"], ["-vv", "decode", "x.nmea"],
        ["decode", "x.nmea", "-vv"], ["-v", "decode", "x.nmea", "-v"])]
    assert counts == [0, 1, 2, 2, 2]


def test_a_pipe_is_a_log_to_decode(tmp_path: Path) -> None:
    """``decode <(zcat log.gz)`` and a FIFO were refused as "no such file" (not regular)."""
    import os
    import threading

    fifo = tmp_path / "feed.fifo"
    os.mkfifo(fifo)
    line = single(position(mmsi=244123456)) + "\n"

    def write() -> None:
        with open(fifo, "w") as fh:
            fh.write(line)

    writer = threading.Thread(target=write)
    writer.start()
    result = _decode(str(fifo))
    writer.join(10)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mmsi"] == 244123456
    assert _decode(str(tmp_path)).returncode == 2  # a directory is no log
