"""Whether each live source is heard, for ``<p>/sources/<source>/status`` on MQTT.

A source's link state alone (bound, connected, open) said ``online`` for a UDP socket whose
receiver had gone quiet: a bound socket is up whether or not anything arrives, and the
command platform reads the status as the receiver's health. Here a source is ``online``
while its link is up and it has sent a sentence (an NMEA line with a good checksum) within
``silent_s_for(name)`` (the ``source_silent`` threshold, as the rule takes it for a
receiver of the source's name: its own in ``receiver_silent_s``, else ``silent_s``),
counted from the link coming up, so a receiver that stops is ``offline`` as its
``source_silent`` alert opens. Judged on the monotonic clock: live, the rules' clock moves
on with the wall time too, at the same rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from ingest.sources.base import SourceBase, StatusListener

#: How often silences are judged (the rules' live tick).
CHECK_EVERY_S = 1.0


class SourceStatus:
    """Tells ``listener(name, online)`` each change of whether a source is heard.

    ``sentences(name)``: the sentences ingest has had from that source so far; a count
    that moved on since the last check is a source heard.
    """

    def __init__(self, sources: Iterable[SourceBase], silent_s_for: Callable[[str], float],
                 sentences: Callable[[str], int], listener: StatusListener, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sources = {source.name: source for source in sources}
        self._silent_s = {name: silent_s_for(name) for name in self._sources}
        self._sentences = sentences
        self._listener = listener
        self._clock = clock
        now = clock()
        self._counted = {name: sentences(name) for name in self._sources}
        self._heard_at = dict.fromkeys(self._sources, now)
        self._said: dict[str, bool] = {}
        for source in self._sources.values():
            source.add_status_listener(self._link)
        self.check()  # every source's state now: one down from the start is "offline"

    def _link(self, name: str, up: bool) -> None:
        if up:  # the silence counts from the link coming up, not from before it went down
            self._heard_at[name] = self._clock()
        self.check()

    def check(self) -> None:
        """Judge every source now; tell the listener what changed."""
        now = self._clock()
        for name, source in self._sources.items():
            count = self._sentences(name)
            if count != self._counted[name]:
                self._counted[name] = count
                self._heard_at[name] = now
            online = source.connected and now - self._heard_at[name] <= self._silent_s[name]
            if self._said.get(name) is not online:
                self._said[name] = online
                self._listener(name, online)

    async def run(self) -> None:
        """Judge every ``CHECK_EVERY_S`` until cancelled."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            self.check()
