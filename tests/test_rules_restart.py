"""A restart mid-stream gives the transitions an uninterrupted run gives.

The service saves vessel states, open alerts and ``Engine.saved_state`` (receivers'
continuity, pairs not yet alerted) and gives them back at start-up; here they go through JSON
as through the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from geofence.alert import Alert, AlertEvent
from geofence.engine import Engine
from geofence.zones import ZoneSet
from ingest.report import Report
from tests.rulekit import port_zones, report, rules_config, span, zones_moved_east

Stream = Callable[[float, float], list[Report]]
SHIP = 244123456


def feed(engine: Engine, reports: Iterable[Report]) -> list[AlertEvent]:
    out: list[AlertEvent] = []
    for rep in reports:
        out += engine.process(rep)
    return out


def restarted(first: Engine, zones: ZoneSet | None = None) -> Engine:
    """A new engine given back what ``first`` would have saved, through JSON."""
    vessels = json.loads(json.dumps([v.to_state() for v in first.picture.vessels.values()]))
    alerts = [Alert.from_dict(json.loads(json.dumps(a.to_dict())))
              for a in first.open_alerts()]
    saved = json.loads(json.dumps(first.saved_state(), allow_nan=False))
    second = Engine(rules_config(), zones or port_zones())
    second.restore(vessels, alerts, saved)
    return second


def with_and_without_restart(stream: Stream, at: float, end: float, step: float = 10
                             ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Transitions after ``at``: uninterrupted, and with a restart (no downtime) there."""
    def shown(events: list[AlertEvent]) -> list[dict[str, object]]:
        return [{"transition": str(e.transition), "time": e.time, **e.alert} for e in events]

    whole = Engine(rules_config(), port_zones())
    feed(whole, stream(0, at))
    first = Engine(rules_config(), port_zones())
    feed(first, stream(0, at))
    return (shown(feed(whole, stream(at + step, end))),
            shown(feed(restarted(first), stream(at + step, end))))


def test_a_receivers_break_before_the_restart_still_excuses_its_vessels() -> None:
    """rx1 was down from 460 to 700 s, after its only vessel's last report at 450 s: the
    silence is rx1's. Forgetting the break at a restart called the vessel dark."""
    def stream(a: float, b: float) -> list[Report]:
        out = []
        for t in span(a, b, 10):
            if t <= 450:
                out.append(report(SHIP, t, 8000 + t * 4.1, 8000, speed=8.0, course=90.0))
            if not 460 < t < 700:
                out.append(report(244000001, t, 5000, 5000))
            out.append(report(244000002, t, 6000, 5000, sources=("rx2",)))
        return out

    whole, restart = with_and_without_restart(stream, 800, 2000)
    assert restart == whole
    assert not [e for e in restart if e["rule"] == "dark_vessel"]


def test_a_receiver_silent_across_the_restart_keeps_its_one_alert() -> None:
    def stream(a: float, b: float) -> list[Report]:
        out = []
        for t in span(a, b, 10):
            out.append(report(244000001, t, 5000, 5000))
            if t <= 100:
                out.append(report(244000002, t, 6000, 5000, sources=("rx2",)))
        return out

    whole, restart = with_and_without_restart(stream, 600, 1200)
    assert restart == whole == []  # open since 220 s, still open: no end, no second alert


def test_a_receiver_timed_below_the_millisecond_stays_silent_across_the_restart() -> None:
    """An untagged UDP receiver is timed by arrival (microseconds); its alert's start went
    through the store as milliseconds, and the restart took the silence for a return."""
    def stream(a: float, b: float) -> list[Report]:
        out = []
        for t in span(a, b, 10):
            out.append(report(244000001, t, 5000, 5000))
            if t <= 100:
                out.append(report(244000002, t + 0.0004567, 6000, 5000, sources=("rx2",)))
        return out

    whole, restart = with_and_without_restart(stream, 600, 1200)
    assert restart == whole == []


def test_an_open_collision_risk_stays_open_across_the_restart() -> None:
    def stream(a: float, b: float) -> list[Report]:
        out = []
        for t in span(a, b, 5):  # head-on outside the port limit, 10 kn each
            out.append(report(244000011, t, 8000 + t * 5.144, 8000, speed=10.0, course=90.0))
            out.append(report(244000022, t + 1, 12000 - (t + 1) * 5.144, 8010, speed=10.0,
                              course=270.0))
        return out

    whole, restart = with_and_without_restart(stream, 150, 380, step=5)
    assert restart == whole
    assert not [e for e in restart if e["rule"] == "collision_risk"]  # still open, not ended


