"""TCP client for AIS feeds (AIS-catcher, a national network, a port's own aggregator)."""

from __future__ import annotations

import asyncio
import random
import socket

from ingest.sources.backoff import BackoffPolicy
from ingest.sources.splitter import DEFAULT_MAX_PENDING
from ingest.sources.stream import StreamSource

DEFAULT_CONNECT_TIMEOUT = 10.0

# Keep-alive finds a feed whose far end vanished without a FIN (a router restart, a
# cellular link) in about two minutes, without cutting a feed that is merely quiet.
_KEEPALIVE = (
    ("TCP_KEEPIDLE", 60),
    ("TCP_KEEPINTVL", 10),
    ("TCP_KEEPCNT", 6),
)


class TcpClientSource(StreamSource):
    """Connects to ``host:port`` and reads lines; reconnects with capped, jittered back-off.

    ``idle_timeout`` (seconds, default off) also drops a link that is up but silent, for feeds
    known to send all the time.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        backoff: BackoffPolicy | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            name, backoff=backoff, idle_timeout=idle_timeout, max_pending=max_pending, rng=rng
        )
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout

    def _where(self) -> str:
        return f"tcp {self.host}:{self.port}"

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with asyncio.timeout(self.connect_timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            _enable_keepalive(sock)
        return reader, writer


def _enable_keepalive(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in _KEEPALIVE:
            if hasattr(socket, option):  # Linux names; other systems keep their defaults
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    except OSError:
        pass  # keep-alive is a nicety; the feed works without it
