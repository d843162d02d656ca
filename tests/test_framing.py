"""Framing, rejection counting, de-duplication, and whole fixtures through the ingestor."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ingest import framing
from ingest import ingestor as ingestor_module
from ingest.framing import Meta, Sentence, frame
from ingest.ingestor import Ingestor
from ingest.logfile import read_log_lines
from ingest.nmea import xor_checksum
from tests.ingest_helpers import (
    balanced,
    checksum,
    feed_all,
    fixture,
    position,
    sentence,
    single,
    tag_block,
)

T0 = 1_700_000_000.0
LINE = single(position())
#: AIS position resolution: 1/10000 minute.
AIS_RES = 1 / 600000


def _flip_checksum(line: str) -> str:
    star = line.rindex("*")
    wrong = (int(line[star + 1:star + 3], 16) ^ 0x01)
    return f"{line[:star + 1]}{wrong:02X}{line[star + 3:]}"


@pytest.mark.parametrize("body", [b"", b"A", b"AIVDM,1,1,,A,13", b"x" * 81, bytes(range(33, 127))])
def test_fast_checksum_equals_byte_loop(body: bytes) -> None:
    assert f"{xor_checksum(body):02X}" == checksum(body.decode())


def test_valid_sentence_fields() -> None:
    result = frame(LINE.encode())
    assert isinstance(result, Sentence)
    assert (result.talker, result.own, result.count, result.number, result.channel) == (
        "AI", False, 1, 1, "A")
    assert result.raw == LINE.encode()
    assert result.time is None
    # Line endings and surrounding blanks are not part of the sentence.
    assert frame((LINE + "\r\n").encode()) == result


def test_checksum_failures_are_counted_and_dropped() -> None:
    ingestor = Ingestor()
    lines = [
        _flip_checksum(LINE),
        _flip_checksum(tag_block(c=int(T0)) + LINE),  # sentence checksum behind a tag block
        LINE.replace("*", "#"),  # no checksum separator
        LINE[:-1],  # one hex digit
        LINE,
    ]
    out = feed_all(ingestor, "rx", lines, received=T0)
    assert len(out) == 1
    health = ingestor.health("rx")
    assert health.rejected == {"checksum": 2, "no_checksum": 2}
    assert health.checksum_failures == 2
    assert health.messages == 1
    balanced(ingestor)


def test_tag_block_checksum_is_verified() -> None:
    good = tag_block(c=int(T0), s="rx1")
    bad = good.replace(good[-3:-1], f"{int(good[-3:-1], 16) ^ 1:02X}")
    assert bad != good
    assert frame((bad + LINE).encode()) == framing.BAD_TAGBLOCK
    assert frame(("\\c:1700000000" + LINE).encode()) == framing.BAD_TAGBLOCK  # unterminated
    assert frame(("\\c:1700000000\\" + LINE).encode()) == framing.BAD_TAGBLOCK  # no checksum
    assert isinstance(frame((good + LINE).encode()), Sentence)
    ingestor = Ingestor()
    feed_all(ingestor, "rx", [bad + LINE, good + LINE])
    assert ingestor.health("rx").rejected == {"tagblock_checksum": 1}
    assert ingestor.health("rx").checksum_failures == 1


def test_bare_tag_block_line_is_meta() -> None:
    """aisabnormal writes ``\\si:AISD*3F\\`` on a line of its own."""
    assert isinstance(frame(b"\\si:AISD*3F\\"), Meta)


@pytest.mark.parametrize(("line", "reason"), [
    (b"", framing.EMPTY),
    (b"   ", framing.EMPTY),
    (b"# a comment", framing.COMMENT),
    (b"IamNotAnAisMessage1111", framing.JUNK),
    (b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0\xff*23", framing.NOT_ASCII),
    (b"!" + b"A" * 2000, framing.TOO_LONG),
    (b"$GPZDA,114702.51,27,01,2012,,*66", framing.NOT_AIS),
    (b"!AIPWR,UNIT=0,POWER=1*05", framing.NOT_AIS),
])
def test_rejection_reasons(line: bytes, reason: str) -> None:
    assert frame(line) == reason


def test_serial_nul_padding_and_a_byte_order_mark_do_not_lose_the_sentence() -> None:
    clean = frame(LINE.encode())
    assert isinstance(clean, Sentence)
    for padded in (b"\x00\x00" + LINE.encode() + b"\x00\r\n", b"\xef\xbb\xbf" + LINE.encode()):
        framed = frame(padded)
        assert isinstance(framed, Sentence) and framed.payload == clean.payload
    assert frame(b"\xef\xbb\xbf") == framing.EMPTY
    assert frame(b"\xef\xbb\xbf\xff!AIVDM") == framing.NOT_ASCII


def test_a_station_with_control_characters_names_no_receiver() -> None:
    """An escape sequence in ``s:`` reached the log as it was: it could erase a terminal's
    line and print a forged one."""
    forged = frame((tag_block(s="rx\x1b[2K\x1b[0GFAKE", c=1_767_268_800) + LINE).encode())
    plain = frame((tag_block(s="AIS Station-2", c=1_767_268_800) + LINE).encode())
    assert isinstance(forged, Sentence) and isinstance(plain, Sentence)
    assert (forged.station, forged.time) == (None, 1_767_268_800)
    assert plain.station == "AIS Station-2"


def test_malformed_and_bad_payload() -> None:
    assert frame(sentence("13HOI:0P0000VOHLCnHQKwvL05Ip", channel="Z").encode()) == (
        framing.MALFORMED)
    assert frame(sentence("13HOI:0P0000VOHLCnHQKwvL05Ip", fill=7).encode()) == framing.MALFORMED
    assert frame(sentence("13HOI:0P0000 VOHLCnHQKw").encode()) == framing.BAD_PAYLOAD
    assert frame(sentence("").encode()) == framing.BAD_PAYLOAD
    body = "AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0,extra"
    assert frame(f"!{body}*{checksum(body)}".encode()) == framing.MALFORMED


@pytest.mark.parametrize("talker", ["AI", "AB", "BS", "SA", "--", "=I", "AS"])
def test_odd_talkers_with_valid_checksum_are_accepted(talker: str) -> None:
    line = single(position(), talker=talker)
    result = frame(line.encode())
    assert isinstance(result, Sentence)
    assert result.talker == talker
    out = feed_all(Ingestor(), "rx", [line], received=T0)
    assert [r.mmsi for r in out] == [244123456]


def test_channels_1_and_2_mean_a_and_b() -> None:
    one = frame(single(position(), channel="1").encode())
    two = frame(single(position(), channel="2").encode())
    assert isinstance(one, Sentence) and isinstance(two, Sentence)
    assert (one.channel, two.channel) == ("A", "B")


def test_vdo_is_marked_own_and_counted() -> None:
    ingestor = Ingestor()
    out = feed_all(ingestor, "rx", [single(position(mmsi=211000001), kind="VDO"),
                                    single(position(mmsi=211000002))], received=T0)
    assert [(r.mmsi, r.own) for r in out] == [(211000001, True), (211000002, False)]
    assert out[0].to_dict()["own"] is True
    health = ingestor.health("rx")
    assert health.own_messages == 1
    assert health.messages == 2


# -- de-duplication ----------------------------------------------------------------------

def test_duplicate_from_two_sources_within_window_is_one_report() -> None:
    ingestor = Ingestor()
    first = feed_all(ingestor, "north", [LINE], received=T0)
    second = feed_all(ingestor, "south", [LINE], received=T0 + 2.5)
    assert len(first) == 1
    assert second == []
    assert first[0].sources == ["north", "south"]
    assert ingestor.health("north").duplicates == 0
    assert ingestor.health("south").duplicates == 1
    assert ingestor.health("south").messages == 0
    assert ingestor.receivers["south"].messages == 1


def test_duplicate_after_window_is_a_new_report() -> None:
    ingestor = Ingestor()
    first = feed_all(ingestor, "north", [LINE], received=T0)
    second = feed_all(ingestor, "south", [LINE], received=T0 + 3.5)
    assert len(first) == 1
    assert len(second) == 1
    assert first[0].sources == ["north"]
    assert second[0].sources == ["south"]
    assert ingestor.health("south").duplicates == 0


def test_reports_are_remembered_in_the_order_they_were_made() -> None:
    """A message that comes again beyond the window is a new report, remembered as the
    newest: the oldest remembered is then vessel 2's, and housekeeping forgets it on time
    (two windows after it) rather than when the older message's slot falls due."""
    ingestor = Ingestor()

    def at(t: int, mmsi: int, receiver: str = "rx1") -> str:
        return tag_block(s=receiver, c=int(T0) + t) + single(position(mmsi=mmsi))

    out = feed_all(ingestor, "feed", [at(0, 244000001), at(1, 244000002), at(4, 244000001)])
    assert [r.mmsi for r in out] == [244000001, 244000002, 244000001]
    assert ingestor.oldest_remembered() is out[1]
    out += feed_all(ingestor, "feed", [at(8, 244000003)])  # vessel 2's report is forgotten
    assert ingestor.oldest_remembered() is out[2]
    # So a copy of it from a receiver lagging by 7 s is a report of its own.
    late = feed_all(ingestor, "feed", [at(3, 244000002, "rx2")])
    assert [r.sources for r in late] == [["rx2"]]
    assert out[1].sources == ["rx1"]


