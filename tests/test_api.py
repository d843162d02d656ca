"""HTTP API over a real SQLite store: auth, picture, tracks, alerts, snoozes, zones, metrics."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Query

from api.app import DESIGN_RULES, Viewer
from api.auth import Authenticator, Role, sha256_hex
from geofence.alert import AlertEvent, RiskArea, Severity, Transition
from geofence.zones import ZoneSet
from harbourwatch.timeutil import parse_iso
from ingest.report import iso_time
from store import open_store
from tests.api_helpers import (
    T0,
    TOKENS,
    ZONES_PATH,
    A,
    B,
    C,
    Rig,
    Token,
    event,
    headers,
    make_alert,
    pos,
    rig,
)

BERTH_1 = (-23.8346, 151.2668)  # lat, lon inside berth_1 of the demo port
OPEN_SEA = (-23.70, 151.70)


@pytest.fixture
async def api(tmp_path: Path) -> Any:
    async with rig(tmp_path) as r:
        yield r


# -- auth --------------------------------------------------------------------------------------

async def test_health_is_open_and_everything_else_needs_a_token(api: Rig) -> None:
    health = await api.client.get("/health")
    assert (health.status_code, health.json()["status"]) == (200, "ok")
    assert (health.json()["store_up"], health.json()["mqtt_connected"]) == (True, None)
    for path in ("/vessels", "/alerts", "/zones", "/stats", "/metrics", "/sources", "/snoozes"):
        resp = await api.client.get(path)
        assert resp.status_code == 401, path
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.json()["error"].startswith("missing bearer token")
    bad = await api.client.get("/vessels", headers={"Authorization": "Bearer wrong"})
    assert (bad.status_code, bad.json()["error"]) == (401, "unknown or revoked token")
    malformed = await api.client.get("/vessels", headers={"Authorization": "Basic abc"})
    assert malformed.status_code == 401
    ok = await api.client.get("/vessels", headers=headers("viewer"))
    assert ok.status_code == 200


async def test_a_body_is_refused_before_it_is_read_without_a_token_or_over_its_size(
        api: Rig) -> None:
    """An unauthenticated PUT /zones of 500 MB was parsed (3.5 GB, seconds of a blocked
    event loop) before its 401."""
    garbage = b"{" * 1000  # not JSON: a 422 would mean it was parsed
    anonymous = await api.client.put("/zones", content=garbage)
    assert (anonymous.status_code, anonymous.json()["error"]) == (
        401, "missing bearer token (Authorization: Bearer <token>)")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    viewer = await api.client.post("/snoozes", content=garbage, headers=headers("viewer"))
    assert viewer.status_code == 403
    big = await api.client.post("/snoozes", content=b" " * (64 * 1024 + 1),
                                headers=headers("operator"))
    assert (big.status_code, big.json()["error"]) == (
        413, "body of 65537 bytes is over the limit of 65536")
    zones = await api.client.put("/zones", content=b" " * (32 * 1024 * 1024 + 1),
                                 headers=headers("admin"))
    assert zones.status_code == 413
    json_body = {"content-type": "application/json"}
    operator = await api.client.put("/zones", content=garbage,
                                    headers={**headers("operator"), **json_body})
    assert operator.status_code == 403  # not 422: the zones are the admin's, not parsed

    async def chunks() -> AsyncIterator[bytes]:
        yield b"{}"

    chunked = await api.client.post("/snoozes", content=chunks(), headers=headers("operator"))
    assert (chunked.status_code, chunked.json()["error"]) == (
        411, "a body needs a Content-Length")
    # Within bounds, with a token: on to the endpoint (a 422 for a body that is not JSON).
    assert (await api.client.post("/snoozes", content=garbage, headers=headers("operator"))
            ).status_code == 422


async def test_viewer_cannot_acknowledge(api: Rig) -> None:
    alert = make_alert()
    api.store.on_alert(event(alert))
    await api.store.flush()
    resp = await api.client.post(f"/alerts/{alert.id}/ack", json={"note": "x"},
                                 headers=headers("viewer"))
    assert resp.status_code == 403
    assert resp.json() == {"error": "token 'viewer-1' has role viewer; this needs operator",
                           "detail": None}
    assert (await api.store.alert(alert.id))["state"] == "open"
    assert [a["action"] for a in await api.store.audit(alert.id)] == ["new"]
    put = await api.client.put("/zones", json=json.loads(ZONES_PATH.read_text()),
                               headers=headers("operator"))
    assert put.status_code == 403


async def test_open_read_lets_anonymous_read_but_not_write(tmp_path: Path) -> None:
    async with rig(tmp_path, open_read=True) as r:
        assert (await r.client.get("/vessels")).status_code == 200
        assert (await r.client.get("/alerts")).status_code == 200
        resp = await r.client.post("/snoozes", json={"rule": "dark_vessel", "mmsi": A,
                                                     "duration_s": 60})
        assert resp.status_code == 401
        bad = await r.client.get("/vessels", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401  # a wrong token is never taken as anonymous


def test_tokens_are_held_hashed_from_config_and_environment() -> None:
    auth = Authenticator.from_config(
        [Token("ops", "operator", token_sha256=sha256_hex("s3cret"))],
        env={"HARBOURWATCH_API_TOKENS": "boss:admin:b:o:s:s, eye:viewer:look"})
    assert auth.names == ["ops", "boss", "eye"]
    assert auth.identify("s3cret") is not None and auth.identify("s3cret").role is Role.OPERATOR
    assert auth.identify("b:o:s:s").name == "boss"  # type: ignore[union-attr]
    assert auth.identify("look").role is Role.VIEWER  # type: ignore[union-attr]
    assert auth.identify("s3cre") is None
    assert not any(secret.encode() in repr(auth.__dict__).encode()
                   for secret in ("s3cret", "b:o:s:s", "look"))
    with pytest.raises(ValueError, match="unknown role"):
        Authenticator.from_config([], env={"HARBOURWATCH_API_TOKENS": "x:captain:y"})


# -- vessels -----------------------------------------------------------------------------------

def _fill_picture(api: Rig) -> None:
    api.feed(pos(A, T0, *BERTH_1, speed=0.2))                       # class A, in berth_1
    api.feed(pos(B, T0 + 5, *OPEN_SEA, speed=12.0, msg_type=18))    # class B, outside
    api.feed(pos(C, T0 + 9, -23.80, 151.40, speed=7.5))             # class A, in the port
    api.feed(pos(A, T0 + 10, BERTH_1[0] + 1e-4, BERTH_1[1], speed=0.3))  # newer for A


async def test_vessel_filters_and_geojson(api: Rig) -> None:
    _fill_picture(api)
    h = headers("viewer")

    async def mmsis(**params: Any) -> list[int]:
        resp = await api.client.get("/vessels", params=params, headers=h)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["count"] == len(body["vessels"])
        return sorted(v["mmsi"] for v in body["vessels"])

    assert await mmsis() == sorted([A, B, C])
    assert await mmsis(bbox="151.2,-23.9,151.5,-23.75") == sorted([A, C])
    assert await mmsis(min_speed=5) == sorted([B, C])
    assert await mmsis(**{"class": "B"}) == [B]
    assert await mmsis(zone="berth_1") == [A]
    assert await mmsis(zone="port_limit", min_speed=1) == [C]

    resp = await api.client.get("/vessels", headers=h)
    one = {v["mmsi"]: v for v in resp.json()["vessels"]}[A]
    assert (one["lat"], one["lon"], one["speed"]) == (BERTH_1[0] + 1e-4, BERTH_1[1], 0.3)
    assert (one["time"], one["class"], one["sources"]) == (iso_time(T0 + 10), "A", ["rx1"])

    geo = await api.client.get("/vessels", params={"format": "geojson", "zone": "berth_1"},
                               headers=h)
    assert geo.headers["content-type"] == "application/geo+json"
    fc = geo.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    feature = fc["features"][0]
    assert feature["type"] == "Feature" and feature["id"] == A
    assert feature["geometry"] == {"type": "Point",
                                   "coordinates": [BERTH_1[1], BERTH_1[0] + 1e-4]}  # lon, lat
    assert feature["properties"]["mmsi"] == A and "lat" not in feature["properties"]
    by_accept = await api.client.get("/vessels", headers={**h, "Accept": "application/geo+json"})
    assert len(by_accept.json()["features"]) == 3


async def test_vessel_filter_errors_are_json(api: Rig) -> None:
    h = headers("viewer")
    cases = {
        "bbox=1,2,3": "bbox: expected minlon,minlat,maxlon,maxlat (four numbers)",
        "bbox=10,0,5,1": "bbox: need -180 <= minlon <= maxlon <= 180 and "
                         "-90 <= minlat <= maxlat <= 90",
        "zone=nowhere": "zone: unknown zone 'nowhere'",
    }
    for query, message in cases.items():
        resp = await api.client.get(f"/vessels?{query}", headers=h)
        assert (resp.status_code, resp.json()["error"]) == (422, message)
    resp = await api.client.get("/vessels?min_speed=fast", headers=h)
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"].startswith("invalid request: query.min_speed:")
    assert body["detail"][0]["loc"] == ["query", "min_speed"]


async def test_one_vessel_live_or_stored(api: Rig) -> None:
    _fill_picture(api)
    from tests.test_store import static  # the same static report helper

    api.store.on_report(static(211999999, T0, shipname="ONLY STATIC", callsign="XX1"))
    await api.store.flush()
    h = headers("viewer")
    live = (await api.client.get(f"/vessels/{C}", headers=h)).json()
    assert (live["mmsi"], live["lat"], live["lon"], live["speed"]) == (C, -23.80, 151.40, 7.5)
    stored = (await api.client.get("/vessels/211999999", headers=h)).json()
    assert (stored["shipname"], stored["callsign"], stored["lat"]) == ("ONLY STATIC", "XX1", None)
    missing = await api.client.get("/vessels/123456789", headers=h)
    assert missing.status_code == 404
    assert missing.json()["error"] == "vessel 123456789 is not in the picture nor in the store"
    assert (await api.client.get("/vessels/-5", headers=h)).status_code == 422


async def test_track_is_a_linestring_with_per_vertex_times(api: Rig) -> None:
    for i in range(5):
        api.feed(pos(A, T0 + 10 * i, -23.83 + i * 1e-3, 151.26 + i * 2e-3, speed=4 + i))
    api.feed(pos(B, T0, *OPEN_SEA))
    await api.store.flush()
    resp = await api.client.get(f"/vessels/{A}/track", headers=headers("viewer"), params={
        "start": iso_time(T0 + 5), "end": iso_time(T0 + 40)})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/geo+json"
    feat = resp.json()
    assert feat["type"] == "Feature" and feat["geometry"]["type"] == "LineString"
    coords = feat["geometry"]["coordinates"]
    assert coords == [[pytest.approx(151.26 + i * 2e-3), pytest.approx(-23.83 + i * 1e-3)]
                      for i in (1, 2, 3, 4)]
    times = feat["properties"]["coordinateProperties"]["times"]
    assert times == [iso_time(T0 + 10 * i) for i in (1, 2, 3, 4)]
    assert all(t.endswith("Z") for t in times) and len(times) == len(coords)
    assert feat["properties"]["coordinateProperties"]["speed"] == [5, 6, 7, 8]
    assert (feat["properties"]["start"], feat["properties"]["points"]) == (iso_time(T0 + 5), 4)

    # A fix the rules rejected (a spoof 300 km off) is no vertex, unless asked for.
    api.feed(pos(A, T0 + 45, -26.5, 151.3, suspect="position_jump"))
    await api.store.flush()
    window = {"start": iso_time(T0 + 35), "end": iso_time(T0 + 50)}
    plain = (await api.client.get(f"/vessels/{A}/track", headers=headers("viewer"),
                                  params=window)).json()
    assert plain["properties"]["points"] == 1 and "rejected" not in plain["properties"][
        "coordinateProperties"]
    every = (await api.client.get(f"/vessels/{A}/track", headers=headers("viewer"),
                                  params={**window, "rejected": "true"})).json()
    assert every["properties"]["coordinateProperties"]["rejected"] == [False, True]

    one = (await api.client.get(f"/vessels/{B}/track", headers=headers("viewer"), params={
        "start": iso_time(T0 - 1), "end": iso_time(T0 + 1)})).json()
    assert one["geometry"] == {"type": "Point", "coordinates": [OPEN_SEA[1], OPEN_SEA[0]]}
    bad = await api.client.get(f"/vessels/{A}/track", headers=headers("viewer"),
                               params={"start": "yesterday"})
    assert (bad.status_code, bad.json()["error"]) == (
        422, "start: not an ISO 8601 time ('yesterday')")
    backwards = await api.client.get(f"/vessels/{A}/track", headers=headers("viewer"), params={
        "start": iso_time(T0 + 40), "end": iso_time(T0)})
    assert (backwards.status_code, backwards.json()["error"]) == (422, "end is before start")
    for name, value in (("start", "1e308"), ("end", "-1e300"), ("end", "1e20")):
        far = await api.client.get(f"/vessels/{A}/track", headers=headers("viewer"),
                                   params={name: value})
        assert (far.status_code, far.json()["error"]) == (
            422, f"{name}: out of range (years 1 to 9999)")
    last_hour = await api.client.get(f"/vessels/{A}/track", headers=headers("viewer"),
                                     params={"start": "9999-12-31T23:30:00Z"})
    assert (last_hour.status_code, last_hour.json()["error"]) == (
        422, "start/end: the default hour falls outside years 1 to 9999")


async def test_a_track_given_only_its_start_is_the_hour_from_it_and_says_so(api: Rig) -> None:
    """`start` alone gives the hour from it, not up to now: the description said "end:
    default now", so a duty officer asking for the track since the start of the watch
    would take the vessel for silent after its first hour."""
    h = headers("viewer")
    feat = (await api.client.get(f"/vessels/{A}/track", headers=h,
                                 params={"start": "2026-03-01T08:00:00Z"})).json()
    assert (feat["properties"]["start"], feat["properties"]["end"]) == (
        "2026-03-01T08:00:00Z", "2026-03-01T09:00:00Z")
    params = {p["name"]: p.get("description") for p in (await api.client.get(
        "/openapi.json")).json()["paths"]["/vessels/{mmsi}/track"]["get"]["parameters"]}
    assert (params["start"], params["end"]) == (
        "ISO 8601; default end - 1 h",
        "ISO 8601; default start + 1 h, or without start the rules' clock (message time)")


async def test_a_time_whose_plus_sign_the_url_turned_to_a_space_is_told_how_to_write_it(
        api: Rig) -> None:
    """A port east of Greenwich writes its local time with `+10:00`; unescaped in a URL's
    query that `+` arrives as a space, and "not an ISO 8601 time" would blame a time that
    was right. The 422 names the cause and the way to write it; UTC with Z and `%2B` work."""
    await _seed_alerts(api)
    h = headers("viewer")
    told = ("start: '2026-03-01T22:00:00 10:00' has a space where its offset's '+' was: "
            "a URL query reads '+' as a space; write it %2B (2026-03-01T22:00:00%2B10:00), "
            "or give the time in UTC with Z")
    for path in ("/alerts", "/alerts/summary", f"/vessels/{A}/track"):
        bad = await api.client.get(f"{path}?start=2026-03-01T22:00:00+10:00", headers=h)
        assert (bad.status_code, bad.json()["error"]) == (422, told), path
    compact = await api.client.get("/alerts?end=2026-03-01T22:00:00+1000", headers=h)
    assert compact.json()["error"] == (
        "end: '2026-03-01T22:00:00 1000' has a space where its offset's '+' was: a URL "
        "query reads '+' as a space; write it %2B (2026-03-01T22:00:00%2B1000), or give "
        "the time in UTC with Z")
    escaped = await api.client.get("/alerts/summary?start=2026-03-01T22:00:00%2B10:00",
                                   headers=h)
    assert (escaped.status_code, escaped.json()["start"]) == (200, "2026-03-01T12:00:00Z")
    assert (await api.client.get("/alerts?start=yesterday 10:00", headers=h)).json()[
        "error"] == "start: not an ISO 8601 time ('yesterday 10:00')"


# -- alerts ------------------------------------------------------------------------------------

async def _seed_alerts(api: Rig) -> list[str]:
    from geofence.alert import RiskArea

    alerts = [
        make_alert("dark_vessel", A, T0),
        make_alert("dark_vessel", B, T0 + 3600, zone="outer_anchorage", drill=True),
        make_alert("speeding", C, T0 + 7200, zone="main_channel",
                   risk=RiskArea.PORT_OPERATIONS),
        make_alert("encounter", C, T0 + 100, zone=None, other=A),
    ]
    for a in alerts:
        api.store.on_alert(event(a))
    ended = alerts[0]
    from geofence.alert import AlertState

    ended.state, ended.ended_at = AlertState.ENDED, T0 + 600
    api.store.on_alert(event(ended, Transition.END))
    await api.store.flush()
    return [a.id for a in alerts]


def alert_listing(api: Rig, h: dict[str, str]) -> tuple[
        Callable[..., Awaitable[dict[str, Any]]], Callable[..., Awaitable[list[str]]]]:
    """``page(**params)``: a ``GET /alerts`` answered 200; ``ids(**params)``: its ids."""

    async def page(**params: Any) -> dict[str, Any]:
        resp = await api.client.get("/alerts", params=params, headers=h)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def ids(**params: Any) -> list[str]:
        return [a["id"] for a in (await page(**params))["alerts"]]

    return page, ids


async def test_alert_filters_and_pagination(api: Rig) -> None:
    a1, a2, a3, a4 = await _seed_alerts(api)
    h = headers("viewer")
    page, ids = alert_listing(api, h)

    assert await ids() == [a3, a4, a1]  # the serving run's kind: real alerts
    assert await ids(drill="any") == [a3, a2, a4, a1]
    assert await ids(rule="dark_vessel", drill="any") == [a2, a1]
    assert await ids(state="ended") == [a1]
    assert await ids(state="open,acknowledged", drill="any") == [a3, a2, a4]
    assert await ids(risk_area="port_operations") == [a3]
    assert await ids(zone="outer_anchorage", drill="any") == [a2]
    assert await ids(mmsi=A) == [a4, a1]
    assert await ids(drill="true") == [a2]
    assert await ids(drill="false") == [a3, a4, a1]
    assert await ids(start=iso_time(T0 + 700), end=iso_time(T0 + 5000), drill="any") == [
        a2, a4]

    first = await page(limit=2, drill="any")
    assert (first["total"], first["limit"], first["offset"]) == (4, 2, 0)
    assert [a["id"] for a in first["alerts"]] == [a3, a2]
    second = await page(limit=2, offset=2, drill="any")
    assert (second["total"], [a["id"] for a in second["alerts"]]) == (4, [a4, a1])
    # By cursor: the page after the first one's last alert, whatever arrived since.
    assert first["next"] == a2
    by_cursor = await page(limit=2, after=first["next"], drill="any")
    assert (by_cursor["total"], [a["id"] for a in by_cursor["alerts"]]) == (4, [a4, a1])
    assert by_cursor["next"] == a1 and (await page(after=a1))["next"] is None
    missing = await api.client.get("/alerts", params={"after": "nope"}, headers=h)
    assert (missing.status_code, missing.json()["error"]) == (422, "after: no alert 'nope'")
    both = await api.client.get("/alerts", params={"after": a2, "offset": 2}, headers=h)
    assert both.status_code == 422  # the offset would skip alerts past the cursor
    beyond = await page(limit=2, offset=10, drill="any")
    assert (beyond["total"], beyond["alerts"]) == (4, [])
    assert (await page(rule="dark_vessel", limit=1, drill="any"))["total"] == 2

    stored = (await page(rule="speeding"))["alerts"][0]
    assert stored["started_at"] == iso_time(T0 + 7200) and stored["state"] == "open"
    assert (stored["lat"], stored["lon"], stored["risk_area"]) == (
        -23.85, 151.25, "port_operations")
    for bad in ({"state": "sleeping"}, {"risk_area": "pirates"}, {"limit": 0},
                {"start": "soon"}, {"drill": "both"}, {"rule": "speedng"},
                {"start": "2026-01-01T12:00:00Z", "end": "2026-01-01T11:00:00Z"}):
        assert (await api.client.get("/alerts", params=bad, headers=h)).status_code == 422
    # A filter the API does not have matched everything, silently.
    unknown = await api.client.get("/alerts", params={"priority": "high"}, headers=h)
    assert unknown.status_code == 422
    assert unknown.json()["error"].startswith(
        "priority: unknown query parameter (expected after, drill, end, limit, mmsi, ")
    assert (await api.client.get("/vessels", params={"max_speed": 3}, headers=h)
            ).status_code == 422
    # The names are for callers: no token, a 401 before any of them is said.
    assert (await api.client.get("/alerts", params={"priority": "high"})).status_code == 401
    assert (await api.client.get("/stream", params={"rules": "speeding,speedng"}, headers=h)
            ).json()["error"] == "rules: unknown rule 'speedng'"


async def test_severity_filters_the_alert_list_and_the_summary(api: Rig) -> None:
    """"Warnings and above on my watch" could not be asked: neither /alerts nor
    /alerts/summary had a severity filter."""
    info = make_alert("zone_entry", A, T0, risk=RiskArea.PORT_OPERATIONS,
                      severity=Severity.INFO)
    warning = make_alert("dark_vessel", B, T0 + 100)
    critical = make_alert("restricted_entry", C, T0 + 200, severity=Severity.CRITICAL)
    drill = make_alert("restricted_entry", A, T0 + 300, drill=True, severity=Severity.CRITICAL)
    for a in (info, warning, critical, drill):
        api.store.on_alert(event(a))
    await api.store.flush()
    h = headers("viewer")
    page, ids = alert_listing(api, h)

    assert await ids(severity="critical") == [critical.id]
    assert await ids(severity="warning,critical") == [critical.id, warning.id]
    assert await ids(severity="critical", drill="any") == [drill.id, critical.id]
    assert await ids(severity="info", rule="dark_vessel") == []
    assert await ids(severity=" , ") == [critical.id, warning.id, info.id]  # no filter
    counted = await page(severity="warning,critical", limit=1)
    assert (counted["total"], counted["next"]) == (2, critical.id)

    async def summary(**params: str) -> dict[str, Any]:
        resp = await api.client.get("/alerts/summary", params=params, headers=h)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    above = await summary(severity="warning,critical")
    assert (above["total"], above["by_severity"], above["by_rule"], above["snoozes"]) == (
        2, {"critical": 1, "warning": 1}, {"dark_vessel": 1, "restricted_entry": 1},
        None)  # a snooze names no severity
    assert (await summary(severity="info"))["by_rule"] == {"zone_entry": 1}

    known = ["critical", "info", "warning"]
    for path in ("/alerts", "/alerts/summary"):
        for query, message in (
                ("severity=warning,urgent", "severity: unknown severity 'urgent'"),
                ("severity=high,warning,urgent", "severity: unknown severities 'high', 'urgent'"),
                ("severity=Critical", "severity: unknown severity 'Critical'")):
            resp = await api.client.get(f"{path}?{query}", headers=h)
            assert (resp.status_code, resp.json()) == (422, {"error": message, "detail": known})
        twice = await api.client.get(f"{path}?severity=warning&severity=critical", headers=h)
        assert (twice.status_code, twice.json()["error"]) == (
            422, "severity: given 2 times; give one value, comma-separated for several "
                 "(severity=a,b)")


async def test_the_total_of_a_full_page_is_counted_by_the_database_not_read_page_by_page(
        api: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every full page read every matching alert again to count them (10,000 a query):
    4 s a page at 50,000 alerts on SQLite, a month of a busy port's zone entries."""
    for i in range(30):
        api.store.on_alert(event(make_alert("zone_entry", A + i, T0 + i, zone="berth_3")))
    await api.store.flush()
    read: list[int] = []
    listed = api.store.alerts

    async def counted(query: Any = None) -> list[dict[str, Any]]:
        rows = await listed(query)
        read.append(len(rows))
        return rows

    monkeypatch.setattr(api.store, "alerts", counted)
    page, _ids = alert_listing(api, headers("viewer"))
    first = await page(limit=5, rule="zone_entry")
    assert (first["total"], len(first["alerts"]), read) == (30, 5, [5])
    # The total is over every page, also when paging by cursor.
    assert (await page(limit=5, after=first["next"]))["total"] == 30


