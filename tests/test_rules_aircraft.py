"""SAR aircraft (message 9) are no vessels: they fly fast over channels and hover over
wharves, and the zone, speed, loitering, stop and anchor rules never judge them."""

from __future__ import annotations

from geofence.alert import AlertEvent
from ingest.report import Report
from tests.rulekit import Run, report, span

SHIP = 244000123
AIRCRAFT = 111244001  # 111 MID xxx: a SAR aircraft of the Netherlands


def flight(mmsi: int, msg_type: int) -> list[Report]:
    """Along the 6 kn channel at 27 kn, a hard stop, then a long hover over the security
    zone and inside the restricted one (neither allows it)."""
    out = [report(mmsi, t, -2000 + 14 * t, -2500, speed=27.0, course=90.0,
                  msg_type=msg_type) for t in span(0, 250, 5)]
    out += [report(mmsi, 250 + t, 1500, -2500, speed=0.0, msg_type=msg_type)
            for t in span(5, 120, 5)]
    out += [report(mmsi, 400 + t, 1050, 1050, speed=0.0, msg_type=msg_type)
            for t in span(0, 1800, 10)]
    out += [report(mmsi, 2300 + t, -1750, -1750, speed=0.0, msg_type=msg_type)
            for t in span(0, 600, 10)]
    return out


def rules_of(events: list[AlertEvent]) -> set[str]:
    return {e.alert["rule"] for e in events if e.transition == "new"}


def test_a_ship_flown_as_the_aircraft_flies_raises_the_alerts_the_aircraft_does_not() -> None:
    ship = Run()
    ship.feed(*flight(SHIP, 1))
    judged = {"speeding", "sudden_stop", "zone_entry", "restricted_entry", "loitering"}
    assert judged <= rules_of(ship.events)  # the control: each rule can fire on this track
    aircraft = Run()
    aircraft.feed(*flight(AIRCRAFT, 9))
    assert rules_of(aircraft.events) & (judged | {"zone_exit", "anchor_drag"}) == set()
