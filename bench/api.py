"""HTTP API figures over real HTTP (uvicorn on 127.0.0.1, clients in another process).

    python bench/api.py [--vessels 5000] [--requests 300] [--clients 50] [--rate 2000]
                        [--seconds 10]

1. ``GET /vessels`` with ``--vessels`` vessels in the live picture: p50/p95/p99 latency of
   sequential requests from a client process (plain JSON, GeoJSON, a bbox filter).
   Target: p95 <= 50 ms for the full JSON picture.
2. Live stream while ingesting: the real pipeline (Ingestor, Engine, LivePicture, StreamHub)
   fed the demo-port log; ``--clients`` SSE clients (unfiltered: every position) in a client
   process. (a) ingest at ``--rate`` msg/s for ``--seconds``: achieved rate, events the
   clients received, drops; (b) ingest as fast as possible with and without the clients:
   the ratio is the share of ingest throughput left while streaming.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file is bench/api.py: drop bench/ from the path so `api` and `store` are the packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from api.auth import Authenticator  # noqa: E402
from api.deps import ApiDeps, sources_of  # noqa: E402
from api.picture import LivePicture  # noqa: E402
from api.server import ApiServer  # noqa: E402
from api.stream import StreamHub  # noqa: E402
from geofence.engine import Engine  # noqa: E402
from geofence.zones import ZoneSet  # noqa: E402
from harbourwatch.config import RulesConfig  # noqa: E402
from harbourwatch.pipeline import Pipeline  # noqa: E402
from ingest.ingestor import Ingestor  # noqa: E402
from ingest.report import Report  # noqa: E402
from ingest.sources.file import open_log_lines  # noqa: E402
from store import open_store  # noqa: E402

TOKEN = "bench-token"
LOG = ROOT / "fixtures" / "demo-port" / "ais-gladstone-2012-01-27.txt.gz"
ZONES = ROOT / "fixtures" / "demo-port" / "zones.geojson"
T0 = 1_767_261_600.0


def _auth() -> Authenticator:
    return Authenticator.from_config(env={"HARBOURWATCH_API_TOKENS": f"bench:viewer:{TOKEN}"})


# -- client processes ------------------------------------------------------------------------

def _latency_client(base: str, paths: list[str], n: int, out: Any) -> None:
    import httpx

    results: dict[str, list[float]] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=30) as client:
        for path in paths:
            for _ in range(5):
                client.get(path)  # warm-up
            times = []
            for _ in range(n):
                t = time.perf_counter()
                resp = client.get(path)
                resp.read()
                times.append((time.perf_counter() - t) * 1000)
                assert resp.status_code == 200
            results[path] = times
    out.put(results)


def _sse_clients(base: str, clients: int, ready: Any, stop: Any, out: Any) -> None:
    import httpx

    async def one(client: httpx.AsyncClient, counts: list[int], i: int) -> None:
        async with client.stream("GET", "/stream") as resp:
            ready.put(i)
            async for chunk in resp.aiter_bytes():
                counts[i] += chunk.count(b"event: position")  # a split block: rare

    async def main() -> None:
        counts = [0] * clients
        async with httpx.AsyncClient(base_url=base, timeout=None, headers={
                "Authorization": f"Bearer {TOKEN}"}, limits=httpx.Limits(
                    max_connections=clients + 5)) as client:
            tasks = [asyncio.create_task(one(client, counts, i)) for i in range(clients)]
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        out.put(counts)

    asyncio.run(main())


# -- server side -----------------------------------------------------------------------------

def _synthetic_picture(n: int) -> LivePicture:
    picture = LivePicture()
    for i in range(n):
        lat = -23.95 + (i % 100) * 0.0025
        lon = 151.15 + (i // 100) * 0.009
        picture.on_report(Report(
            mmsi=200_000_000 + i, msg_type=1 if i % 3 else 18, time=T0 + i % 600,
            time_source="tagblock", sources=["rx1"], nmea=[], lat=lat, lon=lon,
            speed=(i % 150) / 10, course=float(i % 360), heading=i % 360, status=0,
            shipname=f"VESSEL {i}", callsign=f"CS{i}", shiptype=70))
    return picture


async def _churn(picture: LivePicture, n: int, per_s: int) -> None:
    """Position updates at ``per_s`` reports/s spread over the fleet (cache invalidation)."""
    i, t = 0, T0 + 600
    while True:
        for _ in range(per_s // 100):
            i = (i * 7919 + 1) % n
            t += 0.01
            picture.on_report(Report(
                mmsi=200_000_000 + i, msg_type=1, time=t, time_source="tagblock",
                sources=["rx1"], nmea=[], lat=-23.9 + (i % 100) * 0.002,
                lon=151.2 + (i // 100) * 0.008, speed=5.0, course=90.0, heading=90,
                status=0))
        await asyncio.sleep(0.01)


async def bench_vessels(n: int, requests: int, churn: int = 0) -> dict[str, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp())
    store = open_store(f"sqlite:///{tmp / 'bench.db'}", tmp)
    await store.start()
    picture = _synthetic_picture(n)
    churner = asyncio.create_task(_churn(picture, n, churn)) if churn else None
    deps = ApiDeps(store=store, auth=_auth(), picture=picture,
                   zones=ZoneSet.from_geojson(ZONES), clock=lambda: T0 + 600)
    server = ApiServer(create_app(deps), "127.0.0.1", 0)
    serving = asyncio.create_task(server.serve())
    await server.wait_started()
    base = f"http://127.0.0.1:{server.port}"
    paths = ["/vessels", "/vessels?format=geojson", "/vessels?bbox=151.2,-23.9,151.4,-23.8",
             "/vessels?zone=main_channel"]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_latency_client, args=(base, paths, requests, out))
    proc.start()
    while out.empty():
        await asyncio.sleep(0.05)
    results = out.get()
    proc.join()
    if churner is not None:
        churner.cancel()
    server.stop()
    await serving
    await store.stop()
    summary = {}
    for path, times in results.items():
        times.sort()
        summary[path] = {"p50": statistics.median(times),
                         "p95": times[int(0.95 * (len(times) - 1))],
                         "p99": times[int(0.99 * (len(times) - 1))]}
    return summary


def _pipeline(hub: StreamHub, picture: LivePicture) -> Pipeline:
    engine = Engine(RulesConfig(), ZoneSet.from_geojson(ZONES))
    return Pipeline(Ingestor(), engine, [picture, hub])


def _unpaced(lines: list[bytes], hub: StreamHub) -> float:
    """Messages per second through the whole pipeline, as fast as it goes."""
    pipeline = _pipeline(hub, LivePicture())
    t = time.perf_counter()
    for line in lines:
        pipeline.feed_line("log", line, None)
    pipeline.finish()
    return pipeline.reports / (time.perf_counter() - t)


async def _unpaced_async(lines: list[bytes], hub: StreamHub, chunk: int = 500) -> float:
    """Same, yielding to the event loop every ``chunk`` lines so the clients are served."""
    pipeline = _pipeline(hub, LivePicture())
    t = time.perf_counter()
    for i in range(0, len(lines), chunk):
        for line in lines[i:i + chunk]:
            pipeline.feed_line("log", line, None)
        await asyncio.sleep(0)
    pipeline.finish()
    return pipeline.reports / (time.perf_counter() - t)


async def bench_stream(clients: int, rate: float, seconds: float) -> dict[str, Any]:
    lines = list(open_log_lines(LOG))
    hub = StreamHub()
    picture = LivePicture()
    pipeline = _pipeline(hub, picture)
    tmp = Path(tempfile.mkdtemp())
    store = open_store(f"sqlite:///{tmp / 'bench.db'}", tmp)
    await store.start()
    deps = ApiDeps(store=store, auth=_auth(), picture=picture, hub=hub,
                   sources=sources_of(pipeline.ingestor), stats=pipeline.stats)
    server = ApiServer(create_app(deps), "127.0.0.1", 0, hub=hub)
    serving = asyncio.create_task(server.serve())
    await server.wait_started()
    base = f"http://127.0.0.1:{server.port}"

    alone_async = await _unpaced_async(lines, StreamHub())

    ctx = mp.get_context("spawn")
    ready, out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_sse_clients, args=(base, clients, ready, stop, out))
    proc.start()
    for _ in range(clients):
        while ready.empty():
            await asyncio.sleep(0.01)
        ready.get()
    while hub.clients < clients:
        await asyncio.sleep(0.01)

    # (a) paced: `rate` messages (lines) per second, in 10 ms slices.
    fed, lag_max = 0, 0.0
    start = time.perf_counter()
    reports0 = pipeline.reports
    total = min(len(lines), int(rate * seconds))
    while fed < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate))
        while fed < due:
            pipeline.feed_line("live", lines[fed], None)
            fed += 1
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        lag_max = max(lag_max, time.perf_counter() - before - 0.01)
    elapsed = time.perf_counter() - start
    paced = {"lines_per_s": fed / elapsed, "reports_per_s":
             (pipeline.reports - reports0) / elapsed, "max_loop_lag_ms": lag_max * 1000}
    await asyncio.sleep(1.0)
    after_paced = hub.stats()

    # (b) unpaced with the clients connected (same hub), against (alone) above.
    with_clients = await _unpaced_async(lines, hub)
    await asyncio.sleep(1.0)
    after_unpaced = hub.stats()
    stop.set()
    counts = out.get()
    proc.join()
    server.stop()
    await serving
    await store.stop()
    return {"paced": paced, "hub_paced": asdict(after_paced),
            "hub_unpaced": asdict(after_unpaced),
            "client_events_min": min(counts), "client_events_max": max(counts),
            "alone_reports_per_s": alone_async, "with_clients_reports_per_s": with_clients,
            "ratio": with_clients / alone_async, "sync_alone_reports_per_s":
            _unpaced(lines, StreamHub())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vessels", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    for churn in (0, int(args.rate)):
        vessels = asyncio.run(bench_vessels(args.vessels, args.requests, churn))
        print(f"GET /vessels with {args.vessels} vessels, {args.requests} sequential requests, "
              f"{churn} position updates/s meanwhile:")
        for path, s in vessels.items():
            print(f"  {path:45s} p50 {s['p50']:6.1f} ms  p95 {s['p95']:6.1f} ms  "
                  f"p99 {s['p99']:6.1f} ms")
    stream = asyncio.run(bench_stream(args.clients, args.rate, args.seconds))
    p = stream["paced"]
    print(f"live stream, {args.clients} SSE clients, ingest paced at {args.rate:.0f} lines/s "
          f"for {args.seconds:.0f} s:")
    print(f"  achieved {p['lines_per_s']:.0f} lines/s ({p['reports_per_s']:.0f} reports/s), "
          f"max event-loop lag {p['max_loop_lag_ms']:.1f} ms")
    print(f"  hub after the paced run: {json.dumps(stream['hub_paced'])}")
    print(f"  hub after the unpaced run too: {json.dumps(stream['hub_unpaced'])}; position "
          f"events received per client over both: "
          f"{stream['client_events_min']}..{stream['client_events_max']}")
    print(f"ingest as fast as possible (whole log, yielding every 500 lines): alone "
          f"{stream['alone_reports_per_s']:.0f} reports/s, with {args.clients} clients "
          f"{stream['with_clients_reports_per_s']:.0f} reports/s, ratio "
          f"{stream['ratio']:.2f} (pure sync loop alone: "
          f"{stream['sync_alone_reports_per_s']:.0f} reports/s)")


if __name__ == "__main__":
    main()
