"""Message time: tag block, log-line timestamps, Gatehouse, base stations, and their precedence."""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import UTC, datetime

import pytest

from ingest.framing import Meta, Sentence, frame
from ingest.ingestor import Ingestor
from ingest.timestamps import epoch_value, gatehouse_time, iso_value, prefix_time, suffix_time
from tests.ingest_helpers import (
    base_station,
    checksum,
    feed_all,
    fixture,
    multipart,
    position,
    single,
    static,
    tag_block,
)

T = 1334337317.0  # 2012-04-13T17:15:17Z
LINE = single(position())


def _utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def _framed(line: str) -> Sentence:
    result = frame(line.encode())
    assert isinstance(result, Sentence), result
    return result


# -- the parsers -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    (b"1334337317", 1334337317.0),
    (b"1334337317.25", 1334337317.25),
    (b"1327992119173", 1327992119.173),  # milliseconds (> 10^11)
    (b"12415440354", None),  # 11 digits: neither seconds nor ms in range
    (b"42", None),
    (b"nan", None),
    (b"abc", None),
])
def test_epoch_value(text: bytes, expected: float | None) -> None:
    assert epoch_value(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (b"2024-05-01T10:00:00Z", _utc(2024, 5, 1, 10)),
    (b"2024-05-01 10:00:00", _utc(2024, 5, 1, 10)),
    (b"2024-05-01T10:00:00.250Z", _utc(2024, 5, 1, 10) + 0.25),
    (b"2024-05-01T12:00:00+02:00", _utc(2024, 5, 1, 10)),
    (b"2024-05-01T05:30:00-0430", _utc(2024, 5, 1, 10)),
    (b"2024-13-01T10:00:00Z", None),
    (b"yesterday", None),
])
def test_iso_value(text: bytes, expected: float | None) -> None:
    assert iso_value(text) == expected


def test_prefix_and_suffix_parsers() -> None:
    assert prefix_time(b"2024-05-01T10:00:00Z;") == _utc(2024, 5, 1, 10)
    assert prefix_time(b"1714557600 ") == 1714557600.0
    assert prefix_time(b"1714557600.5: ") == 1714557600.5
    assert prefix_time(b"hello ") is None
    assert suffix_time(b",1327992119173") == 1327992119.173
    assert suffix_time(b",d-109,S2105,t050056.00,T56.13718694,r003669946,1325394060,"
                       b"1325394001") == 1325394060.0
    assert suffix_time(b",d-109,S2105") is None


def test_gatehouse_time() -> None:
    fields = b"PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09".split(b",")
    assert gatehouse_time(fields) == _utc(2008, 5, 9) + 0.010
    assert gatehouse_time(b"PGHP,2,2008,5,9".split(b",")) is None
    assert gatehouse_time(b"PGHP,1,2008,13,9,0,0,0,10".split(b",")) is None


# -- framing -----------------------------------------------------------------------------

def test_tag_block_c_in_seconds_and_milliseconds() -> None:
    seconds = _framed(tag_block(c=int(T), s="rEV02") + LINE)
    assert (seconds.time, seconds.time_source, seconds.station) == (T, "tagblock", "rEV02")
    millis = _framed(tag_block(c=1334337317250) + LINE)
    assert millis.time == pytest.approx(T + 0.25)
    assert millis.time_source == "tagblock"


def test_iso_and_epoch_prefix_lines() -> None:
    iso = _framed("2012-04-13T17:15:17Z " + LINE)
    assert (iso.time, iso.time_source) == (T, "line")
    iso_ms = _framed("2012-04-13 17:15:17.500;" + LINE)
    assert iso_ms.time == T + 0.5
    epoch = _framed("1334337317 " + LINE)
    assert (epoch.time, epoch.time_source) == (T, "line")
    epoch_ms = _framed("1334337317500," + LINE)
    assert epoch_ms.time == pytest.approx(T + 0.5)
    # A prefix that is not a time is junk, not a silently untimed sentence.
    assert frame(("garbage " + LINE).encode()) == "junk"


def test_epoch_after_checksum_in_milliseconds() -> None:
    """exact-earth-augmented style: ``...,0*5F,1327992119173``."""
    line = "!AIVDM,1,1,,B,IFICEMae<`HfcEV4M8aEWM<2VH1j6?;6<t9>,0*51,1327992119173"
    framed = _framed(line)
    assert framed.time == pytest.approx(1327992119.173)
    assert framed.time_source == "line"
    assert framed.payload == b"IFICEMae<`HfcEV4M8aEWM<2VH1j6?;6<t9>"


def test_uscg_suffix_fields() -> None:
    line = ("!AIVDM,1,1,,A,15N1u<PP1FJuvSRHOE6QIwwh0HQ6,0*30,d-080,S2118,t050056.00,"
            "T56.4837741,r003669946,1325394060,1325394001")
    framed = _framed(line)
    assert framed.time == 1325394060.0
    assert framed.payload == b"15N1u<PP1FJuvSRHOE6QIwwh0HQ6"


def test_gatehouse_line_is_meta_with_time() -> None:
    result = frame(b"$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17")
    assert isinstance(result, Meta)
    assert result.time == _utc(2008, 5, 9) + 0.010


# -- the ingestor: precedence and carried time -------------------------------------------

