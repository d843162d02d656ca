"""Which held vessel gives way to a new MMSI when the rules' picture is full
(``rules.picture.max_vessels``), once no vessel heard only once is left to drop."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping

from geofence.picture import Vessel

#: At most this often (message time) is the queue rebuilt from the whole picture.
REBUILD_S = 60.0


class SilentQueue:
    """Held vessels by the time they were last heard, longest silent first.

    A heap of (last heard, MMSI), rebuilt from the picture at most every ``REBUILD_S`` of
    message time and only when a new MMSI finds the picture full: a flood of new MMSIs
    costs a heap operation each, not a scan of the picture, and the per-report path is
    untouched. An entry whose vessel was heard since it was queued goes back in at its new
    time when it comes up; one that is held back (an open alert) waits for the next rebuild.
    """

    __slots__ = ("_built", "_heap", "silence_s")

    def __init__(self, silence_s: float) -> None:
        #: a vessel silent at least this long may give way
        self.silence_s = silence_s
        self._heap: list[tuple[float, int]] = []
        self._built = float("-inf")

    def take(self, vessels: Mapping[int, Vessel], now: float,
             held: Callable[[int], bool]) -> int | None:
        """The MMSI of the vessel silent longest, at least ``silence_s`` before ``now``,
        that ``held`` does not keep; taken off the queue. None when there is none."""
        if now >= self._built + REBUILD_S:
            self._heap = [(v.last_seen, m) for m, v in vessels.items()]
            heapq.heapify(self._heap)
            self._built = now
        heap = self._heap
        horizon = now - self.silence_s
        while heap and heap[0][0] <= horizon:
            seen, mmsi = heapq.heappop(heap)
            vessel = vessels.get(mmsi)
            if vessel is None:
                continue  # forgotten or evicted since
            if vessel.last_seen > seen:
                heapq.heappush(heap, (vessel.last_seen, mmsi))  # heard since
            elif not held(mmsi):
                return mmsi
        return None