async def test_rule_and_risk_area_take_comma_separated_lists_like_state(api: Rig) -> None:
    """``rule=speeding,restricted_entry`` was 422 "unknown rule 'speeding,restricted_entry'"
    while ``state`` and ``/stream?rules=`` took lists."""
    a1, a2, a3, a4 = await _seed_alerts(api)
    h = headers("viewer")
    page, ids = alert_listing(api, h)

    assert await ids(rule="speeding,encounter") == [a3, a4]
    assert await ids(rule=" dark_vessel , speeding,", drill="any") == [a3, a2, a1]
    assert await ids(rule="speeding,restricted_entry") == [a3]  # a rule with no alerts yet
    assert await ids(risk_area="port_operations,criminal_activity") == [a3, a4, a1]
    assert await ids(risk_area="port_operations,fire") == [a3]
    assert await ids(rule="dark_vessel,encounter", risk_area="criminal_activity,fire",
                     state="open,ended") == [a4, a1]
    # The count of a page that is not the last one is the store's, with the same filters.
    counted = await page(rule="dark_vessel,speeding", limit=1, drill="any")
    assert (counted["total"], [a["id"] for a in counted["alerts"]]) == (3, [a3])
    # Only commas: no filter (as before for state), never an empty "IN ()".
    assert await ids(rule=",", risk_area=" , ", state=",") == [a3, a4, a1]

    # Every value is checked, and each unknown one named.
    cases = {
        "rule=speeding,speedng": ("rule: unknown rule 'speedng'", sorted(DESIGN_RULES)),
        "rule=loitring,speeding,speedng": ("rule: unknown rules 'loitring', 'speedng'",
                                           sorted(DESIGN_RULES)),
        "risk_area=fire,pirates": ("risk_area: unknown risk area 'pirates'", sorted(
            ["port_operations", "criminal_activity", "fire", "financial",
             "information_security", "natural_hazard"])),
        "state=open,sleeping,dozing": ("state: unknown states 'sleeping', 'dozing'",
                                       ["acknowledged", "ended", "open", "resolved"]),
    }
    for query, (message, known) in cases.items():
        resp = await api.client.get(f"/alerts?{query}", headers=h)
        assert (resp.status_code, resp.json()) == (422, {"error": message, "detail": known})
    stream = await api.client.get("/stream?rules=speedng,speeding,loitring", headers=h)
    assert (stream.status_code, stream.json()["error"]) == (
        422, "rules: unknown rules 'speedng', 'loitring'")

    params = {p["name"]: p for p in (await api.client.get("/openapi.json")).json()[
        "paths"]["/alerts"]["get"]["parameters"]}
    assert "comma-separated" in params["rule"]["description"]
    assert "comma-separated" in params["risk_area"]["description"]



