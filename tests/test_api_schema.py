"""schemathesis against the OpenAPI schema of a real server (uvicorn on 127.0.0.1, real
SQLite): whatever the generated input, no 5xx. Bounded to stay well under a minute."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.auth import Authenticator
from api.deps import ApiDeps
from api.picture import LivePicture
from api.server import ApiServer
from api.stream import StreamHub
from geofence.zones import ZoneSet
from store import open_store
from tests.api_helpers import T0, TOKENS, ZONES_PATH, Token, event, make_alert, pos


class _Served:
    """The app over a started SQLite store, served from a thread with its own event loop."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: ApiServer | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        store = open_store(f"sqlite:///{self.tmp / 'schema.db'}", self.tmp, max_age=0.02)
        await store.start()
        picture, hub = LivePicture(), StreamHub()
        for i in range(20):
            report = pos(244000000 + i, T0 + i, -23.85 + i / 1000, 151.25, speed=float(i))
            picture.on_report(report)
            store.on_report(report)
        for i in range(5):
            store.on_alert(event(make_alert(mmsi=244000000 + i, start=T0 + i)))
        await store.flush()
        # Only the admin token: every operation gets past auth, writes included.
        auth = Authenticator.from_config([Token("admin-1", "admin", TOKENS["admin"])], env={})
        deps = ApiDeps(store=store, auth=auth, picture=picture, hub=hub,
                       zones=ZoneSet.from_geojson(ZONES_PATH), clock=lambda: T0 + 60)
        self.server = ApiServer(create_app(deps), "127.0.0.1", 0, hub=hub)
        serving = asyncio.create_task(self.server.serve())
        await self.server.wait_started()
        self.ready.set()
        await serving
        await store.stop()

    def start(self) -> str:
        self.thread.start()
        self.ready.wait(30)
        if self.error is not None:
            raise self.error
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        if self.loop is not None and self.server is not None:
            self.loop.call_soon_threadsafe(self.server.stop)
        self.thread.join(30)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    served = _Served(tmp_path_factory.mktemp("schema"))
    try:
        yield served.start()
    finally:
        served.stop()


def test_no_server_errors(base_url: str) -> None:
    # The live stream never ends by design; it is tested in test_api_live.py.
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json").exclude(path="/stream")
    auth = {"Authorization": f"Bearer {TOKENS['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            response = case.call(headers=auth, timeout=10)
            case.validate_response(response, checks=[not_a_server_error])

        check()
