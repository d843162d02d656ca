"""Property-based: whatever bytes arrive, nothing escapes and every line is accounted for.

Lines are drawn from valid sentences (single and multipart, with and without tag blocks and
log timestamps), then mutated (truncated, bit-flipped, spliced, replaced by random bytes),
shuffled and spread over sources. Bounded examples keep the file to a few seconds.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.ingestor import Ingestor
from ingest.report import Report
from tests.ingest_helpers import (
    base_station,
    group_tag,
    multipart,
    position,
    single,
    static,
    tag_block,
)

T0 = 1_700_000_000

_MESSAGES: list[dict[str, Any]] = [
    position(),
    position(mmsi=211000001, lat=-23.8, lon=151.2, speed=0.0, heading=511, course=360.0),
    position(mmsi=211000002, lat=91.0, lon=181.0, speed=102.3, turn=-128),
    position(mmsi=211000003, lat=0.0, lon=0.0),
    base_station(2012, 1, 27, 9, 57, 30),
    {"type": 18, "mmsi": 338000001, "lat": 51.0, "lon": 3.0, "speed": 2.0, "course": 10.0},
    {"type": 21, "mmsi": 992111111, "name": "BUOY 1", "lat": 51.0, "lon": 3.0},
    {"type": 24, "mmsi": 338000001, "partno": 0, "shipname": "SAILOR"},
    {"type": 9, "mmsi": 111000001, "lat": 51.0, "lon": 3.0, "alt": 300, "speed": 100},
    {"type": 27, "mmsi": 211000004, "lat": 51.0, "lon": 3.0, "speed": 12, "course": 90},
    {"type": 8, "mmsi": 211000005, "dac": 1, "fid": 31, "data": b"\x01\x02\x03"},
]

SINGLES: list[str] = [single(m) for m in _MESSAGES] + [single(static())]
GROUPS: list[list[str]] = [
    multipart(static(mmsi=211000010), 2, seq="1"),
    multipart(static(mmsi=211000011), 3, seq="2", channel="B"),
    multipart(static(mmsi=211000012), 2, seq="1"),  # same key as the first
]
TAGGED_GROUP = [group_tag(1, 2, 77, s="rSAT", c=T0) + GROUPS[0][0],
                group_tag(2, 2, 77) + GROUPS[0][1]]
META = ["$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17", "\\si:AISD*3F\\"]


def _decorate(line: str, how: int, offset: int) -> str:
    """Put a time on a valid line in one of the ways logs do."""
    if how == 1:
        return tag_block(c=T0 + offset, s="r1") + line
    if how == 2:
        return tag_block(c=(T0 + offset) * 1000) + line
    if how == 3:
        return f"{T0 + offset} {line}"
    if how == 4:
        return f"2023-11-14T22:13:{offset % 60:02d}Z;{line}"
    if how == 5:
        return f"{line},{(T0 + offset) * 1000}"
    return line


@st.composite
def valid_lines(draw: st.DrawFn) -> list[bytes]:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        lines = [draw(st.sampled_from(SINGLES))]
    elif kind == 1:
        lines = list(draw(st.sampled_from(GROUPS)))
    elif kind == 2:
        lines = list(TAGGED_GROUP)
    elif kind == 3:
        lines = [draw(st.sampled_from(META))]
    else:
        group = draw(st.sampled_from(GROUPS))
        lines = [draw(st.sampled_from(group))]  # a lone fragment
    how = draw(st.integers(0, 5))
    offset = draw(st.integers(0, 30))
    return [_decorate(line, how, offset).encode() for line in lines]


@st.composite
def mutated(draw: st.DrawFn, line: bytes) -> bytes:
    """One of: unchanged, truncated, a flipped bit, spliced bytes, CR/LF noise."""
    how = draw(st.integers(0, 5))
    if how == 0 or not line:
        return line
    at = draw(st.integers(0, len(line) - 1))
    if how == 1:
        return line[:at]
    if how == 2:
        bit = draw(st.integers(0, 7))
        return line[:at] + bytes([line[at] ^ (1 << bit)]) + line[at + 1:]
    if how == 3:
        return line[:at] + draw(st.binary(min_size=1, max_size=8)) + line[at:]
    if how == 4:
        return line[:at] + draw(st.sampled_from([b"*", b",", b"\\", b"!", b"$", b"\r"])) + line[at:]
    return line + b"\r\n"


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[str, bytes, float | None]]:
    chunks = draw(st.lists(valid_lines(), min_size=1, max_size=25))
    lines = [line for chunk in chunks for line in chunk]
    lines = [draw(mutated(line)) for line in lines]
    lines += draw(st.lists(st.binary(max_size=120), max_size=5))
    lines = draw(st.permutations(lines)) if draw(st.booleans()) else lines
    live = draw(st.booleans())
    out: list[tuple[str, bytes, float | None]] = []
    for i, line in enumerate(lines):
        source = draw(st.sampled_from(["north", "south", "sat"]))
        received = float(T0 + i) if live else None
        out.append((source, line, received))
    return out


def _check_report(report: Report) -> None:
    assert 1 <= report.msg_type <= 27
    assert isinstance(report.mmsi, int) and 0 <= report.mmsi < 2**30
    assert math.isfinite(report.time)
    assert report.sources
    assert report.nmea
    assert (report.lat is None) == (report.lon is None)
    if report.lat is not None and report.lon is not None:
        assert -90.0 <= report.lat <= 90.0
        assert -180.0 <= report.lon <= 180.0
        assert (report.lat, report.lon) != (0.0, 0.0)
    assert report.speed is None or 0.0 <= report.speed < 102.3
    assert report.course is None or 0.0 <= report.course < 360.0
    assert report.heading is None or 0 <= report.heading < 360
    assert report.turn is None or -127 < report.turn < 127
    json.dumps(report.to_dict())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_no_exception_and_every_line_counted(stream: list[tuple[str, bytes, float | None]]
                                             ) -> None:
    ingestor = Ingestor(max_pending_groups=4)
    reports: list[Report] = []
    for source, data, received in stream:
        reports.extend(ingestor.feed(source, data, received))
    reports.extend(ingestor.flush())
    fed: dict[str, int] = {}
    for source, _, _ in stream:
        fed[source] = fed.get(source, 0) + 1
    for source, count in fed.items():
        health = ingestor.health(source)
        assert health.lines == count
        assert health.lines == health.sentences + health.meta + sum(health.rejected.values())
        assert health.messages <= health.sentences
        json.dumps(health.to_dict())
    assert sum(ingestor.health(s).messages for s in fed) == len(reports)
    assert len(ingestor.assembler) == 0
    for report in reports:
        _check_report(report)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=30))
def test_binary_garbage(lines: list[bytes]) -> None:
    ingestor = Ingestor()
    for line in lines:
        assert not ingestor.feed("noise", line, None)
    ingestor.flush()
    health = ingestor.health("noise")
    assert health.lines == len(lines)
    assert health.lines == health.sentences + health.meta + sum(health.rejected.values())
