"""Sources on real sockets (127.0.0.1), real pseudo-terminals, real files, pipes and stdin."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import random
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ingest.lines import RawLine
from ingest.sources import (
    Backoff,
    BackoffPolicy,
    FileSource,
    LineQueue,
    LineQueueClosed,
    LineSplitter,
    SerialSource,
    Source,
    SourceError,
    TcpClientSource,
    UdpSource,
    open_log_lines,
    parse_host_port,
    parse_source_spec,
    run_sources,
    slugify,
    split_lines,
)

# Short back-off so reconnect tests take milliseconds; healthy_after=0 resets after any link.
FAST = BackoffPolicy(initial=0.01, maximum=0.05, factor=2.0, jitter=0.5, healthy_after=0.0)
GUARD = 10.0  # seconds: only a guard against hanging, never an assertion on speed

S1 = b"!AIVDM,1,1,,A,13u?etPv2;0n:dDPwUM1U1Cb069D,0*23"
S2 = b"!AIVDM,1,1,,B,15M67FC000G?ufbE`FepT@3n00Sa,0*5C"
S3 = b"\\s:rcv1,c:1700000000*5A\\!AIVDM,1,1,,A,B6CdCm0t3`tba35f@V9faHi7kP06,0*6E"


# -- helpers ---------------------------------------------------------------------------------


async def take(queue: LineQueue, n: int) -> list[RawLine]:
    async with asyncio.timeout(GUARD):
        return [await queue.get() for _ in range(n)]


async def wait_until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not predicate():
            await asyncio.sleep(0.002)


class StatusLog:
    """Records (name, online) changes and lets a test wait for the n-th one."""

    def __init__(self, source: Source) -> None:
        self.changes: list[tuple[str, bool]] = []
        source.add_status_listener(self)

    def __call__(self, name: str, online: bool) -> None:
        self.changes.append((name, online))

    async def wait_for(self, count: int) -> None:
        await wait_until(lambda: len(self.changes) >= count)


@contextlib.asynccontextmanager
async def running(source: Source, queue: LineQueue) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run(queue))
    try:
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- splitter, back-off, queue ---------------------------------------------------------------


def test_split_lines_handles_every_line_ending_and_drops_empty_lines() -> None:
    assert split_lines(b"a\r\nb\nc\rd\r\n\r\n\ne") == [b"a", b"b", b"c", b"d", b"e"]
    assert split_lines(b"") == []
    assert split_lines(b"\r\n") == []


def test_line_splitter_joins_lines_across_chunks() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"!AIVDM,1") == []
    assert splitter.feed(b",1,,A\r") == [b"!AIVDM,1,1,,A"]
    assert splitter.feed(b"\nxy") == []  # the LF of a CRLF split over two chunks
    assert splitter.pending == 2
    assert splitter.feed(b"z\n\nw") == [b"xyz"]
    assert splitter.flush() == b"w"
    assert splitter.flush() is None
    splitter.feed(b"frag")
    assert splitter.discard() is True
    assert splitter.discard() is False


def test_line_splitter_bounds_an_unterminated_run_and_skips_its_rest() -> None:
    splitter = LineSplitter(max_pending=8)
    assert splitter.feed(b"0123456789") == []  # too long: thrown away
    assert splitter.pending == 0
    assert splitter.overlong == 1
    assert splitter.feed(b"more-of-it") == []
    assert splitter.feed(b"tail\nok\nnext") == [b"ok"]
    assert splitter.flush() == b"next"


def test_backoff_grows_caps_jitters_and_resets() -> None:
    backoff = Backoff(BackoffPolicy(initial=1, maximum=8, factor=2, jitter=0.5), random.Random(7))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == 6  # jittered, not lock-step
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() <= 1
    exact = Backoff(BackoffPolicy(initial=1, maximum=60, jitter=0))
    assert [exact.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"initial": 5, "maximum": 1}, {"factor": 0.5}, {"jitter": 1.5}],
)
def test_backoff_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


async def test_queue_put_waits_for_room_and_offer_counts_drops() -> None:
    queue = LineQueue(maxsize=2)
    await queue.put(RawLine("a", b"1", None))
    assert queue.offer(RawLine("u", b"2", 1.0)) is True
    assert queue.offer(RawLine("u", b"3", 1.0)) is False
    assert queue.offer(RawLine("v", b"4", 1.0)) is False
    assert queue.drops == {"u": 1, "v": 1}
    assert queue.dropped == 2

    blocked = asyncio.create_task(queue.put(RawLine("a", b"5", None)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not blocked.done()  # back-pressure: full queue, the producer waits
    assert (await queue.get()).data == b"1"
    await blocked
    assert [line.data for line in await queue.get_many(10)] == [b"2", b"5"]
    assert queue.get_nowait() is None


async def test_queue_close_drains_then_ends_and_wakes_waiters() -> None:
    queue = LineQueue(maxsize=1)
    waiting_getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.close()
    with pytest.raises(LineQueueClosed):
        await waiting_getter

    queue = LineQueue(maxsize=1)
    await queue.put(RawLine("a", b"1", None))
    waiting_putter = asyncio.create_task(queue.put(RawLine("a", b"2", None)))
    await asyncio.sleep(0)
    queue.close()
    with pytest.raises(LineQueueClosed):
        await waiting_putter
    assert [line.data async for line in queue] == [b"1"]  # what was in it still comes out
    assert queue.offer(RawLine("u", b"x", 1.0)) is False
    assert queue.drops == {"u": 1}
    with pytest.raises(LineQueueClosed):
        await queue.get()


async def test_queue_cancelled_getter_does_not_lose_a_wakeup() -> None:
    queue = LineQueue(maxsize=4)
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.offer(RawLine("u", b"only", 1.0))  # wakes `first` ...
    first.cancel()  # ... which leaves before taking it
    async with asyncio.timeout(GUARD):
        assert (await second).data == b"only"


# -- UDP --------------------------------------------------------------------------------------


async def test_udp_datagrams_with_several_lines_arrive_as_raw_lines() -> None:
    queue = LineQueue()
    source = UdpSource("udp-test", "127.0.0.1", 0)
    status = StatusLog(source)
    async with running(source, queue):
        await status.wait_for(1)
        assert source.connected and source.local_address is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(S1 + b"\r\n" + S2 + b"\r\n", source.local_address)
            tx.sendto(S3, source.local_address)  # no line end: a datagram is whole
            tx.sendto(b"\r\n\r\n", source.local_address)  # nothing but empty lines
            got = await take(queue, 3)
            await wait_until(lambda: source.datagrams == 3)
    assert [line.data for line in got] == [S1, S2, S3]
    assert {line.source for line in got} == {"udp-test"}
    assert all(line.received is not None and line.received > 1.6e9 for line in got)
    assert got[0].received == got[1].received  # one datagram, one arrival time
    assert queue.empty()
    assert status.changes == [("udp-test", True), ("udp-test", False)]
    assert source.stats.lines == 3


async def test_udp_allow_from_takes_only_the_port_s_receivers(
        caplog: pytest.LogCaptureFixture) -> None:
    """A datagram from anywhere on the network was taken: a forged MMSI flood, for one."""
    import ipaddress

    queue = LineQueue()
    source = UdpSource("udp-allow", "127.0.0.1", 0,
                       allow_from=[ipaddress.ip_network("127.0.0.1/32"),
                                   ipaddress.ip_network("127.0.0.8/30")])
    status = StatusLog(source)
    async with running(source, queue):
        await status.wait_for(1)
        assert source.local_address is not None
        for sender, line in (("127.0.0.1", S1), ("127.0.0.2", S2), ("127.0.0.9", S3),
                             ("127.0.0.2", S2), ("127.0.0.12", S2)):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.bind((sender, 0))  # every 127/8 address is the loopback's
                tx.sendto(line + b"\r\n", source.local_address)
        await wait_until(lambda: source.datagrams + source.stats.refused_datagrams == 5)
        got = await take(queue, 2)
    assert [line.data for line in got] == [S1, S3]
    assert queue.empty()
    assert (source.datagrams, source.stats.refused_datagrams, source.stats.lines) == (2, 3, 2)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [  # once per sender
        "source udp-allow: datagrams from 127.0.0.2 refused (not in allow_from)",
        "source udp-allow: datagrams from 127.0.0.12 refused (not in allow_from)"]


async def test_udp_flood_into_a_tiny_queue_counts_every_drop() -> None:
    queue = LineQueue(maxsize=16)
    source = UdpSource("udp-flood", "127.0.0.1", 0)
    status = StatusLog(source)
    sent = 0
    async with running(source, queue):
        await status.wait_for(1)
        assert source.local_address is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for burst in range(10):
                # Bursts small enough for the socket buffer: the kernel must not drop any,
                # so every loss is one the queue counted.
                for d in range(10):
                    datagram = b"".join(b"line-%d-%d-%d\n" % (burst, d, i) for i in range(10))
                    tx.sendto(datagram, source.local_address)
                    sent += 10
                expected = (burst + 1) * 10
                await wait_until(lambda: source.datagrams == expected)  # noqa: B023
    delivered = [line async for line in _drain(queue)]
    assert sent == 1000
    assert len(delivered) == 16
    assert queue.drops == {"udp-flood": 1000 - 16}
    assert len(delivered) + queue.dropped == sent == source.stats.lines
    # Nothing was consumed during the flood: the first lines are the ones kept.
    assert [line.data for line in delivered] == [b"line-0-%d-%d" % divmod(i, 10) for i in range(16)]


async def test_udp_kernel_drops_are_reported_when_the_loop_falls_behind(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ingest.sources.udp.KERNEL_DROPS_CHECK_S", 0.01)
    queue = LineQueue()
    source = UdpSource("udp-slow", "127.0.0.1", 0, rcvbuf=2048)  # room for a few datagrams
    status = StatusLog(source)
    async with running(source, queue):
        await status.wait_for(1)
        assert source.local_address is not None
        assert source.kernel_drops() == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(200):  # the loop is not running: the socket buffer overflows
                tx.sendto(b"line-%d\n" % i, source.local_address)

        def accounted() -> bool:
            return source.datagrams + (source.kernel_drops() or 0) == 200

        await wait_until(accounted)
        kernel = source.kernel_drops()
        await wait_until(lambda: bool(caplog.messages))
    assert kernel is not None and kernel > 0
    assert source.datagrams == queue.qsize() == 200 - kernel
    assert source.kernel_drops() is None  # stopped
    assert caplog.messages == [
        f"source udp-slow: the kernel dropped {kernel} datagrams ({kernel} since the start): "
        "the service fell behind for longer than the socket buffer lasts (net.core.rmem_max)"]


async def _drain(queue: LineQueue) -> AsyncIterator[RawLine]:
    queue.close()
    async for line in queue:
        yield line


async def test_udp_port_in_use_is_a_source_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        source = UdpSource("udp-busy", "127.0.0.1", port)
        with pytest.raises(SourceError, match=f"udp-busy.*127.0.0.1:{port}"):
            await source.run(LineQueue())
    assert not source.connected


# -- TCP --------------------------------------------------------------------------------------


async def test_tcp_client_reconnects_after_the_feed_goes_and_comes_back(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    close_first = asyncio.Event()
    noise = b"x" * 200  # unterminated past max_pending: an overlong run on each link

    async def first_feed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(S1 + b"\r\n" + S2 + b"\r\n" + noise)
        await writer.drain()
        await wait_until(lambda: source.stats.overlong == 1)
        writer.write(b"\n!AIVDM,1,1,,A,13u?et")  # cut mid-line
        await writer.drain()
        await close_first.wait()
        writer.close()

    async def second_feed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(noise)
        await writer.drain()
        await wait_until(lambda: source.stats.overlong == 2)
        writer.write(b"\n" + S3 + b"\n" + S1 + b"\n")
        await writer.drain()
        await reader.read()  # hold the link until the client goes
        writer.close()

    caplog.set_level("WARNING", logger="ingest.sources.stream")
    queue = LineQueue()
    source = TcpClientSource("tcp-test", "127.0.0.1", port, backoff=FAST, max_pending=100)
    status = StatusLog(source)
    server = await asyncio.start_server(first_feed, "127.0.0.1", port)
    async with running(source, queue):
        await status.wait_for(1)
        first = await take(queue, 2)
        server.close()  # the feed goes away: no listener, then the link drops
        await server.wait_closed()
        close_first.set()
        await status.wait_for(2)
        await wait_until(lambda: source.stats.connect_failures >= 1)  # refused while away
        server = await asyncio.start_server(second_feed, "127.0.0.1", port)
        try:
            await status.wait_for(3)
            second = await take(queue, 2)
        finally:
            server.close()
    await server.wait_closed()
    assert [line.data for line in first] == [S1, S2]
    assert [line.data for line in second] == [S3, S1]  # the cut fragment was not glued on
    assert {line.source for line in first + second} == {"tcp-test"}
    assert all(line.received is not None for line in first + second)
    assert queue.empty()
    assert status.changes == [
        ("tcp-test", True),
        ("tcp-test", False),
        ("tcp-test", True),
        ("tcp-test", False),
    ]
    assert source.stats.connects == 2
    assert source.stats.disconnects == 1
    assert source.stats.partial_lines == 1
    assert source.stats.lines == 4
    assert source.stats.overlong == 2  # the second link's count adds to the first's
    assert not source.connected
    # One warning when the outage starts and one when the feed is back (the refusals
    # between are at debug level).
    where = f"tcp 127.0.0.1:{port}"
    assert [re.sub(r"retrying in \S+ s", "retrying", m) for m in caplog.messages] == [
        f"source tcp-test: lost {where}: closed by peer; retrying",
        f"source tcp-test: connected to {where} again",
    ]


async def test_tcp_lines_split_over_segments_are_joined() -> None:
    step = asyncio.Event()

    async def feed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(S1[:10])
        await writer.drain()
        await step.wait()  # the client has read the first piece by now
        step.clear()
        writer.write(S1[10:] + b"\r")
        await writer.drain()
        await step.wait()
        writer.write(b"\n\r\n" + S2 + b"\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(feed, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    queue = LineQueue()
    source = TcpClientSource("tcp-split", "127.0.0.1", port, backoff=FAST)
    try:
        async with running(source, queue):
            await wait_until(lambda: source.stats.bytes == 10)
            step.set()
            assert (await take(queue, 1))[0].data == S1
            step.set()
            assert (await take(queue, 1))[0].data == S2
    finally:
        server.close()
        await server.wait_closed()
    assert queue.empty()
    assert source.stats.partial_lines == 0
    assert source.stats.connects == 1


async def test_tcp_idle_timeout_drops_a_silent_link_and_reconnects() -> None:
    accepted = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = TcpClientSource("tcp-idle", "127.0.0.1", port, backoff=FAST, idle_timeout=0.05)
    try:
        async with running(source, LineQueue()):
            await wait_until(lambda: source.stats.connects >= 2)
    finally:
        server.close()
        await server.wait_closed()
    assert accepted >= 2
    assert source.stats.disconnects >= 1


# -- serial (pseudo-terminals) ----------------------------------------------------------------


async def test_serial_reads_lines_and_survives_unplug_and_replug(tmp_path: Path) -> None:
    link = tmp_path / "ttyAIS"  # like /dev/serial/by-id/...: a stable name for a device
    master, slave = os.openpty()
    os.symlink(os.ttyname(slave), link)
    os.close(slave)
    queue = LineQueue()
    source = SerialSource("serial-ttyais", str(link), 38400, backoff=FAST)
    status = StatusLog(source)
    try:
        async with running(source, queue):
            await status.wait_for(1)
            os.write(master, S1 + b"\r\n" + S2 + b"\r\n" + b"!AIVDM,1,1,,B,15M6")
            before = await take(queue, 2)
            await wait_until(lambda: source.stats.bytes >= len(S1) + len(S2) + 22)

            # Unplug: the device goes away (reads fail) and its node disappears.
            os.close(master)
            master = -1
            link.unlink()
            await status.wait_for(2)
            await wait_until(lambda: source.stats.connect_failures >= 1)  # polled, missing

            # Replug: a new device under the same name.
            master, slave = os.openpty()
            os.symlink(os.ttyname(slave), link)
            os.close(slave)
            await status.wait_for(3)
            os.write(master, S3 + b"\r\n")
            after = await take(queue, 1)
    finally:
        if master >= 0:
            os.close(master)
    assert [line.data for line in before] == [S1, S2]
    assert [line.data for line in after] == [S3]
    assert {line.source for line in before + after} == {"serial-ttyais"}
    assert all(line.received is not None for line in before + after)
    assert [online for _, online in status.changes] == [True, False, True, False]
    assert source.stats.connects == 2
    assert source.stats.partial_lines == 1  # the fragment cut by the unplug
    assert queue.empty()


# -- files, pipes, stdin ----------------------------------------------------------------------

LOG = S1 + b"\r\n" + S2 + b"\n\r\n\n" + S3 + b"\r" + b"1700000000.5 " + S1 + b"\r\n" + S2
EXPECTED = [S1, S2, S3, b"1700000000.5 " + S1, S2]  # last line has no line end: still a line


@pytest.fixture
def logs(tmp_path: Path) -> dict[str, Path]:
    plain = tmp_path / "plain.gz"  # the name lies: content decides
    plain.write_bytes(LOG)
    packed = tmp_path / "packed.log"
    packed.write_bytes(gzip.compress(LOG))
    members = tmp_path / "members"  # `cat a.gz b.gz`: two gzip members
    members.write_bytes(gzip.compress(LOG[:50]) + gzip.compress(LOG[50:]))
    return {"plain": plain, "gzip": packed, "members": members}


@pytest.mark.parametrize("chunk_size", [1, 3, 1 << 20])
def test_open_log_lines_plain_and_gzip_give_identical_lines(
    logs: dict[str, Path], chunk_size: int
) -> None:
    for path in logs.values():
        assert list(open_log_lines(path, chunk_size=chunk_size)) == EXPECTED, path


@pytest.mark.parametrize("kind", ["plain", "gzip", "members"])
async def test_file_source_streams_lines_then_ends(logs: dict[str, Path], kind: str) -> None:
    queue = LineQueue(maxsize=2)  # smaller than the log: the source must wait for room
    source = FileSource("replay", logs[kind], chunk_size=7)
    consumer = asyncio.create_task(_collect(queue))
    async with asyncio.timeout(GUARD):
        await run_sources([source], queue)
        got = await consumer
    assert [line.data for line in got] == EXPECTED
    assert {(line.source, line.received) for line in got} == {("replay", None)}
    assert source.stats.lines == len(EXPECTED)
    assert not source.connected


async def test_a_file_source_of_the_live_service_stamps_lines_with_their_arrival(
        logs: dict[str, Path], tmp_path: Path) -> None:
    """``run`` with a file or stdin source: a live feed, so the clock-ahead guard applies
    (lines went in with ``received=None`` and one stamped a year ahead went unchecked)."""
    from harbourwatch.config import load_config
    from harbourwatch.options import ServiceOptions, build_sources

    config_path = tmp_path / "port.yaml"
    config_path.write_text(f"sources:\n  - {{kind: file, name: f, path: {logs['plain']}}}\n")
    (source,) = build_sources(load_config(config_path, env={}), ServiceOptions())
    queue = LineQueue(maxsize=100)
    before = time.time()
    async with asyncio.timeout(GUARD):
        await run_sources([source], queue)
    got = await _collect(queue)
    assert [line.data for line in got] == EXPECTED
    assert all(line.received is not None and before <= line.received <= time.time()
               for line in got)


async def _collect(queue: LineQueue) -> list[RawLine]:
    return [line async for line in queue]


async def test_file_source_reads_a_fifo_plain_and_gzip(tmp_path: Path) -> None:
    for payload in (LOG, gzip.compress(LOG[:40]) + gzip.compress(LOG[40:])):
        fifo = tmp_path / "feed.fifo"
        os.mkfifo(fifo)
        queue = LineQueue()
        source = FileSource("pipe", fifo, chunk_size=5)
        task = asyncio.create_task(run_sources([source], queue))
        await wait_until(lambda: source.connected)  # noqa: B023 (awaited here)
        # Write from a thread: a FIFO blocks until both ends are open.
        await asyncio.to_thread(fifo.write_bytes, payload)
        async with asyncio.timeout(GUARD):
            await task
        assert [line.data async for line in queue] == EXPECTED
        fifo.unlink()


async def test_file_source_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nothing\.log"):
        await FileSource("replay", tmp_path / "nothing.log").run(LineQueue())
    with pytest.raises(SourceError, match=r"nothing\.log"):
        list(open_log_lines(tmp_path / "nothing.log"))


def test_truncated_gzip_is_a_source_error_after_the_good_lines(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(LOG * 50)[:-30])
    lines: list[bytes] = []
    with pytest.raises(SourceError, match=r"cut\.gz"):
        lines.extend(open_log_lines(path))
    assert lines[:5] == [*EXPECTED[:4], EXPECTED[4] + S1]


STDIN_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    from ingest.sources import FileSource, LineQueue, run_sources

    async def main():
        queue = LineQueue(maxsize=3)
        source = FileSource("stdin", "-", chunk_size=4)
        async def consume():
            return [line async for line in queue]
        consumer = asyncio.create_task(consume())
        await run_sources([source], queue)
        for line in await consumer:
            print(repr((line.source, line.data, line.received)))
        print("stdin blocking:", os.get_blocking(0))  # left as it was found

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("how", ["pipe-plain", "pipe-gzip", "redirected-gzip-file"])
def test_file_source_reads_stdin(logs: dict[str, Path], how: str) -> None:
    if how == "redirected-gzip-file":  # `harbourwatch ... - < log.gz`: stdin is a file
        with logs["gzip"].open("rb") as stdin:
            done = subprocess.run(
                [sys.executable, "-c", STDIN_SCRIPT], stdin=stdin, capture_output=True,
                timeout=60, check=False,
            )  # fmt: skip
    else:  # `zcat log.gz | harbourwatch ... -` (or the gzip itself through a pipe)
        data = LOG if how == "pipe-plain" else gzip.compress(LOG)
        done = subprocess.run(
            [sys.executable, "-c", STDIN_SCRIPT], input=data, capture_output=True,
            timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    expected = "".join(repr(("stdin", line, None)) + "\n" for line in EXPECTED)
    expected += "stdin blocking: True\n"
    assert done.stdout.decode() == expected


async def test_run_sources_closes_the_queue_after_the_last_file(logs: dict[str, Path]) -> None:
    queue = LineQueue(maxsize=4)
    sources = [FileSource("a", logs["plain"]), FileSource("b", logs["gzip"])]
    consumer = asyncio.create_task(_collect(queue))
    async with asyncio.timeout(GUARD):
        await run_sources(sources, queue)
        got = await consumer
    assert queue.closed
    assert [line.data for line in got if line.source == "a"] == EXPECTED
    assert [line.data for line in got if line.source == "b"] == EXPECTED


# -- flags ------------------------------------------------------------------------------------


def test_specs_build_sources_with_default_names() -> None:
    udp = parse_source_spec("udp", "0.0.0.0:10110")
    assert isinstance(udp, UdpSource)
    assert (udp.name, udp.host, udp.port) == ("udp-10110", "0.0.0.0", 10110)
    assert isinstance(parse_source_spec("udp", "10111"), UdpSource)
    assert parse_source_spec("udp", ":10112").name == "udp-10112"

    tcp = parse_source_spec("tcp", "ais.example.org:5631")
    assert isinstance(tcp, TcpClientSource)
    assert (tcp.name, tcp.host, tcp.port) == ("tcp-ais-example-org-5631", "ais.example.org", 5631)
    v6 = parse_source_spec("tcp", "[::1]:10110")
    assert isinstance(v6, TcpClientSource)
    assert (v6.name, v6.host) == ("tcp-1-10110", "::1")

    ser = parse_source_spec("serial", "/dev/ttyUSB0")
    assert isinstance(ser, SerialSource)
    assert (ser.name, ser.device, ser.baudrate) == ("serial-ttyusb0", "/dev/ttyUSB0", 38400)
    ser = parse_source_spec("serial", "/dev/ttyS1:4800", name="bridge-radar")
    assert isinstance(ser, SerialSource)
    assert (ser.name, ser.device, ser.baudrate) == ("bridge-radar", "/dev/ttyS1", 4800)
    by_path = "/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0"
    ser = parse_source_spec("serial", by_path)
    assert isinstance(ser, SerialSource)
    assert (ser.device, ser.baudrate) == (by_path, 38400)

    log = parse_source_spec("file", "/var/log/ais/2026-01-01.nmea.gz")
    assert isinstance(log, FileSource)
    assert log.name == "2026-01-01"  # as replay and decode name it
    assert parse_source_spec("file", "-").name == "stdin"


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        ("tcp", "10110", "expected HOST:PORT"),
        ("tcp", "host:", "not a number"),
        ("tcp", "host:http", "not a number"),
        ("udp", "0.0.0.0:70000", "outside 1-65535"),
        ("udp", "0.0.0.0:0", "outside 1-65535"),
        ("tcp", "::1:10110", "brackets"),
        ("serial", "/dev/ttyUSB0:38401", "not one of"),
        ("serial", ":4800", "expected DEV"),
        ("pigeon", "x", "unknown source kind"),
    ],
)
def test_bad_specs_raise_clear_errors(kind: str, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_source_spec(kind, spec)


def test_names_are_validated_and_slugified() -> None:
    with pytest.raises(ValueError, match="bad source name"):
        UdpSource("north/#", "127.0.0.1", 10110)
    assert slugify("serial-ttyUSB0") == "serial-ttyusb0"
    assert slugify("tcp-::1-10110") == "tcp-1-10110"
    assert parse_host_port("[fe80::1]:1", flag="--tcp") == ("fe80::1", 1)


@contextlib.asynccontextmanager
async def udp_listening(name: str, queue: LineQueue
                        ) -> AsyncIterator[tuple[UdpSource, tuple[str, int]]]:
    """A UDP source on a free 127.0.0.1 port, running until the block ends."""
    source = UdpSource(name, "127.0.0.1", 0)
    status = StatusLog(source)
    async with running(source, queue):
        await status.wait_for(1)
        assert source.local_address is not None
        yield source, source.local_address


async def test_what_a_flood_dropped_shows_in_sources_and_metrics() -> None:
    """The queue counted its drops, but nothing showed them (DESIGN: counted drops)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from api.deps import sources_of
    from api.metrics import ServiceCollector
    from harbourwatch.service import transport_of
    from ingest.ingestor import Ingestor

    queue = LineQueue(maxsize=16)
    async with udp_listening("udp-flood", queue) as (source, address):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for d in range(10):
                tx.sendto(b"".join(b"junk-%d-%d\n" % (d, i) for i in range(10)), address)
            await wait_until(lambda: source.datagrams == 10)
        provide = sources_of(Ingestor(), transport_of([source], queue))
        shown = provide()["sources"]["udp-flood"]
        registry = CollectorRegistry()
        registry.register(ServiceCollector(sources=provide))
        metrics = generate_latest(registry).decode()
    assert (shown["queue_dropped"], shown["kernel_dropped"]) == (100 - 16, 0)
    assert (shown["connects"], shown["disconnects"], shown["overlong"]) == (1, 0, 0)
    assert 'harbourwatch_source_queue_dropped_total{source="udp-flood"} 84.0' in metrics
    assert 'harbourwatch_source_connects_total{source="udp-flood"} 1.0' in metrics


