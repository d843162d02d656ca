"""Track integrity: position_jump, mmsi_conflict, invalid_mmsi, identity_change, the MID table,
and a spoofed fix that must not reach the picture or the rules after it."""

from __future__ import annotations

from typing import Any

import pytest
from pyproj import Geod

from geofence.mid import classify, is_placeholder, is_ship_mmsi, mmsi_text
from ingest.report import Report
from tests.rulekit import T0, Run, lonlat, report, span, zones_moved_east

SHIP = 244123456
FAR = 244000001  # keeps rx1 heard


def static(mmsi: int, t: float, msg_type: int = 5, **fields: Any) -> Report:
    return report(mmsi, t, None, None, msg_type=msg_type, speed=None, course=None,
                  status=None, **fields)


# -- position_jump ------------------------------------------------------------------------

def test_999_m_in_one_second_is_no_jump() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 5000, 5000), report(SHIP, 1, 5999, 5000))
    assert run.of("position_jump") == []
    assert run.engine.counters["suspect"] == 0


def test_1000_m_at_51_kn_is_a_jump_at_49_kn_is_not() -> None:
    run = Run()  # 1000 m take 38.9 s at 50 kn
    run.feed(report(SHIP, 0, 5000, 5000), report(SHIP, 39, 6000, 5000))
    assert run.of("position_jump") == []
    run.feed(report(SHIP, 77, 7000, 5000))
    (event,) = run.of("position_jump")
    alert = event.alert
    assert alert["risk_area"] == "information_security" and alert["state"] == "open"
    # Measured on the ellipsoid: the projection's 1000 m are 1000.3 m there.
    assert alert["details"]["distance_m"] == pytest.approx(1000.0, abs=0.5)
    assert alert["details"]["dt_s"] == 38.0
    assert 51.1 <= alert["details"]["implied_speed_kn"] <= 51.2
    vessel = run.engine.picture.vessels[SHIP]
    assert vessel.fix_time == T0 + 39  # the jumped fix did not move it


def test_far_from_the_projection_a_jump_is_measured_on_the_ellipsoid() -> None:
    """57° east of the port's UTM zone the projection makes 1,096 m look like 1,956 m: at
    60 s apart that is 63 kn projected, 35.5 kn true. A satellite or national feed gives
    such vessels; they made most of exactEarth's sample's false jumps."""
    run = Run()
    far = [Report(mmsi=SHIP, msg_type=1, time=T0 + t, time_source="tagblock",
                  sources=["rx1"], nmea=[], lat=10.0, lon=lon, speed=12.0, course=90.0,
                  status=0) for t, lon in ((0, 60.0), (60, 60.01))]
    run.feed(*far)
    assert run.of("position_jump") == []
    assert run.engine.picture.vessels[SHIP].fix_time == T0 + 60
    run.feed(Report(mmsi=SHIP, msg_type=1, time=T0 + 90, time_source="tagblock",
                    sources=["rx1"], nmea=[], lat=10.0, lon=60.03, speed=12.0, course=90.0,
                    status=0))  # 2,193 m in 30 s: 142 kn, a jump on any measure
    (event,) = run.of("position_jump")
    assert event.alert["details"]["distance_m"] == pytest.approx(2192.8, abs=1)


def _north_of(lat: float, metres: float) -> float:
    """The latitude ``metres`` north of (3°E, lat) on the WGS 84 ellipsoid."""
    return float(Geod(ellps="WGS84").fwd(3.0, lat, 0.0, metres)[1])


def _on_the_central_meridian(t: float, lat: float) -> Report:
    return Report(mmsi=SHIP, msg_type=1, time=T0 + t, time_source="tagblock",
                  sources=["rx1"], nmea=[], lat=lat, lon=3.0, speed=12.0, course=0.0,
                  status=0)


@pytest.mark.parametrize(("metres", "dt_s", "jump"), [
    (1000.2, 10.0, True),  # 999.8 projected metres: under the 1,000 m
    (999.8, 10.0, False),
    (2000.0, 2000.0 / 50.01 * 3600.0 / 1852.0, True),  # 49.99 kn projected: under 50
    (2000.0, 2000.0 / 49.99 * 3600.0 / 1852.0, False),
])
def test_on_the_central_meridian_a_jump_just_over_the_limits_is_one(
        metres: float, dt_s: float, jump: bool) -> None:
    """In UTM 31 at 3°E a projected metre is 0.9996 true ones: the projected pre-filter
    dropped a true 1,000.2 m (or 50.01 kn) before the ellipsoid's test saw it."""
    run = Run()
    run.feed(_on_the_central_meridian(0, 52.0),
             _on_the_central_meridian(dt_s, _north_of(52.0, metres)))
    if not jump:
        assert run.of("position_jump") == []
        return
    (event,) = run.of("position_jump")
    details = event.alert["details"]
    assert (details["distance_m"], details["dt_s"]) == (metres, round(dt_s, 3))
    assert run.engine.picture.vessels[SHIP].fix_time == T0  # the jumped fix is rejected


