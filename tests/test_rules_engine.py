"""The engine: picture contents, suspect fixes, zone hot swap, determinism, registry."""

from __future__ import annotations

import json
import random

import pytest

from geofence.alert import Alert, RiskArea, Severity
from geofence.engine import Engine
from geofence.picture import Vessel
from geofence.rules import REGISTRY, BaseRule, Phase, RuleContext, build_rules
from geofence.zones import ZoneSet
from ingest.report import Report
from tests.rulekit import (
    PORT_FEATURES,
    T0,
    Run,
    at,
    collection,
    port_zones,
    rect,
    report,
    rules_config,
    span,
)

SHIP = 244123456


def test_picture_merges_static_and_kinematics() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 100, 25, speed=0.1, status=5, heading=90, sources=("rx1", "rx2")))
    run.feed(report(SHIP, 5, None, None, msg_type=5, speed=None, course=None, status=None,
                    shipname="NORDIC STAR", callsign="PDAB", imo=9123456, shiptype=70,
                    to_bow=100, to_stern=20, draught=7.5, destination="NLRTM"))
    run.feed(report(SHIP, 10, 100, 25, speed=0.0, status=5, sources=("rx2",)))
    vessel = run.engine.picture.vessels[SHIP]
    assert (vessel.shipname, vessel.callsign, vessel.imo, vessel.shiptype) == (
        "NORDIC STAR", "PDAB", 9123456, 70)
    assert vessel.length == 120 and vessel.draught == 7.5 and vessel.ais_class == "A"
    assert vessel.status == 5 and vessel.speed == 0.0 and vessel.heading == 90
    assert vessel.first_seen == T0 and vessel.last_seen == T0 + 10
    assert vessel.sources == {"rx1": T0 + 5, "rx2": T0 + 10}
    assert list(vessel.zones) == ["coverage", "port", "berth_1"]
    assert len(vessel.history) == 2
    data = vessel.to_dict()
    assert data["zones"] == ["coverage", "port", "berth_1"] and data["sources"] == ["rx1", "rx2"]
    assert data["time"] == "2026-01-01T12:00:10Z"


def test_class_b_static_from_24_and_19() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 500, 500, msg_type=18, status=None))
    run.feed(report(SHIP, 1, None, None, msg_type=24, partno=0, shipname="SEA DOG",
                    speed=None, course=None, status=None))
    run.feed(report(SHIP, 2, None, None, msg_type=24, partno=1, callsign="XY12", shiptype=37,
                    to_bow=8, to_stern=4, speed=None, course=None, status=None))
    vessel = run.engine.picture.vessels[SHIP]
    assert (vessel.ais_class, vessel.shipname, vessel.callsign, vessel.shiptype, vessel.length) \
        == ("B", "SEA DOG", "XY12", 37, 12)


def test_a_late_older_static_report_fills_gaps_but_overwrites_nothing() -> None:
    run = Run()
    static = dict(msg_type=5, speed=None, course=None, status=None)
    run.feed(report(SHIP, 0, 100, 25))
    run.feed(report(SHIP, 20, None, None, shipname="NEW NAME", destination="NLRTM", **static))
    # A copy of the report from before the rename, later than the duplicate window.
    run.feed(report(SHIP, 10, None, None, shipname="OLD NAME", destination="DEHAM",
                    callsign="PDAB", **static))
    vessel = run.engine.picture.vessels[SHIP]
    assert (vessel.shipname, vessel.destination, vessel.callsign) == (
        "NEW NAME", "NLRTM", "PDAB")
    assert vessel.static_time == T0 + 20


def test_base_stations_and_own_ship_stay_out() -> None:
    run = Run()
    run.feed(report(2442000, 0, 100, 100, msg_type=4))
    own = report(SHIP, 0, 100, 100)
    own.own = True
    run.feed(own)
    assert run.engine.picture.vessels == {}
    assert "rx1" in run.engine.picture.receivers