async def test_a_repeated_query_parameter_is_refused_naming_it(api: Rig) -> None:
    """``rule=a&rule=b`` listed rule b's alerts alone, ``limit=5&limit=9`` nine vessels:
    the last value counted, the others silently not."""
    a1, a2, a3, _ = await _seed_alerts(api)
    h = headers("viewer")
    listed = "give one value, comma-separated for several"
    cases = {
        "/alerts?rule=speeding&rule=dark_vessel": f"rule: given 2 times; {listed} (rule=a,b)",
        "/alerts?state=open&limit=5&state=ended&state=open":
            f"state: given 3 times; {listed} (state=a,b)",
        "/alerts?limit=5&limit=5": "limit: given 2 times; give one value",
        "/vessels?limit=5&limit=9": "limit: given 2 times; give one value",
        "/vessels?bbox=151,-24,152,-23&bbox=150,-25,151,-24":
            "bbox: given 2 times; give one value",
        f"/vessels/{A}/track?max_points=2&max_points=3":
            "max_points: given 2 times; give one value",
        "/snoozes?active=true&active=false": "active: given 2 times; give one value",
        "/snoozes/history?rule=loitering&rule=speeding":
            f"rule: given 2 times; {listed} (rule=a,b)",
        "/stream?types=alert&types=position": f"types: given 2 times; {listed} (types=a,b)",
    }
    for path, message in cases.items():
        resp = await api.client.get(path, headers=h)
        assert (resp.status_code, resp.json().get("error")) == (422, message), path
    # An unknown name is said first; no token: a 401 before any name is said.
    unknown = await api.client.get("/alerts?priority=1&priority=2&limit=1&limit=2", headers=h)
    assert unknown.json()["error"].startswith("priority: unknown query parameter")
    assert (await api.client.get("/alerts?limit=1&limit=2")).status_code == 401
    # One value each: as before.
    one = await api.client.get("/alerts?rule=speeding,dark_vessel&drill=any&limit=5", headers=h)
    assert [a["id"] for a in one.json()["alerts"]] == [a3, a2, a1]
    # Ack and the rest take no query parameter: a repeated unknown one is still unknown.
    acked = await api.client.post(f"/alerts/{a3}/ack?x=1&x=2", headers=headers("operator"))
    assert acked.json()["error"].startswith("x: unknown query parameter")


