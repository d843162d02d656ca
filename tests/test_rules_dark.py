"""dark_vessel: coverage- and receiver-aware silence, and source_silent next to it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from geofence.alert import Alert, RiskArea, Severity
from geofence.engine import Engine
from harbourwatch.pipeline import Pipeline
from ingest.ingestor import Ingestor
from ingest.report import Report
from tests.ingest_helpers import position, single, tag_block
from tests.rulekit import T0, Run, at, lonlat, port_zones, report, rules_config, span

SHIP = 244123456
OPEN_WATER = (0.0, 5000.0)  # 15 km inside the coverage edge


def ship_then_silence(**kw: Any) -> list[Report]:
    return at(SHIP, span(0, 100, 10), *OPEN_WATER, speed=8.0, **kw)


def test_silent_599_s_then_back_no_alert() -> None:
    run = Run()
    run.beacon(span(0, 690, 30))
    run.feed(*ship_then_silence())
    run.play(at(SHIP, [699], *OPEN_WATER, speed=8.0), [report(244000001, 695, 5000, 5000)])
    assert run.of("dark_vessel") == []


def test_silent_601_s_then_back_opens_and_ends() -> None:
    run = Run()
    run.play(ship_then_silence(), at(244000001, span(0, 700, 30), 5000, 5000),
             at(SHIP, [701], 0, 6000, speed=8.0))
    assert [e.transition for e in run.of("dark_vessel")] == ["new", "end"]
    end = run.of("dark_vessel", "end")[0].alert
    assert end["started_at"] == "2026-01-01T12:01:40Z"  # the last report before the gap
    assert end["details"]["gap_s"] == 601.0
    assert 999.0 <= end["details"]["distance_m"] <= 1001.0
    assert end["details"]["implied_speed_kn"] == round(end["details"]["distance_m"] / 601
                                                        * 3600 / 1852, 2)
    assert end["details"]["receivers"] == ["rx1"]
    assert end["details"]["reports"][0]["time"] == "2026-01-01T12:01:40Z"


def test_timer_opens_while_still_silent() -> None:
    run = Run()
    run.play(ship_then_silence(), at(244000001, span(0, 900, 30), 5000, 5000))
    (event,) = run.of("dark_vessel")
    assert event.transition == "new" and event.time == T0 + 720  # first tick past 700
    alert = event.alert
    assert alert["risk_area"] == "criminal_activity" and alert["state"] == "open"
    assert alert["details"]["threshold_s"] == 600.0
    assert alert["details"]["stationary"] is False
    assert alert["details"]["edge_distance_m"] >= 14999


def test_stationary_vessel_gets_1800_s() -> None:
    run = Run()
    run.play(at(SHIP, span(0, 100, 10), *OPEN_WATER, speed=0.0, status=1),
             at(244000001, span(0, 1890, 30), 5000, 5000))
    assert run.of("dark_vessel") == []
    run.play(at(244000001, span(1920, 1950, 30), 5000, 5000))
    (event,) = run.of("dark_vessel")
    assert event.alert["details"]["threshold_s"] == 1800.0


def test_leaving_across_the_coverage_edge_is_not_dark() -> None:
    run = Run()
    near_edge = at(SHIP, span(0, 100, 10), 18500, 0, speed=12.0, course=90.0)  # 1.5 km
    run.play(near_edge, at(244000001, span(0, 3000, 30), 5000, 5000))
    assert run.of("dark_vessel") == []


def test_never_in_coverage_is_not_dark() -> None:
    run = Run()
    run.play(at(SHIP, span(0, 100, 10), 30000, 0, speed=8.0),
             at(244000001, span(0, 3000, 30), 5000, 5000))
    assert run.of("dark_vessel") == []


def test_only_receiver_silent_gives_source_silent_not_dark() -> None:
    run = Run()
    run.play(ship_then_silence(sources=("rx2",)), at(244000001, span(0, 3000, 30), 5000, 5000))
    assert run.of("dark_vessel") == []
    (silent,) = run.of("source_silent")
    assert silent.alert["details"]["receiver"] == "rx2"
    assert silent.alert["started_at"] == "2026-01-01T12:03:40Z"  # 100 + 120 s
    # The receiver comes back with the vessel: silence ends, still no dark alert.
    run.feed(report(SHIP, 3010, *OPEN_WATER, speed=8.0, sources=("rx2",)))
    assert [e.transition for e in run.of("source_silent")] == ["new", "end"]
    assert run.of("dark_vessel") == []


def test_second_receiver_still_hearing_makes_it_dark() -> None:
    run = Run()
    run.play(ship_then_silence(sources=("rx1", "rx2")),
             at(244000001, span(0, 900, 30), 5000, 5000, sources=("rx1",)))
    (event,) = run.of("dark_vessel")
    assert event.alert["details"]["receivers"] == ["rx1"]
    assert [e.alert["details"]["receiver"] for e in run.of("source_silent")] == ["rx2"]


def test_moving_out_of_one_receivers_range_then_the_other_goes_silent_is_not_dark() -> None:
    """Heard by rx1 until t=0, then only by rx2 (it sailed on); rx2 falls silent at t=300.

    rx1 is still up, but it stopped hearing the vessel 300 s before its last report: the
    silence is rx2's, not the vessel's.
    """
    run = Run()
    run.play(at(SHIP, span(-60, 0, 10), *OPEN_WATER, speed=8.0, sources=("rx1", "rx2")),
             at(SHIP, span(10, 300, 10), *OPEN_WATER, speed=8.0, sources=("rx2",)),
             at(244000001, span(-60, 1500, 30), 5000, 5000, sources=("rx1",)),
             at(244000002, span(-60, 300, 30), -5000, 5000, sources=("rx2",)))
    assert run.of("dark_vessel") == []
    assert [e.alert["details"]["receiver"] for e in run.of("source_silent")] == ["rx2"]


def test_a_stationary_vessel_counts_receivers_over_its_3_minute_interval() -> None:
    run = Run()
    # At anchor, heard by rx1 at t=0 and by rx2 only since; rx2 stays up, rx1 too.
    run.play(at(SHIP, [0], *OPEN_WATER, speed=0.0, status=1, sources=("rx1",)),
             at(SHIP, [180], *OPEN_WATER, speed=0.0, status=1, sources=("rx2",)),
             at(244000001, span(0, 2200, 30), 5000, 5000, sources=("rx1",)))
    (event,) = run.of("dark_vessel")
    assert event.alert["details"]["receivers"] == ["rx1"]


def test_receiver_gap_during_silence_is_not_dark() -> None:
    run = Run()
    # rx1 hears others until 150, then nothing until 500: the silence is not the vessel's.
    run.play(ship_then_silence(), at(244000001, span(0, 150, 30), 5000, 5000),
             at(244000001, span(500, 1500, 30), 5000, 5000))
    assert run.of("dark_vessel") == []


def _saved(engine: Engine) -> tuple[list[dict[str, object]], list[Alert]]:
    states = json.loads(json.dumps([v.to_state() for v in engine.picture.vessels.values()]))
    alerts = [Alert.from_dict(a.to_dict()) for a in engine.open_alerts()]
    return states, alerts


def test_dark_timer_survives_a_restart() -> None:
    baseline = Run()
    baseline.play(ship_then_silence(), at(244000001, span(0, 900, 30), 5000, 5000))
    first = Run()
    first.play(ship_then_silence(), at(244000001, span(0, 300, 30), 5000, 5000))
    states, alerts = _saved(first.engine)
    second = Run()
    second.engine.restore(states, alerts)
    second.play(at(244000001, span(330, 900, 30), 5000, 5000))
    assert [e.alert["id"] for e in second.of("dark_vessel")] == [
        e.alert["id"] for e in baseline.of("dark_vessel")]
    assert len(second.of("dark_vessel")) == 1


def test_long_downtime_does_not_make_everyone_dark() -> None:
    first = Run()
    first.play(ship_then_silence(), at(244000001, span(0, 300, 30), 5000, 5000))
    states, alerts = _saved(first.engine)
    second = Run()
    second.engine.restore(states, alerts)
    second.play(at(244000001, span(3600, 6000, 30), 5000, 5000))
    assert second.of("dark_vessel") == []
    assert second.of("source_silent") == []


def test_open_dark_alert_ends_after_restart() -> None:
    first = Run()
    first.play(ship_then_silence(), at(244000001, span(0, 900, 30), 5000, 5000))
    states, alerts = _saved(first.engine)
    assert [a.rule for a in alerts] == ["dark_vessel"]
    second = Run()
    second.engine.restore(states, alerts)
    second.feed(report(SHIP, 1000, *OPEN_WATER, speed=8.0))
    (end,) = second.of("dark_vessel", "end")
    assert end.alert["id"] == alerts[0].id and end.alert["details"]["gap_s"] == 900.0


def test_source_silent_edges() -> None:
    engine = Engine(rules_config(), port_zones())
    engine.process(report(244000001, 0, 5000, 5000, sources=("rx1",)))
    assert engine.tick(T0 + 120) == []
    (event,) = engine.tick(T0 + 121)
    assert event.alert["rule"] == "source_silent" and event.alert["mmsi"] is None
    assert event.alert["risk_area"] == "information_security"
    assert engine.tick(T0 + 500) == []  # no re-firing while it stays silent
    (end,) = engine.process(report(244000001, 600, 5000, 5000, sources=("rx1",)))
    assert end.transition == "end" and end.alert["details"]["silent_s"] == 600.0


def test_source_silent_alerts_only_for_the_receivers_listed() -> None:
    """A national feed's stations come and go; only the port's own receivers alert. A vessel
    only an unlisted silent station heard is still not called dark."""
    run = Run(source_silent={"receivers": ["rx-quay*", "harbour"]})
    run.play(ship_then_silence(sources=("2190067",)),
             at(244000001, span(0, 3000, 30), 5000, 5000, sources=("rx-quay-north",)),
             at(244000002, span(0, 100, 30), -5000, 5000, sources=("rx-quay-south",)),
             at(244000003, span(0, 100, 30), -5000, -5000, sources=("harbour",)),
             at(244000004, span(0, 100, 30), 5000, -5000, sources=("harbourmaster",)))
    assert sorted(e.alert["details"]["receiver"] for e in run.of("source_silent")) == [
        "harbour", "rx-quay-south"]
    assert run.of("dark_vessel") == []


def test_source_silent_leaves_out_the_receivers_excluded() -> None:
    """``!`` patterns: every receiver but the satellite station, whose passes come and go
    (the Gladstone recording's exactEarth lines)."""
    for receivers in (["*", "!3160000*"], ["!3160000*"]):  # exclusions alone: all but these
        run = Run(source_silent={"receivers": receivers})
        run.play(at(244000001, span(0, 3000, 30), 5000, 5000, sources=("rx-quay",)),
                 at(244000002, span(0, 100, 30), -5000, 5000, sources=("316000002",)),
                 at(244000003, span(0, 100, 30), -5000, -5000, sources=("harbour",)))
        assert [e.alert["details"]["receiver"] for e in run.of("source_silent")] == [
            "harbour"], receivers


def test_a_receiver_with_a_limit_of_its_own_alerts_only_past_it() -> None:
    """A remote station that hears a few vessels (600 s of its own): quiet 590 s is its
    normal, 610 s is silence. rx2, with no limit of its own, is still silent after 120 s."""
    run = Run(source_silent={"receiver_silent_s": {"rx-remote": 600}})
    run.play(at(244000001, span(0, 1300, 10), 5000, 5000, sources=("rx1",)),
             at(244000002, [0, 590, 1200], -5000, 5000, sources=("rx-remote",)),
             at(244000003, [0, 119, 240, *span(300, 1300, 60)], -5000, -5000,
                sources=("rx2",)))
    assert [(e.transition, e.alert["details"]["receiver"], e.alert["started_at"],
             e.alert["details"]["silent_s"]) for e in run.of("source_silent")] == [
        ("new", "rx2", "2026-01-01T12:03:59Z", 120.0),  # heard at 119, silent past 239
        ("end", "rx2", "2026-01-01T12:03:59Z", 121.0),
        ("new", "rx-remote", "2026-01-01T12:19:50Z", 600.0),  # heard at 590, past 1190
        ("end", "rx-remote", "2026-01-01T12:19:50Z", 610.0)]


def test_a_receivers_own_limit_on_the_timers() -> None:
    """Live, the wall clock's ticks notice the silence: not at 590 s nor at exactly 600 s
    ("longer than"), at 610 s, dated 600 s after it was last heard."""
    engine = Engine(rules_config(source_silent={"receiver_silent_s": {"rx-remote": 600}}),
                    port_zones())
    engine.process(report(244000002, 0, -5000, 5000, sources=("rx-remote",)))
    assert engine.tick(T0 + 590) == [] and engine.tick(T0 + 600) == []
    (event,) = engine.tick(T0 + 610)
    assert (event.alert["details"]["receiver"], event.alert["started_at"],
            event.alert["details"]["silent_s"]) == ("rx-remote", "2026-01-01T12:10:00Z", 600.0)


@pytest.mark.parametrize(("gap", "dark"), [(590, True), (610, False)])
def test_a_sparse_receiver_keeps_its_vessels_dark_within_its_own_limit(
        gap: float, dark: bool) -> None:
    """The vessel falls silent at 100 s with only rx-remote (600 s of its own) hearing it,
    which is next heard ``gap`` s later. Within its limit it was heard all along: the vessel
    is dark. Past it, the silence may be the receiver's: source_silent, not dark (at 120 s
    for every receiver, the vessels of a sparse receiver were never called dark)."""
    run = Run(source_silent={"receiver_silent_s": {"rx-remote": 600}})
    run.play(at(SHIP, span(0, 100, 10), *OPEN_WATER, speed=8.0, sources=("rx-remote",)),
             at(244000002, [100 + gap, *span(1000, 1600, 300)], -5000, 5000,
                sources=("rx-remote",)))
    assert [e.alert["details"].get("receivers") for e in run.of("dark_vessel")] == (
        [["rx-remote"]] if dark else [])
    assert [e.alert["started_at"] for e in run.of("source_silent", "new")] == (
        [] if dark else ["2026-01-01T12:11:40Z"])  # heard at 100, silent past 700


def test_silent_exactly_600_s_is_not_dark() -> None:
    """"Silent > 600 s": a report exactly 600 s after the last one is in time."""
    run = Run()
    run.play(ship_then_silence(), at(244000001, span(0, 700, 10), 5000, 5000),
             at(SHIP, [700], *OPEN_WATER, speed=8.0))
    assert run.of("dark_vessel") == []


def test_a_late_copy_of_an_old_report_does_not_end_a_dark_alert() -> None:
    """A feed's backlog delivers the vessel's report from before its silence: it has not
    come back, so the alert stays open (and is never opened twice under one id)."""
    run = Run()
    run.play(ship_then_silence(), at(244000001, span(0, 1000, 10), 5000, 5000))
    run.feed(report(SHIP, 90, *OPEN_WATER, speed=8.0, sources=("rx2",)))
    run.play(at(244000001, span(1010, 1100, 10), 5000, 5000))
    assert [e.transition for e in run.of("dark_vessel")] == ["new"]
    run.feed(report(SHIP, 1110, *OPEN_WATER, speed=8.0))
    (_, end) = run.of("dark_vessel")
    assert end.transition == "end" and end.alert["details"]["gap_s"] == 1010.0


def test_emergency_devices_and_sar_aircraft_are_never_dark() -> None:
    """An AIS-SART switched off after a rescue is no vessel hiding; an aircraft flies off."""
    run = Run()
    run.play(at(970123456, span(0, 1200, 60), 8000, 8000, speed=0.5, status=14),
             at(111232511, span(0, 100, 10), 0, 5000, speed=120.0, msg_type=9),
             at(SHIP, span(0, 100, 10), -3000, 5000, speed=8.0),
             at(111111111, span(0, 100, 10), 3000, -3000, speed=8.0),
             at(244000001, span(0, 4000, 30), 5000, 5000))
    # 111111111 is no SAR aircraft (MID 111 is not allocated) but a vessel's unset number.
    assert sorted(e.alert["mmsi"] for e in run.of("dark_vessel")) == [111111111, SHIP]


def test_a_dark_alert_raised_on_a_device_before_the_upgrade_ends_when_it_is_heard() -> None:
    """Restored from before devices were exempt: it still ends, or it stays open for ever."""
    old = Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                severity=Severity.WARNING, mmsi=970123456, started_at=T0)
    engine = Engine(rules_config(), port_zones())
    engine.restore([], [old])
    events = engine.process(report(970123456, 900, 8000, 8000, status=14))
    (end,) = [e for e in events if e.alert["rule"] == "dark_vessel"]
    assert (end.transition, end.alert["id"], end.alert["state"]) == ("end", old.id, "ended")


