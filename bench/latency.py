"""Alert latency through the MQTT feed under a 2,000 msg/s position load (run by hand).

    python bench/latency.py [--mqtt mqtt://host:port] [--rate 2000] [--seconds 20]

Without ``--mqtt`` a private Mosquitto is started on a free port (tests/services/mosquitto.py).
A subscriber on ``<prefix>/alerts`` stamps each planted alert on arrival; latency is arrival
minus the moment the alert was handed over. The stamps share one clock (``perf_counter`` in
one process), so the subscriber runs on the same event loop as the feed: this measures the
feed plus the broker round trip, with the subscriber competing for the same core.

The feeding part is one function of type :data:`Feeder`: it drives a sink and returns,
per planted alert id, the ``perf_counter`` time the anomaly was sent. The full path
(UDP datagram → pipeline → MQTT) is another Feeder that sends datagrams instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt  # the bench's own subscriber; the feed's calls stay in api/mqtt.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.mqtt import MqttFeed
from geofence.alert import Alert, AlertEvent, RiskArea, Severity, Transition
from ingest.report import Report


@dataclass(frozen=True, slots=True)
class Load:
    rate: float = 2000.0  # position reports per second
    seconds: float = 20.0
    vessels: int = 500
    alerts_per_s: float = 10.0
    tick_s: float = 0.005  # pacing granularity


#: Drives ``feed`` with a load; returns {alert id: perf_counter when the anomaly was sent}.
Feeder = Callable[[MqttFeed, Load], Awaitable[dict[str, float]]]


async def feed_direct(feed: MqttFeed, load: Load) -> dict[str, float]:
    """Reports and planted alerts handed straight to the sink, paced on the wall clock."""
    sent: dict[str, float] = {}
    start_wall = time.time()
    start = time.perf_counter()
    n_reports = 0
    n_alerts = 0
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= load.seconds:
            break
        now = start_wall + elapsed  # message time follows the wall clock, as in live mode
        while n_reports < elapsed * load.rate:
            mmsi = 244_000_000 + n_reports % load.vessels
            feed.on_report(Report(
                mmsi=mmsi, msg_type=1, time=now, time_source="receive", sources=["bench"],
                nmea=[], lat=51.9 + (n_reports % 97) * 1e-4, lon=4.1, speed=5.0, course=90.0))
            n_reports += 1
        while n_alerts < elapsed * load.alerts_per_s:
            alert = Alert(rule="bench", risk_area=RiskArea.PORT_OPERATIONS,
                          severity=Severity.INFO, mmsi=244_000_000 + n_alerts % load.vessels,
                          started_at=now + n_alerts * 1e-3)
            sent[alert.id] = time.perf_counter()
            feed.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), now))
            n_alerts += 1
        await asyncio.sleep(load.tick_s)
    return sent


async def measure(url: str, load: Load, feeder: Feeder = feed_direct) -> dict[str, float]:
    host, _, port = url.split("://", 1)[1].rpartition(":")
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    received: dict[str, float] = {}
    async with aiomqtt.Client(host, int(port)) as sub:
        await sub.subscribe(f"{prefix}/alerts", qos=1)

        async def listen() -> None:
            async for message in sub.messages:
                stamp = time.perf_counter()
                body = json.loads(bytes(message.payload))
                received.setdefault(body["alert"]["id"], stamp)

        listener = asyncio.create_task(listen())
        feed = MqttFeed(url, prefix=prefix)
        await feed.start()
        await asyncio.wait_for(feed.wait_connected(), 10)
        sent = await feeder(feed, load)
        await asyncio.wait_for(feed.wait_delivered(), 30)
        await asyncio.sleep(0.5)  # the last PUBLISH from broker to subscriber
        counters = dict(feed.counters)
        await feed.stop()
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    lat_ms = sorted((received[i] - t) * 1000 for i, t in sent.items() if i in received)
    if not lat_ms:
        raise SystemExit("no planted alert came back")
    q = statistics.quantiles(lat_ms, n=100, method="inclusive")
    return {
        "alerts_sent": len(sent), "alerts_received": len(lat_ms),
        "p50_ms": statistics.median(lat_ms), "p99_ms": q[98], "max_ms": lat_ms[-1],
        "reports_per_s": load.rate,
        "vessels_published": counters["vessels_published"],
        "vessels_rate_limited": counters["vessels_rate_limited"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mqtt", help="broker URL (default: start a private Mosquitto)")
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--vessels", type=int, default=500)
    parser.add_argument("--alerts-per-s", type=float, default=10.0)
    args = parser.parse_args()
    load = Load(rate=args.rate, seconds=args.seconds, vessels=args.vessels,
                alerts_per_s=args.alerts_per_s)
    if args.mqtt:
        result = asyncio.run(measure(args.mqtt, load))
    else:
        from tests.services.mosquitto import MosquittoBroker

        with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
            broker = MosquittoBroker(Path(tmp))
            broker.start()
            try:
                result = asyncio.run(measure(f"mqtt://{broker.host}:{broker.port}", load))
            finally:
                broker.stop()
    for key, value in result.items():
        print(f"{key:22} {value:10.2f}" if isinstance(value, float) else f"{key:22} {value}")


if __name__ == "__main__":
    main()
