"""A drill's snoozes: the drill run's alone, kept in memory and never stored.

Stored, a trainee's snooze replaced the live service's, and the next live run restored it
and muted a real AIS-SART. The API keeps snoozes through the store's three calls; a drill
run serves them from here instead.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

from store.base import Snooze
from store.common import one_of, snooze_act

#: Acts a drill run remembers for ``GET /snoozes/history``: far more than a drill makes.
DRILL_ACTS_KEPT = 10_000


class SnoozeKeeper(Protocol):
    """Where the API keeps snoozes: the store (live), or :class:`DrillSnoozes`."""

    async def snooze(self, rule: str, mmsi: int, until: float, actor: str,
                     note: str | None = None) -> Snooze: ...
    async def snoozes(self, active_at: float | None = None) -> list[Snooze]: ...
    async def unsnooze(self, rule: str, mmsi: int, actor: str) -> bool: ...
    async def snooze_acts(self, rule: str | tuple[str, ...] | None = None,
                          mmsi: int | None = None,
                          limit: int = 100) -> list[dict[str, Any]]: ...


class DrillSnoozes:
    """The store's snooze calls, on a dict."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], Snooze] = {}
        self._acts: deque[dict[str, Any]] = deque(maxlen=DRILL_ACTS_KEPT)  # newest first

    async def snooze(self, rule: str, mmsi: int, until: float, actor: str,
                     note: str | None = None) -> Snooze:
        made = self._by_key[(rule, mmsi)] = Snooze(rule, mmsi, until, actor, note, time.time())
        self._acts.appendleft(snooze_act(made.created, actor, "snooze", rule, mmsi, until, note))
        return made

    async def snoozes(self, active_at: float | None = None) -> list[Snooze]:
        return [s for _, s in sorted(self._by_key.items())
                if active_at is None or s.until > active_at]

    async def unsnooze(self, rule: str, mmsi: int, actor: str) -> bool:
        if self._by_key.pop((rule, mmsi), None) is None:
            return False
        self._acts.appendleft(snooze_act(time.time(), actor, "unsnooze", rule, mmsi, None, None))
        return True

    async def snooze_acts(self, rule: str | tuple[str, ...] | None = None,
                          mmsi: int | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
        return [a for a in self._acts
                if one_of(a["rule"], rule) and mmsi in (None, a["mmsi"])][:limit]
