"""One output failing (a full disk under the alerts file) stops neither ingest nor the
other outputs, nor does a rule raising on one report stop the rules: the failure is counted
and logged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Set
from pathlib import Path
from typing import Any

import pytest

from geofence.alert import AlertEvent
from geofence.engine import Engine
from geofence.picture import Receiver, Vessel
from geofence.rules import BaseRule, Phase, RuleContext, build_rules
from geofence.zones import ZoneSet
from harbourwatch.alerts_file import AlertsFileSink
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from ingest.report import Report
from tests import rulekit
from tests.api_helpers import ZONES_PATH, headers, rig
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


def test_open_alerts_leave_out_those_an_operator_resolved_while_the_condition_holds() -> None:
    """A duty officer resolves a false alarm whose condition still holds (the pilot boat in
    the restricted wharf): the rules keep it to end it later, but it is no longer open.
    `open_alerts` (and harbourwatch_open_alerts, "open (or acknowledged) now") counted it,
    so a dashboard went on showing it, and a Prometheus alert on it went on firing."""
    from prometheus_client import CollectorRegistry, generate_latest

    from api.metrics import ServiceCollector

    pipeline = Pipeline(Ingestor(), Engine(rules_config(), port_zones()), [Seen()], live=True)
    for n in range(1, 4):  # three AIS-SARTs: emergency_device opens for each
        line = single(position(mmsi=970000000 + n, speed=0.0))
        pipeline.feed_lines([("udp", line.encode(), 1_767_268_800.0 + n)])
    first, second, _ = sorted(pipeline.engine.open_alerts(), key=lambda a: a.mmsi or 0)
    pipeline.operator_acts.record({**first.to_dict(), "state": "resolved",
                                   "resolved_by": "duty", "resolved_at": "2026-01-01T12:00:00Z"})
    pipeline.operator_acts.record({**second.to_dict(), "state": "acknowledged",
                                   "acknowledged_by": "duty"})
    assert pipeline.stats()["open_alerts"] == {"emergency_device": 2}
    registry = CollectorRegistry()
    registry.register(ServiceCollector(stats=pipeline.stats))
    assert 'harbourwatch_open_alerts{rule="emergency_device"} 2.0' in set(
        generate_latest(registry).decode().splitlines())


class RaisesOnChange(BaseRule):
    """A rule with a bug a receiver heard again, vessels forgotten or new zones find."""

    name = "raises_on_change"

    def __init__(self, where: str) -> None:
        self.where = where
        self.zones_told = 0

    def before_heard(self, ctx: RuleContext, rec: Receiver, now: float) -> None:
        if self.where == "heard":
            raise ValueError("cannot convert float NaN to integer")

    def on_forget(self, ctx: RuleContext, mmsis: Set[int]) -> None:
        if self.where == "forget":
            raise ValueError("cannot convert float NaN to integer")

    def on_zones(self, ctx: RuleContext) -> None:
        self.zones_told += 1
        if self.where == "zones" and self.zones_told > 1:  # new zones, not the first
            raise ValueError("cannot convert float NaN to integer")


class Told(BaseRule):
    """What a well-behaved rule after the failing one was told."""

    name = "told"

    def __init__(self) -> None:
        self.heard: list[tuple[str, float]] = []
        self.forgotten: list[int] = []

    def before_heard(self, ctx: RuleContext, rec: Receiver, now: float) -> None:
        self.heard.append((rec.name, now - rulekit.T0))

    def on_forget(self, ctx: RuleContext, mmsis: Set[int]) -> None:
        self.forgotten += sorted(mmsis)


def raising_first(where: str, **sections: Any) -> tuple[Engine, Told]:
    """An engine whose first rule raises ``where``, the next one ``Told``."""
    config = rules_config(**sections)
    told = Told()
    return Engine(config, port_zones(),
                  rules=[RaisesOnChange(where), told, *build_rules(config)]), told


def test_a_rule_raising_before_a_receiver_is_heard_costs_only_its_own_judgement(
        caplog: pytest.LogCaptureFixture) -> None:
    """``before_heard`` (source_silent's) was called unguarded: raising on a receiver heard
    in a line, it stopped the service; on a report's receiver, the report went unjudged by
    every rule and out of the picture. The other rules' hooks run, the report is judged,
    the failure is counted and logged."""
    engine, told = raising_first("heard")
    seen = Seen()
    pipeline = Pipeline(Ingestor(), engine, [seen], live=False)
    with caplog.at_level("ERROR", logger="harbourwatch.pipeline"):
        three_sarts(pipeline)  # heard in lines: Engine.source_heard
        for t in (0, 10, 20):  # heard with a report: Engine.process
            pipeline.handle_report(rulekit.report(SHIP, t, -1750, -1750, sources=("rx9",)))
    assert [(e.alert["rule"], e.alert["mmsi"]) for e in seen.alerts] == [
        *(("emergency_device", mmsi) for mmsi in SARTS), ("zone_entry", SHIP),
        ("zone_entry", SHIP), ("restricted_entry", SHIP)]
    # Each line's receiver: before the line's report (source_heard) and with it (process).
    assert told.heard == [("udp", 0.0), ("udp", 1.0), ("udp", 1.0), ("udp", 2.0),
                          ("udp", 2.0), ("rx9", 10.0), ("rx9", 20.0)]
    assert engine.picture.vessels[SHIP].messages == 3
    assert pipeline.rule_failures == 7
    (record,) = caplog.records  # the first failure; then every thousandth
    assert record.message.startswith("the rules raised on MMSI 970000001, type 1, ")


class Dropped:
    """A sink with a per-vessel table (as the API's picture)."""

    def __init__(self) -> None:
        self.dropped: list[int] = []

    def on_report(self, report: Report) -> None:
        pass

    def on_alert(self, event: AlertEvent) -> None:
        pass

    def drop_vessels(self, mmsis: tuple[int, ...]) -> None:
        self.dropped += mmsis


def test_a_rule_raising_on_vessels_forgotten_costs_only_its_own_forgetting() -> None:
    """``on_forget`` was called unguarded: a rule raising there left the rules after it
    holding the state of vessels gone (for every vessel forgotten or evicted since), the
    forgotten uncounted, an evicted vessel in the sinks' tables, and the report that caused
    it unjudged. The other rules are told, the failure counted."""
    engine, told = raising_first("forget", picture={"forget_s": 600, "max_vessels": 10})
    sink = Dropped()
    pipeline = Pipeline(Ingestor(), engine, [sink], live=False)
    for n in range(10):  # heard once each, far out
        pipeline.handle_report(rulekit.report(SHIP + n, n, 40_000, 40_000))
    pipeline.handle_report(rulekit.report(SHIP + 10, 10, 40_000, 40_000))  # evicts the first
    assert told.forgotten == [SHIP]
    assert sink.dropped == [SHIP]
    assert engine.counters["vessels_evicted"] == 1 and SHIP + 10 in engine.picture.vessels
    pipeline.handle_report(rulekit.report(SHIP + 10, 609.5, 40_000, 40_000))  # the sweep
    assert told.forgotten == [SHIP, *range(SHIP + 1, SHIP + 10)]
    assert engine.counters["forgotten"] == 9 and engine.picture.vessels[SHIP + 10].messages == 2
    assert pipeline.rule_failures == 2


def without_restricted_1() -> ZoneSet:
    return ZoneSet.from_geojson(rulekit.collection(*[
        f for f in rulekit.PORT_FEATURES if f["properties"]["id"] != "restricted_1"]))


def test_a_rule_raising_on_new_zones_leaves_them_in_force_for_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    """``on_zones`` was called unguarded: a rule raising on new zones (PUT /zones) left the
    zone change half applied: the zones in force, the rules after it still holding the
    alerts of a zone gone (restricted_entry's never ended), and the API answered 500 for
    zones it had saved and applied. The other rules take them; the failure is counted,
    logged and said in the answer's warnings (``Pipeline.set_zones``)."""
    engine, _told = raising_first("zones")
    seen = Seen()
    pipeline = Pipeline(Ingestor(), engine, [seen], live=False)
    for t in (0, 10):
        pipeline.handle_report(rulekit.report(SHIP, t, -1750, -1750))
    with caplog.at_level("ERROR", logger="harbourwatch.pipeline"):
        problems = pipeline.set_zones(without_restricted_1())
    assert [(e.alert["rule"], e.transition) for e in seen.alerts
            if e.alert["rule"] == "restricted_entry"] == [("restricted_entry", "new"),
                                                          ("restricted_entry", "end")]
    assert "restricted_1" not in engine.zones.by_id
    assert pipeline.rule_failures == 1
    assert problems == ["a rule raised on the new zones (ValueError: cannot convert float "
                        "NaN to integer); the zones are in force and the other rules took "
                        "them: counted in rule_failures, see the service's log"]
    (record,) = caplog.records
    assert record.message.startswith("the rules raised on a zone change (1 times so far)")


async def test_put_zones_that_a_rule_raises_on_answers_applied_with_a_warning(
        tmp_path: Path) -> None:
    """The exception went out of the handler: a 500 for zones saved and in force (a client
    retrying saved a version more). 200: saved, applied, the failure in ``warnings``."""
    config = rules_config()
    zones = ZoneSet.from_geojson(ZONES_PATH)
    engine = Engine(config, zones, rules=[RaisesOnChange("zones"), *build_rules(config)])
    pipeline = Pipeline(Ingestor(), engine, [Seen()], live=True)
    async with rig(tmp_path, zones=zones, zone_target=pipeline) as api:
        new = json.loads(ZONES_PATH.read_text())
        new["features"] = [f for f in new["features"] if f["properties"]["id"] != "berth_8"]
        resp = await api.client.put("/zones", json=new, headers=headers("admin"))
        assert resp.status_code == 200, resp.text
        assert (resp.json()["zones"], resp.json()["warnings"]) == (12, [
            "a rule raised on the new zones (ValueError: cannot convert float NaN to "
            "integer); the zones are in force and the other rules took them: counted in "
            "rule_failures, see the service's log"])
        assert "berth_8" not in engine.zones.by_id and pipeline.rule_failures == 1
        assert (await api.store.latest_zones() or {}).get("version") == resp.json()["version"]
