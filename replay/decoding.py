"""Decoding a ``--speed max`` replay in a second process, on another core.

At full speed, ingest (framing, timing, de-duplication, decoding) is about half of a
replay's work, and it depends on nothing but the log. A forked child runs a copy of the
pipeline's fresh ``Ingestor`` over the logs and sends the parent, a chunk of lines at a
time, each line's reports together with the ingestor's journal (``Ingestor.journal``). The
parent hands them to ``Pipeline.in_line_order``, just as ``Pipeline.decode_ahead`` does
with lines decoded in-process: the same reports in the same order, the journal applied
before each line's reports. So no result changes, only the time (tests/test_decoding.py).

A journal entry names the report a duplicate repeats. Across the process boundary it names
it by its number in the stream; both sides keep the reports the child's ingestor still
remembers for de-duplication, and forget the rest (``Ingestor.oldest_remembered``).

The child is forked only while this process runs no other Python thread (a fork copies one
thread and whatever lock another holds; native pools such as OpenBLAS's, which shapely's
numpy starts, register their own fork handlers): the service forks before the store starts
its threads. Otherwise, with a single usable CPU, for stdin, or where ``fork`` does not
exist, the replay decodes in-process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import traceback
from collections import deque
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from ingest.health import ReceiverHealth
from ingest.ingestor import Decoded, Heard, Ingestor, IngestProgress, LineInput
from ingest.report import Report
from ingest.sources.file import STDIN
from replay.merge import merged_runs

if TYPE_CHECKING:
    from harbourwatch.pipeline import Pipeline

log = logging.getLogger(__name__)

#: Lines per message from the child (a pickle each; the parent yields to the loop as often).
CHUNK_LINES = 500
_GO = b"go"
_report_fields = attrgetter(*(f.name for f in fields(Report)))


@dataclass(slots=True)
class _Chunk:
    """What a chunk of lines gave, as sent from the child."""

    lines: int
    #: Per line with reports: their field tuples, and the journal's length after the line.
    reports: list[tuple[list[tuple[Any, ...]], int]]
    #: The journal, a repeated report named by its number in the stream.
    heard: list[tuple[str, float, int | None]]
    #: The number of the oldest report still remembered (None: none is).
    oldest: int | None
    #: Counters and clock; only sources and receivers that changed since the last chunk.
    progress: IngestProgress


@dataclass(slots=True)
class _Failed:
    """The child stopped on an exception: raised in the parent, the child's traceback its
    cause."""

    error: BaseException
    traceback: str


class DecodingFailed(RuntimeError):
    """The decoding process ended without finishing (killed, out of memory)."""


class _ChildTraceback(Exception):
    """Where an exception raised in the decoding process came from."""

    def __str__(self) -> str:
        return f"\n\n(in the decoding process)\n{self.args[0]}"


class DecodingProcess:
    """A child process decoding the logs of one replay; the parent reads its runs."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self._process = process
        self._conn = conn
        self._started = False
        # A parent that exits without ``close`` still stops the child (which ignores
        # SIGTERM), before multiprocessing's own exit handler waits for it.
        atexit.register(process.kill)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @classmethod
    def start(cls, paths: Sequence[str], ingestor: Ingestor) -> DecodingProcess | None:
        """Fork a child to decode ``paths`` with a copy of ``ingestor`` (fresh, not fed).

        None when a second process would not help or not be safe (see the module's note).
        The child waits for ``runs``.
        """
        if (threading.active_count() > 1 or STDIN in paths or _usable_cpus() < 2
                or "fork" not in multiprocessing.get_all_start_methods()):
            return None
        context = multiprocessing.get_context("fork")
        ours, theirs = context.Pipe()
        process = context.Process(target=_child, args=(theirs, ours, list(paths), ingestor),
                                  name="harbourwatch-decoding", daemon=True)
        try:
            process.start()
        except OSError as exc:
            log.warning("cannot start a decoding process (%s): decoding in-process", exc)
            ours.close()
            theirs.close()
            return None
        theirs.close()
        log.info("decoding in process %d", process.pid)
        return cls(process, ours)

    async def runs(self, pipeline: Pipeline) -> AsyncGenerator[tuple[int, Iterator[Report]], None]:
        """``(lines, their reports)`` a chunk at a time, the ingestor's held reports last.

        The child decodes the paths it was started for. ``pipeline.ingestor`` (the one the
        child copied) is kept showing the child's counters and clock, as of the chunk being
        handed over. Once per process.
        """
        if self._started:
            raise RuntimeError("a decoding process plays its logs once")
        self._started = True
        try:
            self._conn.send_bytes(_GO)
        except OSError:
            raise self._ended() from None
        registry: dict[int, Report] = {}
        made = forgotten = 0
        while (chunk := await self._receive()) is not None:
            decoded: Decoded = []
            for fields_of_line, mark in chunk.reports:
                reports = [Report(*values) for values in fields_of_line]
                for report in reports:
                    registry[made] = report
                    made += 1
                decoded.append((reports, mark))
            heard: list[Heard] = [(receiver, time, None if number is None else registry[number])
                                  for receiver, time, number in chunk.heard]
            keep_from = made if chunk.oldest is None else chunk.oldest
            for number in range(forgotten, keep_from):
                del registry[number]
            forgotten = max(forgotten, keep_from)
            pipeline.ingestor.follow(chunk.progress)
            yield chunk.lines, pipeline.in_line_order(decoded, heard)

    async def _receive(self) -> _Chunk | None:
        """The next chunk; None at the end; raises what stopped the child."""
        conn = self._conn
        if not conn.poll():
            await _readable(conn.fileno())
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            raise self._ended() from None
        if isinstance(message, _Failed):
            raise message.error from _ChildTraceback(message.traceback)
        assert message is None or isinstance(message, _Chunk)
        return message

    def _ended(self) -> DecodingFailed:
        self._process.join(timeout=5)
        return DecodingFailed(f"the decoding process ended unexpectedly (exit code "
                              f"{self._process.exitcode})")

    def close(self) -> None:
        """Stop the child if it still runs (a replay cut short) and wait for it."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._conn.close()
        atexit.unregister(self._process.kill)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


# -- the child ------------------------------------------------------------------------------

def _child(conn: Connection, parents_end: Connection, paths: list[str],
           ingestor: Ingestor) -> None:
    # The fork copied the parent's end too: closed, the parent's death ends our reads and
    # writes (EOF, broken pipe) instead of leaving us blocked forever.
    parents_end.close()
    # Ctrl-C and a service stop reach the whole process group; the parent decides when the
    # child stops (``close`` kills it), and its event loop's wakeup fd is not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    from harbourwatch.gctune import tune_gc

    tune_gc()  # as the service does; what the fork copied is not the child's garbage
    try:
        conn.recv_bytes()
    except EOFError:
        return  # the parent stopped before the replay began
    encoder = _Encoder(ingestor)
    try:
        for run in merged_runs(paths, CHUNK_LINES):
            conn.send_bytes(encoder.chunk(run))
        conn.send_bytes(encoder.chunk(None))
        conn.send_bytes(pickle.dumps(None))
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send_bytes(_failure(exc))


class _Encoder:
    """Numbers the child's reports and turns a chunk of lines into one message."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        #: id(report) -> its number, for the reports numbered ``_first`` on, kept alive in
        #: ``_made`` (so no id is reused while it is here) until no duplicate can name them.
        self._number_of: dict[int, int] = {}
        self._made: deque[Report] = deque()
        self._first = 0
        self._sent: dict[str, tuple[int, float | None]] = {}

    def chunk(self, run: list[LineInput] | None) -> bytes:
        """The message for ``run`` fed to the ingestor (None: the end, its held reports)."""
        decoded, journal = self.ingestor.decode_run(run)
        number_of, made = self._number_of, self._made
        encoded: list[tuple[list[tuple[Any, ...]], int]] = []
        for reports, mark in decoded:
            if not reports:
                continue  # its journal entries are applied before the next line's reports
            for report in reports:
                number_of[id(report)] = self._first + len(made)
                made.append(report)
            encoded.append(([_report_fields(report) for report in reports], mark))
        heard = [(receiver, time, None if repeated is None else number_of[id(repeated)])
                 for receiver, time, repeated in journal]
        oldest_report = self.ingestor.oldest_remembered()
        oldest = None if oldest_report is None else number_of[id(oldest_report)]
        self._forget(self._first + len(made) if oldest is None else oldest)
        chunk = _Chunk(0 if run is None else len(run), encoded, heard, oldest,
                       self._progress(everything=run is None))
        return pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL)

    def _forget(self, below: int) -> None:
        while self._first < below:
            del self._number_of[id(self._made.popleft())]
            self._first += 1

    def _progress(self, *, everything: bool) -> IngestProgress:
        """The ingestor's progress, with only the receivers heard since the last chunk (a
        national feed has hundreds), unless ``everything``."""
        progress = self.ingestor.progress()
        sent = self._sent
        changed: dict[str, ReceiverHealth] = {}
        for name, receiver in progress.receivers.items():
            state = (receiver.messages, receiver.last_heard)
            if everything or sent.get(name) != state:
                changed[name] = receiver
                sent[name] = state
        progress.receivers = changed
        return progress


def _failure(exc: Exception) -> bytes:
    """``exc`` for the parent, or a stand-in with its text when it does not survive pickling
    (an exception whose constructor takes other arguments than its ``args``)."""
    text = traceback.format_exc()
    try:
        message = pickle.dumps(_Failed(exc, text))
        pickle.loads(message)
    except Exception:
        message = pickle.dumps(_Failed(RuntimeError(f"{type(exc).__name__}: {exc}"), text))
    return message