def test_live_excludes_long_silent_but_keeps_state() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 500, 500))
    run.feed(report(244000002, 1000, 600, 600))
    live = [v.mmsi for v in run.engine.picture.live(T0 + 1000)]
    assert live == [244000002]
    assert SHIP in run.engine.picture.vessels


def test_forgotten_after_forget_s_with_the_alerts_still_open_on_it_ended() -> None:
    """Kept while an alert was open, a vessel that never came back stayed for good."""
    run = Run(picture={"forget_s": 3600})
    run.feed(report(SHIP, 0, 500, 500))
    run.feed(report(244000002, 0, -1750, -1750))
    run.feed(report(244000002, 10, -1750, -1750))  # restricted_entry opens
    run.feed(report(244000003, 3000, 500, 500))
    assert [e.transition for e in run.of("restricted_entry")] == ["new"]
    run.tick(3605)
    assert set(run.engine.picture.vessels) == {244000002, 244000003}  # 3,595 s silent
    assert run.engine.book.has_open(244000002)
    ended = [e for e in run.tick(3700) if e.alert["rule"] != "source_silent"]
    assert set(run.engine.picture.vessels) == {244000003}
    assert [(e.transition, e.alert["rule"], e.alert["details"]["end_reason"]) for e in ended] \
        == [("end", "restricted_entry", "forgotten")]
    assert not run.engine.book.has_open(244000002)
    assert run.engine.counters["forgotten"] == 2
    # Back a day later: a vessel like any other, entering afresh.
    run.feed(report(244000002, 5000, -1750, -1750), report(244000002, 5010, -1750, -1750))
    assert [e.transition for e in run.of("restricted_entry")] == ["new", "end", "new"]


def test_a_restored_alert_whose_vessel_the_picture_lacks_ends_forgotten() -> None:
    """An alert restored without its vessel (opened after the last state save, then a
    crash; or resolved by an operator while it held, which a restart used to drop): no sweep
    forgot such a vessel, so its alert stayed open for as long as the service ran. It ends
    once ``forget_s`` has passed since the restart with the vessel unheard; one whose vessel
    is heard again is judged as any other."""
    def restricted(mmsi: int) -> Alert:
        return Alert(rule="restricted_entry", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                     severity=Severity.CRITICAL, mmsi=mmsi, started_at=T0, zone="restricted_1")

    run = Run(picture={"forget_s": 3600})
    run.engine.restore([], [restricted(SHIP), restricted(244000002)])
    run.feed(report(244000003, 100, 500, 500))  # the restart's message time: T0 + 100
    run.feed(report(244000002, 200, 500, 500))  # heard again: it left the zone
    run.tick(3650)
    assert run.engine.book.has_open(SHIP)  # 3,550 s since the restart
    ended = [e for e in run.tick(3760) if e.alert["rule"] == "restricted_entry"]
    assert [(e.transition, e.alert["mmsi"], e.alert["details"]["end_reason"]) for e in ended
            ] == [("end", SHIP, "forgotten")]
    assert ended[0].time == T0 + 3760


class RejectFar(BaseRule):
    """A validation rule for the test: fixes east of 10 km are spoofed."""

    name = "reject_far"
    phase = Phase.VALIDATE

    def __init__(self) -> None:
        self.seen_before: list[float | None] = []

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        self.seen_before.append(vessel.x)
        if report.lon is not None and report.lon > 4.15:
            ctx.reject_fix("too far east")


