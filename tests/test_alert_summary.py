"""The alert summary for a period (``GET /alerts/summary``), on real SQLite and PostgreSQL:
counts by risk area, rule, severity, state and kind, and response times on the rules' clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from geofence.alert import Alert, AlertEvent, RiskArea, Severity, Transition
from store import AlertQuery, Store, open_store
from tests.api_helpers import headers, rig, stored_audit
from tests.services.postgres import PostgresServer

T0 = 1_767_261_600.0  # 2026-01-01T10:00:00Z
JANUARY = (1_767_225_600.0, 1_769_904_000.0)  # [2026-01-01T00:00Z, 2026-02-01T00:00Z)
A, B, C, SART = 244123456, 244654321, 211000001, 970012345
WALL = 1_767_300_000.0  # the operators' wall clock: no part of any response time


def alert(rule: str, mmsi: int, start: float, risk: RiskArea = RiskArea.CRIMINAL_ACTIVITY,
          severity: Severity = Severity.WARNING, drill: bool = False) -> Alert:
    return Alert(rule=rule, risk_area=risk, severity=severity, mmsi=mmsi, started_at=start,
                 zone="berth_3", drill=drill)


LIVE = {
    "dark_a": alert("dark_vessel", A, T0),
    "dark_b": alert("dark_vessel", B, T0 + 100),
    "restricted": alert("restricted_entry", C, T0 + 200, severity=Severity.CRITICAL),
    "speeding": alert("speeding", A, T0 + 300, RiskArea.PORT_OPERATIONS),
    "entry": alert("zone_entry", B, T0 + 400, RiskArea.PORT_OPERATIONS, Severity.INFO),
    "drag": alert("anchor_drag", C, T0 + 500, RiskArea.NATURAL_HAZARD),
    "december": alert("dark_vessel", C, JANUARY[0] - 60),  # started the month before
}
DRILL = alert("emergency_device", SART, T0 + 50, RiskArea.PORT_OPERATIONS, Severity.CRITICAL,
              drill=True)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hw.db'}"
    return str(request.getfixturevalue("pg_dsn"))


async def raise_alerts(store: Store, raised: list[tuple[Alert, float]]) -> None:
    for a, when in raised:
        store.on_alert(AlertEvent(Transition.NEW, a.to_dict(), when))
    await store.flush()


@pytest.fixture
async def port(db_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A month of the watch's alerts and acts, then two runs of a drill, in one database."""
    live = open_store(db_url, tmp_path, max_age=0.02)
    await live.start()
    try:
        # Raised on the rules' clock: a dark vessel once silent 600 s after its last report.
        await raise_alerts(live, [
            (LIVE["dark_a"], T0 + 600), (LIVE["dark_b"], T0 + 700),
            (LIVE["restricted"], T0 + 200), (LIVE["speeding"], T0 + 360),
            (LIVE["entry"], T0 + 400), (LIVE["drag"], T0 + 500),
            (LIVE["december"], JANUARY[0])])
        ids = {name: a.id for name, a in LIVE.items()}
        await live.ack(ids["dark_a"], "duty", at=WALL, message_at=T0 + 660)
        await live.resolve(ids["dark_a"], "duty", at=WALL + 1, message_at=T0 + 900)
        await live.ack(ids["dark_b"], "duty", at=WALL + 2, message_at=T0 + 720)
        await live.ack(ids["restricted"], "duty", at=WALL + 3, message_at=T0 + 300)
        await live.ack(ids["speeding"], "duty", at=WALL + 4, message_at=T0 + 370)
        await live.resolve(ids["speeding"], "duty", at=WALL + 5, message_at=T0 + 390)
        await live.ack(ids["drag"], "duty", at=WALL + 6)  # no rules' clock: untimed
        await live.ack(ids["december"], "duty", at=WALL + 7, message_at=T0)
        await live.snooze("loitering", A, T0 + 7200, "duty", "bunker barge", at=T0 + 1000)
        await live.snooze("loitering", B, T0 + 7200, "duty", at=JANUARY[1])  # February's
        # LIVE["entry"] is an event alert: raised ended, nobody answers it.
        live.on_alert(AlertEvent(Transition.END, {**LIVE["entry"].to_dict(),
                                                  "state": "ended"}, T0 + 400))
        await live.flush()
    finally:
        await live.stop()
    # A drill run twice: the second exercise raises the alert again, later, and the
    # trainee's ack then is the one that counts (the first run's stays in the audit trail).
    for raised, acked in ((T0 + 50, T0 + 90), (T0 + 60, T0 + 75)):
        drill = open_store(db_url, tmp_path, max_age=0.02, drill=True)
        await drill.start()
        try:
            await raise_alerts(drill, [(DRILL, raised)])
            await drill.ack(DRILL.id, "trainee", at=WALL + 10, message_at=acked)
        finally:
            await drill.stop()
    # A new exercise of another drill: the alert is an earlier exercise's now, left out of
    # the trainees' list (drill=true), still one of the drills held.
    other = open_store(db_url, tmp_path, max_age=0.02, drill=True)
    await other.start()
    try:
        assert await other.begin_exercise() == 1
    finally:
        await other.stop()
    store = open_store(db_url, tmp_path, max_age=0.02)
    await store.start()
    assert await store.alerts(AlertQuery(drill=True)) == []
    yield store
    await store.stop()