def test_gatehouse_times_the_next_sentence_only() -> None:
    ingestor = Ingestor()
    gh = "$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17"
    out = feed_all(ingestor, "gh", [gh, single(position(mmsi=211000001)),
                                    single(position(mmsi=211000002))])
    assert [(r.mmsi, r.time, r.time_source) for r in out] == [
        (211000001, _utc(2008, 5, 9) + 0.010, "line"),
        (211000002, _utc(2008, 5, 9) + 0.010, "carried"),
    ]
    health = ingestor.health("gh")
    assert (health.lines, health.meta, health.sentences) == (3, 1, 2)


def test_pyais_gatehouse_fixture() -> None:
    from ingest.logfile import read_log_lines

    ingestor = Ingestor()
    out = feed_all(ingestor, "gh", read_log_lines(str(fixture("pyais", "gatehouse.nmea"))))
    assert out
    assert out[0].time == _utc(2008, 5, 9) + 0.010
    assert out[0].time_source == "line"


#: Precedence alone: an arrival years after the lines' times, not judged (see "far behind").
UNGUARDED = math.inf


def test_tag_block_beats_line_prefix_and_suffix_and_gatehouse() -> None:
    ingestor = Ingestor(max_clock_lag_s=UNGUARDED)
    gh = "$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17"
    line = "1400000000 " + tag_block(c=int(T)) + LINE + ",1500000000"
    out = feed_all(ingestor, "x", [gh, line], received=1600000000.0)
    assert [(r.time, r.time_source) for r in out] == [(T, "tagblock")]


def test_prefix_beats_suffix_and_receive_time() -> None:
    ingestor = Ingestor(max_clock_lag_s=UNGUARDED)
    out = feed_all(ingestor, "x", ["1400000000 " + LINE + ",1500000000"],
                   received=1600000000.0)
    assert [(r.time, r.time_source) for r in out] == [(1400000000.0, "line")]
    ingestor = Ingestor(max_clock_lag_s=UNGUARDED)
    out = feed_all(ingestor, "x", [LINE + ",1500000000"], received=1600000000.0)
    assert [(r.time, r.time_source) for r in out] == [(1500000000.0, "line")]


def test_gatehouse_beats_the_sentence_own_prefix_and_suffix() -> None:
    """DESIGN's order: tag block, $PGHP, prefix, suffix. A satellite feed's $PGHP is when the
    message was heard; the epoch after its checksum, when it reached the ground (hours
    later in exactEarth's sample): the later one made a steaming ship jump 1,911 kn."""
    gh = "$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17"
    for line in (LINE + ",1500000000", "1400000000 " + LINE, LINE):
        ingestor = Ingestor()
        out = feed_all(ingestor, "x", [gh, line, LINE + ",1210291205"])
        assert [(r.time, r.time_source) for r in out] == [
            (_utc(2008, 5, 9) + 0.010, "line"), (1210291205.0, "line")], line


def pghp(station: str, second: int = 0) -> str:
    """A Danish-network ``$PGHP`` line: 2013-11-12 12:00:``second``, shore station."""
    body = f"PGHP,1,2013,11,12,12,0,{second},11,219,,{station},1,62"
    return f"${body}*{checksum(body)}"


def test_a_gatehouse_station_is_the_receiver_of_the_next_sentence() -> None:
    """The Danish network names its shore station in each $PGHP line (field 11): the
    receiver, as a tag block's s: is, for single- and multipart messages alike."""
    ingestor = Ingestor()
    lines = [pghp("2190067"), single(position(mmsi=211000001)),
             pghp("2190048", 1), *multipart(static(mmsi=211000002), 2),
             single(position(mmsi=211000003)),  # no $PGHP before it: the source
             pghp("2190067", 2), tag_block(s="rx9") + single(position(mmsi=211000004))]
    out = feed_all(ingestor, "dk", lines)
    t = datetime(2013, 11, 12, 12, 0, 0, tzinfo=UTC).timestamp() + 0.011
    assert [(r.mmsi, r.sources, r.time) for r in out] == [
        (211000001, ["2190067"], t), (211000002, ["2190048"], t + 1),
        (211000003, ["dk"], t + 1), (211000004, ["rx9"], t + 2)]
    assert set(ingestor.receivers) == {"2190067", "2190048", "dk", "rx9"}
    assert frame(pghp("rx 1; DROP").encode()) == Meta(
        datetime(2013, 11, 12, 12, 0, 0, tzinfo=UTC).timestamp() + 0.011, None, True)


def test_a_gatehouse_line_speaks_for_the_next_line_only() -> None:
    """The Gladstone recording: a satellite $PGHP line, then $GPRMC, then a terrestrial
    report. The report kept the satellite station and time; a rejected or non-AIS line
    takes what the $PGHP line said with it, and a second $PGHP line replaces the first."""
    own = LINE + ",1500000000"
    for between in ("$GPRMC,1*00", "!AIVDM,1,1,,A,bad*00", pghp("", 5)):
        ingestor = Ingestor()
        out = feed_all(ingestor, "dk", [pghp("2190067"), between, own])
        assert [(r.time, r.sources) for r in out] == [
            (1500000000.0 if not between.startswith("$PGHP") else
             datetime(2013, 11, 12, 12, 0, 5, tzinfo=UTC).timestamp() + 0.011, ["dk"])], between