async def test_a_list_typed_query_parameter_may_repeat(api: Rig) -> None:
    """FastAPI reads every value of a ``list[...]`` parameter: repeating it is its use."""
    import httpx

    from api.app import create_app

    app = create_app(api.deps)

    @app.get("/tags")
    async def tags(_: Viewer, tag: Annotated[list[str] | None, Query()] = None,
                   limit: int = 1) -> dict[str, Any]:
        return {"tag": tag, "limit": limit}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://hw") as client:
        both = await client.get("/tags?tag=a&tag=b&limit=3", headers=headers("viewer"))
        assert (both.status_code, both.json()) == (200, {"tag": ["a", "b"], "limit": 3})
        twice = await client.get("/tags?tag=a&limit=3&limit=4", headers=headers("viewer"))
        assert (twice.status_code, twice.json().get("error")) == (
            422, "limit: given 2 times; give one value")


async def test_ack_and_resolve_are_audited_with_who_and_when(api: Rig) -> None:
    a1, *_ = await _seed_alerts(api)
    alert_id = (await api.client.get("/alerts", params={"rule": "speeding"},
                                     headers=headers("viewer"))).json()["alerts"][0]["id"]
    detail = (await api.client.get(f"/alerts/{alert_id}", headers=headers("viewer"))).json()
    assert [(e["actor"], e["action"]) for e in detail["audit"]] == [("rules", "new")]

    acked = await api.client.post(f"/alerts/{alert_id}/ack", json={"note": "seen on radar"},
                                  headers=headers("operator"))
    assert acked.status_code == 200
    body = acked.json()
    assert (body["state"], body["acknowledged_by"], body["ack_note"]) == (
        "acknowledged", "operator-1", "seen on radar")
    last = body["audit"][-1]
    assert (last["actor"], last["action"], last["note"], last["before"], last["after"]) == (
        "operator-1", "ack", "seen on radar", "open", "acknowledged")
    assert last["time"].endswith("Z") and last["time"] == body["acknowledged_at"]

    resolved = await api.client.post(f"/alerts/{alert_id}/resolve", headers=headers("admin"))
    assert resolved.status_code == 200
    trail = (await api.client.get(f"/alerts/{alert_id}", headers=headers("viewer"))).json()
    assert trail["state"] == "resolved" and trail["resolved_by"] == "admin-1"
    assert [(e["actor"], e["action"], e["after"]) for e in trail["audit"]] == [
        ("rules", "new", "open"), ("operator-1", "ack", "acknowledged"),
        ("admin-1", "resolve", "resolved")]

    # Each act is made once: a repeat would overwrite who, when and the note.
    again = await api.client.post(f"/alerts/{alert_id}/ack", headers=headers("operator"))
    assert again.status_code == 409
    assert again.json()["error"] == (
        f"alert {alert_id} was already resolved by admin-1 at {trail['resolved_at']}")
    assert (await api.client.post(f"/alerts/{alert_id}/resolve", headers=headers("admin"))
            ).status_code == 409
    acked_twice = await api.client.post(f"/alerts/{a1}/ack", json={"note": "first"},
                                        headers=headers("operator"))
    assert acked_twice.status_code == 200
    second = await api.client.post(f"/alerts/{a1}/ack", headers=headers("admin"))
    assert (second.status_code, second.json()["error"]) == (
        409, f"alert {a1} was already acknowledged by operator-1 at "
        f"{acked_twice.json()['acknowledged_at']}")
    kept = (await api.client.get(f"/alerts/{a1}", headers=headers("viewer"))).json()
    assert (kept["acknowledged_by"], kept["ack_note"]) == ("operator-1", "first")
    assert [e["actor"] for e in kept["audit"] if e["action"] == "ack"] == ["operator-1"]

    missing = await api.client.post("/alerts/nope/ack", headers=headers("operator"))
    assert (missing.status_code, missing.json()["error"]) == (404, "no alert 'nope'")
    extra = await api.client.post(f"/alerts/{a1}/ack", json={"nope": 1},
                                  headers=headers("operator"))
    assert extra.status_code == 422