def test_a_vessel_heard_once_is_not_dark() -> None:
    """A garbled message carries a random MMSI heard once: that is no vessel going dark."""
    run = Run()
    run.play(at(SHIP, [0], *OPEN_WATER, speed=8.0),
             at(244000001, span(0, 2000, 30), 5000, 5000))
    assert run.of("dark_vessel") == []
    run = Run()  # heard twice: dark
    run.play(at(SHIP, [0, 10], *OPEN_WATER, speed=8.0),
             at(244000001, span(0, 2000, 30), 5000, 5000))
    assert [e.transition for e in run.of("dark_vessel")] == ["new"]
    run = Run()  # once, then again after the threshold: no catch-up alert for the gap
    run.play(at(SHIP, [0, *span(700, 2000, 10)], *OPEN_WATER, speed=8.0),
             at(244000001, span(0, 2000, 30), 5000, 5000))
    assert run.of("dark_vessel") == []


def test_a_dark_vessel_that_never_returns_ends_forgotten_and_leaves_nothing_behind() -> None:
    run = Run(picture={"forget_s": 3600})
    run.play(ship_then_silence(), at(244000001, span(0, 3690, 30), 5000, 5000))
    assert [e.transition for e in run.of("dark_vessel")] == ["new"]
    run.play(at(244000001, span(3720, 3900, 30), 5000, 5000))
    end = run.of("dark_vessel", "end")[0]
    assert end.alert["details"]["end_reason"] == "forgotten"
    assert SHIP not in run.engine.picture.vessels
    dark = next(r for r in run.engine.rules if r.name == "dark_vessel")
    assert SHIP not in dark._limit and SHIP not in dark._due  # type: ignore[attr-defined]


