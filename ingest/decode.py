"""Payload → :class:`Report` with pyais, turning AIS "not available" values into ``None``.

pyais is kept behind this module: its exceptions never escape (they become a counted
``decode_error``), and its raw sentinels (lat 91, lon 181, speed 102.3, course 360,
heading 511, turn -128) are mapped to null here, once.
"""

from __future__ import annotations

from typing import Any

from pyais.bit_vector import bit_vector
from pyais.messages import MSG_CLASS

from ingest.positions import TURN_INDICATORS, station_time
from ingest.report import Report

#: The message types ITU-R M.1371 defines. pyais also has classes for type 0 (its type 1
#: class: a garbled first character would pass as a position fix) and for reserved type 28.
_DEFINED_TYPES = range(1, 28)
#: Message class by the payload's first byte (its 6 bits are the message type).
_CLASS_BY_CHAR: dict[int, Any] = {
    c: MSG_CLASS.get(t) if (t := c - 56 if c - 48 > 40 else c - 48) in _DEFINED_TYPES else None
    for c in range(48, 120)
}


class DecodeError(Exception):
    """The payload is not a message we can decode (reason in ``args[0]``)."""


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.replace("@", " ").strip()
    return text or None


def _position(report: Report, lon: Any, lat: Any) -> None:
    """Set lat/lon unless not available (91/181), out of range, or the (0, 0) null island."""
    if lon is None or lat is None:
        return
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return
    if lat == 0.0 and lon == 0.0:
        return
    report.lat = lat
    report.lon = lon


def _kinematics(report: Report, msg: Any) -> None:
    """Position, speed, course and heading of a class A or B position report."""
    _position(report, msg.lon, msg.lat)
    report.speed = _speed(msg.speed)
    report.course = _course(msg.course)
    report.heading = _heading(msg.heading)


def _course(value: Any, unavailable: float = 360.0) -> float | None:
    if value is None or value >= unavailable or value < 0:
        return None
    return float(value)


def _speed(value: Any, unavailable: float = 102.3) -> float | None:
    if value is None or value >= unavailable - 1e-9:
        return None
    return float(value)


def _heading(value: Any) -> int | None:
    if value is None or value >= 360:
        return None
    return int(value)


def _dims(report: Report, msg: Any) -> None:
    report.to_bow = getattr(msg, "to_bow", None)
    report.to_stern = getattr(msg, "to_stern", None)
    report.to_port = getattr(msg, "to_port", None)
    report.to_starboard = getattr(msg, "to_starboard", None)


def _shiptype(value: Any) -> int | None:
    return int(value) if value else None


def _signed(raw: int, width: int) -> int:
    return raw - (1 << width) if raw & (1 << (width - 1)) else raw


def decode_payload(payload: bytes, fill: int) -> Any:
    """pyais message object for an armoured payload; :class:`DecodeError` on failure."""
    try:
        bits = bit_vector(payload, fill)
        if fill == 0 or len(payload) > 1:
            cls = _CLASS_BY_CHAR.get(payload[0])  # the type is the first 6-bit character
        else:
            msg_type = bits.get(0, 6)
            cls = MSG_CLASS.get(msg_type) if msg_type in _DEFINED_TYPES else None
        if cls is None:
            raise DecodeError("unknown_type")
        return cls.from_vector(bits)
    except DecodeError:
        raise
    except Exception as exc:  # pyais raises many kinds on short or odd payloads
        raise DecodeError("decode_error") from exc


def build_report(msg: Any, payload: bytes, fill: int, time: float, time_source: str,
                 sources: list[str], nmea: list[str], own: bool, channel: str) -> Report:
    """Map a pyais message to a :class:`Report` (gpsd names and units).

    A payload too short for its type leaves pyais's fields ``None``: :class:`DecodeError`
    (``missing_fields``), counted like any other, never an exception out of ingest.
    """
    try:
        return _build_report(msg, payload, fill, time, time_source, sources, nmea, own,
                             channel)
    except (TypeError, ValueError, AttributeError) as exc:
        raise DecodeError("missing_fields") from exc


