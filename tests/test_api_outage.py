"""The API while PostgreSQL is stopped: the alert list from the rules' memory, marked as such.

The service's own wiring (``harbourwatch.service.api_deps``) over a real PostgreSQL server,
the real rules and the real stream hub; the outage is the server stopped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.app import create_app
from api.deps import ApiDeps
from api.picture import LivePicture
from api.stream import StreamHub
from geofence.engine import Engine
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from harbourwatch.pipeline import Pipeline
from harbourwatch.service import api_deps
from harbourwatch.snoozes import SnoozeBook
from ingest.ingestor import Ingestor
from store.postgres import PostgresStore
from tests.api_helpers import T0, ZONES_PATH, authenticator, headers, pos
from tests.services.postgres import PostgresServer, pg_dsn, postgres_server  # noqa: F401
from tests.test_store_outage import drain

SPOT = (-23.80, 151.40)  # lat, lon: inside BOX
BOX = {"type": "Feature", "properties": {"id": "dredge_box", "name": "Dredging area",
                                         "kind": "restricted"},
       "geometry": {"type": "Polygon", "coordinates": [[
           [151.39, -23.81], [151.41, -23.81], [151.41, -23.79], [151.39, -23.79],
           [151.39, -23.81]]]}}
FIRST, SECOND = 244770001, 244770002


@dataclass(slots=True)
class Service:
    server: PostgresServer
    store: PostgresStore
    pipeline: Pipeline
    hub: StreamHub
    deps: ApiDeps
    client: httpx.AsyncClient

    async def enter_box(self, mmsi: int, start: float) -> None:
        """Three reports inside the restricted box: ``restricted_entry`` opens (stored,
        unless the database is away)."""
        for i in range(3):
            self.pipeline.handle_report(pos(mmsi, start + 10 * i, *SPOT, speed=3.0))
        await self.store.flush()

    async def outage(self) -> None:
        await drain(self.store)
        await asyncio.to_thread(self.server.stop, "fast")

    async def back(self) -> None:
        await asyncio.to_thread(self.server.start)
        await drain(self.store)


@asynccontextmanager
async def service(server: PostgresServer, dsn: str, tmp_path: Path,
                  spool: Path | None = None) -> AsyncIterator[Service]:
    store = PostgresStore(dsn, spool_path=spool or tmp_path / "spool.jsonl", max_age=0.01,
                          retry_max=0.3, connect_timeout=2)
    await store.start()
    geojson = json.loads(ZONES_PATH.read_text())
    zones = ZoneSet.from_geojson({**geojson, "features": [*geojson["features"], BOX]})
    engine = Engine(RulesConfig(), zones)
    picture, hub = LivePicture(), StreamHub(linger_s=0.0)
    pipeline = Pipeline(Ingestor(), engine, [store, picture, hub], snoozes=SnoozeBook())
    deps = api_deps(store, authenticator(), engine, pipeline, zones, hub, picture,
                    [pipeline.operator_acts.record])
    transport = httpx.ASGITransport(app=create_app(deps))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://hw") as client:
            yield Service(server, store, pipeline, hub, deps, client)
    finally:
        if not server.is_running():
            server.start()
        await store.stop()


async def test_the_alert_list_is_served_from_memory_while_the_database_is_away(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)
        await hw.enter_box(SECOND, T0 + 100)
        everything = (await hw.client.get("/alerts", headers=headers("viewer"))).json()
        assert everything["total"] == 6  # 4 zone_entry events, already ended
        stored = (await hw.client.get("/alerts", headers=headers("viewer"),
                                      params={"rule": "restricted_entry"})).json()
        assert stored["total"] == 2
        await hw.outage()

        got = await hw.client.get("/alerts", headers=headers("viewer"))
        assert got.status_code == 200
        assert got.headers["x-harbourwatch-source"] == "memory"
        page = got.json()
        assert page["source"] == "memory"
        assert list(page["incomplete"]) == ["state"]  # ended ones are not held
        assert "ended alerts" in page["incomplete"]["state"]
        # The same alerts, in the same order, as the store listed them (memory keeps no
        # updated_at).
        assert page["alerts"] == [{**a, "updated_at": None} for a in stored["alerts"]]
        assert (page["total"], page["next"]) == (2, None)

        # Filters memory can honour in full: nothing said to be missing.
        only = await hw.client.get("/alerts", headers=headers("viewer"), params={
            "state": "open,acknowledged", "drill": "false", "mmsi": str(SECOND),
            "rule": "restricted_entry", "zone": "dredge_box"})
        assert only.status_code == 200
        assert only.json()["incomplete"] == {}
        assert [a["mmsi"] for a in only.json()["alerts"]] == [SECOND]
        both = (await hw.client.get("/alerts", headers=headers("viewer"),
                                    params={"drill": "any", "state": "open"})).json()
        assert list(both["incomplete"]) == ["drill"]  # another run's drill: not held
        paged = (await hw.client.get("/alerts", headers=headers("viewer"),
                                     params={"limit": "1"})).json()
        assert (paged["total"], paged["next"]) == (2, stored["alerts"][0]["id"])
        rest = (await hw.client.get("/alerts", headers=headers("viewer"),
                                    params={"after": paged["next"]})).json()
        assert [a["id"] for a in rest["alerts"]] == [stored["alerts"][1]["id"]]

        one = await hw.client.get(f"/alerts/{stored['alerts'][0]['id']}",
                                  headers=headers("viewer"))
        assert one.status_code == 200
        assert one.headers["x-harbourwatch-source"] == "memory"
        assert one.json()["mmsi"] == SECOND and one.json()["source"] == "memory"

        # What memory cannot answer is still the outage's 503.
        for params in ({"state": "ended"}, {"drill": "true"}):
            refused = await hw.client.get("/alerts", headers=headers("viewer"), params=params)
            assert refused.status_code == 503, params
            assert "not answered from memory" in refused.json()["detail"]
        assert (await hw.client.get("/alerts/no-such-alert",
                                    headers=headers("viewer"))).status_code == 503

        # An API over the store alone (no rules in its process) has no memory to serve.
        store_only = create_app(ApiDeps(store=hw.store, auth=authenticator()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=store_only),
                                     base_url="http://hw") as client:
            assert (await client.get("/alerts", headers=headers("viewer"))).status_code == 503
