"""Cutting a byte stream into lines: CR, LF or CRLF ends a line, empty lines vanish.

Bytes stay bytes: checking and decoding them is the ingestor's job, not the transport's.
"""

from __future__ import annotations

DEFAULT_MAX_PENDING = 64 * 1024
"""Longest unterminated tail kept between chunks. An NMEA sentence is at most 82 bytes and a
tag block adds a few dozen; anything near this bound is noise (a serial line at the wrong
baud rate, a binary stream) and must not grow memory without end."""

_CR = b"\r"
_LF = b"\n"


def split_lines(data: bytes) -> list[bytes]:
    """All non-empty lines of a self-contained chunk (a UDP datagram, a whole file).

    An unterminated last line counts as a line: a datagram is complete by itself.
    """
    if _CR in data:
        data = data.replace(_CR, _LF)
    return [line for line in data.split(_LF) if line]


class LineSplitter:
    """Incremental splitter for a stream that arrives in arbitrary chunks.

    :meth:`feed` returns the lines completed by a chunk and keeps the unterminated tail.
    At the end of a stream the tail is either a last line (a file without a final newline:
    :meth:`flush`) or a fragment cut by a lost connection (:meth:`discard`).
    """

    __slots__ = ("_max_pending", "_pending", "_skipping", "overlong")

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self._max_pending = max_pending
        self._pending = b""
        # True while skipping the rest of a line whose start was thrown away as overlong.
        self._skipping = False
        self.overlong = 0
        """Unterminated tails longer than ``max_pending``, thrown away (with their rest)."""

    @property
    def pending(self) -> int:
        """Bytes of the unterminated tail kept so far."""
        return len(self._pending)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines that ``chunk`` completes, in order."""
        if not chunk:
            return []
        end = max(chunk.rfind(_LF), chunk.rfind(_CR))
        if end < 0:
            if not self._skipping:
                self._pending += chunk
                self._check_pending()
            return []
        head = chunk[: end + 1]
        tail = chunk[end + 1 :]
        if self._skipping:
            # Drop up to the first line end: it belongs to the overlong line.
            cut = _first_line_end(head)
            head = head[cut:]
            self._skipping = False
        elif self._pending:
            head = self._pending + head
        self._pending = tail
        self._check_pending()
        return split_lines(head)

    def flush(self) -> bytes | None:
        """End of stream where an unterminated tail is a line (files): return it, if any."""
        line, self._pending = self._pending, b""
        self._skipping = False
        return line or None

    def discard(self) -> bool:
        """End of stream where the tail is a fragment (lost link): drop it, True if any."""
        had = bool(self._pending)
        self._pending = b""
        self._skipping = False
        return had

    def _check_pending(self) -> None:
        if len(self._pending) > self._max_pending:
            self._pending = b""
            self._skipping = True
            self.overlong += 1


def _first_line_end(data: bytes) -> int:
    ends = [i for i in (data.find(_LF), data.find(_CR)) if i >= 0]
    return min(ends) if ends else len(data)
