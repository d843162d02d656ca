"""zone_entry / zone_exit with inertia and hysteresis, and restricted_entry."""

from __future__ import annotations

from tests.rulekit import Run, at, report, span

SHIP = 244123456


def test_entry_needs_two_consecutive_reports() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 100, 25))  # inside berth_1 and port, once
    assert run.of("zone_entry") == []
    run.feed(report(SHIP, 10, 100, 25))
    entries = run.of("zone_entry")
    assert sorted(e.alert["zone"] for e in entries) == ["berth_1", "port"]
    assert all(e.transition == "new" and e.alert["state"] == "ended" for e in entries)
    assert entries[0].alert["started_at"] == "2026-01-01T12:00:10Z"
    assert entries[0].alert["risk_area"] == "port_operations"
    # Seen inside from its first fix: the crossing was not observed, and the event says so.
    assert all(e.alert["details"]["first_seen_inside"] is True for e in entries)


def test_an_entry_after_a_fix_outside_is_a_crossing() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 100, 25), report(SHIP, 10, 100, 25))  # berth_1 and port
    run.feed(report(SHIP, 20, 500, 500), report(SHIP, 30, 500, 500))  # left the berth
    run.feed(report(SHIP, 40, 100, 25), report(SHIP, 50, 100, 25))  # back in
    second = [e.alert for e in run.of("zone_entry") if e.alert["started_at"].endswith(":50Z")]
    assert [a["zone"] for a in second] == ["berth_1"]
    assert "first_seen_inside" not in second[0]["details"]
    assert "inside_when_zones_changed" not in second[0]["details"]


def test_an_entry_into_a_zone_added_around_a_vessel_says_so() -> None:
    """Moored at berth_1 all along when a zone is drawn around it: no crossing was seen,
    and the entry looked like one."""
    from geofence.zones import ZoneSet
    from tests.rulekit import PORT_FEATURES, collection, rect

    run = Run()
    run.track(SHIP, span(0, 100, 10), 100, 25, speed=0.0)
    run.engine.set_zones(ZoneSet.from_geojson(collection(
        *PORT_FEATURES, rect("works", "berth", 50, 0, 300, 60))))
    run.track(SHIP, [110, 120], 100, 25, speed=0.0)
    (entry,) = [e.alert for e in run.of("zone_entry") if e.alert["zone"] == "works"]
    assert entry["details"]["inside_when_zones_changed"] is True
    assert "first_seen_inside" not in entry["details"]


def test_no_events_for_coverage_kind() -> None:
    run = Run()
    run.track(SHIP, [0, 10, 20], 8000, 8000)  # inside coverage only
    assert run.of("zone_entry") == []


def test_single_outlier_does_not_enter() -> None:
    run = Run()
    run.track(SHIP, [0, 10], 500, 500)
    run.feed(report(SHIP, 20, 100, 25))  # one fix in the berth
    run.track(SHIP, [30, 40], 500, 500)
    assert [e.alert["zone"] for e in run.of("zone_entry")] == ["port"]


def test_exit_needs_two_reports_beyond_margin() -> None:
    run = Run()
    run.track(SHIP, [0, 10], 100, 25)
    run.feed(report(SHIP, 20, 100, 60))  # 10 m north of the berth: within the 20 m margin
    run.feed(report(SHIP, 30, 100, 65))
    assert run.of("zone_exit") == []
    run.feed(report(SHIP, 40, 100, 90))  # 40 m out
    assert run.of("zone_exit") == []
    run.feed(report(SHIP, 50, 100, 95))
    exits = run.of("zone_exit")
    assert [e.alert["zone"] for e in exits] == ["berth_1"]
    assert exits[0].time - run.of("zone_entry")[0].time == 40


def test_hovering_on_a_boundary_enters_once() -> None:
    run = Run()
    # Fifty reports jittering ±8 m across the berth's north edge (y = 50).
    times = span(0, 490, 10)
    for i, t in enumerate(times):
        run.feed(report(SHIP, t, 100, 50 + (8 if i % 2 else -8)))
    # Some pairs are in, in: one entry and never an exit.
    run.feed(report(SHIP, 500, 100, 42))
    run.feed(report(SHIP, 510, 100, 44))
    berth = [e for e in run.events if e.alert["zone"] == "berth_1"]
    assert [(e.alert["rule"], e.transition) for e in berth] == [("zone_entry", "new")]


def test_zone_events_property_overrides_kind() -> None:
    from geofence.zones import ZoneSet
    from tests.rulekit import PORT_FEATURES, collection, rect

    zones = ZoneSet.from_geojson(collection(
        *PORT_FEATURES, rect("quiet", "anchorage", 4000, 4000, 4500, 4500, events=False)))
    run = Run(zones)
    run.track(SHIP, [0, 10], 4200, 4200)
    assert run.of("zone_entry") == []


def test_restricted_entry_opens_once_and_ends_on_exit() -> None:
    run = Run()
    run.play(at(SHIP, span(0, 300, 10), -1750, -1750, speed=3.0),
             at(SHIP, [310, 320], -1750, -1000, speed=3.0))
    opened = run.of("restricted_entry", "new")
    ended = run.of("restricted_entry", "end")
    assert len(opened) == 1 and len(ended) == 1
    alert = ended[0].alert
    assert alert["zone"] == "restricted_1" and alert["state"] == "ended"
    assert alert["risk_area"] == "criminal_activity" and alert["severity"] == "warning"
    assert alert["details"]["dwell_s"] == 310.0
    assert alert["id"] == opened[0].alert["id"]
    assert run.of("restricted_entry", "update") == []


def test_an_entry_says_when_and_where_the_vessel_was_first_seen_inside() -> None:
    """Confirmed by its second report inside, a class B at 3 min (or a moored class A) was
    announced 3 min after it entered, quoting only the confirming report."""
    from harbourwatch.timeutil import iso_time
    from tests.rulekit import T0, lonlat

    run = Run()
    run.play(at(SHIP, [0], -2200, -1750, speed=3.0),
             at(SHIP, [180, 360], -1750, -1750, speed=0.5))
    (opened,) = run.of("restricted_entry", "new")
    lon, lat = lonlat(-1750, -1750)
    first = {"time": iso_time(T0 + 180), "lat": lat, "lon": lon}
    assert opened.alert["details"]["first_inside"] == first
    assert opened.alert["started_at"] == iso_time(T0 + 360)  # confirmed then
    (entry,) = [e for e in run.of("zone_entry", "new") if e.alert["zone"] == "restricted_1"]
    assert entry.alert["details"]["first_inside"] == first


def test_allowed_vessel_in_restricted_zone_no_alert() -> None:
    run = Run()
    run.track(244000999, span(0, 300, 10), -1750, -1750)
    assert run.of("restricted_entry") == []
    assert [e.alert["zone"] for e in run.of("zone_entry")] == ["port", "restricted_1"]


def test_globally_allowed_vessel_no_alert() -> None:
    run = Run(restricted_entry={"allowed_mmsi": [SHIP]})
    run.track(SHIP, span(0, 60, 10), 1050, 1050)
    assert run.of("restricted_entry") == []


def test_security_zone_is_critical() -> None:
    run = Run()
    run.track(SHIP, [0, 10], 1050, 1050)
    (event,) = run.of("restricted_entry")
    assert event.alert["severity"] == "critical" and event.alert["zone"] == "security_1"


def test_disabled_rule_does_not_run() -> None:
    run = Run(restricted_entry={"enabled": False})
    run.track(SHIP, [0, 10], 1050, 1050)
    assert run.of("restricted_entry") == []