def test_a_clock_far_ahead_cannot_make_the_duplicate_memory_grow_without_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One line a day ahead stalls housekeeping (message time) for a day: a size bound holds."""
    monkeypatch.setattr(ingestor_module, "_MAX_RECENT", 100)
    ingestor = Ingestor()
    lines = [tag_block(s="bad", c=int(T0) + 86_400) + single(position(mmsi=244000000))]
    lines += [tag_block(s="rx1", c=int(T0) + i) + single(position(mmsi=244000000 + i))
              for i in range(1, 501)]
    out = feed_all(ingestor, "feed", lines)
    assert len(out) == 501
    assert len(ingestor._recent) == 100
    # The newest messages are still recognised when another receiver repeats them.
    again = tag_block(s="rx2", c=int(T0) + 500) + single(position(mmsi=244000500))
    assert feed_all(ingestor, "feed", [again]) == []
    assert out[-1].sources == ["rx1", "rx2"]


def test_duplicate_multipart_message_and_tag_block_stations() -> None:
    """Receivers behind one feed are told apart by the tag block ``s:``."""
    from tests.ingest_helpers import multipart, static

    ingestor = Ingestor()
    parts = multipart(static(), 2, seq="1")
    a = [tag_block(s="rA", c=int(T0)) + parts[0], parts[1]]
    b = [tag_block(s="rB", c=int(T0) + 1) + parts[0], parts[1]]
    out = feed_all(ingestor, "feed", a + b)
    assert [(r.msg_type, r.sources) for r in out] == [(5, ["rA", "rB"])]
    assert ingestor.health("feed").duplicates == 1


# -- whole fixtures ----------------------------------------------------------------------

def _run(path: str, source: str = "log") -> tuple[Ingestor, list[Any]]:
    ingestor = Ingestor()
    out = feed_all(ingestor, source, read_log_lines(path), flush=True)
    return ingestor, out


def test_risky_exact_earth_with_tag_block() -> None:
    ingestor, out = _run(str(fixture("risky", "exact-earth-with-tag-block.txt")))
    assert len(out) == 200  # amsa-code/risky expects 200 messages
    health = ingestor.health("log")
    assert health.lines == 221
    assert health.messages == 200
    assert not health.rejected
    assert not health.fragments_dropped
    match = [r for r in out if r.mmsi == 636091763 and r.time == 1334337317.0]
    assert match, "mmsi 636091763 at 1334337317"
    assert match[0].lat == pytest.approx(-13.0884285, abs=AIS_RES)
    assert match[0].sources == ["rEV02"]
    assert match[0].time_source == "tagblock"
    # its project counts 178 position fixes among them
    with_position = [r for r in out if r.has_position]
    assert len(with_position) >= 178


def test_libais_test_log_decodes_or_counts_every_line() -> None:
    """Its line 312 is a type 27 too short for its fields: counted, not an exception."""
    ingestor, out = _run(str(fixture("libais", "test.aivdm")))
    health = ingestor.health("log")
    assert health.decode_errors["missing_fields"] >= 1
    assert health.messages == len(out) > 200
    short = b"!AIVDM,1,1,,B,KktDVAq=;h,4*39,d-120,S0364,t082309.00,T09.72717154,r09SGHA1,1272442990"
    alone = Ingestor()
    assert feed_all(alone, "log", [short.decode()]) == []
    assert alone.health("log").decode_errors == {"missing_fields": 1}


def test_message_types_outside_1_to_27_are_unknown_not_reports() -> None:
    """ITU-R M.1371 defines types 1-27; 0 and 28-63 are no message. libais's test log has 17
    reserved type 28 sentences ("L..."), which went on as reports of their random MMSIs,
    and a type-1 payload with its first character garbled to '0' went on as a type 0
    position fix (pyais keys type 0 to its type 1 class)."""
    ingestor, out = _run(str(fixture("libais", "test.aivdm")))
    health = ingestor.health("log")
    assert health.decode_errors["unknown_type"] == 17
    assert 28 not in health.by_type and all(r.msg_type != 28 for r in out)
    type1 = "16:=?;0P00`SstvFnFbeGH6L088h"  # pyais/messages.ais
    lines = [sentence("0" + type1[1:]), sentence("L" + type1[1:]), sentence("w" + type1[1:]),
             sentence("0"), sentence("L"), sentence(type1)]
    alone = Ingestor()
    reports = feed_all(alone, "log", lines, received=T0)
    assert [(r.msg_type, r.mmsi) for r in reports] == [(1, 413355820)]
    assert alone.health("log").decode_errors == {"unknown_type": 5}
    assert dict(alone.health("log").by_type) == {1: 1}


def test_every_payload_cut_short_at_every_length_is_decoded_or_counted() -> None:
    """One single-part payload of each first character in the real captures, cut after
    every character with every fill: no exception leaves ingest, every message is counted."""
    payloads: dict[bytes, bytes] = {}
    for name in ("gpsd/sample.aivdm", "libais/test.aivdm", "aislib/stream_example.txt"):
        for line in read_log_lines(str(fixture(*name.split("/")))):
            match = re.search(rb"!\w\wVD[MO],1,1,[^,]*,[^,]*,([^,]+),\d\*", line)
            if match:
                payloads.setdefault(match.group(1)[:1], match.group(1))
    assert len(payloads) >= 25
    ingestor = Ingestor()
    lines = []
    for payload in payloads.values():
        for end in range(1, len(payload) + 1):
            for fill in range(6):
                lines.append(sentence(payload[:end].decode(), fill))
    reports = feed_all(ingestor, "cut", lines, received=T0)
    health = ingestor.health("cut")
    assert health.sentences == len(lines)
    assert health.messages + sum(health.decode_errors.values()) + health.duplicates == len(lines)
    assert health.messages == len(reports) > 1000
    assert health.decode_errors["missing_fields"] > 100


def test_libais_typeexamples_decode_or_are_counted() -> None:
    path = fixture("libais", "typeexamples.nmea")
    expected = [json.loads(line) for line in fixture("libais", "typeexamples.json")
                .read_text().splitlines() if line.strip()]
    ingestor, out = _run(str(path))
    health = ingestor.health("log")
    assert health.lines == 26
    decoded = health.messages + sum(health.decode_errors.values())
    assert decoded + sum(health.rejected.values()) == 26
    assert health.messages == 26
    assert [(r.msg_type, r.mmsi) for r in out] == [(e["type"], e["mmsi"]) for e in expected]
    for report, want in zip(out, expected, strict=True):
        assert report.time_source == "line"  # the USCG station epoch after the checksum
        lat, lon = want.get("lat"), want.get("lon")
        if lat is None or lon is None or report.msg_type == 17:
            continue
        if abs(lat) > 90 or abs(lon) > 180 or (lat == 0 and lon == 0):
            assert report.lat is None and report.lon is None
        else:
            # libais stores float32: allow its rounding on top of one AIS unit
            assert report.lat == pytest.approx(lat, abs=AIS_RES + 1e-5)
            assert report.lon == pytest.approx(lon, abs=AIS_RES + 1e-5)


def test_libais_tagblock_fixture_stations_and_times() -> None:
    ingestor, out = _run(str(fixture("libais", "tagblock.nmea")))
    singles = [(r.mmsi, r.time, r.sources) for r in out if r.msg_type == 1]
    assert singles == [
        (224651000, 1418172113.0, ["rORBCOMM104"]),
        (224651000, 1418171722.0, ["rORBCOMM007"]),
        (224651000, 1418171561.0, ["rORBCOMM007"]),
    ]
    balanced(ingestor)


def test_gladstone_log_counts_every_line() -> None:
    ingestor, out = _run(str(fixture("demo-port", "ais-gladstone-2012-01-27.txt.gz")))
    health = ingestor.health("log")
    assert health.lines == 44687
    assert health.lines == health.sentences + health.meta + sum(health.rejected.values())
    assert health.rejected["checksum"] >= 3
    assert health.rejected["not_ais"] > 10000  # $PSHI, $AIVSI, $GPZDA, !AIPWR, alarms
    assert health.messages == len(out)
    assert health.messages + health.duplicates + sum(health.decode_errors.values()) > 30000
    assert health.by_type[4] > 3000
    assert health.own_messages > 0
    # The corrupted talker `!=IVDM` with a valid checksum is accepted.
    assert any(n.startswith("!=IVDM") for r in out for n in r.nmea)
    for report in out:
        assert report.lat is None or -90 <= report.lat <= 90
        assert report.lon is None or -180 <= report.lon <= 180


def test_aisabnormal_gatehouse_recording() -> None:
    ingestor, out = _run(str(fixture("aisabnormal", "ais-sample.txt.gz")))
    health = ingestor.health("log")
    assert health.messages == 26077  # the figure its project documents
    assert health.meta > 26000  # a $PGHP before every message
    assert {r.time_source for r in out} <= {"line", "carried"}
    balanced(ingestor)


def test_checksum_digits_must_be_hex() -> None:
    """A corrupted checksum digit (``* 5``) is not read as a checksum by ``int()``."""
    line = LINE[: LINE.rindex("*") + 1] + " " + LINE[-1]
    assert frame(line.encode()) == framing.NO_CHECKSUM


def test_identical_lines_from_two_sources_frame_the_same() -> None:
    """The ingestor frames a repeated line once; results stay per source."""
    ingestor = Ingestor()
    bad = _flip_checksum(LINE)
    feed_all(ingestor, "a", [LINE, bad], received=T0)
    feed_all(ingestor, "b", [LINE, bad], received=T0 + 10)
    for name in ("a", "b"):
        health = ingestor.health(name)
        assert (health.lines, health.messages, health.rejected["checksum"]) == (2, 1, 1)


def test_safety_text_is_kept() -> None:
    """An AIS-SART's type 14 says whether it is active or under test."""
    ingestor = Ingestor()
    line = tag_block(c=1767261600) + single(
        {"type": 14, "mmsi": 970123456, "text": "SART TEST"})
    (report,) = ingestor.feed("rx1", line.encode(), None) + ingestor.flush()
    assert (report.msg_type, report.extra["text"]) == (14, "SART TEST")


