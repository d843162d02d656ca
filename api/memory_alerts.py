"""``GET /alerts`` and ``/alerts/{id}`` while the database is away: from the alerts the
service holds.

Memory holds the alerts still active in the rules of this run (see
``harbourwatch.alert_memory``): every open and acknowledged one of the run's kind (drill or
real), and the resolved ones whose condition still holds. A query that can be answered
from them in part is, and its page names each filter memory could not honour in full
(``incomplete``); one memory cannot answer at all (only ended alerts, the other kind's, a
cursor memory does not hold) is refused, as before, with 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.deps import AlertMemory
from harbourwatch.timeutil import parse_iso
from store.base import AlertQuery
from store.common import one_of

#: The answer's header naming where it came from (only set when it is memory).
SOURCE_HEADER = "X-Harbourwatch-Source"
STATES = ("open", "acknowledged", "ended", "resolved")
#: States memory holds every alert of (of this run's kind).
HELD_STATES = frozenset({"open", "acknowledged"})
STATE_GAP = ("ended alerts, and resolved ones whose condition has ended, are in the "
             "database only")


class MemoryCannotAnswer(Exception):
    """Nothing of what the query asks for is held in memory."""


def page_from_memory(memory: AlertMemory, query: AlertQuery) -> dict[str, Any]:
    """The ``/alerts`` page for ``query`` from memory, with ``source`` and ``incomplete``."""
    incomplete: dict[str, str] = {}
    asked = (STATES if query.state is None
             else (query.state,) if isinstance(query.state, str) else query.state)
    states = frozenset(asked)
    if not states - {"ended"}:
        raise MemoryCannotAnswer(STATE_GAP)
    if states - HELD_STATES:
        incomplete["state"] = STATE_GAP
    kind = "drill" if memory.drill else "real"
    if query.drill is not None and query.drill != memory.drill:
        raise MemoryCannotAnswer(f"memory holds this run's {kind} alerts only")
    if query.drill is None:
        incomplete["drill"] = f"memory holds this run's {kind} alerts only"
    found = sorted((a for a in memory.alerts() if _matches(a, query, states)), key=_order)
    if query.after is not None:
        cursor = memory.alert(query.after)
        if cursor is None:
            raise MemoryCannotAnswer(f"after: alert {query.after!r} is not held in memory")
        mark = _order(cursor)
        found = [a for a in found if _order(a) > mark]
    page = found[query.offset:query.offset + query.limit]
    return {"total": len(found), "limit": query.limit, "offset": query.offset,
            "next": page[-1]["id"] if len(page) == query.limit else None, "alerts": page,
            "source": "memory", "incomplete": incomplete}


def held_alert(memory: AlertMemory, alert_id: str) -> dict[str, Any]:
    """``GET /alerts/{id}`` from memory: the alert, no audit trail (it is in the database)."""
    found = memory.alert(alert_id)
    if found is None:
        raise MemoryCannotAnswer(f"alert {alert_id!r} is not open in memory")
    return {**found, "audit": [], "source": "memory"}


def _order(alert: Mapping[str, Any]) -> tuple[float, str]:
    """The listing's order: newest started first, then id."""
    return -parse_iso(alert["started_at"]), str(alert["id"])


def _matches(alert: Mapping[str, Any], q: AlertQuery, states: frozenset[str]) -> bool:
    """``store.common.alert_filters`` on one alert dict (``drill`` is judged by the caller)."""
    if alert["state"] not in states:
        return False
    if not one_of(alert["rule"], q.rule) or not one_of(alert["risk_area"], q.risk_area):
        return False
    if not one_of(alert["severity"], q.severity):
        return False
    if q.zone is not None and alert["zone"] != q.zone:
        return False
    if q.mmsi is not None and q.mmsi not in (alert["mmsi"], alert["other_mmsi"]):
        return False
    if q.end is not None and parse_iso(alert["started_at"]) > q.end:
        return False
    ended = alert["ended_at"]
    return q.start is None or ended is None or parse_iso(ended) >= q.start
