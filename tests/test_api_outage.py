"""The API while PostgreSQL is stopped: the alert list from the rules' memory, marked as such,
and operators' acts applied at once and stored, with their actor and time, once it is back.

The service's own wiring (``harbourwatch.service.api_deps``) over a real PostgreSQL server,
the real rules and the real stream hub; the outage is the server stopped (or, on SQLite,
the file locked by another connection).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.deps import ApiDeps
from api.picture import LivePicture
from api.stream import StreamFilter, StreamHub, Subscriber
from geofence.engine import Engine
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from harbourwatch.pipeline import Pipeline
from harbourwatch.service import api_deps
from harbourwatch.snoozes import SnoozeBook
from ingest.ingestor import Ingestor
from store.base import NotFound, Store, StoreError, StoreUnavailable
from store.postgres import PostgresStore
from store.sqlite import SqliteStore
from tests.api_helpers import T0, ZONES_PATH, authenticator, headers, pos
from tests.services.postgres import PostgresServer
from tests.test_store_outage import drain

SPOT = (-23.80, 151.40)  # lat, lon: inside BOX
BOX = {"type": "Feature", "properties": {"id": "dredge_box", "name": "Dredging area",
                                         "kind": "restricted"},
       "geometry": {"type": "Polygon", "coordinates": [[
           [151.39, -23.81], [151.41, -23.81], [151.41, -23.79], [151.39, -23.79],
           [151.39, -23.81]]]}}
FIRST, SECOND, THIRD = 244770001, 244770002, 244770003


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
                  spool: Path | None = None, **options: Any) -> AsyncIterator[Service]:
    store = PostgresStore(dsn, spool_path=spool or tmp_path / "spool.jsonl",
                          **{"max_age": 0.01, "retry_max": 0.3, "connect_timeout": 2, **options})
    await store.start()
    try:
        async with wired(store) as (pipeline, hub, deps, client):
            yield Service(server, store, pipeline, hub, deps, client)
    finally:
        if not server.is_running():
            server.start()
        await store.stop()


@asynccontextmanager
async def wired(store: Store) -> AsyncIterator[
        tuple[Pipeline, StreamHub, ApiDeps, httpx.AsyncClient]]:
    """The rules, the stream and the API over a started ``store``, as the service wires
    them."""
    geojson = json.loads(ZONES_PATH.read_text())
    zones = ZoneSet.from_geojson({**geojson, "features": [*geojson["features"], BOX]})
    engine = Engine(RulesConfig(), zones)
    picture, hub = LivePicture(), StreamHub(linger_s=0.0)
    pipeline = Pipeline(Ingestor(), engine, [store, picture, hub], snoozes=SnoozeBook())
    pipeline.snoozes.load(await store.snoozes())  # as harbourwatch.service does at start
    deps = api_deps(store, authenticator(), engine, pipeline, zones, hub, picture,
                    [pipeline.operator_acts.record])
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://hw") as client:
        yield pipeline, hub, deps, client


def alerts_on(sub: Subscriber) -> list[dict[str, Any]]:
    """The alert events a stream client has been sent since it last looked."""
    out = []
    for chunk in sub.take():
        kind, data = chunk.decode().strip().split("\n")[-2:]
        if kind == "event: alert":
            out.append(json.loads(data.removeprefix("data: ")))
    return out


async def test_the_alert_list_is_served_from_memory_while_the_database_is_away(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)
        await hw.enter_box(SECOND, T0 + 100)
        everything = (await hw.client.get("/alerts", headers=headers("viewer"))).json()
        assert everything["total"] == 6  # 4 zone_entry events, already ended
        stored = (await hw.client.get("/alerts", headers=headers("viewer"),
                                      params={"rule": "restricted_entry"})).json()
        assert stored["total"] == 2
        # Lists of rules and risk areas, in SQL as in memory (below); only commas are no
        # filter (PostgreSQL refused the empty "IN ()" it made: a 500).
        listed = {"rule": "restricted_entry,dark_vessel", "risk_area": "fire,criminal_activity",
                  "state": "open,acknowledged"}
        assert (await hw.client.get("/alerts", headers=headers("viewer"), params=listed)
                ).json()["alerts"] == stored["alerts"]
        assert (await hw.client.get("/alerts", headers=headers("viewer"), params={
            "rule": "restricted_entry,zone_entry"})).json()["total"] == 6
        assert (await hw.client.get("/alerts", headers=headers("viewer"), params={
            "rule": ",", "state": ",", "risk_area": ","})).json()["total"] == 6
        # Severities likewise: the zone entries are info, the restricted entries above.
        above = {"severity": "warning,critical"}
        assert (await hw.client.get("/alerts", headers=headers("viewer"), params=above)
                ).json()["alerts"] == stored["alerts"]
        info = (await hw.client.get("/alerts", headers=headers("viewer"),
                                    params={"severity": "info"})).json()
        assert (info["total"], {a["rule"] for a in info["alerts"]}) == (4, {"zone_entry"})
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
        from_memory = (await hw.client.get("/alerts", headers=headers("viewer"),
                                           params=listed)).json()
        assert (from_memory["source"], from_memory["incomplete"]) == ("memory", {})
        assert [a["id"] for a in from_memory["alerts"]] == [a["id"] for a in stored["alerts"]]
        assert (await hw.client.get("/alerts", headers=headers("viewer"), params={
            **listed, "risk_area": "port_operations,fire"})).json()["alerts"] == []
        held = (await hw.client.get("/alerts", headers=headers("viewer"), params={
            **listed, **above})).json()
        assert (held["source"], [a["id"] for a in held["alerts"]]) == (
            "memory", [a["id"] for a in stored["alerts"]])
        assert (await hw.client.get("/alerts", headers=headers("viewer"), params={
            **listed, "severity": "info"})).json()["alerts"] == []
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


async def test_an_ack_during_the_outage_is_pushed_at_once_and_stored_when_it_is_back(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)
        await hw.enter_box(SECOND, T0 + 100)
        first, second = sorted((await hw.client.get(
            "/alerts", headers=headers("viewer"), params={"rule": "restricted_entry"})
                                ).json()["alerts"], key=lambda a: a["mmsi"])
        watcher = hw.hub.subscribe(StreamFilter())
        await hw.outage()

        acked = await hw.client.post(f"/alerts/{first['id']}/ack", headers=headers("operator"),
                                     json={"note": "pilot boat on scene"})
        assert acked.status_code == 202
        assert acked.headers["x-harbourwatch-source"] == "memory"
        assert acked.headers["x-harbourwatch-queued"] == "disk"  # spooled before the 202
        out = acked.json()
        assert (out["state"], out["acknowledged_by"], out["ack_note"]) == (
            "acknowledged", "operator-1", "pilot boat on scene")
        resolved = await hw.client.post(f"/alerts/{second['id']}/resolve",
                                        headers=headers("operator"))
        assert resolved.status_code == 202
        # On the stream at once, as an act with the database up is.
        pushed = alerts_on(watcher)
        assert [(e["type"], e["alert"]["id"], e["alert"]["state"]) for e in pushed] == [
            ("update", first["id"], "acknowledged"), ("update", second["id"], "resolved")]
        # In the list served from memory, and judged as the store would judge it.
        listed = (await hw.client.get("/alerts", headers=headers("viewer"))).json()
        assert listed["source"] == "memory"
        assert {a["id"]: a["state"] for a in listed["alerts"]} == {
            first["id"]: "acknowledged", second["id"]: "resolved"}
        again = await hw.client.post(f"/alerts/{first['id']}/ack", headers=headers("operator"))
        assert again.status_code == 409
        assert (await hw.client.post("/alerts/no-such-alert/ack",
                                     headers=headers("operator"))).status_code == 503
        # A rule's later transition keeps the act (the rules know nothing of it).
        hw.pipeline.handle_report(pos(FIRST, T0 + 400, -23.785, 151.40, speed=3.0))
        hw.pipeline.handle_report(pos(FIRST, T0 + 410, -23.785, 151.40, speed=3.0))

        await hw.back()
        stored = await hw.client.get(f"/alerts/{first['id']}", headers=headers("viewer"))
        assert stored.status_code == 200 and "x-harbourwatch-source" not in stored.headers
        row = stored.json()
        assert (row["state"], row["acknowledged_by"], row["acknowledged_at"],
                row["ack_note"]) == ("ended", "operator-1", out["acknowledged_at"],
                                     "pilot boat on scene")
        assert [(e["action"], e["actor"]) for e in row["audit"]] == [
            ("new", "rules"), ("ack", "operator-1"), ("end", "rules")]
        assert row["audit"][1]["time"] == out["acknowledged_at"]
        other = (await hw.client.get(f"/alerts/{second['id']}", headers=headers("viewer"))
                 ).json()
        assert (other["state"], other["resolved_by"], other["resolved_at"]) == (
            "resolved", "operator-1", resolved.json()["resolved_at"])


async def test_a_snooze_during_the_outage_mutes_at_once_and_is_stored_when_it_is_back(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)
        watcher = hw.hub.subscribe(StreamFilter())
        await hw.outage()

        made = await hw.client.post("/snoozes", headers=headers("operator"), json={
            "rule": "restricted_entry", "mmsi": SECOND, "duration_s": 3600,
            "note": "survey launch, expected"})
        assert made.status_code == 202
        assert made.headers["x-harbourwatch-source"] == "memory"
        assert made.headers["x-harbourwatch-queued"] == "disk"
        snooze = made.json()
        assert (snooze["id"], snooze["actor"], snooze["active"]) == (
            f"restricted_entry:{SECOND}", "operator-1", True)
        undone = await hw.client.post("/snoozes", headers=headers("operator"), json={
            "rule": "restricted_entry", "mmsi": THIRD, "duration_s": 3600})
        assert undone.status_code == 202
        lifted = await hw.client.delete(f"/snoozes/restricted_entry:{THIRD}",
                                         headers=headers("operator"))
        assert lifted.status_code == 202 and lifted.headers["x-harbourwatch-queued"] == "disk"
        assert (await hw.client.delete("/snoozes/restricted_entry:211000001",
                                       headers=headers("operator"))).status_code == 503

        await hw.enter_box(SECOND, T0 + 100)  # muted: not pushed
        await hw.enter_box(THIRD, T0 + 200)  # its snooze lifted: pushed
        pushed = alerts_on(watcher)
        assert [(e["type"], e["alert"]["mmsi"]) for e in pushed
                if e["alert"]["rule"] == "restricted_entry"] == [("new", THIRD)]
        assert hw.pipeline.muted == 1

        await hw.back()
        kept = (await hw.client.get("/snoozes", headers=headers("viewer"))).json()
        assert kept == [snooze]
        history = (await hw.client.get("/snoozes/history", headers=headers("viewer"))).json()
        assert [(h["action"], h["mmsi"], h["actor"], h["time"]) for h in history] == [
            ("unsnooze", THIRD, "operator-1", history[0]["time"]),
            ("snooze", THIRD, "operator-1", undone.json()["created"]),
            ("snooze", SECOND, "operator-1", snooze["created"])]
        # The muted alert is recorded all the same, as with the database up.
        listed = (await hw.client.get("/alerts", headers=headers("viewer"),
                                      params={"rule": "restricted_entry"})).json()
        assert sorted(a["mmsi"] for a in listed["alerts"]) == [FIRST, SECOND, THIRD]


async def test_the_snooze_list_is_served_from_memory_while_the_database_is_away(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    """It was 503, while the rules held every snooze (they mute by them)."""
    earlier = PostgresStore(pg_dsn, spool_path=tmp_path / "earlier.jsonl")
    await earlier.start()  # an earlier run's snooze, loaded at start
    await earlier.snooze("dark_vessel", THIRD, T0 + 86_400, "night-duty", "laid up", at=T0)
    await earlier.stop()
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)  # the rules' clock: T0 + 20

        async def listed(**params: str) -> httpx.Response:
            return await hw.client.get("/snoozes", headers=headers("viewer"), params=params)

        for rule, mmsi, duration in (("restricted_entry", SECOND, 3600),
                                     ("loitering", THIRD, 10), ("dark_vessel", SECOND, 600)):
            made = await hw.client.post("/snoozes", headers=headers("operator"), json={
                "rule": rule, "mmsi": mmsi, "duration_s": duration, "note": f"{rule} note"})
            assert made.status_code == 201
        hw.pipeline.handle_report(pos(FIRST, T0 + 100, -23.70, 151.70))  # loitering runs out
        up, up_all = (await listed()).json(), (await listed(active="false")).json()
        assert [(s["id"], s["active"]) for s in up_all] == [
            (f"dark_vessel:{SECOND}", True), (f"dark_vessel:{THIRD}", True),
            (f"loitering:{THIRD}", False), (f"restricted_entry:{SECOND}", True)]
        assert up == [s for s in up_all if s["active"]]
        await hw.outage()

        made = await hw.client.post("/snoozes", headers=headers("operator"), json={
            "rule": "speeding", "mmsi": FIRST, "duration_s": 900, "note": "trials"})
        assert made.status_code == 202
        lifted = await hw.client.delete(f"/snoozes/dark_vessel:{SECOND}",
                                         headers=headers("operator"))
        assert lifted.status_code == 202
        held = await listed()
        assert (held.status_code, held.headers.get("x-harbourwatch-source")) == (200, "memory")
        # As the store listed them, with the outage's acts: one made, one lifted.
        assert held.json() == [up[1], up[2], made.json()]
        held_all = await listed(active="false")
        assert held_all.headers["x-harbourwatch-source"] == "memory"
        assert held_all.json() == [up_all[1], up_all[2], up_all[3], made.json()]
        # The history is in the database alone.
        history = await hw.client.get("/snoozes/history", headers=headers("viewer"))
        assert history.status_code == 503
        # Rules that did not load the database's snoozes (a replay from its start) cannot
        # say which it keeps; nor can an API with no rules of its own.
        rules_own, hw.deps.snooze_target = hw.deps.snooze_target, SnoozeBook()
        unloaded = await listed()
        assert unloaded.status_code == 503
        assert "do not hold the database's snoozes" in unloaded.json()["detail"]
        hw.deps.snooze_target = rules_own
        store_only = create_app(ApiDeps(store=hw.store, auth=authenticator()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=store_only),
                                     base_url="http://hw") as client:
            assert (await client.get("/snoozes", headers=headers("viewer"))).status_code == 503

        await hw.back()
        for params, from_memory in (({}, held), ({"active": "false"}, held_all)):
            stored = await listed(**params)
            assert "x-harbourwatch-source" not in stored.headers
            assert stored.json() == from_memory.json()


async def test_a_snooze_run_out_that_memory_lists_can_be_lifted_while_the_database_is_away(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    """Run out, and its rule re-armed by the vessel's next alert: the rules no longer mute by
    it, but the store keeps it and memory lists it; lifting it was 503 (memory looked only
    at the snoozes that still mute)."""
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)  # the rules' clock: T0 + 20
        made = await hw.client.post("/snoozes", headers=headers("operator"), json={
            "rule": "restricted_entry", "mmsi": THIRD, "duration_s": 60, "note": "pilot"})
        assert made.status_code == 201
        watcher = hw.hub.subscribe(StreamFilter())
        await hw.enter_box(THIRD, T0 + 200)  # run out: its alert is pushed, the rule re-armed
        assert [(e["type"], e["alert"]["mmsi"]) for e in alerts_on(watcher)
                if e["alert"]["rule"] == "restricted_entry"] == [("new", THIRD)]
        run_out = {**made.json(), "active": False}
        await hw.outage()

        held = await hw.client.get("/snoozes", headers=headers("viewer"),
                                   params={"active": "false"})
        assert held.headers["x-harbourwatch-source"] == "memory"
        assert held.json() == [run_out]
        lifted = await hw.client.delete(f"/snoozes/restricted_entry:{THIRD}",
                                         headers=headers("operator"))
        assert (lifted.status_code, lifted.headers.get("x-harbourwatch-queued")) == (202, "disk")
        assert (await hw.client.get("/snoozes", headers=headers("viewer"),
                                    params={"active": "false"})).json() == []
        # Memory cannot say a snooze it does not hold is not in the database.
        unknown = await hw.client.delete(f"/snoozes/restricted_entry:{SECOND}",
                                          headers=headers("operator"))
        assert unknown.status_code == 503
        assert "no snooze 'restricted_entry:244770002' is held in memory" in (
            unknown.json()["detail"])

        await hw.back()
        assert (await hw.client.get("/snoozes", headers=headers("viewer"),
                                    params={"active": "false"})).json() == []
        history = (await hw.client.get("/snoozes/history", headers=headers("viewer"))).json()
        assert [(h["action"], h["mmsi"], h["actor"]) for h in history] == [
            ("unsnooze", THIRD, "operator-1"), ("snooze", THIRD, "operator-1")]


@asynccontextmanager
async def _locked_by_another_process(db: Path, store: SqliteStore,
                                     pipeline: Pipeline) -> AsyncIterator[None]:
    """Within: the SQLite file locked by another writer, after three reports of ``SECOND``
    whose rows (and alert) the store writer tried and failed to write (``db_up`` false)."""
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        for i in range(3):
            pipeline.handle_report(pos(SECOND, T0 + 10 * i, *SPOT, speed=3.0))
        async with asyncio.timeout(30):  # the writer tries them, and fails
            while store.stats().db_up:
                await asyncio.sleep(0.02)
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


async def test_the_snooze_history_is_not_read_from_a_sqlite_file_another_process_locks(
        tmp_path: Path) -> None:
    """Locked past the writer's busy timeout, a WAL file can still be read, but the history
    read from it lacked the snoozes made meanwhile (queued): it was a 200 without them."""
    db = tmp_path / "hw.db"
    store = SqliteStore(db, max_age=0.01, inline_writes=True)  # a batch waits 100 ms for a lock
    await store.start()
    try:
        async with wired(store) as (pipeline, _hub, _deps, client):
            def snoozed(mmsi: int, note: str) -> Awaitable[httpx.Response]:
                return client.post("/snoozes", headers=headers("operator"), json={
                    "rule": "loitering", "mmsi": mmsi, "duration_s": 600, "note": note})

            assert (await snoozed(FIRST, "before")).status_code == 201
            async with _locked_by_another_process(db, store, pipeline):
                assert (await snoozed(SECOND, "during")).status_code == 202
                history = await client.get("/snoozes/history", headers=headers("viewer"))
                assert history.status_code == 503
                assert history.json()["detail"] == (
                    "database away (the store writer's last try failed); the snooze history "
                    "is in the database alone")
            await drain(store)
            history = await client.get("/snoozes/history", headers=headers("viewer"))
            assert [(h["action"], h["mmsi"], h["note"]) for h in history.json()] == [
                ("snooze", SECOND, "during"), ("snooze", FIRST, "before")]
    finally:
        await store.stop()


async def test_a_track_is_not_read_from_a_sqlite_file_another_process_locks(
        tmp_path: Path) -> None:
    """Locked past the writer's busy timeout, a WAL file can still be read, but a track read
    from it lacked the positions buffered meanwhile: a 200 without them."""
    db = tmp_path / "hw.db"
    store = SqliteStore(db, max_age=0.01, inline_writes=True)  # a batch waits 100 ms for a lock
    await store.start()
    hour = {"start": "2026-01-01T09:30:00Z", "end": "2026-01-01T10:30:00Z"}
    try:
        async with wired(store) as (pipeline, _hub, _deps, client):
            def track() -> Awaitable[httpx.Response]:
                return client.get(f"/vessels/{SECOND}/track", headers=headers("viewer"),
                                  params=hour)

            for t in (T0 - 60, T0 - 30):
                pipeline.handle_report(pos(SECOND, t, *SPOT, speed=3.0))
            await drain(store)
            assert len((await track()).json()["geometry"]["coordinates"]) == 2
            async with _locked_by_another_process(db, store, pipeline):
                got = await track()
                assert (got.status_code, got.json()["detail"]) == (
                    503, "database away (the store writer's last try failed); tracks are in "
                         "the database alone")
            await drain(store)
            assert len((await track()).json()["geometry"]["coordinates"]) == 5
    finally:
        await store.stop()


async def test_the_alert_summary_is_not_read_from_a_sqlite_file_another_process_locks(
        tmp_path: Path) -> None:
    """The summary is the database's alone: while the writer cannot write, a file that still
    reads would count without the alerts and acts queued meanwhile, so it is 503; once
    they are written, they are counted."""
    db = tmp_path / "hw.db"
    store = SqliteStore(db, max_age=0.01, inline_writes=True)  # a batch waits 100 ms for a lock
    await store.start()
    try:
        async with wired(store) as (pipeline, _hub, _deps, client):
            def summary() -> Awaitable[httpx.Response]:
                return client.get("/alerts/summary", headers=headers("viewer"))

            for i in range(3):
                pipeline.handle_report(pos(FIRST, T0 - 60 + 10 * i, *SPOT, speed=3.0))
            await drain(store)
            assert (await summary()).json()["by_rule"]["restricted_entry"] == 1
            async with _locked_by_another_process(db, store, pipeline):
                got = await summary()
                assert (got.status_code, got.headers["retry-after"], got.json()["detail"]) == (
                    503, "5", "database away (the store writer's last try failed); the "
                              "summary is the database's alone")
            await drain(store)
            assert (await summary()).json()["by_rule"]["restricted_entry"] == 2
    finally:
        await store.stop()


async def test_acts_still_queued_at_a_stop_are_stored_by_the_next_start(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    async with service(postgres_server, pg_dsn, tmp_path, spool) as hw:
        await hw.enter_box(FIRST, T0)
        alert_id = (await hw.client.get("/alerts", headers=headers("viewer"), params={
            "rule": "restricted_entry"})).json()["alerts"][0]["id"]
        await hw.outage()
        acked = await hw.client.post(f"/alerts/{alert_id}/ack", headers=headers("operator"))
        assert acked.status_code == 202
        # On disk before the 202 (a crash from here on does not lose it), not at the stop.
        assert spool.with_suffix(".acts-v1.jsonl").exists()
        await hw.store.stop()  # the database still away

    after = PostgresStore(pg_dsn, spool_path=spool, max_age=0.01)
    await after.start()
    try:
        await drain(after)
        row = await after.alert(alert_id)
    finally:
        await after.stop()
    assert (row["state"], row["acknowledged_by"], row["acknowledged_at"]) == (
        "acknowledged", "operator-1", acked.json()["acknowledged_at"])
    assert not list(tmp_path.glob("spool*"))


async def test_an_act_the_spool_cannot_take_is_answered_as_queued_in_memory_only(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk: the act is applied and queued all the same, and its 202 says it is in
    memory only (lost if the service dies before the database is back)."""
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)
        alert_id = (await hw.client.get("/alerts", headers=headers("viewer"), params={
            "rule": "restricted_entry"})).json()["alerts"][0]["id"]
        await hw.outage()
        spool = hw.store._writer._spool
        real = spool.append

        def full(items: list[Any]) -> None:
            raise StoreError("cannot write spool (test): No space left on device")

        monkeypatch.setattr(spool, "append", full)
        acked = await hw.client.post(f"/alerts/{alert_id}/ack", headers=headers("operator"))
        assert acked.status_code == 202
        assert acked.headers["x-harbourwatch-queued"] == "memory"
        assert acked.json()["state"] == "acknowledged"
        monkeypatch.setattr(spool, "append", real)
        await hw.back()
        row = (await hw.client.get(f"/alerts/{alert_id}", headers=headers("viewer"))).json()
        assert (row["state"], row["acknowledged_by"]) == ("acknowledged", "operator-1")


