"""How fast the watch answered alerts: the figures a drill's debrief and the alert summary
(``GET /alerts/summary``) both give, computed one way."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class ResponseTimes:
    """Seconds from raising to an act, over ``count`` alerts."""

    count: int
    median: float
    #: Linear between the two nearest values, as PostgreSQL's ``percentile_cont(0.9)``.
    p90: float
    longest: float

    def to_dict(self) -> dict[str, float | int]:
        return {"count": self.count, "median_s": self.median, "p90_s": self.p90,
                "longest_s": self.longest}


def response_times(seconds: Iterable[float]) -> ResponseTimes | None:
    """The median, 90th percentile and longest of ``seconds`` (None when there are none)."""
    values = sorted(seconds)
    if not values:
        return None
    p90 = (values[0] if len(values) == 1
           else statistics.quantiles(values, n=10, method="inclusive")[8])
    return ResponseTimes(len(values), statistics.median(values), p90, values[-1])