def test_a_group_timed_by_gatehouse_keeps_its_clock_across_its_fragments() -> None:
    """exactEarth: $PGHP before the first fragment only, each fragment with its own epoch
    after the checksum, hours later (when it reached the ground): the group expired."""
    first, second = multipart(static(mmsi=316001234), 2)
    ingestor = Ingestor()
    out = feed_all(ingestor, "sat", [pghp("316000002"), first + ",1384261200157",
                                     second + ",1384261200173"])
    t = datetime(2013, 11, 12, 12, 0, 0, tzinfo=UTC).timestamp() + 0.011
    assert [(r.mmsi, r.time, r.sources) for r in out] == [(316001234, t, ["316000002"])]
    assert not ingestor.health("sat").fragments_dropped


def test_gatehouse_beats_receive_time_and_receive_beats_nothing() -> None:
    ingestor = Ingestor(max_clock_lag_s=UNGUARDED)
    gh = "$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17"
    out = feed_all(ingestor, "x", [gh, LINE], received=1600000000.0)
    assert [(r.time, r.time_source) for r in out] == [(_utc(2008, 5, 9) + 0.010, "line")]
    out = feed_all(ingestor, "y", [LINE], received=1600000000.0)
    assert [(r.time, r.time_source) for r in out] == [(1600000000.0, "receive")]


def test_recorded_log_timed_by_base_station_including_held_lines() -> None:
    """Lines before the first type 4 wait for it; later lines carry its time forward."""
    ingestor = Ingestor()
    before = [single(position(mmsi=211000001)), single(position(mmsi=211000002))]
    station = single(base_station(2012, 1, 27, 9, 57, 30))
    after = single(position(mmsi=211000003))
    station2 = single(base_station(2012, 1, 27, 9, 57, 40))
    after2 = single(position(mmsi=211000004))
    out = feed_all(ingestor, "log", before)
    assert out == []
    out = feed_all(ingestor, "log", [station, after, station2, after2])
    t1 = _utc(2012, 1, 27, 9, 57, 30)
    t2 = _utc(2012, 1, 27, 9, 57, 40)
    assert [(r.mmsi, r.time, r.time_source) for r in out] == [
        (211000001, t1, "basestation"),
        (211000002, t1, "basestation"),
        (3669702, t1, "basestation"),
        (211000003, t1, "basestation"),
        (3669702, t1, "basestation"),
        (211000004, t2, "basestation"),
    ]


def test_base_station_with_a_wrong_clock_is_ignored() -> None:
    ingestor = Ingestor()
    good = single(base_station(2012, 1, 27, 9, 57, 30))
    bad = single(base_station(2019, 6, 1, 0, 0, 0, mmsi=3669999))
    out = feed_all(ingestor, "log", [good, bad, single(position())], flush=True)
    assert out[-1].time == _utc(2012, 1, 27, 9, 57, 30)
    assert ingestor.health("log").clock_rejected == 1


def _station(mmsi: int, *when: int) -> str:
    return single(base_station(*when, mmsi=mmsi))  # type: ignore[arg-type]


def _clock_after(ingestor: Ingestor, lines: list[str]) -> float:
    """The time a position report gets after ``lines`` (the carried base-station clock)."""
    return feed_all(ingestor, "log", [*lines, single(position())])[-1].time


def test_one_forged_station_within_the_hour_does_not_move_the_clock() -> None:
    """One type 4 of a station nobody else agrees with, 50 min ahead of the others: it
    moved the clock (anything within an hour did), and as the clock never goes back, the
    rest of the Gladstone log was stamped at that one instant (17,597 reports at 12:40:00,
    8 loitering and 5 position_jump alerts more in the demo replay)."""
    ingestor = Ingestor()
    real = [_station(3669702, 2012, 1, 27, 9, 57, 30), _station(3669703, 2012, 1, 27, 9, 57, 31)]
    forged = _station(5031234, 2012, 1, 27, 10, 47, 30)
    assert _clock_after(ingestor, [*real, forged]) == _utc(2012, 1, 27, 9, 57, 31)
    later = _station(3669702, 2012, 1, 27, 9, 57, 40)
    assert _clock_after(ingestor, [later]) == _utc(2012, 1, 27, 9, 57, 40)
    assert ingestor.health("log").clock_rejected == 1


def test_a_forged_station_cannot_ratchet_the_clock_in_small_steps() -> None:
    """Each forged report 50 s past the one before, between the real stations' reports:
    the clock stays within a minute of what the other stations say."""
    ingestor = Ingestor()
    lines = []
    for k in range(20):
        lines.append(_station(3669702, 2012, 1, 27, 9, 50, 2 * k))
        lines.append(_station(5031234, 2012, 1, 27, 9, 51 + k, 0))
    clock = _clock_after(ingestor, lines)
    assert clock <= _utc(2012, 1, 27, 9, 50, 38) + 60.0


def test_a_recording_gap_moves_the_clock_once_a_second_station_agrees() -> None:
    """Ten minutes without lines in a recording of two stations: the first station after
    the gap waits for the second (a forger alone would look the same), then both count."""
    ingestor = Ingestor()
    before = [_station(3669702, 2012, 1, 27, 9, 50, 0), _station(3669703, 2012, 1, 27, 9, 50, 1)]
    first = _station(3669702, 2012, 1, 27, 10, 0, 0)
    assert _clock_after(ingestor, [*before, first]) == _utc(2012, 1, 27, 9, 50, 1)
    second = _station(3669703, 2012, 1, 27, 10, 0, 1)
    assert _clock_after(ingestor, [second]) == _utc(2012, 1, 27, 10, 0, 1)


