"""The alert summary for a period (``GET /alerts/summary``): counts and response times,
read by statements both backends run and shaped here.

A period holds the alerts that *started* in it (``[start, end)``), so that the months of a
year add up to the year; ``GET /alerts`` lists every alert active in its range instead.

Response times are on the rules' clock at both ends: from the message time of the alert's
``new`` (its audit row) to the ``message_time`` of the operator's act, as a drill's debrief
reads them. In a live run that is the watch's own time to within the feed's latency; in a
replay or drill it is the time the log played meanwhile, where the act's wall time is years
from the log's. An act with no ``message_time`` (stored before schema version 6, or made on
an API that runs no rules) counts as made but has no time; so does one dated before its
alert's ``new`` (see ``timed``).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from harbourwatch.response_times import response_times
from store.base import AlertQuery
from store.common import Params, alert_conditions, one_of
from store.rows import iso

#: A parameter's marker in the backend's SQL, by its 1-based number (``?1``, ``$1``).
Marker = Callable[[int], str]
#: A time expression as seconds since the epoch in the backend's SQL.
Epoch = Callable[[str], str]


class Row(Protocol):
    """A result row by column name (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(slots=True, frozen=True)
class Statement:
    sql: str
    params: list[Any]


def _statement(build: Callable[[Callable[[Any], str]], str], marker: Marker) -> Statement:
    ph = Params(marker)
    return Statement(build(ph), ph.values)


def _where(query: AlertQuery, ph: Callable[[Any], str], ts: Callable[[float], Any],
           *extra: str, started: str = "started_at") -> str:
    """``alert_filters`` but for the period: started in ``[start, end)``; and every drill
    alert with ``drill``, an earlier exercise's too (the trainees' list leaves those out,
    a report on the drills held does not). ``started``: the column as the period's terms
    name it (SQLite: ``+started_at`` keeps its index out of a period that holds most of
    the table, see ``SqliteStore.alert_summary``)."""
    conditions = alert_conditions(
        replace(query, start=None, end=None, after=None, drill=None), ph, ts)
    if query.drill is not None:
        conditions.append(f"drill = {ph(query.drill)}")
    if query.start is not None:
        conditions.append(f"{started} >= {ph(ts(query.start))}")
    if query.end is not None:
        conditions.append(f"{started} < {ph(ts(query.end))}")
    conditions.extend(extra)
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


_ACTS = frozenset({"new", "ack", "resolve"})


def _last_act(action: str) -> str:
    """The message time of the alert's latest audit row of ``action``: a drill run again
    keeps the earlier exercises' rows, the alert's acts are the latest run's. ``action`` is
    this module's constant, never a request's value (those go through ``ph``)."""
    if action not in _ACTS:
        raise ValueError(f"not an act a summary reads: {action!r}")
    return (f"(SELECT u.message_time FROM alert_audit u WHERE u.alert_id = alerts.id "
            f"AND u.action = '{action}' ORDER BY u.id DESC LIMIT 1)")


def counts_statement(query: AlertQuery, marker: Marker, ts: Callable[[float], Any],
                     started: str = "started_at") -> Statement:
    """Alerts by risk area, rule, severity, state, kind, and whether acknowledged and
    resolved (the row's acts: a new drill exercise clears the earlier one's)."""
    def build(ph: Callable[[Any], str]) -> str:
        return ("SELECT risk_area, rule, severity, state, drill, acked_at IS NOT NULL AS acked,"
                " resolved_at IS NOT NULL AS resolved, count(*) AS n "
                f"FROM alerts{_where(query, ph, ts, started=started)} GROUP BY risk_area, "
                "rule, severity, state, drill, acked_at IS NOT NULL, resolved_at IS NOT NULL")

    return _statement(build, marker)


def delays_statement(query: AlertQuery, marker: Marker, ts: Callable[[float], Any],
                     epoch: Epoch, started: str = "started_at") -> Statement:
    """Per alert acted on: its risk area and the message times (epoch seconds) of its
    ``new``, its ack and its resolve (null: not made, or made without a message time).
    Subtracted in ``summary``: in SQL the ``new``'s subquery ran once for each difference."""
    def build(ph: Callable[[Any], str]) -> str:
        where = _where(query, ph, ts, "(acked_at IS NOT NULL OR resolved_at IS NOT NULL)",
                       started=started)
        return (f"SELECT risk_area, {epoch(_last_act('new'))} AS raised, "
                f"CASE WHEN acked_at IS NULL THEN NULL ELSE {epoch(_last_act('ack'))} END "
                f"AS acked, CASE WHEN resolved_at IS NULL THEN NULL ELSE "
                f"{epoch(_last_act('resolve'))} END AS resolved FROM alerts{where}")

    return _statement(build, marker)


def snoozes_statement(query: AlertQuery, marker: Marker,
                      ts: Callable[[float], Any]) -> Statement | None:
    """The snooze acts made in the period (on the wall clock: a snooze's audit row has no
    message time); None when the summary cannot have them: a snooze names no zone, risk
    area or severity, and a drill's snoozes are never stored."""
    if (query.zone is not None or query.risk_area is not None or query.severity is not None
            or query.drill):
        return None

    def build(ph: Callable[[Any], str]) -> str:
        sql = ("SELECT after_state FROM alert_audit WHERE alert_id IS NULL "
               "AND action = 'snooze'")
        if query.start is not None:
            sql += f" AND time >= {ph(ts(query.start))}"
        if query.end is not None:
            sql += f" AND time < {ph(ts(query.end))}"
        return sql

    return _statement(build, marker)


def summary(query: AlertQuery, counts: Iterable[Row], delays: Iterable[Row],
            snoozes: Iterable[Row] | None) -> dict[str, Any]:
    """The summary's body from the three statements' rows (names sorted, so that two
    summaries compare line by line)."""
    by: dict[str, Counter[str]] = {k: Counter() for k in (
        "kind", "risk_area", "rule", "severity", "state")}
    acked = resolved = unanswered = 0
    for row in counts:
        n = int(row["n"])
        by["kind"]["drill" if row["drill"] else "live"] += n
        for key in ("risk_area", "rule", "severity", "state"):
            by[key][str(row[key])] += n
        acked += n if row["acked"] else 0
        resolved += n if row["resolved"] else 0
        unanswered += 0 if row["acked"] or row["resolved"] else n
    to_ack: defaultdict[str, list[float]] = defaultdict(list)
    to_resolve: defaultdict[str, list[float]] = defaultdict(list)
    for row in delays:
        for times, act in ((to_ack, row["acked"]), (to_resolve, row["resolved"])):
            value = _between(row["raised"], act)
            if value is not None and timed(value):
                times[str(row["risk_area"])].append(value)
    return {
        "start": iso(query.start), "end": iso(query.end),
        "total": sum(by["kind"].values()),
        "by_kind": {"live": by["kind"]["live"], "drill": by["kind"]["drill"]},
        **{f"by_{key}": dict(sorted(by[key].items()))
           for key in ("risk_area", "rule", "severity", "state")},
        "acknowledged": acked, "resolved": resolved, "unanswered": unanswered,
        "time_to_acknowledge": _times_by_area(to_ack),
        "time_to_resolve": _times_by_area(to_resolve),
        "snoozes": None if snoozes is None else _snoozes_by_rule(query, snoozes),
    }


def _between(raised: float | None, act: float | None) -> float | None:
    """Seconds from the ``new`` to the act; None when either has no message time. To the
    microsecond, as stored: two epoch floats differ by 45.12299990653992 for 45.123 s."""
    return None if raised is None or act is None else round(float(act) - float(raised), 6)


def timed(seconds: float | None) -> bool:
    """Whether an act's seconds from its alert's ``new`` are a time to answer it: not when
    the act has no message time, nor when it is dated before the ``new``. Such an act was
    taken on another run's clock: a plain replay run again into the same database acted on
    by id before it raised the alert (its ``new`` keeps the first run's audit row), a
    replay's API acting on the watch's alert (the log's year, not the watch's). Counted as
    made, not timed, rather than a negative time pulling the median down."""
    return seconds is not None and seconds >= 0


def _times_by_area(times: Mapping[str, list[float]]) -> dict[str, Any]:
    """``all`` areas together, then each area that has a timed act."""
    out: dict[str, Any] = {}
    for area, values in [("all", [v for vs in times.values() for v in vs]),
                         *sorted(times.items())]:
        found = response_times(values)
        if found is not None:
            out[area] = found.to_dict()
    return out


def _snoozes_by_rule(query: AlertQuery, rows: Iterable[Row]) -> dict[str, int]:
    found: Counter[str] = Counter()
    for row in rows:
        what = json.loads(row["after_state"] or "{}")
        if one_of(what.get("rule"), query.rule) and query.mmsi in (None, what.get("mmsi")):
            found[str(what.get("rule"))] += 1
    return dict(sorted(found.items()))