def _heard_lines() -> list[tuple[float, bytes]]:
    """SHIP heard by rx2 until t=100, and by rx1 once, as a copy of rx2's report at t=50
    that came a second later (merged into that report as a duplicate). rx2 falls silent with
    the ship; rx1 hears another vessel throughout."""
    def line(receiver: str, t: float, mmsi: int, dx: float, dy: float) -> tuple[float, bytes]:
        lon, lat = lonlat(dx, dy)
        data = {"mmsi": mmsi, "lat": lat, "lon": lon, "speed": 8.0, "course": 90.0}
        return t, (tag_block(s=receiver, c=int(T0 + t)) + single(position(**data))).encode()

    lines = [line("rx1", t, 244000001, 5000, 5000) for t in span(0, 1000, 10)]
    lines += [line("rx2", t, 244000002, -5000, 5000) for t in span(0, 100, 10)]
    lines += [line("rx2", t, SHIP, *OPEN_WATER) for t in span(0, 100, 10)]
    lines.append(line("rx1", 51, SHIP, *OPEN_WATER))  # the same payload: a duplicate
    return sorted(lines, key=lambda item: item[0])


@pytest.mark.parametrize("read_ahead", [1, 7, 1000])
def test_a_receiver_that_heard_the_vessel_only_through_a_duplicate_is_its_receiver(
        read_ahead: int) -> None:
    """rx1's copy of a report rx2 gave first is merged into it after the rules saw it: rx1
    still heard the vessel, so switching AIS off while cutting rx2 is no excuse (only a
    source_silent for rx2 came out)."""
    engine = Engine(rules_config(), port_zones())
    events: list[Any] = []

    class Sink:
        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        def on_report(self, report: Report) -> None: ...

        def on_alert(self, event: Any) -> None:
            events.append(event)

    pipeline = Pipeline(Ingestor(), engine, [Sink()])
    lines = [("log", data, None) for _, data in _heard_lines()]
    for start in range(0, len(lines), read_ahead):
        pipeline.feed_lines(lines[start:start + read_ahead])
    pipeline.finish()
    assert engine.picture.vessels[SHIP].sources == {"rx2": T0 + 100, "rx1": T0 + 50}
    dark = [e.alert for e in events if e.alert["rule"] == "dark_vessel"]
    assert [(a["mmsi"], a["started_at"], a["details"]["receivers"]) for a in dark] == [
        (SHIP, "2026-01-01T12:01:40Z", ["rx1"])]
    assert [e.alert["details"]["receiver"] for e in events
            if e.alert["rule"] == "source_silent"] == ["rx2"]


