"""The service's counters as ``GET /stats`` gives them; ``<p>/stats`` on MQTT carries them
too, so a command platform reads both with one parser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from harbourwatch.timeutil import iso_time

if TYPE_CHECKING:
    from api.stream import StreamHub
    from store.base import Store


def service_stats(pipeline: Mapping[str, Any], store: Store, *, hub: StreamHub | None = None,
                  vessels: int | None = None,
                  mqtt: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``pipeline``: ``Pipeline.stats()`` (its per-source counters are ``GET /sources``'s);
    the parts a run does not have (no API: no stream, no picture; no MQTT) are left out."""
    out: dict[str, Any] = {"pipeline": {k: v for k, v in pipeline.items() if k != "sources"}}
    writer = store.stats()
    out["store"] = {"description": store.description,
                    **{f.name: getattr(writer, f.name) for f in fields(writer)
                       if f.name != "extra"}}  # the backend's own: /metrics
    if writer.last_write_at is not None:
        out["store"]["last_write_at"] = iso_time(writer.last_write_at)
    if hub is not None:
        hs = hub.stats()
        out["stream"] = {"clients": hs.clients, "events": hs.events,
                         "dropped": hs.dropped, "refused": hs.refused}
    if vessels is not None:
        out["vessels"] = vessels
    if mqtt is not None:
        out["mqtt"] = dict(mqtt)
    return out
