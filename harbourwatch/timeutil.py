"""Time helpers shared by every stage: everything is Unix seconds (UTC) internally."""

from __future__ import annotations

from datetime import UTC, datetime

from ingest.report import iso_time

__all__ = ["iso_time", "parse_iso"]


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
