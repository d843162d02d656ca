"""The direct decoder of types 1, 2, 3, 4, 11, 18 gives exactly what the pyais path gives.

Checked on every 168-bit position report of the bundled corpora, on the edge values of each
field (not-available sentinels, null island, turn indicators, extremes of every width) and on
random payloads. Either difference would change reports, so the comparison is of the whole
report JSON, float bits included.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decode import build_report, decode_payload
from ingest.framing import Sentence, frame
from ingest.logfile import read_log_lines
from ingest.positions import FIRST_CHARS, position_report
from ingest.report import Report
from tests.paths import FIXTURES

_ARMOUR = [chr(c) for c in range(48, 88)] + [chr(c) for c in range(96, 120)]
CORPORA = (
    FIXTURES / "aisabnormal" / "ais-sample.txt.gz",
    FIXTURES / "demo-port" / "ais-gladstone-2012-01-27.txt.gz",
    FIXTURES / "gpsd" / "sample.aivdm",
    FIXTURES / "libais" / "test.aivdm",
    FIXTURES / "aislib" / "stream_example.txt",
)


def armour(value: int) -> bytes:
    """168 bits → the 28-character payload."""
    return "".join(_ARMOUR[(value >> (162 - 6 * i)) & 63] for i in range(28)).encode()


def via_pyais(payload: bytes) -> Report:
    msg = decode_payload(payload, 0)
    return build_report(msg, payload, 0, 1.0e9, "line", ["rx"], ["nmea"], False, "A")


def direct(payload: bytes) -> Report | None:
    return position_report(payload, 1.0e9, "line", ["rx"], ["nmea"], False, "A")


def exact(report: Report) -> dict[str, Any]:
    """The report's JSON with floats as their bit patterns (no 1e-9 hiding a difference)."""
    return {key: (value.hex() if isinstance(value, float) else value)
            for key, value in report.to_dict().items()}


def assert_same(payload: bytes) -> None:
    ours = direct(payload)
    assert ours is not None, payload
    assert exact(ours) == exact(via_pyais(payload)), payload


def corpus_payloads() -> list[bytes]:
    payloads: set[bytes] = set()
    for path in CORPORA:
        for line in read_log_lines(str(path)):
            framed = frame(line)
            if (isinstance(framed, Sentence) and framed.count == 1 and framed.fill == 0
                    and len(framed.payload) == 28 and framed.payload[0] in FIRST_CHARS):
                payloads.add(framed.payload)
    return sorted(payloads)


def test_every_position_report_of_the_corpora_matches_pyais() -> None:
    payloads = corpus_payloads()
    assert len(payloads) > 20_000  # the two big logs are in
    kinds = {p[:1] for p in payloads}
    assert kinds >= {b"1", b"2", b"3", b"4", b"B"}
    for payload in payloads:
        assert_same(payload)


def type1(*, msg_type: int = 1, mmsi: int = 244_000_001, status: int = 0, turn: int = 0,
          speed: int = 0, accuracy: int = 0, lon: int = 0, lat: int = 0, course: int = 0,
          heading: int = 0) -> int:
    """The 168 bits of a type 1/2/3 from raw field values (signed ones two's complement)."""
    value = msg_type << 162 | mmsi << 130 | status << 126 | (turn & 0xFF) << 118
    value |= speed << 108 | accuracy << 107 | (lon & 0xFFFFFFF) << 79
    value |= (lat & 0x7FFFFFF) << 52 | course << 40 | heading << 31
    return value | 0x12345  # radio bits: must not matter


def type18(*, mmsi: int = 338_000_001, speed: int = 0, accuracy: int = 0, lon: int = 0,
           lat: int = 0, course: int = 0, heading: int = 0) -> int:
    value = 18 << 162 | mmsi << 130 | 0xAB << 122 | speed << 112 | accuracy << 111
    value |= (lon & 0xFFFFFFF) << 83 | (lat & 0x7FFFFFF) << 56 | course << 44 | heading << 35
    return value | 0x54321