async def test_an_ack_stored_whose_answer_cannot_be_read_is_not_queued_again(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops after the ack's commit, before anything else is read: the act
    was made, and is answered as made (it was queued again, with a new time, and 202)."""
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)
        alert_id = (await hw.client.get("/alerts", headers=headers("viewer"), params={
            "rule": "restricted_entry"})).json()["alerts"][0]["id"]
        real_alert = hw.store.alert

        async def away(*_args: Any) -> Any:
            raise StoreUnavailable("PostgreSQL unreachable: connection lost")

        monkeypatch.setattr(hw.store, "alert", away)
        monkeypatch.setattr(hw.store, "audit", away)
        with caplog.at_level(logging.WARNING):
            got = await hw.client.post(f"/alerts/{alert_id}/ack",
                                       headers=headers("operator"))
            await drain(hw.store)
        assert got.status_code == 200 and "x-harbourwatch-source" not in got.headers
        out = got.json()
        assert [(e["action"], e["actor"]) for e in out["audit"]] == [("ack", "operator-1")]
        stored = await real_alert(alert_id)
        acts = hw.pipeline.operator_acts.of(alert_id)
        assert acts is not None
        assert stored["acknowledged_at"] == out["acknowledged_at"] == acts["acknowledged_at"]
        assert hw.store.stats().queued == 0
        assert not [m for m in caplog.messages if "not stored" in m]


async def test_an_act_the_store_refuses_when_back_gives_way_to_the_stores_alert(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service acks from memory; a store-only API (the database reachable for it)
    resolves first: the queued ack is refused, and the stream, MQTT's listeners and memory,
    which showed it, are told the store's alert."""
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)
        alert_id = (await hw.client.get("/alerts", headers=headers("viewer"), params={
            "rule": "restricted_entry"})).json()["alerts"][0]["id"]
        heard: list[dict[str, Any]] = []
        hw.deps.operator_updates.append(heard.append)
        await hw.outage()
        acked = await hw.client.post(f"/alerts/{alert_id}/ack", headers=headers("operator"))
        assert acked.status_code == 202
        assert hw.store.stats().pending_acts == 1
        watcher = hw.hub.subscribe(StreamFilter())
        # The service's writer waits until the other API has resolved: back first, it wrote
        # the ack, and the resolve then went through (a race the test lost under load).
        resolved = asyncio.Event()
        real = hw.store.write_batch

        async def write_batch(batch: Any) -> int:
            await resolved.wait()
            return await real(batch)

        monkeypatch.setattr(hw.store, "write_batch", write_batch)
        await asyncio.to_thread(hw.server.start)
        other = PostgresStore(str(hw.store.dsn), spool_path=tmp_path / "other.jsonl")
        await other.start()
        try:
            await other.resolve(alert_id, "operator-2", "from the store-only API")
        finally:
            await other.stop()
            resolved.set()
        with caplog.at_level(logging.WARNING):
            await drain(hw.store)
            async with asyncio.timeout(30):  # the store's alert, read again in a task
                while not heard[1:]:
                    await asyncio.sleep(0.05)
        stats = hw.store.stats()
        assert (stats.written_acts, stats.dropped_acts, stats.pending_acts) == (0, 1, 0)
        assert len([m for m in caplog.messages if "not stored" in m]) == 1
        acts = hw.pipeline.operator_acts.of(alert_id)
        assert acts is not None
        assert (acts["state"], acts["resolved_by"]) == ("resolved", "operator-2")
        assert [(a["state"], a["resolved_by"]) for a in heard] == [
            ("acknowledged", None), ("resolved", "operator-2")]
        assert [(e["type"], e["alert"]["state"]) for e in alerts_on(watcher)] == [
            ("update", "resolved")]
        listed = (await hw.client.get(f"/alerts/{alert_id}", headers=headers("viewer"))).json()
        assert (listed["state"], listed["acknowledged_by"]) == ("resolved", None)
        metrics = (await hw.client.get("/metrics", headers=headers("viewer"))).text
        assert "harbourwatch_store_dropped_acts_total 1.0" in metrics


