"""The alerts the running service holds in memory: the API's answer while the database is away.

The rules keep every alert that is still active (open, acknowledged, or resolved while its
condition holds), restored at start-up; the operators' acts on them are kept beside them
(:class:`~harbourwatch.operator_acts.OperatorActs`). Laid together they are those alerts as
the store has them, but for ``updated_at``, which memory does not keep (null). Ended alerts
the rules have let go of are in the database only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from geofence.alert import Alert
from geofence.alertbook import snapshot
from harbourwatch.operator_acts import ACT_FIELDS, OperatorActs
from store.rows import state_after_rules


class EngineAlerts:
    """The rules' active alerts with the operators' acts over them (``api.deps.AlertMemory``)."""

    def __init__(self, open_alerts: Callable[[], Iterable[Alert]],
                 find: Callable[[str], Alert | None], acts: OperatorActs, *,
                 drill: bool) -> None:
        self._open_alerts = open_alerts
        self._find = find
        self._acts = acts
        #: Memory holds the alerts of this run's kind only (a drill's, or real ones).
        self.drill = drill

    def alerts(self) -> list[dict[str, Any]]:
        return [self._out(alert) for alert in self._open_alerts()]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        found = self._find(alert_id)
        return None if found is None else self._out(found)

    def _out(self, alert: Alert) -> dict[str, Any]:
        out = snapshot(alert)
        out["updated_at"] = None
        out.update(dict.fromkeys(ACT_FIELDS))
        acts = self._acts.of(alert.id)
        if acts is not None:
            out.update(acts)
            out["state"] = state_after_rules(acts["state"], str(alert.state))
        return out
