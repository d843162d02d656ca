"""Traffic safety: encounter, collision_risk, anchor_drag, sudden_stop and the neighbour grid.

The test port (tests/rulekit.py) has its port limit at ±3 km; "at sea" below means north of
it, where collision_risk applies with the global limits.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from pyproj import Geod, Proj, Transformer

from geofence.neighbours import Grid, Pairs, pair_key
from geofence.projection import Projector
from geofence.rules.collision_risk import cpa_tcpa
from geofence.zones import ZoneSet
from ingest.report import Report, iso_time
from tests.rulekit import (
    PORT_FEATURES,
    T0,
    Run,
    collection,
    course_along,
    lonlat,
    rect,
    report,
    span,
    zones_moved_east,
)

SHIP, OTHER = 244000010, 244000020
TUG1, TUG2, PILOT = 244000031, 244000032, 244000050
KN = 1852.0 / 3600.0


def typed(mmsi: int, t: float, shiptype: int) -> Report:
    return report(mmsi, t, None, None, msg_type=5, speed=None, course=None, status=None,
                  shipname=f"V{mmsi % 1000}", shiptype=shiptype)


# -- neighbour grid -----------------------------------------------------------------------

def test_grid_moves_removes_and_finds_within_radius() -> None:
    grid: Grid[str] = Grid(200.0)
    grid.put(1, 0.0, 0.0, "a")
    grid.put(2, 150.0, 0.0, "b")
    grid.put(3, 0.0, 450.0, "c")
    assert sorted(k for k, *_ in grid.near(0.0, 0.0, 200.0)) == [1, 2]
    grid.put(3, 0.0, 190.0, "c2")  # moved into reach, across a cell edge
    assert sorted((k, p) for k, _, _, p in grid.near(0.0, 0.0, 200.0)) == [
        (1, "a"), (2, "b"), (3, "c2")]
    grid.remove(2)
    assert sorted(k for k, *_ in grid.near(0.0, 0.0, 1000.0)) == [1, 3] and len(grid) == 2
    assert grid.get(2) is None and 3 in grid
    assert sorted(k for k, *_ in grid.near(-150.0, -150.0, 220.0)) == [1]  # negative cells


def test_pairs_index_by_vessel() -> None:
    pairs = Pairs()
    key = pair_key(9, 3)
    assert key == (3, 9)
    pairs.add(key, {"since": 1.0})
    assert pairs.of(3) == {key} and pairs.has(9)
    assert pairs.remove(key) == {"since": 1.0}
    assert not pairs.has(3) and len(pairs) == 0


def test_cpa_tcpa_head_on_and_parallel() -> None:
    cpa, tcpa = cpa_tcpa(1000.0, 100.0, -10.0, 0.0)
    assert math.isclose(cpa, 100.0) and math.isclose(tcpa or 0, 100.0)
    cpa, tcpa = cpa_tcpa(0.0, 300.0, 0.0, 0.0)
    assert cpa == 300.0 and tcpa is None


# -- encounter ----------------------------------------------------------------------------

def pair(run: Run, times: list[float], gap: float, speed: float = 1.0,
         at: tuple[float, float] = (5000.0, 5000.0), **kw: Any) -> None:
    for t in times:
        run.feed(report(SHIP, t, *at, speed=speed, **kw),
                 report(OTHER, t, at[0] + gap, at[1], speed=speed, **kw))


def test_encounter_200_m_at_900_s_alerts_from_the_start() -> None:
    run = Run()
    pair(run, span(0, 840, 60), 200.0)
    assert run.of("encounter") == []
    pair(run, [900], 200.0)
    (event,) = run.of("encounter")
    alert = event.alert
    assert (alert["mmsi"], alert["other_mmsi"]) == (SHIP, OTHER)
    assert alert["risk_area"] == "criminal_activity" and alert["state"] == "open"
    assert alert["started_at"] == "2026-01-01T12:00:00Z"
    assert alert["details"]["duration_s"] == 900.0
    assert 199.5 <= alert["details"]["distance_m"] <= 200.5
    # Whose reports: the pair's first close report and the one that made it 900 s.
    assert [r["mmsi"] for r in alert["details"]["reports"]] == [OTHER, SHIP]


def test_encounter_201_m_or_2_kn_no_alert() -> None:
    run = Run()
    pair(run, span(0, 3600, 60), 201.0)
    assert run.of("encounter") == []
    run = Run()
    pair(run, span(0, 3600, 60), 100.0, speed=2.0)
    assert run.of("encounter") == []


def test_encounter_in_an_anchorage_no_alert() -> None:
    zones = ZoneSet.from_geojson(collection(*PORT_FEATURES,
                                            rect("anch", "anchorage", 4000, 4000, 6000, 6000)))
    run = Run(zones)
    pair(run, span(0, 3600, 60), 100.0)
    assert run.of("encounter") == []


def test_encounter_hysteresis_and_end() -> None:
    run = Run()
    pair(run, span(0, 900, 60), 150.0)
    pair(run, [960, 1020], 290.0, speed=2.8)  # beyond 200 m and 2 kn, within the margins
    assert [e.transition for e in run.of("encounter")] == ["new"]
    pair(run, [1080], 310.0)
    assert [e.transition for e in run.of("encounter")] == ["new", "end"]
    end = run.of("encounter", "end")[0].alert
    assert end["details"]["end_reason"] == "apart_or_faster"
    assert end["details"]["duration_s"] == 1080.0


def test_encounter_ends_when_a_partner_falls_silent() -> None:
    run = Run()
    pair(run, span(0, 900, 60), 100.0)
    run.track(SHIP, span(960, 1500, 60), 5000, 5000, speed=1.0)
    assert run.of("encounter", "end") == []  # silent 600 s: not yet
    run.feed(report(SHIP, 1560, 5000, 5000, speed=1.0))
    end = run.of("encounter", "end")[0].alert
    assert end["details"]["end_reason"] == "silent"
    assert end["ended_at"] == "2026-01-01T12:15:00Z"


def test_an_encounter_never_ends_before_the_time_it_was_raised_for() -> None:
    """A partner moored and reporting every 3 min falls silent after 720 s: the alert opened
    at the ship's report at 900 s ("900 s together", the partner's fix 180 s old, as such
    a vessel sends) and ended "silent" dated the partner's last fix: 720 s, before it was
    raised, and shorter than it said at first. In the Danish national sample replayed with
    short thresholds, 150 of 155 encounter ends were so (a duration of 0.0 after 90 s)."""
    run = Run()
    for t in span(0, 1440, 60):
        run.feed(report(SHIP, t, 5000, 5000, speed=0.5))
        if t % 180 == 0 and t <= 720:
            run.feed(report(OTHER, t, 5100, 5000, speed=0.0))
    (new,) = run.of("encounter", "new")
    assert new.alert["details"]["duration_s"] == 900.0
    (end,) = run.of("encounter", "end")
    assert end.alert["details"]["end_reason"] == "silent"
    assert end.alert["ended_at"] == "2026-01-01T12:15:00Z"
    assert end.alert["details"]["duration_s"] == 900.0


def test_zone_encounter_overrides_are_the_most_sensitive() -> None:
    zones = ZoneSet.from_geojson(collection(
        *PORT_FEATURES, rect("drift", "security", 4000, 4000, 6000, 6000, encounter_m=400,
                             encounter_s=300)))
    run = Run(zones)
    pair(run, span(0, 300, 60), 350.0)
    assert run.of("encounter") == []
    pair(run, [360], 350.0)
    (event,) = run.of("encounter")  # from the 2nd report, when both are in the zone (inertia)
    assert event.alert["started_at"] == "2026-01-01T12:01:00Z"


def tugs_at_berth(**sections: Any) -> Run:
    """A ship moored in berth_1 with two tugs lying just outside the berth polygon."""
    run = Run(**sections)
    run.feed(typed(TUG1, 0, 52), typed(TUG2, 0, 52), typed(SHIP, 0, 70))
    for t in span(1, 3600, 60):
        run.feed(report(SHIP, t, 100, 25, speed=0.0, status=5),
                 report(TUG1, t, 50, 60, speed=0.3),
                 report(TUG2, t, 150, 60, speed=0.3))
    return run


def test_two_tugs_alongside_a_ship_at_its_berth_no_encounter() -> None:
    control = tugs_at_berth(exempt_shiptypes=[])
    assert [(e.alert["mmsi"], e.alert["other_mmsi"]) for e in control.of("encounter")] == [
        (TUG1, TUG2)]  # the ship in its berth is never paired
    assert tugs_at_berth().of("encounter") == []


def pilot_boarding(**sections: Any) -> Run:
    """A ship under way at 8 kn north at sea; the pilot boat comes up from astern at 12 kn,
    30 m off, and runs alongside at 8 kn."""
    run = Run(**sections)
    run.feed(typed(PILOT, 0, 50), typed(SHIP, 0, 70))
    for t in span(1, 900, 5):
        y = 5000 + 8 * KN * t
        astern = 300 - 4 * KN * t
        run.feed(report(SHIP, t, 0, y, speed=8.0, course=0.0))
        run.feed(report(PILOT, t, 30, y - max(astern, 0.0),
                        speed=12.0 if astern > 0 else 8.0, course=0.0))
    return run


def test_pilot_boat_alongside_a_ship_under_way_no_encounter_no_collision_risk() -> None:
    control = pilot_boarding(exempt_shiptypes=[])
    assert len(control.of("collision_risk", "new")) == 1
    run = pilot_boarding()
    assert run.of("encounter") == [] and run.of("collision_risk") == []
    assert control.of("encounter") == []  # under way: never an encounter


# -- collision_risk -----------------------------------------------------------------------

def meeting(run: Run, offset: float, *, distance: float = 4000.0, speed: float = 10.0,
            y: float = 8000.0, times: list[float] | None = None, first: int = SHIP,
            second: int = OTHER) -> None:
    """Two vessels on reciprocal courses along the grid's x axis, ``offset`` m apart abeam,
    starting ``distance`` m apart end to end."""
    v = speed * KN
    for t in times or [0.0]:
        x1, x2 = -distance / 2 + v * t, distance / 2 - v * t
        run.feed(report(first, t, x1, y, speed=speed, course=course_along(90.0, x1, y)),
                 report(second, t, x2, y + offset, speed=speed,
                        course=course_along(270.0, x2, y + offset)))


def test_cpa_450_m_alerts_470_m_does_not() -> None:
    run = Run()
    meeting(run, 450.0)
    (event,) = run.of("collision_risk")
    alert = event.alert
    assert alert["risk_area"] == "port_operations" and alert["state"] == "open"
    assert (alert["mmsi"], alert["other_mmsi"]) == (SHIP, OTHER)
    assert 449.0 <= alert["details"]["cpa_m"] <= 451.0
    assert 385.0 <= alert["details"]["tcpa_s"] <= 393.0
    run = Run()
    meeting(run, 470.0)
    assert run.of("collision_risk") == []


def test_collision_risk_says_whose_report_it_quotes_and_how_old_the_partners_fix_is() -> None:
    """The partner, heard 30 s before, is dead-reckoned: its position in the alert is 30 s
    old, and the quoted report is the other vessel's (a reader took both for the alert's
    own vessel's)."""
    run = Run()
    v = 10.0 * KN
    run.feed(report(SHIP, 0, -1000.0, 8000.0, speed=10.0,
                    course=course_along(90.0, -1000.0, 8000.0)))
    x2 = 1000.0 - v * 30
    run.feed(report(OTHER, 30, x2, 8100.0, speed=10.0, course=course_along(270.0, x2, 8100.0)))
    (event,) = run.of("collision_risk")
    details = event.alert["details"]
    assert (event.alert["mmsi"], event.alert["other_mmsi"]) == (SHIP, OTHER)
    assert details["fix_ages_s"] == [30.0, 0.0]
    assert [r["mmsi"] for r in details["reports"]] == [OTHER]


