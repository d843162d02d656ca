"""An operator's ack or resolve survives the rules' later transitions of the same alert
(the MQTT feed and the live stream publish what the pipeline emits)."""

from __future__ import annotations

from geofence.alert import AlertEvent
from geofence.engine import Engine
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from tests.rulekit import port_zones, report, rules_config, span

SART = 970123456


class Seen:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def on_report(self, report: object) -> None:
        return None

    def on_alert(self, event: AlertEvent) -> None:
        self.events.append(event)


def test_an_ack_and_a_resolve_survive_the_rules_updates_and_end() -> None:
    seen = Seen()
    pipeline = Pipeline(Ingestor(), Engine(rules_config(), port_zones()), [seen])
    drifting = [report(SART, t, 8000, 8000 + t * 0.25, speed=0.5, status=14)
                for t in span(0, 1200, 60)]
    for rep in drifting[:3]:
        pipeline.handle_report(rep)
    (new,) = seen.events
    alert_id = new.alert["id"]
    # As the store returns the alert after POST /alerts/{id}/ack:
    pipeline.operator_acts.record({**new.alert, "state": "acknowledged",
                                   "acknowledged_by": "duty", "ack_note": "boat sent"})
    for rep in drifting[3:10]:
        pipeline.handle_report(rep)
    update = seen.events[1]
    assert (update.transition, update.alert["id"]) == ("update", alert_id)
    assert (update.alert["state"], update.alert["acknowledged_by"],
            update.alert["ack_note"]) == ("acknowledged", "duty", "boat sent")
    pipeline.operator_acts.record({**update.alert, "state": "resolved", "resolved_by": "duty"})
    for rep in drifting[10:]:
        pipeline.handle_report(rep)
    pipeline.handle_report(report(244000001, 3000, 5000, 5000))  # the device fell silent
    # (The receiver, silent for 30 min, also gets its source_silent alert, opened and ended.)
    later = [e for e in seen.events[2:] if e.alert["id"] == alert_id]
    assert [e.transition for e in later] == ["update", "end"]
    assert {e.alert["state"] for e in later} == {"resolved"}
    assert {e.alert["acknowledged_by"] for e in later} == {"duty"}
    assert not pipeline.operator_acts  # the rules are done with it
