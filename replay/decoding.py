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

The child is forked only while this process runs no other thread (a fork copies one thread
and whatever lock another holds): the service starts it before the store's threads.
Otherwise, and where ``fork`` does not exist, the replay decodes in-process as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import pickle
import signal
import threading
from collections import deque
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import fields
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from ingest.ingestor import Heard, Ingestor, IngestProgress
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
#: One line's reports as field tuples, and the journal's length after the line.
_EncodedLine = tuple[list[tuple[Any, ...]], int]
#: A journal entry with the repeated report's number instead of the report.
_EncodedHeard = tuple[str, float, int | None]


class DecodingFailed(RuntimeError):
    """The decoding process ended without finishing (killed, out of memory)."""


class DecodingProcess:
    """A child process decoding the logs of one replay; the parent reads its runs."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self._process = process
        self._conn = conn

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @classmethod
    def start(cls, paths: Sequence[str], ingestor: Ingestor) -> DecodingProcess | None:
        """Fork a child to decode ``paths`` with a copy of ``ingestor`` (fresh, not fed).

        None when forking is not safe here (another thread runs), not possible, or the
        input is stdin (which the child cannot share). The child waits for ``runs``.
        """
        if (threading.active_count() > 1 or STDIN in paths
                or "fork" not in multiprocessing.get_all_start_methods()):
            return None
        context = multiprocessing.get_context("fork")
        ours, theirs = context.Pipe()
        process = context.Process(target=_child, args=(theirs, list(paths), ingestor),
                                  name="harbourwatch-decoding", daemon=True)
        process.start()
        theirs.close()
        log.info("decoding in process %d", process.pid)
        return cls(process, ours)

    async def runs(self, pipeline: Pipeline) -> AsyncGenerator[tuple[int, Iterator[Report]], None]:
        """``(lines, their reports)`` a chunk at a time, the ingestor's held reports last.

        ``pipeline.ingestor`` (the one the child copied) is kept showing the child's
        counters and clock, as of the chunk being handed over.
        """
        self._conn.send_bytes(_GO)
        registry: dict[int, Report] = {}
        made = forgotten = 0
        while True:
            message = await self._receive()
            if message[0] == "end":
                return
            if message[0] == "error":
                raise message[1]
            _, lines, encoded, journal, oldest, progress = message
            decoded: list[tuple[Sequence[Report], int]] = []
            for fields_of_line, mark in encoded:
                reports = [Report(*values) for values in fields_of_line]
                for report in reports:
                    registry[made] = report
                    made += 1
                decoded.append((reports, mark))
            heard: list[Heard] = [(receiver, time, None if number is None else registry[number])
                                  for receiver, time, number in journal]
            for number in range(forgotten, made if oldest is None else oldest):
                del registry[number]
            forgotten = max(forgotten, made if oldest is None else oldest)
            pipeline.ingestor.follow(progress)
            yield lines, pipeline.in_line_order(decoded, heard)

    async def _receive(self) -> Any:
        conn = self._conn
        if not conn.poll():
            await _readable(conn.fileno())
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            self._process.join(timeout=5)
            raise DecodingFailed(f"the decoding process ended unexpectedly (exit code "
                                 f"{self._process.exitcode})") from None
        return pickle.loads(data)

    def close(self) -> None:
        """Stop the child if it still runs (a replay cut short) and wait for it."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._conn.close()


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

def _child(conn: Connection, paths: list[str], ingestor: Ingestor) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when the child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)  # the parent's event loop's, inherited
    try:
        conn.recv_bytes()
    except EOFError:
        return  # the parent stopped before the replay began
    gc.freeze()  # what the fork copied is not the child's garbage
    gc.set_threshold(50_000, 50, 100)  # as the service (harbourwatch.service.tune_gc)
    encoder = _Encoder(ingestor)
    try:
        for run in merged_runs(paths, CHUNK_LINES):
            conn.send_bytes(encoder.chunk(run))
        conn.send_bytes(encoder.chunk(None))
        conn.send_bytes(pickle.dumps(("end",)))
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send_bytes(pickle.dumps(("error", _picklable(exc))))


class _Encoder:
    """Numbers the child's reports and turns a chunk of lines into one message."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self._number_of: dict[int, int] = {}  # id(report) -> its number, while remembered
        self._ids: deque[int] = deque()  # id of report number ``_first + i``
        self._first = 0
        self._made = 0

    def chunk(self, run: list[tuple[str, bytes, float | None]] | None) -> bytes:
        """The message for ``run`` fed to the ingestor (None: the end, its held reports)."""
        ingestor = self.ingestor
        journal: list[Heard] = []
        ingestor.journal = journal
        decoded: list[tuple[Sequence[Report], int]]
        try:
            if run is None:
                decoded = [(ingestor.flush(), len(journal))]
            else:
                feed = ingestor.feed
                decoded = [(feed(source, data, received), len(journal))
                           for source, data, received in run]
        finally:
            ingestor.journal = None
        number_of, ids = self._number_of, self._ids
        encoded: list[_EncodedLine] = []
        for reports, mark in decoded:
            if not reports:
                continue  # its journal entries are applied before the next line's reports
            for report in reports:
                number_of[id(report)] = self._made
                ids.append(id(report))
                self._made += 1
            encoded.append(([_report_fields(report) for report in reports], mark))
        heard: list[_EncodedHeard] = [
            (receiver, time, None if repeated is None else number_of[id(repeated)])
            for receiver, time, repeated in journal]
        oldest_report = self.ingestor.oldest_remembered()
        oldest = None if oldest_report is None else number_of[id(oldest_report)]
        self._forget(self._made if oldest is None else oldest)
        progress: IngestProgress = self.ingestor.progress()
        lines = 0 if run is None else len(run)
        return pickle.dumps(("chunk", lines, encoded, heard, oldest, progress),
                            pickle.HIGHEST_PROTOCOL)

    def _forget(self, below: int) -> None:
        number_of, ids = self._number_of, self._ids
        while self._first < below:
            report_id = ids.popleft()
            if number_of.get(report_id) == self._first:
                del number_of[report_id]
            self._first += 1


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return DecodingFailed(f"{type(exc).__name__}: {exc}")
    return exc