async def test_an_alert_of_the_outage_is_served_from_memory_until_the_store_has_it(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The database is back, the writer has not yet written what was queued meanwhile:
    an alert raised and acknowledged then is not 404, nor missing from the list."""
    async with service(postgres_server, pg_dsn, tmp_path) as hw:
        await hw.enter_box(FIRST, T0)
        await hw.outage()
        for i in range(3):
            hw.pipeline.handle_report(pos(SECOND, T0 + 100 + 10 * i, *SPOT, speed=3.0))
        alert_id = next(a.id for a in hw.pipeline.engine.open_alerts() if a.mmsi == SECOND)
        acked = await hw.client.post(f"/alerts/{alert_id}/ack", headers=headers("operator"))
        assert acked.status_code == 202
        async with asyncio.timeout(30):  # the writer tries the queued ack, and fails
            while hw.store.stats().db_up:
                await asyncio.sleep(0.02)
        writer = hw.store._writer
        real, go_on = writer._drain, asyncio.Event()

        async def catching_up(due: bool = True) -> bool:
            writer._stats.db_up = True  # back: as after the catch-up's first batch
            await go_on.wait()
            return await real(due)

        monkeypatch.setattr(writer, "_drain", catching_up)
        await asyncio.to_thread(hw.server.start)
        async with asyncio.timeout(30):  # the writer's retry finds it back
            while not hw.store.stats().db_up:
                await asyncio.sleep(0.02)
        try:
            assert hw.store.stats().catching_up
            one = await hw.client.get(f"/alerts/{alert_id}", headers=headers("viewer"))
            assert one.status_code == 200 and one.headers["x-harbourwatch-source"] == "memory"
            assert (one.json()["state"], one.json()["acknowledged_by"]) == (
                "acknowledged", "operator-1")
            listed = await hw.client.get("/alerts", headers=headers("viewer"),
                                         params={"mmsi": str(SECOND)})
            assert listed.headers["x-harbourwatch-source"] == "memory"
            assert [a["id"] for a in listed.json()["alerts"]] == [alert_id]
        finally:
            go_on.set()
        await drain(hw.store)
        assert not hw.store.stats().catching_up
        stored = await hw.client.get(f"/alerts/{alert_id}", headers=headers("viewer"))
        assert stored.status_code == 200 and "x-harbourwatch-source" not in stored.headers
        assert stored.json()["acknowledged_at"] == acked.json()["acknowledged_at"]
        # Raised, not yet in the writer's batch: memory has it (it was 404).

        async def not_yet(_alert_id: str) -> Any:
            raise NotFound(f"no alert {_alert_id!r}")

        monkeypatch.setattr(hw.store, "alert", not_yet)
        fresh = await hw.client.get(f"/alerts/{alert_id}", headers=headers("viewer"))
        assert fresh.status_code == 200 and fresh.headers["x-harbourwatch-source"] == "memory"


def test_the_outage_answers_are_in_the_openapi_document(tmp_path: Path) -> None:
    from store.sqlite import SqliteStore

    app = create_app(ApiDeps(store=SqliteStore(tmp_path / "hw.db"), auth=authenticator()))
    paths = app.openapi()["paths"]
    for path, method in (("/alerts/{alert_id}/ack", "post"),
                         ("/alerts/{alert_id}/resolve", "post"), ("/snoozes", "post"),
                         ("/snoozes/{snooze_id}", "delete")):
        answers = paths[path][method]["responses"]
        assert "202" in answers and "503" in answers, (path, answers.keys())
        assert "X-Harbourwatch-Source" in answers["202"]["headers"]
        assert "X-Harbourwatch-Queued" in answers["202"]["headers"]
    for path in ("/alerts", "/alerts/{alert_id}", "/snoozes"):
        answers = paths[path]["get"]["responses"]
        assert "503" in answers
        assert "X-Harbourwatch-Source" in answers["200"]["headers"]
        assert "$ref" in str(answers["200"]["content"])  # the model is kept
