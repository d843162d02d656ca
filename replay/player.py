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


async def play(paths: list[str], pipeline: Pipeline, *, speed: float | None,
               start: float | None = None, progress: Progress | None = None,
               decoder: DecodingProcess | None = None) -> ReplayResult:
    """Feed every line of ``paths`` (merged in time order) through ``pipeline``.

    Reports before ``start`` are decoded (so assembly and clocks stay right) but not
    handed to the rules or sinks. The event loop gets a turn every few hundred lines,
    so the API and MQTT keep serving during a ``--speed max`` replay. At ``max`` lines are
    decoded a run at a time ahead of the rules (``Pipeline.decode_ahead``), or by
    ``decoder``, a process started for these logs and the pipeline's ingestor; neither
    changes any result.
    """
    pacer = Pacer(speed)
    ingestor = pipeline.ingestor
    lines = reports = skipped = 0
    next_yield = _YIELD_EVERY
    first: float | None = None
    last: float | None = None
    if decoder is not None and speed is None:
        runs = decoder.runs(pipeline)
    else:
        # Paced, a run is one line: what the API shows then never runs ahead of the rules.
        runs = _decoded_here(paths, pipeline, READ_AHEAD_LINES if speed is None else 1)
    async with aclosing(runs):
        async for count, decoded in runs:
            lines += count
            for report in decoded:
                if start is not None and report.time < start:
                    skipped += 1
                    continue
                await pacer(report.time)
                pipeline.handle_report(report)
                reports += 1
                if first is None:
                    first = report.time
                last = report.time
            if lines >= next_yield:
                next_yield += _YIELD_EVERY
                if progress is not None:
                    progress.update(lines, last, pipeline.alert_events)
                await asyncio.sleep(0)
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
    return ReplayResult(lines, reports, skipped, first, last, untimed)


async def _decoded_here(paths: list[str], pipeline: Pipeline, size: int
                        ) -> AsyncGenerator[tuple[int, Iterator[Report]], None]:
    """``(lines, their reports)`` a run at a time, then the reports the ingestor held."""
    for run in merged_runs(paths, size):
        yield len(run), pipeline.decode_ahead(run)
    yield 0, pipeline.held_reports()