def test_tcpa_just_over_and_under_10_min() -> None:
    run = Run()  # closing at 7 kn: 600 s is 2161 m
    meeting(run, 100.0, distance=2200.0, speed=3.5)
    assert run.of("collision_risk") == []
    run = Run()
    meeting(run, 100.0, distance=2150.0, speed=3.5)
    assert len(run.of("collision_risk")) == 1


@pytest.mark.parametrize(("crs", "lon", "lat"), [
    ("EPSG:32631", 4.0, 52.0), ("EPSG:32631", 1.0, 52.0), ("EPSG:32632", 12.6, 55.7),
    ("EPSG:32756", 151.25, -23.8), ("EPSG:32756", 154.0, -23.8),
    ("EPSG:28992", 5.0, 52.5), ("EPSG:2154", 6.0, 47.0), ("EPSG:3857", 4.0, 52.0)])
def test_meridian_convergence_agrees_with_pyproj(crs: str, lon: float, lat: float) -> None:
    """Sign and size: pyproj's meridian_convergence, and the grid bearing of true north
    measured on the projection itself (a point 10 m north) is minus it."""
    gamma = math.degrees(Projector(crs).convergence(lon, lat))
    assert gamma == pytest.approx(Proj(crs).get_factors(lon, lat).meridian_convergence,
                                  abs=2e-3)  # other projections: at the 0.01° square
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    (x0, x1), (y0, y1) = fwd.transform([lon, lon], [lat, lat + 1e-4])
    assert math.degrees(math.atan2(x1 - x0, y1 - y0)) == pytest.approx(-gamma, abs=2e-3)