async def test_a_body_sent_as_a_form_is_told_to_be_json(api: Rig) -> None:
    """``curl --data @zones.geojson`` without ``-H 'Content-Type: application/json'`` (curl
    then says it is a form) was "body: Input should be a valid dictionary or object to
    extract fields from", which named neither the header nor what to send."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    put = await api.client.put("/zones", content=ZONES_PATH.read_bytes(),
                               headers={**headers("admin"), **form})
    said = ("invalid request: the body must be JSON, sent with Content-Type: "
            "application/json (this request said application/x-www-form-urlencoded)")
    assert (put.status_code, put.json()["error"]) == (422, said)
    alert_id = (await _seed_alerts(api))[0]
    ack = await api.client.post(f"/alerts/{alert_id}/ack", content=b"pilot on scene",
                                headers={**headers("operator"), **form})
    assert (ack.status_code, ack.json()["error"]) == (422, said)
    # JSON that is not an object is still told as it is.
    listed = await api.client.post("/snoozes", json=[1], headers=headers("operator"))
    assert listed.json()["error"].startswith("invalid request: body: Input should be")


async def test_a_body_nested_too_deep_or_not_utf8_is_told_why(api: Rig) -> None:
    """JSON nested thousands of levels deep (under the 64 KB limit), or bytes that are not
    UTF-8, were a 400 "There was an error parsing the body", which named no reason, where
    every other bad body is a 422 saying what is wrong."""
    alert_id = (await _seed_alerts(api))[0]
    op = {**headers("operator"), "Content-Type": "application/json"}
    deep = b'{"note": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    nested = await api.client.post(f"/alerts/{alert_id}/ack", content=deep, headers=op)
    assert (nested.status_code, nested.json()["error"]) == (
        422, "invalid request: the body's JSON nests arrays and objects too deep to read")
    latin = await api.client.post("/snoozes", headers=op,
                                  content='{"rule": "dark_vessel", "note": "café"}'
                                  .encode("latin-1"))
    assert (latin.status_code, latin.json()["error"]) == (
        422, "invalid request: the body is not UTF-8 (invalid continuation byte at byte offset 36)")
    kept = (await api.client.get(f"/alerts/{alert_id}", headers=headers("viewer"))).json()
    assert [e["action"] for e in kept["audit"]] == ["new", "end"]


async def test_the_audit_trail_says_which_clock_each_entry_is_on(api: Rig) -> None:
    """In a replay of a 2012 log the rules' transitions carry the log's message time, an
    operator's act this year's wall time; the schema called both "Wall time of the act"."""
    started = parse_iso("2012-01-27T11:53:20Z")
    alert = make_alert("dark_vessel", A, started)  # a dark vessel is noticed after its
    api.store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), started + 40))  # last fix
    await api.store.flush()
    before = time.time()
    acked = await api.client.post(f"/alerts/{alert.id}/ack", headers=headers("operator"))
    assert acked.status_code == 200
    trail = (await api.client.get(f"/alerts/{alert.id}", headers=headers("viewer"))
             ).json()["audit"]
    assert [(e["actor"], e["action"]) for e in trail] == [("rules", "new"), ("operator-1", "ack")]
    assert trail[0]["time"] == "2012-01-27T11:54:00Z"  # message time: when the rules noticed
    assert before - 1 <= parse_iso(trail[1]["time"]) <= time.time() + 1  # wall time

    schemas = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
    said = schemas["AuditEntry"]["properties"]["time"]["description"]
    assert said != "Wall time of the act"
    for words in ("actor `rules`", "message time", "operator's act", "wall time of the act",
                  "in a replay"):
        assert words in said, words
    assert "not sorted by `time`" in schemas["AlertDetail"]["properties"]["audit"][
        "description"]


async def test_snoozes_are_audited_and_removable(api: Rig, tmp_path: Path) -> None:
    h = headers("operator")
    resp = await api.client.post("/snoozes", headers=h, json={
        "rule": "loitering", "mmsi": A, "duration_s": 1800, "note": "bunker barge"})
    assert resp.status_code == 201
    assert resp.json() == {"id": f"loitering:{A}", "rule": "loitering", "mmsi": A,
                           "until": iso_time(T0 + 3600 + 1800), "actor": "operator-1",
                           "note": "bunker barge", "created": resp.json()["created"],
                           "active": True}
    listed = (await api.client.get("/snoozes", headers=headers("viewer"))).json()
    assert [s["id"] for s in listed] == [f"loitering:{A}"]
    typo = await api.client.post("/snoozes", headers=h,
                                 json={"rule": "loitring", "mmsi": A, "duration_s": 60})
    assert (typo.status_code, typo.json()["error"]) == (422, "rule: unknown rule 'loitring'")
    viewer = await api.client.post("/snoozes", headers=headers("viewer"),
                                   json={"rule": "loitering", "mmsi": A, "duration_s": 60})
    assert viewer.status_code == 403

    gone = await api.client.delete(f"/snoozes/loitering:{A}", headers=h)
    assert gone.status_code == 204
    assert (await api.client.get("/snoozes", headers=h)).json() == []
    again = await api.client.delete(f"/snoozes/loitering:{A}", headers=h)
    assert again.status_code == 404
    assert (await api.client.delete("/snoozes/garbage", headers=h)).status_code == 422
    # A misspelt rule is a typo, as for POST: not "no snooze", which sends one looking.
    lift_typo = await api.client.delete(f"/snoozes/loitring:{A}", headers=h)
    assert (lift_typo.status_code, lift_typo.json()) == (
        422, {"error": "rule: unknown rule 'loitring'", "detail": sorted(DESIGN_RULES)})
    assert typo.json() == lift_typo.json()

    conn = sqlite3.connect(tmp_path / "api.db")
    rows = conn.execute("SELECT actor, action, note, time FROM alert_audit "
                        "WHERE alert_id IS NULL ORDER BY id").fetchall()
    conn.close()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("operator-1", "snooze", "bunker barge"), ("operator-1", "unsnooze", None)]
    assert all(r[3] > T0 for r in rows)  # wall time of the act
    history = await api.client.get("/snoozes/history", headers=headers("viewer"))
    assert [(a["action"], a["actor"], a["rule"], a["mmsi"], a["note"]) for a in history.json()] \
        == [("unsnooze", "operator-1", "loitering", A, None),
            ("snooze", "operator-1", "loitering", A, "bunker barge")]
    assert history.json()[1]["until"] == iso_time(T0 + 3600 + 1800)
    assert (await api.client.get(f"/snoozes/history?mmsi={A + 1}", headers=h)).json() == []
    typo = await api.client.get("/snoozes/history?rule=loitring", headers=h)
    assert typo.status_code == 422
    assert (await api.client.get("/snoozes/history")).status_code == 401



async def test_the_snooze_history_takes_several_rules_as_the_alert_list_does(
        api: Rig) -> None:
    """``rule`` took one name: a list named none of its acts, as a misspelt rule did."""
    import httpx

    from api.app import create_app

    async def made(client: httpx.AsyncClient) -> None:
        for rule, mmsi in (("loitering", A), ("dark_vessel", B), ("speeding", A)):
            resp = await client.post("/snoozes", headers=headers("operator"), json={
                "rule": rule, "mmsi": mmsi, "duration_s": 600})
            assert resp.status_code == 201, resp.text

    async def history(client: httpx.AsyncClient, **params: str) -> httpx.Response:
        return await client.get("/snoozes/history", headers=headers("viewer"), params=params)

    await made(api.client)
    api.deps.drill = True  # a drill's snoozes are in memory (api.drill_snoozes): same filter
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(api.deps)),
                                 base_url="http://hw") as drill:
        await made(drill)
        for client in (api.client, drill):
            both = await history(client, rule="loitering,dark_vessel")
            assert both.status_code == 200, both.text
            assert [(a["rule"], a["mmsi"]) for a in both.json()] == [
                ("dark_vessel", B), ("loitering", A)]
            one = await history(client, rule=" speeding ", mmsi=str(A))
            assert [(a["rule"], a["mmsi"]) for a in one.json()] == [("speeding", A)]
            assert len((await history(client, rule=",")).json()) == 3  # no filter
            typos = await history(client, rule="loitering,loitring,dark_vesel,loitring")
            assert (typos.status_code, typos.json()["error"]) == (
                422, "rule: unknown rules 'loitring', 'dark_vesel'")
            assert "dark_vessel" in typos.json()["detail"]


# -- zones -------------------------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.applied: list[Any] = []

    def set_zones(self, zones: Any) -> None:
        self.applied.append(zones)


async def test_zones_get_put_versioned_and_validated(tmp_path: Path) -> None:
    target = Recorder()
    async with rig(tmp_path, zone_target=target) as api:
        current = (await api.client.get("/zones", headers=headers("viewer"))).json()
        assert current["type"] == "FeatureCollection" and current["version"] is None
        assert len(current["features"]) == 13

        bad = json.loads(ZONES_PATH.read_text())
        bad["features"][3]["properties"]["kind"] = "pier"
        bad["features"][4]["geometry"] = {"type": "Point", "coordinates": [151.2, -23.8]}
        resp = await api.client.put("/zones", json=bad, headers=headers("admin"))
        assert resp.status_code == 422
        err = resp.json()
        assert err["detail"] == [
            "<zones>: feature 'berth_1': unknown kind 'pier' (expected one of port_limit, "
            "coverage, berth, anchorage, restricted, channel, security)",
            "<zones>: feature 'berth_2': geometry must be Polygon or MultiPolygon, not 'Point'"]
        assert err["error"] == "zones rejected: " + err["detail"][0]
        assert target.applied == [] and await api.store.latest_zones() is None
        assert (await api.client.put("/zones", json=[1, 2], headers=headers("admin"))
                ).status_code == 422
        newline = json.loads(ZONES_PATH.read_text())  # "berth_1\n" passed ZONE_ID.match
        newline["features"][3]["properties"]["id"] = "berth_1\n"
        resp = await api.client.put("/zones", json=newline, headers=headers("admin"))
        assert (resp.status_code, resp.json()["detail"]) == (422, [
            "<zones>: feature 'berth_1\\n': id 'berth_1\\n' is not a slug (a-z, 0-9, _ and -)"])
        assert target.applied == [] and await api.store.latest_zones() is None
        for query in ("/vessels?zone=berth_1%0A", "/alerts?zone=berth_1%0A"):  # the API's
            assert (await api.client.get(query, headers=headers("viewer"))  # $: end of text
                    ).status_code == 422

        new = json.loads(ZONES_PATH.read_text())
        new["features"] = [f for f in new["features"] if f["properties"]["id"] != "berth_8"]
        ok = await api.client.put("/zones", json=new, headers=headers("admin"))
        assert ok.status_code == 200, ok.text
        version = ok.json()["version"]
        assert ok.json()["zones"] == 12
        assert len(target.applied) == 1 and "berth_8" not in target.applied[0]
        latest = await api.store.latest_zones()
        assert latest is not None and (latest["version"], latest["actor"]) == (version,
                                                                                "admin-1")
        after = (await api.client.get("/zones", headers=headers("viewer"))).json()
        assert (after["version"], after["updated_by"]) == (version, "admin-1")
        assert after["updated_at"] == latest["time"]
        assert [f["properties"]["id"] for f in after["features"]] == [
            f["properties"]["id"] for f in new["features"]]
        # What GET returns can be PUT back as is.
        again = await api.client.put("/zones", json=after, headers=headers("admin"))
        assert again.status_code == 200 and again.json()["version"] > version
        # The vessel filter uses the zones now running.
        assert (await api.client.get("/vessels?zone=berth_8", headers=headers("viewer"))
                ).status_code == 422
        empty = await api.client.put("/zones", json={"type": "FeatureCollection",
                                                     "features": []}, headers=headers("admin"))
        assert (empty.status_code, empty.json()["error"]) == (
            422, "zones rejected: no zones (a port keeps at least one)")


async def test_alerts_take_any_zone_id_of_history_and_vessels_only_a_running_zone(
        tmp_path: Path) -> None:
    """An unknown zone was 422 on /vessels and an empty 200 on /alerts, whatever it was.
    Alerts keep the zone they were raised in, also once PUT /zones removed it: /alerts
    takes any zone id; the live picture needs a running zone's outline. What is not a zone
    id at all is 422 on both."""
    async with rig(tmp_path, zone_target=Recorder()) as api:
        h = headers("viewer")
        old = make_alert("speeding", C, T0, zone="berth_8", risk=RiskArea.PORT_OPERATIONS)
        api.store.on_alert(event(old))
        await api.store.flush()
        new = json.loads(ZONES_PATH.read_text())
        new["features"] = [f for f in new["features"] if f["properties"]["id"] != "berth_8"]
        assert (await api.client.put("/zones", json=new, headers=headers("admin"))
                ).status_code == 200

        listed = await api.client.get("/alerts", params={"zone": "berth_8"}, headers=h)
        assert listed.status_code == 200
        assert [(a["id"], a["zone"]) for a in listed.json()["alerts"]] == [(old.id, "berth_8")]
        never = await api.client.get("/alerts", params={"zone": "berth_99"}, headers=h)
        assert (never.status_code, never.json()["total"]) == (200, 0)
        vessels = await api.client.get("/vessels", params={"zone": "berth_8"}, headers=h)
        assert (vessels.status_code, vessels.json()["error"]) == (
            422, "zone: unknown zone 'berth_8'")
        assert "berth_8" not in vessels.json()["detail"] and "berth_1" in vessels.json()["detail"]

        for bad in ("Berth_8", "berth 8", "-berth", "berth_8\n", "b" * 65):
            for path in ("/alerts", "/vessels"):
                resp = await api.client.get(path, params={"zone": bad}, headers=h)
                assert resp.status_code == 422, (path, bad)
                assert resp.json()["error"].startswith("invalid request: query.zone: "), bad

        paths = (await api.client.get("/openapi.json")).json()["paths"]
        for path in ("/alerts", "/vessels"):
            zone = next(p for p in paths[path]["get"]["parameters"] if p["name"] == "zone")
            assert zone["schema"]["anyOf"][0]["pattern"] == "^[a-z0-9][a-z0-9_-]{0,63}$"
            assert "running" in zone["description"], path


async def test_zones_put_during_a_replay_or_drill_are_its_own(tmp_path: Path) -> None:
    """Saved, they became the live service's zones at its next start."""
    target = Recorder()
    async with rig(tmp_path, zone_target=target) as api:
        api.deps.saves_zones = False  # what the service sets for a replay or a drill
        new = json.loads(ZONES_PATH.read_text())
        new["features"] = new["features"][:3]
        ok = await api.client.put("/zones", json=new, headers=headers("admin"))
        assert (ok.status_code, ok.json()["version"], ok.json()["zones"]) == (200, None, 3)
        assert len(target.applied) == 1 and await api.store.latest_zones() is None
        now = (await api.client.get("/zones", headers=headers("viewer"))).json()
        assert (len(now["features"]), now["version"], now["updated_by"]) == (3, None,
                                                                            "admin-1")