def test_a_station_alone_in_its_log_moves_the_clock_alone() -> None:
    """A receiver that hears one base station: its times are all there is."""
    ingestor = Ingestor()
    lines = [_station(3669702, 2012, 1, 27, 9, 50, s) for s in (0, 10)]
    lines.append(_station(3669702, 2012, 1, 27, 10, 20, 0))
    assert _clock_after(ingestor, lines) == _utc(2012, 1, 27, 10, 20, 0)


def test_a_station_stamped_in_the_past_does_not_hold_the_clock_back() -> None:
    """A forged report 50 min behind is no witness against the real station's next times."""
    ingestor = Ingestor()
    lines = [_station(3669702, 2012, 1, 27, 9, 50, 0), _station(5031234, 2012, 1, 27, 9, 0, 0)]
    lines += [_station(3669702, 2012, 1, 27, 9, 50, s) for s in (10, 20)]
    lines += [_station(3669702, 2012, 1, 27, 9, 50 + k, 0) for k in range(1, 4)]
    assert _clock_after(ingestor, lines) == _utc(2012, 1, 27, 9, 53, 0)


def test_three_reports_of_one_station_years_off_do_not_move_the_clock() -> None:
    """Three forged type 4 of one MMSI in a row, 2019 in a 2012 log: "several stations
    agree" took them (any three within 60 s of each other), and the demo replay's picture
    was swept as seven years silent (12 invalid_mmsi and 6 zone_entry raised again)."""
    ingestor = Ingestor()
    real = [_station(3669702, 2012, 1, 27, 9, 57, 30), _station(3669703, 2012, 1, 27, 9, 57, 31)]
    forged = [_station(5031234, 2019, 6, 1, 12, 0, s) for s in (0, 1, 2)]
    assert _clock_after(ingestor, [*real, *forged]) == _utc(2012, 1, 27, 9, 57, 31)
    assert ingestor.health("log").clock_rejected == 3


def test_a_wrong_first_station_is_overruled_by_two_stations_that_agree() -> None:
    """The first station time of a log has nothing to be judged by; three reports of two
    other stations in a row, agreeing, set the clock to theirs."""
    ingestor = Ingestor()
    lines = [_station(5031234, 2019, 6, 1, 12, 0, 0)]
    lines += [_station(3669702 + k % 2, 2012, 1, 27, 9, 57, 30 + k) for k in range(3)]
    assert _clock_after(ingestor, lines) == _utc(2012, 1, 27, 9, 57, 32)


def test_a_forged_first_station_does_not_time_the_lines_held_before_the_real_ones() -> None:
    """The lines before a log's first time wait for a station time that a second report
    agrees with: one type 4 stamped 2019 first in the demo log timed the lines before the
    real stations' by it, the rules' clock went to 2019, and the replay lost all 8 of its
    collision_risk alerts."""
    ingestor = Ingestor()
    lines = [single(position(mmsi=211000001)), _station(5031234, 2019, 6, 1, 12, 0, 0),
             single(position(mmsi=211000002)), _station(3669702, 2012, 1, 27, 9, 57, 30),
             single(position(mmsi=211000003)), _station(3669703, 2012, 1, 27, 9, 57, 31)]
    out = feed_all(ingestor, "log", lines)
    t1 = _utc(2012, 1, 27, 9, 57, 30)
    assert [(r.mmsi, r.time) for r in out] == [
        (211000001, t1), (5031234, t1), (211000002, t1), (3669702, t1), (211000003, t1),
        (3669703, t1)]
    assert ingestor.health("log").clock_rejected == 1


def test_a_log_with_one_station_report_is_timed_by_it() -> None:
    """With no second report to agree, the end of the log takes the first station time."""
    ingestor = Ingestor()
    lines = [single(position(mmsi=211000001)), _station(3669702, 2012, 1, 27, 9, 57, 30),
             single(position(mmsi=211000002))]
    out = feed_all(ingestor, "log", lines, flush=True)
    t1 = _utc(2012, 1, 27, 9, 57, 30)
    assert [(r.mmsi, r.time, r.time_source) for r in out] == [
        (211000001, t1, "basestation"), (3669702, t1, "basestation"),
        (211000002, t1, "basestation")]


def test_held_lines_are_timed_by_the_first_line_time_of_any_kind() -> None:
    """A log whose first timed line has an epoch suffix, not a type 4."""
    ingestor = Ingestor()
    out = feed_all(ingestor, "log", [single(position(mmsi=211000001)),
                                     single(position(mmsi=211000002)) + ",1327992119"])
    assert [(r.mmsi, r.time, r.time_source) for r in out] == [
        (211000001, 1327992119.0, "carried"),
        (211000002, 1327992119.0, "line"),
    ]


def test_log_without_any_time_is_untimed_at_flush() -> None:
    ingestor = Ingestor()
    out = feed_all(ingestor, "log", [single(position())], flush=True)
    assert [(r.time_source, r.to_dict()["time"]) for r in out] == [("none", None)]
    # Nor was it heard at any time: `decode --stats` said 1970-01-01 (pyais's messages.ais).
    assert ingestor.health("log").to_dict()["last_heard"] is None
    assert [rx.to_dict()["last_heard"] for rx in ingestor.receivers.values()] == [None]


