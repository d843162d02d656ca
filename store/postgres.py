"""PostgreSQL / TimescaleDB backend through asyncpg.

Positions go in with COPY (``copy_records_to_table``). The optimistic path copies straight
into ``positions``; if the batch hits the idempotent key (a catch-up after an outage, a
replay over stored data) the transaction is rolled back and the batch goes through a
temporary staging table and ``INSERT ... ON CONFLICT DO NOTHING``, which stays the path for
the next batches for a while. Where the ``timescaledb`` extension is available, positions
become a hypertable with compression and an optional retention policy; otherwise the same
schema runs as plain tables and :attr:`PostgresStore.timescaledb` is ``False``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time as wallclock
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg  # type: ignore[import-untyped]  # no stubs or py.typed

# The client's own DataError ("invalid input for query argument"), not the server's class 22
# exported as asyncpg.DataError: asyncpg exports it under no public name.
from asyncpg.exceptions._base import DataError as ClientDataError  # type: ignore[import-untyped]

from ingest.report import STATIC_FIELDS
from store import migrations
from store.base import (
    AlertQuery,
    Conflict,
    NotFound,
    OutboxMessage,
    QueuedAct,
    Snooze,
    StoreError,
    StoreRefused,
    StoreTimedOut,
    StoreUnavailable,
    StoreUnreachable,
    VesselState,
    VesselStateJSON,
)
from store.common import (
    ACT_COLUMNS,
    ALERT_COLUMNS,
    BEGIN_EXERCISE,
    CLEAR_ACTS,
    PRUNE_ROWS,
    SNOOZE_ACTS_SQL,
    Params,
    WriterStore,
    act_basis,
    alert_columns,
    alert_filters,
    alert_out,
    audit_key,
    audit_out,
    bucket_width,
    new_exercise,
    position_out,
    snooze_acts,
    track_point,
    vessel_out,
)
from store.rows import (
    ACT_NAMES,
    POSITION_COLUMNS,
    AlertRow,
    Batch,
    StaticRow,
    iso,
    merge_state,
    merge_statics,
    state_after_rules,
)
from store.summary import counts_statement, delays_statement, snoozes_statement, summary

log = logging.getLogger(__name__)


def _marker(n: int) -> str:
    """The n-th parameter's marker in PostgreSQL's SQL (see ``store.common.Params``)."""
    return f"${n}"

P = ParamSpec("P")
T = TypeVar("T")
#: Seconds the API's reads and acts wait for PostgreSQL (see ``_answered``).
ANSWER_TIMEOUT_S = 5.0
#: Seconds a statement may take before the client gives up on it (asyncpg's timeout).
COMMAND_TIMEOUT_S = 60.0


def _answered(method: Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]]
              ) -> Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]]:
    """A call the API waits on: StoreUnavailable after ``answer_timeout`` seconds.

    In a network cut (packets dropped, nothing refused) a pooled connection waits for its
    command timeout (60 s), and the request with it; the API answers from memory instead.
    The call is left to end by itself (cancelled, asyncpg would wait for the server to
    confirm the cancel, over the same cut); an act it makes may still land, and the act
    queued in its place is then refused and the store's alert pushed (see
    ``store.base.Store.watch_dropped_acts``)."""

    async def bounded(store: PostgresStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        task = asyncio.ensure_future(method(store, *args, **kwargs))
        done, _ = await asyncio.wait({task}, timeout=store.answer_timeout)
        if not done:
            task.add_done_callback(_left_running)
            raise StoreUnavailable(f"PostgreSQL did not answer within "
                                   f"{store.answer_timeout:g} s")
        return task.result()

    return bounded


def _left_running(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("store: a call given up on ended with %r", task.exception())

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # admin/crash shutdown
    # A connection cut in the middle of an operation can be left "busy" (seen while the
    # server stops mid-COPY): drop it and reconnect, like any other outage.
    asyncpg.InternalClientError,
)
#: SQLSTATE classes of errors about the rows themselves (data exception, integrity
#: constraint, program limit): such a row is set aside.
_ROW_ERROR_CLASSES = frozenset({"22", "23", "54"})
#: SQLSTATE classes about the database's state, not the rows: an outage, so the rows stay
#: buffered and are caught up (rejected one by one, they were lost). Connection, a
#: read-only transaction after a failover, authentication, a database or schema gone,
#: deadlock or serialization, privileges or a table dropped, disk full or out of memory, a
#: lock, shutdown, an I/O error, the server's own faults and its configuration.
_OUTAGE_CLASSES = frozenset({"08", "25", "28", "3D", "3F", "40", "42", "53", "55", "57", "58",
                             "F0", "XX"})
#: A lock not granted in time (``lock_timeout``, NOWAIT): a timeout, not a refusal.
_LOCK_NOT_AVAILABLE = "55P03"
#: Batches that use the staging path after a key conflict before COPY is tried again.
_SAFE_BATCHES = 20

_VESSEL_UPSERT = (
    f"INSERT INTO vessels (mmsi, {', '.join(STATIC_FIELDS)}, updated_at) VALUES ("
    + ", ".join(f"${i}" for i in range(1, len(STATIC_FIELDS) + 3))
    + ") ON CONFLICT (mmsi) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*STATIC_FIELDS, "updated_at"))
)
_ALERT_UPSERT = (
    f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES ("
    + ", ".join(f"${i}" for i in range(1, len(ALERT_COLUMNS) + 1))
    + ") ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ALERT_COLUMNS if c != "id")
)
_AUDIT_INSERT = (
    "INSERT INTO alert_audit (alert_id, time, actor, action, note, before_state, after_state, "
    "dedup, message_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
    "ON CONFLICT (dedup) DO NOTHING"
)
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS positions_stage "
    "(LIKE positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)


def ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


async def _snooze_in(conn: asyncpg.Connection, t: Callable[[float], Any], rule: str, mmsi: int,
                     until: float, actor: str, note: str | None, when: float,
                     dedup: str | None = None) -> None:
    """A snooze in the caller's transaction (``t``: a time as ``conn`` takes it)."""
    await conn.execute(
        "INSERT INTO snoozes VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (rule, mmsi) DO UPDATE SET until = excluded.until, "
        "actor = excluded.actor, note = excluded.note, created = excluded.created",
        rule, mmsi, t(until), actor, note, t(when))
    await conn.execute(_AUDIT_INSERT, None, t(when), actor, "snooze", note, None,
                       json.dumps({"rule": rule, "mmsi": mmsi, "until": until}), dedup, None)