def _behind(run: Run, seconds: float, lag: float, *, ship_until: float) -> None:
    """In arrival order: rx-a (right clock) hears a beacon, rx-b (stamps ``lag`` s behind)
    hears SHIP until ``ship_until`` and a beacon of its own all the time, every 10 s."""
    for t in span(0, seconds, 10):
        run.feed(report(244000001, t, 5000, 5000, sources=("rx-a",)))
        run.feed(report(244000002, t - lag, -5000, 5000, sources=("rx-b",)))
        if t <= ship_until:
            run.feed(report(SHIP, t - lag, *OPEN_WATER, speed=8.0, sources=("rx-b",)))
        run.tick(t + 5)


def test_a_receiver_stamping_behind_the_port_clock_does_not_make_its_vessels_dark() -> None:
    """rx-b's clock runs 700 s behind: its vessel, heard every 10 s, is not silent (it was
    dark on every report, gap_s 10, judged against the port's clock)."""
    run = Run()
    _behind(run, 1500, 700, ship_until=1500)
    assert run.of("dark_vessel") == []


def test_a_vessel_of_a_receiver_stamping_behind_goes_dark_on_that_receivers_clock() -> None:
    run = Run()
    _behind(run, 2500, 700, ship_until=1000)
    (event,) = run.of("dark_vessel")
    alert = event.alert
    assert alert["started_at"] == "2026-01-01T12:05:00Z"  # its last report: 1000 - 700
    assert alert["details"]["receivers"] == ["rx-b"]
    # Opened once rx-b's own clock passed the deadline (300 + 600), at port time 1600+.
    assert T0 + 1600 < event.time <= T0 + 1620