async def test_a_watchdog_sees_a_source_dead_since_start_and_one_that_is_heard() -> None:
    """No series existed for a source never heard (a receiver dead since boot never
    alerted), and message time can lag arrival: the link's state and the wall time a line
    last arrived are exposed per source."""
    from prometheus_client import CollectorRegistry, generate_latest

    from api.deps import sources_of
    from api.metrics import ServiceCollector
    from harbourwatch.service import transport_of
    from harbourwatch.timeutil import parse_iso
    from ingest.ingestor import Ingestor

    queue = LineQueue()
    async with udp_listening("udp-heard", queue) as (heard, address), \
            udp_listening("udp-silent", queue) as (silent, _unused):
        start = time.time() - 0.001  # times are shown to the millisecond
        provide = sources_of(Ingestor(), transport_of([heard, silent], queue))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(b"!AIVDM,line\n", address)
            await wait_until(lambda: heard.datagrams == 1)
        shown = provide()["sources"]
        registry = CollectorRegistry()
        registry.register(ServiceCollector(sources=provide))
        metrics = {line.split(" ")[0]: float(line.split(" ")[1])
                   for line in generate_latest(registry).decode().splitlines()
                   if line.startswith("harbourwatch_source_")}
    assert shown["udp-silent"]["last_line_at"] is None and shown["udp-silent"]["connected"]
    assert parse_iso(shown["udp-heard"]["last_line_at"]) >= start
    arrived = "harbourwatch_source_last_line_arrival_timestamp_seconds"
    assert metrics[f'{arrived}{{source="udp-heard"}}'] >= start
    since = parse_iso(shown["udp-silent"]["watched_since"])  # ages from the start
    assert start <= since == metrics[f'{arrived}{{source="udp-silent"}}'] <= parse_iso(
        shown["udp-heard"]["last_line_at"])
    assert metrics['harbourwatch_source_connected{source="udp-silent"}'] == 1.0