def times(count: int, median: float, p90: float, longest: float) -> dict[str, Any]:
    return {"count": count, "median_s": median, "p90_s": p90, "longest_s": longest}


async def test_a_month_of_the_watch_counted_and_timed_on_the_rules_clock(port: Store) -> None:
    got = await port.alert_summary(AlertQuery(start=JANUARY[0], end=JANUARY[1], drill=False))
    assert got == {
        "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z",
        "total": 6, "by_kind": {"live": 6, "drill": 0},
        "by_risk_area": {"criminal_activity": 3, "natural_hazard": 1, "port_operations": 2},
        "by_rule": {"anchor_drag": 1, "dark_vessel": 2, "restricted_entry": 1,
                    "speeding": 1, "zone_entry": 1},
        "by_severity": {"critical": 1, "info": 1, "warning": 4},
        "by_state": {"acknowledged": 3, "ended": 1, "resolved": 2},
        "acknowledged": 5, "resolved": 2, "unanswered": 1,
        # 60, 20, 100 s (criminal activity) and 10 s (speeding); the anchor drag's ack has
        # no message time. p90: linear between the nearest two, as percentile_cont.
        "time_to_acknowledge": {"all": times(4, 40.0, 88.0, 100.0),
                                "criminal_activity": times(3, 60.0, 92.0, 100.0),
                                "port_operations": times(1, 10.0, 10.0, 10.0)},
        "time_to_resolve": {"all": times(2, 165.0, 273.0, 300.0),
                            "criminal_activity": times(1, 300.0, 300.0, 300.0),
                            "port_operations": times(1, 30.0, 30.0, 30.0)},
        "snoozes": {"loitering": 1},
    }


async def test_drills_are_counted_apart_and_timed_on_their_latest_exercise(
        port: Store) -> None:
    drill = await port.alert_summary(AlertQuery(start=JANUARY[0], end=JANUARY[1], drill=True))
    assert (drill["total"], drill["by_kind"], drill["by_rule"], drill["acknowledged"]) == (
        1, {"live": 0, "drill": 1}, {"emergency_device": 1}, 1)
    # The second exercise: raised at T0 + 60, acknowledged at T0 + 75.
    assert drill["time_to_acknowledge"] == {"all": times(1, 15.0, 15.0, 15.0),
                                            "port_operations": times(1, 15.0, 15.0, 15.0)}
    assert drill["snoozes"] is None  # a drill's snoozes are never stored
    both = await port.alert_summary(AlertQuery(start=JANUARY[0], end=JANUARY[1]))
    assert (both["total"], both["by_kind"]) == (7, {"live": 6, "drill": 1})


