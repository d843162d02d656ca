"""What a source hands to the ingestor: one line of bytes, its source and receive time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class RawLine:
    """One line as read, without its line ending.

    ``received`` is the wall-clock Unix time when the bytes arrived, or ``None`` for a
    recorded log, whose time must come from the log itself.
    """

    source: str
    data: bytes
    received: float | None