def test_courses_are_true_not_grid_bearings() -> None:
    """Head-on on true courses 090/270 with tracks 450 m apart, 4 km apart, at 4°E in UTM 31
    (0.79° meridian convergence): taken as grid bearings, the CPA was 503 m and no alert."""
    geod = Geod(ellps="WGS84")
    lon, lat = lonlat(-2000.0, 8000.0)
    far_lon, far_lat, _ = geod.fwd(lon, lat, 90.0, 4000.0)
    other_lon, other_lat, _ = geod.fwd(far_lon, far_lat, 0.0, 450.0)
    run = Run()
    run.feed(replace(report(SHIP, 0, 0, 0, speed=10.0, course=90.0), lon=lon, lat=lat),
             replace(report(OTHER, 0, 0, 0, speed=10.0, course=270.0),
                     lon=other_lon, lat=other_lat))
    (event,) = run.of("collision_risk")
    assert 445.0 <= event.alert["details"]["cpa_m"] <= 455.0


def test_3_kn_is_not_under_way_enough() -> None:
    run = Run()
    meeting(run, 100.0, distance=1000.0, speed=3.0)
    assert run.of("collision_risk") == []
    run = Run()
    meeting(run, 100.0, distance=1000.0, speed=3.1)
    assert len(run.of("collision_risk")) == 1


