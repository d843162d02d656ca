"""The baseline every benchmark compares with: bare pyais decoding, timed best of N."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence

from pyais.stream import IterMessages


def run_pyais(lines: Sequence[bytes]) -> int:
    """pyais's idiomatic path: assemble with ``IterMessages``, ``decode()`` every message."""
    count = 0
    for message in IterMessages(lines):
        try:
            message.decode()
        except Exception:  # pyais raises many kinds; a failure is not a message
            continue
        count += 1
    return count


def best_of(repeat: int, job: Callable[[], int]) -> tuple[int, float]:
    """(messages, seconds) of the fastest of ``repeat`` runs: the least disturbed by load."""
    best: tuple[int, float] | None = None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        messages = job()
        seconds = time.perf_counter() - start
        if best is None or seconds < best[1]:
            best = (messages, seconds)
    assert best is not None
    return best
