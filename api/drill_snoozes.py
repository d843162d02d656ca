"""A drill's snoozes: the drill run's alone, kept in memory and never stored.

Stored, a trainee's snooze replaced the live service's, and the next live run restored it
and muted a real AIS-SART. The API keeps snoozes through the store's three calls; a drill
run serves them from here instead.
"""

from __future__ import annotations

import time
from typing import Protocol

from store.base import Snooze


class SnoozeKeeper(Protocol):
    """Where the API keeps snoozes: the store (live), or :class:`DrillSnoozes`."""

    async def snooze(self, rule: str, mmsi: int, until: float, actor: str,
                     note: str | None = None) -> Snooze: ...
    async def snoozes(self, active_at: float | None = None) -> list[Snooze]: ...
    async def unsnooze(self, rule: str, mmsi: int, actor: str) -> bool: ...


class DrillSnoozes:
    """The store's snooze calls, on a dict."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], Snooze] = {}

    async def snooze(self, rule: str, mmsi: int, until: float, actor: str,
                     note: str | None = None) -> Snooze:
        made = self._by_key[(rule, mmsi)] = Snooze(rule, mmsi, until, actor, note, time.time())
        return made

    async def snoozes(self, active_at: float | None = None) -> list[Snooze]:
        return [s for _, s in sorted(self._by_key.items())
                if active_at is None or s.until > active_at]

    async def unsnooze(self, rule: str, mmsi: int, actor: str) -> bool:
        return self._by_key.pop((rule, mmsi), None) is not None
