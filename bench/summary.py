"""``GET /alerts/summary`` and the ``GET /alerts`` total over a big alert history, on SQLite
and on PostgreSQL, over real HTTP (uvicorn on 127.0.0.1).

    python bench/summary.py [--alerts 100000] [--requests 5] [--pg postgresql://...]
                            [--plans]

The history: ``--alerts`` alerts over 2025, 16 rules, 40 zones, 3,000 vessels, each with
its audit trail as the rules and operators leave it (``new``, ``update``s, ``end``; an ack on
45 % and a resolve on 25 % with a ``message_time``, a few acts without one), 5 % drill
alerts replayed in three exercises (the earlier exercises' audit rows kept), and 2,000
snoozes. Written with plain SQL into a schema the store's own migrations made. Each request
is timed ``--requests`` times after one warm-up; the median is printed. Without ``--pg``
only SQLite runs. ``--plans`` prints each backend's plan of the summary's statements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file is bench/summary.py: drop bench/ from the path so `api` and `store` are packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from api.auth import Authenticator  # noqa: E402
from api.deps import ApiDeps  # noqa: E402
from api.picture import LivePicture  # noqa: E402
from api.server import ApiServer  # noqa: E402
from store import open_store  # noqa: E402
from store.base import AlertQuery  # noqa: E402
from store.summary import counts_statement, delays_statement  # noqa: E402

TOKEN = "bench-token"
YEAR = 1_735_689_600.0  # 2025-01-01T00:00:00Z
RULES = {
    "anchor_drag": "port_operations", "collision_risk": "port_operations",
    "dark_vessel": "criminal_activity", "emergency_device": "port_operations",
    "encounter": "criminal_activity", "identity_change": "criminal_activity",
    "invalid_mmsi": "information_security", "loitering": "criminal_activity",
    "mmsi_conflict": "information_security", "position_jump": "information_security",
    "restricted_entry": "criminal_activity", "source_silent": "information_security",
    "speeding": "port_operations", "sudden_stop": "port_operations",
    "zone_entry": "port_operations", "zone_exit": "port_operations",
}
REQUESTS = {
    "summary, a month": "/alerts/summary?start=2025-06-01T00:00:00Z&end=2025-07-01T00:00:00Z",
    "summary, the year": "/alerts/summary?start=2025-01-01T00:00:00Z&end=2026-01-01T00:00:00Z",
    "summary, all time, drill=any": "/alerts/summary?drill=any",
    "summary, year, rule": "/alerts/summary?start=2025-01-01T00:00:00Z"
                           "&end=2026-01-01T00:00:00Z&rule=dark_vessel",
    "summary, year, risk_area": "/alerts/summary?start=2025-01-01T00:00:00Z"
                                "&end=2026-01-01T00:00:00Z&risk_area=criminal_activity",
    "summary, year, zone": "/alerts/summary?start=2025-01-01T00:00:00Z"
                           "&end=2026-01-01T00:00:00Z&zone=zone_07",
    "summary, year, mmsi": "/alerts/summary?start=2025-01-01T00:00:00Z"
                           "&end=2026-01-01T00:00:00Z&mmsi=244000123",
    "alerts, first page (total)": "/alerts?limit=100",
    "alerts, year, first page (total)": "/alerts?start=2025-01-01T00:00:00Z"
                                        "&end=2026-01-01T00:00:00Z&limit=100",
    "alerts, rule, first page (total)": "/alerts?rule=speeding&limit=100",
}


def history(n: int, seed: int = 7) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Alert rows and audit rows (without ids: the order of the list is the id order)."""
    rnd = random.Random(seed)
    rules = list(RULES)
    alerts: list[tuple[Any, ...]] = []
    audit: list[tuple[Any, ...]] = []
    drills: list[tuple[str, float, float | None, bool, bool]] = []
    for i in range(n):
        rule = rnd.choice(rules)
        start = YEAR + rnd.random() * 365 * 86400
        end = start + rnd.expovariate(1 / 1800) if rnd.random() < 0.95 else None
        drill = rnd.random() < 0.05
        acked = rnd.random() < 0.45
        resolved = rnd.random() < 0.25
        ack_t = start + rnd.expovariate(1 / 240) if acked else None
        res_t = start + rnd.expovariate(1 / 1200) if resolved else None
        state = ("resolved" if resolved else "ended" if end is not None
                 else "acknowledged" if acked else "open")
        alert_id = f"a{i:07d}"
        alerts.append((
            alert_id, rule, RULES[rule], rnd.choice(("info", "warning", "critical")), state,
            244_000_000 + rnd.randrange(3000), None, None,
            f"zone_{rnd.randrange(40):02d}" if rnd.random() < 0.7 else None,
            -23.8, 151.2, start, end, drill, "{}", end or start, ack_t,
            "op" if acked else None, None, res_t, "op" if resolved else None, None,
            drill and rnd.random() < 0.3))
        if drill:
            drills.append((alert_id, start, end, acked, resolved))
            continue
        audit.extend(_trail(rnd, alert_id, start, end, ack_t, res_t, wall=start))
    # Drill exercises replayed one after another: each leaves its trail again.
    for exercise in range(3):
        wall = YEAR + 400 * 86400 + exercise * 86400
        for alert_id, start, end, acked, resolved in drills:
            ack_t = start + rnd.expovariate(1 / 300) if acked else None
            res_t = start + rnd.expovariate(1 / 1500) if resolved else None
            audit.extend(_trail(rnd, alert_id, start, end, ack_t, res_t, wall=wall))
    for i in range(2000):
        t = YEAR + rnd.random() * 365 * 86400
        audit.append((None, t, "op", "snooze", None, None, json.dumps(
            {"rule": rnd.choice(rules), "mmsi": 244_000_000 + rnd.randrange(3000)}),
            f"s{i}", None))
    return alerts, audit


