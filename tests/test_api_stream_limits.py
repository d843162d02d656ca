"""``GET /stream`` over a real uvicorn on 127.0.0.1: at most ``api.max_stream_clients``
streams (1,100 idle ones were all accepted), and a stop that ends them quietly (each
client that did not read left a traceback: 57,000 lines of log for 1,100)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.server import ApiServer
from tests.api_helpers import T0, TOKENS, Rig, headers, pos, rig


@asynccontextmanager
async def _served(api: Rig) -> AsyncIterator[tuple[ApiServer, asyncio.Task[None]]]:
    server = ApiServer(create_app(api.deps), "127.0.0.1", 0, hub=api.hub)
    serving = asyncio.create_task(server.serve())
    await server.wait_started()
    try:
        yield server, serving
    finally:
        server.stop()
        await serving


async def test_streams_beyond_the_limit_are_refused_with_retry_after(tmp_path: Path) -> None:
    async with rig(tmp_path) as api:
        api.hub.max_clients = 2
        async with _served(api) as (server, _), httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{server.port}", headers=headers("viewer"),
                timeout=10) as client:
            async with client.stream("GET", "/stream") as one, \
                    client.stream("GET", "/stream") as two:
                assert (one.status_code, two.status_code) == (200, 200)
                refused = await client.get("/stream")
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "30"
                assert "api.max_stream_clients" in refused.json()["error"]
                stats = (await client.get("/stats")).json()["stream"]
                assert (stats["clients"], stats["refused"]) == (2, 1)
                metrics = (await client.get("/metrics")).text.splitlines()
                assert "harbourwatch_stream_refused_total 1.0" in metrics
            async with asyncio.timeout(30):  # the places are free again once those ended
                while api.hub.clients:
                    await asyncio.sleep(0.02)
            async with client.stream("GET", "/stream") as again:
                assert again.status_code == 200


async def test_a_stop_ends_streams_of_clients_not_reading_without_a_traceback(
        tmp_path: Path, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="api.server")
    clients = 12
    async with rig(tmp_path) as api:
        socks: list[socket.socket] = []
        try:
            async with _served(api) as (server, serving):
                def connect() -> None:
                    for _ in range(clients):
                        sock = socket.create_connection(("127.0.0.1", server.port))
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: hw\r\nAuthorization: "
                                     b"Bearer " + TOKENS["viewer"].encode() + b"\r\n\r\n")
                        socks.append(sock)

                await asyncio.to_thread(connect)
                async with asyncio.timeout(30):  # each request read and its stream opened
                    while api.hub.clients < clients:
                        await asyncio.sleep(0.02)
                assert api.hub.clients == clients
                # Far more than the clients' buffers take: every writer ends up waiting.
                for n in range(200_000):
                    api.hub.on_report(pos(244000000 + n % 100, T0 + n, -23.8, 151.3))
                    if n % 500 == 0:
                        await asyncio.sleep(0)
                await asyncio.sleep(0.2)
        finally:
            for sock in socks:
                sock.close()
        assert serving.done() and api.hub.clients == 0
    err = capfd.readouterr().err
    assert "Exception in ASGI application" not in err and "CancelledError" not in err
    assert "timeout graceful shutdown exceeded" not in err
    lines = [r.getMessage() for r in caplog.records if "live streams closed" in r.getMessage()]
    assert lines == [f"API stopping: {clients} live streams closed ({clients} cut: their "
                     f"clients were not reading)"]
