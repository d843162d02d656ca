"""One output failing (a full disk under the alerts file) stops neither ingest nor the
other outputs, nor does a rule raising on one report stop the rules: the failure is counted
and logged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from geofence.alert import AlertEvent
from geofence.engine import Engine
from geofence.picture import Vessel
from geofence.rules import BaseRule, Phase, RuleContext, build_rules
from harbourwatch.alerts_file import AlertsFileSink
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from ingest.report import Report
from tests import rulekit
from tests.ingest_helpers import position, single
from tests.rulekit import port_zones, rules_config


class Seen:
    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.alerts: list[AlertEvent] = []

    def on_report(self, report: Report) -> None:
        self.reports.append(report)

    def on_alert(self, event: AlertEvent) -> None:
        self.alerts.append(event)


SARTS = [970000001, 970000002, 970000003]
SHIP = 244000123


def three_sarts(pipeline: Pipeline) -> None:
    """One report from each AIS-SART of ``SARTS``, a second apart: an alert each."""
    for n, mmsi in enumerate(SARTS):
        line = single(position(mmsi=mmsi, speed=0.0))
        pipeline.feed_lines([("udp", line.encode(), 1_767_268_800.0 + n)])


def test_a_full_disk_under_the_alerts_file_stops_nothing_else(
        caplog: pytest.LogCaptureFixture) -> None:
    full = AlertsFileSink(Path("/dev/full"))  # every write fails: ENOSPC
    asyncio.run(full.start())
    seen = Seen()
    pipeline = Pipeline(Ingestor(), Engine(rules_config(), port_zones()), [full, seen],
                        live=True)
    with caplog.at_level("ERROR", logger="harbourwatch.pipeline"):
        three_sarts(pipeline)
    assert [r.mmsi for r in seen.reports] == SARTS
    assert [e.alert["mmsi"] for e in seen.alerts] == SARTS
    assert pipeline.stats()["sink_failures"] == {"AlertsFileSink": 3}
    assert len(caplog.records) == 1 and "AlertsFileSink failed" in caplog.records[0].message
    with pytest.raises(OSError):
        asyncio.run(full.stop())


class RaisesOn(BaseRule):
    """A rule with a bug one report finds (as a fix the projection could not place did)."""

    name = "raises_on"

    def __init__(self, mmsi: int) -> None:
        self.mmsi = mmsi

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        if report.mmsi == self.mmsi:
            raise ValueError("cannot convert float NaN to integer")


def test_a_rule_raising_on_one_report_stops_neither_the_rules_nor_the_sinks(
        caplog: pytest.LogCaptureFixture) -> None:
    """Anyone with an AIS transmitter can send the report that finds a bug: it raised out of
    the pipeline and stopped the service, and no later report was judged."""
    config = rules_config()
    seen = Seen()
    engine = Engine(config, port_zones(), rules=[*build_rules(config), RaisesOn(970000002)])
    pipeline = Pipeline(Ingestor(), engine, [seen], live=True)
    with caplog.at_level("ERROR", logger="harbourwatch.pipeline"):
        three_sarts(pipeline)
    # The failing report still reaches the sinks, with the alert the rules raised before
    # the failing one; the next report is judged as usual.
    assert [r.mmsi for r in seen.reports] == SARTS
    assert [e.alert["mmsi"] for e in seen.alerts] == SARTS
    assert pipeline.stats()["rule_failures"] == 1
    (record,) = caplog.records
    assert record.message.startswith("the rules raised on MMSI 970000002, type 1, ")
    assert record.exc_info is not None and record.exc_info[0] is ValueError


class RaisesOnceOn(BaseRule):
    """A rule with a bug that a vessel leaving a zone finds, once: on the exit it sees
    (``zone_changes_only``), on the first report out (a validator), or on the first tick
    after it."""

    name = "raises_once"

    def __init__(self, where: str) -> None:
        self.where = where
        self.zone_changes_only = where == "zone_change"
        self.phase = Phase.VALIDATE if where == "validator" else Phase.OBSERVE
        self.raised = 0

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        out = report.time >= rulekit.T0 + 310
        if self.where != "tick" and out and not self.raised:
            self.raised += 1
            raise ValueError("cannot convert float NaN to integer")

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        if self.where == "tick" and now >= rulekit.T0 + 310 and not self.raised:
            self.raised += 1
            raise ValueError("cannot convert float NaN to integer")


@pytest.mark.parametrize("where", ["zone_change", "validator", "tick"])
def test_a_rule_raising_costs_only_its_own_judgement_of_the_report(where: str) -> None:
    """A rule that raised left the rules after it unjudged on that report: a vessel's exit
    from a restricted zone was never seen by restricted_entry (membership had moved on), so
    its alert stayed open while the vessel sailed away, until the vessel was forgotten; a
    validator or a tick that raised left the report out of the picture, and the exit was
    found a report late. Every other rule judges the report; the failure is still counted."""
    config = rules_config()
    raising = RaisesOnceOn(where)
    engine = Engine(config, port_zones(), rules=[raising, *build_rules(config)])
    seen = Seen()
    pipeline = Pipeline(Ingestor(), engine, [seen], live=False)
    for rep in sorted([*rulekit.at(SHIP, rulekit.span(0, 300, 10), -1750, -1750, speed=3.0),
                       *rulekit.at(SHIP, rulekit.span(310, 600, 10), -1750, -1000,
                                   speed=3.0)], key=lambda r: r.time):
        pipeline.handle_report(rep)
    restricted = [(e.transition, e.time - rulekit.T0) for e in seen.alerts
                  if e.alert["rule"] == "restricted_entry"]
    assert raising.raised == 1 and pipeline.rule_failures == 1
    assert restricted == [("new", 10.0), ("end", 320.0)]


async def test_a_live_alerts_file_may_be_a_pipe(tmp_path: Path) -> None:
    """Appending checks the file's last line; a FIFO has none, and the start failed."""
    import os
    import threading

    fifo = tmp_path / "alerts.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    sink = AlertsFileSink(fifo, append=True)
    await sink.start()
    await sink.stop()
    reader.join(timeout=5)
    assert got == [b""]


def test_metrics_count_transitions_by_rule_and_what_is_open() -> None:
    """Only the total of alert transitions was exported: a dashboard could not show which
    rules fire, nor how many alerts are open now."""
    from prometheus_client import CollectorRegistry, generate_latest

    from api.metrics import ServiceCollector

    pipeline = Pipeline(Ingestor(), Engine(rules_config(), port_zones()), [Seen()], live=True)
    for n in range(1, 4):  # three AIS-SARTs: emergency_device opens for each
        line = single(position(mmsi=970000000 + n, speed=0.0))
        pipeline.feed_lines([("udp", line.encode(), 1_767_268_800.0 + n)])
    stats = pipeline.stats()
    assert stats["alert_transitions"] == {"emergency_device/new": 3}
    assert stats["open_alerts"] == {"emergency_device": 3}
    registry = CollectorRegistry()
    registry.register(ServiceCollector(stats=pipeline.stats))
    lines = set(generate_latest(registry).decode().splitlines())
    assert 'harbourwatch_alert_transitions_total{rule="emergency_device",transition="new"} 3.0' \
        in lines
    assert 'harbourwatch_open_alerts{rule="emergency_device"} 3.0' in lines
