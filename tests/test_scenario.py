"""The scenario generator's output: determinism, variety, the log format (tag blocks,
checksums, receivers, duplicates, message types, order), reporting intervals and the truth
file. The round trip through the rules is in ``test_scenario_roundtrip.py``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path

import pytest
from pyais import decode

from geofence.zones import ZoneSet
from replay.scenario import Scenario, Truth, build_scenario, generate_scenario
from replay.scenario.writer import checksum
from tests.scenario_helpers import DEMO_ZONES, synthetic_port

LINE = re.compile(r"^\\s:(?P<rx>[a-z0-9-]+),c:(?P<c>\d+)\*(?P<tcs>[0-9A-F]{2})\\"
                  r"(?P<nmea>!AIVDM,(?P<body>[^*]+)\*(?P<cs>[0-9A-F]{2}))$")


@cache
def demo(seed: int = 5, hours: float = 1.0) -> Scenario:
    return build_scenario(ZoneSet.from_geojson(DEMO_ZONES), seed=seed, hours=hours, scale=0.5)


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    outs = []
    for run in ("a", "b"):
        log, truth = tmp_path / f"{run}.nmea", tmp_path / f"{run}.json"
        summary = generate_scenario(DEMO_ZONES, seed=42, hours=0.75, out=log, truth=truth,
                                    scale=0.5)
        outs.append((log.read_bytes(), truth.read_bytes()))
        assert summary.lines == len(log.read_bytes().splitlines())
        assert summary.out == log and summary.truth == truth
    assert outs[0] == outs[1]
    other = tmp_path / "c.nmea"
    generate_scenario(DEMO_ZONES, seed=43, hours=0.75, out=other, truth=tmp_path / "c.json",
                      scale=0.5)
    assert other.read_bytes() != outs[0][0]


def test_seeds_vary_the_scenario() -> None:
    zones = ZoneSet.from_geojson(synthetic_port())
    truths = [build_scenario(zones, seed=s, hours=1.0).truth for s in (1, 2, 3)]
    vessel_counts = {len(t.vessels) for t in truths}
    starts = {t.start for t in truths}
    windows = {tuple(sorted((a.rule, a.window) for a in t.anomalies)) for t in truths}
    receivers = {tuple(t.receivers) for t in truths}
    assert len(starts) == 3 and len(windows) == 3
    assert len(vessel_counts) >= 2 or len(receivers) >= 2
    fleets = [{v["mmsi"] for v in t.vessels if v["role"] != "allowed"} for t in truths]
    assert not fleets[0] & fleets[1] and not fleets[1] & fleets[2]
    mixes = {tuple(sorted(Counter(v["role"] for v in t.vessels).items())) for t in truths}
    assert len(mixes) == 3


def test_start_can_be_given() -> None:
    start = 1_767_268_800.0  # 2026-01-01T12:00:00Z
    sc = build_scenario(ZoneSet.from_geojson(DEMO_ZONES), seed=3, hours=0.5, start=start,
                        scale=0.3)
    assert sc.truth.start == start and sc.truth.end == start + 1800
    first = int(LINE.match(sc.lines[0])["c"])  # type: ignore[index]
    last = int(LINE.match(sc.lines[-1])["c"])  # type: ignore[index]
    assert start <= first < start + 60
    assert start + 1800 - 60 < last <= start + 1801


def test_every_line_has_a_valid_tag_block_and_checksum_and_is_in_time_order() -> None:
    sc = demo()
    times = []
    receivers = Counter()
    for line in sc.lines:
        m = LINE.match(line)
        assert m is not None, line
        assert checksum(f"s:{m['rx']},c:{m['c']}") == m["tcs"]
        assert checksum("AIVDM," + m["body"]) == m["cs"]
        times.append(int(m["c"]))
        receivers[m["rx"]] += 1
    assert times == sorted(times)
    assert set(receivers) == set(sc.truth.receivers) and len(receivers) == 2
    assert all(n > 100 for n in receivers.values())


def _decoded(sc: Scenario) -> list[tuple[int, str, str, dict[str, object]]]:
    """(time, receiver, payload key, decoded fields), multipart groups joined per receiver."""
    out = []
    pending: dict[str, list[str]] = {}
    for line in sc.lines:
        m = LINE.match(line)
        assert m is not None
        fields = m["body"].split(",")
        total, number = int(fields[0]), int(fields[1])
        if total == 1:
            parts = [m["nmea"]]
        else:
            pending.setdefault(m["rx"], []).append(m["nmea"])
            if number < total:
                continue
            parts = pending.pop(m["rx"])
        msg = decode(*parts).asdict()
        key = "".join(p.split(",")[5] for p in parts)
        out.append((int(m["c"]), m["rx"], key, msg))
    return out


def test_message_types_duplicates_and_base_stations() -> None:
    decoded = _decoded(demo())
    types = Counter(msg["msg_type"] for _, _, _, msg in decoded)
    for t in (1, 4, 5, 18, 24):
        assert types[t] > 0, (t, types)
    parts = Counter(msg["partno"] for _, _, _, msg in decoded if msg["msg_type"] == 24)
    assert parts[0] > 0 and parts[1] > 0
    # The same payload heard by both receivers within a second or so: duplicates.
    heard_by: dict[str, set[str]] = defaultdict(set)
    for _, rx, key, _ in decoded:
        heard_by[key].add(rx)
    assert sum(1 for rxs in heard_by.values() if len(rxs) == 2) > 100
    assert sum(1 for rxs in heard_by.values() if len(rxs) == 1) > 100
    sart = [msg for _, _, _, msg in decoded if str(msg["mmsi"]).startswith("970")]
    assert sart and all(msg["status"] == 14 for msg in sart)


def test_reporting_intervals_follow_itu_r_m1371() -> None:
    """Moored class A every 3 min; class A under way 2-10 s; class B 30 s or 3 min."""
    decoded = _decoded(demo(seed=8, hours=1.0))
    first_copy: dict[str, int] = {}
    by_vessel: dict[int, list[tuple[int, dict[str, object]]]] = defaultdict(list)
    for t, _, key, msg in decoded:
        if key in first_copy or msg["msg_type"] not in (1, 3, 18):
            continue
        first_copy[key] = t
        by_vessel[int(msg["mmsi"])].append((t, msg))  # type: ignore[call-overload]
    moored_gaps, moving_gaps, b_gaps = [], [], []
    for reports in by_vessel.values():
        for (t0, m0), (t1, m1) in itertools.pairwise(reports):
            gap = t1 - t0
            if gap > 400:  # not heard for a while (outage, out of range, AIS off)
                continue
            if m0["msg_type"] == 18:
                b_gaps.append(gap)
            elif m0["status"] == 5 and m1["status"] == 5:
                moored_gaps.append(gap)
            elif m0["status"] == 0 and 3 < float(m0["speed"]) <= 14:  # type: ignore[arg-type]
                moving_gaps.append(gap)
    assert moored_gaps and all(175 <= g <= 185 for g in moored_gaps)
    assert moving_gaps and Counter(moving_gaps).most_common(1)[0][0] in (9, 10, 11)
    assert b_gaps and {Counter(b_gaps).most_common(1)[0][0]} <= {29, 30, 31, 179, 180, 181}


def test_truth_file_shape(tmp_path: Path) -> None:
    log, truth_path = tmp_path / "s.nmea", tmp_path / "s.json"
    summary = generate_scenario(ZoneSet.from_geojson(synthetic_port()), seed=11, hours=1.5,
                                out=log, truth=truth_path)
    data = json.loads(truth_path.read_text())
    assert data["seed"] == 11 and data["start"].endswith("Z") and data["end"].endswith("Z")
    assert data["receivers"] == summary.receivers
    for item in data["anomalies"]:
        start, end = item["window"]
        assert start.endswith("Z") and end.endswith("Z") and start < end
        assert data["start"] <= start <= data["end"]
        assert item["rule"] in data["rules"]
    for item in data["controls"]:
        assert "window" not in item and item["rule"] in data["rules"] and item["mmsi"]
    truth = Truth.load(truth_path)
    assert [a.rule for a in truth.anomalies] == [a["rule"] for a in data["anomalies"]]
    assert summary.anomalies == dict(Counter(a["rule"] for a in data["anomalies"]))
    assert "zone_entry" not in summary.anomalies and "zone_exit" not in summary.anomalies


def test_only_registered_rules_get_anomalies() -> None:
    sc = build_scenario(ZoneSet.from_geojson(DEMO_ZONES), seed=4, hours=1.5, scale=0.3,
                        rules=["speeding", "loitering", "dark_vessel"])
    assert {a.rule for a in sc.truth.anomalies} == {"speeding", "loitering", "dark_vessel"}
    assert {c.rule for c in sc.truth.controls} <= {"loitering", "dark_vessel"}
    assert sc.truth.stats["outages"] == []  # no source_silent: both receivers stay up


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="hours"):
        build_scenario(ZoneSet.from_geojson(DEMO_ZONES), seed=1, hours=0)
    from replay.scenario import LayoutError
    no_coverage = {"type": "FeatureCollection", "features": [
        f for f in synthetic_port()["features"]
        if f["properties"]["kind"] not in ("coverage", "port_limit")]}
    with pytest.raises(LayoutError, match="coverage or port_limit"):
        build_scenario(ZoneSet.from_geojson(no_coverage), seed=1, hours=1)


def test_the_port_config_shapes_the_anomalies_and_the_truth() -> None:
    """The truth took the default rules whatever the port's config said: anomalies of a
    rule switched off, an outage of a receiver the config does not alert on."""
    from harbourwatch.config import RulesConfig

    config = RulesConfig.model_validate({"encounter": {"enabled": False},
                                         "source_silent": {"receivers": ["rx-quay-*"]}})
    truth = build_scenario(ZoneSet.from_geojson(DEMO_ZONES), seed=5, hours=1.0, scale=0.5,
                           config=config).truth
    assert "encounter" not in truth.rules
    assert truth.skipped["encounter"] == "switched off in the config " \
        "(rules.encounter.enabled: false)"
    assert "rules.source_silent.receivers leaves out" in truth.skipped["source_silent"]
    assert not {"encounter", "source_silent"} & {a.rule for a in truth.anomalies}


def test_score_counts_alerts_not_transition_lines_and_lists_the_unexpected() -> None:
    """A control's loitering alert with new and end lines was two false alarms; an alert on
    a vessel neither planted nor a control was not reported at all."""
    from replay.scenario import Expectation, check

    t0 = 1_767_225_600.0
    truth = Truth(seed=1, start=t0, end=t0 + 3600, zones="z", rules=["loitering", "zone_entry",
                                                                       "mmsi_conflict"],
                  receivers=["rx-a"],
                  anomalies=[Expectation("mmsi_conflict", 2, "shared", window=(t0, t0 + 60))],
                  controls=[Expectation("loitering", 1, "moored for hours")],
                  side_effects=[Expectation("loitering", 2, "side", side_effect=True)])

    def alert(id_: str, rule: str, mmsi: int, transition: str) -> dict[str, object]:
        return {"id": id_, "rule": rule, "mmsi": mmsi, "other_mmsi": None,
                "started_at": "2026-01-01T00:00:10Z", "transition": transition}

    lines = [alert("a", "mmsi_conflict", 2, "new"),
             alert("c", "loitering", 1, "new"), alert("c", "loitering", 1, "end"),
             alert("s", "loitering", 2, "new"),  # the side effect: expected
             alert("u", "loitering", 3, "new"), alert("u", "loitering", 3, "update"),
             alert("e", "zone_entry", 4, "new")]  # events are not judged
    verdict = check(truth, lines)
    assert verdict.missed == []
    assert [(c.mmsi, a["id"]) for c, a in verdict.false_alarms] == [(1, "c")]
    assert [a["id"] for a in verdict.unexpected] == ["u"]
    assert not verdict.ok
    # Unexpected alerts are for review: alone they do not fail the score.
    assert check(truth, lines[:1] + lines[3:]).ok
    # The truth file keeps the side effects.
    assert Truth.from_dict(json.loads(truth.dumps())).side_effects == truth.side_effects


def test_the_mmsi_conflict_injection_lists_its_side_effects() -> None:
    truth = demo().truth
    conflict = next(a for a in truth.anomalies if a.rule == "mmsi_conflict")
    assert {(e.rule, e.mmsi) for e in truth.side_effects} == {
        ("position_jump", conflict.mmsi), ("identity_change", conflict.mmsi)}
