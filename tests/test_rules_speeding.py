"""speeding: over the zone limit (channel_1: 6 kn) for at least 60 s."""

from __future__ import annotations

from tests.rulekit import Run, at, report, span

SHIP = 244123456
IN_CHANNEL = (0.0, -2500.0)


def enter(run: Run, speed: float = 5.0) -> None:
    run.track(SHIP, [0, 5], *IN_CHANNEL, speed=speed)  # membership confirmed at t=5


def test_over_limit_59_s_no_alert() -> None:
    run = Run()
    enter(run)
    run.track(SHIP, span(10, 69, 59 / 4), *IN_CHANNEL, speed=8.0)
    run.feed(report(SHIP, 75, *IN_CHANNEL, speed=5.0))
    assert run.of("speeding") == []


def test_over_limit_60_s_alert() -> None:
    run = Run()
    enter(run)
    run.track(SHIP, span(10, 70, 10), *IN_CHANNEL, speed=8.0)
    (event,) = run.of("speeding")
    assert event.transition == "new" and event.time == run.engine.newest
    alert = event.alert
    assert alert["zone"] == "channel_1" and alert["started_at"] == "2026-01-01T12:00:10Z"
    assert alert["details"]["limit_kn"] == 6.0 and alert["details"]["held_s"] == 60.0
    assert len(alert["details"]["reports"]) == 2


def test_at_the_limit_is_not_over() -> None:
    run = Run()
    enter(run)
    run.track(SHIP, span(10, 200, 10), *IN_CHANNEL, speed=6.0)
    assert run.of("speeding") == []


def test_ends_once_below_limit_minus_margin() -> None:
    run = Run()
    enter(run)
    run.track(SHIP, span(10, 100, 10), *IN_CHANNEL, speed=8.0)
    run.track(SHIP, [110, 120], *IN_CHANNEL, speed=5.8)  # between 5.5 and 6: still open
    run.track(SHIP, [130, 140, 150], *IN_CHANNEL, speed=6.5)
    run.feed(report(SHIP, 160, *IN_CHANNEL, speed=5.4))
    assert [e.transition for e in run.of("speeding")] == ["new", "end"]
    end = run.of("speeding", "end")[0].alert
    assert end["ended_at"] == "2026-01-01T12:02:40Z" and end["details"]["max_speed"] == 8.0


def test_update_only_on_big_increase() -> None:
    run = Run()
    enter(run)
    speeds = [7.0] * 7 + [8.0, 9.5, 10.0, 10.5] + [11.0] * 6
    for i, speed in enumerate(speeds):
        run.feed(report(SHIP, 10 + 10 * i, *IN_CHANNEL, speed=speed))
    updates = run.of("speeding", "update")
    # opened at t=70 (max 7); +2 kn reached at t=90 but the first update waits to t=130
    assert [(e.time - updates[0].time, e.alert["details"]["max_speed"]) for e in updates] == [
        (0.0, 11.0)]
    assert updates[0].alert["details"]["held_s"] == 120.0


def test_port_default_limit_applies_to_port_limit_zone() -> None:
    run = Run(speeding={"max_speed_kn": 10})
    run.play(at(SHIP, span(0, 80, 10), 500, 500, speed=12.0))
    (event,) = run.of("speeding")
    assert event.alert["zone"] == "port" and event.alert["details"]["limit_kn"] == 10.0


def test_no_limit_no_alert() -> None:
    run = Run()
    run.track(SHIP, span(0, 300, 10), 500, 500, speed=25.0)
    assert run.of("speeding") == []


def test_a_channel_entered_on_a_report_without_speed_still_has_its_limit() -> None:
    """AIS speed "not available" (102.3 → null) on the report that confirms the entry."""
    run = Run()
    for t in span(0, 600, 10):  # northward through channel_1 (y -2600..-2400) at 12 kn
        run.feed(report(SHIP, t, 0, -3000 + t * 2.0, speed=None if t == 220 else 12.0))
    assert [(e.transition, e.alert["zone"]) for e in run.of("speeding")] == [
        ("new", "channel_1"), ("end", "channel_1")]


def test_leaving_the_channel_on_a_report_without_speed_leaves_its_limit_behind() -> None:
    """Out of the 6 kn channel (exit confirmed with no speed), 12 kn in the port is no
    speeding: no alert naming a channel the vessel has left."""
    run = Run()
    for t in span(0, 900, 10):
        x, y = (0.0, -2550 + t * 2.0) if t <= 200 else ((t - 200) * 6.0, -2150.0)
        speed = {50: 7.0, 100: None}.get(t, 5.0 if t < 100 else 12.0)
        run.feed(report(SHIP, t, x, y, speed=speed))
    assert [e.alert["zone"] for e in run.of("zone_exit")] == ["channel_1", "port"]
    assert run.of("speeding") == []


def test_an_alert_ends_on_leaving_even_when_that_report_has_no_speed() -> None:
    run = Run()
    enter(run)
    run.track(SHIP, span(10, 70, 10), *IN_CHANNEL, speed=8.0)
    run.track(SHIP, [80, 90], 0.0, -2350.0, speed=None)  # out of the channel, no speed
    (_, end) = run.of("speeding")
    assert end.transition == "end" and end.alert["ended_at"] == "2026-01-01T12:01:30Z"
    assert end.alert["details"]["end_reason"] == "left_zone"


def test_a_limit_raised_over_the_api_ends_the_alert_it_no_longer_holds() -> None:
    """The alert followed the limit it was opened under, 6 kn, after the channel's became
    30 kn: open for good at 8 kn."""
    from geofence.zones import ZoneSet
    from tests.rulekit import PORT_FEATURES, collection, rect

    run = Run()
    enter(run)
    run.track(SHIP, span(10, 70, 10), *IN_CHANNEL, speed=8.0)
    assert [e.transition for e in run.of("speeding")] == ["new"]
    raised = [f for f in PORT_FEATURES if f["properties"]["id"] != "channel_1"]
    raised.append(rect("channel_1", "channel", -2500, -2600, 2500, -2400, max_speed_kn=30))
    ended = run.engine.set_zones(ZoneSet.from_geojson(collection(*raised)))
    assert [(e.transition, e.alert["details"]["end_reason"]) for e in ended] == [
        ("end", "zones changed")]
    run.track(SHIP, span(80, 200, 10), *IN_CHANNEL, speed=8.0)
    assert [e.transition for e in run.of("speeding")] == ["new"]  # none under 30 kn


def test_the_top_speed_ais_can_give_is_a_broken_log_not_speeding() -> None:
    """102.2 kn means "102.2 or more": a moored vessel's faulty log (the demo recording has
    one). The rules take it as no speed; just below it is a speed like any other."""
    run = Run()
    enter(run)
    run.track(SHIP, span(10, 200, 10), *IN_CHANNEL, speed=102.2, status=5)
    assert run.of("speeding") == []
    run.track(SHIP, span(210, 300, 10), *IN_CHANNEL, speed=102.1, status=5)
    assert [e.alert["details"]["max_speed"] for e in run.of("speeding", "new")] == [102.1]
    sent = report(SHIP, 310, *IN_CHANNEL, speed=102.2, status=5)
    run.feed(sent)
    assert sent.speed == 102.2  # what the sinks store and show
    aircraft = report(111232511, 320, *IN_CHANNEL, speed=140.0, msg_type=9, status=None)
    run.feed(aircraft)  # a SAR aircraft's speed goes to 1022 kn: kept
    assert run.engine.picture.vessels[111232511].speed == 140.0