def test_not_available_speed_plays_no_part() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 5000, 5000, speed=None),
             report(SHIP, 10, 5100, 5000, speed=None),  # 19 kn implied: fine
             report(SHIP, 20, 9000, 5000, speed=None))  # 758 kn implied
    assert [e.alert["rule"] for e in run.of("position_jump")] == ["position_jump"]


def test_sar_aircraft_is_not_judged() -> None:
    run = Run()
    aircraft = 111244001
    run.feed(*(report(aircraft, t, 5000 + 60 * t, 5000, speed=120.0, msg_type=9)
               for t in span(0, 60, 10)))
    assert run.of("position_jump") == [] and run.of("mmsi_conflict") == []
    assert run.engine.picture.vessels[aircraft].fix_time == T0 + 60


def test_a_sar_report_with_a_vessels_mmsi_is_judged_like_its_fixes() -> None:
    """Message 9 with the MMSI of a vessel heard on type 1, 14 km from it, after each of
    its reports: unjudged, it moved the picture there every time and two of every three of
    the vessel's own fixes were rejected as jumps from it. Judged, it is the jump: rejected,
    and the alternation is an MMSI conflict that keeps the vessel's own track."""
    run = Run()
    run.feed(*(report(SHIP, t, 5000, 5000, speed=0.5) for t in (0, 10, 20)))
    for t in span(21, 201, 20):
        run.feed(report(SHIP, t, 15000, 15000, speed=100.0, msg_type=9),
                 report(SHIP, t + 9, 5000, 5000, speed=0.5))
        vessel = run.engine.picture.vessels[SHIP]
        assert (vessel.fix_time, vessel.lon, vessel.lat) == (T0 + t + 9, *lonlat(5000, 5000))
    assert len(run.of("mmsi_conflict", "new")) == 1
    assert run.engine.counters["suspect"] == 10  # the ten message 9s


def test_a_vessel_under_way_cannot_leave_coverage_by_one_sar_report_and_escape_dark() -> None:
    run = Run()
    run.feed(*(report(SHIP, t, 5000 + 3 * t, 5000, speed=6.0) for t in span(0, 90, 10)))
    run.feed(report(SHIP, 95, 50000, 50000, speed=6.0, msg_type=9))  # outside coverage
    run.feed(*(report(FAR, t, -5000, 5000) for t in span(100, 900, 10)))
    (dark,) = run.of("dark_vessel", "new")
    assert (dark.alert["mmsi"], dark.alert["lat"], dark.alert["lon"]) == (
        SHIP, *lonlat(5270, 5000)[::-1])


def test_three_agreeing_fixes_relocate_and_end_the_alert() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 5000, 5000))
    run.feed(*(report(SHIP, t, 12000, 5000) for t in (10, 20)))
    assert run.engine.picture.vessels[SHIP].fix_time == T0
    run.feed(report(SHIP, 30, 12000, 5000))
    assert [e.transition for e in run.of("position_jump")] == ["new", "end"]
    end = run.of("position_jump", "end")[0].alert
    assert end["details"] == {**end["details"], "end_reason": "relocated", "rejected_fixes": 2}
    assert run.engine.picture.vessels[SHIP].fix_time == T0 + 30


def test_alert_ends_after_clear_s_without_another_jump() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 5000, 5000), report(SHIP, 10, 15000, 5000))
    run.feed(*(report(SHIP, t, 5000, 5000) for t in span(20, 300, 10)))
    assert [e.transition for e in run.of("position_jump")] == ["new"]
    run.feed(report(SHIP, 310, 5000, 5000))
    end = run.of("position_jump", "end")[0].alert
    assert end["details"]["end_reason"] == "clear"
    assert end["ended_at"] == "2026-01-01T12:00:10Z"
    assert "position_jump" not in run.engine.picture.vessels[SHIP].rule_state


# -- a spoofed fix ------------------------------------------------------------------------