def test_an_encounter_keeps_its_clock_across_the_restart() -> None:
    def stream(a: float, b: float) -> list[Report]:
        out = []
        for t in span(a, b, 10):  # 80 m apart, both slow, in open water
            out.append(report(244000011, t, 8000, 8000, speed=0.5))
            out.append(report(244000022, t, 8080, 8000, speed=0.5))
        return out

    whole, restart = with_and_without_restart(stream, 600, 2000)
    assert restart == whole
    (opened,) = [e for e in restart if e["rule"] == "encounter"]
    assert opened["started_at"] == "2026-01-01T12:00:00Z"


def test_a_vessel_going_dark_after_the_restart_keeps_its_evidence() -> None:
    def stream(a: float, b: float) -> list[Report]:
        out = []
        for t in span(a, b, 10):
            if t <= 100:
                out.append(report(SHIP, t, 0, 5000, speed=8.0, course=0.0))
            out.append(report(244000001, t, 5000, 5000))
        return out

    whole, restart = with_and_without_restart(stream, 300, 900)
    assert restart == whole
    (dark,) = [e for e in restart if e["rule"] == "dark_vessel"]
    assert dark["details"]["reports"][0]["time"] == "2026-01-01T12:01:40Z"  # type: ignore[index]


def test_a_zone_swap_keeps_an_open_collision_risk() -> None:
    engine = Engine(rules_config(), port_zones())
    for t in span(0, 150, 5):
        feed(engine, [report(244000011, t, 8000 + t * 5.144, 8000, speed=10.0, course=90.0),
                      report(244000022, t + 1, 12000 - (t + 1) * 5.144, 8010, speed=10.0,
                             course=270.0)])
    assert [a.rule for a in engine.open_alerts()] == ["collision_risk"]
    assert engine.set_zones(port_zones()) == []
    events = feed(engine, [report(244000011, 155, 8000 + 155 * 5.144, 8000, speed=10.0,
                                  course=90.0)])
    assert [e.alert["rule"] for e in events] == []
    assert [a.rule for a in engine.open_alerts()] == ["collision_risk"]


def test_a_live_restart_judges_the_downtime_at_the_first_line_not_at_a_wall_tick() -> None:
    """The service ticks every second of wall time before its sources deliver: those ticks
    run from the restored clock at the wall rate, and must not use up the downtime's grace
    (every receiver but the first heard raised source_silent an hour back)."""
    from harbourwatch.pipeline import Pipeline
    from ingest.ingestor import Ingestor

    first = Engine(rules_config(), port_zones())
    for t in span(0, 590, 10):
        feed(first, [report(244000000 + n, t + n, 5000 + 500 * n, 5000, sources=(f"rx{n}",))
                     for n in (1, 2, 3)])
    second = restarted(first)
    pipeline = Pipeline(Ingestor(), second, live=True)
    seen: list[AlertEvent] = []
    pipeline.emit = seen.extend  # type: ignore[method-assign]
    start = second.newest
    for s in range(60):
        pipeline.wall_tick(1000.0 + s)
    assert second.newest == start + 59  # from the restored clock, at the wall's rate
    back = 592 + 3600  # down for an hour
    for t in span(back, back + 30, 10):
        for n in (1, 2, 3):
            pipeline.handle_report(report(244000000 + n, t + n, 5000 + 500 * n, 5000,
                                          sources=(f"rx{n}",)))
    assert seen == []


def test_a_dead_feed_after_a_live_restart_still_raises_source_silent() -> None:
    from harbourwatch.pipeline import Pipeline
    from ingest.ingestor import Ingestor

    first = Engine(rules_config(), port_zones())
    feed(first, [report(244000001, t, 5000, 5000) for t in span(0, 100, 10)])
    pipeline = Pipeline(Ingestor(), restarted(first), live=True)
    seen: list[AlertEvent] = []
    pipeline.emit = seen.extend  # type: ignore[method-assign]
    for s in range(200):  # nothing arrives
        pipeline.wall_tick(1000.0 + s)
    assert [(str(e.transition), e.alert["details"]["receiver"]) for e in seen] == [
        ("new", "rx1")]


