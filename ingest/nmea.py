"""NMEA 0183 checksums and the 6-bit payload alphabet."""

from __future__ import annotations

_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")

#: Bytes allowed in an armoured AIS payload ('0'..'W' and '`'..'w').
PAYLOAD_CHARS = frozenset(range(48, 88)) | frozenset(range(96, 120))
_PAYLOAD_DELETE = bytes(sorted(PAYLOAD_CHARS))


def xor_checksum(body: bytes) -> int:
    """XOR of all bytes, folded on one big integer: far faster than a Python byte loop."""
    value = int.from_bytes(body, "little")
    width = 8
    while width < len(body) * 8:
        width <<= 1
    while width > 8:
        width >>= 1
        value = (value ^ (value >> width)) & ((1 << width) - 1)
    return value


def parse_hex2(text: bytes) -> int | None:
    """Two hex digits as an int, or ``None``."""
    if len(text) != 2 or text[0] not in _HEX_DIGITS or text[1] not in _HEX_DIGITS:
        return None
    return int(text, 16)


def is_armoured_payload(payload: bytes) -> bool:
    """True when every byte belongs to the AIS 6-bit armouring alphabet."""
    return not payload.translate(None, _PAYLOAD_DELETE)