def test_a_vessel_still_heard_by_a_receiver_stamping_behind_is_not_dark() -> None:
    """Heard by rx-a and by rx-b (700 s behind) until 600, then by rx-b alone: rx-b's copies
    are 700 s older than rx-a's last, but on rx-b's clock the vessel is heard every 10 s."""
    run = Run()
    for t in span(0, 2500, 10):
        run.feed(report(244000001, t, 5000, 5000, sources=("rx-a",)))
        if t <= 600:
            run.feed(report(SHIP, t, *OPEN_WATER, speed=8.0, sources=("rx-a",)))
        run.feed(report(SHIP, t - 700, *OPEN_WATER, speed=8.0, sources=("rx-b",)))
        run.tick(t + 5)
    assert run.of("dark_vessel") == []


def test_saved_times_from_a_clock_far_ahead_are_clamped_on_a_live_restart(
        caplog: pytest.LogCaptureFixture) -> None:
    """One line stamped hours ahead went into the saved state (file and stdin sources of
    ``run`` were not guarded): restored as it was, the vessel looked heard until then and
    the engine's clock stood hours ahead. Live, times after wall time + max_clock_lead_s
    are taken as that time."""
    first = Run()
    first.play(ship_then_silence(), at(244000001, span(0, 300, 30), 5000, 5000))
    first.feed(report(SHIP, 6 * 3600, *OPEN_WATER, speed=8.0, sources=("rx1",)))
    states, alerts = _saved(first.engine)
    state = json.loads(json.dumps(first.engine.saved_state()))
    second = Run()
    second.engine.restore(states, alerts, state, latest=T0 + 310)
    assert second.engine.newest == T0 + 310
    assert "1 vessels and 1 receivers had times after" in caplog.text
    second.play(at(244000001, span(330, 1200, 30), 5000, 5000))
    (event,) = second.of("dark_vessel")
    assert event.alert["started_at"] == "2026-01-01T12:05:10Z"  # the clamped last_seen


