"""Line framing: one line of bytes → an AIS sentence, a meta line, or a rejection reason.

Accepted: ``!..VDM``/``!..VDO`` of any talker with a valid NMEA checksum, optionally behind
an NMEA 4.10 tag block (``\\c:..,s:..,g:..*hh\\``) with its own checksum, optionally behind an
ISO 8601 or epoch prefix, optionally followed by fields after the checksum (arrival epoch,
USCG metadata). ``$PGHP`` Gatehouse lines are meta lines that time the next sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.nmea import is_armoured_payload, xor_checksum
from ingest.timestamps import (
    date_like,
    epoch_value,
    gatehouse_time,
    plausible,
    prefix_time,
    suffix_time,
)

# Rejection reasons: every rejected line is counted under exactly one of these.
EMPTY = "empty"
COMMENT = "comment"
NOT_ASCII = "not_ascii"
TOO_LONG = "too_long"
JUNK = "junk"
NOT_AIS = "not_ais"
NO_CHECKSUM = "no_checksum"
BAD_CHECKSUM = "checksum"
BAD_TAGBLOCK = "tagblock_checksum"
MALFORMED = "malformed"
BAD_FRAGMENT = "bad_fragment"
BAD_PAYLOAD = "bad_payload"

REJECT_REASONS = (
    EMPTY, COMMENT, NOT_ASCII, TOO_LONG, JUNK, NOT_AIS, NO_CHECKSUM, BAD_CHECKSUM,
    BAD_TAGBLOCK, MALFORMED, BAD_FRAGMENT, BAD_PAYLOAD,
)

#: Longer lines are garbage or a broken stream (an AIS sentence is at most 82 chars plus
#: tag block and log metadata).
MAX_LINE = 1024
# Receivers write the radio channel as A/B, 1/2, or (for long type 5 sentences) 0 or empty.
_CHANNELS = {b"A": "A", b"B": "B", b"1": "A", b"2": "B", b"": "", b"0": "", b"C": "C",
             b"D": "D"}
_FILL = {b"0": 0, b"1": 1, b"2": 2, b"3": 3, b"4": 4, b"5": 5}
_DIGIT = {b"1": 1, b"2": 2, b"3": 3, b"4": 4, b"5": 5, b"6": 6, b"7": 7, b"8": 8, b"9": 9}
_MARKS = (b"!", b"\\", b"$")


@dataclass(slots=True)
class Sentence:
    """One AIS sentence (a fragment or a whole single-part message)."""

    talker: str
    own: bool
    count: int
    number: int
    seq: bytes
    channel: str
    payload: bytes
    fill: int
    raw: bytes
    time: float | None
    time_source: str | None
    station: str | None
    #: The tag block's group id (``g:1-2-3985`` → ``3985``): which fragments go together.
    group: str | None = None
    #: A date-time before the sentence that did not time it (unreadable or implausible).
    prefix_unused: bool = False


@dataclass(slots=True)
class Meta:
    """A line that carries no message but is understood: a Gatehouse time, a bare tag block."""

    time: float | None
    #: A ``$PGHP`` line's shore station (its PSS field), the receiver of the next sentence.
    station: str | None = None
    #: A ``$PGHP`` line (it speaks for the next line), not a bare tag block.
    gatehouse: bool = False


#: A bare tag block line (some feeds send one before every sentence): one shared object.
_BARE_TAG = Meta(None)
_UNSEEN = ("", False)  # a sentinel: not a cached head
#: Sentence heads seen so far (``AIVDM`` → talker, own); heads repeat on every line.
_HEADS: dict[bytes, tuple[str, bool] | None] = {}
#: Tag block contents recently verified → (time, station, group) or None; a station's block
#: repeats within a second, and some feeds send the same bare block before every sentence.
_TAGS: dict[bytes, tuple[float | None, str | None, str | None] | None] = {}
#: Gatehouse dates → Unix seconds of their midnight.
_DAYS: dict[tuple[bytes, bytes, bytes], float | None] = {}
_CACHE_MAX = 4096
#: ``int()`` of the plain and zero-padded spellings of 0..999 (clock fields), as a lookup.
_SMALL: dict[bytes, int] = {
    form: n for n in range(1000) for form in (b"%d" % n, b"%02d" % n, b"%03d" % n)
}
_HEX = "0123456789ABCDEFabcdef"
_HEX2 = {(a + b).encode(): int(a + b, 16) for a in _HEX for b in _HEX}


#: Stripped from both ends of a line: whitespace, and the NULs a serial link pads with.
_PADDING = b" \t\r\n\x0b\x0c\x00"
_BOM = b"\xef\xbb\xbf"


def frame(line: bytes) -> Sentence | Meta | str:
    """Classify one line; a ``str`` result is the rejection reason."""
    line = line.strip(_PADDING)
    if not line:
        return EMPTY
    if len(line) > MAX_LINE:
        return TOO_LONG
    if not line.isascii():
        if not line.startswith(_BOM):
            return NOT_ASCII
        line = line[len(_BOM):].strip(_PADDING)  # a log file saved by a Windows editor
        if not line or not line.isascii():
            return NOT_ASCII if line else EMPTY
    first = line[0]
    line_time: float | None = None
    prefix_unused = False
    if first != 33 and first != 92 and first != 36:  # not ! \ $
        if first == 35:  # '#'
            return COMMENT
        start = min((i for i in (line.find(m) for m in _MARKS) if i > 0), default=-1)
        if start < 0:
            return JUNK
        line_time = prefix_time(line[:start])
        if line_time is None:
            if not date_like(line[:start]):
                return JUNK
            # A date-time we cannot read (a named zone: CEST): the sentence stays, its time
            # comes from elsewhere (counted: ``prefix_time_unused``).
            prefix_unused = True
        elif not plausible(line_time):
            # A date, but not one an AIS log can have (a receiver without a clock stamps
            # 1970 or the GPS epoch): the sentence stays, its time comes from elsewhere.
            line_time = None
            prefix_unused = True
        line = line[start:]
        first = line[0]

    station: str | None = None
    group: str | None = None
    time_source: str | None = None if line_time is None else "line"
    if first == 92:  # '\\': a tag block
        end = line.find(b"\\", 1)
        if end < 0:
            return BAD_TAGBLOCK
        block = line[1:end]
        if block in _TAGS:
            tag = _TAGS[block]
        else:
            tag = _tag_block(block)
            if len(_TAGS) >= _CACHE_MAX:
                _TAGS.clear()
            _TAGS[block] = tag
        if tag is None:
            return BAD_TAGBLOCK
        tag_time, station, group = tag
        if tag_time is not None:
            line_time, time_source = tag_time, "tagblock"
        line = line[end + 1 :]
        if not line:
            return _BARE_TAG
        first = line[0]

    if first == 36 and line[1:5] != b"PGHP":
        # Other NMEA sentences (a third of some feeds): known not to be AIS without a checksum.
        return NOT_AIS
    star = line.find(b"*")
    if star < 0:
        if first == 33 and line[3:6] in (b"VDM", b"VDO"):
            return NO_CHECKSUM
        return NOT_AIS if first == 33 or first == 36 else JUNK
    body = line[1:star]
    expected = _HEX2.get(line[star + 1 : star + 3])
    if expected is None:
        return NO_CHECKSUM
    if xor_checksum(body) != expected:
        return BAD_CHECKSUM
    if len(line) > star + 3 and line_time is None:
        line_time = suffix_time(line[star + 3 :])
        if line_time is not None:
            time_source = "line"

    if first != 33:
        if first == 36 and (body[:5] == b"PGHP," or body == b"PGHP"):
            # Only the clock fields and the station are read: split no further than them.
            fields = body.split(b",", 12)
            station = _STATIONS.get(fields[11]) if len(fields) > 11 else ""
            if station is None:
                station = _gatehouse_station(fields[11])
            return Meta(_gatehouse(fields), station or None, True)
        return NOT_AIS if first == 36 else JUNK
    fields = body.split(b",")
    head = fields[0]
    kind = _HEADS.get(head, _UNSEEN)
    if kind is _UNSEEN:
        kind = _head(head)
        if len(_HEADS) < _CACHE_MAX:
            _HEADS[head] = kind
    if kind is None:
        return NOT_AIS
    if len(fields) != 7:
        return MALFORMED
    count = _DIGIT.get(fields[1])
    number = _DIGIT.get(fields[2])
    if count is None or number is None or number > count:
        return BAD_FRAGMENT
    channel = _CHANNELS.get(fields[4])
    fill = _FILL.get(fields[6])
    if channel is None or fill is None:
        return MALFORMED
    payload = fields[5]
    if not payload or not is_armoured_payload(payload):
        return BAD_PAYLOAD
    talker, own = kind
    return Sentence(talker, own, count, number, fields[3], channel, payload, fill, line,
                    line_time, time_source, station, group, prefix_unused)


def _head(head: bytes) -> tuple[str, bool] | None:
    """``AIVDM`` → (``"AI"``, own=False); ``None`` when not a VDM/VDO sentence."""
    kind = head[2:]
    if len(head) != 5 or (kind != b"VDM" and kind != b"VDO"):
        return None
    return head[:2].decode(), kind == b"VDO"


#: A tag block's ``s:`` fit to name a receiver: printable, no control characters (they would
#: reach the log and a terminal as they are); else the line's receiver is its source.
_TAG_STATION = re.compile(rb"[ -~]{1,64}")
#: A station field fit to name a receiver (digits in Gatehouse feeds: an MMSI-like number).
_STATION = re.compile(rb"[A-Za-z0-9_-]{1,32}")
#: Station fields seen → their receiver name ("" when unfit): a feed has few stations.
_STATIONS: dict[bytes, str] = {}


def _gatehouse_station(pss: bytes) -> str:
    """``$PGHP,1,date…,country,region,pss,…``: the physical shore station (field 11) as a
    receiver name, "" when it cannot be one; remembered in ``_STATIONS``."""
    station = pss.decode() if _STATION.fullmatch(pss) else ""
    if len(_STATIONS) >= _CACHE_MAX:
        _STATIONS.clear()
    _STATIONS[pss] = station
    return station


def _gatehouse(fields: list[bytes]) -> float | None:
    """:func:`gatehouse_time`, with the date's midnight cached (it is the same all day)."""
    if len(fields) < 9 or fields[1] != b"1":
        return None
    date = (fields[2], fields[3], fields[4])
    if date in _DAYS:
        midnight = _DAYS[date]
    else:
        midnight = gatehouse_time([b"PGHP", b"1", *date, b"0", b"0", b"0", b"0"])
        if len(_DAYS) >= _CACHE_MAX:
            _DAYS.clear()
        _DAYS[date] = midnight
    if midnight is None:
        return None
    small = _SMALL
    hour = small.get(fields[5])
    minute = small.get(fields[6])
    second = small.get(fields[7])
    milli = small.get(fields[8])
    if hour is None or minute is None or second is None or milli is None:
        try:
            hour = int(fields[5])
            minute = int(fields[6])
            second = int(fields[7])
            milli = int(fields[8])
        except ValueError:
            return None
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second < 60 and 0 <= milli < 1000):
        return None
    # One correctly rounded division, as datetime.timestamp() does.
    return ((int(midnight) + hour * 3600 + minute * 60 + second) * 1000 + milli) / 1000


def _tag_block(block: bytes) -> tuple[float | None, str | None, str | None] | None:
    """Parse ``c:..,s:..,g:..*hh`` → (time, station, group id); ``None`` when the checksum
    fails."""
    star = block.rfind(b"*")
    if star < 0:
        return None
    try:
        expected = int(block[star + 1 :], 16)
    except ValueError:
        return None
    content = block[:star]
    if xor_checksum(content) != expected:
        return None
    time: float | None = None
    station: str | None = None
    group: str | None = None
    for item in content.split(b","):
        key, _, value = item.partition(b":")
        if key == b"c":
            time = epoch_value(value)
        elif key == b"s" and _TAG_STATION.fullmatch(value):
            station = value.decode()
        elif key == b"g" and value.count(b"-") == 2:
            group = value.rsplit(b"-", 1)[1].decode() or None
    return time, station, group