def test_open_alert_keeps_under_end_factor_and_ends_when_passed() -> None:
    run = Run()
    meeting(run, 450.0, times=[0.0])
    meeting(run, 540.0, times=[10.0])  # 540 < 463 × 1.25
    assert [e.transition for e in run.of("collision_risk")] == ["new"]
    meeting(run, 450.0, times=span(20, 400, 10))
    end = run.of("collision_risk", "end")[0].alert
    assert end["details"]["end_reason"] == "passed_or_clear"
    assert 449.0 <= end["details"]["min_cpa_m"] <= 451.0


def test_a_ferry_hovering_about_3_kn_keeps_one_alert_until_it_slows_to_2_kn() -> None:
    """A ferry at 2.7–3.4 kn meeting a ship opened and ended (``slow_or_exempt``) at every
    crossing of 3 kn. It opens above ``speed_kn`` and ends at ``end_speed_kn`` (2 kn)."""
    run = Run()
    v1, v2, y = 10.0 * KN, 3.0 * KN, 8000.0
    speeds = [3.4, 2.8, 3.3, 2.7, 3.2, 2.9]

    def both(t: float, ferry_kn: float) -> None:
        x1, x2 = -1500.0 + v1 * t, 1500.0 - v2 * t
        run.feed(report(SHIP, t, x1, y, speed=10.0, course=course_along(90.0, x1, y)),
                 report(OTHER, t, x2, y + 200.0, speed=ferry_kn,
                        course=course_along(270.0, x2, y + 200.0)))

    for i, t in enumerate(span(0, 360, 10)):
        both(t, speeds[i % len(speeds)])
    assert [e.transition for e in run.of("collision_risk")] == ["new"]
    both(370, 1.9)
    assert [e.transition for e in run.of("collision_risk")] == ["new", "end"]
    assert run.of("collision_risk", "end")[0].alert["details"]["end_reason"] == (
        "slow_or_exempt")


def test_a_fix_jittering_about_the_passing_point_does_not_reopen_the_pair() -> None:
    """Passed abeam 150 m off, the alert ends; 5 s later a fix 40 m off along its track puts
    the other 8 m ahead again (TCPA 1.6 s, CPA 150 m): the same encounter, no new alert
    (``reopen_s``)."""
    run = Run()
    v, y = 5.0 * KN, 8000.0

    def both(t: float, jitter: float = 0.0) -> None:
        x1, x2 = -1000.0 + v * t, 1000.0 - v * t + jitter
        run.feed(report(SHIP, t, x1, y, speed=5.0, course=course_along(90.0, x1, y)),
                 report(OTHER, t, x2, y + 150.0, speed=5.0,
                        course=course_along(270.0, x2, y + 150.0)))

    for t in span(0, 390, 10):
        both(t)
    assert [e.transition for e in run.of("collision_risk")] == ["new", "end"]
    both(395, jitter=40.0)
    for t in span(400, 450, 10):
        both(t)
    assert [e.transition for e in run.of("collision_risk")] == ["new", "end"]


