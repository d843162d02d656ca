"""The API with the real rules engine and a real uvicorn on 127.0.0.1: zone changes take
effect on the next report, and the SSE stream delivers alert transitions and positions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from api.server import ApiServer
from api.stream import StreamFilter, StreamHub
from geofence.engine import Engine
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from tests.api_helpers import T0, ZONES_PATH, headers, pos, rig

SPOT = (-23.80, 151.40)  # lat, lon: open water inside the demo port limit
BOX = {"type": "Feature", "properties": {"id": "dredge_box", "name": "Dredging area",
                                         "kind": "restricted"},
       "geometry": {"type": "Polygon", "coordinates": [[
           [151.39, -23.81], [151.41, -23.81], [151.41, -23.79], [151.39, -23.79],
           [151.39, -23.81]]]}}
VESSEL = 244770000


async def _events(resp: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """Parse server-sent events as they arrive (comments skipped)."""
    kind, data = "", ""
    async for line in resp.aiter_lines():
        if line.startswith(":"):
            continue
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and kind:
            yield kind, json.loads(data)
            kind, data = "", ""


async def test_zone_change_applies_on_next_report_and_streams_the_alert(tmp_path: Path) -> None:
    zones = ZoneSet.from_geojson(ZONES_PATH)
    engine = Engine(RulesConfig(), zones)
    async with rig(tmp_path, zones=zones) as api:
        pipeline = Pipeline(Ingestor(), engine, [api.store, api.picture, api.hub])
        api.deps.zone_target = pipeline
        app = create_app(api.deps)
        server = ApiServer(app, "127.0.0.1", 0, hub=api.hub)
        serving = asyncio.create_task(server.serve())
        await server.wait_started()
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with httpx.AsyncClient(base_url=base, headers=headers("viewer"),
                                         timeout=10) as client:
                # Before the change: the vessel sits in open water, no alert.
                for i in range(3):
                    pipeline.handle_report(pos(VESSEL, T0 + 10 * i, *SPOT, speed=3.0))
                await api.store.flush()
                before = (await client.get("/alerts", params={"rule": "restricted_entry"}))
                assert before.json()["total"] == 0

                async with client.stream("GET", "/stream", params={
                        "rules": "restricted_entry", "vessels": str(VESSEL),
                        "bbox": "151.3,-23.9,151.5,-23.7"}) as resp:
                    assert resp.status_code == 200
                    assert resp.headers["content-type"].startswith("text/event-stream")
                    events = _events(resp)
                    while api.hub.clients == 0:
                        await asyncio.sleep(0.01)

                    new = json.loads(ZONES_PATH.read_text())
                    new["features"].append(BOX)
                    put = await client.put("/zones", json=new, headers=headers("admin"))
                    assert put.status_code == 200, put.text
                    # The next reports (inertia: two inside) open restricted_entry.
                    for i in range(3, 6):
                        pipeline.handle_report(pos(VESSEL, T0 + 10 * i, *SPOT, speed=3.0))
                    pipeline.handle_report(pos(211000001, T0 + 61, *SPOT))  # other vessel

                    seen: list[tuple[str, Any]] = []
                    async for kind, data in events:
                        seen.append((kind, data))
                        if kind == "alert":
                            break
                    positions = [d for k, d in seen if k == "position"]
                    assert {d["mmsi"] for d in positions} == {VESSEL}
                    assert positions[0]["time"] == "2026-01-01T10:00:30Z"
                    assert (positions[0]["lat"], positions[0]["lon"]) == SPOT
                    kind, data = seen[-1]
                    assert data["type"] == "new"
                    alert = data["alert"]
                    assert (alert["rule"], alert["mmsi"], alert["zone"], alert["state"]) == (
                        "restricted_entry", VESSEL, "dredge_box", "open")
                    assert alert["started_at"] == "2026-01-01T10:00:40Z"

                    # An operator's acknowledgement reaches the stream as an update.
                    await api.store.flush()
                    ack = await client.post(f"/alerts/{alert['id']}/ack",
                                            headers=headers("operator"), json={"note": "ok"})
                    assert ack.status_code == 200
                    kind, data = await anext(events)
                    while kind != "alert":  # the positions after the entry come first
                        kind, data = await anext(events)
                    assert (kind, data["type"], data["alert"]["state"],
                            data["alert"]["acknowledged_by"]) == (
                        "alert", "update", "acknowledged", "operator-1")

                stored = (await client.get("/alerts", params={"rule": "restricted_entry"})
                          ).json()
                assert stored["total"] == 1 and stored["alerts"][0]["zone"] == "dredge_box"
                # Removing the zone again ends the alert through the engine.
                back = json.loads(ZONES_PATH.read_text())
                assert (await client.put("/zones", json=back, headers=headers("admin"))
                        ).status_code == 200
                await api.store.flush()
                ended = (await client.get(f"/alerts/{alert['id']}")).json()
                assert ended["state"] == "ended" and ended["ended_at"] is not None
                assert ended["details"]["end_reason"] == "zones changed"
        finally:
            server.stop()
            await serving
        assert api.hub.clients == 0


async def test_slow_client_drops_oldest_and_is_told() -> None:
    hub = StreamHub(ring_size=3, linger_s=0.0)
    sub = hub.subscribe(StreamFilter())
    chunks = sub.chunks(linger_s=0.0)
    assert await anext(chunks) == b": connected\n\n"
    for i in range(5):
        hub.on_report(pos(VESSEL, T0 + i, *SPOT))
    body = (await anext(chunks)).decode()
    blocks = [b for b in body.split("\n\n") if b]
    assert blocks[0] == 'event: dropped\ndata: {"dropped":2}'
    times = [json.loads(b.split("data: ")[1])["time"] for b in blocks[1:]]
    assert times == ["2026-01-01T10:00:02Z", "2026-01-01T10:00:03Z", "2026-01-01T10:00:04Z"]
    assert (hub.stats().dropped, hub.stats().events) == (2, 5)
    hub.unsubscribe(sub)
    assert hub.clients == 0 and hub.stats().dropped == 2
    hub.on_report(pos(VESSEL, T0 + 9, *SPOT))  # nobody listens: nothing is encoded
    assert hub.stats().events == 5


def test_filters_pick_alerts_and_positions() -> None:
    f = StreamFilter(bbox=(151.0, -24.0, 152.0, -23.0), rules=frozenset({"speeding"}),
                     vessels=frozenset({1, 2}))
    assert f.matches("position", 1, None, 151.5, -23.5, None)
    assert not f.matches("position", 3, None, 151.5, -23.5, None)
    assert not f.matches("position", 1, None, 150.0, -23.5, None)
    assert f.matches("alert", 9, 2, None, None, "speeding")  # either vessel, no position
    assert not f.matches("alert", 1, None, None, None, "loitering")
    assert not f.matches("alert", 1, None, 0.0, 0.0, "speeding")
    assert not StreamFilter(kinds=frozenset({"alert"})).matches("position", 1, None, 0, 0, None)


async def test_a_client_reconnecting_with_last_event_id_gets_the_alerts_it_missed(
        tmp_path: Path) -> None:
    """EventSource reconnects with the last id it saw; the alerts of the gap were lost."""
    async with rig(tmp_path) as api:
        server = ApiServer(create_app(api.deps), "127.0.0.1", 0, hub=api.hub)
        serving = asyncio.create_task(server.serve())
        await server.wait_started()

        def alert(n: int) -> dict[str, Any]:
            return {"id": f"a{n}", "rule": "speeding", "mmsi": VESSEL, "state": "open"}

        async def read(last_event_id: str | None, count: int) -> list[tuple[str, str, Any]]:
            """(id, event, data) of the first ``count`` events."""
            got: list[tuple[str, str, Any]] = []
            extra: dict[str, str | bytes] = ({} if last_event_id is None else
                                             {"Last-Event-ID": last_event_id.encode("latin-1")})
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}",
                                         headers={**headers("viewer"), **extra},
                                         timeout=10) as client, \
                    client.stream("GET", "/stream", params={"types": "alert"}) as resp:
                block: dict[str, str] = {}
                async for line in resp.aiter_lines():
                    if line.startswith(":"):
                        if len(got) == 0 and count == 1 and last_event_id is None:
                            api.hub.publish_alert("new", alert(1))  # once connected
                        continue
                    if line:
                        key, _, value = line.partition(": ")
                        block[key] = value
                        continue
                    if not block:
                        continue  # the end of a comment
                    got.append((block.get("id", ""), block["event"], json.loads(block["data"])))
                    block = {}
                    if len(got) == count:
                        return got
            return got

        try:
            ((first_id, kind, data),) = await read(None, 1)
            assert (kind, data["alert"]["id"]) == ("alert", "a1")
            while api.hub.clients:
                await asyncio.sleep(0.01)
            for n in (2, 3):  # while the client is away
                api.hub.publish_alert("new", alert(n))
            resumed = await read(first_id, 2)
            assert [(k, d["alert"]["id"]) for _, k, d in resumed] == [
                ("alert", "a2"), ("alert", "a3")]
            run, _, seq = first_id.rpartition("-")
            assert [i for i, _, _ in resumed] == [f"{run}-{int(seq) + 1}",
                                                  f"{run}-{int(seq) + 2}"]
            # An id of an earlier run of the service: what was missed is unknown.
            assert await read("0badc0de-7", 1) == [("", "dropped", {"dropped": None})]
            # A superscript digit: not a number (int() raised after the 200).
            assert await read(f"{run}-\u00b2", 1) == [("", "dropped", {"dropped": None})]
        finally:
            server.stop()
            await serving


def test_a_fix_the_rules_rejected_is_not_streamed() -> None:
    """A spoofed jump reached /stream while the picture and MQTT kept the vessel in place."""
    hub = StreamHub(ring_size=8, linger_s=0.0)
    hub.subscribe(StreamFilter())
    hub.on_report(pos(VESSEL, T0, *SPOT))
    hub.on_report(pos(VESSEL, T0 + 1, -29.9, 151.4, suspect="position_jump"))
    assert hub.stats().events == 1


def test_base_stations_and_aton_are_not_streamed_as_vessel_positions() -> None:
    """The picture and MQTT take station messages for no vessel; the stream's position
    events (a vessel's position) left a base station (4) or AtoN (21) in; a type 11, a
    ship's answer, too: its position moves nothing in the picture either."""
    hub = StreamHub(ring_size=8, linger_s=0.0)
    hub.subscribe(StreamFilter())
    hub.on_report(pos(VESSEL, T0, *SPOT))
    for msg_type in (4, 11, 21):
        hub.on_report(pos(992446000 + msg_type, T0 + 1, *SPOT, msg_type=msg_type))
    assert hub.stats().events == 1
