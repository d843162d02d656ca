"""Snoozes: one rule muted for one vessel until a time, then re-armed.

A snoozed alert is still recorded (the store keeps it, with its audit trail) but is not
pushed to the people and systems that act on alerts: the MQTT feed, the live stream and the
alerts file. Times are message time, like everything the rules do, so a drill replay's
snooze covers drill time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from geofence.alert import AlertEvent, Transition
from store.base import Snooze


class SnoozeBook:
    """``(rule, mmsi) -> until``; also the API's snooze target."""

    def __init__(self, entries: Iterable[tuple[str, int, float]] = ()) -> None:
        self._until: dict[tuple[str, int], float] = {}
        #: Alerts whose ``new`` was muted: their later transitions are muted too, and no
        #: other alert's (a published alert's end must reach those who saw it open).
        self._muted_ids: set[str] = set()
        #: The snoozes as the store keeps them (who made them, and the ones run out until
        #: they are lifted): ``GET /snoozes`` while the database is away.
        self._kept: dict[tuple[str, int], Snooze] = {}
        #: ``_kept`` is the store's (loaded at start, and every snooze since came with its
        #: record).
        self._holds_store = False
        for rule, mmsi, until in entries:
            self.snooze(rule, mmsi, until)

    def load(self, kept: Iterable[Snooze]) -> None:
        """The store's snoozes at start: they mute, and are listed while it is away."""
        for made in kept:
            self.snooze(made.rule, made.mmsi, made.until, made)
        self._holds_store = True

    def snooze(self, rule: str, mmsi: int, until: float, made: Snooze | None = None) -> None:
        """Mute ``rule`` for ``mmsi`` until ``until``; ``made``: the store's record of it."""
        self._until[(rule, mmsi)] = until
        if made is None:  # who made it is not known: the list is not the store's
            self._holds_store = False
            self._kept.pop((rule, mmsi), None)
        else:
            self._kept[(rule, mmsi)] = made

    def unsnooze(self, rule: str, mmsi: int) -> None:
        self._until.pop((rule, mmsi), None)
        self._kept.pop((rule, mmsi), None)

    def kept(self) -> list[Snooze] | None:
        """The snoozes the store keeps, as this process knows them (loaded at start, made
        and lifted over its API since), in the store's order; ``None`` when it did not load
        the store's (a replay from its start) or lacks a snooze's record."""
        return [self._kept[key] for key in sorted(self._kept)] if self._holds_store else None

    def __len__(self) -> int:
        return len(self._until)

    def is_snoozed(self, rule: str, mmsi: int) -> bool:
        """Whether a snooze of ``rule`` for ``mmsi`` is kept, as far as memory knows: one
        that mutes, or one run out (the rules drop it when they re-arm; its record stays
        until it is lifted, as the store keeps it and ``kept()`` lists it)."""
        return (rule, mmsi) in self._until or (rule, mmsi) in self._kept

    @property
    def muted_ids(self) -> frozenset[str]:
        """The open alerts whose ``new`` was muted (saved with the rules' state)."""
        return frozenset(self._muted_ids)

    def is_muted(self, alert_id: str) -> bool:
        """Whether an open alert's ``new`` was muted (no copy of the set, as ``muted_ids``)."""
        return alert_id in self._muted_ids

    def remember_muted(self, alert_ids: Iterable[str]) -> None:
        """Alerts muted before a restart stay muted: their acts and end were pushed to a
        platform that never saw them open."""
        self._muted_ids.update(alert_ids)

    def muted(self, event: AlertEvent) -> bool:
        """True when the event's rule is snoozed for its vessel (or the other vessel).

        Only a ``new`` is judged against the snoozes; updates and the end follow their ``new``.
        """
        alert: dict[str, Any] = event.alert
        if event.transition is not Transition.NEW:
            alert_id = str(alert.get("id"))
            if alert_id not in self._muted_ids:
                return False
            if event.transition is Transition.END:
                self._muted_ids.discard(alert_id)
            return True
        if not self._until or not self._snoozed(event):
            return False
        if alert.get("state") in ("open", "acknowledged"):
            self._muted_ids.add(str(alert.get("id")))
        return True

    def _snoozed(self, event: AlertEvent) -> bool:
        alert: dict[str, Any] = event.alert
        rule = alert.get("rule")
        for key in ("mmsi", "other_mmsi"):
            mmsi = alert.get(key)
            if mmsi is None:
                continue
            until = self._until.get((str(rule), int(mmsi)))
            if until is not None:
                if event.time < until:
                    return True
                del self._until[(str(rule), int(mmsi))]  # re-armed
        return False
