"""UDP listener: the usual output of an AIS receiver (one or more sentences per datagram).

Most receivers send whole sentences, terminated or not. Serial-to-network converters that
pack bytes into fixed-size datagrams cut sentences in two: an unterminated last line that
cannot be a whole sentence (no ``*hh`` checksum in it) waits for the same sender's next
datagram, and is joined to it unless that one starts a sentence of its own.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import re
import socket
import time
from collections.abc import Iterable
from typing import Any

from ingest.framing import MAX_LINE
from ingest.lines import RawLine
from ingest.sources.base import SourceBase, SourceError
from ingest.sources.queue import LineQueue
from ingest.sources.splitter import split_lines

log = logging.getLogger(__name__)
_HAS_CHECKSUM = re.compile(rb"\*[0-9A-Fa-f]{2}")
_SENTENCE_STARTS = frozenset(b"!\\$")  # what a line of its own starts with
_MAX_SENDERS_HELD = 1024
#: Senders refused by name in the log (then only counted: a spoofed flood has any number).
_MAX_REFUSED_LOGGED = 20

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_RCVBUF = 4 * 1024 * 1024
"""Socket receive buffer asked for; the kernel caps it (net.core.rmem_max). A larger buffer
rides out short bursts while the event loop is busy elsewhere."""
KERNEL_DROPS_CHECK_S = 10.0
"""How often the kernel's drop count is looked at for a warning (wall seconds)."""


