"""Recorded logs: a file or stdin (``-``), plain or gzip (told by its magic bytes).

:func:`open_log_lines` is the synchronous fast path (``harbourwatch decode``, benchmarks).
:class:`FileSource` is the asyncio source for replay and for ``run`` fed from a pipe. Both
stream in chunks and never hold a whole log in memory. Lines from a log carry
``received=None``: a recording's time must come from the recording. In the live service
(``run``, ``arrival=True``) a file or pipe is a live feed: its lines carry their arrival
(wall) time, so the guard against a clock running ahead applies to them too (without it, one
line stamped a year ahead went into the saved state).

A regular file (also stdin redirected from one) is read in a worker thread, where gzip is
unpacked too, so the event loop never waits on a disk. A pipe, FIFO or terminal is read by
the event loop itself (it never blocks there and can be cancelled at any time, which a thread
stuck in ``read()`` cannot) and unpacked incrementally.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import os
import stat
import sys
import time
import zlib
from collections.abc import Iterator

from ingest.lines import RawLine
from ingest.sources.base import SourceBase, SourceError, SourceReadError
from ingest.sources.queue import LineQueue, LineQueueClosed
from ingest.sources.splitter import DEFAULT_MAX_PENDING, LineSplitter

CHUNK_SIZE = 1024 * 1024
STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"


def open_log_lines(
    path: str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """Every non-empty line of a log (file path or ``-``), plain or gzip, as bytes.

    Raises SourceError when the file cannot be opened or is a broken gzip.
    """
    splitter = LineSplitter(DEFAULT_MAX_PENDING)
    with _open_binary(path) as f:
        while True:
            chunk = _read_chunk(f, chunk_size, path)
            if not chunk:
                break
            yield from splitter.feed(chunk)
    last = splitter.flush()
    if last is not None:
        yield last


class FileSource(SourceBase):
    """Plays a recorded log (path, or ``-`` for stdin) into the queue, then returns.

    ``connected`` is True while the log is open. Lines wait for room in the queue, so a
    replay runs at the pace of its consumer.
    """

    def __init__(
        self, name: str, path: str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE,
        arrival: bool = False,
    ) -> None:
        super().__init__(name)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.path = path
        self.chunk_size = chunk_size
        #: Stamp lines with their arrival (wall) time: a live feed, not a recording.
        self.arrival = arrival

    def _received(self) -> float | None:
        return time.time() if self.arrival else None

    async def run(self, queue: LineQueue) -> None:
        try:
            if _is_stream(self.path):
                await self._run_stream(queue)
            else:
                await self._run_regular(queue)
        except LineQueueClosed:
            pass  # the consumer is gone
        finally:
            self._set_connected(False)

    async def _run_regular(self, queue: LineQueue) -> None:
        f = await asyncio.to_thread(_open_binary, self.path)
        try:
            self._set_connected(True)
            splitter = LineSplitter(DEFAULT_MAX_PENDING)
            while True:
                chunk = await asyncio.to_thread(_read_chunk, f, self.chunk_size, self.path)
                if not chunk:
                    break
                await self._emit(queue, splitter.feed(chunk), len(chunk))
            await self._finish(queue, splitter)
        finally:
            await asyncio.to_thread(f.close)

    async def _run_stream(self, queue: LineQueue) -> None:
        loop = asyncio.get_running_loop()
        fd = _open_stream_fd(self.path)
        # The pipe transport makes the fd non-blocking, and a dup shares that flag with the
        # process's stdin: put it back afterwards, or a terminal left behind misbehaves.
        was_blocking = os.get_blocking(fd)
        try:
            await self._read_stream(queue, loop, fd)
        finally:
            if self.path == STDIN:
                with contextlib.suppress(OSError, ValueError):
                    os.set_blocking(sys.stdin.fileno(), was_blocking)

    async def _read_stream(
        self, queue: LineQueue, loop: asyncio.AbstractEventLoop, fd: int
    ) -> None:
        pipe = os.fdopen(fd, "rb", buffering=0)
        reader = asyncio.StreamReader(limit=max(self.chunk_size, 2**16), loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)
        except (OSError, ValueError) as exc:
            pipe.close()
            raise SourceError(f"source {self.name}: cannot read {self.path}: {exc}") from exc
        try:
            self._set_connected(True)
            splitter = LineSplitter(DEFAULT_MAX_PENDING)
            unzip: _Gunzip | None = None
            first = True
            while True:
                data = await reader.read(self.chunk_size)
                if first and data:
                    first = False
                    # Two bytes decide; a one-byte first read is too short to tell, so wait.
                    while len(data) < 2:
                        more = await reader.read(self.chunk_size)
                        if not more:
                            break
                        data += more
                    if data.startswith(GZIP_MAGIC):
                        unzip = _Gunzip(str(self.path))
                if not data:
                    if unzip is not None:
                        unzip.finish()
                    break
                size = len(data)
                if unzip is not None:
                    data = unzip.feed(data)
                await self._emit(queue, splitter.feed(data), size)
            await self._finish(queue, splitter)
        finally:
            transport.close()

    async def _emit(self, queue: LineQueue, lines: list[bytes], size: int) -> None:
        self._stats.bytes += size
        if lines:
            self._stats.lines += len(lines)
            name = self.name
            received = self._received()
            self._stats.last_line_at = time.time() if received is None else received
            await queue.put_many([RawLine(name, line, received) for line in lines])

    async def _finish(self, queue: LineQueue, splitter: LineSplitter) -> None:
        self._stats.overlong = splitter.overlong
        last = splitter.flush()
        if last is not None:
            self._stats.lines += 1
            await queue.put(RawLine(self.name, last, self._received()))


def _is_stream(path: str | os.PathLike[str]) -> bool:
    """True for a pipe, FIFO, socket or terminal (read by the loop), False for a file."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode if path == STDIN else os.stat(path).st_mode
    except (OSError, ValueError):
        return False  # let the open report it
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _open_stream_fd(path: str | os.PathLike[str]) -> int:
    # A dup, so closing our end never closes the process's own stdin; non-blocking so a FIFO
    # without a writer yet does not hang the open.
    try:
        if path == STDIN:
            return os.dup(sys.stdin.fileno())
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from exc


