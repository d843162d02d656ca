"""The API when the database is cut off rather than stopped: packets dropped, nothing refused
(a TCP proxy that stops passing bytes), and once the store's writer knows it is away."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

import api.app
from tests.api_helpers import T0, headers
from tests.services.postgres import PostgresServer
from tests.test_api_outage import FIRST, SECOND, THIRD, service
from tests.test_store_outage import drain


class Proxy:
    """A TCP proxy that can be cut like a network (bytes held, nothing refused)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.cut = host, port, False
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await r.read(65536):
                while self.cut:
                    await asyncio.sleep(0.05)
                w.write(data)
                await w.drain()
        w.close()

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while self.cut:
            await asyncio.sleep(0.05)
        ur, uw = await asyncio.open_connection(self.host, self.port)
        await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def behind_a_proxy(direct: str) -> tuple[Proxy, str]:
    """A proxy to the server at DSN ``direct`` that can cut the network, and the DSN
    through it."""
    parts = urlsplit(direct)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.start()
    return proxy, urlunsplit(parts._replace(
        netloc=parts.netloc.replace(f":{parts.port}", f":{port}")))


async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> tuple[int, float]:
    started = time.monotonic()
    got = await asyncio.wait_for(call(), 30)
    return got.status_code, time.monotonic() - started


async def test_a_network_cut_is_answered_from_memory_in_seconds(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.app, "ACT_FLUSH_WAIT_S", 0.5)
    proxy, dsn = await behind_a_proxy(pg_dsn)
    try:
        async with service(postgres_server, dsn, tmp_path, answer_timeout=0.5) as hw:
            await hw.enter_box(FIRST, T0)
            await hw.enter_box(SECOND, T0 + 100)
            first, second = [a["id"] for a in (await hw.client.get(
                "/alerts", headers=headers("viewer"), params={"rule": "restricted_entry"})
                                               ).json()["alerts"]]
            proxy.cut = True
            answers = [
                await timed(lambda: hw.client.get("/alerts", headers=headers("viewer"))),
                await timed(lambda: hw.client.get(f"/alerts/{first}",
                                                  headers=headers("viewer"))),
                await timed(lambda: hw.client.post(f"/alerts/{first}/ack",
                                                   headers=headers("operator"))),
                # The writer is now stuck on the queued ack: the act does not wait for it.
                await timed(lambda: hw.client.post(f"/alerts/{second}/resolve",
                                                   headers=headers("operator"))),
            ]
            assert [status for status, _took in answers] == [200, 200, 202, 202]
            assert max(took for _status, took in answers) < 2.0, answers
            proxy.cut = False
            await drain(hw.store)
            # Where the ack given up on landed after all, the queued one gave way to it.
            stored = (await hw.client.get(f"/alerts/{first}", headers=headers("viewer"))
                      ).json()
            acts = hw.pipeline.operator_acts.of(first)
            assert acts is not None
            assert stored["acknowledged_at"] == acts["acknowledged_at"]
    finally:
        proxy.close()


async def test_once_the_writer_knows_the_database_is_away_it_is_not_tried(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)
        await hw.enter_box(SECOND, T0 + 100)
        first, second = [a["id"] for a in (await hw.client.get(
            "/alerts", headers=headers("viewer"), params={"rule": "restricted_entry"})
                                           ).json()["alerts"]]
        await hw.outage()
        assert (await hw.client.post(f"/alerts/{first}/ack",
                                     headers=headers("operator"))).status_code == 202
        async with asyncio.timeout(30):  # the writer tries the queued ack, and fails
            while hw.store.stats().db_up:
                await asyncio.sleep(0.02)

        async def tried(*_args: Any, **_kwargs: Any) -> Any:
            raise AssertionError("the database was tried")

        for name in ("alerts", "alert", "audit", "ack", "resolve", "flush", "snooze",
                     "unsnooze"):
            monkeypatch.setattr(hw.store, name, tried)
        calls: list[Callable[[], Awaitable[httpx.Response]]] = [
            lambda: hw.client.get("/alerts", headers=headers("viewer")),
            lambda: hw.client.get(f"/alerts/{second}", headers=headers("viewer")),
            lambda: hw.client.post(f"/alerts/{second}/resolve", headers=headers("operator")),
            lambda: hw.client.post("/snoozes", headers=headers("operator"), json={
                "rule": "restricted_entry", "mmsi": THIRD, "duration_s": 600}),
            lambda: hw.client.delete(f"/snoozes/restricted_entry:{THIRD}",
                                     headers=headers("operator")),
        ]
        assert [(await call()).status_code for call in calls] == [200, 200, 202, 202, 202]
        monkeypatch.undo()
        await hw.back()


