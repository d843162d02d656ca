"""The bounded queue between sources and the ingestor.

Two ways in: :meth:`LineQueue.put` waits while the queue is full (back-pressure for files,
TCP and serial, whose senders slow down when we stop reading), :meth:`LineQueue.offer`
never waits and counts a drop per source instead (UDP, whose senders cannot be slowed: a
flood must cost memory-bounded, counted losses, never a stalled loop).

:meth:`LineQueue.close` tells the consumer that no more lines will come: :meth:`get`
returns what is left, then raises :class:`LineQueueClosed`; ``async for`` just stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable

from ingest.lines import RawLine

log = logging.getLogger(__name__)
DEFAULT_MAXSIZE = 10_000


class LineQueueClosed(Exception):
    """The queue was closed: nothing more to get (after draining), nothing more to put."""


class LineQueue:
    """A bounded FIFO of :class:`RawLine` with counted drops and a close signal.

    Single event loop, any number of producers and consumers.
    """

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if maxsize < 1:
            raise ValueError(f"LineQueue maxsize must be at least 1, got {maxsize}")
        self._maxsize = maxsize
        self._items: deque[RawLine] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self.drops: dict[str, int] = {}
        """Lines refused by :meth:`offer` because the queue was full, per source name."""

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        """All drops, every source together."""
        return sum(self.drops.values())

    def qsize(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self._maxsize

    def empty(self) -> bool:
        return not self._items

    # -- producers ---------------------------------------------------------------------------

    def offer(self, line: RawLine) -> bool:
        """Enqueue without waiting; when full (or closed) count a drop and return False."""
        if self._closed or len(self._items) >= self._maxsize:
            dropped = self.drops[line.source] = self.drops.get(line.source, 0) + 1
            if dropped == 1 or dropped % 10_000 == 0:
                log.warning("source %s: the line queue is full; %d lines dropped so far "
                            "(see /sources queue_dropped)", line.source, dropped)
            return False
        self._items.append(line)
        self._wake(self._getters)
        return True

    async def put(self, line: RawLine) -> None:
        """Enqueue, waiting while the queue is full. Raises LineQueueClosed once closed."""
        while len(self._items) >= self._maxsize and not self._closed:
            await self._wait(self._putters)
        if self._closed:
            raise LineQueueClosed("line queue is closed")
        self._items.append(line)
        self._wake(self._getters)

    async def put_many(self, lines: Iterable[RawLine]) -> None:
        """:meth:`put` each line in order (waits only while the queue is full)."""
        items = self._items
        for line in lines:
            if self._closed or len(items) >= self._maxsize:
                await self.put(line)
            else:
                items.append(line)
                self._wake(self._getters)

    def close(self) -> None:
        """No more lines will be put: wake every waiter. Idempotent."""
        self._closed = True
        while self._getters:
            self._wake(self._getters)
        while self._putters:
            self._wake(self._putters)

    # -- consumers ---------------------------------------------------------------------------

    async def get(self) -> RawLine:
        """The next line, waiting while empty; LineQueueClosed once closed and drained."""
        while not self._items:
            if self._closed:
                raise LineQueueClosed("line queue is closed and drained")
            await self._wait(self._getters)
        line = self._items.popleft()
        self._wake(self._putters)
        return line

    async def get_many(self, max_items: int = 1000) -> list[RawLine]:
        """Wait for at least one line, then take up to ``max_items`` without waiting more.

        Cheaper per line than :meth:`get` when the consumer works in batches.
        """
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        while not self._items:
            if self._closed:
                raise LineQueueClosed("line queue is closed and drained")
            await self._wait(self._getters)
        items = self._items
        n = min(max_items, len(items))
        batch = [items.popleft() for _ in range(n)]
        for _ in range(n):
            if not self._putters:
                break
            self._wake(self._putters)
        return batch

    def get_nowait(self) -> RawLine | None:
        """The next line if there is one, else None (never raises LineQueueClosed)."""
        if not self._items:
            return None
        line = self._items.popleft()
        self._wake(self._putters)
        return line

    def __aiter__(self) -> AsyncIterator[RawLine]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RawLine]:
        while True:
            try:
                yield await self.get()
            except LineQueueClosed:
                return

    # -- waiting -----------------------------------------------------------------------------

    async def _wait(self, waiters: deque[asyncio.Future[None]]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut in waiters:
                waiters.remove(fut)
            elif not fut.cancelled():
                # We were woken but are leaving: pass the wake-up on so it is not lost.
                self._wake(waiters)
            raise

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> None:
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