def base_station(*, msg_type: int = 4, mmsi: int = 2_190_047, year: int = 2012,
                 month: int = 1, day: int = 27, hour: int = 11, minute: int = 47,
                 second: int = 12, accuracy: int = 0, lon: int = 0, lat: int = 0) -> int:
    value = msg_type << 162 | mmsi << 130 | year << 116 | month << 112 | day << 107
    value |= hour << 102 | minute << 96 | second << 90 | accuracy << 89
    value |= (lon & 0xFFFFFFF) << 61 | (lat & 0x7FFFFFF) << 34
    return value | 0x7 << 30 | 0x1234  # epfd and radio: must not matter


EDGES = [
    base_station(), base_station(msg_type=11, accuracy=1, lon=151 * 600_000, lat=-23 * 600_000),
    base_station(year=0, month=0, day=0, hour=24, minute=60, second=60),  # not available
    base_station(hour=24), base_station(minute=60), base_station(second=60),
    base_station(hour=23, minute=59, second=59), base_station(month=13),
    base_station(year=2011, month=2, day=29), base_station(year=2012, month=2, day=29),
    base_station(year=16383, month=12, day=31), base_station(day=0),
    base_station(lon=181 * 600_000, lat=91 * 600_000),
    type1(),  # null island: no position
    type1(lon=181 * 600_000, lat=91 * 600_000, speed=1023, course=3600, heading=511),
    type1(lon=-180 * 600_000, lat=-90 * 600_000, speed=1022, course=3599, heading=359),
    type1(lon=180 * 600_000 + 1, lat=90 * 600_000 + 1),  # just out of range
    type1(lon=-(1 << 27), lat=-(1 << 26), speed=1, course=1, heading=1),  # most negative
    type1(lon=(1 << 27) - 1, lat=(1 << 26) - 1),  # most positive
    type1(lon=1, lat=0), type1(lon=0, lat=-1), type1(lon=-1, lat=-1),
    *[type1(msg_type=t, turn=turn, status=s)
      for t in (1, 2, 3) for turn in (-128, -127, -126, -1, 0, 1, 5, 126, 127)
      for s in (0, 5, 15)],
    type1(accuracy=1, mmsi=(1 << 30) - 1), type1(mmsi=0),
    type18(), type18(lon=181 * 600_000, lat=91 * 600_000, speed=1023, course=3600,
                     heading=511),
    type18(lon=-(1 << 27), lat=-(1 << 26), speed=1022, course=3599, heading=359, accuracy=1),
    type18(lon=151 * 600_000 + 12345, lat=-23 * 600_000 - 777, mmsi=(1 << 30) - 1),
]


@pytest.mark.parametrize("bits", EDGES, ids=range(len(EDGES)))
def test_edge_values_match_pyais(bits: int) -> None:
    assert_same(armour(bits))


def test_sentinels_become_null_and_turn_indicators_are_named() -> None:
    report = direct(armour(type1(lon=181 * 600_000, lat=91 * 600_000, speed=1023,
                                 course=3600, heading=511, turn=-128)))
    assert report is not None
    assert (report.lat, report.lon, report.speed, report.course, report.heading,
            report.turn) == (None, None, None, None, None, None)
    fast = direct(armour(type1(turn=127, lon=600_000, lat=-600_000, speed=123, course=2345,
                               heading=234)))
    assert fast is not None
    assert fast.extra == {"turn_indicator": "fastright"}
    assert (fast.lat, fast.lon, fast.speed, fast.course, fast.heading, fast.turn) == (
        -1.0, 1.0, 12.3, 234.5, 234, None)
    turning = direct(armour(type1(turn=-20)))
    assert turning is not None and turning.turn == -math.copysign(round((20 / 4.733) ** 2), 1)


def test_base_station_time_and_other_types_are_left_to_pyais() -> None:
    report = direct(armour(base_station()))
    assert report is not None
    assert report.extra == {"station_time": 1327664832.0}  # 2012-01-27T11:47:12Z
    missing = direct(armour(base_station(hour=24)))
    assert missing is not None and missing.extra == {}
    assert direct(armour(5 << 162)) is None
    assert direct(armour(24 << 162)) is None


@settings(max_examples=3000, deadline=None)
@given(bits=st.integers(min_value=0, max_value=(1 << 162) - 1),
       msg_type=st.sampled_from([1, 2, 3, 4, 11, 18]))
def test_random_payloads_match_pyais(bits: int, msg_type: int) -> None:
    assert_same(armour(msg_type << 162 | bits))
