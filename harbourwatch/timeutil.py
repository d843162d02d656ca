"""Time helpers shared by every stage: everything is Unix seconds (UTC) internally."""

from __future__ import annotations

from datetime import UTC, datetime

from ingest.report import iso_time
from ingest.timestamps import epoch_number, plausible

__all__ = ["iso_time", "parse_iso", "parse_message_time"]


def parse_iso(text: str) -> float:
    """Parse ISO 8601 (``Z`` or offset; naive means UTC), or Unix seconds, into Unix seconds."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_message_time(text: str) -> float:
    """A message time given by a user (``--start``): ISO 8601, Unix seconds, or Unix
    milliseconds (above 10^11, as in tag blocks); ValueError when it is none (NaN,
    infinity, or outside the years AIS logs have: 1990-2100)."""
    value = epoch_number(text.strip().encode())
    if value is None:
        value = parse_iso(text)  # ISO 8601 (or NaN, infinity: refused below)
    if not plausible(value):
        raise ValueError("not a message time between 1990 and 2100 (ISO 8601, Unix seconds "
                         "or milliseconds)")
    return value
