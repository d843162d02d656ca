"""Several recorded logs merged into one stream in message-time order.

A line's time is peeked the way the ingestor will resolve it (tag block, line timestamp,
``$PGHP``, base-station UTC), falling back to the log's previous time, so two receivers'
logs of the same hours interleave as they were heard. One log is passed through as is.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from itertools import islice

from ingest.decode import sentence_station_time
from ingest.framing import Meta, Sentence, frame
from ingest.ingestor import LineInput
from ingest.logfile import read_log_lines
from ingest.sources.spec import log_source_name


class _Cursor:
    def __init__(self, path: str, name: str) -> None:
        self.name = name
        self._lines = read_log_lines(path)
        self.last_time = float("-inf")
        self._pending_gatehouse: float | None = None

    def next_line(self) -> tuple[float, bytes] | None:
        line = next(self._lines, None)
        if line is None:
            return None
        framed = frame(line)
        stamp: float | None = None
        if isinstance(framed, Meta):
            stamp = framed.time
        elif isinstance(framed, Sentence):
            stamp = framed.time
            if stamp is None and framed.count == 1:
                stamp = sentence_station_time(framed.payload, framed.fill)
        if stamp is not None and stamp > self.last_time:
            self.last_time = stamp
        return self.last_time, line


def merged_lines(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(source name, line)`` from every log, earliest message time first."""
    names = log_source_names(paths)
    if len(paths) == 1:
        for line in read_log_lines(paths[0]):
            yield names[0], line
        return
    cursors = [_Cursor(p, n) for p, n in zip(paths, names, strict=True)]
    heap: list[tuple[float, int, bytes]] = []
    for index, cursor in enumerate(cursors):
        item = cursor.next_line()
        if item is not None:
            heap.append((item[0], index, item[1]))
    heapq.heapify(heap)
    while heap:
        _, index, line = heapq.heappop(heap)
        yield cursors[index].name, line
        item = cursors[index].next_line()
        if item is not None:
            heapq.heappush(heap, (item[0], index, item[1]))


def merged_runs(paths: list[str], size: int) -> Iterator[list[LineInput]]:
    """``merged_lines`` ``size`` at a time, as ``(source, line, None)`` (no receive time).

    A log that breaks off still yields the lines read before the break, then raises.
    """
    lines = merged_lines(paths)
    while True:
        run: list[LineInput] = []
        try:
            for source, line in islice(lines, size):
                run.append((source, line, None))
        except Exception:
            if run:
                yield run
            raise
        if not run:
            return
        yield run


def log_source_names(paths: list[str]) -> list[str]:
    """One source name per log (``log_source_name``): a name met again gets ``-2``,
    ``-3``… (two receivers' logs of one file name in two folders stay two sources)."""
    names: list[str] = []
    for base in map(log_source_name, paths):
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names
