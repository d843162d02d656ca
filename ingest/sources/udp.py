"""UDP listener: the usual output of an AIS receiver (one or more sentences per datagram)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from ingest.lines import RawLine
from ingest.sources.base import SourceBase, SourceError
from ingest.sources.queue import LineQueue
from ingest.sources.splitter import split_lines

log = logging.getLogger(__name__)

DEFAULT_RCVBUF = 4 * 1024 * 1024
"""Socket receive buffer asked for; the kernel caps it (net.core.rmem_max). A larger buffer
rides out short bursts while the event loop is busy elsewhere."""


class UdpSource(SourceBase):
    """Listens on ``host:port``; every datagram is cut into lines, each offered to the queue.

    Offered, not put: a sender cannot be slowed down, so when the queue is full lines are
    dropped and counted in ``queue.drops[name]`` rather than piling up without bound.
    """

    def __init__(
        self, name: str, host: str, port: int, *, rcvbuf: int | None = DEFAULT_RCVBUF
    ) -> None:
        super().__init__(name)
        self.host = host
        self.port = port
        self.rcvbuf = rcvbuf
        self.local_address: tuple[str, int] | None = None
        """The bound address once running (tells the port when ``port`` was 0)."""
        self.datagrams = 0
        self._inode: int | None = None

    async def run(self, queue: LineQueue) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, queue), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            self._stats.connect_failures += 1
            raise SourceError(
                f"source {self.name}: cannot listen on UDP {self.host}:{self.port}: {exc}"
            ) from exc
        try:
            sock = transport.get_extra_info("socket")
            if self.rcvbuf and sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
                except OSError as exc:
                    log.warning("source %s: cannot set SO_RCVBUF: %s", self.name, exc)
            if sock is not None:
                self._inode = os.fstat(sock.fileno()).st_ino
            sockname = transport.get_extra_info("sockname")
            self.local_address = (str(sockname[0]), int(sockname[1]))
            log.info("source %s: listening on UDP %s:%d", self.name, *self.local_address)
            self._set_connected(True)
            await asyncio.Future()  # until cancelled
        finally:
            transport.close()
            self._inode = None
            self._set_connected(False)

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped because our socket buffer was full (Linux only).

        These never reached us, so ``queue.drops`` cannot count them; a rising figure means
        the event loop fell behind for longer than the buffer lasts. None when not running
        or not on Linux. Reads a small /proc table: call it for stats, not per datagram.
        """
        inode = self._inode
        if inode is None:
            return None
        wanted = str(inode)
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(table, encoding="ascii") as f:
                    next(f, None)  # header
                    for row in f:
                        fields = row.split()
                        # sl local rem st queues tr retrnsmt uid timeout inode ref ptr drops
                        if len(fields) >= 13 and fields[9] == wanted:
                            return int(fields[12])
            except (OSError, ValueError):
                continue
        return None

    def _datagram(self, data: bytes, queue: LineQueue) -> None:
        received = time.time()
        self.datagrams += 1
        stats = self._stats
        stats.bytes += len(data)
        name = self.name
        offer = queue.offer
        for line in split_lines(data):
            stats.lines += 1
            offer(RawLine(name, line, received))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, source: UdpSource, queue: LineQueue) -> None:
        self._source = source
        self._queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._source._datagram(data, self._queue)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on a listening socket say nothing about incoming data: note and go on.
        log.debug("source %s: UDP error %s", self._source.name, exc)
