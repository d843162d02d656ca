"""Reading recorded logs synchronously: plain or gzip (by magic bytes), or stdin."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from typing import BinaryIO

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def read_log_lines(path: str) -> Iterator[bytes]:
    """Yield lines without line endings, streaming in chunks (logs can be gigabytes)."""
    stream = _open(path)
    try:
        rest = b""
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            lines = (rest + chunk).splitlines()
            if chunk[-1:] in (b"\n", b"\r"):
                rest = b""
            else:
                rest = lines.pop() if lines else b""
            yield from lines
        if rest:
            yield rest
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
