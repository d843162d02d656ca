"""emergency_device: SART / MOB / EPIRB MMSIs give one critical alert, not one per report."""

from __future__ import annotations

import pytest

from geofence.rules.emergency import device_kind
from tests.rulekit import T0, Run, report, span, zones_moved_east

SART = 970123456


@pytest.mark.parametrize(("mmsi", "kind"), [
    (970123456, "ais_sart"), (972000001, "mob"), (974999999, "epirb"),
    (971123456, None), (973123456, None), (244123456, None), (97012345, None),
])
def test_device_kind(mmsi: int, kind: str | None) -> None:
    assert device_kind(mmsi) == kind


def test_one_alert_that_follows_and_ends() -> None:
    run = Run()
    for i, t in enumerate(span(0, 600, 60)):
        run.feed(report(SART, t, 500, 500 + 30 * i, status=14, speed=0.5))
    # 30 m a minute: an update every 120 m (≥ 100 m moved), at t=240 and t=480
    assert [(e.transition, e.time - T0) for e in run.of("emergency_device")] == [
        ("new", 0), ("update", 240), ("update", 480)]
    new = run.of("emergency_device", "new")[0].alert
    assert new["severity"] == "critical" and new["details"]["device"] == "ais_sart"
    assert new["details"]["status"] == 14
    run.tick(600 + 900)
    assert run.of("emergency_device", "end") == []
    run.tick(600 + 901)
    (end,) = run.of("emergency_device", "end")
    assert end.alert["ended_at"] == "2026-01-01T12:25:00Z"
    assert end.time == T0 + 1501


def test_a_zone_change_to_another_projection_moves_the_last_update_place_with_it() -> None:
    """Where the alert was last updated is kept in metres: after zones in UTM 32 in place of
    UTM 31 the next fix, 30 m on, measured some 411 km from it and made an update."""
    run = Run()
    for i, t in enumerate(span(0, 600, 60)):
        if t == 300:
            run.engine.set_zones(zones_moved_east(5.0))
        run.feed(report(SART, t, 500, 500 + 30 * i, status=14, speed=0.5))
    assert [(e.transition, e.time - T0) for e in run.of("emergency_device")] == [
        ("new", 0), ("update", 240), ("update", 480)]


def test_ordinary_vessel_no_alert() -> None:
    run = Run()
    run.track(244123456, span(0, 300, 60), 500, 500)
    assert run.of("emergency_device") == []


def test_a_garbled_message_with_a_device_number_is_no_alert() -> None:
    """A type 27 heard at the noise floor decoded as EPIRB 974291422 (libais's examples);
    devices send types 1 and 14 only."""
    run = Run()
    run.feed(report(974291422, 0, 500, 500, msg_type=27, speed=16.0))
    run.feed(report(974291422, 60, 500, 500, msg_type=5))
    assert run.of("emergency_device") == []
    run.feed(report(974291422, 120, 500, 500, msg_type=14, speed=None))
    assert [e.alert["details"]["device"] for e in run.of("emergency_device", "new")] == [
        "epirb"]


def test_a_device_in_test_mode_is_information_until_it_reports_active() -> None:
    """Status 15 or "SART TEST" is a survey's test (IEC 61097-14); status 14 is a distress."""
    run = Run()
    run.feed(report(SART, 0, 500, 500, status=15))
    run.feed(report(SART, 30, 500, 500, msg_type=14, status=None, extra={"text": "SART TEST"}))
    (test,) = run.of("emergency_device", "new")
    assert (test.alert["severity"], test.alert["details"]["mode"]) == ("info", "test")
    run.feed(report(SART, 30, 500, 500, status=14))  # the same second as the test text
    (ended,) = run.of("emergency_device", "end")
    assert (ended.alert["id"], ended.alert["details"]["reason"]) == (test.alert["id"], "active")
    (_, active) = run.of("emergency_device", "new")
    assert active.alert["id"] != test.alert["id"]  # its own: it had the test's in a second
    assert (active.alert["severity"], active.alert["details"]["mode"], active.time - T0) == (
        "critical", "active", 30)
    run.feed(report(SART, 90, 500, 500, status=15))  # back to test: the distress stands
    assert len(run.of("emergency_device", "end")) == 1
    assert len(run.of("emergency_device", "new")) == 2


@pytest.mark.parametrize(("status", "text", "severity"), [
    (15, None, "info"), (14, None, "critical"), (None, "MOB TEST", "info"),
    (None, "SART ACTIVE", "critical"), (None, "HELP", "critical"), (0, None, "critical"),
])
def test_what_counts_as_a_test(status: int | None, text: str | None, severity: str) -> None:
    run = Run()
    extra = {} if text is None else {"text": text}
    run.feed(report(972000001, 0, 500, 500, status=status, msg_type=1 if text is None else 14,
                    extra=extra))
    (new,) = run.of("emergency_device", "new")
    assert new.alert["severity"] == severity
    assert new.alert["details"]["text"] == text
