"""Holding a replay to a speed factor on message time."""

from __future__ import annotations

import asyncio
import contextlib
import time


class Pacer:
    """Sleeps so that message time advances ``speed`` times faster than the wall clock.

    ``speed=None`` is ``max``: no sleeping at all. Times that go backwards (out-of-order
    logs) are played at once, never waited for. ``stop``: set, it ends a wait at once (a
    stop at ``--speed 1`` waited for the next report, minutes away in a quiet log).
    """

    def __init__(self, speed: float | None, stop: asyncio.Event | None = None) -> None:
        self.speed = speed
        self._stop = stop
        self._origin: tuple[float, float] | None = None

    async def __call__(self, message_time: float) -> None:
        if self.speed is None:
            return
        now = time.monotonic()
        if self._origin is None:
            self._origin = (message_time, now)
            return
        first_msg, first_wall = self._origin
        due = first_wall + (message_time - first_msg) / self.speed
        if due > now:
            if self._stop is None:
                await asyncio.sleep(due - now)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), due - now)


def parse_speed(text: str) -> float | None:
    """``max`` → None; a positive number otherwise (ValueError with a clear message)."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--speed {text!r}: expected a number such as 1 or 60, or 'max'") from None
    if not value > 0:
        raise ValueError(f"--speed {text!r}: must be greater than 0")
    return value
