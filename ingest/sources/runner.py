"""Run several sources into one queue and close it when the last one returns."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ingest.sources.base import Source
from ingest.sources.queue import LineQueue


async def run_sources(sources: Iterable[Source], queue: LineQueue) -> None:
    """Run every source concurrently; close ``queue`` once all have returned.

    Files return at their end, so a replay's consumer sees the queue close after the last
    line. Live sources run until this coroutine is cancelled. If one source fails to start
    (SourceError), the others are cancelled and the error propagates (in an ExceptionGroup);
    the queue is closed in every case, so the consumer never waits forever.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for source in sources:
                group.create_task(source.run(queue), name=f"source:{source.name}")
    finally:
        queue.close()
