"""The garbage-collector settings of a long-running harbourwatch process."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Fewer, cheaper collections: the picture holds many long-lived objects, and a full
    collection over them stalls the event loop for tens of milliseconds (alert latency).
    What exists after start-up is frozen out of collection altogether."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
