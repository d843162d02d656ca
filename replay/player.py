"""Playing recorded logs through the production pipeline on message time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from dataclasses import dataclass

from harbourwatch.pipeline import READ_AHEAD_LINES, Pipeline
from ingest.report import Report
from replay.decoding import DecodingProcess
from replay.merge import merged_runs
from replay.pacing import Pacer
from replay.progress import Progress

log = logging.getLogger(__name__)

_YIELD_EVERY = 500


@dataclass(slots=True)
class ReplayResult:
    lines: int
    reports: int
    skipped: int
    first_time: float | None
    last_time: float | None
    untimed_sources: list[str]
    #: The newest message time read, played or skipped (before ``start``).
    newest_read: float | None = None
    #: Stopped (``stop`` set) before the end: the message time to resume from with
    #: ``--start`` (every report before it was judged, none from it on).
    resume_at: float | None = None


async def play(paths: list[str], pipeline: Pipeline, *, speed: float | None,
               start: float | None = None, progress: Progress | None = None,
               decoder: DecodingProcess | None = None,
               stop: asyncio.Event | None = None) -> ReplayResult:
    """Feed every line of ``paths`` (merged in time order) through ``pipeline``.

    Reports before ``start`` are decoded (so assembly and clocks stay right) but not
    handed to the rules or sinks. The event loop gets a turn every few hundred lines,
    so the API and MQTT keep serving during a ``--speed max`` replay. At ``max`` lines are
    decoded a run at a time ahead of the rules (``Pipeline.decode_ahead``), or by
    ``decoder``, a process started for these logs and the pipeline's ingestor; neither
    changes any result.

    ``stop``: once set, the replay ends before the first report of a newer message time
    than the last one judged (``resume_at``), so ``--start`` then resumes it exactly:
    cancelled anywhere, part of a second was judged and the rest could be neither skipped
    nor judged again. No last timers run (the rest of the log would have run them later).
    """
    pacer = Pacer(speed, stop)
    ingestor = pipeline.ingestor
    lines = reports = skipped = 0
    next_yield = _YIELD_EVERY
    first: float | None = None
    last: float | None = None
    read: float | None = None
    resume_at: float | None = None
    # The receivers of the skipped lines are not heard either (see Pipeline._apply).
    pipeline.skip_before = start
    if decoder is not None and speed is None:
        runs = decoder.runs(pipeline)
    else:
        # Paced, a run is one line: what the API shows then never runs ahead of the rules.
        runs = _decoded_here(paths, pipeline, READ_AHEAD_LINES if speed is None else 1)
    async with aclosing(runs):
        async for count, decoded in runs:
            lines += count
            for report in decoded:
                t = report.time
                if read is None or t > read:
                    read = t
                if stop is not None and stop.is_set() and (last is None or t > last):
                    resume_at = t if start is None else max(t, start)
                    break
                if start is not None and t < start:
                    skipped += 1
                    continue
                await pacer(t)
                if stop is not None and stop.is_set() and (last is None or t > last):
                    resume_at = t  # set while waiting for this report's time
                    break
                pipeline.handle_report(report)
                reports += 1
                if first is None:
                    first = t
                last = t
            if resume_at is not None:
                break
            if lines >= next_yield:
                next_yield += _YIELD_EVERY
                if progress is not None:
                    progress.update(lines, last, pipeline.alert_events)
                await asyncio.sleep(0)
    if resume_at is None:
        pipeline.finish()
    if progress is not None:
        progress.update(lines, last, pipeline.alert_events)
    untimed = sorted(ingestor.untimed_sources)
    if untimed:
        rate = ingestor.nominal_rate
        log.warning("no timestamps in %s: played %s%s", ", ".join(untimed),
                    "at time 0" if rate is None else f"in order at a nominal {rate:g} lines/s",
                    "" if len(untimed) == len(paths) else
                    "; dated 1970, not beside the timed logs: replay it on its own")
    return ReplayResult(lines, reports, skipped, first, last, untimed, read, resume_at)


async def _decoded_here(paths: list[str], pipeline: Pipeline, size: int
                        ) -> AsyncGenerator[tuple[int, Iterator[Report]], None]:
    """``(lines, their reports)`` a run at a time, then the reports the ingestor held."""
    for run in merged_runs(paths, size):
        yield len(run), pipeline.decode_ahead(run)
    yield 0, pipeline.held_reports()