def _trail(rnd: random.Random, alert_id: str, start: float, end: float | None,
           ack_t: float | None, res_t: float | None, wall: float) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [(alert_id, start, "rules", "new", None, None, "{}", None,
                                    start)]
    for _ in range(rnd.randrange(3)):
        rows.append((alert_id, start + 60, "rules", "update", None, "{}", "{}", None,
                     start + 60))
    if end is not None:
        rows.append((alert_id, end, "rules", "end", None, "{}", "{}", None, end))
    for action, t in (("ack", ack_t), ("resolve", res_t)):
        if t is not None:  # a few acts stored before message times were kept
            rows.append((alert_id, wall + (t - start), "op", action, None, "{}", "{}", None,
                         None if rnd.random() < 0.03 else t))
    return rows


ALERT_COLUMNS = ("id", "rule", "risk_area", "severity", "state", "mmsi", "other_mmsi",
                 "shipname", "zone", "lat", "lon", "started_at", "ended_at", "drill",
                 "details", "updated_at", "acked_at", "acked_by", "ack_note", "resolved_at",
                 "resolved_by", "resolve_note", "earlier_exercise")
AUDIT_COLUMNS = ("alert_id", "time", "actor", "action", "note", "before_state",
                 "after_state", "dedup", "message_time")
_TIMES = {"started_at", "ended_at", "updated_at", "acked_at", "resolved_at", "time",
          "message_time"}


async def fill(url: str, alerts: list[tuple[Any, ...]], audit: list[tuple[Any, ...]],
               tmp: Path) -> None:
    store = open_store(url, tmp)
    await store.start()  # migrates
    await store.stop()
    if url.startswith("sqlite"):
        import sqlite3
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        with conn:
            conn.executemany(f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(ALERT_COLUMNS))})", alerts)
            conn.executemany(f"INSERT INTO alert_audit ({', '.join(AUDIT_COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(AUDIT_COLUMNS))})", audit)
        conn.execute("ANALYZE")
        conn.close()
        return
    import datetime as dt

    import asyncpg

    def stamp(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        at = [i for i, c in enumerate(columns) if c in _TIMES]
        return [tuple(dt.datetime.fromtimestamp(v, dt.UTC) if i in at and v is not None
                      else v for i, v in enumerate(row)) for row in rows]

    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("alerts", records=stamp(ALERT_COLUMNS, alerts),
                                         columns=list(ALERT_COLUMNS))
        await conn.copy_records_to_table("alert_audit",
                                         records=stamp(AUDIT_COLUMNS, audit),
                                         columns=list(AUDIT_COLUMNS))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def plans(url: str, tmp: Path) -> None:
    """The plan of each summary statement for the year, on the backend of ``url``."""
    query = AlertQuery(start=YEAR, end=YEAR + 365 * 86400)
    if url.startswith("sqlite"):
        import sqlite3

        from store.sqlite import _started_column
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        started = _started_column(conn, query)
        for st in (counts_statement(query, lambda n: f"?{n}", float, started),
                   delays_statement(query, lambda n: f"?{n}", float, lambda t: t, started)):
            print("\n".join("  " + str(r[-1]) for r in
                            conn.execute("EXPLAIN QUERY PLAN " + st.sql, st.params)))
            print()
        conn.close()
        return
    import datetime as dt

    import asyncpg

    def ts(v: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(v, dt.UTC)

    conn = await asyncpg.connect(url)
    try:
        for st in (counts_statement(query, lambda n: f"${n}", ts),
                   delays_statement(query, lambda n: f"${n}", ts,
                                    lambda t: f"EXTRACT(EPOCH FROM {t})::float8")):
            for row in await conn.fetch("EXPLAIN ANALYZE " + st.sql, *st.params):
                print("  " + row[0])
            print()
    finally:
        await conn.close()


async def timed(url: str, tmp: Path, n: int) -> dict[str, float]:
    import httpx

    store = open_store(url, tmp)
    await store.start()
    auth = Authenticator.from_config(env={"HARBOURWATCH_API_TOKENS": f"bench:viewer:{TOKEN}"})
    deps = ApiDeps(store=store, auth=auth, picture=LivePicture())
    server = ApiServer(create_app(deps), "127.0.0.1", 0)
    serving = asyncio.create_task(server.serve())
    await server.wait_started()
    out: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=120,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for label, path in REQUESTS.items():
                times = []
                for _ in range(n + 1):
                    t = time.perf_counter()
                    resp = await client.get(path)
                    times.append(time.perf_counter() - t)
                    assert resp.status_code == 200, (path, resp.text)
                out[label] = statistics.median(times[1:]) * 1000
                body = resp.json()
                print(f"  {label:36s} {out[label]:8.1f} ms  total {body['total']}")
    finally:
        server.stop()
        await serving
        await store.stop()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--pg", help="an empty PostgreSQL database's URL")
    parser.add_argument("--plans", action="store_true")
    args = parser.parse_args()
    t = time.perf_counter()
    alerts, audit = history(args.alerts)
    print(f"{len(alerts)} alerts, {len(audit)} audit rows "
          f"({time.perf_counter() - t:.1f} s to make)")
    tmp = Path(tempfile.mkdtemp())
    urls = [f"sqlite:///{tmp / 'summary.db'}"] + ([args.pg] if args.pg else [])
    for url in urls:
        name = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
        t = time.perf_counter()
        await fill(url, alerts, audit, tmp)
        print(f"{name}: filled in {time.perf_counter() - t:.1f} s")
        if args.plans:
            await plans(url, tmp)
        await timed(url, tmp, args.requests)


if __name__ == "__main__":
    asyncio.run(main())