def test_gladstone_log_is_timed_from_its_base_stations() -> None:
    """The risky national-network log: no time on most lines, type 4 reports carry it."""
    from ingest.logfile import read_log_lines

    path = fixture("demo-port", "ais-gladstone-2012-01-27.txt.gz")
    ingestor = Ingestor()
    out = feed_all(ingestor, "gladstone", read_log_lines(str(path)), flush=True)
    sources = {r.time_source for r in out}
    assert sources <= {"basestation", "line", "carried"}
    times = [r.time for r in out]
    assert _utc(2012, 1, 27, 9, 50) <= min(times)
    assert max(times) <= _utc(2012, 1, 27, 12, 0)


def test_continuation_fragment_takes_the_time_of_the_first_not_the_station_clock() -> None:
    """Satellite style: a group whose tag block time is hours from the stream's clock."""
    from tests.ingest_helpers import multipart, static

    ingestor = Ingestor()
    parts = multipart(static(), 2, seq="0")
    early = int(T) - 38000
    out = feed_all(ingestor, "sat", [
        single(base_station(2012, 4, 13, 17, 15, 17)),
        tag_block(c=int(T)) + single(position(mmsi=211000001)),
        tag_block(c=early) + parts[0],
        parts[1],
    ])
    assert [(r.msg_type, r.time, r.time_source) for r in out] == [
        (4, _utc(2012, 4, 13, 17, 15, 17), "basestation"),
        (1, T, "tagblock"),
        (5, float(early), "tagblock"),
    ]
    assert not ingestor.health("sat").fragments_dropped


def test_gatehouse_timed_multipart_keeps_the_gatehouse_time() -> None:
    from tests.ingest_helpers import multipart, static

    ingestor = Ingestor()
    parts = multipart(static(), 2, seq="0")
    gh = "$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17"
    out = feed_all(ingestor, "gh", [single(base_station(2008, 5, 9, 0, 0, 5)), gh, *parts])
    assert [(r.msg_type, r.time) for r in out] == [
        (4, _utc(2008, 5, 9, 0, 0, 5)), (5, _utc(2008, 5, 9) + 0.010)]


# -- a live receiver whose clock runs ahead ----------------------------------------------

ARRIVAL = T + 5.0  # a live line is received this long after it was stamped (well in time)


@pytest.mark.parametrize(("stamp", "expected"), [
    (T, (T, "tagblock")),                                # stamped before arrival
    (ARRIVAL + 10, (ARRIVAL + 10, "tagblock")),          # at the allowed lead
    (ARRIVAL + 11, (ARRIVAL, "receive")),                # just beyond it
    (ARRIVAL + 45, (ARRIVAL, "receive")),                # 45 s fast: shifted the port
    (ARRIVAL + 7200, (ARRIVAL, "receive")),              # local time stamped as UTC
    (ARRIVAL - 6 * 3600, (ARRIVAL - 6 * 3600, "tagblock")),  # behind: a late feed's backlog
])
def test_a_live_line_stamped_ahead_of_its_arrival_is_timed_by_its_arrival(
        stamp: float, expected: tuple[float, str]) -> None:
    ingestor = Ingestor()
    out = feed_all(ingestor, "udp", [tag_block(s="rx-bad", c=int(stamp)) + LINE], ARRIVAL)
    assert [(r.time, r.time_source) for r in out] == [expected]
    assert ingestor.health("udp").clock_ahead == (expected[1] == "receive")
    assert ingestor.newest == expected[0]


# -- a live line stamped far behind its arrival ------------------------------------------

DAY = 86400.0


@pytest.mark.parametrize(("stamp", "expected"), [
    (ARRIVAL - 3 * 3600, (ARRIVAL - 3 * 3600, "tagblock")),  # a satellite feed, hours late
    (ARRIVAL - DAY, (ARRIVAL - DAY, "tagblock")),            # at the allowed lag
    (ARRIVAL - DAY - 1, (ARRIVAL, "receive")),               # just beyond it
    (_utc(1996, 6, 1), (ARRIVAL, "receive")),                # a forged or broken clock
])
def test_a_live_line_stamped_days_behind_its_arrival_is_timed_by_its_arrival(
        stamp: float, expected: tuple[float, str]) -> None:
    ingestor = Ingestor()
    out = feed_all(ingestor, "udp", [tag_block(s="rx-old", c=int(stamp)) + LINE], ARRIVAL)
    assert [(r.time, r.time_source) for r in out] == [expected]
    assert ingestor.health("udp").clock_behind == (expected[1] == "receive")
    assert ingestor.health("udp").clock_ahead == 0
    assert ingestor.newest == expected[0]


def test_the_allowed_lag_is_configurable_and_recorded_lines_are_not_judged(
        caplog: pytest.LogCaptureFixture) -> None:
    strict = Ingestor(max_clock_lag_s=60.0)
    with caplog.at_level("WARNING", logger="ingest.ingestor"):
        out = feed_all(strict, "udp", [tag_block(s="rx-late", c=int(ARRIVAL) - 61) + LINE] * 2,
                       ARRIVAL)
    assert [(r.time, r.time_source) for r in out] == [(ARRIVAL, "receive")]  # + a duplicate
    assert strict.health("udp").clock_behind == 2
    assert [r.getMessage() for r in caplog.records] == [
        "udp: receiver rx-late stamps lines 61 s behind their arrival (its clock is wrong?); "
        "using the receive time instead"]
    replay = Ingestor()  # a recorded log is old on purpose: replay keeps its times
    old = _utc(1996, 6, 1)
    out = feed_all(replay, "log", [tag_block(c=int(old)) + LINE])
    assert [(r.time, r.time_source) for r in out] == [(old, "tagblock")]
    assert replay.health("log").clock_behind == 0