def spoofed(**sections: Any) -> Run:
    """The real ship steams east at 10 kn far out; a spoofer puts its MMSI twice at 20 kn in
    the 6 kn channel and twice slow next to the berth. Short holds make one or two fixes
    enough to fire, so the control run (validators off) shows what a spoof would do."""
    run = Run(speeding={"hold_s": 0}, loitering={"loiter_s": 5}, **sections)
    real = [report(SHIP, t, 9000 + 5.14 * t, 9000, speed=10.0, course=90.0)
            for t in span(0, 300, 10)]
    spoof = [report(SHIP, t, 0, -2500, speed=20.0, course=90.0) for t in (101, 103)]
    spoof += [report(SHIP, t, 100, 300, speed=0.5) for t in (201, 206)]
    run.play(real, spoof)
    return run


def test_spoofed_fixes_trigger_nothing_and_do_not_move_the_vessel() -> None:
    control = spoofed(position_jump={"enabled": False}, mmsi_conflict={"enabled": False})
    assert control.of("speeding") and control.of("loitering")
    run = spoofed()
    assert run.of("speeding") == [] and run.of("loitering") == []
    assert run.of("zone_entry") == []
    vessel = run.engine.picture.vessels[SHIP]
    assert vessel.fix_time == T0 + 300 and vessel.speed == 10.0
    assert list(vessel.zones) == ["coverage"]
    assert all(fix.x > 9000 for fix in vessel.history)
    assert run.engine.counters["suspect"] == 4
    assert [e.transition for e in run.of("position_jump")] == ["new", "end"]
    assert run.of("position_jump", "end")[0].alert["details"]["end_reason"] == "mmsi_conflict"
    assert [e.transition for e in run.of("mmsi_conflict")] == ["new"]


def silent_after_spoof(**sections: Any) -> Run:
    run = Run(**sections)
    run.feed(report(SHIP, 0, 19500, 0, speed=10.0, course=90.0))  # 500 m from the edge
    run.feed(report(SHIP, 10, 0, 0, speed=10.0))  # spoofed, 19.5 km inside
    run.beacon(span(0, 3000, 60))
    run.tick(3000)
    return run


def test_spoofed_fix_deep_in_coverage_does_not_make_a_vessel_dark() -> None:
    control = silent_after_spoof(position_jump={"enabled": False})
    assert len(control.of("dark_vessel")) == 1
    run = silent_after_spoof()
    assert run.of("dark_vessel") == []
    assert run.engine.picture.vessels[SHIP].x is not None
    assert run.engine.picture.vessels[SHIP].fix_time == T0


# -- mmsi_conflict ------------------------------------------------------------------------

A, B = (-9000.0, 5000.0), (9000.0, 5000.0)  # 18 km apart


def test_two_jumps_no_conflict_three_within_600_s_conflict() -> None:
    run = Run()
    run.feed(report(SHIP, 0, *A), report(SHIP, 100, *B), report(SHIP, 200, *A))
    assert run.of("mmsi_conflict") == []
    run.feed(report(SHIP, 300, *B))
    (event,) = run.of("mmsi_conflict")
    alert = event.alert
    assert alert["started_at"] == "2026-01-01T12:01:40Z"  # the first of the three jumps
    assert alert["details"]["jumps"] == 3 and alert["details"]["apart_m"] == 18000.0
    assert alert["risk_area"] == "information_security"
    assert run.engine.picture.vessels[SHIP].fix_time == T0 + 200  # stays on track a


def test_three_jumps_spread_over_more_than_600_s_no_conflict() -> None:
    run = Run()
    run.feed(report(SHIP, 0, *A), report(SHIP, 100, *B), report(SHIP, 400, *A),
             report(SHIP, 750, *B))
    assert run.of("mmsi_conflict") == []


def test_conflict_rejects_the_other_place_and_ends_after_quiet_window() -> None:
    run = Run()
    run.feed(*(report(SHIP, t, *(A if i % 2 == 0 else B)) for i, t in
               enumerate(span(0, 300, 100))))
    assert len(run.of("mmsi_conflict", "new")) == 1
    # Three fixes in a row at B would relocate a plain jump; during a conflict they stay out.
    run.feed(*(report(SHIP, t, *B) for t in (310, 320, 330)))
    assert run.engine.picture.vessels[SHIP].fix_time == T0 + 200
    run.feed(*(report(SHIP, t, *A) for t in span(340, 930, 30)))
    assert run.of("mmsi_conflict", "end") == []
    run.feed(report(SHIP, 960, *A))
    end = run.of("mmsi_conflict", "end")[0].alert
    assert end["details"]["end_reason"] == "no_jumps"
    assert run.engine.picture.vessels[SHIP].fix_time == T0 + 960


