"""loitering: < 2 kn for ≥ 1200 s within 500 m of a berth or security zone."""

from __future__ import annotations

from tests.rulekit import Run, port_zones, rect, report, span

SHIP = 244123456
NEAR_BERTH = (100.0, 300.0)  # 250 m north of berth_1


def test_1190_s_slow_no_alert() -> None:
    run = Run()
    run.track(SHIP, span(0, 1190, 10), *NEAR_BERTH, speed=1.0)
    run.feed(report(SHIP, 1200, *NEAR_BERTH, speed=4.0))
    assert run.of("loitering") == []


def test_1200_s_slow_alert_with_evidence() -> None:
    run = Run()
    run.track(SHIP, span(0, 1200, 10), *NEAR_BERTH, speed=1.0)
    (event,) = run.of("loitering")
    alert = event.alert
    assert alert["zone"] == "berth_1" and alert["risk_area"] == "criminal_activity"
    assert alert["started_at"] == "2026-01-01T12:00:00Z"
    assert alert["details"]["dwell_s"] == 1200.0
    assert 249.0 <= alert["details"]["distance_m"] <= 251.0
    assert [r["time"] for r in alert["details"]["reports"]] == [
        "2026-01-01T12:00:00Z", "2026-01-01T12:20:00Z"]


def test_speed_at_2_kn_is_not_slow() -> None:
    run = Run()
    run.track(SHIP, span(0, 2000, 10), *NEAR_BERTH, speed=2.0)
    assert run.of("loitering") == []


def test_out_of_range_no_alert() -> None:
    run = Run()
    run.track(SHIP, span(0, 2000, 10), 100, 560, speed=0.5)  # 510 m from the berth
    assert run.of("loitering") == []


def test_moored_in_berth_for_hours_no_alert() -> None:
    run = Run()
    run.track(SHIP, span(0, 4 * 3600, 180), 100, 25, speed=0.0, status=5)
    assert run.of("loitering") == []


def test_class_b_in_berth_without_status_no_alert() -> None:
    run = Run()
    run.track(SHIP, span(0, 3 * 3600, 180), 100, 25, speed=0.1, status=None, msg_type=18)
    assert run.of("loitering") == []


def test_hysteresis_2_5_kn_keeps_it_open_3_1_ends() -> None:
    run = Run()
    run.track(SHIP, span(0, 1200, 10), *NEAR_BERTH, speed=1.0)
    run.track(SHIP, span(1210, 1300, 10), *NEAR_BERTH, speed=2.5)
    assert [e.transition for e in run.of("loitering")] == ["new"]
    run.feed(report(SHIP, 1310, *NEAR_BERTH, speed=3.1))
    assert [e.transition for e in run.of("loitering")] == ["new", "end"]
    end = run.of("loitering", "end")[0].alert
    assert end["details"]["end_reason"] == "speed" and end["details"]["dwell_s"] == 1310.0


def test_near_security_zone_and_zone_override() -> None:
    from geofence.zones import ZoneSet
    from tests.rulekit import PORT_FEATURES, collection, rect

    zones = ZoneSet.from_geojson(collection(
        *PORT_FEATURES, rect("gate", "security", 6000, 6000, 6100, 6100, loiter_s=300)))
    run = Run(zones)
    run.track(SHIP, span(0, 290, 10), 6200, 6050, speed=0.5)
    assert run.of("loitering") == []
    run.feed(report(SHIP, 300, 6200, 6050, speed=0.5))
    (event,) = run.of("loitering")
    assert event.alert["zone"] == "gate" and event.alert["severity"] == "warning"


def test_drifting_from_one_watched_zone_to_another_names_the_zone_it_is_near() -> None:
    """Slow all along, from 100 m off security_1 to 100 m off a berth 800 m east: the dwell
    goes on, and the alert names the berth it is near, not the zone it left out of range."""
    run = Run(zones=port_zones(rect("berth_2", "berth", 2000, 1000, 2100, 1100)))
    for t in span(0, 3000, 30):
        x = min(1200 + max(t - 300, 0) * 0.7, 1900)
        run.feed(report(SHIP, t, x, 1050, speed=1.4, course=90.0))
    (event,) = run.of("loitering")
    assert event.alert["zone"] == "berth_2"
    assert event.alert["started_at"] == "2026-01-01T12:00:00Z"
    assert event.alert["details"]["distance_m"] <= 500