async def test_a_line_stamped_1996_over_live_udp_is_timed_by_its_arrival() -> None:
    """The pen-test line: a new vessel stamped 1996 on a live socket, beside a late one."""
    import socket
    import time

    from ingest.sources import LineQueue, UdpSource

    queue = LineQueue()
    source = UdpSource("udp-live", "127.0.0.1", 0)
    task = asyncio.create_task(source.run(queue))
    try:
        async with asyncio.timeout(10):
            while source.local_address is None:
                await asyncio.sleep(0.01)
            late = int(time.time()) - 2 * 3600
            forged = int(_utc(1996, 6, 1))
            lines = [tag_block(s="rx-1", c=forged) + single(position(mmsi=235000001)),
                     tag_block(s="rx-2", c=late) + single(position(mmsi=235000002))]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                for line in lines:
                    tx.sendto(line.encode() + b"\r\n", source.local_address)
            got = [await queue.get() for _ in lines]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    ingestor = Ingestor()
    out = [r for raw in got for r in ingestor.feed(raw.source, raw.data, raw.received)]
    assert [(r.mmsi, r.time, r.time_source) for r in out] == [
        (235000001, got[0].received, "receive"), (235000002, float(late), "tagblock")]
    assert ingestor.health("udp-live").clock_behind == 1


def test_the_allowed_lead_is_configurable_and_recorded_lines_are_not_judged() -> None:
    strict = Ingestor(max_clock_lead_s=0.0)
    out = feed_all(strict, "udp", [tag_block(c=int(ARRIVAL) + 1) + LINE], ARRIVAL)
    assert [(r.time, r.time_source) for r in out] == [(ARRIVAL, "receive")]
    recorded = Ingestor(max_clock_lead_s=0.0)  # a log has no arrival time to judge by
    out = feed_all(recorded, "log", [tag_block(c=int(ARRIVAL) + 7200) + LINE])
    assert [(r.time, r.time_source) for r in out] == [(ARRIVAL + 7200, "tagblock")]
    assert recorded.health("log").clock_ahead == 0


def test_a_live_gatehouse_time_ahead_of_arrival_is_replaced_too() -> None:
    ingestor = Ingestor()
    gh = "$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17"
    arrival = _utc(2008, 5, 8)  # the $PGHP line says a day later
    out = feed_all(ingestor, "gh", [gh, LINE], arrival)
    assert [(r.time, r.time_source) for r in out] == [(arrival, "receive")]
    assert ingestor.health("gh").clock_ahead == 1


def test_a_live_group_stamped_ahead_on_its_first_fragment_is_timed_by_arrival() -> None:
    """The group takes its first fragment's time, but not a time that ran ahead."""
    from tests.ingest_helpers import multipart, static

    ingestor = Ingestor()
    parts = multipart(static(), 2, seq="0")
    out = feed_all(ingestor, "udp", [tag_block(c=int(ARRIVAL) + 7200) + parts[0], parts[1]],
                   ARRIVAL)
    assert [(r.msg_type, r.time, r.time_source) for r in out] == [(5, ARRIVAL, "receive")]
    assert ingestor.health("udp").clock_ahead == 1
    assert not ingestor.health("udp").fragments_dropped


def test_a_receiver_clock_ahead_is_warned_about_once_per_receiver(
        caplog: pytest.LogCaptureFixture) -> None:
    ingestor = Ingestor()
    ahead = int(ARRIVAL) + 7200
    lines = [tag_block(s=rx, c=ahead) + single(position(mmsi=mmsi))
             for rx, mmsi in (("rx-a", 211000001), ("rx-a", 211000002), ("rx-b", 211000003))]
    with caplog.at_level("WARNING", logger="ingest.ingestor"):
        feed_all(ingestor, "national", lines, ARRIVAL)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert "receiver rx-a stamps lines 7200 s ahead" in warned[0]
    assert "receiver rx-b" in warned[1]
    assert ingestor.health("national").clock_ahead == 3


@pytest.mark.parametrize("text", [b"0001-01-01T00:00:00+23:59", b"9999-12-31T23:59:59-23:59",
                                  b"1970-01-01T00:00:00Z", b"2150-01-01T00:00:00Z"])
def test_iso_times_outside_ais_years_are_not_plausible(text: bytes) -> None:
    """Year 1 with an offset is not even a date: it once stopped the live service."""
    from ingest.timestamps import plausible

    value = iso_value(text)
    assert value is not None and not plausible(value)


def test_gatehouse_times_outside_ais_years_are_no_times() -> None:
    assert gatehouse_time(b"PGHP,1,1,1,1,0,0,0,0".split(b",")) is None
    assert gatehouse_time(b"PGHP,1,2008,5,9,0,0,0,10".split(b",")) == _utc(2008, 5, 9) + 0.01


@pytest.mark.parametrize("prefix", ["0001-01-01T00:00:00+23:59", "1980-01-06T00:00:12Z",
                                    "1970-01-01 00:00:12", "0", "315964812"])
def test_a_line_stamped_with_no_real_time_keeps_its_sentence(prefix: str) -> None:
    """A receiver without a clock (1970, the GPS epoch), or no date at all: the sentence is
    kept and timed as if the line had no time (live: by its arrival)."""
    ingestor = Ingestor()
    out = feed_all(ingestor, "udp", [f"{prefix} {LINE}"], ARRIVAL)
    assert [(r.time, r.time_source) for r in out] == [(ARRIVAL, "receive")]
    assert not ingestor.health("udp").rejected