def test_a_conflict_keeps_the_picture_on_track_a_after_a_relocation_to_b() -> None:
    """Five fixes at B between two of the vessel's own at A (three agreeing relocate it
    there), then A, then B: the third switch opens the conflict while the picture is at B.
    The conflict kept it there, every fix at A rejected (a spoofer hid the vessel); the
    picture follows track a, where the vessel was before the first jump."""
    run = Run()
    run.feed(*(report(SHIP, t, *A) for t in (0, 10, 20)))
    run.feed(*(report(SHIP, t, *B) for t in (21, 22, 23, 24, 25)))
    assert run.engine.picture.vessels[SHIP].fix_time == T0 + 25  # relocated to B
    run.feed(report(SHIP, 30, *A), report(SHIP, 31, *B))
    assert len(run.of("mmsi_conflict", "new")) == 1
    assert run.engine.picture.vessels[SHIP].fix_time == T0 + 25
    run.feed(report(SHIP, 40, *A), report(SHIP, 41, *B), report(SHIP, 50, *A))
    vessel = run.engine.picture.vessels[SHIP]
    assert (vessel.fix_time, vessel.lat, vessel.lon) == (T0 + 50, *lonlat(*A)[::-1])


def test_a_zone_change_to_another_projection_moves_the_rules_saved_places_with_it() -> None:
    """Track heads and a jump's other place are kept in projected metres. After zones in
    another UTM zone they were compared with the new projection's fixes: UTM 32's metres are
    some 411 km west of UTM 31's here, so a fix 100 m from track a measured nearer the old
    head of track b, 5 km west of a: a switch to b, the third jump, a false conflict."""
    run = Run()
    run.feed(report(SHIP, 0, 0, 0), report(SHIP, 90, 0, 0),
             report(SHIP, 100, -5000, 0),  # a jump to b (rejected: position_jump opens)
             report(SHIP, 110, -5000, 0),  # b again
             report(SHIP, 120, 0, 0))  # back to a: two jumps
    assert [e.transition for e in run.of("position_jump")] == ["new"]
    assert run.of("mmsi_conflict") == []
    vessel = run.engine.picture.vessels[SHIP]
    assert vessel.rule_state["mmsi_conflict"]["jumps"] == [T0 + 100, T0 + 120]
    assert run.engine.zones.crs == "EPSG:32631"
    run.engine.set_zones(zones_moved_east(5.0))
    assert run.engine.zones.crs == "EPSG:32632"
    a, b = (vessel.rule_state["mmsi_conflict"][head] for head in "ab")
    assert [round(v, 6) for v in a[1:3]] == [round(v, 6) for v in run.engine.zones.project(
        a[4], a[3])]
    assert [round(v, 6) for v in b[1:3]] == [round(v, 6) for v in run.engine.zones.project(
        b[4], b[3])]
    run.feed(report(SHIP, 400, -100, 0))  # reachable from both heads; 100 m from a
    assert [(e.transition, e.alert["details"].get("apart_m")) for e in run.of(
        "mmsi_conflict")] == []
    assert [e.transition for e in run.of("position_jump")] == ["new"]
    assert vessel.rule_state["mmsi_conflict"]["jumps"] == [T0 + 100, T0 + 120]
    assert vessel.fix_time == T0 + 400


def test_a_zone_change_to_another_projection_moves_a_pending_jump_with_it() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 0, 0), report(SHIP, 10, -5000, 0))  # rejected: the other place
    alt = run.engine.picture.vessels[SHIP].rule_state["position_jump"]["alt"]
    run.engine.set_zones(zones_moved_east(5.0))
    assert [round(v, 6) for v in alt[1:3]] == [round(v, 6) for v in run.engine.zones.project(
        alt[5], alt[4])]


def alternating(mmsi: int) -> Run:
    """Two devices 20 km apart sending one MMSI in turn, every 10 s for 5 minutes."""
    run = Run()
    run.feed(*(report(mmsi, t, -10000.0 if i % 2 == 0 else 10000.0, 5000.0, speed=0.1)
               for i, t in enumerate(span(0, 300, 10))))
    return run