def test_a_zone_swap_rebuilds_no_pair_with_a_vessel_outside_the_watch_area() -> None:
    def run(swap: bool) -> list[AlertEvent]:
        engine = Engine(rules_config(watch_area="port"), port_zones())
        events: list[AlertEvent] = []
        for t in span(0, 30, 10):  # one just outside the coverage, one inside, head-on
            events += feed(engine, [
                report(244000001, t, 21500 - t * 5.144, 0, speed=10.0, course=270.0),
                report(244000002, t, 19000 + t * 5.144, 0, speed=10.0, course=90.0)])
            if swap and t == 10:
                events += engine.set_zones(port_zones())
        return [e for e in events if e.alert["rule"] == "collision_risk"]

    assert run(swap=True) == run(swap=False) == []


def test_alerts_of_a_zone_gone_while_the_service_was_down_end_at_the_restart() -> None:
    """The file won over a zone version saved over the API: the vessel's membership of the
    removed zone went without an exit, so its restricted_entry stayed open for good."""
    from tests.rulekit import rect

    extra = rect("security_2", "security", -100, -100, 300, 300)  # over berth_1
    first = Engine(rules_config(), port_zones(extra))
    feed(first, [report(SHIP, t, 100, 20, speed=0.0) for t in span(0, 30, 10)])
    assert [a.rule for a in first.open_alerts()] == ["restricted_entry"]
    vessels = json.loads(json.dumps([v.to_state() for v in first.picture.vessels.values()]))
    second = Engine(rules_config(), port_zones())  # the zones file, without security_2
    second.restore(vessels, first.open_alerts(), first.saved_state())
    ended = feed(second, [report(SHIP, 40, 100, 20, speed=0.0)])
    assert [(str(e.transition), e.alert["rule"], e.alert["details"]["end_reason"])
            for e in ended] == [("end", "restricted_entry", "zones changed")]
    assert second.open_alerts() == []


def test_a_feed_stamped_behind_the_clock_is_not_silent_after_a_restart() -> None:
    """Its stamps run 110 s behind the port's clock: restored with only its last stamp,
    it looked silent seconds after the restart (source_silent opened and closed)."""
    def run(engine: Engine, start: int, stop: int) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        for s in range(start, stop):
            events += engine.process(report(244000001, s, 100, 20, sources=("quay",)))
            if s % 6 == 0:
                events += engine.process(report(244000002, s - 110, 5000, 5000,
                                                sources=("national",)))
            events += engine.tick(engine.newest + 0.5)
        return events

    first = Engine(rules_config(), port_zones())
    assert not [e for e in run(first, 0, 600) if e.alert["rule"] == "source_silent"]
    second = restarted(first)
    assert not [e for e in run(second, 603, 900) if e.alert["rule"] == "source_silent"]


def test_a_limit_changed_while_the_service_was_down_ends_the_alert_under_the_old_one() -> None:
    from geofence.zones import ZoneSet
    from tests.rulekit import PORT_FEATURES, collection, rect

    first = Engine(rules_config(), port_zones())
    feed(first, [report(SHIP, t, 0.0, -2500.0, speed=8.0) for t in [0, 5, *span(10, 70, 10)]])
    assert [a.rule for a in first.open_alerts()] == ["speeding"]
    raised = [f for f in PORT_FEATURES if f["properties"]["id"] != "channel_1"]
    raised.append(rect("channel_1", "channel", -2500, -2600, 2500, -2400, max_speed_kn=30))
    second = Engine(rules_config(), ZoneSet.from_geojson(collection(*raised)))
    second.restore(json.loads(json.dumps([v.to_state() for v in first.picture.vessels.values()])),
                   first.open_alerts(), json.loads(json.dumps(first.saved_state())))
    ended = feed(second, [report(SHIP, t, 0.0, -2500.0, speed=8.0) for t in span(80, 300, 10)])
    assert [(str(e.transition), e.alert["details"]["end_reason"]) for e in ended] == [
        ("end", "zones changed")]
    assert second.open_alerts() == []


def test_a_restart_with_zones_in_another_projection_carries_an_anchor_circle_over() -> None:
    """The saved centre is in the old zones' metres; the zones the service restarts with are
    in UTM 32: the same swing measured some 411 km from it, a false drag."""
    anchored = [report(SHIP, t, 5000, 5000 + (t % 120) / 2, status=1, speed=0.1)
                for t in span(0, 3600, 60)]
    first = Engine(rules_config(), port_zones())
    assert feed(first, anchored[:40]) == []
    second = restarted(first, zones_moved_east(5.0))
    assert [e.alert["rule"] for e in feed(second, anchored[40:])] == []
    assert second.picture.vessels[SHIP].rule_state["anchor_drag"]["crs"] == "EPSG:32632"