def test_a_zones_file_with_a_bom_loads_and_a_misspelt_override_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from geofence.zones import ZoneSet

    data = json.loads(ZONES_PATH.read_text())
    data["features"][0]["properties"]["max_speed_kts"] = 8
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(data), encoding="utf-8-sig")
    with caplog.at_level("WARNING", logger="geofence.zones"):
        assert len(ZoneSet.from_geojson(path)) == 13
    first = data["features"][0]["properties"]["id"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: feature {first!r}: unknown property 'max_speed_kts' ignored "
        "(did you mean 'max_speed_kn'?)"]


# -- service -----------------------------------------------------------------------------------

async def test_sources_stats_and_metrics(api: Rig) -> None:
    _fill_picture(api)
    h = headers("viewer")
    sources = (await api.client.get("/sources", headers=h)).json()
    assert sources["sources"]["udp"]["messages"] == 9
    assert sources["receivers"]["rx1"]["source"] == "udp"
    stats = (await api.client.get("/stats", headers=h)).json()
    assert stats["pipeline"] == {"reports": 7, "alert_events": 2, "own_reports": 0,
                                 "rule_failures": 1}
    assert stats["vessels"] == 3 and stats["stream"]["clients"] == 0
    assert stats["store"]["description"].startswith("SQLite")
    assert {"written_statics", "rejected", "batches", "held_positions", "db_up"} <= set(
        stats["store"])
    text = (await api.client.get("/metrics", headers=h)).text
    lines = set(text.splitlines())
    for expected in ("harbourwatch_reports_total 7.0", "harbourwatch_alert_events_total 2.0",
                     "harbourwatch_rule_failures_total 1.0",
                     'harbourwatch_source_messages_total{source="udp"} 9.0',
                     'harbourwatch_source_rejected_total{reason="checksum",source="udp"} 1.0',
                     'harbourwatch_receiver_messages_total{receiver="rx1",source="udp"} 9.0',
                     'harbourwatch_source_last_heard_timestamp_seconds{source="udp"} '
                     "1.7672616e+09",
                     "harbourwatch_vessels 3.0", "harbourwatch_stream_clients 0.0"):
        assert expected in lines, expected


