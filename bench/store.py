"""Store throughput, run by hand: ``python bench/store.py [--rows N] [--dsn postgresql://…]``.

Measures rows/s of positions through the project's writer (``on_report`` → batches → COPY)
against raw asyncpg ``copy_records_to_table`` of the same rows into the same table in the
same run (target ≥ 0.7×), and through the SQLite writer (target ≥ 100k rows/s). Without
``--dsn`` a throw-away PostgreSQL is started from Debian's binaries (as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.report import Report
from store.postgres import PostgresStore
from store.rows import POSITION_COLUMNS
from store.sqlite import SqliteStore

T0 = 1_767_261_600.0


def make_reports(n: int, offset: float = 0.0) -> list[Report]:
    """``n`` class A position reports from 500 vessels, 2 s apart per vessel."""
    return [Report(mmsi=244000000 + i % 500, msg_type=1, time=T0 + offset + i * 0.004,
                   time_source="tagblock", sources=["rx1"], nmea=[],
                   lat=51.9 + (i % 1000) * 1e-5, lon=4.1 + (i % 777) * 1e-5,
                   speed=float(i % 15), course=float(i % 360), heading=i % 360, status=0)
            for i in range(n)]


async def through_writer(store: PostgresStore | SqliteStore, reports: list[Report]) -> float:
    start = time.perf_counter()
    for i, report in enumerate(reports):
        store.on_report(report)
        if i % 2000 == 1999:
            await asyncio.sleep(0)  # the pipeline yields between reports like this
    await store.flush()
    return len(reports) / (time.perf_counter() - start)


async def raw_copy(dsn: str, reports: list[Report], batch: int) -> float:
    records = [(datetime.fromtimestamp(r.time, UTC), r.mmsi, r.lat, r.lon, r.speed, r.course,
                r.heading, r.status, r.msg_type, list(r.sources), False, False)
               for r in reports]  # drill, suspect
    conn = await asyncpg.connect(dsn)
    try:
        start = time.perf_counter()
        for i in range(0, len(records), batch):
            await conn.copy_records_to_table("positions", records=records[i:i + batch],
                                             columns=POSITION_COLUMNS)
        return len(records) / (time.perf_counter() - start)
    finally:
        await conn.close()


async def bench_postgres(dsn: str, rows: int, rounds: int, tmp: Path) -> None:
    store = PostgresStore(dsn, spool_path=tmp / "spool.jsonl", batch_size=2000, max_age=0.2)
    await store.start()
    try:
        print(f"backend: {store.description}")
        writer_rates, raw_rates = [], []
        for k in range(rounds):
            # Fresh time ranges each round, alternating order so neither side is favoured.
            ours = make_reports(rows, offset=k * 1e6)
            theirs = make_reports(rows, offset=k * 1e6 + 5e5)
            if k % 2:
                raw_rates.append(await raw_copy(dsn, theirs, 2000))
                writer_rates.append(await through_writer(store, ours))
            else:
                writer_rates.append(await through_writer(store, ours))
                raw_rates.append(await raw_copy(dsn, theirs, 2000))
        w, r = max(writer_rates), max(raw_rates)
        print(f"postgres writer (on_report → COPY): {w:,.0f} rows/s")
        print(f"postgres raw copy_records_to_table: {r:,.0f} rows/s")
        print(f"ratio writer/raw: {w / r:.2f} (target ≥ 0.70)")
        print(f"rows stored: {await store.position_count():,}")
    finally:
        await store.stop()


async def bench_sqlite(rows: int, rounds: int, tmp: Path) -> None:
    store = SqliteStore(tmp / "bench.db", batch_size=5000, max_age=0.2)
    await store.start()
    try:
        rates = [await through_writer(store, make_reports(rows, offset=k * 1e6))
                 for k in range(rounds)]
        print(f"sqlite writer (on_report → multi-row INSERT, WAL): {max(rates):,.0f} rows/s "
              "(target ≥ 100,000)")
        print(f"rows stored: {await store.position_count():,}")
    finally:
        await store.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", help="an existing PostgreSQL (a scratch database!)")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        asyncio.run(bench_sqlite(args.rows, args.rounds, tmp))
        if args.skip_postgres:
            return
        if args.dsn:
            asyncio.run(bench_postgres(args.dsn, args.rows, args.rounds, tmp))
            return
        from tests.services.postgres import PostgresServer, pg_bindir

        bindir = pg_bindir()
        if bindir is None:
            sys.exit("no PostgreSQL binaries: pass --dsn or install Debian's postgresql")
        server = PostgresServer(bindir)
        try:
            server.init()
            server.start()
            server.sql("CREATE DATABASE bench")
            asyncio.run(bench_postgres(server.dsn("bench"), args.rows, args.rounds, tmp))
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