class UdpSource(SourceBase):
    """Listens on ``host:port``; every datagram is cut into lines, each offered to the queue.

    Offered, not put: a sender cannot be slowed down, so when the queue is full lines are
    dropped and counted in ``queue.drops[name]`` rather than piling up without bound.
    """

    def __init__(
        self, name: str, host: str, port: int, *, rcvbuf: int | None = DEFAULT_RCVBUF,
        allow_from: Iterable[Network] | None = None, where: str = "the source's port",
    ) -> None:
        super().__init__(name)
        #: The setting that chose the port, for a message ("port.yaml:7: sources.0.port").
        self.where = where
        #: Senders taken (None: any); others are dropped and counted (refused_datagrams).
        self.allow_from: tuple[Network, ...] | None = (
            None if allow_from is None else tuple(allow_from))
        #: sender address -> allowed, as decided once (bounded: cleared when full).
        self._sender_allowed: dict[str, bool] = {}
        self._refused_logged = 0
        self.host = host
        self.port = port
        self.rcvbuf = rcvbuf
        self.local_address: tuple[str, int] | None = None
        """The bound address once running (tells the port when ``port`` was 0)."""
        self.datagrams = 0
        self._inode: int | None = None
        #: sender -> (start of a sentence cut at the end of its last datagram, its arrival)
        self._held: dict[Any, tuple[bytes, float]] = {}

    def probe(self) -> socket.socket:
        """The port, bound: a second instance of the service, or two of the run's sources on
        one port however spelt, fail here, before anything is said on MQTT."""
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise self._cannot_listen(exc) from exc
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise self._cannot_listen(exc) from exc
        return sock

    def _cannot_listen(self, exc: OSError) -> SourceError:
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = (f": another process listens on it (`ss -lunp 'sport = :{self.port}'` "
                    "names it), or another of this run's sources does; stop it, or set "
                    f"another port ({self.where})")
        return SourceError(
            f"source {self.name}: cannot listen on UDP {self.host}:{self.port}: {exc}{hint}")

    async def run(self, queue: LineQueue) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, queue), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            self._stats.connect_failures += 1
            raise self._cannot_listen(exc) from exc
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
            await self._watch_kernel_drops()  # until cancelled
        finally:
            transport.close()
            self._inode = None
            # Starts of sentences whose rest never came: counted, like a broken link's.
            self._stats.partial_lines += len(self._held)
            self._held.clear()
            self._set_connected(False)

    async def _watch_kernel_drops(self) -> None:
        """Warn when the kernel drops datagrams: they never reach the ingestor's counters."""
        warned = 0
        while True:
            await asyncio.sleep(KERNEL_DROPS_CHECK_S)
            drops = self.kernel_drops() or 0
            if drops > warned:
                log.warning("source %s: the kernel dropped %d datagrams (%d since the start): "
                            "the service fell behind for longer than the socket buffer lasts "
                            "(net.core.rmem_max)", self.name, drops - warned, drops)
                warned = drops

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

    def _allowed(self, sender: Any) -> bool:
        """Whether ``sender`` ((host, port, ...) as asyncio gives it) is in ``allow_from``."""
        host = str(sender[0]) if isinstance(sender, tuple) and sender else str(sender)
        known = self._sender_allowed.get(host)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            allowed = False
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped  # a dual-stack socket's IPv4 sender
            allowed = any(address in network for network in self.allow_from or ())
        if len(self._sender_allowed) >= _MAX_SENDERS_HELD:
            self._sender_allowed.clear()
        self._sender_allowed[host] = allowed
        if not allowed and self._refused_logged < _MAX_REFUSED_LOGGED:
            self._refused_logged += 1
            log.warning("source %s: datagrams from %s refused (not in allow_from)%s",
                        self.name, host, "; further senders are only counted "
                        "(refused_datagrams)" if self._refused_logged == _MAX_REFUSED_LOGGED
                        else "")
        return allowed

    def _datagram(self, data: bytes, queue: LineQueue, sender: Any = None) -> None:
        if self.allow_from is not None and not self._allowed(sender):
            self._stats.refused_datagrams += 1
            return
        received = time.time()
        self.datagrams += 1
        stats = self._stats
        stats.bytes += len(data)
        name = self.name
        offer = queue.offer
        held = self._held.pop(sender, None) if self._held else None
        if held is not None:
            start, when = held
            if data and (data[0] not in _SENTENCE_STARTS or _continues_tag_block(start, data)):
                data, received = start + data, when  # the rest of the cut sentence
            else:
                stats.lines += 1
                offer(RawLine(name, start, when))  # never continued: counted as it is
        lines = split_lines(data)
        if lines and data[-1:] not in (b"\n", b"\r") and _unfinished(lines[-1]):
            if len(self._held) >= _MAX_SENDERS_HELD:
                self._held.clear()
            self._held[sender] = (lines.pop(), received)
        if lines:
            stats.last_line_at = received
        for line in lines:
            stats.lines += 1
            offer(RawLine(name, line, received))


def _unfinished(line: bytes) -> bool:
    """A datagram's unterminated last line that cannot be a whole sentence: a tag block
    not closed yet, or no checksum of the sentence's own (a tag block's ``*hh`` says
    nothing). Past MAX_LINE it cannot be a sentence's start (a stream of non-NMEA bytes):
    it is a line as it is, counted and rejected, not held and joined again without end."""
    if len(line) > MAX_LINE:
        return False
    if line[:1] == b"\\" and line.count(b"\\") == 1:
        return True
    return not _HAS_CHECKSUM.search(line.rpartition(b"\\")[2])


def _continues_tag_block(start: bytes, data: bytes) -> bool:
    """``data`` goes on with the tag block ``start``: its closing backslash (alone, or with
    the sentence after it) when the block is open, the sentence when it is closed with
    nothing after it yet."""
    if start[:1] != b"\\":
        return False
    if start.count(b"\\") == 1:
        return data[:1] == b"\\" and data[1:2] in (b"", b"!", b"$")
    return start.count(b"\\") == 2 and start[-1:] == b"\\" and data[:1] in (b"!", b"$")


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, source: UdpSource, queue: LineQueue) -> None:
        self._source = source
        self._queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._source._datagram(data, self._queue, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on a listening socket say nothing about incoming data: note and go on.
        log.debug("source %s: UDP error %s", self._source.name, exc)