async def test_the_last_write_shows_so_a_stuck_writer_can_be_told(api: Rig) -> None:
    h = headers("viewer")
    before = time.time() - 0.001
    api.feed(pos(A, T0, -23.83, 151.26))
    await api.store.flush(held=False)
    written = (await api.client.get("/stats", headers=h)).json()["store"]["last_write_at"]
    assert before <= parse_iso(written) <= time.time()
    text = (await api.client.get("/metrics", headers=h)).text
    gauge = next(line for line in text.splitlines()
                 if line.startswith("harbourwatch_store_last_write_timestamp_seconds "))
    assert abs(float(gauge.split()[1]) - parse_iso(written)) < 0.01


async def test_openapi_documents_examples_and_security(api: Rig) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    assert "VesselCollection" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["components"]["schemas"]["SnoozeIn"]["examples"][0]["rule"] == "loitering"
    assert set(schema["paths"]) >= {
        "/vessels", "/vessels/{mmsi}", "/vessels/{mmsi}/track", "/alerts", "/alerts/{alert_id}",
        "/alerts/{alert_id}/ack", "/alerts/{alert_id}/resolve", "/snoozes",
        "/snoozes/{snooze_id}", "/zones", "/sources", "/stats", "/health", "/metrics",
        "/stream"}
    assert TOKENS["admin"] not in json.dumps(schema)


async def test_a_track_keeps_drill_and_real_positions_apart(api: Rig, tmp_path: Path) -> None:
    """A drill replayed into the live database writes the same vessel at the same times."""
    drill_store = open_store(f"sqlite:///{tmp_path / 'api.db'}", tmp_path, drill=True)
    await drill_store.start()
    try:
        for i in range(3):
            api.feed(pos(A, T0 + 10 * i, -23.83, 151.26 + i * 1e-3))
            drill_store.on_report(pos(A, T0 + 10 * i, -23.90, 151.30 + i * 1e-3))
        await api.store.flush()
        await drill_store.flush()
    finally:
        await drill_store.stop()
    window = {"start": iso_time(T0), "end": iso_time(T0 + 30)}

    async def lats(**params: str) -> set[float]:
        resp = await api.client.get(f"/vessels/{A}/track", headers=headers("viewer"),
                                    params={**window, **params})
        return {lat for _, lat in resp.json()["geometry"]["coordinates"]}

    assert await lats() == {-23.83}  # the API of a real run
    assert await lats(drill="true") == {-23.90}
    assert await lats(drill="false") == {-23.83}


def test_the_live_picture_forgets_vessels_heard_only_by_their_static_data() -> None:
    """Pruned by the newest report of any kind: a vessel heard only by its type 5 (or a
    garbled one) had no position time and stayed for as long as the service ran."""
    from api.picture import LivePicture
    from ingest.report import Report

    picture = LivePicture(max_age_s=900.0)
    t0 = 1_767_261_600.0

    def heard(mmsi: int, t: float, shipname: str | None = None) -> None:
        picture.on_report(Report(
            mmsi=mmsi, msg_type=1 if shipname is None else 5, time=t, time_source="tagblock",
            sources=["rx1"], nmea=["!AIVDM,..."], shipname=shipname,
            lat=51.9 if shipname is None else None, lon=4.1 if shipname is None else None))

    heard(244000001, t0)
    heard(244000002, t0, "STATIC ONLY")
    heard(244000003, t0 + 800, "HEARD LATER")
    heard(244000004, t0 + 950)
    assert [v["mmsi"] for v in picture.vessels()] == [244000004]
    assert set(picture._vessels) == {244000003, 244000004}
    heard(244000005, t0 + 1800)
    assert set(picture._vessels) == {244000004, 244000005}
    assert picture.vessel(244000004) is not None  # 850 s: still live


async def test_an_mqtt_broker_away_shows_in_health_stats_and_metrics(tmp_path: Path) -> None:
    """Its counters went out only on <p>/stats, which cannot be read while it is away."""
    from api.mqtt import MqttFeed

    feed = MqttFeed("mqtt://127.0.0.1:1", prefix="hwtest/health")  # never connected
    feed.on_report(pos(A, T0, *BERTH_1, speed=0.2))
    async with rig(tmp_path, mqtt=feed.status) as api:
        health = (await api.client.get("/health")).json()
        assert (health["status"], health["store_up"], health["mqtt_connected"]) == (
            "degraded", True, False)
        stats = (await api.client.get("/stats", headers=headers("viewer"))).json()
        assert (stats["mqtt"]["connected"], stats["mqtt"]["vessels"],
                stats["mqtt"]["connects"]) == (False, 1, 0)
        text = (await api.client.get("/metrics", headers=headers("viewer"))).text
        lines = set(text.splitlines())
        for expected in ("harbourwatch_mqtt_up 0.0", "harbourwatch_mqtt_vessels 1.0",
                         "harbourwatch_mqtt_outbox_unacked 0.0",
                         "harbourwatch_mqtt_connects_total 0.0"):
            assert expected in lines, expected


def test_the_live_picture_empties_on_the_rules_clock_when_every_source_is_silent() -> None:
    """It moved on only with reports: 17 minutes into a total silence /vessels still listed
    every vessel as live."""
    from api.picture import LivePicture
    from ingest.report import Report

    clock = [T0]
    picture = LivePicture(max_age_s=900.0, clock=lambda: clock[0])
    picture.on_report(Report(mmsi=A, msg_type=1, time=T0, time_source="receive",
                             sources=["rx1"], nmea=[], lat=-23.8, lon=151.2))
    clock[0] = T0 + 900
    assert [v["mmsi"] for v in picture.vessels()] == [A]
    clock[0] = T0 + 1020  # the wall ticks moved the rules' clock on
    assert list(picture.vessels()) == [] and picture.vessel(A) is None


def test_zones_far_apart_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """A Rotterdam berth added to the Gladstone zones moved the projection: a 1,019 m
    distance at Gladstone measured 2,208 m, with nothing said."""
    from geofence.zones import ZoneSet

    data = json.loads(ZONES_PATH.read_text())
    assert ZoneSet.from_geojson(data).warnings == []
    far = json.loads(json.dumps(data["features"][3]))
    far["properties"]["id"] = "rotterdam"
    far["geometry"] = {"type": "Polygon", "coordinates": [[[4.05, 51.95], [4.06, 51.95],
                                                           [4.06, 51.96], [4.05, 51.95]]]}
    data["features"].append(far)
    with caplog.at_level("WARNING", logger="geofence.zones"):
        zones = ZoneSet.from_geojson(data)
    assert len(zones.warnings) == 1 and "[lat, lon] swapped?" in zones.warnings[0]
    assert zones.warnings[0].startswith("<zones>: the zones span 147.6° of longitude")
    assert [r.getMessage() for r in caplog.records] == zones.warnings


async def test_health_answers_head_and_a_trailing_slash_is_not_redirected(api: Rig) -> None:
    """HEAD /health was 405 (a load balancer's probe: down); /vessels/ redirected to the
    host the request named (``Host: evil.example``)."""
    head = await api.client.head("/health")
    assert (head.status_code, head.content) == (200, b"")
    assert (await api.client.get("/health", params={"verbose": 1})).status_code == 422
    slash = await api.client.get("/vessels/", headers={**headers("viewer"),
                                                       "host": "evil.example"})
    assert slash.status_code == 404 and "location" not in slash.headers


def test_a_malformed_token_entry_is_not_echoed() -> None:
    from api.auth import Authenticator

    with pytest.raises(ValueError) as info:
        Authenticator.from_config(env={"HARBOURWATCH_API_TOKENS": "a:viewer:ok,S3CRETVALUE"})
    assert str(info.value) == "HARBOURWATCH_API_TOKENS: entry 2 is not name:role:token"
    # Fields in the wrong order put the token where the role goes.
    with pytest.raises(ValueError) as info:
        Authenticator.from_config(env={"HARBOURWATCH_API_TOKENS": "duty:S3CRETVALUE:operator"})
    assert str(info.value) == ("HARBOURWATCH_API_TOKENS: entry 1: unknown role (viewer, "
                               "operator or admin; entries are name:role:token)")


