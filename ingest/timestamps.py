"""Timestamps carried by log lines: ISO 8601 / epoch prefixes, epochs after the checksum,
Gatehouse ``$PGHP`` wrappers.

All return Unix seconds (float) or ``None`` when the text is not a timestamp we know.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

# Epochs plausible for AIS logs: 1990..2100 in seconds; milliseconds when > 10^11.
_MIN_EPOCH = 631152000.0
_MAX_EPOCH = 4102444800.0

_ISO = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})[T _](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    rb"\s*([Zz]|[+-]\d{2}(?::?\d{2})?|UTC)?$"
)
#: What a date-time prefix starts with (``2024-05-01``, ``[2024-05-01``): a prefix like this
#: that does not parse (a named zone, ``CEST``) is a time we cannot read, not junk.
_DATE_LIKE = re.compile(rb"\[?\d{4}-\d{2}-\d{2}[T _]\d{2}:\d{2}")


def epoch_number(text: bytes) -> float | None:
    """Unix seconds from ``1334337317``, ``1334337317.25`` or ``1327992119173`` (ms), of
    any year; None when the text is no finite number."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return value / 1000.0 if value > 1e11 else value


def epoch_value(text: bytes) -> float | None:
    """:func:`epoch_number`, when it is a time an AIS log can have (see :func:`plausible`)."""
    value = epoch_number(text)
    return value if value is not None and plausible(value) else None


def iso_value(text: bytes) -> float | None:
    """Unix seconds from an ISO 8601 date-time (naive means UTC)."""
    match = _ISO.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match.group(7)
    micro = int((fraction + b"000000")[:6]) if fraction else 0
    if second == 60:
        # A leap second (23:59:60, 23:59:60.500): Unix time has none, so it is taken as the
        # last microsecond of that minute (23:59:59.999999), before the next minute.
        second, micro = 59, 999_999
    try:
        moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None
    value = moment.timestamp()
    zone = match.group(8)
    if zone and zone not in (b"Z", b"z", b"UTC"):
        sign = -1 if zone[:1] == b"-" else 1
        digits = zone[1:].replace(b":", b"")  # hh, hhmm (an hour-only offset: +01)
        value -= sign * (int(digits[:2]) * 3600 + int(digits[2:] or b"0") * 60)
    return value


def plausible(value: float) -> bool:
    """A time an AIS log can have (1990..2100). Year 1 with an offset is not even a date
    (it broke formatting downstream); 1970 or the GPS epoch is a receiver with no clock."""
    return _MIN_EPOCH <= value <= _MAX_EPOCH


def prefix_text(prefix: bytes) -> bytes:
    """The text before the sentence without its separators and brackets."""
    text = prefix.strip().rstrip(b";,|: \t").strip()
    if text[:1] == b"[" and text[-1:] == b"]":  # [2024-05-01 10:00:00]
        text = text[1:-1].strip()
    return text


def date_like(prefix: bytes) -> bool:
    """Whether the text before the sentence looks like a date-time (whether or not it
    parses: ``2024-05-01T12:00:00 CEST``)."""
    return _DATE_LIKE.match(prefix.strip()) is not None


def prefix_time(prefix: bytes) -> float | None:
    """Time from the text before the sentence, e.g. ``2024-05-01T10:00:00Z;``,
    ``[2024-05-01 10:00:00]`` or ``1714557600 ``."""
    text = prefix_text(prefix)
    if not text:
        return None
    if text[:1].isdigit() and b"-" not in text[:5]:
        return epoch_number(text)  # of any year: framing keeps the sentence if implausible
    return iso_value(text)


def suffix_time(suffix: bytes) -> float | None:
    """Time from fields after the checksum: the first epoch-like field.

    Covers a bare arrival epoch (``*5F,1327992119173``) and the USCG format
    (``,d-109,S2105,t050056.00,T56.1,r003669946,1325394060,1325394001``) where the first
    epoch is the receiving station's time.
    """
    for field in suffix.split(b","):
        field = field.strip()
        if len(field) >= 9 and field[:1].isdigit():
            value = epoch_value(field)
            if value is not None:
                return value
    return None


def gatehouse_time(fields: list[bytes]) -> float | None:
    """``$PGHP,1,year,month,day,hour,minute,second,ms,...`` → Unix seconds."""
    if len(fields) < 9 or fields[1] != b"1":
        return None
    try:
        year, month, day, hour, minute, second, milli = (int(f) for f in fields[2:9])
        moment = datetime(year, month, day, hour, minute, second, milli * 1000, tzinfo=UTC)
    except ValueError:
        return None
    value = moment.timestamp()
    return value if plausible(value) else None
