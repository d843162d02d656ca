"""Alert latency through the MQTT feed under a 2,000 msg/s position load (run by hand).

    python bench/latency.py [--path udp|feed] [--mqtt mqtt://host:port] [--rate 2000]
                            [--seconds 20] [--vessels 500] [--alerts-per-s 10]

Without ``--mqtt`` a private Mosquitto is started on a free port (tests/services/mosquitto.py).
A subscriber on ``<prefix>/alerts`` stamps each planted alert on arrival; latency is arrival
minus the moment the alert was handed over. The stamps share one clock (``perf_counter`` in
one process), so the subscriber runs on the same event loop as the feed: this measures the
feed plus the broker round trip, with the subscriber competing for the same core.

The feeding part is one function of type :data:`Feeder`: it drives a sink and returns,
per planted alert id, the ``perf_counter`` time the anomaly was sent (``--path feed``).

``--path udp`` (the default; issue 7's figure) measures the full path instead: a
``harbourwatch run --zones … --udp 127.0.0.1:PORT --mqtt …`` service in its own process
(SQLite store, all rules), fed by a real UDP sender on 127.0.0.1 at ``--rate`` datagrams/s
(pyais-encoded class A positions of ``--vessels`` vessels, one sentence per datagram,
encoded before the clock starts). ``--alerts-per-s`` times a second a new AIS-SART
(MMSI 970…) transmits; ``emergency_device`` opens an alert on its first report. Latency is
from just before ``sendto`` of that datagram to the ``new`` transition arriving on
``<prefix>/alerts`` at a subscriber in this process (same clock as the sender, and a core
apart from the service). Receive time is message time here, as in any live run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt  # the bench's own subscriber; the feed's calls stay in api/mqtt.py
import pyais

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
    warmup_s: float = 3.0  # udp: positions only, before the first planted alert


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


# -- the full path: UDP datagram → harbourwatch run (own process) → MQTT → subscriber --------

LAT0, LON0 = 51.90, 4.10
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(LAT0))
SART_BASE = 970_010_000
TIMELINE = False  # --timeline: latency per second of the load
Fields = dict[str, str | int | float | bytes | bool]  # what pyais.encode_dict takes


def bench_zones() -> dict[str, Any]:
    """A 12 x 10 km port inside a larger coverage area, plus one restricted zone."""
    def box(x0: float, y0: float, x1: float, y1: float) -> list[list[list[float]]]:
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        return [[[LON0 + x / M_PER_DEG_LON, LAT0 + y / M_PER_DEG_LAT] for x, y in pts]]

    def feature(zid: str, kind: str, rings: list[list[list[float]]]) -> dict[str, Any]:
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {"id": zid, "name": zid, "kind": kind}}

    return {"type": "FeatureCollection", "features": [
        feature("port", "port_limit", box(0, 0, 12_000, 10_000)),
        feature("coverage", "coverage", box(-4000, -4000, 16_000, 14_000)),
        feature("quay-restricted", "restricted", box(11_000, 9_000, 11_500, 9_500)),
    ]}


def position_datagrams(load: Load) -> list[bytes]:
    """``rate × seconds`` class A positions, vessels in turn, each moving at 10 kn."""
    count = int(load.rate * (load.seconds + load.warmup_s))
    per_vessel_s = load.vessels / load.rate  # seconds between one vessel's reports
    out: list[bytes] = []
    for n in range(count):
        index, k = n % load.vessels, n // load.vessels
        course = (index * 37) % 360
        dist = 10 * 1852 / 3600 * per_vessel_s * k
        x = 1000 + (index % 25) * 400 + dist * math.sin(math.radians(course))
        y = 1000 + (index // 25) * 400 + dist * math.cos(math.radians(course))
        fields: Fields = {"type": 1, "mmsi": 244_100_000 + index, "status": 0, "speed": 10.0,
                  "course": float(course), "heading": course, "accuracy": 1,
                  "lon": LON0 + x / M_PER_DEG_LON, "lat": LAT0 + y / M_PER_DEG_LAT,
                  "second": int(n / load.rate) % 60}
        out.append(pyais.encode_dict(fields, sentence_type="VDM")[0].encode() + b"\r\n")
    return out


def sart_datagram(mmsi: int) -> bytes:
    fields: Fields = {"type": 1, "mmsi": mmsi, "status": 14, "speed": 0.5, "course": 0.0,
              "lon": LON0 + 6000 / M_PER_DEG_LON, "lat": LAT0 + 5000 / M_PER_DEG_LAT}
    return pyais.encode_dict(fields, sentence_type="VDM")[0].encode() + b"\r\n"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_service(workdir: Path, url: str, prefix: str, udp_port: int) -> subprocess.Popen[bytes]:
    zones = workdir / "zones.geojson"
    zones.write_text(json.dumps(bench_zones()), encoding="utf-8")
    exe = Path(sys.executable).with_name("harbourwatch")
    command = [str(exe) if exe.exists() else "harbourwatch", "run", "--zones", str(zones),
               "--udp", f"127.0.0.1:{udp_port}", "--mqtt", url, "--mqtt-prefix", prefix,
               "--db", f"sqlite:///{workdir / 'bench.db'}"]
    with (workdir / "service.log").open("ab") as log:
        return subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


async def measure_udp(url: str, load: Load) -> dict[str, float]:
    """Full path: datagrams into a running service, alerts out of the broker."""
    host, _, port = url.split("://", 1)[1].rpartition(":")
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    positions = position_datagrams(load)  # encoded before any timing
    udp_port = free_udp_port()
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    online = asyncio.Event()
    with tempfile.TemporaryDirectory(prefix="hw-bench-latency-") as tmp:
        service = start_service(Path(tmp), url, prefix, udp_port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = ("127.0.0.1", udp_port)
        try:
            async with aiomqtt.Client(host, int(port)) as sub:
                await sub.subscribe(f"{prefix}/alerts", qos=1)
                await sub.subscribe(f"{prefix}/available", qos=1)

                async def listen() -> None:
                    async for message in sub.messages:
                        stamp = time.perf_counter()
                        if message.topic.matches(f"{prefix}/available"):
                            if bytes(message.payload) == b"online":
                                online.set()
                            continue
                        body = json.loads(bytes(message.payload))
                        if body.get("type") == "new":
                            received.setdefault(int(body["alert"]["mmsi"]), stamp)

                listener = asyncio.create_task(listen())
                await _wait_ready(service, online, sock, target, sent, received)
                warmup = set(sent)
                achieved = await _send_load(sock, target, positions, load, sent)
                await asyncio.sleep(2.0)  # the last alerts through the service and broker
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
        finally:
            sock.close()
            service.send_signal(signal.SIGINT)
            try:
                service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
        log_tail = (Path(tmp) / "service.log").read_text(errors="replace")[-2000:]
    planted = {m: t for m, t in sent.items() if m not in warmup}
    series = [(t, (received[m] - t) * 1000) for m, t in planted.items() if m in received]
    if TIMELINE and series:
        _print_timeline(series)
    lat_ms = sorted(ms for _, ms in series)
    if not lat_ms:
        raise SystemExit(f"no planted alert came back; service log:\n{log_tail}")
    q = statistics.quantiles(lat_ms, n=100, method="inclusive") if len(lat_ms) > 1 else lat_ms
    return {
        "alerts_sent": len(planted), "alerts_received": len(lat_ms),
        "p50_ms": statistics.median(lat_ms), "p99_ms": q[min(98, len(q) - 1)],
        "max_ms": lat_ms[-1], "datagrams_per_s": achieved, "vessels": load.vessels,
    }


def _print_timeline(series: list[tuple[float, float]]) -> None:
    """Per second of the load: planted alerts, median and worst latency."""
    start = series[0][0]
    seconds: dict[int, list[float]] = {}
    for t, ms in series:
        seconds.setdefault(int(t - start), []).append(ms)
    for second, values in sorted(seconds.items()):
        print(f"  t+{second:3d} s  {len(values):3d} alerts  p50 {statistics.median(values):7.1f}"
              f" ms  max {max(values):7.1f} ms")


async def _wait_ready(service: subprocess.Popen[bytes], online: asyncio.Event,
                      sock: socket.socket, target: tuple[str, int], sent: dict[int, float],
                      received: dict[int, float]) -> None:
    """Until the service is online and one SART sent by UDP has come back as an alert."""
    deadline = time.monotonic() + 30
    while not online.is_set():
        if service.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the service did not come online (see its log)")
        await asyncio.sleep(0.05)
    mmsi = SART_BASE - 1000
    while not received:
        if service.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the service does not answer UDP with alerts")
        mmsi += 1
        sent[mmsi] = time.perf_counter()
        sock.sendto(sart_datagram(mmsi), target)
        await asyncio.sleep(0.2)


async def _send_load(sock: socket.socket, target: tuple[str, int], positions: list[bytes],
                     load: Load, sent: dict[int, float]) -> float:
    """Positions at ``load.rate``, after the warm-up a new SART every ``1 / alerts_per_s``.

    The warm-up lets the service absorb the start of the load (each of the vessels is new
    and enters the port and coverage zones: two zone_entry alerts each, all through the
    outbox), so the planted alerts measure the steady state. Returns the rate sent.
    """
    sarts = [sart_datagram(SART_BASE + i)
             for i in range(int(load.seconds * load.alerts_per_s) + 1)]
    sendto = sock.sendto
    n_pos = n_sart = 0
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= load.seconds + load.warmup_s:
            break
        due = min(len(positions), int(elapsed * load.rate))
        while n_pos < due:
            sendto(positions[n_pos], target)
            n_pos += 1
        planting = elapsed - load.warmup_s  # every vessel has entered its zones by then
        while n_sart < planting * load.alerts_per_s and n_sart < len(sarts):
            sent[SART_BASE + n_sart] = time.perf_counter()
            sendto(sarts[n_sart], target)
            n_sart += 1
        await asyncio.sleep(load.tick_s)
    return (n_pos + n_sart) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=("udp", "feed"), default="udp",
                        help="udp: datagram → service → MQTT (default); feed: the MQTT sink "
                             "alone, driven directly")
    parser.add_argument("--mqtt", help="broker URL (default: start a private Mosquitto)")
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--vessels", type=int, default=500)
    parser.add_argument("--alerts-per-s", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="udp: seconds of positions before the first planted alert")
    parser.add_argument("--timeline", action="store_true",
                        help="udp: print latency per second of the load")
    args = parser.parse_args()
    global TIMELINE
    TIMELINE = args.timeline
    load = Load(rate=args.rate, seconds=args.seconds, vessels=args.vessels,
                alerts_per_s=args.alerts_per_s, warmup_s=args.warmup)
    run: Callable[[str, Load], Coroutine[Any, Any, dict[str, float]]] = (
        measure_udp if args.path == "udp" else measure)
    if args.mqtt:
        result = asyncio.run(run(args.mqtt, load))
    else:
        from tests.services.mosquitto import MosquittoBroker

        with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
            broker = MosquittoBroker(Path(tmp))
            broker.start()
            try:
                result = asyncio.run(run(f"mqtt://{broker.host}:{broker.port}", load))
            finally:
                broker.stop()
    for key, value in result.items():
        print(f"{key:22} {value:10.2f}" if isinstance(value, float) else f"{key:22} {value}")


if __name__ == "__main__":
    main()