def test_a_late_older_static_report_renames_no_vessel_in_the_picture_nor_on_mqtt() -> None:
    """Only the rules' picture kept the newer name: /vessels and the MQTT feed showed the
    late copy's."""
    from api.mqtt import MqttFeed
    from api.picture import LivePicture
    from ingest.report import Report

    picture = LivePicture(max_age_s=900.0)
    feed = MqttFeed("mqtt://127.0.0.1:1", prefix="hwtest/static")
    reports = [pos(A, T0, *BERTH_1, speed=0.2)] + [
        Report(mmsi=A, msg_type=5, time=T0 + dt, time_source="tagblock", sources=["rx1"],
               nmea=[], shipname=name, draught=draught)
        for dt, name, draught in ((100, "NEW NAME", None), (50, "OLD NAME", 7.5))]
    for report in reports:
        picture.on_report(report)
        feed.on_report(report)
    shown = picture.vessel(A)
    assert shown is not None and (shown["shipname"], shown["draught"]) == ("NEW NAME", 7.5)
    state = json.loads(feed._vessel_payload(A))
    assert (state["shipname"], state["draught"], state["static_time"]) == (
        "NEW NAME", 7.5, iso_time(T0 + 100))


async def test_an_alert_the_stream_just_announced_can_be_acknowledged_at_once(
        api: Rig) -> None:
    """The stream and MQTT tell of an alert before the writer's batch stores it: an ack at
    once was 404 "no alert" for up to a second."""
    alert = make_alert(rule="speeding", mmsi=B)
    api.store.on_alert(event(alert))  # published by the rules, not yet written
    acked = await api.client.post(f"/alerts/{alert.id}/ack", headers=headers("operator"))
    assert (acked.status_code, acked.json()["state"]) == (200, "acknowledged")


async def test_an_act_on_a_muted_alert_is_not_streamed(api: Rig) -> None:
    """The stream never told of it; its ack came as an update of an unknown alert."""
    from harbourwatch.snoozes import SnoozeBook

    muted, heard = make_alert(rule="speeding", mmsi=B), make_alert(rule="speeding", mmsi=A)
    book = api.deps.snooze_target = SnoozeBook([("speeding", B, T0 + 7200)])
    for alert in (muted, heard):
        book.muted(event(alert))
        api.store.on_alert(event(alert))
    before = api.hub.stats().events
    for alert in (muted, heard):
        acked = await api.client.post(f"/alerts/{alert.id}/ack", headers=headers("operator"))
        assert acked.status_code == 200
    assert api.hub.stats().events == before + 1  # the heard one's ack alone


async def test_a_drills_snooze_is_the_drill_runs_alone(api: Rig) -> None:
    """A trainee's snooze was stored: it replaced the live service's, and the next live run
    restored it and muted a real AIS-SART."""
    import httpx

    from api.app import create_app
    from harbourwatch.snoozes import SnoozeBook

    await api.store.snooze("emergency_device", 970999001, T0 + 10, "duty", "LIVE snooze")
    api.deps.drill = True
    book = api.deps.snooze_target = SnoozeBook()
    drill_app = create_app(api.deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=drill_app),
                                 base_url="http://hw") as drill:
        made = await drill.post("/snoozes", headers=headers("operator"), json={
            "rule": "emergency_device", "mmsi": 970999001, "duration_s": 7200,
            "note": "DRILL snooze"})
        assert made.status_code == 201 and len(book) == 1
        listed = (await drill.get("/snoozes", headers=headers("viewer"))).json()
        assert [s["note"] for s in listed] == ["DRILL snooze"]
        assert (await drill.delete("/snoozes/emergency_device:970999001",
                                   headers=headers("operator"))).status_code == 204
        assert (await drill.delete("/snoozes/emergency_device:970999001",
                                   headers=headers("operator"))).status_code == 404
        history = (await drill.get("/snoozes/history", headers=headers("viewer"))).json()
        assert [(a["action"], a["note"]) for a in history] == [
            ("unsnooze", None), ("snooze", "DRILL snooze")]
    stored = await api.store.snoozes()
    assert [(s.note, s.until) for s in stored] == [("LIVE snooze", T0 + 10)]


async def test_the_docs_pages_need_no_internet(api: Rig) -> None:
    """Swagger UI and ReDoc load their scripts from the service: a port network may be closed."""
    for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = (await api.client.get(page)).text
        assert f'src="/docs/static/{script}"' in html, page
        assert "cdn" not in html.lower(), page
        served = await api.client.get(f"/docs/static/{script}")
        assert served.status_code == 200 and len(served.content) > 100_000, script
    css = await api.client.get("/docs/static/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for page in ("/docs", "/redoc", "/docs/static/swagger-ui.css"):  # probes use HEAD
        assert (await api.client.head(page)).status_code == 200, page


def test_the_live_picture_lists_a_receiver_whose_copy_was_merged_later() -> None:
    """The report keeps every receiver that heard it; /vessels showed only the first (its
    copy of the list was taken before the duplicate came)."""
    from api.picture import LivePicture
    from geofence.engine import Engine
    from geofence.zones import ZoneSet
    from harbourwatch.config import RulesConfig
    from harbourwatch.pipeline import Pipeline
    from ingest.ingestor import Ingestor
    from tests.ingest_helpers import position, single, tag_block

    picture = LivePicture(max_age_s=900.0)
    pipeline = Pipeline(Ingestor(), Engine(RulesConfig(), ZoneSet.empty(None)), [picture])
    line = single(position(mmsi=A, lat=-23.83, lon=151.26))
    for i, rx in enumerate(("rx1", "rx2")):
        pipeline.feed_lines([("udp", (tag_block(s=rx, c=1_767_261_600 + i) + line).encode(),
                              None)])
        shown = picture.vessel(A)
        assert shown is not None
        assert json.loads(picture.encoded(shown))["sources"] == ["rx1", "rx2"][:i + 1]
    pipeline.finish()


async def test_zones_are_checked_off_the_event_loop(api: Rig,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The validity check of a contrived outline (a star) takes a second or more: the
    service answers meanwhile (it held the event loop: ingest, the API and the MQTT
    keep-alive stopped for a minute with 80,000 points)."""
    body = json.loads(ZONES_PATH.read_text())
    n = 30_000
    star = [[151.25 + (0.05 + 0.04 * (i % 2)) * math.cos(2 * math.pi * i / n),
             -23.85 + (0.05 + 0.04 * (i % 2)) * math.sin(2 * math.pi * i / n)]
            for i in range(n)]
    body["features"].append({"type": "Feature", "geometry": {
        "type": "Polygon", "coordinates": [[*star, star[0]]]},
        "properties": {"id": "star", "kind": "anchorage", "name": "star"}})
    done: list[str] = []
    loop = asyncio.get_running_loop()
    checking = asyncio.Event()
    real = ZoneSet.from_geojson

    def signalled(raw: Any, *, projection: str | None = None) -> ZoneSet:
        loop.call_soon_threadsafe(checking.set)  # the real check, said to have begun
        checked = real(raw, projection=projection)
        done.append("checked")
        return checked

    monkeypatch.setattr(ZoneSet, "from_geojson", signalled)

    async def put() -> None:
        resp = await api.client.put("/zones", json=body, headers=headers("admin"))
        assert resp.status_code == 200, resp.text
        done.append("put")

    async def health() -> None:
        await checking.wait()
        assert (await api.client.get("/health")).status_code == 200
        done.append("health")

    await asyncio.gather(put(), health())
    assert done == ["health", "checked", "put"]
    assert "star" in {f["properties"]["id"] for f in (await api.client.get(
        "/zones", headers=headers("viewer"))).json()["features"]}


async def test_a_streamed_alert_has_the_same_fields_from_the_rules_and_from_an_act(
        api: Rig) -> None:
    """``event: alert`` carries the fields of ``GET /alerts/{id}`` but ``audit`` and
    ``updated_at``, the operator's null until acted on, as MQTT does: the rules' ``new`` had
    none of them and an act's ``update`` all of them and ``updated_at``."""
    from api.stream import StreamFilter
    from harbourwatch.operator_acts import ACT_FIELDS

    listener = api.hub.subscribe(StreamFilter(kinds=frozenset({"alert"})))
    alert = make_alert()
    api.store.on_alert(event(alert))
    api.hub.on_alert(event(alert))
    await api.store.flush()
    acked = await api.client.post(f"/alerts/{alert.id}/ack", headers=headers("operator"),
                                  json={"note": "seen"})
    assert acked.status_code == 200, acked.text
    got = [json.loads(chunk.decode().split("data: ", 1)[1]) for chunk in listener.take()]
    assert [(g["type"], g["alert"]["state"]) for g in got] == [
        ("new", "open"), ("update", "acknowledged")]
    fields = [*alert.to_dict(), *ACT_FIELDS]
    assert [list(g["alert"]) for g in got] == [fields, fields]
    assert (got[0]["alert"]["acknowledged_by"], got[1]["alert"]["ack_note"]) == (None, "seen")