async def test_udp_sentences_cut_across_datagrams_are_joined_per_sender() -> None:
    """A serial-to-network converter packs bytes into fixed-size datagrams: sentences cut
    in two were two rejected lines. Whole sentences without a line end stay lines of their
    own, and a second sender's datagrams do not mix in."""
    from ingest.ingestor import Ingestor
    from tests.ingest_helpers import position, single

    sentences = [single(position(mmsi=244000000 + i)) for i in range(40)]
    stream = "".join(s + "\r\n" for s in sentences).encode()
    queue = LineQueue()
    async with udp_listening("udp-packed", queue) as (source, address):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as packer, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
            chunks = [stream[i:i + 64] for i in range(0, len(stream), 64)]
            for chunk in chunks:
                packer.sendto(chunk, address)
                plain.sendto(sentences[0].encode(), address)  # no line end
            await wait_until(lambda: source.datagrams == 2 * len(chunks))
    ingestor = Ingestor()
    reports = [r for line in [line async for line in _drain(queue)]
               for r in ingestor.feed(line.source, line.data, line.received)]
    health = ingestor.health("udp-packed")
    assert dict(health.rejected) == {}
    assert sorted({r.mmsi for r in reports}) == [244000000 + i for i in range(40)]
    assert health.sentences == 40 + len(chunks)