def test_not_available_is_null_in_json_and_other_types_fields_are_left_out() -> None:
    """lat 91, lon 181, speed 102.3, course 360, heading 511, turn -128 become null: the key
    is there (a reader tells "not available" from "not in this message")."""
    ingestor = Ingestor()
    line = tag_block(c=1767261600) + single(position(
        lat=91, lon=181, speed=102.3, course=360, heading=511, turn=-128))
    (report,) = ingestor.feed("rx1", line.encode(), None) + ingestor.flush()
    out = report.to_dict()
    unavailable = ("lat", "lon", "speed", "course", "heading", "turn")
    assert {k: out[k] for k in unavailable} == dict.fromkeys(unavailable)
    assert "shipname" not in out and "draught" not in out


def test_stations_beyond_max_receivers_count_as_their_source(
        caplog: pytest.LogCaptureFixture) -> None:
    """A feed open to injection named 19,000 stations: each a receiver for ever (tables,
    metrics labels, a source_silent alert once silent)."""
    ingestor = Ingestor(max_receivers=3)
    reports = []
    for i in range(6):
        line = tag_block(s=f"forged{i}", c=1767261600 + i) + single(
            position(mmsi=244000000 + i))
        reports += ingestor.feed("udp", line.encode(), None)
    reports += ingestor.flush()
    assert [r.sources for r in reports] == [
        ["forged0"], ["forged1"], ["forged2"], ["udp"], ["udp"], ["udp"]]
    assert set(ingestor.receivers) == {"forged0", "forged1", "forged2", "udp"}
    assert ingestor.sources["udp"].health.to_dict()["stations_over_limit"] == 3
    assert len([r for r in caplog.records if "max_receivers" in r.message]) == 1