async def test_the_snooze_history_is_503_at_once_in_a_cut_the_writer_knows_of(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    """It was tried all the same, and answered 503 only when its command timed out."""
    proxy, dsn = await behind_a_proxy(pg_dsn)
    try:
        async with service(postgres_server, dsn, tmp_path, command_timeout=3) as hw:
            made = await hw.client.post("/snoozes", headers=headers("operator"), json={
                "rule": "loitering", "mmsi": FIRST, "duration_s": 600})
            assert made.status_code == 201
            history = await hw.client.get("/snoozes/history", headers=headers("viewer"))
            assert [(h["action"], h["mmsi"]) for h in history.json()] == [("snooze", FIRST)]
            proxy.cut = True
            await hw.enter_box(SECOND, T0)  # the writer tries the alert, and times out
            async with asyncio.timeout(30):
                while hw.store.stats().db_up:
                    await asyncio.sleep(0.02)
            status, took = await timed(
                lambda: hw.client.get("/snoozes/history", headers=headers("viewer")))
            assert (status, took < 1.0) == (503, True), took
            proxy.cut = False
            await drain(hw.store)
            again = await hw.client.get("/snoozes/history", headers=headers("viewer"))
            assert again.json() == history.json()
    finally:
        proxy.close()


async def test_the_snooze_history_waits_no_longer_than_the_other_reads_in_a_cut(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    """Before the writer knows: it waited for its pooled connection's command timeout (60 s),
    where the alert and snooze reads give up after the answer timeout."""
    proxy, dsn = await behind_a_proxy(pg_dsn)
    try:
        async with service(postgres_server, dsn, tmp_path, answer_timeout=0.5) as hw:
            history = await hw.client.get("/snoozes/history", headers=headers("viewer"))
            assert (history.status_code, history.json()) == (200, [])
            proxy.cut = True
            assert hw.store.stats().db_up
            got = await asyncio.wait_for(
                hw.client.get("/snoozes/history", headers=headers("viewer")), 10)
            assert (got.status_code, got.json()["detail"]) == (
                503, "PostgreSQL did not answer within 0.5 s")
            proxy.cut = False
    finally:
        proxy.close()


async def test_a_track_is_503_at_once_in_a_cut_the_writer_knows_of(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    """It was tried all the same, and answered only when its command timed out."""
    proxy, dsn = await behind_a_proxy(pg_dsn)
    hour = {"start": "2026-01-01T09:30:00Z", "end": "2026-01-01T10:30:00Z"}
    try:
        async with service(postgres_server, dsn, tmp_path, command_timeout=3) as hw:
            await hw.enter_box(FIRST, T0)
            await drain(hw.store)
            track = await hw.client.get(f"/vessels/{FIRST}/track", headers=headers("viewer"),
                                        params=hour)
            assert len(track.json()["geometry"]["coordinates"]) == 3
            proxy.cut = True
            await hw.enter_box(SECOND, T0)  # the writer tries the alert, and times out
            async with asyncio.timeout(30):
                while hw.store.stats().db_up:
                    await asyncio.sleep(0.02)
            started = time.monotonic()
            got = await asyncio.wait_for(hw.client.get(
                f"/vessels/{FIRST}/track", headers=headers("viewer"), params=hour), 30)
            took = time.monotonic() - started
            assert (got.status_code, got.json()["detail"], took < 1.0) == (
                503, "database away (the store writer's last try failed); tracks are in "
                     "the database alone", True), took
            proxy.cut = False
            await drain(hw.store)
            again = await hw.client.get(f"/vessels/{FIRST}/track", headers=headers("viewer"),
                                        params=hour)
            assert again.json() == track.json()
    finally:
        proxy.close()