def _build_report(msg: Any, payload: bytes, fill: int, time: float, time_source: str,
                  sources: list[str], nmea: list[str], own: bool, channel: str) -> Report:
    msg_type = msg.msg_type
    mmsi = msg.mmsi
    if not isinstance(mmsi, int):
        raise DecodeError("decode_error")
    report = Report(mmsi=mmsi, msg_type=msg_type, time=time, time_source=time_source,
                    sources=sources, nmea=nmea, own=own, channel=channel or None)
    if msg_type <= 3:
        _kinematics(report, msg)
        report.status = int(msg.status)
        report.accuracy = bool(msg.accuracy)
        turn = int(msg.turn) if abs(msg.turn) in (127, 128) else msg.turn
        if turn in TURN_INDICATORS:
            report.extra["turn_indicator"] = TURN_INDICATORS[turn]
        elif turn != -128:
            report.turn = float(turn)
    elif msg_type == 18:
        _kinematics(report, msg)
        report.accuracy = bool(msg.accuracy)
    elif msg_type == 5:
        report.shipname = _text(msg.shipname)
        report.callsign = _text(msg.callsign)
        report.imo = msg.imo or None
        report.shiptype = _shiptype(msg.ship_type)
        _dims(report, msg)
        report.draught = float(msg.draught) if msg.draught else None
        report.destination = _text(msg.destination)
    elif msg_type == 24:
        report.partno = msg.partno
        if msg.partno == 0:
            report.shipname = _text(msg.shipname)
        else:
            report.shiptype = _shiptype(msg.ship_type)
            report.callsign = _text(msg.callsign)
            if str(mmsi).startswith("98"):
                report.extra["mothership_mmsi"] = getattr(msg, "mothership_mmsi", None)
            else:
                _dims(report, msg)
    elif msg_type == 19:
        _kinematics(report, msg)
        report.accuracy = bool(msg.accuracy)
        report.shipname = _text(msg.shipname)
        report.shiptype = _shiptype(msg.ship_type)
        _dims(report, msg)
    elif msg_type in (4, 11):
        _position(report, msg.lon, msg.lat)
        report.accuracy = bool(msg.accuracy)
        stamp = _station_time(msg)
        if stamp is not None:
            report.extra["station_time"] = stamp
    elif msg_type == 9:
        _position(report, msg.lon, msg.lat)
        report.speed = None if msg.speed >= 1023 else float(msg.speed)
        report.course = _course(msg.course)
        report.accuracy = bool(msg.accuracy)
        report.extra["alt"] = None if msg.alt >= 4095 else msg.alt
    elif msg_type == 21:
        _position(report, msg.lon, msg.lat)
        report.accuracy = bool(msg.accuracy)
        name = (_text(msg.name) or "") + (_text(getattr(msg, "name_ext", None)) or "")
        report.shipname = name or None
        report.extra["aid_type"] = int(msg.aid_type)
        _dims(report, msg)
        report.extra["virtual_aid"] = bool(msg.virtual_aid)
        report.extra["off_position"] = bool(msg.off_position)
    elif msg_type in (12, 14):
        # Safety text: an AIS-SART says "SART ACTIVE" or "SART TEST" (IEC 61097-14).
        report.extra["text"] = _text(msg.text)
    elif msg_type == 27:
        _position(report, msg.lon, msg.lat)
        report.speed = None if msg.speed >= 63 else float(msg.speed)
        report.course = _course(msg.course, unavailable=360.0)
        report.status = int(msg.status)
        report.accuracy = bool(msg.accuracy)
    elif msg_type == 17:
        # pyais reads type 17 positions unsigned and in 1/10 minute: decode from the bits.
        bits = bit_vector(payload, fill)
        if len(bits) >= 80:
            lon = _signed(bits.get(40, 18), 18) / 600.0
            lat = _signed(bits.get(58, 17), 17) / 600.0
            _position(report, round(lon, 4), round(lat, 4))
    return report


def sentence_station_time(payload: bytes, fill: int) -> float | None:
    """UTC of a single-part base-station report, without building a report (time peeks)."""
    if payload[:1] not in (b"4", b";"):
        return None
    try:
        return _station_time(decode_payload(payload, fill))
    except DecodeError:
        return None


def sentence_station(payload: bytes, fill: int) -> tuple[int, float] | None:
    """MMSI and UTC of a single-part base-station report (``sentence_station_time``)."""
    if payload[:1] not in (b"4", b";"):
        return None
    try:
        msg = decode_payload(payload, fill)
    except DecodeError:
        return None
    stamp = _station_time(msg)
    return None if stamp is None or not isinstance(msg.mmsi, int) else (msg.mmsi, stamp)


def _station_time(msg: Any) -> float | None:
    """UTC of a base-station report (type 4/11), or ``None`` when not available."""
    return station_time(msg.year, msg.month, msg.day, msg.hour, msg.minute, msg.second)
