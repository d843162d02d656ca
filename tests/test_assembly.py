"""Multipart assembly through the ingestor: groups complete, or are counted and never glued."""

from __future__ import annotations

from ingest.assembly import Assembler, Dropped
from ingest.framing import BAD_FRAGMENT, Sentence, frame
from ingest.ingestor import Ingestor
from tests.ingest_helpers import (
    balanced,
    encode,
    feed_all,
    fixture,
    group_tag,
    multipart,
    position,
    sentence,
    single,
    static,
    tag_block,
)

T0 = 1_700_000_000.0


def _static(mmsi: int, name: str) -> dict[str, object]:
    return static(mmsi=mmsi, shipname=name)


def test_three_part_message_assembles_and_decodes() -> None:
    ingestor = Ingestor()
    parts = multipart(static(), 3, seq="4")
    assert len(parts) == 3
    out = feed_all(ingestor, "rx", parts, received=T0)
    assert len(out) == 1
    report = out[0]
    assert report.msg_type == 5
    assert report.mmsi == 244123456
    assert report.shipname == "HARBOUR TEST"
    assert report.callsign == "PA1234"
    assert report.imo == 9123456
    assert report.shiptype == 70
    assert (report.to_bow, report.to_stern, report.to_port, report.to_starboard) == (50, 20, 5, 7)
    assert report.draught == 5.5
    assert report.destination == "ROTTERDAM"
    assert report.nmea == parts
    assert report.sources == ["rx"]
    health = ingestor.health("rx")
    assert health.messages == 1
    assert health.by_type == {5: 1}
    assert not health.fragments_dropped
    assert len(ingestor.assembler) == 0


def test_lost_middle_fragment_is_dropped_and_next_message_decodes() -> None:
    ingestor = Ingestor()
    first = multipart(_static(211000001, "FIRST SHIP"), 3, seq="2")
    second = multipart(_static(211000002, "SECOND SHIP"), 3, seq="2")
    out = feed_all(ingestor, "rx", [first[0], first[2]], received=T0)
    assert out == []
    out = feed_all(ingestor, "rx", second, received=T0 + 1)
    assert [(r.mmsi, r.shipname) for r in out] == [(211000002, "SECOND SHIP")]
    health = ingestor.health("rx")
    assert sum(health.fragments_dropped.values()) == 2
    assert health.messages == 1
    balanced(ingestor)


def test_lost_middle_then_lost_first_is_never_glued() -> None:
    """Fragments 1 and 3 of one message, 2 and 3 of the next: no part-old part-new message."""
    ingestor = Ingestor()
    first = multipart(_static(211000001, "FIRST SHIP"), 3, seq="2")
    second = multipart(_static(211000002, "SECOND SHIP"), 3, seq="2")
    out = feed_all(ingestor, "rx", [first[0], first[2], second[1], second[2]], received=T0)
    assert out == []
    out = feed_all(ingestor, "rx", [], flush=True)
    assert out == []
    health = ingestor.health("rx")
    assert health.messages == 0
    assert sum(health.fragments_dropped.values()) == 4
    assert not health.decode_errors


def test_interleaved_groups_on_channels_a_and_b_with_same_sequence_id() -> None:
    ingestor = Ingestor()
    on_a = multipart(_static(211000001, "ALPHA"), 2, seq="7", channel="A")
    on_b = multipart(_static(211000002, "BRAVO"), 2, seq="7", channel="B")
    out = feed_all(ingestor, "rx", [on_a[0], on_b[0], on_a[1], on_b[1]], received=T0)
    assert [(r.mmsi, r.shipname, r.channel) for r in out] == [
        (211000001, "ALPHA", "A"), (211000002, "BRAVO", "B")]
    assert not ingestor.health("rx").fragments_dropped


def test_same_group_key_from_two_sources_is_kept_apart() -> None:
    ingestor = Ingestor()
    one = multipart(_static(211000001, "ALPHA"), 2, seq="7")
    two = multipart(_static(211000002, "BRAVO"), 2, seq="7")
    out = feed_all(ingestor, "a", [one[0]], received=T0)
    out += feed_all(ingestor, "b", [two[0]], received=T0)
    out += feed_all(ingestor, "a", [one[1]], received=T0)
    out += feed_all(ingestor, "b", [two[1]], received=T0)
    assert [(r.mmsi, r.sources) for r in out] == [(211000001, ["a"]), (211000002, ["b"])]


