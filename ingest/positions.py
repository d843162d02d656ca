"""Position reports (types 1, 2, 3, 18, and base stations 4, 11) read straight from the payload.

These are most of AIS traffic, and for them pyais's own 168-bit fast path spends most of its
time on objects we throw away (bit vector, attrs message, enums). Here the armoured payload
becomes one integer (a byte translation into the base64 alphabet, decoded in C) and each
field is a shift and a mask, with pyais's conversions: positions as
``round(raw / 600000, 6)`` (integer arithmetic, bit-identical, as pyais does), speed and
course in tenths, rate of turn as ``copysign(round((raw / 4.733) ** 2), raw)``.

Only exact 168-bit payloads (28 characters, no fill bits) take this path; anything else
goes through pyais (:mod:`ingest.decode`). ``tests/test_positions.py`` checks this module
against pyais field by field on every such message of the bundled corpora and on random
payloads.
"""

from __future__ import annotations

import math
from binascii import a2b_base64
from datetime import UTC, datetime

from ingest.report import Report

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: AIS armour ('0'..'W' = 0..39, '`'..'w' = 40..63) → the base64 letter of the same value.
_ARMOUR = bytes(range(48, 88)) + bytes(range(96, 120))
_TO_BASE64 = bytes.maketrans(_ARMOUR, _B64)
#: First payload characters of types 1, 2, 3 ('1', '2', '3'), 4 ('4'), 11 (';'), 18 ('B').
FIRST_CHARS = frozenset(b"1234;B")
#: Rate of turn ±127: turning fast, no turn indicator (gpsd names).
TURN_INDICATORS = {127: "fastright", -127: "fastleft"}
_NOT_AVAILABLE_SPEED = 1023  # 102.3 kn
_NOT_AVAILABLE_COURSE = 3600  # 360.0°


def _degrees(raw: int) -> float:
    """pyais's ``to_lat_lon``: ``round(raw / 600000, 6)`` without the decimal round trip."""
    return ((10 * raw + 3) // 6) / 1e6


def _lat_lon(lon_raw: int, lat_raw: int) -> tuple[float | None, float | None]:
    """(lat, lon) from the raw two's-complement fields; (None, None) when not available
    (91°, 181°), out of range, or the (0, 0) null island."""
    if lon_raw & 0x8000000:
        lon_raw -= 0x10000000
    if lat_raw & 0x4000000:
        lat_raw -= 0x8000000
    lon = _degrees(lon_raw)
    lat = _degrees(lat_raw)
    if -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0 and (lat_raw != 0 or lon_raw != 0):
        return lat, lon
    return None, None


def position_report(payload: bytes, time: float, time_source: str, sources: list[str],
                    nmea: list[str], own: bool, channel: str) -> Report | None:
    """The report of a 168-bit type 1/2/3/4/11/18 payload; ``None`` for any other payload.

    The caller has checked the payload's characters (framing) and that it is 28 long with
    no fill bits.
    """
    v = int.from_bytes(a2b_base64(payload.translate(_TO_BASE64)), "big")
    msg_type = v >> 162
    mmsi = (v >> 130) & 0x3FFFFFFF
    if msg_type == 4 or msg_type == 11:
        return _base_station(v, msg_type, mmsi, time, time_source, sources, nmea, own, channel)
    if msg_type == 18:
        k = v >> 4  # type 18 has 4 more bits before its speed: then the same layout
    elif 1 <= msg_type <= 3:
        k = v
    else:
        return None
    speed_raw = (k >> 108) & 0x3FF
    accuracy = bool((k >> 107) & 1)
    lon_raw = (k >> 79) & 0xFFFFFFF
    lat_raw = (k >> 52) & 0x7FFFFFF
    course_raw = (k >> 40) & 0xFFF
    heading_raw = (k >> 31) & 0x1FF
    lat, lon = _lat_lon(lon_raw, lat_raw)
    speed = None if speed_raw >= _NOT_AVAILABLE_SPEED else speed_raw / 10.0
    course = None if course_raw >= _NOT_AVAILABLE_COURSE else course_raw / 10.0
    heading = None if heading_raw >= 360 else heading_raw
    if msg_type == 18:
        return Report(mmsi, 18, time, time_source, sources, nmea, own, channel or None,
                      lat, lon, speed, course, heading, None, None, accuracy)
    turn_raw = (v >> 118) & 0xFF
    if turn_raw > 127:
        turn_raw -= 256
    indicator = TURN_INDICATORS.get(turn_raw)
    turn: float | None
    if indicator is not None or turn_raw == -128:
        turn = None
    elif turn_raw == 0:
        turn = 0.0
    else:
        turn = math.copysign(round((turn_raw / 4.733) ** 2), turn_raw)
    report = Report(mmsi, msg_type, time, time_source, sources, nmea, own, channel or None,
                    lat, lon, speed, course, heading, turn, (v >> 126) & 0xF, accuracy)
    if indicator is not None:
        report.extra["turn_indicator"] = indicator
    return report


def _base_station(v: int, msg_type: int, mmsi: int, time: float, time_source: str,
                  sources: list[str], nmea: list[str], own: bool, channel: str) -> Report:
    """Types 4 and 11: position, accuracy and the station's UTC (``extra.station_time``)."""
    lat, lon = _lat_lon((v >> 61) & 0xFFFFFFF, (v >> 34) & 0x7FFFFFF)
    report = Report(mmsi, msg_type, time, time_source, sources, nmea, own, channel or None,
                    lat, lon, accuracy=bool((v >> 89) & 1))
    stamp = station_time((v >> 116) & 0x3FFF, (v >> 112) & 0xF, (v >> 107) & 0x1F,
                         (v >> 102) & 0x1F, (v >> 96) & 0x3F, (v >> 90) & 0x3F)
    if stamp is not None:
        report.extra["station_time"] = stamp
    return report


def station_time(year: int | None, month: int | None, day: int | None, hour: int | None,
                 minute: int | None, second: int | None) -> float | None:
    """A base station's UTC in Unix seconds; ``None`` when not available (year, month or
    day 0, hour 24, minute or second 60), missing (a short message) or not a date."""
    if year is None or month is None or day is None or hour is None or minute is None \
            or second is None or hour >= 24 or minute >= 60 or second >= 60:
        return None
    midnight = _midnight(year, month, day)
    if midnight is None:
        return None
    return midnight + (hour * 3600 + minute * 60 + second)


_MIDNIGHTS: dict[tuple[int, int, int], float | None] = {}


def _midnight(year: int, month: int, day: int) -> float | None:
    """Unix seconds of a date's 00:00 UTC (``None`` when not a date); stations repeat it."""
    key = (year, month, day)
    if key in _MIDNIGHTS:
        return _MIDNIGHTS[key]
    try:
        value: float | None = datetime(year, month, day, tzinfo=UTC).timestamp()
    except ValueError:
        value = None
    if len(_MIDNIGHTS) >= 4096:
        _MIDNIGHTS.clear()
    _MIDNIGHTS[key] = value
    return value