@pytest.mark.parametrize("mmsi", [111111111, 123456789, 0, 999999999, 777777777])
def test_devices_sharing_a_placeholder_mmsi_are_invalid_mmsi_only(mmsi: int) -> None:
    """Unset and made-up numbers are shared by unrelated transponders: their fixes far apart
    are no spoofing evidence. invalid_mmsi names the number; the other device's fixes are
    still kept out of the picture."""
    run = alternating(mmsi)
    assert [(e.alert["rule"], e.alert["details"].get("reason"),
             e.alert["details"].get("placeholder")) for e in run.events] == [
        ("invalid_mmsi", "unallocated_mid", True)]  # it says why no jump is raised
    assert run.engine.counters["suspect"] == 15  # every fix at +10 km
    vessel = run.engine.picture.vessels[mmsi]
    assert vessel.fix_time == T0 + 300 and len({(f.lat, f.lon) for f in vessel.history}) == 1
    assert "mmsi_conflict" not in vessel.rule_state


def test_a_placeholder_alert_is_placed_where_the_device_that_fired_it_is() -> None:
    """The picture keeps the first device's place; the alert is about the device whose
    report made it fire. In the Danish feed (aislib's stream) 111111111 was heard off Rügen,
    then at Ålesund, 1,000 km away: a port drawn at Ålesund got an alert placed off Rügen,
    its evidence at Ålesund."""
    run = alternating(111111111)
    (event,) = run.of("invalid_mmsi")
    alert = event.alert
    (evidence,) = alert["details"]["reports"]
    vessel = run.engine.picture.vessels[111111111]
    assert (alert["lat"], alert["lon"]) == (evidence["lat"], evidence["lon"])
    assert alert["lon"] - vessel.lon > 0.2  # 20 km east of the place the picture keeps


@pytest.mark.parametrize(("mmsi", "invalid"), [
    (SHIP, []), (555555555, []),  # nine identical digits, but Pitcairn's MID: a ship number
    (8900660, ["invalid_mmsi"])])  # an IMO number entered as the MMSI: one ship's, not shared
def test_the_same_alternation_on_any_other_mmsi_is_a_jump_then_a_conflict(
        mmsi: int, invalid: list[str]) -> None:
    run = alternating(mmsi)
    assert [(e.alert["rule"], e.transition, e.alert["started_at"]) for e in run.events
            if e.alert["rule"] != "invalid_mmsi"] == [
        ("position_jump", "new", "2026-01-01T12:00:10Z"),
        ("mmsi_conflict", "new", "2026-01-01T12:00:10Z"),  # at the third jump, dated the first
        ("position_jump", "end", "2026-01-01T12:00:10Z")]
    assert [e.alert["rule"] for e in run.of("invalid_mmsi")] == invalid
    assert all("placeholder" not in e.alert["details"] for e in run.of("invalid_mmsi"))
    assert run.of("position_jump")[0].alert["details"]["distance_m"] == pytest.approx(
        20000.0, abs=10.0)


def test_placeholders_are_nine_identical_digits_or_123456789_that_no_station_may_carry(
        ) -> None:
    assert [m for m in range(0, 1_000_000_000, 111_111_111) if is_placeholder(m)] == [
        0, 111111111, 222222222, 333333333, 444444444, 777777777, 888888888, 999999999]
    assert is_placeholder(123456789)
    assert not any(is_placeholder(m) for m in (
        555555555, 666666666, 987654321, 244123456, 8900660, 200123456, 24412345,
        1_111_111_110, 111244001))


# -- invalid_mmsi and the MID table --------------------------------------------------------

def test_classify_kinds() -> None:
    assert classify(244123456).kind == "ship" and classify(244123456).country == "Netherlands"
    assert classify(2442000).kind == "coast" and mmsi_text(2442000) == "002442000"
    assert classify(992446000).kind == "aton"
    assert classify(982440001).kind == "auxiliary"
    assert classify(824412345).kind == "handheld"
    assert classify(111244001).kind == "sar_aircraft"
    assert [classify(m).kind for m in (970123456, 972123456, 974123456)] == [
        "sart", "mob", "epirb"]
    assert classify(24412345).reason == "group_mmsi"
    assert classify(1_234_567_890).reason == "not_9_digits"
    assert classify(123456789).reason == "unallocated_mid"
    assert classify(200123456).reason == "unallocated_mid"
    assert classify(776000000).reason == "unallocated_mid"
    assert classify(111111111).reason == "unallocated_mid"  # a SAR aircraft needs a real MID
    assert classify(0).reason == "unallocated_mid"
    assert is_ship_mmsi(201000000) and is_ship_mmsi(775999999)
    assert not is_ship_mmsi(217000000)  # a gap in the table