def test_a_silent_pair_ends_at_the_last_fix_plus_max_age() -> None:
    """The other vessel's last fix is at 20 s: dead-reckoned for ``max_age_s`` (120 s), the
    pair ends as of 140 s, "silent", whether the clean-up sweep notices it (at 300 s, the
    first tick after both fell silent; it said 300 s) or the ship's own report does (it said
    "passed_or_clear" at 150 s, with the vessels still 2.5 km apart and closing)."""
    run = Run()
    meeting(run, 100.0, times=span(0, 20, 10))
    run.tick(300)
    (end,) = run.of("collision_risk", "end")
    assert end.alert["details"]["end_reason"] == "silent"
    assert end.alert["ended_at"] == iso_time(T0 + 140) and end.time == T0 + 300

    run = Run()
    meeting(run, 100.0, times=span(0, 20, 10))
    for t in span(30, 200, 10):
        run.feed(report(SHIP, t, -2000.0 + 10 * KN * t, 8000.0, speed=10.0,
                        course=course_along(90.0, 0.0, 8000.0)))
    (end,) = run.of("collision_risk", "end")
    assert end.alert["details"]["end_reason"] == "silent"
    assert end.alert["ended_at"] == iso_time(T0 + 140)


def test_reports_far_behind_the_clock_open_no_collision_risk() -> None:
    """A satellite pass delivers two vessels' reports 10 minutes late: a meeting that was
    live then is history now; no live alert opens from it."""
    run = Run()
    run.feed(report(244000001, 600, 5000, 5000))  # the rules' clock is at 600 s
    meeting(run, 100.0, times=span(0, 30, 10))
    assert run.of("collision_risk") == []
    meeting(run, 100.0, times=[600.0], distance=4000.0 + 2 * 10 * KN * 600)
    assert len(run.of("collision_risk", "new")) == 1  # the same geometry, on time


def test_inside_the_port_limit_only_where_a_zone_sets_cpa_m() -> None:
    run = Run()
    meeting(run, 100.0, y=1000.0)  # in the port limit, no zone of its own
    assert run.of("collision_risk") == []
    zones = ZoneSet.from_geojson(collection(
        *PORT_FEATURES, rect("basin", "channel", -2900, 500, 2900, 1600, cpa_m=150)))
    run = Run(zones)
    meeting(run, 100.0, y=1000.0)
    (event,) = run.of("collision_risk")
    assert event.alert["zone"] == "basin" and event.alert["details"]["cpa_limit_m"] == 150
    run = Run(zones)
    meeting(run, 200.0, y=1000.0)
    assert run.of("collision_risk") == []


def test_a_fairway_beyond_the_port_limit_is_judged_only_with_its_own_cpa_m() -> None:
    """Two-way traffic in a channel that runs out to sea passes close by design."""
    fairway = rect("fairway", "channel", -6000, 7500, 6000, 8700)
    run = Run(ZoneSet.from_geojson(collection(*PORT_FEATURES, fairway)))
    meeting(run, 200.0)  # y = 8000: outside the port limit, inside the fairway
    assert run.of("collision_risk") == []
    strict = rect("fairway", "channel", -6000, 7500, 6000, 8700, cpa_m=250)
    run = Run(ZoneSet.from_geojson(collection(*PORT_FEATURES, strict)))
    meeting(run, 200.0)
    (event,) = run.of("collision_risk")
    assert event.alert["zone"] == "fairway"


def test_two_vessels_passing_on_parallel_courses_300_m_apart_no_collision_risk() -> None:
    """Reciprocal parallel courses 300 m apart through the port: normal passing in a basin
    (no alert), and none either where the basin sets a 200 m CPA of its own."""
    run = Run()
    meeting(run, 300.0, y=1000.0, times=span(0, 400, 10))
    assert run.of("collision_risk") == []
    zones = ZoneSet.from_geojson(collection(
        *PORT_FEATURES, rect("basin", "channel", -2900, 500, 2900, 1600, cpa_m=200)))
    run = Run(zones)
    meeting(run, 300.0, y=1000.0, times=span(0, 400, 10))
    assert run.of("collision_risk") == []
    # Same course, same speed, 300 m abeam at sea: the distance never closes.
    run = Run()
    for t in span(0, 400, 10):
        run.feed(report(SHIP, t, 10 * KN * t, 8000, speed=10.0, course=90.0),
                 report(OTHER, t, 10 * KN * t, 8300, speed=10.0, course=90.0))
    assert run.of("collision_risk") == []