async def test_a_period_holds_the_alerts_that_started_in_it_and_the_filters_apply(
        port: Store) -> None:
    async def counted(**filters: Any) -> tuple[int, dict[str, int], dict[str, int] | None]:
        got = await port.alert_summary(AlertQuery(drill=False, **filters))
        return got["total"], got["by_rule"], got["snoozes"]

    # [start, end): the speeding alert started at T0 + 300, the zone entry at T0 + 400.
    assert await counted(start=T0 + 300, end=T0 + 400) == (1, {"speeding": 1}, {})
    # No period: every live alert, December's too; as many as GET /alerts counts.
    assert (await counted())[0] == 7 == await port.count_alerts(AlertQuery(drill=False))
    assert await port.count_alerts(AlertQuery(rule="dark_vessel", limit=1, offset=1,
                                              after=LIVE["dark_b"].id)) == 3
    assert await counted(start=JANUARY[0], end=JANUARY[1], rule=("dark_vessel", "speeding"),
                         mmsi=A) == (2, {"dark_vessel": 1, "speeding": 1}, {})
    assert await counted(start=JANUARY[0], risk_area=("natural_hazard",)) == (
        1, {"anchor_drag": 1}, None)  # a snooze names no risk area
    assert await counted(zone="berth_9") == (0, {}, None)
    # "Warnings and above": the restricted entry is critical, the zone entry info.
    assert await counted(start=JANUARY[0], end=JANUARY[1], severity=("warning", "critical")
                         ) == (5, {"anchor_drag": 1, "dark_vessel": 2, "restricted_entry": 1,
                                   "speeding": 1}, None)  # a snooze names no severity
    assert await counted(severity="info") == (1, {"zone_entry": 1}, None)
    empty = await port.alert_summary(AlertQuery(start=T0 + 10_000, end=T0 + 20_000))
    assert (empty["total"], empty["by_kind"], empty["time_to_acknowledge"],
            empty["unanswered"]) == (0, {"live": 0, "drill": 0}, {}, 0)


async def test_severity_filters_the_alerts_listed_and_counted_on_both_backends(
        port: Store) -> None:
    above = AlertQuery(severity=("warning", "critical"), drill=False)
    assert [a["id"] for a in await port.alerts(above)] == [
        LIVE[name].id for name in ("drag", "speeding", "restricted", "dark_b", "dark_a",
                                   "december")]
    assert await port.count_alerts(above) == 6
    assert [a["id"] for a in await port.alerts(AlertQuery(severity="critical", drill=None))
            ] == [LIVE["restricted"].id, DRILL.id]
    assert await port.count_alerts(AlertQuery(severity=("info",), rule="dark_vessel")) == 0
    # A value goes in as a parameter, never into the SQL text.
    assert await port.count_alerts(AlertQuery(severity="warning' OR '1'='1")) == 0


async def test_the_summary_endpoint_answers_a_viewer_with_the_alert_filters(
        tmp_path: Path) -> None:
    async with rig(tmp_path) as hw:
        await raise_alerts(hw.store, [(LIVE["dark_a"], T0 + 600), (LIVE["speeding"], T0 + 360),
                                      (LIVE["december"], JANUARY[0])])
        await hw.store.ack(LIVE["dark_a"].id, "duty", at=WALL, message_at=T0 + 645)

        async def summary(role: str | None = "viewer", **params: str) -> Any:
            return await hw.client.get("/alerts/summary", params=params,
                                       headers=headers(role) if role else {})

        got = await summary(start="2026-01-01T00:00:00Z", end="2026-02-01T00:00:00Z")
        assert got.status_code == 200
        body = got.json()
        assert (body["total"], body["by_risk_area"], body["acknowledged"],
                body["time_to_acknowledge"]["criminal_activity"]) == (
            2, {"criminal_activity": 1, "port_operations": 1}, 1, times(1, 45.0, 45.0, 45.0))
        assert body == await hw.store.alert_summary(
            AlertQuery(start=JANUARY[0], end=JANUARY[1], drill=False))
        assert (await summary(rule="speeding")).json()["by_rule"] == {"speeding": 1}
        assert (await summary(drill="true")).json()["total"] == 0
        assert (await summary(None)).status_code == 401
        for params, detail in (({"state": "open"}, "state"), ({"rule": "dark"}, "dark"),
                               ({"end": "2025-01-01T00:00:00Z",
                                 "start": "2026-01-01T00:00:00Z"}, "end is before start")):
            refused = await summary(**params)
            assert refused.status_code == 422 and detail in str(refused.json()), refused.json()


async def test_times_to_act_are_exact_to_the_millisecond_on_both_backends(
        db_url: str, tmp_path: Path) -> None:
    """Message times with a fraction: 45.123 s, not the 45.12299990653992 that two epoch
    floats differ by (SQLite subtracted them so; PostgreSQL too once the seconds came
    back as epochs)."""
    store = open_store(db_url, tmp_path, max_age=0.02)
    await store.start()
    try:
        await raise_alerts(store, [(LIVE["dark_a"], T0 + 600)])
        await store.ack(LIVE["dark_a"].id, "duty", at=WALL, message_at=T0 + 645.123)
        got = await store.alert_summary(AlertQuery())
    finally:
        await store.stop()
    assert got["time_to_acknowledge"]["all"] == times(1, 45.123, 45.123, 45.123)