def test_validation_rule_vetoes_the_fix() -> None:
    config = rules_config()
    veto = RejectFar()
    engine = Engine(config, port_zones(), rules=[*build_rules(config), veto])
    phases = [rule.phase for rule in engine.rules]
    assert phases == sorted(phases)  # the validation phase runs first
    assert veto.phase == Phase.VALIDATE and veto in engine.rules
    engine.process(report(SHIP, 0, 100, 25, speed=1.0))
    engine.process(report(SHIP, 10, 100, 25, speed=1.0))
    engine.process(report(SHIP, 20, 15000, 25, speed=30.0))
    vessel = engine.picture.vessels[SHIP]
    assert vessel.last_seen == T0 + 20 and vessel.fix_time == T0 + 10
    assert vessel.speed == 1.0 and list(vessel.zones) == ["coverage", "port", "berth_1"]
    assert engine.counters["suspect"] == 1
    assert veto.seen_before[0] is None and veto.seen_before[1] is not None


def test_registry_names_match_config_sections() -> None:
    config = rules_config()
    for name, _factory in REGISTRY:
        assert hasattr(config, name)
    names = [rule.name for rule in build_rules(rules_config(loitering={"enabled": False}))]
    assert "loitering" not in names and "dark_vessel" in names


def test_set_zones_keeps_vessels_and_ends_zone_alerts() -> None:
    run = Run()
    run.track(SHIP, [0, 10], -1750, -1750)
    assert len(run.of("restricted_entry", "new")) == 1
    smaller = ZoneSet.from_geojson(collection(*[f for f in PORT_FEATURES
                                                if f["properties"]["id"] != "restricted_1"]))
    events = run.engine.set_zones(smaller)
    assert [(e.transition, e.alert["rule"]) for e in events] == [("end", "restricted_entry")]
    vessel = run.engine.picture.vessels[SHIP]
    assert list(vessel.zones) == ["coverage", "port"] and vessel.messages == 2
    # A new zone is picked up by the next reports.
    bigger = ZoneSet.from_geojson(collection(*PORT_FEATURES,
                                             rect("new_zone", "anchorage", -1800, -1800,
                                                  -1700, -1700)))
    run.engine.set_zones(bigger)
    run.track(SHIP, [20, 30], -1750, -1750)
    assert [e.alert["zone"] for e in run.of("zone_entry")][-2:] == ["restricted_1", "new_zone"]


def test_vessel_state_round_trips_through_json() -> None:
    run = Run()
    run.track(SHIP, span(0, 600, 10), 100, 300, speed=1.0)
    vessel = run.engine.picture.vessels[SHIP]
    state = json.loads(json.dumps(vessel.to_state()))
    again = Vessel.from_state(state)
    assert again.to_state() == vessel.to_state()
    assert again.rule_state["loitering"]["since"] == T0


def _scenario(seed: int) -> list[Report]:
    rng = random.Random(seed)
    out: list[Report] = []
    for mmsi in range(244000100, 244000130):
        x, y = rng.uniform(-4000, 4000), rng.uniform(-4000, 4000)
        speed = rng.choice([0.0, 1.0, 5.0, 9.0])
        stop = rng.uniform(600, 3600)
        out += at(mmsi, span(rng.uniform(0, 30), stop, rng.choice([10, 30, 180])), x, y,
                  speed=speed, sources=(rng.choice(["rx1", "rx2"]),))
    out += at(970000001, span(100, 400, 60), 0, 0)
    out.sort(key=lambda r: r.time)
    return out


def test_same_input_twice_gives_identical_alerts() -> None:
    def run_once() -> list[tuple[str, str, float]]:
        engine = Engine(rules_config(speeding={"max_speed_kn": 8}), port_zones())
        events = []
        for rep in _scenario(7):
            events += engine.process(rep)
        events += engine.tick(T0 + 8000)
        return [(e.transition, json.dumps(e.alert, sort_keys=True), e.time) for e in events]

    first, second = run_once(), run_once()
    assert first == second
    rules = {json.loads(a)["rule"] for _t, a, _ in first}
    assert {"zone_entry", "emergency_device", "speeding", "dark_vessel"} <= rules


def test_drill_marks_every_alert() -> None:
    engine = Engine(rules_config(), port_zones(), drill=True)
    events = []
    for t in (0, 10):
        events += engine.process(report(SHIP, t, -1750, -1750))
    assert events and all(e.alert["drill"] is True for e in events)


