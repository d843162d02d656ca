"""A live byte stream that comes and goes (TCP feed, serial port): read, lose, retry.

The loop: open the link, read chunks and put their lines on the queue (waiting when it is
full: the sender is slowed by TCP flow control or the serial buffer instead of us growing
memory), and when the link breaks drop the unterminated fragment, go offline, wait a
jittered back-off and open again. A link that stayed up ``healthy_after`` seconds resets
the back-off, so a feed that drops once a day reconnects after about a second, while one
that refuses every attempt is tried at most once a ``maximum``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import time

from ingest.lines import RawLine
from ingest.sources.backoff import Backoff, BackoffPolicy
from ingest.sources.base import SourceBase
from ingest.sources.queue import LineQueue, LineQueueClosed
from ingest.sources.splitter import DEFAULT_MAX_PENDING, LineSplitter

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


class StreamSource(SourceBase, abc.ABC):
    """Base for reconnecting stream sources; subclasses only know how to open the link."""

    def __init__(
        self,
        name: str,
        *,
        backoff: BackoffPolicy | None = None,
        idle_timeout: float | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(name)
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        self.backoff = Backoff(backoff, rng)
        self.idle_timeout = idle_timeout
        self.max_pending = max_pending
        #: An outage was warned about and the link has not been healthy since.
        self._outage = False

    @abc.abstractmethod
    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the link (raise OSError or TimeoutError when it cannot be opened)."""

    @abc.abstractmethod
    def _where(self) -> str:
        """The link, for log messages."""

    async def run(self, queue: LineQueue) -> None:
        loop = asyncio.get_running_loop()
        # One warning an outage: when the link is lost or first cannot be opened; one when
        # it is back, delivering for ``healthy_after`` (a proxy that accepts and closes at
        # once, its receiver away, is still the same outage), so the log's last word on a
        # receiver is its state. What happens between is at debug level.
        try:
            while True:
                try:
                    reader, writer = await self._open()
                except (OSError, TimeoutError) as exc:
                    self._stats.connect_failures += 1
                    await self._retry_later(f"cannot open {self._where()}: {exc}")
                    continue
                up_since = loop.time()
                self._set_connected(True)
                log.info("source %s: connected to %s", self.name, self._where())
                reason = "closed by peer"
                try:
                    await self._read(reader, queue, up_since)
                except (OSError, TimeoutError) as exc:
                    reason = str(exc) or type(exc).__name__
                except LineQueueClosed:
                    return  # the consumer is gone: nothing left to read for
                finally:
                    self._set_connected(False)
                    await close_writer(writer)
                self._stats.disconnects += 1
                if loop.time() - up_since >= self.backoff.policy.healthy_after:
                    self.backoff.reset()
                await self._retry_later(f"lost {self._where()}: {reason}")
        finally:
            self._set_connected(False)

    async def _read(self, reader: asyncio.StreamReader, queue: LineQueue,
                    up_since: float) -> None:
        splitter = LineSplitter(self.max_pending)
        stats = self._stats
        name = self.name
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self.idle_timeout is None:
                    chunk = await reader.read(READ_SIZE)
                else:
                    try:
                        async with asyncio.timeout(self.idle_timeout):
                            chunk = await reader.read(READ_SIZE)
                    except TimeoutError:
                        raise TimeoutError(
                            f"nothing received for {self.idle_timeout:g} s"
                        ) from None
                if not chunk:
                    return
                if self._outage and loop.time() - up_since >= self.backoff.policy.healthy_after:
                    self._outage = False
                    log.warning("source %s: connected to %s%s", name, self._where(),
                                " again" if stats.connects > 1 else "")
                received = time.time()
                stats.bytes += len(chunk)
                overlong = splitter.overlong
                lines = splitter.feed(chunk)
                stats.overlong += splitter.overlong - overlong  # a new splitter per link
                if lines:
                    stats.lines += len(lines)
                    stats.last_line_at = received
                    await queue.put_many([RawLine(name, line, received) for line in lines])
        finally:
            if splitter.discard():
                stats.partial_lines += 1
                log.debug("source %s: dropped a partial line at disconnect", name)

    async def _retry_later(self, why: str) -> None:
        """Wait the back-off. Only the failure that starts an outage is a warning; the rest
        are at debug level, so a feed that is down for a day does not flood the log."""
        delay = self.backoff.next_delay()
        log.log(logging.DEBUG if self._outage else logging.WARNING,
                "source %s: %s; retrying in %.3g s", self.name, why, delay)
        self._outage = True
        await asyncio.sleep(delay)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a writer and wait for it, ignoring errors of a link that is already gone."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
