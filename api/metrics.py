"""Prometheus exposition of the service's counters.

The counters live where the work happens (pipeline, source health, writer, stream hub);
a custom collector reads them at scrape time into a dedicated ``CollectorRegistry``, so
nothing is counted twice and tests never share the global registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from harbourwatch.timeutil import parse_iso

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Provider = Callable[[], Any]

_SOURCE_COUNTERS = (
    ("lines", "Lines read"), ("sentences", "NMEA sentences framed"),
    ("messages", "AIS messages decoded"), ("checksum_failures", "Checksum failures"),
    ("duplicates", "Duplicates heard from several receivers"),
    ("own_messages", "Own-ship (VDO) messages"),
    ("clock_rejected", "Base-station times rejected as a bad clock"),
    ("clock_ahead", "Live lines timed ahead of their arrival, timed by arrival instead"),
    ("clock_behind", "Live lines timed further behind their arrival than "
                     "ingest.max_clock_lag_s, timed by arrival instead"),
    ("prefix_time_unused", "Lines whose timestamp prefix could not be used (a named zone, "
                           "an implausible date): timed from elsewhere"),
    ("stations_over_limit", "Lines whose station was beyond ingest.max_receivers (counted "
                            "as the source's own)"),
    ("queue_dropped", "Lines dropped because the queue was full (UDP cannot be slowed)"),
    ("kernel_dropped", "UDP datagrams the kernel dropped: the socket buffer was full"),
    ("refused_datagrams", "UDP datagrams from a sender outside the source's allow_from"),
    ("overlong", "Unterminated runs longer than a line can be, thrown away"),
    ("partial_lines", "Unterminated line ends thrown away when a link broke"),
    ("connects", "Links established (a reconnecting feed counts each time)"),
    ("disconnects", "Links lost after they were up"),
)
_SOURCE_BY_REASON = (
    ("rejected", "Lines rejected, by reason"), ("decode_errors", "Decode failures, by reason"),
    ("fragments_dropped", "Multipart fragments dropped, by reason"),
)
_WRITER_COUNTERS = ("written_positions", "duplicate_positions", "written_statics",
                    "written_alerts", "spooled", "rejected", "batches", "failures",
                    "written_acts", "dropped_acts")


def _timestamp(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_iso(value)
        except ValueError:
            return None
    return None


def _as_dict(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return {}


class ServiceCollector(Collector):
    """Reads the providers at scrape time; a missing provider yields no metrics."""

    def __init__(self, *, stats: Provider | None = None, sources: Provider | None = None,
                 writer: Provider | None = None, hub: Provider | None = None,
                 mqtt: Provider | None = None,
                 vessels: Callable[[], int] | None = None) -> None:
        self._stats, self._sources, self._writer = stats, sources, writer
        self._hub, self._mqtt, self._vessels = hub, mqtt, vessels

    def collect(self) -> Iterator[Metric]:
        yield from self._pipeline()
        yield from self._source_health()
        yield from self._writer_stats()
        yield from self._hub_stats()
        yield from self._mqtt_stats()
        if self._vessels is not None:
            yield GaugeMetricFamily("harbourwatch_vessels", "Vessels in the live picture",
                                    value=self._vessels())

    def _pipeline(self) -> Iterator[Metric]:
        if self._stats is None:
            return
        stats = _as_dict(self._stats())
        for key, help_text in (("reports", "Reports through the rules"),
                               ("own_reports", "Own-ship reports"),
                               ("alert_events", "Alert transitions emitted"),
                               ("rule_failures", "Reports, ticks, receivers heard and zone "
                                "changes the rules raised on, and their hooks at start or "
                                "at a restart")):
            if isinstance(stats.get(key), int):
                yield CounterMetricFamily(f"harbourwatch_{key}", help_text, value=stats[key])
        transitions = stats.get("alert_transitions")
        if isinstance(transitions, Mapping):
            fam = CounterMetricFamily("harbourwatch_alert_transitions",
                                      "Alert transitions emitted, by rule and transition",
                                      labels=["rule", "transition"])
            for key, count in transitions.items():
                rule, _, transition = str(key).partition("/")
                fam.add_metric([rule, transition], float(count))
            yield fam
        open_alerts = stats.get("open_alerts")
        if isinstance(open_alerts, Mapping):
            gauge = GaugeMetricFamily("harbourwatch_open_alerts",
                                      "Alerts open (or acknowledged) now, by rule",
                                      labels=["rule"])
            for rule, count in open_alerts.items():
                gauge.add_metric([str(rule)], float(count))
            yield gauge
        rules = stats.get("rules")
        for key, value in (rules.items() if isinstance(rules, Mapping) else ()):
            if isinstance(value, int):  # suspect fixes, forgotten vessels, vessels_over_limit…
                yield CounterMetricFamily(f"harbourwatch_rules_{key}",
                                          f"Rules: {key.replace('_', ' ')}", value=value)

    def _source_health(self) -> Iterator[Metric]:
        if self._sources is None:
            return
        data = _as_dict(self._sources())
        sources: Mapping[str, Mapping[str, Any]] = data.get("sources") or {}
        for key, help_text in _SOURCE_COUNTERS:
            fam = CounterMetricFamily(f"harbourwatch_source_{key}", help_text, labels=["source"])
            for name, health in sources.items():
                fam.add_metric([name], float(health.get(key) or 0))
            yield fam
        for key, help_text in _SOURCE_BY_REASON:
            fam = CounterMetricFamily(f"harbourwatch_source_{key}", help_text,
                                      labels=["source", "reason"])
            for name, health in sources.items():
                for reason, count in (health.get(key) or {}).items():
                    fam.add_metric([name, str(reason)], float(count))
            yield fam
        heard = GaugeMetricFamily("harbourwatch_source_last_heard_timestamp_seconds",
                                  "Message time a source was last heard", labels=["source"])
        for name, health in sources.items():
            ts = _timestamp(health.get("last_heard"))
            if ts is not None:
                heard.add_metric([name], ts)
        yield heard
        connected = GaugeMetricFamily("harbourwatch_source_connected",
                                      "1 while the source's link is up (bound, connected, "
                                      "open)", labels=["source"])
        arrived = GaugeMetricFamily(
            "harbourwatch_source_last_line_arrival_timestamp_seconds",
            "Wall time a line last arrived from the source (the service's start while none "
            "has: a receiver dead since then ages too)", labels=["source"])
        for name, health in sources.items():
            if "connected" in health:
                connected.add_metric([name], 1.0 if health["connected"] else 0.0)
            ts = _timestamp(health.get("last_line_at") or health.get("watched_since"))
            if ts is not None:
                arrived.add_metric([name], ts)
        yield connected
        yield arrived
        receivers: Mapping[str, Mapping[str, Any]] = data.get("receivers") or {}
        msgs = CounterMetricFamily("harbourwatch_receiver_messages", "Messages per receiver",
                                   labels=["receiver", "source"])
        rheard = GaugeMetricFamily("harbourwatch_receiver_last_heard_timestamp_seconds",
                                   "Message time a receiver was last heard",
                                   labels=["receiver", "source"])
        for name, rx in receivers.items():
            labels = [name, str(rx.get("source") or "")]
            msgs.add_metric(labels, float(rx.get("messages") or 0))
            ts = _timestamp(rx.get("last_heard"))
            if ts is not None:
                rheard.add_metric(labels, ts)
        yield msgs
        yield rheard

    def _writer_stats(self) -> Iterator[Metric]:
        if self._writer is None:
            return
        stats = _as_dict(self._writer())
        for key in _WRITER_COUNTERS:
            if key in stats:
                yield CounterMetricFamily(f"harbourwatch_store_{key}",
                                          f"Store writer: {key.replace('_', ' ')}",
                                          value=float(stats[key]))
        for key, help_text in (("queued", "Items waiting for the store writer"),
                               ("held_positions",
                                "Positions held until no duplicate can add a receiver"),
                               ("spool_pending", "Items spooled to disk, not yet written"),
                               ("pending_acts", "Operator acts made while the database was "
                                                "away, not yet written")):
            if key in stats:
                yield GaugeMetricFamily(f"harbourwatch_store_{key}", help_text,
                                        value=float(stats[key]))
        if stats.get("last_write_at") is not None:
            yield GaugeMetricFamily("harbourwatch_store_last_write_timestamp_seconds",
                                    "Wall time the database last took a write (stuck: old "
                                    "while rows are queued)",
                                    value=float(stats["last_write_at"]))
        if "db_up" in stats:
            yield GaugeMetricFamily("harbourwatch_store_up", "1 when the database answers",
                                    value=1.0 if stats["db_up"] else 0.0)

    def _hub_stats(self) -> Iterator[Metric]:
        if self._hub is None:
            return
        stats = _as_dict(self._hub())
        yield GaugeMetricFamily("harbourwatch_stream_clients", "Live stream clients",
                                value=float(stats.get("clients", 0)))
        yield CounterMetricFamily("harbourwatch_stream_events", "Events put on the stream ring",
                                  value=float(stats.get("events", 0)))
        yield CounterMetricFamily("harbourwatch_stream_dropped",
                                  "Events dropped for slow clients",
                                  value=float(stats.get("dropped", 0)))
        yield CounterMetricFamily("harbourwatch_stream_refused",
                                  "Stream clients turned away at api.max_stream_clients",
                                  value=float(stats.get("refused", 0)))

    def _mqtt_stats(self) -> Iterator[Metric]:
        if self._mqtt is None:
            return
        stats = _as_dict(self._mqtt())
        yield GaugeMetricFamily("harbourwatch_mqtt_up", "1 while connected to the broker",
                                value=1.0 if stats.get("connected") else 0.0)
        for key, help_text in (("outbox_unacked", "Alert messages not yet acknowledged"),
                               ("vessels", "Vessels the MQTT feed keeps")):
            yield GaugeMetricFamily(f"harbourwatch_mqtt_{key}", help_text,
                                    value=float(stats.get(key, 0)))
        for key, value in stats.items():
            if key not in ("connected", "outbox_up", "outbox_unacked", "vessels") and (
                    isinstance(value, int)):
                yield CounterMetricFamily(f"harbourwatch_mqtt_{key}",
                                          f"MQTT feed: {key.replace('_', ' ')}",
                                          value=float(value))


def make_registry(collector: ServiceCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
