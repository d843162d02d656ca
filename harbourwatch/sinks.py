"""The sink protocol: where reports and alert transitions go after the rules.

Data flows one way (ingest → geofence → sinks). Sinks never call back into the rules and
must never block the pipeline: ``on_report``/``on_alert`` only enqueue.
"""

from __future__ import annotations

from typing import Protocol

from geofence.alert import AlertEvent
from ingest.report import Report


class Sink(Protocol):
    async def start(self) -> None:
        """Connect or open; called once before the first report."""

    def on_report(self, report: Report) -> None:
        """A decoded report that passed the picture (never blocks)."""

    def on_alert(self, event: AlertEvent) -> None:
        """An alert transition (never blocks)."""

    async def stop(self) -> None:
        """Flush what is queued and close; called once at the end."""
