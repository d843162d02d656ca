"""Field-by-field comparison with gpsd's own decoding of its regression sample.

gpsd's ``sample.aivdm.js.chk`` is its scaled JSON for ``sample.aivdm``. For every message of
types 1, 2, 3, 4, 5, 18, 19, 21, 24 we compare the fields the design names. Differences that
are representation, not value, are mapped here and explained:

- positions: gpsd prints 7 decimals, pyais rounds to 6; AIS resolution is 1/10000 minute
  (1.67e-6 degrees), so the tolerance is exactly one AIS unit;
- "not available" values: gpsd prints the raw sentinel (heading 511, turn "n/a", speed
  102.3, course 360, lat 91/lon 181); harbourwatch reports null by design;
- turn ±127 means "turning faster than 5°/30 s, no indicator": gpsd prints
  "fastright"/"fastleft", harbourwatch keeps ``turn`` null and says so in
  ``turn_indicator``;
- positions out of range (a corrupt type 4 in the sample says lat 109, lon 205) are null;
- ship type 0, IMO 0, draught 0 and empty strings mean "not available": null here;
- type 24: gpsd merges parts A and B of one vessel into one record; harbourwatch reports
  each part as it is heard, so the gpsd record is compared with the union of both parts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest.ingestor import Ingestor
from ingest.logfile import read_log_lines
from ingest.report import Report
from tests.paths import FIXTURES

TYPES = {1, 2, 3, 4, 5, 18, 19, 21, 24}
AIS_UNIT_DEG = 1 / 600000  # 1/10000 minute
SENTINELS = {"heading": 511, "speed": 102.3, "course": 360.0, "lat": 91.0, "lon": 181.0}


def _ours() -> list[Report]:
    # No de-duplication: the sample repeats some sentences on purpose, and gpsd decodes each.
    ingestor = Ingestor(dedup_window_s=-1.0)
    reports: list[Report] = []
    for line in read_log_lines(str(FIXTURES / "gpsd" / "sample.aivdm")):
        reports.extend(ingestor.feed("gpsd", line, None))
    reports.extend(ingestor.flush())
    return reports


def _theirs() -> list[dict[str, Any]]:
    path = FIXTURES / "gpsd" / "sample.aivdm.js.chk"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _expected(field: str, value: Any) -> Any:
    """gpsd's value in harbourwatch's representation."""
    if field in SENTINELS and value == SENTINELS[field]:
        return None
    if (field == "lat" and abs(value) > 90) or (field == "lon" and abs(value) > 180):
        return None  # a corrupt report (gpsd prints lat 109, lon 205): no position at all
    if field in ("shiptype", "imo", "draught") and value == 0:
        return None
    if isinstance(value, str) and field in ("shipname", "callsign", "destination"):
        return value.strip() or None
    return value


def _compare(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    problems = []
    for field in ("lat", "lon", "speed", "course", "heading", "status", "shipname", "callsign",
                  "imo", "shiptype", "to_bow", "to_stern", "to_port", "to_starboard",
                  "draught", "destination"):
        if field not in theirs:
            continue
        want = _expected(field, theirs[field])
        if field == "shipname" and theirs.get("type") == 21:
            want = _expected(field, theirs.get("name"))
        got = ours.get(field)
        if field in ("lat", "lon") and want is not None and got is not None:
            if abs(want - got) > AIS_UNIT_DEG:
                problems.append(f"{field}: gpsd {want} ours {got}")
        elif field in ("speed", "course", "draught") and want is not None and got is not None:
            if abs(want - got) > 0.05:  # one tenth of a knot / degree / metre resolution
                problems.append(f"{field}: gpsd {want} ours {got}")
        elif want != got:
            problems.append(f"{field}: gpsd {want!r} ours {got!r}")
    if "turn" in theirs:
        turn = theirs["turn"]
        if turn == "n/a":
            ok = ours.get("turn") is None and "turn_indicator" not in ours
        elif turn in ("fastleft", "fastright"):
            ok = ours.get("turn") is None and ours.get("turn_indicator") == turn
        else:
            ok = ours.get("turn") is not None and abs(float(turn) - ours["turn"]) < 0.01
        if not ok:
            problems.append(f"turn: gpsd {turn!r} ours {ours.get('turn')!r}")
    return problems


def test_every_gpsd_record_matches_field_by_field() -> None:
    ours = [r.to_dict() for r in _ours()]
    theirs = [t for t in _theirs() if t["type"] in TYPES]
    assert len(theirs) == 21
    cursor = 0
    compared = 0
    for record in theirs:
        if record["type"] == 24:
            parts = [o for o in ours if o["msg_type"] == 24 and o["mmsi"] == record["mmsi"]]
            assert {p["partno"] for p in parts} == {0, 1}, record["mmsi"]
            merged: dict[str, Any] = {}
            for part in parts:
                merged.update(part)
            assert _compare(record, merged) == [], record
            compared += 1
            continue
        # gpsd and harbourwatch emit messages in the same order: walk forward to the match.
        while cursor < len(ours) and not (ours[cursor]["msg_type"] == record["type"]
                                          and ours[cursor]["mmsi"] == record["mmsi"]):
            cursor += 1
        assert cursor < len(ours), f"no decoded message for gpsd record {record}"
        assert _compare(record, ours[cursor]) == [], (record, ours[cursor])
        cursor += 1
        compared += 1
    assert compared == len(theirs)


@pytest.mark.parametrize("msg_type", sorted(TYPES))
def test_each_type_is_present_in_the_comparison(msg_type: int) -> None:
    assert any(t["type"] == msg_type for t in _theirs())


def test_type_17_positions_are_scaled_to_degrees() -> None:
    """pyais leaves type 17 positions in raw units (3599.2 for 60°); we report degrees.

    gpsd prints them rounded to 0.1° (59.9867 → 60.0), hence the tolerance.
    """
    ours = {r.mmsi: r for r in _ours() if r.msg_type == 17}
    theirs = [t for t in _theirs() if t["type"] == 17]
    assert theirs
    for record in theirs:
        report = ours[record["mmsi"]]
        assert report.lat == pytest.approx(record["lat"], abs=0.05)
        assert report.lon == pytest.approx(record["lon"], abs=0.05)


def test_messages_of_every_type_decode_or_are_counted() -> None:
    ingestor = Ingestor(dedup_window_s=-1.0)
    for line in read_log_lines(str(FIXTURES / "gpsd" / "sample.aivdm")):
        ingestor.feed("gpsd", line, None)
    ingestor.flush()
    health = ingestor.health("gpsd")
    assert health.lines == health.sentences + health.meta + sum(health.rejected.values())
    decoded_types = set(health.by_type)
    assert set(range(1, 28)) - decoded_types <= {28}, sorted(set(range(1, 28)) - decoded_types)