async def test_odd_periods_get_plain_answers(tmp_path: Path) -> None:
    """Offsets are read as UTC instants; a period in the far future or the first year is
    empty or whole, and echoed as ISO 8601: year 1 came back as "1-01-01T00:00:00Z"
    (strftime's %Y leaves years below 1000 unpadded), which no ISO parser reads."""
    async with rig(tmp_path) as hw:
        await raise_alerts(hw.store, [(LIVE["dark_a"], T0 + 600), (LIVE["speeding"], T0 + 360)])

        async def summary(**params: str) -> Any:
            got = await hw.client.get("/alerts/summary", params=params,
                                      headers=headers("viewer"))
            assert got.status_code == 200, got.json()
            return got.json()

        offsets = await summary(start="2026-01-01T12:00:00+02:00",
                                end="2026-01-01T05:04:00-05:00")
        assert (offsets["start"], offsets["end"], offsets["total"]) == (
            "2026-01-01T10:00:00Z", "2026-01-01T10:04:00Z", 1)
        future = await summary(start="2999-01-01T00:00:00Z")
        assert (future["start"], future["end"], future["total"]) == (
            "2999-01-01T00:00:00Z", None, 0)
        whole = await summary(start="0001-01-01T00:00:00Z", end="9999-12-31T23:59:59Z",
                              zone="no_such_zone", drill="any")
        assert (whole["start"], whole["end"], whole["total"]) == (
            "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", 0)
        assert (await summary(start="0999-12-31T23:59:59.5Z"))["start"] == (
            "0999-12-31T23:59:59.500Z")
        assert (await summary(drill="any"))["total"] == 2


async def test_an_act_dated_before_its_alerts_new_is_counted_but_not_timed(
        db_url: str, tmp_path: Path) -> None:
    """A plain replay run again into the same database: its trainee acked by id an alert
    the run had not raised again yet, on the run's clock (T0+500), before the ``new`` the
    store keeps (the first run's, T0+600: the second run's is the same audit row), and the
    summary's time to acknowledge was -100 s."""
    dark, speeding = alert("dark_vessel", A, T0), alert("speeding", B, T0 + 100,
                                                        RiskArea.PORT_OPERATIONS)
    for run in range(2):
        store = open_store(db_url, tmp_path, max_age=0.02)
        await store.start()
        try:
            if run == 1:
                await store.ack(dark.id, "duty", at=WALL, message_at=T0 + 500)
            await raise_alerts(store, [(dark, T0 + 600), (speeding, T0 + 100)])
            if run == 1:
                await store.resolve(dark.id, "duty", at=WALL + 1, message_at=T0 + 700)
                await store.ack(speeding.id, "duty", at=WALL + 2, message_at=T0 + 130)
                got = await store.alert_summary(AlertQuery(drill=False))
        finally:
            await store.stop()
    assert [(a["action"], a["message_time"]) for a in await stored_audit(db_url, tmp_path, dark.id)
            ] == [("new", "2026-01-01T10:10:00Z"), ("ack", "2026-01-01T10:08:20Z"),
                  ("resolve", "2026-01-01T10:11:40Z")]
    assert (got["acknowledged"], got["resolved"], got["unanswered"]) == (2, 1, 0)
    assert got["time_to_acknowledge"] == {"all": times(1, 30.0, 30.0, 30.0),
                                          "port_operations": times(1, 30.0, 30.0, 30.0)}
    assert got["time_to_resolve"] == {"all": times(1, 100.0, 100.0, 100.0),
                                      "criminal_activity": times(1, 100.0, 100.0, 100.0)}


async def test_sqlite_reads_a_period_holding_most_alerts_from_the_table(tmp_path: Path) -> None:
    """SQLite keeps no statistics on a range: it read a year through the started_at index,
    a page fetch per row (the summary of a year of 100,000 alerts took 3 s, with a zone
    filter 1.5 s for 1,700 alerts; bench/summary.py). A period holding most of the table
    is scanned; a short one still uses the index; both count the same alerts."""
    url = f"sqlite:///{tmp_path / 'hw.db'}"
    store = open_store(url, tmp_path, max_age=0.02)
    await store.start()
    try:
        hours = [alert("dark_vessel", A + i, T0 + 3600 * i) for i in range(40)]
        await raise_alerts(store, [(a, a.started_at) for a in hours])
        year = await store.alert_summary(AlertQuery(start=JANUARY[0], end=JANUARY[1],
                                                    zone="berth_3"))
        day = await store.alert_summary(AlertQuery(start=T0, end=T0 + 3 * 3600))
    finally:
        await store.stop()
    assert (year["total"], day["total"]) == (40, 3)

    import sqlite3

    from store.sqlite import _started_column
    from store.summary import counts_statement, delays_statement

    def plan(query: AlertQuery) -> list[str]:
        with sqlite3.connect(tmp_path / "hw.db") as conn:
            started = _started_column(conn, query)
            return [str(row[-1]) for st in (
                counts_statement(query, lambda n: f"?{n}", float, started),
                delays_statement(query, lambda n: f"?{n}", float, lambda t: t, started))
                for row in conn.execute("EXPLAIN QUERY PLAN " + st.sql, st.params)]

    wide = plan(AlertQuery(start=JANUARY[0], end=JANUARY[1], zone="berth_3"))
    assert not any("alerts_started" in step for step in wide), wide
    assert any("alerts_started" in step for step in plan(AlertQuery(start=T0, end=T0 + 3600)))
    # The new's subquery once a row (it ran once for each difference, four a row).
    assert sum("CORRELATED SCALAR SUBQUERY" in step for step in wide) == 3, wide