@pytest.mark.parametrize(("text", "expected"), [
    ("2012-01-27T12:00:00Z", 1327665600.0), ("1327665600", 1327665600.0),
    ("1327665600000", 1327665600.0),  # milliseconds, as tag blocks may give them
])
def test_a_start_time_is_iso_seconds_or_milliseconds(text: str, expected: float) -> None:
    from harbourwatch.timeutil import parse_message_time

    assert parse_message_time(text) == expected


@pytest.mark.parametrize("text", ["inf", "nan", "-1", "1e15", "1800-01-01T00:00:00Z"])
def test_a_start_time_that_is_no_message_time_is_refused(text: str) -> None:
    """They replayed nothing, or everything, without a word."""
    from harbourwatch.timeutil import parse_message_time

    with pytest.raises(ValueError, match="not a message time between 1990 and 2100"):
        parse_message_time(text)


@pytest.mark.parametrize("lag", [0.0, 6.0, 60.0, 3600.0])
def test_a_live_group_tagged_on_its_first_fragment_only_keeps_that_time(lag: float) -> None:
    """Its continuation has no tag block: it takes the first fragment's time, not its
    arrival. With the arrival, a feed running over 5 s behind lost every multipart message
    (the group expired on the gap) and moved message time to the wall clock."""
    ingestor = Ingestor()
    parts = multipart(static(), 2, seq="0")
    out = feed_all(ingestor, "udp", [tag_block(s="rx", c=int(T)) + parts[0], parts[1]],
                   T + lag)
    assert [(r.msg_type, r.time, r.time_source) for r in out] == [(5, T, "tagblock")]
    assert not ingestor.health("udp").fragments_dropped
    assert ingestor.newest == T


def test_a_copy_from_a_feed_running_behind_its_arrival_is_merged() -> None:
    """A receiver timed by arrival and a national feed 90 s behind hear one message: the
    feed's copy arrives 90 s later with the same time. Forgotten by then (kept 2 windows of
    the newest time), it was processed a second time and never listed both receivers."""
    ingestor = Ingestor()
    earlier = tag_block(s="amsa-1", c=int(T) - 90) + single(position(mmsi=211000099))
    feed_all(ingestor, "national", [earlier], T)  # the feed runs 90 s behind
    first = feed_all(ingestor, "udp", [single(position(mmsi=211000001))], T)
    for second in range(1, 91):  # the receiver goes on hearing others
        feed_all(ingestor, "udp", [single(position(mmsi=211000100 + second))], T + second)
    late = tag_block(s="amsa-1", c=int(T)) + single(position(mmsi=211000001))
    assert feed_all(ingestor, "national", [late], T + 90) == []
    assert ingestor.health("national").duplicates == 1
    assert first[0].sources == ["udp", "amsa-1"]


def test_a_group_from_a_feed_behind_another_receiver_expires_on_its_own_clock() -> None:
    """Groups expired against the newest time of any source: beside a receiver timed by
    arrival, a feed 120 s behind lost every group whose fragments straddled a second."""
    ingestor = Ingestor()
    feed_all(ingestor, "quay", [single(position(mmsi=211000001))], T)
    parts = multipart(static(), 2, seq="0")
    first = feed_all(ingestor, "national", [tag_block(s="amsa", c=int(T) - 120) + parts[0]],
                     T + 0.5)
    feed_all(ingestor, "quay", [single(position(mmsi=211000002))], T + 1.2)  # housekeeping
    last = feed_all(ingestor, "national", [parts[1]], T + 1.3)
    assert [(r.msg_type, r.time) for r in [*first, *last]] == [(5, T - 120)]
    assert not ingestor.health("national").fragments_dropped


def _recorded(ingestor: Ingestor, stamps: list[tuple[str, float]]) -> list[tuple[float, str]]:
    lines = [tag_block(s=rx, c=int(ARRIVAL + stamp)) + single(position(mmsi=211000000 + i))
             for i, (rx, stamp) in enumerate(stamps)]
    return [(r.time - ARRIVAL, r.time_source) for r in feed_all(ingestor, "log", lines)]


@pytest.mark.parametrize("ahead", [7200.0, 86400.0, 365 * 86400.0])
def test_one_recorded_line_far_ahead_of_the_log_is_timed_by_the_line_before(
        ahead: float) -> None:
    """A replay has no arrival time: one line from a clock far out moved message time on,
    and every timer stopped until the log caught up (source_silent that never ended)."""
    ingestor = Ingestor()
    out = _recorded(ingestor, [("rx", 0), ("rx2", 1), ("rx", 2 + ahead), ("rx", 3), ("rx", 4)])
    assert out == [(0, "tagblock"), (1, "tagblock"), (1, "carried"), (3, "tagblock"),
                   (4, "tagblock")]
    assert ingestor.health("log").clock_ahead == 1
    assert ingestor.newest == ARRIVAL + 4


def test_a_recording_that_resumes_after_a_gap_is_confirmed_by_its_next_lines() -> None:
    ingestor = Ingestor()
    out = _recorded(ingestor, [("rx", 0), ("rx2", 1),
                               *((("rx", "rx2")[i % 2], 7200 + i) for i in range(4))])
    assert out == [(0, "tagblock"), (1, "tagblock"), (1, "carried"), (1, "carried"),
                   (7202, "tagblock"), (7203, "tagblock")]
    assert ingestor.health("log").clock_ahead == 2