def test_unallocated_mid_one_alert_for_many_reports() -> None:
    run = Run()
    run.track(123456789, span(0, 600, 10), 5000, 5000)
    (event,) = run.of("invalid_mmsi")
    alert = event.alert
    assert alert["risk_area"] == "information_security" and alert["state"] == "ended"
    assert alert["details"]["reason"] == "unallocated_mid"
    assert alert["details"]["mmsi_text"] == "123456789" and alert["details"]["mid"] == 123


def test_ten_digits_and_group_numbers_are_flagged() -> None:
    run = Run()
    run.track(1_234_567_890, [0, 10], 5000, 5000)
    run.track(24412345, [0, 10], 6000, 5000)
    reasons = {e.alert["mmsi"]: e.alert["details"]["reason"] for e in run.of("invalid_mmsi")}
    assert reasons == {1_234_567_890: "not_9_digits", 24412345: "group_mmsi"}
    assert all("placeholder" not in e.alert["details"] for e in run.of("invalid_mmsi"))
    assert run.of("invalid_mmsi")[1].alert["details"]["mmsi_text"] == "024412345"


def test_an_mmsi_heard_once_is_not_judged() -> None:
    """A garbled message that passes its checksum carries a random MMSI (exactEarth's
    sample: a type 5 from 1036343774 named "KUS>!JW2KG\\?CC"): judged from the second."""
    run = Run()
    run.feed(report(1_036_343_774, 0, 5000, 5000, msg_type=5))
    assert run.of("invalid_mmsi") == []
    run.feed(report(1_036_343_774, 30, 5000, 5000))
    (event,) = run.of("invalid_mmsi")
    assert event.time == T0 + 30 and event.alert["details"]["reason"] == "not_9_digits"


def test_ships_devices_stations_aton_and_sar_aircraft_are_not_flagged() -> None:
    run = Run()
    for mmsi in (244123456, 970123456, 972123456, 974123456, 982440001, 824412345):
        run.track(mmsi, [0, 10], 5000, 5000)
    # Stations and AtoN send station messages (here binary broadcasts, type 8).
    for mmsi in (2442000, 992446000):
        run.feed(report(mmsi, 0, 5000, 5000, msg_type=8), report(mmsi, 60, 5000, 5000,
                                                                 msg_type=8))
    run.feed(report(111244001, 0, 5000, 5000, msg_type=9, speed=120.0))
    assert run.of("invalid_mmsi") == []
    assert len(run.of("emergency_device", "new")) == 3
    assert run.engine.picture.vessels[2442000].rule_state["invalid_mmsi"] == {"kind": "coast"}


def test_a_station_number_on_ship_position_reports_is_flagged() -> None:
    """A 7-digit MMSI on a type 1 (read 00MIDxxxx) is a misconfigured or false transponder."""
    run = Run()
    run.track(6459543, [0, 10, 20], 5000, 5000)
    run.track(992446000, [0, 10], 4000, 5000, msg_type=18)
    reasons = {e.alert["mmsi"]: e.alert["details"]["reason"] for e in run.of("invalid_mmsi")}
    assert reasons == {6459543: "coast_mmsi_on_ship_report",
                       992446000: "aton_mmsi_on_ship_report"}


def station(mmsi: int, t: float, msg_type: int = 4, **fields: Any) -> Report:
    """A base-station (4), AtoN (21) or station management (20) message at the port."""
    where = (5000.0, 5000.0) if msg_type in (4, 21) else (None, None)
    return report(mmsi, t, *where, speed=None, course=None, status=None, msg_type=msg_type,
                  **fields)


def test_a_base_station_or_aton_with_a_number_no_station_may_carry_is_flagged() -> None:
    """Station messages never reached the rule (they are no vessels): a forged base station
    or virtual AtoN could carry any number. Judged like any other, from the second message."""
    run = Run()
    for mmsi, msg_type in ((7771234, 4), (997771234, 21), (1_012_345_678, 4),
                           (24412345, 20)):
        name = "WRECK MARK" if msg_type == 21 else None
        assert run.feed(station(mmsi, 0, msg_type, shipname=name)) == []
        run.feed(station(mmsi, 10, msg_type, shipname=name))
    found = {e.alert["mmsi"]: (e.alert["details"]["reason"], e.alert["details"]["mid"],
                               e.alert["details"]["station"], e.alert["shipname"],
                               e.alert["lat"] is not None, e.time - T0)
             for e in run.of("invalid_mmsi")}
    assert found == {
        7771234: ("unallocated_mid", 777, "base_station", None, True, 10),
        997771234: ("unallocated_mid", 777, "aton", "WRECK MARK", True, 10),
        1_012_345_678: ("not_9_digits", None, "base_station", None, True, 10),
        24412345: ("group_mmsi", 244, "station", None, False, 10),
    }
    assert run.of("invalid_mmsi")[0].alert["details"]["mmsi_text"] == "007771234"
    # Still no vessels: no picture entry, no vessel rule.
    assert not set(found) & set(run.engine.picture.vessels)