async def test_postgres_compiles_no_summary_statement(
        postgres_server: PostgresServer, pg_dsn: str, tmp_path: Path) -> None:
    """The delays statement's subqueries are costed per row: a year of 100,000 alerts went
    far above jit_above_cost and PostgreSQL spent 1.2 s of 2.2 s compiling it. Here every
    statement would be compiled (jit_above_cost 0); auto_explain logs each one's plan."""
    database = pg_dsn.rsplit("/", 1)[1]
    for setting in ("session_preload_libraries = 'auto_explain'",
                    "auto_explain.log_min_duration = 0", "auto_explain.log_analyze = on",
                    "jit_above_cost = 0"):
        postgres_server.sql(f'ALTER DATABASE "{database}" SET {setting}')
    store = open_store(pg_dsn, tmp_path, max_age=0.02)
    await store.start()
    try:
        await raise_alerts(store, [(LIVE["dark_a"], T0 + 600)])
        await store.ack(LIVE["dark_a"].id, "duty", at=WALL, message_at=T0 + 645)
        before = postgres_server.log.stat().st_size
        got = await store.alert_summary(AlertQuery(start=JANUARY[0], end=JANUARY[1]))
        await store.alerts(AlertQuery(start=JANUARY[0], end=JANUARY[1]))
    finally:
        await store.stop()
    assert got["time_to_acknowledge"]["all"] == times(1, 45.0, 45.0, 45.0)
    with postgres_server.log.open() as log:
        log.seek(before)
        plans = log.read().split("duration: ")
    if not any("JIT:" in plan for plan in plans):
        pytest.skip("this PostgreSQL compiles no query (built without LLVM)")
    summary_plans = [plan for plan in plans if "GROUP BY risk_area" in plan
                     or "AS raised" in plan]
    assert len(summary_plans) == 2, plans
    assert not any("JIT:" in plan for plan in summary_plans), summary_plans


async def test_sqlite_counts_the_alerts_of_a_long_period_from_the_table(
        tmp_path: Path) -> None:
    """GET /alerts's total for a year read nearly every alert through the started_at
    index (0.5-1 s for 100,000 alerts, bench/summary.py); the first page still uses it."""
    url = f"sqlite:///{tmp_path / 'hw.db'}"
    store = open_store(url, tmp_path, max_age=0.02)
    await store.start()
    statements: list[str] = []
    try:
        hours = [alert("dark_vessel", A + i, T0 + 3600 * i) for i in range(40)]
        await raise_alerts(store, [(a, a.started_at) for a in hours])
        assert store._rconn is not None  # type: ignore[attr-defined]
        store._rconn.set_trace_callback(statements.append)  # type: ignore[attr-defined]
        year = AlertQuery(start=JANUARY[0], end=JANUARY[1], limit=10)
        assert (len(await store.alerts(year)), await store.count_alerts(year)) == (10, 40)
        assert await store.count_alerts(AlertQuery(start=T0, end=T0 + 7200)) == 3
    finally:
        await store.stop()

    import sqlite3
    with sqlite3.connect(tmp_path / "hw.db") as conn:
        plans = {sql: [str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
                 for sql in statements if "FROM alerts WHERE" in sql and "count(*)" in sql
                 and "zone" not in sql and "rule" not in sql and "ended_at" in sql}
    year_plan, day_plan = plans.values()
    assert not any("alerts_started" in step for step in year_plan), plans
    assert any("alerts_started" in step for step in day_plan), plans