def test_a_tow_in_company_no_alert_a_pair_closing_at_1_kn_alerts() -> None:
    """Gladstone: a tug and its barge 297 m apart at 5.5/5.6 kn made four alerts in five
    minutes, CPA = distance and TCPA flickering about zero. Under ``min_relative_kn`` (1 kn)
    a pair does not open; just over it, the same geometry does."""
    def overtaking(relative_kn: float, behind_m: float) -> Run:
        """OTHER overtakes SHIP 100 m abeam (CPA 100 m), ``behind_m`` astern at first."""
        run = Run()
        v, w = 5.5 * KN, (5.5 + relative_kn) * KN
        for t in span(0, 300, 10):
            run.feed(report(SHIP, t, v * t, 8000, speed=5.5, course=90.0),
                     report(OTHER, t, w * t - behind_m, 8100, speed=5.5 + relative_kn,
                            course=90.0))
        return run
    assert overtaking(0.2, 50.0).of("collision_risk") == []  # TCPA 486 s
    assert overtaking(0.9, 200.0).of("collision_risk") == []  # TCPA 432 s
    assert len(overtaking(1.1, 200.0).of("collision_risk", "new")) == 1  # TCPA 353 s


# -- anchor_drag --------------------------------------------------------------------------

CENTRE = (5000.0, 5000.0)


def swing(t: float, radius: float = 80.0, period: float = 600.0) -> tuple[float, float]:
    angle = 2 * math.pi * t / period
    return CENTRE[0] + radius * math.sin(angle), CENTRE[1] + radius * math.cos(angle)


def anchored(run: Run, times: list[float], **kw: Any) -> None:
    for t in times:
        run.feed(report(SHIP, t, *swing(t, **kw), status=1, speed=0.1))


def test_anchoring_then_swinging_within_its_circle_no_drag() -> None:
    run = Run()
    anchored(run, span(0, 6 * 3600, 60))
    assert run.of("anchor_drag") == []
    state = run.engine.picture.vessels[SHIP].rule_state["anchor_drag"]
    assert 79.0 <= state["radius"] <= 81.0 and 179.0 <= state["limit"] <= 181.0


def at_anchor(run: Run, t: float, distance: float) -> None:
    run.feed(report(SHIP, t, CENTRE[0], CENTRE[1] + distance, status=1, speed=0.1))


def test_limit_is_radius_plus_100_on_two_consecutive_reports() -> None:
    run = Run()
    anchored(run, span(0, 1800, 60))
    at_anchor(run, 1860, 175.0)
    at_anchor(run, 1920, 175.0)
    at_anchor(run, 1980, 185.0)
    at_anchor(run, 2040, 70.0)  # one report outside is not a drag
    assert run.of("anchor_drag") == []
    at_anchor(run, 2100, 185.0)
    at_anchor(run, 2160, 200.0)
    (event,) = run.of("anchor_drag")
    alert = event.alert
    assert alert["risk_area"] == "port_operations" and alert["state"] == "open"
    assert alert["started_at"] == "2026-01-01T12:35:00Z"
    assert 199.0 <= alert["details"]["distance_m"] <= 201.0
    run.feed(report(SHIP, 2220, CENTRE[0], CENTRE[1] + 260, status=0, speed=4.0))
    end = run.of("anchor_drag", "end")[0].alert
    assert end["details"]["end_reason"] == "weighed"
    assert "anchor_drag" not in run.engine.picture.vessels[SHIP].rule_state


def test_small_swing_has_a_150_m_floor_and_risk_area_is_configurable() -> None:
    run = Run(anchor_drag={"risk_area": "natural_hazard"})
    anchored(run, span(0, 1800, 60), radius=20.0)
    at_anchor(run, 1860, 140.0)
    at_anchor(run, 1920, 145.0)
    assert run.of("anchor_drag") == []
    at_anchor(run, 1980, 155.0)
    at_anchor(run, 2040, 160.0)
    (event,) = run.of("anchor_drag")
    assert event.alert["risk_area"] == "natural_hazard"
    assert event.alert["details"]["limit_m"] == 150.0