def test_reused_sequence_id_after_lost_fragment() -> None:
    """Fragment 2 of the first message is lost; its sequence id is reused at once."""
    ingestor = Ingestor()
    lost = multipart(_static(211000001, "LOST"), 2, seq="3")
    again = multipart(_static(211000002, "AGAIN"), 2, seq="3")
    out = feed_all(ingestor, "rx", [lost[0], *again], received=T0)
    assert [(r.mmsi, r.shipname) for r in out] == [(211000002, "AGAIN")]
    health = ingestor.health("rx")
    assert health.fragments_dropped == {"inconsistent": 1}
    assert health.messages == 1


def test_fragment_number_zero_or_beyond_count_is_rejected() -> None:
    payload, _ = encode(static())
    zero = sentence(payload[:30], count=2, number=0, seq="1")
    beyond = sentence(payload[:30], count=2, number=3, seq="1")
    count_zero = sentence(payload[:30], count=0, number=1, seq="1")
    assert frame(zero.encode()) == BAD_FRAGMENT
    assert frame(beyond.encode()) == BAD_FRAGMENT
    assert frame(count_zero.encode()) == BAD_FRAGMENT
    ingestor = Ingestor()
    assert feed_all(ingestor, "rx", [zero, beyond, count_zero], received=T0) == []
    health = ingestor.health("rx")
    assert health.rejected == {BAD_FRAGMENT: 3}
    assert health.sentences == 0
    balanced(ingestor)


def test_tag_block_on_each_fragment_with_group() -> None:
    """NMEA 4.10 ``g:`` groups: time and station come from the first fragment's tag block."""
    ingestor = Ingestor()
    parts = multipart(static(), 3, seq="5")
    lines = [
        group_tag(1, 3, 1604, s="rORBCOMM008", c=1418169601) + parts[0],
        group_tag(2, 3, 1604) + parts[1],
        group_tag(3, 3, 1604) + parts[2],
    ]
    out = feed_all(ingestor, "sat", lines)
    assert len(out) == 1
    report = out[0]
    assert report.shipname == "HARBOUR TEST"
    assert report.time == 1418169601.0
    assert report.time_source == "tagblock"
    assert report.sources == ["rORBCOMM008"]
    assert report.nmea == parts
    assert ingestor.receivers["rORBCOMM008"].messages == 1


def test_group_interleaved_with_other_traffic_assembles() -> None:
    ingestor = Ingestor()
    parts = multipart(static(), 2, seq="6")
    lines = [
        tag_block(c=int(T0)) + parts[0],
        tag_block(c=int(T0) + 1) + single(position(mmsi=211000009)),
        tag_block(c=int(T0) + 1) + parts[1],
    ]
    out = feed_all(ingestor, "rx", lines)
    assert [(r.msg_type, r.mmsi, r.time) for r in out] == [
        (1, 211000009, T0 + 1), (5, 244123456, T0)]


def test_ttl_expiry_on_message_time() -> None:
    """Fragment 1 at t, fragment 2 at t + 6 s (TTL 5 s): expired, not glued."""
    ingestor = Ingestor()
    parts = multipart(static(), 2, seq="1")
    lines = [tag_block(c=int(T0)) + parts[0], tag_block(c=int(T0) + 6) + parts[1]]
    out = feed_all(ingestor, "rx", lines)
    assert out == []
    health = ingestor.health("rx")
    assert health.fragments_dropped["expired"] == 1
    assert health.messages == 0
    assert len(ingestor.assembler) == 0


def test_ttl_not_reached_assembles() -> None:
    ingestor = Ingestor()
    parts = multipart(static(), 2, seq="1")
    lines = [tag_block(c=int(T0)) + parts[0], tag_block(c=int(T0) + 4) + parts[1]]
    out = feed_all(ingestor, "rx", lines)
    assert [r.shipname for r in out] == ["HARBOUR TEST"]
    assert out[0].time == T0


def test_ttl_is_message_time_not_line_count() -> None:
    """Many lines within the TTL do not expire a group; one late line (by time) does."""
    ingestor = Ingestor()
    parts = multipart(static(), 2, seq="1")
    filler = [single(position(mmsi=211000000 + i)) for i in range(50)]
    out = feed_all(ingestor, "rx", [parts[0], *filler, parts[1]], received=T0)
    assert [r.msg_type for r in out].count(5) == 1


def test_pending_group_bound_counts_overflow() -> None:
    ingestor = Ingestor(max_pending_groups=3)
    firsts = [multipart(_static(211000000 + i, f"SHIP {i}"), 2, seq=str(i))[0]
              for i in range(5)]
    out = feed_all(ingestor, "rx", firsts, received=T0)
    assert out == []
    assert len(ingestor.assembler) == 3
    assert ingestor.health("rx").fragments_dropped == {"overflow": 2}
    # The oldest groups went; the newest still complete.
    last = multipart(_static(211000004, "SHIP 4"), 2, seq="4")
    out = feed_all(ingestor, "rx", [last[1]], received=T0)
    assert [r.shipname for r in out] == ["SHIP 4"]