def _relocated_out(last_s: float) -> Run:
    """Under way 5 km inside coverage, then three agreeing reports 50 km out (a relocation)
    and more there until ``last_s``; another vessel keeps the receiver heard."""
    run = Run()
    run.feed(*(report(SHIP, t, 5000 + 3 * t, 5000, speed=6.0) for t in span(0, 90, 10)))
    run.feed(*(report(SHIP, t, 50000, 50000 + 3 * (t - 91), speed=6.0)
               for t in span(91, last_s, 1 if last_s < 100 else 10)))
    run.feed(*(report(244000001, t, -5000, 5000) for t in span(100, last_s + 900, 10)))
    return run


def test_a_relocation_out_of_coverage_just_before_silence_is_judged_on_the_fix_before() -> None:
    """Three reports 50 km out, sent in as many seconds before switching off: accepted as a
    relocation, they took the vessel out of coverage and out of the rule."""
    run = _relocated_out(93)
    (dark,) = run.of("dark_vessel", "new")
    assert (dark.alert["lat"], dark.alert["lon"]) == lonlat(50000, 50006)[::-1]  # last fix
    before = dark.alert["details"]["before_jump"]
    assert (before["lon"], before["lat"]) == lonlat(5270, 5000)
    assert before["jumped_at"] == "2026-01-01T12:01:33Z"
    assert dark.alert["details"]["edge_distance_m"] == pytest.approx(20000 - 5270, abs=1)


def test_a_relocated_track_heard_for_moving_s_is_the_vessels_own() -> None:
    run = _relocated_out(800)  # relocated at 111 s (three reports 10 s apart)
    assert run.of("dark_vessel") == []