async def test_a_tag_blocked_sentence_cut_after_its_tag_block_is_joined() -> None:
    """The tag block's own *hh is no sign that the sentence is whole."""
    from tests.ingest_helpers import position, single, tag_block

    line = (tag_block(s="rx1", c=1_767_268_800) + single(position()) + "\r\n").encode()
    queue = LineQueue()
    async with udp_listening("udp-cut", queue) as (source, address):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for piece in (line[:45], line[45:66], line[66:]):
                tx.sendto(piece, address)
            closing = line.index(b"\\", 1)  # the tag block's closing "\"
            cuts = ((line[:closing], line[closing:]),  # just before it
                    (line[:closing + 1], line[closing + 1:]),  # just after it
                    (line[:closing], line[closing:closing + 1], line[closing + 1:]))  # alone
            for pieces in cuts:
                for piece in pieces:
                    tx.sendto(piece, address)
            tx.sendto(line[:30], address)  # a start whose rest never comes
            await wait_until(lambda: source.datagrams == 11)
    assert [got.data async for got in _drain(queue)] == [line.rstrip()] * 4
    assert source.stats.partial_lines == 1


async def test_a_udp_stream_of_non_nmea_bytes_is_not_held_without_end() -> None:
    """A sender of unterminated bytes with no ``*hh`` had each datagram glued to all it sent
    before: memory and CPU grew with the square of it, and no counter moved."""
    from ingest.framing import MAX_LINE
    from ingest.ingestor import Ingestor
    from tests.ingest_helpers import position, single

    sentence = single(position()).encode()
    junk = bytes(random.Random(1).choice(b"abcdefgh0123456789,") for _ in range(1400))
    queue = LineQueue()
    async with udp_listening("udp-junk", queue) as (source, address):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(200):
                tx.sendto(junk, address)
            await wait_until(lambda: source.datagrams == 200)
            assert all(len(start) <= MAX_LINE for start, _ in source._held.values())
            tx.sendto(sentence + b"\r\n", address)  # the same sender, a sentence of its own
            await wait_until(lambda: source.datagrams == 201)
    lines = [line async for line in _drain(queue)]
    assert len(lines) == 201 and lines[-1].data == sentence
    ingestor = Ingestor()
    for line in lines:
        ingestor.feed(line.source, line.data, line.received)
    assert dict(ingestor.health("udp-junk").rejected) == {"too_long": 200}


