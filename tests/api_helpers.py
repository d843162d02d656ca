"""Shared pieces of the API tests: tokens, reports, alerts and an app over a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from api.auth import Authenticator
from api.deps import ApiDeps, ZoneTarget
from api.picture import LivePicture
from api.stream import StreamHub
from geofence.alert import Alert, AlertEvent, RiskArea, Severity, Transition
from geofence.zones import ZoneSet
from ingest.report import Report
from store import Store, open_store
from tests.paths import FIXTURES

T0 = 1_767_261_600.0  # 2026-01-01T10:00:00Z
A, B, C = 244123456, 244654321, 211000001
TOKENS = {"viewer": "v-secret-token", "operator": "o-secret-token", "admin": "a-secret-token"}
ZONES_PATH = FIXTURES / "demo-port" / "zones.geojson"


@dataclass(slots=True)
class Token:
    name: str
    role: str
    token: str | None = None
    token_sha256: str | None = None


def authenticator(open_read: bool = False) -> Authenticator:
    specs = [Token(f"{role}-1", role, token) for role, token in TOKENS.items()]
    return Authenticator.from_config(specs, open_read=open_read, env={})


def headers(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def pos(mmsi: int, t: float, lat: float, lon: float, speed: float | None = 5.0,
        msg_type: int = 1, **extra: Any) -> Report:
    return Report(mmsi=mmsi, msg_type=msg_type, time=t, time_source="tagblock",
                  sources=["rx1"], nmea=["!AIVDM,..."], lat=lat, lon=lon, speed=speed,
                  course=90.0, heading=90, status=0, extra=extra)


def make_alert(rule: str = "dark_vessel", mmsi: int = A, start: float = T0,
               zone: str | None = "berth_3", risk: RiskArea = RiskArea.CRIMINAL_ACTIVITY,
               drill: bool = False, other: int | None = None,
               severity: Severity = Severity.WARNING) -> Alert:
    return Alert(rule=rule, risk_area=risk, severity=severity, mmsi=mmsi,
                 other_mmsi=other, started_at=start, zone=zone, lat=-23.85, lon=151.25,
                 drill=drill, details={"n": 1})


def event(alert: Alert, transition: Transition = Transition.NEW) -> AlertEvent:
    return AlertEvent(transition, alert.to_dict(), alert.started_at)


@dataclass(slots=True)
class Rig:
    store: Store
    picture: LivePicture
    hub: StreamHub
    deps: ApiDeps
    client: httpx.AsyncClient

    def feed(self, report: Report) -> None:
        self.picture.on_report(report)
        self.store.on_report(report)
        self.hub.on_report(report)


@asynccontextmanager
async def rig(tmp_path: Path, *, open_read: bool = False, zone_target: ZoneTarget | None = None,
              zones: ZoneSet | None = None, clock: float = T0 + 3600,
              mqtt: Callable[[], Mapping[str, Any]] | None = None) -> AsyncIterator[Rig]:
    store = open_store(f"sqlite:///{tmp_path / 'api.db'}", tmp_path, max_age=0.02)
    await store.start()
    picture, hub = LivePicture(), StreamHub(linger_s=0.0)
    deps = ApiDeps(store=store, auth=authenticator(open_read), picture=picture, hub=hub,
                   zones=zones if zones is not None else ZoneSet.from_geojson(ZONES_PATH),
                   zone_target=zone_target,
                   stats=lambda: {"reports": 7, "alert_events": 2, "own_reports": 0,
                                  "rule_failures": 1},
                   sources=lambda: {"sources": {"udp": {"lines": 10, "messages": 9,
                                                        "rejected": {"checksum": 1},
                                                        "last_heard": "2026-01-01T10:00:00Z"}},
                                    "receivers": {"rx1": {"name": "rx1", "source": "udp",
                                                          "messages": 9,
                                                          "last_heard": "2026-01-01T10:00:00Z"}}},
                   clock=lambda: clock, mqtt=mqtt)
    app = create_app(deps)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://hw") as client:
            yield Rig(store, picture, hub, deps, client)
    finally:
        await store.stop()


async def stored_audit(db_url: str, folder: Path, alert_id: str) -> list[dict[str, Any]]:
    """An alert's audit trail as a store opened afresh on ``db_url`` reads it."""
    store = open_store(db_url, folder)
    await store.start()
    try:
        return await store.audit(alert_id)
    finally:
        await store.stop()