async def _unsnooze_in(conn: asyncpg.Connection, t: Callable[[float], Any], rule: str,
                       mmsi: int, actor: str, when: float, dedup: str | None = None) -> bool:
    """An unsnooze in the caller's transaction; whether there was a snooze to end."""
    status = await conn.execute("DELETE FROM snoozes WHERE rule = $1 AND mmsi = $2", rule, mmsi)
    deleted = str(status).split()[-1] != "0"
    if deleted:
        await conn.execute(_AUDIT_INSERT, None, t(when), actor, "unsnooze", None,
                           json.dumps({"rule": rule, "mmsi": mmsi}), None, dedup, None)
    return deleted


def _span(span: timedelta) -> str:
    """``7 days`` rather than timedelta's ``7 days, 0:00:00``."""
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days} day{'s' if span.days != 1 else ''}"
    return str(span)


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record with timestamps as Unix seconds, as the shared shaping helpers expect."""
    return {k: (v.timestamp() if isinstance(v, datetime) else v) for k, v in record.items()}


_PG_EPOCH = 946_684_800.0  # 2000-01-01T00:00:00Z, the zero of PostgreSQL's timestamps


def _encode_ts(value: float) -> tuple[int]:
    return (round((value - _PG_EPOCH) * 1_000_000),)


def _decode_ts(value: tuple[int]) -> float:
    return value[0] / 1_000_000 + _PG_EPOCH


def _preloads_timescaledb(setting: str) -> bool:
    """Whether a ``shared_preload_libraries`` value names timescaledb (maybe with a path)."""
    names = (lib.strip().strip('"').rsplit("/", 1)[-1] for lib in setting.split(","))
    return "timescaledb" in names


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


async def _init_writer(conn: asyncpg.Connection) -> None:
    """The writer's own connection takes Unix seconds for timestamptz (binary, as int64 µs).

    Queued rows then go to COPY as they are, without a datetime per row: that conversion
    alone cost as much as the COPY itself.
    """
    await _init_connection(conn)
    await conn.set_type_codec("timestamptz", encoder=_encode_ts, decoder=_decode_ts,
                              schema="pg_catalog", format="tuple")


class PostgresStore(WriterStore):
    """The ``Store`` on PostgreSQL, with TimescaleDB when the server has it."""

    def __init__(self, dsn: str, *, spool_path: Path, retention: timedelta | None = None,
                 compress_after: timedelta = timedelta(days=7), drill: bool = False,
                 batch_size: int = 2000, max_age: float = 1.0, memory_limit: int = 200_000,
                 retry_max: float = 5.0, pool_size: int = 4,
                 connect_timeout: float = 5.0, hold_s: float = 0.0,
                 answer_timeout: float = ANSWER_TIMEOUT_S,
                 command_timeout: float = COMMAND_TIMEOUT_S) -> None:
        """``answer_timeout``: seconds the API's reads and acts wait (see ``_answered``);
        ``command_timeout``: a statement's, on every connection."""
        super().__init__(spool_path, drill=drill, batch_size=batch_size, max_age=max_age,
                         memory_limit=memory_limit, retry_max=retry_max, hold_s=hold_s)
        self.dsn = dsn
        self.retention = retention
        self.compress_after = compress_after
        self.timescaledb = False
        self.description = "PostgreSQL"
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self.answer_timeout = answer_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._wconn: asyncpg.Connection | None = None
        self._safe_left = 0

    # --- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate asyncpg and socket errors into the store's own, at the boundary."""
        try:
            yield
        except StoreError:
            raise
        except PermissionError as exc:
            # Not the network: a file the client reads (~/.pgpass, a TLS key) it may not.
            where = f" {exc.filename}" if exc.filename else " (~/.pgpass, or a TLS file)"
            raise StoreError(f"PostgreSQL client cannot read{where}: {exc.strerror}; as "
                             "the service's user, with HOME set to its home") from exc
        except (OverflowError, ClientDataError) as exc:
            # A value the driver cannot encode for its column (an int beyond its range), raw
            # from COPY, wrapped from a query: about the row, before the server saw it.
            raise StoreError(f"PostgreSQL client: {exc}") from exc
        except TimeoutError as exc:
            # A command's (see ``_connecting`` for a connection's).
            raise StoreTimedOut("PostgreSQL did not answer in time: a lock held on a table, "
                                "the server overloaded, or the network cut off") from exc
        except _UNAVAILABLE as exc:
            raise StoreUnreachable(f"PostgreSQL unreachable: {exc!r}") from exc
        except asyncpg.PostgresError as exc:
            code = str(exc.sqlstate or "")
            if code[:2] in _ROW_ERROR_CLASSES:
                raise StoreError(f"PostgreSQL: {exc}") from exc
            if code == _LOCK_NOT_AVAILABLE:
                raise StoreTimedOut(f"PostgreSQL ({code}): {exc}") from exc
            if not code or code[:2] in _OUTAGE_CLASSES:
                raise StoreUnavailable(f"PostgreSQL refuses it now ({code}): {exc}") from exc
            # Neither (an exception a trigger raised, P0001): the writer finds out which.
            raise StoreRefused(f"PostgreSQL ({code}): {exc}") from exc

    @contextmanager
    def _connecting(self) -> Iterator[None]:
        """A connection not made in time: the network or the server's state, not the lock
        or the load a command's timeout means."""
        try:
            yield
        except TimeoutError as exc:
            raise StoreUnreachable(f"PostgreSQL unreachable: no connection within "
                                   f"{self._connect_timeout:g} s") from exc

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("store not started")
        return self._pool

    async def _open(self) -> None:
        with self._errors():
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=0, max_size=self._pool_size, init=_init_connection,
                timeout=self._connect_timeout, command_timeout=self._command_timeout)
            try:
                with self._connecting():
                    conn = await self.pool.acquire()  # the first connection reads the URL
            except ValueError as exc:  # a port "5432hw", a stray character
                raise StoreError(f"store.url (--db): not a PostgreSQL URL asyncpg can read: "
                                 f"{exc}") from exc
            try:
                await self._migrate(conn)
                await self._setup_timescale(conn)
                # Which database, as the server says: an environment's URL can point at a
                # restored copy, and nothing said which one was in use.
                row = await conn.fetchrow(
                    "SELECT current_database() AS db, current_user AS who, "
                    "inet_server_addr()::text AS host, inet_server_port() AS port")
            finally:
                await self.pool.release(conn)
        host = "a local socket" if row["host"] is None else (
            f"{str(row['host']).split('/')[0]}:{row['port']}")
        self.description += f"; database {row['db']} as {row['who']} on {host}"

    async def _close(self) -> None:
        if self._wconn is not None:
            self._wconn.terminate()
            self._wconn = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
                log.warning("store: closing PostgreSQL connections: %r", exc)
                pool.terminate()

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        migrations.refuse_newer(
            await conn.fetchval("SELECT max(version) FROM schema_version") or 0,
            migrations.POSTGRES,
            f"PostgreSQL database {await conn.fetchval('SELECT current_database()')}")
        for version, statements in migrations.POSTGRES:
            async with conn.transaction():
                # Two instances starting at once must not both migrate.
                await conn.execute("SELECT pg_advisory_xact_lock(727274)")
                current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
                if version <= current:
                    continue
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version VALUES ($1)", version)
            log.info("store: PostgreSQL schema migrated to version %d", version)

    async def schema_version(self) -> int:
        with self._errors():
            return int(await self.pool.fetchval("SELECT max(version) FROM schema_version") or 0)

    async def _setup_timescale(self, conn: asyncpg.Connection) -> None:
        available = await conn.fetchval(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
        if available is None:
            log.warning("store: TimescaleDB extension absent; positions in a plain "
                        "PostgreSQL table (time indexes, no compression or retention policy)")
            self.description = "PostgreSQL (TimescaleDB absent: plain tables)"
            return
        preload = await conn.fetchval(migrations.TIMESCALE_PRELOAD)
        if preload is not None and not _preloads_timescaledb(str(preload)):
            log.warning("store: TimescaleDB installed but not in shared_preload_libraries; "
                        "plain tables")
            self.description = "PostgreSQL (TimescaleDB not preloaded: plain tables)"
            return
        try:
            await conn.execute(migrations.TIMESCALE_EXTENSION)
        except asyncpg.PostgresError as exc:  # e.g. not in shared_preload_libraries
            log.warning("store: TimescaleDB could not be enabled (%s); plain tables", exc)
            self.description = "PostgreSQL (TimescaleDB not loadable: plain tables)"
            return
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        major, minor = (int(p) for p in str(version).split(".")[:2])
        new_api = (major, minor) >= (2, 13)
        async with conn.transaction():
            await conn.execute(migrations.TIMESCALE_HYPERTABLE if new_api
                               else migrations.TIMESCALE_HYPERTABLE_OLD)
            if not await conn.fetchval(migrations.TIMESCALE_COMPRESSION_ENABLED):
                await conn.execute(migrations.TIMESCALE_COMPRESS)
            # Replace rather than keep: add_*_policy(if_not_exists) keeps an old window (with
            # only a warning), so a changed compress_after or retention would not take effect.
            await conn.execute(migrations.TIMESCALE_REMOVE_COMPRESSION)
            await conn.execute(migrations.TIMESCALE_COMPRESSION_POLICY, self.compress_after)
            await conn.execute(migrations.TIMESCALE_REMOVE_RETENTION)
            if self.retention is not None:
                await conn.execute(migrations.TIMESCALE_RETENTION_POLICY, self.retention)
        self.timescaledb = True
        keep = "forever" if self.retention is None else _span(self.retention)
        self.description = (f"PostgreSQL with TimescaleDB {version} (hypertable, compression "
                            f"after {_span(self.compress_after)}, retention {keep})")

    # --- batch write ---------------------------------------------------------------------------
    async def _writer_connection(self) -> asyncpg.Connection:
        if self._wconn is None or self._wconn.is_closed():
            with self._connecting():
                self._wconn = await asyncpg.connect(self.dsn, timeout=self._connect_timeout,
                                                    command_timeout=self._command_timeout)
            await _init_writer(self._wconn)
        return self._wconn

    async def _commit_batch(self, batch: Batch) -> int:
        with self._errors():
            try:
                conn = await self._writer_connection()
                fast = self._safe_left == 0
                if not fast:
                    self._safe_left -= 1
                try:
                    async with conn.transaction():
                        return await self._write_batch(conn, batch, fast)
                except asyncpg.UniqueViolationError:
                    if not fast:
                        raise
                    self._safe_left = _SAFE_BATCHES
                    async with conn.transaction():
                        return await self._write_batch(conn, batch, fast=False)
            except _UNAVAILABLE:
                if self._wconn is not None:  # reconnect on the next try
                    self._wconn.terminate()
                    self._wconn = None
                raise

    async def _write_batch(self, conn: asyncpg.Connection, batch: Batch, fast: bool) -> int:
        """On the writer connection: every timestamptz is Unix seconds (see _init_writer).

        Returns the positions that were new: all of them when the plain COPY succeeds (it
        fails on any key already stored), else what the staged INSERT reports.
        """
        new_positions = 0
        batch.dropped.clear()  # of an earlier try
        if batch.positions:
            records = batch.positions
            if fast:
                await conn.copy_records_to_table("positions", records=records,
                                                 columns=POSITION_COLUMNS)
                new_positions = len(records)
            else:
                await conn.execute(_STAGE)
                await conn.copy_records_to_table("positions_stage", records=records,
                                                 columns=POSITION_COLUMNS)
                status = await conn.execute(
                    "INSERT INTO positions SELECT * FROM positions_stage "
                    "ON CONFLICT DO NOTHING")
                new_positions = int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <rows>"
        if batch.statics:
            await self._write_statics(conn, batch.statics)
        for alerts, acts in batch.in_order():
            await self._write_alerts(conn, alerts)
            if acts:
                await self._write_acts(conn, acts, batch.dropped)
        return new_positions

    async def _write_alerts(self, conn: asyncpg.Connection, alerts: list[AlertRow]) -> None:
        now = wallclock.time()
        for transition, when, alert in alerts:
            before = await conn.fetchval("SELECT state FROM alerts WHERE id = $1 FOR UPDATE",
                                         alert["id"])
            fresh = new_exercise(self, transition, alert["id"], before is not None)
            if fresh:
                await conn.execute(f"UPDATE alerts SET {CLEAR_ACTS} WHERE id = $1",
                                   alert["id"])
            state = (str(alert["state"]) if fresh
                     else state_after_rules(before, str(alert["state"])))
            cols = alert_columns(alert, state, now)
            await conn.execute(_ALERT_UPSERT, *(cols[c] for c in ALERT_COLUMNS))
            if transition != "update" or before != state:
                await conn.execute(_AUDIT_INSERT, alert["id"], when, "rules", transition,
                                   "a new drill run" if fresh else None, before, state,
                                   audit_key(self, alert, transition, when), when)

    async def _write_statics(self, conn: asyncpg.Connection, statics: list[StaticRow]) -> None:
        by_mmsi: dict[int, list[StaticRow]] = {}
        for row in statics:
            by_mmsi.setdefault(row[0], []).append(row)
        found = await conn.fetch("SELECT * FROM vessels WHERE mmsi = ANY($1::integer[]) "
                                 "FOR UPDATE", list(by_mmsi))
        current = {r["mmsi"]: dict(r.items()) for r in found}
        upserts: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        for mmsi, updates in by_mmsi.items():
            record, changes = merge_statics(current.get(mmsi), updates)
            upserts.append((mmsi, *(record.get(f) for f in STATIC_FIELDS),
                            record["updated_at"]))
            history.extend((mmsi, t, c) for t, c in changes)
        await conn.executemany(_VESSEL_UPSERT, upserts)
        if history:
            await conn.executemany("INSERT INTO vessel_history VALUES ($1, $2, $3) "
                                   "ON CONFLICT DO NOTHING", history)

    # --- reading -------------------------------------------------------------------------------
    async def track(self, mmsi: int, start: float, end: float, max_points: int = 2000,
                    drill: bool | None = None, rejected: bool = False
                    ) -> list[dict[str, Any]]:
        cond = "mmsi = $1 AND time >= $2 AND time <= $3"
        params: list[Any] = [mmsi, ts(start), ts(end)]
        if drill is not None:
            cond += " AND drill = $4"
            params.append(drill)
        if not rejected:
            cond += " AND NOT suspect"
        with self._errors():
            async with self.pool.acquire() as conn:
                count = await conn.fetchval(f"SELECT count(*) FROM positions WHERE {cond}",
                                            *params)
                if count <= max_points:
                    rows = await conn.fetch(
                        "SELECT time, lat, lon, speed, course, heading, suspect FROM positions "
                        f"WHERE {cond} ORDER BY time", *params)
                else:
                    width = timedelta(seconds=bucket_width(start, end, max_points))
                    n = len(params) + 1
                    bucket = (f"time_bucket(${n}::interval, time, origin => $2)"
                              if self.timescaledb else f"date_bin(${n}::interval, time, $2)")
                    rows = await conn.fetch(
                        f"SELECT DISTINCT ON (bucket) {bucket} AS bucket, time, lat, lon, "
                        f"speed, course, heading, suspect FROM positions WHERE {cond} "
                        "ORDER BY bucket, time", *params, width)
        return [track_point(_plain(r)) for r in rows]

    async def picture_at(self, t: float, window: float = 3600.0,
                         drill: bool | None = None) -> list[dict[str, Any]]:
        cond = "p.time > $1 AND p.time <= $2 AND NOT p.suspect"
        params: list[Any] = [ts(t - window), ts(t)]
        if drill is not None:
            cond += " AND p.drill = $3"
            params.append(drill)
        sql = (
            "SELECT DISTINCT ON (p.mmsi) p.*, "
            + ", ".join(f"v.{f}" for f in STATIC_FIELDS)
            + f" FROM positions p LEFT JOIN vessels v ON v.mmsi = p.mmsi WHERE {cond} "
            "ORDER BY p.mmsi, p.time DESC"
        )
        with self._errors():
            rows = await self.pool.fetch(sql, *params)
        return [position_out(_plain(r)) for r in rows]

    async def position_count(self, mmsi: int | None = None) -> int:
        with self._errors():
            if mmsi is None:
                return int(await self.pool.fetchval("SELECT count(*) FROM positions"))
            return int(await self.pool.fetchval(
                "SELECT count(*) FROM positions WHERE mmsi = $1", mmsi))

    async def vessel(self, mmsi: int) -> dict[str, Any] | None:
        with self._errors():
            row = await self.pool.fetchrow("SELECT * FROM vessels WHERE mmsi = $1", mmsi)
        return None if row is None else vessel_out(_plain(row))

    async def vessel_history(self, mmsi: int) -> list[dict[str, Any]]:
        with self._errors():
            rows = await self.pool.fetch(
                "SELECT time, changes FROM vessel_history WHERE mmsi = $1 ORDER BY time", mmsi)
        return [{"time": iso(r["time"].timestamp()), "changes": r["changes"]} for r in rows]

    @_answered
    async def alerts(self, query: AlertQuery | None = None) -> list[dict[str, Any]]:
        q = query or AlertQuery()
        ph = Params(_marker)
        where = alert_filters(q, ph, ts)
        sql = (f"SELECT * FROM alerts{where} ORDER BY started_at DESC, id "
               f"LIMIT {ph(q.limit)} OFFSET {ph(q.offset)}")
        with self._errors():
            rows = await self.pool.fetch(sql, *ph.values)
        return [alert_out(_plain(r)) for r in rows]

    @_answered
    async def count_alerts(self, query: AlertQuery) -> int:
        ph = Params(_marker)
        where = alert_filters(replace(query, after=None), ph, ts)
        with self._errors():
            return int(await self.pool.fetchval(f"SELECT count(*) FROM alerts{where}",
                                                *ph.values))

    @_answered
    async def alert(self, alert_id: str) -> dict[str, Any]:
        with self._errors():
            row = await self.pool.fetchrow("SELECT * FROM alerts WHERE id = $1", alert_id)
        if row is None:
            raise NotFound(f"no alert {alert_id!r}")
        return alert_out(_plain(row))

    @_answered
    async def audit(self, alert_id: str) -> list[dict[str, Any]]:
        with self._errors():
            rows = await self.pool.fetch(
                "SELECT * FROM alert_audit WHERE alert_id = $1 ORDER BY id", alert_id)
        return [audit_out(_plain(r)) for r in rows]

    @_answered
    async def alert_summary(self, query: AlertQuery) -> dict[str, Any]:
        def epoch(time: str) -> str:
            return f"EXTRACT(EPOCH FROM {time})::float8"

        statements = (counts_statement(query, _marker, ts),
                      delays_statement(query, _marker, ts, epoch),
                      snoozes_statement(query, _marker, ts))
        with self._errors():
            # One snapshot: the counts and the times of the same alerts.
            async with self.pool.acquire() as conn, conn.transaction(
                    isolation="repeatable_read", readonly=True):
                # The planner costs the delays' subqueries per row, which put a year of
                # alerts far above jit_above_cost: compiling took 1.2 s of 2.2 s, for a
                # statement run once (bench/summary.py).
                await conn.execute("SET LOCAL jit = off")
                counts, delays, snoozes = [
                    None if st is None else await conn.fetch(st.sql, *st.params)
                    for st in statements]
        assert counts is not None and delays is not None
        return summary(query, counts, delays, snoozes)

    async def open_alerts(self) -> list[dict[str, Any]]:
        with self._errors():
            rows = await self.pool.fetch(
                "SELECT * FROM alerts WHERE state IN ('open', 'acknowledged') "
                "OR (state = 'resolved' AND ended_at IS NULL) "
                "ORDER BY started_at, id")
        return [alert_out(_plain(r)) for r in rows]

    # --- operator acts -------------------------------------------------------------------------
    @_answered
    async def _operator_act(self, alert_id: str, actor: str, note: str | None, at: float | None,
                            action: str, message_at: float | None) -> dict[str, Any]:
        when = wallclock.time() if at is None else at
        with self._errors():
            async with self.pool.acquire() as conn, conn.transaction():
                await self._act_in(conn, ts, alert_id, actor, note, when, action,
                                   message_at=message_at)
                # Read in the act's own transaction: a read after it could fail once the
                # act is stored, and the act was then taken for one not made.
                row = await conn.fetchrow("SELECT * FROM alerts WHERE id = $1", alert_id)
        return alert_out(_plain(row))

    async def _act_in(self, conn: asyncpg.Connection, t: Callable[[float], Any], alert_id: str,
                      actor: str, note: str | None, when: float, action: str,
                      dedup: str | None = None, *,
                      message_at: float | None = None) -> None:
        """An ack or resolve in the caller's transaction (``t``: a time as ``conn`` takes
        it); ``message_at``: the rules' clock when it was made, kept in its audit row."""
        names = ACT_NAMES[action]
        row = await conn.fetchrow(
            f"SELECT {ACT_COLUMNS} FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
        if row is None:
            raise NotFound(f"no alert {alert_id!r}")
        found = _plain(row)
        basis = act_basis(self, alert_id, action, found)
        before = found["state"]
        after = merge_state(basis, names.state)
        await conn.execute(
            f"UPDATE alerts SET state = $1, {names.column}_at = $2, {names.column}_by = $3, "
            f"{names.note} = $4, updated_at = $2 WHERE id = $5",
            after, t(when), actor, note, alert_id)
        await conn.execute(_AUDIT_INSERT, alert_id, t(when), actor, action, note, before,
                           after, dedup, None if message_at is None else t(message_at))

    async def _write_acts(self, conn: asyncpg.Connection, acts: list[QueuedAct],
                          dropped: list[tuple[QueuedAct, str]]) -> None:
        """Acts made while the database was away, in order, on the writer's connection
        (times as Unix seconds); one already stored (a batch written again) is skipped, one
        refused now goes to ``dropped``."""
        for act in acts:
            if await conn.fetchval("SELECT 1 FROM alert_audit WHERE dedup = $1",
                                   act.dedup) is not None:
                continue
            try:
                if act.action == "snooze":
                    assert act.rule is not None and act.mmsi is not None
                    assert act.until is not None
                    await _snooze_in(conn, float, act.rule, act.mmsi, act.until,
                                     act.actor, act.note, act.at, act.dedup)
                elif act.action == "unsnooze":
                    assert act.rule is not None and act.mmsi is not None
                    await _unsnooze_in(conn, float, act.rule, act.mmsi, act.actor, act.at,
                                       act.dedup)
                elif act.action in ACT_NAMES:
                    assert act.alert_id is not None
                    await self._act_in(conn, float, act.alert_id, act.actor, act.note,
                                       act.at, act.action, act.dedup,
                                       message_at=act.message_at)
            except (NotFound, Conflict) as exc:
                dropped.append((act, str(exc)))

    async def ack(self, alert_id: str, actor: str, note: str | None = None,
                  at: float | None = None, *, message_at: float | None = None
                  ) -> dict[str, Any]:
        return await self._operator_act(alert_id, actor, note, at, "ack", message_at)

    async def resolve(self, alert_id: str, actor: str, note: str | None = None,
                      at: float | None = None, *, message_at: float | None = None
                      ) -> dict[str, Any]:
        return await self._operator_act(alert_id, actor, note, at, "resolve", message_at)

    @_answered
    async def snooze(self, rule: str, mmsi: int, until: float, actor: str,
                     note: str | None = None, at: float | None = None) -> Snooze:
        when = wallclock.time() if at is None else at
        with self._errors():
            async with self.pool.acquire() as conn, conn.transaction():
                await _snooze_in(conn, ts, rule, mmsi, until, actor, note, when)
        return Snooze(rule, mmsi, until, actor, note, when)

    @_answered
    async def snoozes(self, active_at: float | None = None) -> list[Snooze]:
        with self._errors():
            if active_at is None:
                rows = await self.pool.fetch("SELECT * FROM snoozes ORDER BY rule, mmsi")
            else:
                rows = await self.pool.fetch(
                    "SELECT * FROM snoozes WHERE until > $1 ORDER BY rule, mmsi", ts(active_at))
        return [Snooze(r["rule"], r["mmsi"], r["until"].timestamp(), r["actor"], r["note"],
                       r["created"].timestamp()) for r in rows]

    @_answered
    async def unsnooze(self, rule: str, mmsi: int, actor: str, at: float | None = None) -> bool:
        when = wallclock.time() if at is None else at
        with self._errors():
            async with self.pool.acquire() as conn, conn.transaction():
                return await _unsnooze_in(conn, ts, rule, mmsi, actor, when)

    @_answered
    async def snooze_acts(self, rule: str | tuple[str, ...] | None = None,
                          mmsi: int | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
        with self._errors():
            rows = await self.pool.fetch(SNOOZE_ACTS_SQL)
        return snooze_acts((_plain(r) for r in rows), rule, mmsi, limit)

    # --- zones, restart state, health, outbox --------------------------------------------------
    async def save_zones(self, geojson: Mapping[str, Any], actor: str,
                         at: float | None = None, file_sha256: str | None = None) -> int:
        when = ts(wallclock.time() if at is None else at)
        with self._errors():
            return int(await self.pool.fetchval(
                "INSERT INTO zones (time, actor, geojson, file_sha256) VALUES ($1, $2, $3, $4) "
                "RETURNING version", when, actor, json.dumps(geojson), file_sha256))

    async def latest_zones(self) -> dict[str, Any] | None:
        with self._errors():
            row = await self.pool.fetchrow("SELECT * FROM zones ORDER BY version DESC LIMIT 1")
        if row is None:
            return None
        return {"version": row["version"], "time": iso(row["time"].timestamp()),
                "actor": row["actor"], "geojson": json.loads(row["geojson"]),
                "file_sha256": row["file_sha256"]}

    async def save_vessel_states(self, states: Iterable[VesselStateJSON], replace: bool = False,
                                 scope: str = "live") -> None:
        rows = [(scope, s.mmsi, ts(s.time), s.state) for s in states]
        with self._errors():
            async with self.pool.acquire() as conn, conn.transaction():
                if replace:
                    await conn.execute("DELETE FROM vessel_state WHERE scope = $1", scope)
                await conn.executemany(
                    "INSERT INTO vessel_state VALUES ($1, $2, $3, $4::text::jsonb) "
                    "ON CONFLICT (scope, mmsi) "
                    "DO UPDATE SET time = excluded.time, state = excluded.state", rows)

    async def load_vessel_states(self, scope: str = "live") -> dict[int, VesselState]:
        with self._errors():
            rows = await self.pool.fetch("SELECT * FROM vessel_state WHERE scope = $1", scope)
        return {r["mmsi"]: VesselState(r["mmsi"], r["time"].timestamp(), r["state"])
                for r in rows}

    async def save_engine_state(self, time: float, parts: Mapping[str, Any],
                                scope: str = "live") -> None:
        rows = [(scope, part, ts(time), state) for part, state in parts.items()]
        with self._errors():
            async with self.pool.acquire() as conn, conn.transaction():
                # One save of a scope at a time (the periodic save and the one at stop
                # overlap): a second DELETE does not see the first's rows, and its INSERT
                # broke the key.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                                   f"engine_state:{scope}")
                # The scope's state is these parts only: a part left over from an earlier
                # save (a rule with nothing to keep now) came back at the next restore.
                await conn.execute("DELETE FROM engine_state WHERE scope = $1", scope)
                await conn.executemany("INSERT INTO engine_state VALUES ($1, $2, $3, $4)",
                                       rows)

    async def load_engine_state(self, scope: str = "live") -> dict[str, Any]:
        with self._errors():
            rows = await self.pool.fetch("SELECT * FROM engine_state WHERE scope = $1", scope)
        return {r["part"]: r["state"] for r in rows}

    async def prune(self, before: float) -> int:
        with self._errors():
            await self.pool.execute("DELETE FROM source_health WHERE time < $1", ts(before))
            if self.timescaledb:
                return 0  # its retention policy drops whole chunks of positions
            dropped = 0
            while True:  # in bites: years of rows in one statement outlast command_timeout
                status = await self.pool.execute(
                    "DELETE FROM positions WHERE ctid = ANY(ARRAY(SELECT ctid FROM positions "
                    f"WHERE time < $1 LIMIT {PRUNE_ROWS}))", ts(before))
                done = int(status.split()[-1])
                dropped += done
                if done < PRUNE_ROWS:
                    return dropped

    async def save_source_health(self, time: float,
                                 health: Mapping[str, Mapping[str, Any]]) -> None:
        rows = [(ts(time), source, dict(data)) for source, data in health.items()]
        with self._errors():
            await self.pool.executemany(
                "INSERT INTO source_health VALUES ($1, $2, $3) ON CONFLICT (source, time) "
                "DO UPDATE SET data = excluded.data", rows)

    async def latest_source_health(self) -> dict[str, dict[str, Any]]:
        with self._errors():
            rows = await self.pool.fetch(
                "SELECT DISTINCT ON (source) source, data FROM source_health "
                "ORDER BY source, time DESC")
        return {r["source"]: r["data"] for r in rows}

    async def outbox_add(self, topic: str, payload: bytes | str, qos: int = 1,
                         retain: bool = False, scope: str = "live") -> int:
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        with self._errors():
            return int(await self.pool.fetchval(
                "INSERT INTO outbox (topic, payload, qos, retain, created, scope) "
                "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                topic, data, qos, retain, ts(wallclock.time()), scope))

    async def outbox_pending(self, limit: int = 100, scope: str = "live"
                             ) -> list[OutboxMessage]:
        with self._errors():
            rows = await self.pool.fetch(
                "SELECT * FROM outbox WHERE scope = $1 ORDER BY id LIMIT $2", scope, limit)
        return [OutboxMessage(r["id"], r["topic"], bytes(r["payload"]), r["qos"], r["retain"],
                              r["created"].timestamp()) for r in rows]

    async def outbox_done(self, ids: Iterable[int]) -> None:
        with self._errors():
            await self.pool.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])",
                                    list(ids))

    async def outbox_discard(self, scope: str) -> int:
        with self._errors():
            done = await self.pool.execute("DELETE FROM outbox WHERE scope = $1", scope)
        return int(done.split()[-1])  # "DELETE <count>"

    async def begin_exercise(self) -> int:
        with self._errors():
            done = await self.pool.execute(BEGIN_EXERCISE)
        return int(done.split()[-1])  # "UPDATE <count>"