def test_real_stations_numbered_outside_their_format_are_not_flagged() -> None:
    """ITU-R M.585 numbers base stations 00MIDxxxx and AtoN 99MIDxxxx, but real ones often
    are not: the demo log's Papua New Guinea base stations 553111486-489 (type 4), the
    Fremantle AtoN 503001110-115, the Danish feed's 257049000 (type 4) and its AtoN on
    coast numbers 002442011 and 002501910 (Kish lighthouse). A valid number of another kind
    is not flagged on station messages."""
    run = Run()
    for mmsi, msg_type in ((553111486, 4), (553111486, 20), (503001110, 21),
                           (257049000, 4), (2442011, 21), (2501910, 21), (992351000, 20)):
        run.feed(station(mmsi, 0, msg_type), station(mmsi, 10, msg_type))
    assert run.of("invalid_mmsi") == []


def test_a_number_flagged_on_station_messages_is_not_flagged_again_on_others() -> None:
    """777000127 of the demo log sends type 21 and type 6: one alert, whichever came first."""
    run = Run()
    run.feed(station(777000127, 0, 21), station(777000127, 10, 21))
    run.feed(report(777000129, 0, msg_type=6), report(777000129, 10, msg_type=6))
    run.feed(report(777000127, 20, msg_type=6), report(777000127, 30, msg_type=6))
    run.feed(station(777000129, 20, 21), station(777000129, 30, 21))
    assert sorted((e.alert["mmsi"], e.time - T0) for e in run.of("invalid_mmsi")) == [
        (777000127, 10), (777000129, 10)]


def test_a_station_outside_the_watch_area_is_not_judged() -> None:
    run = Run(watch_area="port")
    run.feed(station(7771234, 0), station(7771234, 10))  # inside the port limit
    far = [report(7771235, t, 50_000, 50_000, speed=None, course=None, status=None,
                  msg_type=4) for t in (0, 10)]
    run.feed(*far)
    assert [e.alert["mmsi"] for e in run.of("invalid_mmsi")] == [7771234]


def test_flagged_station_numbers_survive_a_restart_of_the_rule() -> None:
    run = Run()
    run.feed(station(7771234, 0), station(7771234, 10))
    rule = next(r for r in run.engine.rules if r.name == "invalid_mmsi")
    again = Run()
    fresh = next(r for r in again.engine.rules if r.name == "invalid_mmsi")
    fresh.load_state(again.engine.ctx, rule.saved_state())
    again.feed(station(7771234, 20), station(7771234, 30))
    assert again.of("invalid_mmsi") == []


# -- identity_change ----------------------------------------------------------------------

def part_a(t: float, name: str) -> Report:
    return static(SHIP, t, msg_type=24, partno=0, shipname=name)


def part_b(t: float, callsign: str = "PD1234", shiptype: int = 37) -> Report:
    return static(SHIP, t, msg_type=24, partno=1, callsign=callsign, shiptype=shiptype,
                  to_bow=8, to_stern=4)


def test_class_b_first_24a_and_24b_are_no_change() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 5000, 5000, msg_type=18, status=None))
    run.feed(part_a(10, "SEA DOG"))
    run.feed(part_b(20))
    for t in span(360, 3600, 360):
        run.feed(part_a(t, "SEA DOG"), part_b(t + 1))
    assert run.of("identity_change") == []


def test_class_b_real_name_change_is_one_alert_not_one_per_report() -> None:
    run = Run()
    run.feed(report(SHIP, 0, 5000, 5000, msg_type=18, status=None))
    run.feed(part_a(10, "SEA DOG"), part_b(20))
    for t in span(360, 3600, 360):
        run.feed(part_a(t, "SEA DOG" if t < 1800 else "NIGHT RUNNER"), part_b(t + 1))
    (event,) = run.of("identity_change")
    alert = event.alert
    assert alert["risk_area"] == "criminal_activity"
    assert alert["details"]["changes"] == {"shipname": {"old": "SEA DOG",
                                                        "new": "NIGHT RUNNER"}}
    assert alert["started_at"] == "2026-01-01T12:30:00Z" and alert["shipname"] == "NIGHT RUNNER"
    assert alert["details"]["ais_class"] == "B"


