"""Capped, jittered exponential back-off for reconnecting sources.

Jitter spreads the retries of many harbourwatch instances (or many sources) that lost the
same feed at the same moment, so they do not all knock on its door in lock-step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delay ``n`` (from 0) is drawn from ``[d·(1−jitter), d]`` with ``d = min(initial·factor^n,
    maximum)``; after a healthy connection (up ``healthy_after`` seconds) it starts over."""

    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.5
    healthy_after: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(
                f"back-off needs 0 < initial <= maximum, got {self.initial}, {self.maximum}"
            )
        if self.factor < 1:
            raise ValueError(f"back-off factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"back-off jitter must be within [0, 1], got {self.jitter}")
        if self.healthy_after < 0:
            raise ValueError(f"healthy_after must not be negative, got {self.healthy_after}")


class Backoff:
    """The retry state of one source."""

    def __init__(self, policy: BackoffPolicy | None = None, rng: random.Random | None = None):
        self.policy = policy or BackoffPolicy()
        self._rng = rng or random.Random()
        self.attempts = 0
        """Failures since the last reset."""

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; counts one more failure."""
        p = self.policy
        # Cap the exponent so a source that has been down for days cannot overflow a float.
        ceiling = min(p.initial * p.factor ** min(self.attempts, 64), p.maximum)
        self.attempts += 1
        return ceiling * (1.0 - p.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempts = 0
