"""Operators' acks and resolves laid over the rules' later transitions of the same alert.

The rules know nothing of operator acts; the store merges them into its rows, but the
MQTT feed and the live stream publish what the rules emit. Without this, a rule's next
``update`` (or its ``end``) published an acknowledged alert as open again, and re-created
the retained topic of a resolved one: a rule transition must never undo an operator act.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from geofence.alert import AlertEvent, Transition
from store.rows import state_after_rules

#: What an operator act adds to an alert (as the store returns it).
ACT_FIELDS = ("acknowledged_at", "acknowledged_by", "ack_note", "resolved_at", "resolved_by",
              "resolve_note")
#: Fields of a stored alert that a pushed one leaves out: the audit trail, and the store's
#: own ``updated_at`` (a rule's transition is pushed before it is stored; on MQTT the
#: message's ``time`` says when it changed, an act's own time is in its ``…_at``).
_NOT_PUSHED = frozenset({"audit", "updated_at"})


def as_pushed(alert: Mapping[str, Any]) -> dict[str, Any]:
    """``alert`` as the MQTT feed and the live stream push it: the fields of
    ``GET /alerts/{id}`` but ``audit`` and ``updated_at``, the operator's fields always
    there (null until acted on).

    A rule's transition has none of them, an act all of them, a rule's update after an act
    the non-null ones (:meth:`OperatorActs.over`), an alert restored from the store all and
    ``updated_at``: a consumer got a different object from each."""
    out = {name: value for name, value in alert.items() if name not in _NOT_PUSHED}
    for name in ACT_FIELDS:
        out.setdefault(name, None)
    return out


class OperatorActs:
    """The latest operator act on each alert the rules may still change."""

    def __init__(self) -> None:
        self._acts: dict[str, dict[str, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._acts)

    def record(self, alert: Mapping[str, Any]) -> None:
        """An alert as the store has it after an act (or as restored at start-up, or read
        again when the store refused an act made while it was away: then it may be open)."""
        if alert.get("state") not in ("acknowledged", "resolved"):
            self._acts.pop(str(alert["id"]), None)
            return
        self._acts[str(alert["id"])] = {
            "state": alert["state"],
            **{name: alert[name] for name in ACT_FIELDS if alert.get(name) is not None}}

    def of(self, alert_id: str) -> dict[str, Any] | None:
        """The operator's state and fields on an alert the rules still hold, if acted on."""
        acts = self._acts.get(alert_id)
        return None if acts is None else dict(acts)

    def resolved(self, alert_id: str) -> bool:
        """An operator resolved it while its condition holds: the rules still end it, but
        it is no longer open to anyone watching."""
        acts = self._acts.get(alert_id)
        return acts is not None and acts["state"] == "resolved"

    def over(self, event: AlertEvent) -> AlertEvent:
        """``event`` with the operator's state and fields, when an operator acted on it."""
        alert_id = str(event.alert.get("id"))
        acts = self._acts.get(alert_id)
        if acts is None:
            return event
        if event.transition is Transition.END:
            del self._acts[alert_id]  # the rules are done with it
        alert = {**event.alert, **acts,
                 "state": state_after_rules(acts["state"], str(event.alert.get("state")))}
        return AlertEvent(event.transition, alert, event.time)