async def test_a_link_that_is_closed_as_soon_as_it_opens_is_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """A proxy (socat, ser2net, docker-proxy) accepts while its receiver is away: each
    cycle logged "connected again" and "lost", 65 warnings in half a second."""
    port = free_port()
    accepted = 0

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    caplog.set_level("DEBUG", logger="ingest.sources.stream")
    flapping = BackoffPolicy(initial=0.01, maximum=0.02, factor=2.0, jitter=0.5,
                             healthy_after=5.0)
    source = TcpClientSource("tcp-flap", "127.0.0.1", port, backoff=flapping)
    server = await asyncio.start_server(closing, "127.0.0.1", port)
    try:
        async with running(source, LineQueue()):
            await wait_until(lambda: accepted >= 10)
    finally:
        server.close()
        await server.wait_closed()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"source tcp-flap: lost tcp 127.0.0.1:{port}: closed by peer"), warnings
    assert sum("lost" in r.getMessage() for r in caplog.records) >= 9  # at debug level


async def test_a_tag_blocked_sentence_cut_in_two_anywhere_is_joined() -> None:
    """A converter cuts wherever its buffer fills: right after the tag block's closing
    backslash the two halves stayed two lines (the sentence lost its time and receiver)."""
    from tests.ingest_helpers import position, single, tag_block

    line = (tag_block(s="rx1", c=1_767_268_800) + single(position()) + "\r\n").encode()
    cuts = range(1, len(line) - 2)
    queue = LineQueue()
    async with udp_listening("udp-cut-anywhere", queue) as (source, address):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for cut in cuts:
                tx.sendto(line[:cut], address)
                tx.sendto(line[cut:], address)
            await wait_until(lambda: source.datagrams == 2 * len(cuts))
    assert [got.data async for got in _drain(queue)] == [line.rstrip()] * len(cuts)