def test_flush_expires_pending_groups() -> None:
    ingestor = Ingestor()
    parts = multipart(static(), 3, seq="1")
    out = feed_all(ingestor, "rx", parts[:2], received=T0, flush=True)
    assert out == []
    assert ingestor.health("rx").fragments_dropped == {"expired": 2}


def test_assembler_alone_keys_and_orders() -> None:
    """The assembler itself: fragments come back in order, keyed by source and channel."""
    assembler = Assembler(ttl_s=5.0, max_groups=10)
    dropped: list[Dropped] = []
    parts = [frame(line.encode()) for line in multipart(static(), 3, seq="9")]
    sentences = [p for p in parts if isinstance(p, Sentence)]
    assert len(sentences) == 3
    assert assembler.add("x", sentences[0], T0, dropped) is None
    assert assembler.add("y", sentences[1], T0, dropped) is None  # other source: orphan
    assert assembler.add("x", sentences[1], T0, dropped) is None
    done = assembler.add("x", sentences[2], T0 + 1, dropped)
    assert done is not None
    assert [s.number for s in done] == [1, 2, 3]
    assert [(d.source, d.reason, d.fragments) for d in dropped] == [("y", "inconsistent", 1)]


def test_two_stations_of_one_feed_with_the_same_sequence_id_are_not_glued() -> None:
    """A national feed: stations rxA and rxB interleave two type 5 messages on sequence id
    3. Keyed by source alone, B's first fragment took A's second (and A was lost)."""
    from ingest.ingestor import Ingestor
    from tests.ingest_helpers import feed_all, multipart, static, tag_block

    alpha = multipart(static(mmsi=244123456, shipname="ALPHA", destination="ROTTERDAM"), 2,
                      seq="3")
    bravo = multipart(static(mmsi=636012345, shipname="BRAVO",
                             destination="GLADSTONE PILOT GROU"), 2, seq="3")
    a, b = tag_block(s="rxA", c=1_767_268_800), tag_block(s="rxB", c=1_767_268_800)
    ingestor = Ingestor()
    out = feed_all(ingestor, "national", [a + alpha[0], b + bravo[0], a + alpha[1],
                                          b + bravo[1]])
    assert sorted((r.mmsi, r.shipname, r.destination, tuple(r.sources)) for r in out) == [
        (244123456, "ALPHA", "ROTTERDAM", ("rxA",)),
        (636012345, "BRAVO", "GLADSTONE PILOT GROU", ("rxB",))]
    assert not ingestor.health("national").fragments_dropped


def test_interleaved_tag_block_groups_are_told_apart_by_their_group_id() -> None:
    """libais style: only the first fragment names its station; the second carries just
    ``g:2-2-<id>``. By station alone A's second fragment finished B's message."""
    from ingest.ingestor import Ingestor
    from tests.ingest_helpers import feed_all, group_tag, multipart, static

    alpha = multipart(static(mmsi=244123456, shipname="ALPHA", destination="ROTTERDAM"), 2,
                      seq="3")
    bravo = multipart(static(mmsi=636012345, shipname="BRAVO",
                             destination="GLADSTONE PILOT GROU"), 2, seq="3")
    t = 1_767_268_800
    ingestor = Ingestor()
    out = feed_all(ingestor, "national", [
        group_tag(1, 2, 11, s="rxA", c=t) + alpha[0], group_tag(1, 2, 12, s="rxB", c=t) + bravo[0],
        group_tag(2, 2, 11) + alpha[1], group_tag(2, 2, 12) + bravo[1]])
    assert sorted((r.mmsi, r.shipname, r.destination, tuple(r.sources)) for r in out) == [
        (244123456, "ALPHA", "ROTTERDAM", ("rxA",)),
        (636012345, "BRAVO", "GLADSTONE PILOT GROU", ("rxB",))]
    assert not ingestor.health("national").fragments_dropped


def test_a_group_is_timed_out_on_its_own_stations_clock() -> None:
    """A satellite feed is many stations behind one source, their clocks far apart: in
    libais's tagblock log a line of another satellite 41 min ahead came between the two
    fragments of ROSINANTE's type 5 (both stamped 00:00:01), and the group was expired on
    the source's clock. Its own station's clock had not moved."""
    ingestor = Ingestor()
    out = feed_all(ingestor, "log", fixture("libais", "tagblock.nmea").read_text().splitlines(),
                   flush=True)
    static_ = [(r.mmsi, r.shipname, r.callsign, r.time, r.sources) for r in out
               if r.msg_type == 5]
    assert static_ == [(219005012, "ROSINANTE", "XPD5019", 1418169601.0, ["rORBCOMM008"])]
    assert not ingestor.health("log").fragments_dropped
    balanced(ingestor)