def test_watch_area_port_keeps_far_vessels_in_the_picture_but_out_of_the_rules() -> None:
    """A national feed hears the whole coast; with watch_area: port only the port alerts."""
    far = 40_000.0  # outside the test port's 20 km coverage and its port limit
    for area, expected in (("everywhere", 1), ("port", 0)):
        run = Run(config=rules_config(watch_area=area))
        run.feed(report(244000001, 0, far, 0, speed=10.0, course=90.0),
                 report(244000002, 0, far + 4000, 100, speed=10.0, course=270.0))
        run.feed(report(244000001, 10, far + 51, 0, speed=10.0, course=90.0),
                 report(244000002, 10, far + 3949, 100, speed=10.0, course=270.0))
        assert len(run.of("collision_risk", "new")) == expected, area
        assert run.engine.picture.vessels[244000001].lat is not None
    # An emergency device alerts wherever it is.
    run = Run(config=rules_config(watch_area="port"))
    run.feed(report(970111222, 0, far, 0))
    assert len(run.of("emergency_device", "new")) == 1


def test_watch_area_port_without_a_port_zone_says_the_rules_watch_everywhere(
        caplog: pytest.LogCaptureFixture) -> None:
    berth_only = ZoneSet.from_geojson(collection(rect("b", "berth", 0, 0, 100, 100)))
    no_dark = {"dark_vessel": {"enabled": False}}  # its own warning: no coverage zone
    Run(zones=berth_only, config=rules_config(watch_area="port", **no_dark))
    assert caplog.messages == [
        "rules.watch_area is port, but the zones have no coverage or port_limit zone: every "
        "vessel heard is a subject of the rules"]
    caplog.clear()
    Run(config=rules_config(watch_area="port"))  # the test port has both
    Run(zones=berth_only, config=rules_config(watch_area="everywhere", **no_dark))
    assert caplog.messages == []


def test_watch_area_port_still_confirms_leaving_the_port() -> None:
    """Leaving the port limit is always leaving the watch area: the exit (and a later
    re-entry) must still be seen, and the vessel not left a member of the port for ever."""
    zones = ZoneSet.from_geojson(collection(
        rect("coverage", "coverage", -5000, -5000, 5000, 5000),
        rect("port", "port_limit", -8000, -8000, 8000, 8000)))
    run = Run(zones, config=rules_config(watch_area="port"))
    run.feed(*[report(SHIP, t, t * 5.144, 0, speed=10.0, course=90.0)
               for t in span(0, 2400, 10)])  # 10 kn east, 12 km out
    assert list(run.engine.picture.vessels[SHIP].zones) == []
    run.feed(*[report(SHIP, t, (4800 - t) * 5.144, 0, speed=10.0, course=270.0)
               for t in span(2410, 4800, 10)])  # and back
    assert [(e.alert["rule"], e.alert["started_at"]) for e in run.events
            if e.alert["zone"] == "port"] == [
        ("zone_entry", "2026-01-01T12:00:10Z"), ("zone_exit", "2026-01-01T12:26:10Z"),
        ("zone_entry", "2026-01-01T12:54:20Z")]


def test_watch_area_port_judges_static_reports_where_the_vessel_is() -> None:
    """Static and voyage data carry no position: a vessel in the port is still a subject
    (its identity change was missed), one far outside is not."""
    for x, expected in ((0.0, 1), (40_000.0, 0)):
        run = Run(config=rules_config(watch_area="port"))
        run.feed(report(SHIP, 0, x, 0, speed=0.0))  # one fix: no zone membership yet
        static = {"msg_type": 5, "speed": None, "course": None, "status": None}
        run.feed(report(SHIP, 10, shipname="ALPHA", **static),
                 report(SHIP, 20, shipname="BRAVO", **static))
        assert len(run.of("identity_change")) == expected, x