class _OwningGzipFile(gzip.GzipFile):
    """A GzipFile that closes the file it reads (the standard one leaves it open)."""

    def __init__(self, raw: io.BufferedReader) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def _open_binary(path: str | os.PathLike[str]) -> io.BufferedIOBase:
    """A binary reader of the log's content, unpacked when it starts with the gzip magic."""
    raw: io.BufferedReader
    try:
        if path == STDIN:
            raw = io.BufferedReader(io.FileIO(os.dup(sys.stdin.fileno()), "rb"))
        else:
            raw = open(path, "rb")  # noqa: SIM115 (returned to the caller, who closes it)
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        head = raw.peek(2)[:2]
    except OSError as exc:
        raw.close()
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if head == GZIP_MAGIC:
        return _OwningGzipFile(raw)
    return raw


def _read_chunk(f: io.BufferedIOBase, size: int, path: str | os.PathLike[str]) -> bytes:
    try:
        # read1 returns what is at hand instead of filling the whole chunk from a slow pipe.
        data = f.read1(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceReadError(f"cannot read {path}: {exc}") from exc
    return data


class _Gunzip:
    """Incremental gzip for streams; concatenated members (``cat a.gz b.gz``) included."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._d = zlib.decompressobj(wbits=31)
        self._inside = False  # bytes of the current member seen, its end not yet

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        try:
            while data:
                self._inside = True
                out.append(self._d.decompress(data))
                if not self._d.eof:
                    break
                self._inside = False
                data = self._d.unused_data
                self._d = zlib.decompressobj(wbits=31)
        except zlib.error as exc:
            raise SourceReadError(f"cannot read {self._label}: broken gzip: {exc}") from exc
        return b"".join(out)

    def finish(self) -> None:
        """Raise if the stream ended inside a member (a truncated download, a killed writer)."""
        if self._inside:
            raise SourceReadError(f"cannot read {self._label}: truncated gzip")