def test_a_stations_group_still_expires_when_its_own_clock_moves_on() -> None:
    """The station's next line 6 s on (TTL 5 s) expires its group; another station's line
    far ahead does not; and a station never heard again gives up its group once the
    source's clock is an hour past it."""
    parts = multipart(static(), 2, seq="1")
    t = 1_767_268_800
    a_first = tag_block(s="rxA", c=t) + parts[0]
    ingestor = Ingestor()
    feed_all(ingestor, "sat", [a_first, tag_block(s="rxB", c=t + 2_000) + single(position())])
    assert len(ingestor.assembler) == 1
    feed_all(ingestor, "sat", [tag_block(s="rxA", c=t + 6) + single(position(mmsi=211000001))])
    feed_all(ingestor, "sat", [tag_block(s="rxB", c=t + 2_002) + single(position())])
    assert len(ingestor.assembler) == 0
    assert ingestor.health("sat").fragments_dropped == {"expired": 1}
    lone = Ingestor()
    feed_all(lone, "sat", [a_first, tag_block(s="rxB", c=t + 3_000) + single(position())])
    assert len(lone.assembler) == 1
    feed_all(lone, "sat", [tag_block(s="rxB", c=t + 3_602) + single(position())])
    assert len(lone.assembler) == 0
    assert lone.health("sat").fragments_dropped == {"expired": 1}


def _flood(count: int, start: int = 0) -> list[str]:
    """Unfinished first fragments, each on its own sequence id (a UDP port open to anyone)."""
    return [multipart(_static(211000000 + i, f"FLOOD {i}"), 2, seq=str(i))[0]
            for i in range(start, start + count)]


def test_a_flood_on_one_source_pushes_out_only_its_own_pending_groups() -> None:
    """Pen test: a UDP source flooding first fragments pushed the national feed's pending
    type 5 out of the shared bound (lost, and counted as its overflow). The bound is per
    source: the flooder loses its own oldest groups, and the honest message assembles."""
    ingestor = Ingestor(max_pending_groups=10)
    honest = multipart(static(mmsi=244123456, shipname="HONEST"), 2, seq="7")
    stamp = tag_block(s="rxN", c=int(T0))
    out = feed_all(ingestor, "national", [stamp + honest[0]], received=T0)
    out += feed_all(ingestor, "rx-quay", _flood(50), received=T0 + 1)
    out += feed_all(ingestor, "national", [stamp + honest[1]], received=T0 + 2)
    assert [(r.mmsi, r.msg_type, r.shipname) for r in out] == [(244123456, 5, "HONEST")]
    assert not ingestor.health("national").fragments_dropped
    assert ingestor.health("rx-quay").fragments_dropped == {"overflow": 40}
    assert (ingestor.assembler.pending("rx-quay"), ingestor.assembler.pending("national")) \
        == (10, 0)


def test_a_flood_does_not_forget_where_another_source_s_continuation_belongs() -> None:
    """Only the first fragment names its station; the continuation is keyed by the station
    that started the group. A flood of many sequence ids cleared that memory for every
    source (and the honest continuation was an orphan, ``inconsistent``). The flood here
    completes its messages, so only that memory, not the pending groups, fills."""
    ingestor = Ingestor(max_pending_groups=5)
    honest = multipart(static(mmsi=244123456, shipname="HONEST"), 2, seq="7")
    out = feed_all(ingestor, "national", [tag_block(s="rxN", c=int(T0)) + honest[0]],
                   received=T0)
    flood = [line for i in range(30)
             for line in multipart(_static(211000000 + i, f"FLOOD {i}"), 2, seq=f"x{i}")]
    flooded = feed_all(ingestor, "rx-quay", flood, received=T0 + 1)
    out += feed_all(ingestor, "national", [honest[1]], received=T0 + 2)
    assert [(r.mmsi, r.shipname, tuple(r.sources)) for r in out] == [
        (244123456, "HONEST", ("rxN",))]
    assert not ingestor.health("national").fragments_dropped
    assert len(flooded) == 30 and not ingestor.health("rx-quay").fragments_dropped


def test_pending_groups_stay_bounded_by_sources_times_the_bound() -> None:
    """Memory: however long each source floods, at most max_pending_groups each."""
    ingestor = Ingestor(max_pending_groups=8)
    for source in ("rx-quay", "national", "dongle"):
        feed_all(ingestor, source, _flood(500), received=T0)
        assert ingestor.assembler.pending(source) == 8
        assert ingestor.health(source).fragments_dropped == {"overflow": 492}
    assert len(ingestor.assembler) == 3 * 8
