"""SQLite (WAL) backend: the embedded default, one file next to the config.

sqlite3 is blocking, so every call runs in one of two dedicated threads, each with its own
connection: the writer thread takes batches and every other write (so writes never contend
for the lock), the reader thread serves queries (WAL lets it read while the writer writes).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import time as wallclock
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

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
    StoreTimedOut,
    StoreUnavailable,
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
    PositionRow,
    StaticRow,
    iso,
    merge_state,
    merge_statics,
    state_after_rules,
)
from store.summary import counts_statement, delays_statement, snoozes_statement, summary

log = logging.getLogger(__name__)
T = TypeVar("T")

_POSITION_INSERT = "INSERT OR IGNORE INTO positions VALUES"
_VESSEL_UPSERT = (
    f"INSERT OR REPLACE INTO vessels (mmsi, {', '.join(STATIC_FIELDS)}, updated_at) VALUES"
)
_VESSEL_WIDTH = len(STATIC_FIELDS) + 2
_HISTORY_INSERT = "INSERT OR IGNORE INTO vessel_history VALUES"
#: Most positions in one statement (fewer when the library allows fewer parameters): a
#: 500-row batch in one, and little padding (see _pieces) for the rest.
_POSITION_CHUNK = 512
#: Most rows (or keys) in one statement for static data: a batch holds few of them.
_SMALL_CHUNK = 64
#: How long a write waits for a lock another process holds (ms), and an inline batch write.
_BUSY_MS = 10_000
_INLINE_BUSY_MS = 100
#: A period holding more than this share of the alerts is read from the table, not through
#: the started_at index (see ``_started_column``).
_WIDE_PERIOD = 0.25


def _marker(n: int) -> str:
    """The n-th parameter's marker in SQLite's SQL (see ``store.common.Params``)."""
    return f"?{n}"


def _started_column(conn: sqlite3.Connection, query: AlertQuery) -> str:
    """``started_at`` as a period's terms name it (the summary's, the listing's total):
    ``+started_at`` (no index) when the period holds most of the table. SQLite keeps no
    statistics on a range (no STAT4), so it takes the index for any period and then reads
    nearly every row in index order, a page fetch each: a year of 100,000 alerts took
    twice as long as reading the table (bench/summary.py). Two counts on indexes decide
    it, some milliseconds."""
    if query.start is None and query.end is None:
        return "started_at"  # no period: no index to keep out
    total = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
    in_period = conn.execute(
        "SELECT count(*) FROM alerts WHERE started_at >= ?1 AND started_at < ?2",
        (float("-inf") if query.start is None else query.start,
         float("inf") if query.end is None else query.end)).fetchone()[0]
    return "+started_at" if in_period > _WIDE_PERIOD * total else "started_at"
_AUDIT_INSERT = (
    "INSERT OR IGNORE INTO alert_audit (alert_id, time, actor, action, note, before_state, "
    "after_state, dedup, message_time) VALUES (?,?,?,?,?,?,?,?,?)"
)


@functools.lru_cache(maxsize=64)
def _values_sql(head: str, width: int, rows: int) -> str:
    """``head`` followed by ``rows`` groups of ``width`` placeholders."""
    group = f"({','.join('?' * width)})"
    return f"{head} {','.join([group] * rows)}"


def _pieces(count: int, full: int, pad: bool) -> Iterator[tuple[int, int]]:
    """``(start, size)`` of the statements for ``count`` rows: ``full`` ones, then the rest
    in one statement of the next power of two (``pad``) or in power-of-two pieces.

    Compiling a multi-row statement costs about as much as running it, so only these few
    sizes are ever used, and the connection keeps each one prepared.
    """
    done = 0
    while done < count:
        left = count - done
        if left >= full:
            size = full
        elif pad:
            size = min(full, 1 << (left - 1).bit_length())
        else:
            size = 1 << (left.bit_length() - 1)
        yield done, size
        done += min(size, left)


def _run_pieces(conn: sqlite3.Connection, sql: Callable[[int], str], width: int,
                params: list[Any], full: int, pad: bool) -> Iterator[sqlite3.Cursor]:
    """Execute ``sql(rows)`` over the rows laid out flat in ``params`` (``width`` per row).

    With ``pad`` a short last piece is filled up with copies of its last row: only for
    statements where a repeated row changes nothing (INSERT OR IGNORE on a unique key, or
    a key in IN (...)). Padding costs a failed key probe per copy; a statement more costs
    two more GIL hand-offs with the pipeline thread.
    """
    for start, size in _pieces(len(params) // width, full, pad):
        chunk = params[start * width:(start + size) * width]
        missing = size - len(chunk) // width
        if missing:
            chunk += chunk[-width:] * missing
        yield conn.execute(sql(size), chunk)


def _insert_rows(conn: sqlite3.Connection, head: str, width: int, params: list[Any],
                 full: int, pad: bool) -> None:
    """Insert rows with multi-row statements, not ``executemany``.

    ``executemany`` steps each row on its own and releases the GIL around every step, so
    the writer thread has to win the GIL back from the busy pipeline thread once per row
    (a context switch, or a wait of up to the interpreter's switch interval). One statement
    binds all its rows in C and inserts them in one step with the GIL released.
    """
    for _ in _run_pieces(conn, functools.partial(_values_sql, head, width), width, params,
                         full, pad):
        pass


@functools.lru_cache(maxsize=16)
def _vessels_in(keys: int) -> str:
    return f"SELECT * FROM vessels WHERE mmsi IN ({','.join('?' * keys)})"


@functools.lru_cache(maxsize=16)
def _alerts_in(keys: int) -> str:
    return f"SELECT id, state FROM alerts WHERE id IN ({','.join('?' * keys)})"


@functools.lru_cache(maxsize=16)
def _alert_upsert(rows: int) -> str:
    return (_values_sql(f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES",
                        len(ALERT_COLUMNS), rows)
            + " ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in ALERT_COLUMNS if c != "id"))


#: Bound in place of None: SQLite stores a NaN as NULL (it never keeps NaNs). sqlite3 binds
#: a float directly, but looks for an adapter for None, and for a bool, before binding
#: them: that lookup (an AttributeError raised and cleared) cost more than binding the
#: row's other values together.
_NULL = float("nan")


def _position_params(rows: list[PositionRow]) -> list[Any]:
    """The rows' values in one flat list, ``sources`` as JSON text (each distinct list of
    receivers serialised once per batch: most reports share a handful of them), missing
    values as NaN and drill and suspect as 0/1 (same stored values, see :data:`_NULL`)."""
    dumped: dict[tuple[str, ...], str] = {}
    flat: list[Any] = []
    add = flat.extend
    null = _NULL
    for row in rows:
        sources = row[9]
        key = tuple(sources)
        text = dumped.get(key)
        if text is None:
            text = dumped[key] = json.dumps(sources)
        (_time, _mmsi, _lat, _lon, speed, course, heading, status, _type, _src, drill,
         suspect) = row
        add((row[0], row[1], row[2], row[3], null if speed is None else speed,
             null if course is None else course, null if heading is None else heading,
             null if status is None else status, row[8], text, 1 if drill else 0,
             1 if suspect else 0))
    return flat


def _threads() -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    """The writer's thread and the reader's (started at their first call)."""
    return (ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer"),
            ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader"))


class SqliteStore(WriterStore):
    """The ``Store`` on one SQLite file (WAL)."""

    timescaledb = False

    def __init__(self, path: Path, *, spool_path: Path | None = None, drill: bool = False,
                 batch_size: int = 2000, max_age: float = 1.0,
                 memory_limit: int = 200_000, inline_writes: bool = False,
                 hold_s: float = 0.0) -> None:
        """``inline_writes``: write batches on the event loop's thread (replays, see below)."""
        super().__init__(spool_path or path.with_name(path.name + ".spool.jsonl"), drill=drill,
                         batch_size=batch_size, max_age=max_age, memory_limit=memory_limit,
                         hold_s=hold_s)
        self.path = path
        self.description = f"SQLite (WAL) at {path}"
        self._wx, self._rx = _threads()
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._chunk = 1
        self._limit = 999  # SQLite's lowest default, until the writer connection says
        # A replay at full speed keeps the main thread busy: a writer thread then costs more
        # in GIL hand-overs (every pyproj call releases the GIL and wakes it) than the writes
        # themselves, so replays write inline. Live runs keep the thread: ingest never waits.
        self.inline_writes = inline_writes

    # --- plumbing ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode; only power loss can
        # lose the last transactions, which the spool/replay design tolerates.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        self._limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        fits = min(_POSITION_CHUNK, self._limit // len(POSITION_COLUMNS))
        self._chunk = 1 << (fits.bit_length() - 1)  # a power of two, as _pieces pads to
        return conn

    async def _call(self, executor: ThreadPoolExecutor | None, fn: Callable[[], T]) -> T:
        """``fn`` on ``executor``'s thread, or right here when ``executor`` is None."""
        def guarded() -> T:
            try:
                return fn()
            except (sqlite3.IntegrityError, sqlite3.DataError, OverflowError) as exc:
                # About a row itself (a constraint, a value too big; OverflowError: an int
                # beyond 64 bits, refused by the driver before SQLite sees it), as
                # PostgreSQL's SQLSTATE classes 22, 23 and 54: the writer sets it aside.
                raise StoreError(f"SQLite {self.path}: {exc}") from exc
            except sqlite3.Error as exc:
                # About the database, not the rows: locked, a full or failing disk, a damaged
                # file ("database disk image is malformed", "file is not a database"). An
                # outage: rows are kept and caught up (rejected, every row was set aside).
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code
                if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise StoreTimedOut(f"SQLite {self.path}: {exc}: another connection held "
                                        "a lock on it past the busy timeout") from exc
                raise StoreUnavailable(f"SQLite {self.path}: {exc}") from exc

        if executor is None:
            return guarded()
        return await asyncio.get_running_loop().run_in_executor(executor, guarded)

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *,
                     busy_ms: int | None = None) -> T:
        """``fn`` in one transaction; ``busy_ms`` waits that long (not 10 s) for the lock."""
        def run() -> T:
            assert self._wconn is not None
            conn = self._wconn
            if busy_ms is not None:
                conn.execute(f"PRAGMA busy_timeout={busy_ms}")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            finally:
                if busy_ms is not None:
                    conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")

        return await self._call(None if self.inline_writes else self._wx, run)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._rconn is not None
            return fn(self._rconn)

        return await self._call(self._rx, run)

    async def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc}") from exc
        # Threads afresh: a failed start's _close shut the last ones down, and the live
        # service tries its start again (its retry died on "cannot schedule new futures").
        self._wx, self._rx = _threads()
        self._wconn = await self._call(self._wx, self._connect_writer)
        await self._call(self._wx, self._migrate)
        self._rconn = await self._call(self._rx, self._connect)

    def _migrate(self) -> None:
        assert self._wconn is not None
        conn = self._wconn
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        migrations.refuse_newer(current, migrations.SQLITE, f"SQLite {self.path}")
        for version, statements in migrations.SQLITE:
            if version <= current:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            log.info("store: SQLite schema migrated to version %d", version)

    async def schema_version(self) -> int:
        row = await self._read(
            lambda c: c.execute("SELECT max(version) FROM schema_version").fetchone())
        return int(row[0] or 0)

    async def _close(self) -> None:
        for executor, attr in ((self._rx, "_rconn"), (self._wx, "_wconn")):
            conn: sqlite3.Connection | None = getattr(self, attr)
            if conn is not None:
                await self._call(executor, conn.close)
                setattr(self, attr, None)
        self._wx.shutdown(wait=True)
        self._rx.shutdown(wait=True)

    # --- batch write ---------------------------------------------------------------------------
    async def _commit_batch(self, batch: Batch) -> int:
        # Inline, batches run on the event loop: a file another process keeps locked must
        # not stall it (the API, signals) for the whole timeout. The write fails fast, its
        # rows stay buffered, and the writer tries again with back-off. (Other writes, which
        # are rare and not retried, still wait.)
        busy_ms = _INLINE_BUSY_MS if self.inline_writes else None
        return await self._write(lambda conn: self._write_batch(conn, batch), busy_ms=busy_ms)

    def _write_batch(self, conn: sqlite3.Connection, batch: Batch) -> int:
        """Returns the positions that were new (an ignored row and padding change nothing)."""
        new_positions = 0
        batch.dropped.clear()  # of an earlier try
        if batch.positions:
            before = conn.total_changes
            self._write_positions(conn, batch.positions)
            new_positions = conn.total_changes - before
        if batch.statics:
            self._write_statics(conn, batch.statics)
        for alerts, acts in batch.in_order():
            if alerts:
                self._write_alerts(conn, alerts)
            if acts:
                self._write_acts(conn, acts, batch.dropped)
        return new_positions

    def _write_alerts(self, conn: sqlite3.Connection, alerts: list[AlertRow]) -> None:
        """The alerts' states in one query, their rows in multi-row upserts (applied in
        order, a later transition of the same alert over an earlier one), audit rows one by
        one (their ids are AUTOINCREMENT: kept exactly as single inserts number them)."""
        now = wallclock.time()
        states: dict[str, str] = {}
        ids = list(dict.fromkeys(alert["id"] for _t, _w, alert in alerts))
        for cursor in _run_pieces(conn, _alerts_in, 1, ids, _SMALL_CHUNK, pad=True):
            states.update((str(r[0]), str(r[1])) for r in cursor)
        stored = set(states)
        upserts: list[Any] = []
        audits: list[tuple[Any, ...]] = []
        fresh_ids: list[str] = []
        for transition, when, alert in alerts:
            before = states.get(alert["id"])
            fresh = new_exercise(self, transition, alert["id"], alert["id"] in stored)
            if fresh:
                fresh_ids.append(alert["id"])
            state = states[alert["id"]] = (
                str(alert["state"]) if fresh else state_after_rules(before, str(alert["state"])))
            cols = alert_columns(alert, state, now)
            cols["details"] = json.dumps(cols["details"])
            upserts.extend(cols[c] for c in ALERT_COLUMNS)
            if transition != "update" or before != state:
                audits.append((alert["id"], when, "rules", transition,
                               "a new drill run" if fresh else None, before, state,
                               audit_key(self, alert, transition, when), when))
        for alert_id in fresh_ids:
            conn.execute(f"UPDATE alerts SET {CLEAR_ACTS} WHERE id = ?", (alert_id,))
        width = len(ALERT_COLUMNS)
        for _ in _run_pieces(conn, _alert_upsert, width, upserts,
                             min(_SMALL_CHUNK, self._limit // width), pad=False):
            pass
        for audit in audits:
            conn.execute(_AUDIT_INSERT, audit)

    def _write_positions(self, conn: sqlite3.Connection, rows: list[PositionRow]) -> None:
        """Statements of ``_chunk`` rows, the rest in one padded statement."""
        _insert_rows(conn, _POSITION_INSERT, len(POSITION_COLUMNS), _position_params(rows),
                     self._chunk, pad=True)

    def _write_statics(self, conn: sqlite3.Connection, statics: list[StaticRow]) -> None:
        by_mmsi: dict[int, list[StaticRow]] = {}
        for row in statics:
            by_mmsi.setdefault(row[0], []).append(row)
        current: dict[int, dict[str, Any]] = {}
        for cursor in _run_pieces(conn, _vessels_in, 1, list(by_mmsi), _SMALL_CHUNK,
                                  pad=True):
            current.update((r["mmsi"], dict(r)) for r in cursor)
        upserts: list[Any] = []
        history: list[Any] = []
        for mmsi, updates in by_mmsi.items():
            record, changes = merge_statics(current.get(mmsi), updates)
            upserts.extend((mmsi, *(record.get(f) for f in STATIC_FIELDS),
                            record["updated_at"]))
            for t, change in changes:
                history.extend((mmsi, t, json.dumps(change)))
        # REPLACE would delete and re-insert a repeated row: no padding for it.
        _insert_rows(conn, _VESSEL_UPSERT, _VESSEL_WIDTH, upserts,
                     min(_SMALL_CHUNK, self._limit // _VESSEL_WIDTH), pad=False)
        _insert_rows(conn, _HISTORY_INSERT, 3, history, min(_SMALL_CHUNK, self._limit // 3),
                     pad=True)

    # --- reading -------------------------------------------------------------------------------
    async def track(self, mmsi: int, start: float, end: float, max_points: int = 2000,
                    drill: bool | None = None, rejected: bool = False
                    ) -> list[dict[str, Any]]:
        cond = "mmsi = ?1 AND time >= ?2 AND time <= ?3"
        params: list[Any] = [mmsi, start, end]
        if drill is not None:
            cond += " AND drill = ?4"
            params.append(drill)
        if not rejected:
            cond += " AND suspect = 0"

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            count = conn.execute(f"SELECT count(*) FROM positions WHERE {cond}",
                                 params).fetchone()[0]
            if count <= max_points:
                rows = conn.execute(
                    "SELECT time, lat, lon, speed, course, heading, suspect FROM positions "
                    f"WHERE {cond} ORDER BY time", params).fetchall()
            else:
                width = bucket_width(start, end, max_points)
                # The earliest fix of each bucket (SQLite takes bare columns from the
                # min() row), as date_bin/time_bucket + DISTINCT ON do on PostgreSQL.
                rows = conn.execute(
                    "SELECT min(time) AS time, lat, lon, speed, course, heading, suspect "
                    f"FROM positions WHERE {cond} "
                    f"GROUP BY CAST((time - ?2) / {width} AS INTEGER) ORDER BY 1",
                    params).fetchall()
            return [track_point(r) for r in rows]

        return await self._read(run)

    async def picture_at(self, t: float, window: float = 3600.0,
                         drill: bool | None = None) -> list[dict[str, Any]]:
        cond = "p.time > ? AND p.time <= ? AND p.suspect = 0"
        params: list[Any] = [t - window, t]
        if drill is not None:
            cond += " AND p.drill = ?"
            params.append(drill)
        sql = (
            "SELECT max(p.time) AS time, p.mmsi, p.lat, p.lon, p.speed, p.course, p.heading, "
            "p.status, p.msg_type, p.sources, p.drill, "
            + ", ".join(f"v.{f}" for f in STATIC_FIELDS)
            + f" FROM positions p LEFT JOIN vessels v ON v.mmsi = p.mmsi WHERE {cond} "
            "GROUP BY p.mmsi ORDER BY p.mmsi"
        )
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [position_out(r) for r in rows]

    async def position_count(self, mmsi: int | None = None) -> int:
        if mmsi is None:
            row = await self._read(lambda c: c.execute("SELECT count(*) FROM positions").fetchone())
        else:
            row = await self._read(lambda c: c.execute(
                "SELECT count(*) FROM positions WHERE mmsi = ?", (mmsi,)).fetchone())
        return int(row[0])

    async def vessel(self, mmsi: int) -> dict[str, Any] | None:
        row = await self._read(
            lambda c: c.execute("SELECT * FROM vessels WHERE mmsi = ?", (mmsi,)).fetchone())
        return None if row is None else vessel_out(row)

    async def vessel_history(self, mmsi: int) -> list[dict[str, Any]]:
        rows = await self._read(lambda c: c.execute(
            "SELECT time, changes FROM vessel_history WHERE mmsi = ? ORDER BY time",
            (mmsi,)).fetchall())
        return [{"time": iso(r["time"]), "changes": json.loads(r["changes"])} for r in rows]

    async def alerts(self, query: AlertQuery | None = None) -> list[dict[str, Any]]:
        q = query or AlertQuery()
        ph = Params(_marker)
        where = alert_filters(q, ph, float)
        sql = (f"SELECT * FROM alerts{where} ORDER BY started_at DESC, id "
               f"LIMIT {ph(q.limit)} OFFSET {ph(q.offset)}")
        rows = await self._read(lambda c: c.execute(sql, ph.values).fetchall())
        return [alert_out(r) for r in rows]

    async def count_alerts(self, query: AlertQuery) -> int:
        def run(conn: sqlite3.Connection) -> int:
            ph = Params(_marker)
            # The alerts started by the end: a period holding most of them is counted
            # from the table (a year of 100,000 alerts: 0.5-1 s through the index).
            started = _started_column(conn, replace(query, start=None))
            where = alert_filters(replace(query, after=None), ph, float, started)
            return int(conn.execute(f"SELECT count(*) FROM alerts{where}", ph.values
                                    ).fetchone()[0])

        return await self._read(run)

    async def alert(self, alert_id: str) -> dict[str, Any]:
        row = await self._read(
            lambda c: c.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone())
        if row is None:
            raise NotFound(f"no alert {alert_id!r}")
        return alert_out(row)

    async def audit(self, alert_id: str) -> list[dict[str, Any]]:
        rows = await self._read(lambda c: c.execute(
            "SELECT * FROM alert_audit WHERE alert_id = ? ORDER BY id", (alert_id,)).fetchall())
        return [audit_out(r) for r in rows]

    async def alert_summary(self, query: AlertQuery) -> dict[str, Any]:
        def run(conn: sqlite3.Connection) -> list[list[sqlite3.Row] | None]:
            # One read transaction: the counts and the times of the same alerts.
            conn.execute("BEGIN")
            try:
                started = _started_column(conn, query)
                statements = (
                    counts_statement(query, _marker, float, started),
                    delays_statement(query, _marker, float, lambda t: t, started),
                    snoozes_statement(query, _marker, float))
                return [None if st is None else conn.execute(st.sql, st.params).fetchall()
                        for st in statements]
            finally:
                conn.execute("COMMIT")

        counts, delays, snoozes = await self._read(run)
        assert counts is not None and delays is not None
        return summary(query, counts, delays, snoozes)

    async def open_alerts(self) -> list[dict[str, Any]]:
        rows = await self._read(lambda c: c.execute(
            "SELECT * FROM alerts WHERE state IN ('open', 'acknowledged') "
            "OR (state = 'resolved' AND ended_at IS NULL) "
            "ORDER BY started_at, id").fetchall())
        return [alert_out(r) for r in rows]

    # --- operator acts -------------------------------------------------------------------------
    async def _operator_act(self, alert_id: str, actor: str, note: str | None, at: float | None,
                            action: str, message_at: float | None) -> dict[str, Any]:
        when = wallclock.time() if at is None else at
        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            self._act_in(conn, alert_id, actor, note, when, action, message_at=message_at)
            # Read in the act's own transaction: a read after it could fail once the act is
            # stored, and the act was then taken for one not made.
            return alert_out(conn.execute("SELECT * FROM alerts WHERE id = ?",
                                          (alert_id,)).fetchone())

        return await self._write(run)

    def _act_in(self, conn: sqlite3.Connection, alert_id: str, actor: str, note: str | None,
                when: float, action: str, dedup: str | None = None, *,
                message_at: float | None = None) -> None:
        """An ack or resolve in the caller's transaction; ``message_at``: the rules' clock
        when it was made, kept in its audit row."""
        row = conn.execute(f"SELECT {ACT_COLUMNS} FROM alerts WHERE id = ?",
                           (alert_id,)).fetchone()
        if row is None:
            raise NotFound(f"no alert {alert_id!r}")
        basis = act_basis(self, alert_id, action, row)
        before = str(row["state"])
        names = ACT_NAMES[action]
        after = merge_state(basis, names.state)
        conn.execute(
            f"UPDATE alerts SET state = ?, {names.column}_at = ?, {names.column}_by = ?, "
            f"{names.note} = ?, updated_at = ? WHERE id = ?",
            (after, when, actor, note, when, alert_id))
        conn.execute(_AUDIT_INSERT, (alert_id, when, actor, action, note, before, after, dedup,
                                     message_at))

    def _write_acts(self, conn: sqlite3.Connection, acts: list[QueuedAct],
                    dropped: list[tuple[QueuedAct, str]]) -> None:
        """Acts made while the database was away, in order; one already stored (a batch
        written again) is skipped, one refused now goes to ``dropped``."""
        for act in acts:
            if conn.execute("SELECT 1 FROM alert_audit WHERE dedup = ?",
                            (act.dedup,)).fetchone() is not None:
                continue
            try:
                if act.action == "snooze":
                    assert act.rule is not None and act.mmsi is not None
                    assert act.until is not None
                    self._snooze_in(conn, act.rule, act.mmsi, act.until, act.actor,
                                    act.note, act.at, act.dedup)
                elif act.action == "unsnooze":
                    assert act.rule is not None and act.mmsi is not None
                    self._unsnooze_in(conn, act.rule, act.mmsi, act.actor, act.at,
                                      act.dedup)
                elif act.action in ACT_NAMES:
                    assert act.alert_id is not None
                    self._act_in(conn, act.alert_id, act.actor, act.note, act.at,
                                 act.action, act.dedup, message_at=act.message_at)
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

    async def snooze(self, rule: str, mmsi: int, until: float, actor: str,
                     note: str | None = None, at: float | None = None) -> Snooze:
        when = wallclock.time() if at is None else at
        await self._write(lambda conn: self._snooze_in(conn, rule, mmsi, until, actor, note,
                                                       when))
        return Snooze(rule, mmsi, until, actor, note, when)

    @staticmethod
    def _snooze_in(conn: sqlite3.Connection, rule: str, mmsi: int, until: float, actor: str,
                   note: str | None, when: float, dedup: str | None = None) -> None:
        conn.execute("INSERT OR REPLACE INTO snoozes VALUES (?, ?, ?, ?, ?, ?)",
                     (rule, mmsi, until, actor, note, when))
        conn.execute(_AUDIT_INSERT, (None, when, actor, "snooze", note, None,
                                     json.dumps({"rule": rule, "mmsi": mmsi, "until": until}),
                                     dedup, None))

    async def snoozes(self, active_at: float | None = None) -> list[Snooze]:
        sql, params = "SELECT * FROM snoozes", []
        if active_at is not None:
            sql, params = sql + " WHERE until > ?", [active_at]
        rows = await self._read(lambda c: c.execute(sql + " ORDER BY rule, mmsi",
                                                    params).fetchall())
        return [Snooze(r["rule"], r["mmsi"], r["until"], r["actor"], r["note"], r["created"])
                for r in rows]

    async def unsnooze(self, rule: str, mmsi: int, actor: str, at: float | None = None) -> bool:
        when = wallclock.time() if at is None else at
        return await self._write(lambda conn: self._unsnooze_in(conn, rule, mmsi, actor, when))

    @staticmethod
    def _unsnooze_in(conn: sqlite3.Connection, rule: str, mmsi: int, actor: str, when: float,
                     dedup: str | None = None) -> bool:
        cur = conn.execute("DELETE FROM snoozes WHERE rule = ? AND mmsi = ?", (rule, mmsi))
        if cur.rowcount:
            conn.execute(_AUDIT_INSERT, (None, when, actor, "unsnooze", None,
                                         json.dumps({"rule": rule, "mmsi": mmsi}), None, dedup,
                                         None))
        return cur.rowcount > 0

    async def snooze_acts(self, rule: str | tuple[str, ...] | None = None,
                          mmsi: int | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
        return await self._read(lambda c: snooze_acts(c.execute(SNOOZE_ACTS_SQL), rule, mmsi,
                                                      limit))

    # --- zones, restart state, health, outbox --------------------------------------------------
    async def save_zones(self, geojson: Mapping[str, Any], actor: str,
                         at: float | None = None, file_sha256: str | None = None) -> int:
        when = wallclock.time() if at is None else at
        text = json.dumps(geojson)

        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO zones (time, actor, geojson, file_sha256) VALUES (?, ?, ?, ?)",
                (when, actor, text, file_sha256))
            return int(cur.lastrowid or 0)

        return await self._write(run)

    async def latest_zones(self) -> dict[str, Any] | None:
        row = await self._read(lambda c: c.execute(
            "SELECT * FROM zones ORDER BY version DESC LIMIT 1").fetchone())
        if row is None:
            return None
        return {"version": row["version"], "time": iso(row["time"]), "actor": row["actor"],
                "geojson": json.loads(row["geojson"]), "file_sha256": row["file_sha256"]}

    async def save_vessel_states(self, states: Iterable[VesselStateJSON], replace: bool = False,
                                 scope: str = "live") -> None:
        rows = [(scope, s.mmsi, s.time, s.state) for s in states]

        def run(conn: sqlite3.Connection) -> None:
            if replace:
                conn.execute("DELETE FROM vessel_state WHERE scope = ?", (scope,))
            conn.executemany("INSERT OR REPLACE INTO vessel_state VALUES (?, ?, ?, ?)", rows)

        await self._write(run)

    async def load_vessel_states(self, scope: str = "live") -> dict[int, VesselState]:
        rows = await self._read(lambda c: c.execute(
            "SELECT * FROM vessel_state WHERE scope = ?", (scope,)).fetchall())
        return {r["mmsi"]: VesselState(r["mmsi"], r["time"], _json_or_error(r["state"]))
                for r in rows}

    async def save_engine_state(self, time: float, parts: Mapping[str, Any],
                                scope: str = "live") -> None:
        rows = [(scope, part, time, json.dumps(state)) for part, state in parts.items()]

        def run(conn: sqlite3.Connection) -> None:
            # The scope's state is these parts only: a part left over from an earlier save
            # (a rule with nothing to keep now) came back at the next restore.
            conn.execute("DELETE FROM engine_state WHERE scope = ?", (scope,))
            conn.executemany("INSERT INTO engine_state VALUES (?, ?, ?, ?)", rows)

        await self._write(run)

    async def load_engine_state(self, scope: str = "live") -> dict[str, Any]:
        rows = await self._read(lambda c: c.execute(
            "SELECT * FROM engine_state WHERE scope = ?", (scope,)).fetchall())
        return {r["part"]: _json_or_error(r["state"]) for r in rows}

    async def prune(self, before: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM positions WHERE rowid IN (SELECT rowid FROM positions "
                f"WHERE time < ? LIMIT {PRUNE_ROWS})", (before,)).rowcount

        await self._write(lambda c: c.execute("DELETE FROM source_health WHERE time < ?",
                                              (before,)))
        dropped = 0
        while True:  # in bites, so the writer's batches are not held up for long
            done = await self._write(run)
            dropped += done
            if done < PRUNE_ROWS:
                return dropped

    async def save_source_health(self, time: float,
                                 health: Mapping[str, Mapping[str, Any]]) -> None:
        rows = [(time, source, json.dumps(dict(data))) for source, data in health.items()]
        await self._write(lambda c: c.executemany(
            "INSERT OR REPLACE INTO source_health VALUES (?, ?, ?)", rows))

    async def latest_source_health(self) -> dict[str, dict[str, Any]]:
        rows = await self._read(lambda c: c.execute(
            "SELECT source, max(time) AS time, data FROM source_health GROUP BY source"
        ).fetchall())
        return {r["source"]: json.loads(r["data"]) for r in rows}

    async def outbox_add(self, topic: str, payload: bytes | str, qos: int = 1,
                         retain: bool = False, scope: str = "live") -> int:
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        when = wallclock.time()

        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO outbox (topic, payload, qos, retain, created, scope) "
                "VALUES (?,?,?,?,?,?)", (topic, data, qos, retain, when, scope))
            return int(cur.lastrowid or 0)

        return await self._write(run)

    async def outbox_pending(self, limit: int = 100, scope: str = "live"
                             ) -> list[OutboxMessage]:
        rows = await self._read(lambda c: c.execute(
            "SELECT * FROM outbox WHERE scope = ? ORDER BY id LIMIT ?",
            (scope, limit)).fetchall())
        return [OutboxMessage(r["id"], r["topic"], bytes(r["payload"]), r["qos"],
                              bool(r["retain"]), r["created"]) for r in rows]

    async def outbox_done(self, ids: Iterable[int]) -> None:
        rows = [(i,) for i in ids]
        await self._write(lambda c: c.executemany("DELETE FROM outbox WHERE id = ?", rows))

    async def outbox_discard(self, scope: str) -> int:
        return await self._write(lambda c: c.execute(
            "DELETE FROM outbox WHERE scope = ?", (scope,)).rowcount)

    async def begin_exercise(self) -> int:
        return await self._write(lambda c: c.execute(BEGIN_EXERCISE).rowcount)


def _json_or_error(text: str) -> Any:
    """Saved state's JSON, or the error reading it (see ``Store.load_engine_state``)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        return exc