def test_at_anchor_set_while_approaching_is_not_learnt_as_swing() -> None:
    """Status 1 set 10 min early while closing at 2.5 kn, then a swing within 30 m and a
    400 m drag north at 0.7 kn: the approach once made the limit about 450 m."""
    run = Run()
    for t in span(0, 540, 30):  # 2.5 kn from 770 m south of the anchor position
        run.feed(report(SHIP, t, CENTRE[0], CENTRE[1] - 770 + 1.286 * t, status=1, speed=2.5))
    anchored(run, span(600, 2400 + 600, 60), radius=30.0, period=900.0)
    state = run.engine.picture.vessels[SHIP].rule_state["anchor_drag"]
    assert state["limit"] == 150.0 and state["since"] == T0 + 600
    for i, t in enumerate(span(3060, 4200, 60)):  # 0.7 kn: 21.6 m a minute
        run.feed(report(SHIP, t, CENTRE[0], CENTRE[1] + 21.6 * (i + 1), status=1, speed=0.7))
    (event,) = run.of("anchor_drag", "new")
    assert event.alert["details"]["limit_m"] == 150.0
    assert 150.0 < event.alert["details"]["distance_m"] < 200.0


def test_class_b_without_status_is_never_judged() -> None:
    run = Run()
    for t in span(0, 4000, 60):
        run.feed(report(SHIP, t, 5000, 5000 + t / 4, status=None, msg_type=18, speed=0.2))
    assert run.of("anchor_drag") == [] and run.engine.picture.vessels[SHIP].rule_state == {}


# -- sudden_stop --------------------------------------------------------------------------

def stop(run: Run, speeds: list[tuple[float, float]], mmsi: int = SHIP) -> None:
    for t, speed in speeds:
        run.feed(report(mmsi, t, 5000, 5000 + t, speed=speed, course=0.0))


def stop_at(run: Run, place: tuple[float, float], speeds: list[tuple[float, float]],
            **kw: Any) -> None:
    """Reports at one place, at (time, speed) each."""
    for t, speed in speeds:
        run.feed(report(SHIP, t, *place, speed=speed, course=0.0, **kw))


def test_8_to_0_5_kn_in_25_s_held_60_s_is_one_event() -> None:
    run = Run()
    stop(run, [(0, 8.0), (10, 8.0), (20, 8.0), (35, 3.0), (45, 0.5), (75, 0.4), (104, 0.3)])
    assert run.of("sudden_stop") == []
    stop(run, [(105, 0.2), (115, 0.2)])
    (event,) = run.of("sudden_stop")
    alert = event.alert
    assert alert["risk_area"] == "port_operations" and alert["state"] == "ended"
    assert alert["started_at"] == "2026-01-01T12:01:45Z"
    assert alert["details"]["from_kn"] == 8.0 and alert["details"]["drop_s"] == 25.0
    assert alert["details"]["held_s"] == 60.0


def test_drop_over_31_s_or_from_7_kn_is_no_sudden_stop() -> None:
    run = Run()
    stop(run, [(0, 8.0), (31, 0.5), (100, 0.5), (200, 0.5)])
    assert run.of("sudden_stop") == []
    run = Run()
    stop(run, [(0, 7.0), (10, 0.5), (100, 0.5)])
    assert run.of("sudden_stop") == []


def test_stop_not_held_60_s_is_no_sudden_stop() -> None:
    run = Run()
    stop(run, [(0, 9.0), (10, 0.5), (50, 0.5), (60, 2.0), (75, 0.5), (200, 0.5)])
    assert run.of("sudden_stop") == []
    assert "sudden_stop" not in run.engine.picture.vessels[SHIP].rule_state


def test_a_stop_in_a_berth_is_a_landing_and_the_alert_names_no_wide_zone() -> None:
    """A ferry losing 7 kn in 25 s as it lands in its berth is no grounding. Elsewhere the
    alert names the zone the vessel is in, not the coverage area around everything."""
    speeds = [(0, 8.0), (10, 8.0), (20, 8.0), (35, 3.0), (45, 0.5), (75, 0.4), (105, 0.2),
              (115, 0.2)]
    zones = []
    for place in ((100.0, 25.0), (0.0, -2500.0), (5000.0, 5000.0)):  # berth, channel, open
        run = Run()
        for t, speed in speeds:
            run.feed(report(SHIP, t, *place, speed=speed, course=0.0))
        zones.append([e.alert["zone"] for e in run.of("sudden_stop")])
    assert zones == [[], ["channel_1"], [None]]