def test_a_source_is_online_while_its_link_is_up_and_it_is_heard() -> None:
    """The MQTT status of a source (harbourwatch.source_status): the link alone said
    "online" for a bound socket whose receiver had gone quiet."""
    from harbourwatch.source_status import SourceStatus
    from ingest.sources.base import SourceBase

    now, sentences = [100.0], {"rx": 0}
    told: list[tuple[str, bool]] = []
    source = SourceBase("rx")
    status = SourceStatus([source], lambda _name: 120.0, sentences.__getitem__,
                          lambda name, online: told.append((name, online)),
                          clock=lambda: now[0])
    assert told == [("rx", False)]  # down from the start
    now[0] = 500.0
    source._set_connected(True)  # up: heard for the threshold from now, not from before
    now[0] = 620.0
    status.check()
    assert told[-1] == ("rx", True)
    now[0] = 620.5
    status.check()
    assert told[-1] == ("rx", False)  # 120.5 s with no sentence
    sentences["rx"] = 1
    now[0] = 700.0
    status.check()
    assert told[-1] == ("rx", True)
    source._set_connected(False)
    assert told == [("rx", False), ("rx", True), ("rx", False), ("rx", True), ("rx", False)]


def test_a_source_with_its_own_silence_limit_is_judged_by_it() -> None:
    """A sparse source given its own limit in ``receiver_silent_s`` (the rule's for a
    receiver of that name) is not "offline" on MQTT while source_silent holds it heard."""
    from harbourwatch.config import SourceSilentConfig
    from harbourwatch.source_status import SourceStatus
    from ingest.sources.base import SourceBase

    now = [0.0]
    told: list[tuple[str, bool]] = []
    sparse, busy = SourceBase("sat"), SourceBase("rx")
    limits = SourceSilentConfig(silent_s=120.0, receiver_silent_s={"sat": 600.0})
    status = SourceStatus([sparse, busy], limits.silent_s_for, {"sat": 0, "rx": 0}.__getitem__,
                          lambda name, online: told.append((name, online)),
                          clock=lambda: now[0])
    sparse._set_connected(True)
    busy._set_connected(True)
    now[0] = 590.0
    status.check()
    # Down from the start, up, then rx silent 590 s > 120 s; sat's 590 s < 600 s
    assert told == [("sat", False), ("rx", False), ("sat", True), ("rx", True), ("rx", False)]
    now[0] = 610.0
    status.check()
    assert told[-1] == ("sat", False)
