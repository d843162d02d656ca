"""Serve the app with uvicorn inside the service's own event loop (no threads, no signals).

The service owns signal handling and shutdown, so uvicorn's own signal capture is turned
off; :meth:`ApiServer.stop` ends the live streams first, then asks uvicorn to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Generator
from typing import Any

import uvicorn
from fastapi import FastAPI

from api.stream import StreamHub

log = logging.getLogger(__name__)


class ApiAddressError(OSError):
    """The API's address cannot be served (taken, or not this host's)."""


def check_address(host: str, port: int, where: str = "api.port") -> None:
    """Bind and release ``host:port`` as uvicorn will, so a taken port stops the run before
    it starts, with a message, instead of failing later in a task.

    Every address the name resolves to, at once (``localhost`` is ``::1`` and 127.0.0.1),
    with address reuse on and IPv6 sockets IPv6-only, as asyncio's ``create_server`` binds.
    """
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = (f": another process listens on it (`ss -ltnp 'sport = :{port}'` names "
                    f"it); stop it, or set another port ({where})")
        raise ApiAddressError(
            f"API on {host}:{port} cannot be served: {exc.strerror or exc}{hint}") from exc
    finally:
        for sock in sockets:
            sock.close()


#: At stop, how long live streams get to end on their own before their connections are cut.
STREAMS_END_S = 0.5
STREAM_PATH = "/stream"


def _open_streams(server: uvicorn.Server) -> list[Any]:
    """The connections still writing a ``/stream`` response."""
    out = []
    for conn in list(server.server_state.connections):
        cycle = getattr(conn, "cycle", None)
        if cycle is not None and not cycle.response_complete and not cycle.disconnected \
                and cycle.scope.get("path") == STREAM_PATH:
            out.append(conn)
    return out


class _EmbeddedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        #: Live streams when stopping began (``ApiServer.stop``), for the one log line.
        self.streams_at_stop = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the service handles SIGINT/SIGTERM and calls ApiServer.stop()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End the live streams quietly first: the hub closed them, but a client that does
        not read leaves its writer waiting for buffer space for ever. Uvicorn cancelled each
        such request after its graceful timeout and logged a traceback per client (1,100
        idle clients: 57,000 lines). Their connections are cut instead, which ends the
        request as a client that went away, and one line says how many."""
        for server in self.servers:
            server.close()  # no new stream meanwhile
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAMS_END_S
        stuck = _open_streams(self)
        while stuck and loop.time() < deadline:
            await asyncio.sleep(0.05)
            stuck = _open_streams(self)
        for conn in stuck:
            conn.transport.abort()
        if self.streams_at_stop or stuck:
            log.warning("API stopping: %d live streams closed (%d cut: their clients were not "
                        "reading)", max(self.streams_at_stop, len(stuck)), len(stuck))
        await super().shutdown(sockets)


class ApiServer:
    """One uvicorn server on ``host:port`` (port 0 picks a free one, see :attr:`port`)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8080, *,
                 hub: StreamHub | None = None, log_level: str = "warning",
                 graceful_s: float = 5.0) -> None:
        # A short accept backlog: when the process runs out of file descriptors, asyncio
        # logs (and re-schedules) once per backlog slot and per retry: 2048, uvicorn's
        # default, wrote 446 MB of log in a minute. A port's API has a handful of clients.
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                access_log=False, lifespan="on", backlog=64,
                                timeout_graceful_shutdown=int(graceful_s) or 1)
        self.server = _EmbeddedServer(config)
        self.hub = hub
        self.host = host
        self._port = port

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0), once started."""
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self._port

    async def serve(self) -> None:
        """Run until :meth:`stop`; raises ``OSError`` when the address is taken."""
        try:
            await self.server.serve()
        except SystemExit as exc:
            # uvicorn calls sys.exit(3) when it cannot bind; inside a task that would end
            # the whole event loop, so it becomes an ordinary error here.
            raise OSError(f"cannot serve on {self.host}:{self._port}") from exc
        if not self.server.started and not self.server.should_exit:
            raise OSError(f"cannot serve on {self.host}:{self._port}")

    async def wait_started(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.server.started:
                await asyncio.sleep(0.01)

    def stop(self) -> None:
        if self.hub is not None:
            if not self.server.should_exit:
                self.server.streams_at_stop = self.hub.clients
            self.hub.close()
        self.server.should_exit = True


async def serve(app: FastAPI, host: str, port: int, *, hub: StreamHub | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or the task is cancelled)."""
    server = ApiServer(app, host, port, hub=hub)
    task = asyncio.create_task(server.serve())
    try:
        if stop is None:
            await task
            return
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if task not in done:
            server.stop()
        await task
    except asyncio.CancelledError:
        server.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