def test_class_a_name_and_callsign_change_in_one_message_is_one_alert() -> None:
    run = Run()
    run.feed(static(SHIP, 0, shipname="NORDIC STAR", callsign="PDAB", imo=9123456,
                    shiptype=70))
    run.feed(static(SHIP, 360, shipname="NORDIC STAR@@@@", callsign="PDAB", imo=0,
                    shiptype=0))  # padding and "not available" are no change
    assert run.of("identity_change") == []
    run.feed(static(SHIP, 720, shipname="BALTIC STAR", callsign="9HXY", imo=9123456,
                    shiptype=70))
    (event,) = run.of("identity_change")
    assert event.alert["details"]["changes"] == {
        "shipname": {"old": "NORDIC STAR", "new": "BALTIC STAR"},
        "callsign": {"old": "PDAB", "new": "9HXY"}}


def test_ship_type_and_imo_changes_and_watched_fields() -> None:
    run = Run()
    run.feed(static(SHIP, 0, shipname="X", imo=9123456, shiptype=70))
    run.feed(static(SHIP, 360, shipname="X", imo=9654321, shiptype=80))
    (event,) = run.of("identity_change")
    assert set(event.alert["details"]["changes"]) == {"imo", "shiptype"}
    quiet = Run(identity_change={"fields": ["shipname"]})
    quiet.feed(static(SHIP, 0, shipname="X", callsign="AAAA"),
               static(SHIP, 360, shipname="X", callsign="BBBB"))
    assert quiet.of("identity_change") == []


def test_flapping_between_two_names_alerts_once() -> None:
    run = Run()
    for i, t in enumerate(span(0, 3000, 300)):
        run.feed(static(SHIP, t, shipname="ALPHA" if i % 2 == 0 else "BRAVO"))
    assert len(run.of("identity_change")) == 1
    assert run.engine.picture.vessels[SHIP].rule_state["identity_change"]["flaps"] == 9


def test_replay_gives_the_same_alert_ids() -> None:
    def once() -> list[str]:
        run = Run()
        run.feed(report(SHIP, 0, *A), report(SHIP, 100, *B), report(SHIP, 200, *A),
                 report(SHIP, 300, *B))
        run.track(123456789, [0, 10], 5000, 5000)
        run.feed(static(SHIP, 0, shipname="X"), static(SHIP, 360, shipname="Y"))
        return [e.alert["id"] for e in run.events]

    first = once()
    assert len(first) >= 4 and first == once()


def test_two_identity_changes_in_one_second_keep_apart_ids() -> None:
    """A class B vessel's 24A (name) and 24B (callsign) in the same second, both changed:
    two events, two ids (the store and consumers de-duplicate by id), the same every run."""
    def changes() -> list[tuple[str, list[str]]]:
        run = Run()
        static = {"msg_type": 24, "speed": None, "course": None, "status": None}
        run.feed(report(SHIP, 0, shipname="ALPHA", **static),
                 report(SHIP, 0, callsign="PA1", shiptype=37, **static),
                 report(SHIP, 600, shipname="BRAVO", **static),
                 report(SHIP, 600, callsign="PB2", shiptype=37, **static))
        return [(e.alert["id"], sorted(e.alert["details"]["changes"]))
                for e in run.of("identity_change")]

    first = changes()
    assert [fields for _, fields in first] == [["shipname"], ["callsign"]]
    assert first[0][0] != first[1][0]
    assert changes() == first


def test_a_station_message_with_a_vessels_mmsi_is_no_fix_of_that_vessel() -> None:
    """A forged base station (4) or AtoN (21) carrying a ship's MMSI: its position is marked
    as a rejected fix (stored, left out of the ship's track) and counted; a type 11, the
    ship's own answer to an inquiry, and an AtoN that also sends binary messages (type 6,
    no class A or B vessel) are not."""
    run = Run()
    run.feed(report(SHIP, 0))
    forged = [station(SHIP, 10, 21, shipname="WRECK"), station(SHIP, 20, 4)]
    answer = station(SHIP, 30, 11)
    answer.lat, answer.lon = forged[0].lat, forged[0].lon
    aton = [report(992446000, 0, msg_type=6), station(992446000, 10, 21)]
    run.feed(*forged, answer, *aton)
    assert [r.extra.get("suspect") for r in (*forged, answer, aton[1])] == [
        "station_message", "station_message", None, None]
    assert run.engine.counters["suspect"] == 2