@pytest.mark.parametrize(("north", "zones"), [(45.0, []), (55.0, []), (69.0, []),
                                            (71.0, [None]), (75.0, [None])])
def test_a_stop_within_the_exit_margin_of_a_berth_is_a_landing_beyond_it_a_stop(
        north: float, zones: list[str | None]) -> None:
    """The berth's north edge is at 50 m: the same stop 5 m inside, 5 m or 19 m outside
    (within the 20 m exit margin: a ferry alongside with its antenna just outside the
    polygon, as QUOIN CAT lies 2 m outside berth 5 in the demo recording) gives nothing;
    21 m or 25 m outside (where only coverage and the port limit are, which it does not
    name) alerts."""
    run = Run()
    stop_at(run, (100.0, north), [(0, 8.0), (10, 8.0), (20, 8.0), (35, 3.0), (45, 0.5),
                                   (75, 0.4), (105, 0.2), (115, 0.2)])
    assert [e.alert["zone"] for e in run.of("sudden_stop")] == zones
    if zones:
        assert run.of("sudden_stop")[0].alert["details"]["held_s"] == 60.0


@pytest.mark.parametrize(("stopped_at", "creep_to", "alerts"),
                         [(-30.0, 5.0, 0), (-5.0, -5.0, 0), (-35.0, -25.0, 1)])
def test_a_class_b_creeping_into_a_berth_after_its_stop_is_a_landing(
        stopped_at: float, creep_to: float, alerts: int) -> None:
    """A class B ferry drops from 8 kn to 0.5 kn short of the berth's south edge (y=0) and
    creeps on; slow, it reports every 3 min, so the fix that completes the hold is its
    first one there and its entry is not confirmed yet (2 reports). In the berth, or still
    5 m short of it (within the exit margin), it is a landing; 25 m short, it stopped
    outside."""
    run = Run()
    stop_at(run, (100.0, -60.0), [(0, 8.0), (30, 8.0)], msg_type=18)
    stop_at(run, (100.0, stopped_at), [(55, 0.5)], msg_type=18)
    stop_at(run, (100.0, creep_to), [(235, 0.2)], msg_type=18)
    assert len(run.of("sudden_stop")) == alerts
    assert "berth_1" not in run.engine.picture.vessels[SHIP].zones  # not entered yet


def test_traffic_alert_ids_repeat_on_replay() -> None:
    def once() -> list[str]:
        run = Run()
        # The meeting first: a report far behind the rules' clock opens no collision risk.
        meeting(run, 450.0, y=9000.0, first=TUG1, second=TUG2)
        pair(run, span(0, 900, 60), 100.0)
        stop(run, [(0, 8.0), (10, 0.5), (70, 0.5)], mmsi=PILOT)
        return [e.alert["id"] for e in run.events]

    first = once()
    assert len(set(first)) == 3 and first == once()  # the collision risk also ends


@pytest.mark.parametrize("learnt_s", [600, 1800], ids=["learning", "learnt"])
def test_a_zone_change_to_another_projection_moves_the_anchor_circle_with_it(
        learnt_s: float) -> None:
    """The centre and the fixes learnt are kept in metres: after zones in UTM 32 in place of
    UTM 31 the next fixes, the same swing, measured some 411 km from the old centre."""
    run = Run()
    anchored(run, span(0, learnt_s, 60))
    run.engine.set_zones(zones_moved_east(5.0))
    anchored(run, span(learnt_s + 60, 3 * 3600, 60))
    assert run.of("anchor_drag") == []
    state = run.engine.picture.vessels[SHIP].rule_state["anchor_drag"]
    assert 79.0 <= state["radius"] <= 81.0 and 179.0 <= state["limit"] <= 181.0
    assert state["crs"] == "EPSG:32632"
    cx, cy = run.engine.zones.project(*lonlat(*CENTRE))
    assert math.hypot(state["centre"][0] - cx, state["centre"][1] - cy) < 1.0
    at_anchor(run, 3 * 3600 + 60, 300.0)
    at_anchor(run, 3 * 3600 + 120, 300.0)  # a real drag is still one
    assert [e.transition for e in run.of("anchor_drag")] == ["new"]