@pytest.mark.parametrize("since", [0, 10])
def test_a_recorded_receiver_stepped_ahead_of_the_others_is_timed_by_them(since: int) -> None:
    """rx-fort stamps local time (UTC+2) as UTC for part of a log: live, its lines are timed
    by their arrival; replayed, by the other receivers' lines between them (they did not
    confirm its time), so live and replay agree."""
    ingestor = Ingestor()
    stamps = [(rx, t + (7200 if rx == "rx-fort" and t >= since else 0))
              for t in range(0, 40, 2) for rx in ("rx-north", "rx-fort")]
    out = _recorded(ingestor, stamps)
    assert out[1::2] == [(t, "tagblock" if t < since else "carried") for t in range(0, 40, 2)]
    assert ingestor.health("log").clock_ahead == 20 - since // 2
    assert ingestor.newest == ARRIVAL + 38


def test_a_log_of_one_receiver_is_not_judged() -> None:
    """Nothing to judge it by: it may be a sample of lines hours apart (libais's)."""
    ingestor = Ingestor()
    out = _recorded(ingestor, [("rx", 0), ("rx", 1), ("rx", 7200), ("rx", 3)])
    assert [t for t, _ in out] == [0, 1, 7200, 3]
    assert ingestor.health("log").clock_ahead == 0


def test_a_recorded_receiver_within_the_allowed_lead_keeps_its_time() -> None:
    ingestor = Ingestor()
    out = _recorded(ingestor, [("a", 0), ("b", 10), ("a", 1), ("b", 3000)])
    assert out == [(0, "tagblock"), (10, "tagblock"), (1, "tagblock"), (3000, "tagblock")]
    assert ingestor.health("log").clock_ahead == 0


def test_a_recording_resumed_by_one_of_its_receivers_alone_is_confirmed_after_a_long_run(
        ) -> None:
    ingestor = Ingestor()
    out = _recorded(ingestor, [("a", 0), ("b", 1), *(("a", 7200 + i) for i in range(40))])
    assert out[2:31] == [(1, "carried")] * 29
    assert out[31:] == [(7200 + i, "tagblock") for i in range(29, 40)]


@pytest.mark.parametrize(("prefix", "expected"), [
    # A leap second: the last microsecond of that minute (Unix time has no 23:59:60).
    ("2024-06-30T23:59:60Z", _utc(2024, 6, 30, 23, 59, 59, 999999)),
    ("2016-12-31T23:59:60.500Z", _utc(2016, 12, 31, 23, 59, 59, 999999)),
    ("2024-05-01T11:00:00+01", _utc(2024, 5, 1, 10)),  # an hour-only offset
    ("2024-05-01T08:30:00-01", _utc(2024, 5, 1, 9, 30)),
    ("2024-05-01T10:00:00z", _utc(2024, 5, 1, 10)),  # lowercase z
    ("[2024-05-01 10:00:00]", _utc(2024, 5, 1, 10)),  # bracketed, as many loggers write
    ("[2024-05-01T10:00:00.250Z]:", _utc(2024, 5, 1, 10) + 0.25),
])
def test_valid_prefix_forms_time_the_line(prefix: str, expected: float) -> None:
    """These forms made the whole line junk: the sentence was lost with its time."""
    framed = _framed(f"{prefix} {LINE}")
    assert (framed.time, framed.time_source) == (pytest.approx(expected, abs=1e-6), "line")
    assert not framed.prefix_unused


def test_a_leap_second_stays_in_its_minute() -> None:
    leap = iso_value(b"2024-06-30T23:59:60Z")
    assert leap is not None and _utc(2024, 6, 30, 23, 59, 59) < leap < _utc(2024, 7, 1)


@pytest.mark.parametrize("prefix", ["2024-05-01T12:00:00 CEST", "2024-05-01 12:00:00 Europe/Oslo",
                                    "[2024-05-01 12:00:00 CEST]", "2024-05-01T12:00:00+1"])
def test_a_date_time_prefix_that_cannot_be_read_keeps_its_sentence_and_is_counted(
        prefix: str) -> None:
    """A date-time with a named zone is a time we cannot read, not junk: the sentence is kept
    and timed from elsewhere (live: by its arrival), as an implausible date is."""
    ingestor = Ingestor()
    out = feed_all(ingestor, "udp", [f"{prefix} {LINE}"], ARRIVAL)
    assert [(r.time, r.time_source) for r in out] == [(ARRIVAL, "receive")]
    health = ingestor.health("udp")
    assert not health.rejected
    assert health.to_dict()["prefix_time_unused"] == 1


def test_an_implausible_prefix_is_counted_too_and_tag_blocks_still_time_the_line() -> None:
    ingestor = Ingestor()
    out = feed_all(ingestor, "udp", [
        f"1970-01-01 00:00:12 {LINE}",
        f"2024-05-01T12:00:00 CEST {tag_block(c=int(T))}{LINE}"], ARRIVAL)
    assert [r.time_source for r in out][-1] == "tagblock"
    assert ingestor.health("udp").prefix_time_unused == 2


def test_text_that_is_no_date_before_a_sentence_is_still_junk() -> None:
    assert frame(("garbage " + LINE).encode()) == "junk"
    assert frame(("2024-05-01 " + LINE).encode()) == "junk"  # a date, no time of day
