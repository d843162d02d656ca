"""The background writer: batches rows, survives database outages, never blocks ingest.

``put`` only appends to an in-memory deque. One task flushes batches by size or age. While the
database is unreachable every retry pass moves the queue to a JSON-lines spool on disk (an
alert transition raised meanwhile is on disk within one pass), and an operator act is spooled
when it is queued, with the rows before it; otherwise the deque is bounded by
``memory_limit`` items (a catch-up, a slow database), the oldest moving to the spool beyond
it. When the database returns the spool is written first, then the deque, so rows arrive in
queue order. Every write is idempotent (unique keys with ON CONFLICT DO NOTHING / INSERT OR
IGNORE), so a batch retried after an ambiguous failure is never duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Protocol

from store.base import StoreError, StoreRefused, StoreUnavailable, WriterStats
from store.rows import Batch, Item
from store.spool import Mark, Spool, SpoolRowError

log = logging.getLogger(__name__)

#: Most batches' worth of queued rows written in one transaction when the writer is behind:
#: a transaction costs the database much the same whatever its size, per row far less in a
#: big one (SQLite: ~4 µs a row in 500-row transactions, ~3 µs in 2000-row ones).
CATCH_UP_BATCHES = 4


#: What a batch no row of which went in met (``_split``): kept as in an outage.
_UNPROVEN = "writing failed"


def _unforeseen(exc: Exception) -> bool:
    """Not known to be about the row the write was refused for (see ``_split``)."""
    return isinstance(exc, StoreRefused) or not isinstance(exc, StoreError)


class BatchSink(Protocol):
    async def write_batch(self, batch: Batch) -> int:
        """Write one batch in one transaction; raise StoreUnavailable or StoreError.

        Returns how many of its positions were new: a catch-up or a replay offers rows the
        database already has, and those are ignored, not stored twice.
        """


class BatchWriter:
    """Queue + flush loop + outage buffer + spool for one backend."""

    def __init__(self, backend: BatchSink, spool_path: Path, *, batch_size: int = 2000,
                 max_age: float = 1.0, memory_limit: int = 200_000,
                 retry_initial: float = 0.2, retry_max: float = 5.0,
                 before_pass: Callable[[], None] | None = None) -> None:
        """``before_pass`` runs at the start of every pass (at least every ``max_age``)."""
        self._backend = backend
        self._before_pass = before_pass
        self._spool = Spool(spool_path, deferred=True)  # read once owned: open_spool
        self._rejected_path = spool_path.with_suffix(".rejected.jsonl")
        self.batch_size = batch_size
        self.max_age = max_age
        self.memory_limit = memory_limit
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._queue: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._pass_done = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stats = WriterStats()
        #: What the last failed write met (``StoreUnavailable.what``), said again at stop.
        self._outage = "database unavailable"
        self._backoff = retry_initial
        #: flush() calls waiting: passes then write partial batches too.
        self._flushing = 0
        #: Rows ever put; less the queue's length, the rows that have left it (written or
        #: spooled: rows leave from the front only), so a flush waits for the rows queued
        #: before it, not for those a busy producer adds meanwhile.
        self._put_count = 0
        #: Alert transitions and operator acts in the queue (see ``put_marked``).
        self._queued_alerts = 0
        self._queued_acts = 0
        #: The database came back from an outage (or a start found an earlier run's spool)
        #: and the alert transitions and acts queued meanwhile are not all written
        #: (WriterStats.catching_up).
        self._catching_up = False
        #: Set once the alert transitions and acts an earlier run spooled are written.
        self._ahead_done = asyncio.Event()
        #: An act is spooled on the event loop whatever the flush loop is doing: this keeps
        #: an append off the file while a worker thread peeks at it.
        self._spool_lock = threading.Lock()
        #: Appends so far: a peek's ``at_end`` is stale once another one came (advancing on
        #: it removed the main file with the rows appended meanwhile).
        self._appends = 0

    # --- producer side (never blocks) --------------------------------------------------------
    def put(self, item: Item) -> None:
        self._queue.append(item)
        self._put_count += 1
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def put_marked(self, item: Item) -> None:
        """An alert transition or an operator act: counted, so the writer knows when those
        queued during an outage are written (positions, the hot path, are not)."""
        if item[0] == "o":
            self._queued_acts += 1
        else:
            self._queued_alerts += 1
        self.put(item)

    def put_act(self, item: Item) -> bool:
        """An operator act (queued when the database could not take it): spooled at once
        with the rows queued before it (the spool keeps queue order), so the API's 202
        outlives a crash or a power cut. False, logged, when the spool cannot be written:
        the act stays queued in memory only. While the database is away every pass spools
        the queue, so few rows are ahead of it (encoding them costs ~11 µs a row)."""
        self.put_marked(item)
        try:
            self._spool_front(len(self._queue))
        except Exception as exc:  # the act is applied already: never an error to the API
            log.error("store: an operator act is queued in memory only, not on disk (%s); "
                      "a crash or power cut before the database is back loses it", exc)
            return False
        return True

    def _left(self) -> int:
        """Rows that have left the queue (written or spooled) so far."""
        return self._put_count - len(self._queue)

    def _unqueued(self, items: list[Item]) -> None:
        """``items`` left the queue (written or spooled)."""
        if self._queued_alerts or self._queued_acts:
            for kind, _row in items:
                if kind == "o":
                    self._queued_acts -= 1
                elif kind == "a":
                    self._queued_alerts -= 1

    def put_many(self, items: list[Item]) -> None:
        self._queue.extend(items)
        self._put_count += len(items)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    # --- lifecycle ---------------------------------------------------------------------------
    def open_spool(self) -> None:
        """Own the spool (an exclusive lock; ``SpoolInUse`` when another process holds it)
        and read what an earlier run left there. ``start`` does it if not done before."""
        self._spool.open()

    def close_spool(self) -> None:
        """Give the spool up, once stopped."""
        self._spool.close()

    async def start(self) -> None:
        self._spool.open()
        if self._spool.pending:
            log.warning("store: %d spooled rows from an earlier run in %s; catching up",
                        self._spool.pending, self._spool.path)
            # This run's alerts and acts queue behind them: the API answers from memory
            # until they are written, as after an outage of this run.
            self._catching_up = True
        self._task = asyncio.create_task(self._run(), name="store-writer")

    async def spooled_alerts_written(self) -> None:
        """Return once the alert transitions and acts an earlier run spooled are written
        (the positions follow in the background; see ``_write_ahead``)."""
        if self._task is not None:
            waiter = asyncio.ensure_future(self._ahead_done.wait())
            try:
                await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    async def flush(self) -> None:
        """Return when the rows queued so far are written, or after one failed try while
        down. Rows put meanwhile are not waited for: a replay at full speed never let the
        queue empty, and an operator's ack waited for the end of the replay."""
        self._flushing += 1
        mark = self._put_count
        try:
            while self._task is not None and not self._task.done():
                self._pass_done.clear()
                self._wake.set()
                await self._pass_done.wait()
                if not self._stats.db_up or (self._put_count - len(self._queue) >= mark
                                             and not self._spool.pending):
                    return
        finally:
            self._flushing -= 1

    async def stop(self) -> None:
        """Flush; whatever the database did not take goes to the spool (nothing is lost)."""
        await self.flush()
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            # The loop sees _stopping after its current pass; no cancel, so a write in flight
            # finishes (cancelling wait_for in 3.11 can also be swallowed).
            done, _ = await asyncio.wait({self._task}, timeout=self._retry_max + 65)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._queue:
            items = list(self._queue)
            try:
                with self._spool_lock:  # a peek cut off by the timeout may still run
                    self._spool.append(items)
            except Exception as exc:
                # Nowhere left to keep them: said with what is lost, never silently.
                log.critical("store: %d rows not written to the database could not be "
                             "spooled to %s either (%s); they are lost", len(items),
                             self._spool.path, exc)
                raise
            self._queue.clear()
            self._unqueued(items)
            self._stats.spooled += len(items)
            acts = sum(1 for kind, _row in items if kind == "o")
            why = (f"{self._outage} at stop" if not self._stats.db_up
                   else "not written by the stop's flush")
            where = [f"{len(items) - acts} to {self._spool.path}"] if acts < len(items) else []
            if acts:
                where.append(f"{acts} operator acts made while it was away to "
                             f"{self._spool.acts_path} (written at the next start)")
            log.warning("store: %s; %d rows spooled: %s", why, len(items), ", ".join(where))

    def stats(self) -> WriterStats:
        self._stats.queued = len(self._queue)
        self._stats.spool_pending = self._spool.pending
        self._stats.pending_acts = self._queued_acts + self._spool.acts_pending
        self._stats.catching_up = self._catching_up and self._stats.db_up
        return self._stats

    def _caught_up(self) -> None:
        """After a pass that wrote what it found: the outage's alerts and acts are in?"""
        if self._catching_up and not (self._queued_alerts or self._queued_acts
                                      or self._spool.alerts_pending
                                      or self._spool.acts_pending):
            self._catching_up = False

    # --- the flush loop ----------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._write_ahead()  # in the restart's reach: a disk error too
                    await self._loop()
                    return
                except Exception:
                    # A bug, not an outage: said loudly, and the loop starts again after a
                    # pause (rows stay queued; dead, it left every later row in memory).
                    self._stats.db_up = False
                    self._outage = "the writer failed"
                    self._stats.failures += 1
                    log.critical("store: the writer failed; rows stay queued, it starts "
                                 "again in %.1f s", self._retry_max, exc_info=True)
                    self._pass_done.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=self._retry_max)
                    if self._stopping.is_set():
                        return
        finally:
            self._pass_done.set()  # never leave a flush() waiting

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            due = True  # a pass that was not woken by a full batch writes what it finds
            if len(self._queue) < self.batch_size and not self._spool.pending:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.max_age)
                    due = False
                except TimeoutError:
                    pass
            self._wake.clear()
            if self._stopping.is_set():
                break
            if self._before_pass is not None:
                self._before_pass()
            if not self._stats.db_up:
                # Before trying (a try can wait for a timeout): what was raised since the
                # last pass reaches the disk now.
                self._overflow_to_spool()
            try:
                ok = await self._drain(due)
            except StoreError as exc:  # the spool itself failed: keep rows in memory
                log.error("store: %s", exc)
                ok = False
            if ok:
                self._caught_up()
            self._pass_done.set()
            if not ok:
                self._overflow_to_spool()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._backoff)
                self._backoff = min(self._backoff * 2, self._retry_max)

    async def _write_ahead(self) -> None:
        """Before the catch-up, the spool's alert transitions and acts, in their order (the
        rules' state is read back once they are in: an alert acknowledged during an outage
        came back open); its positions, perhaps millions, follow in the background. Tried
        until the database takes them or the writer stops."""
        try:
            while not self._stopping.is_set() and (self._spool.alerts_pending
                                                   or self._spool.acts_pending):
                # Unreadable lines are passed over (the catch-up sets them aside in their
                # place): one of them stopped the alerts after it from going ahead.
                items, mark = await asyncio.to_thread(
                    self._peek, self.batch_size * CATCH_UP_BATCHES, True)
                if not items:
                    return
                if await self._write(items):
                    self._spool.write_ahead(mark)
                    continue
                self._pass_done.set()
                self._overflow_to_spool()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._backoff)
                self._backoff = min(self._backoff * 2, self._retry_max)
        finally:
            self._ahead_done.set()

    async def _drain(self, due: bool = True) -> bool:
        """Write spool then queue until both are empty; False when the database is away.

        Unless ``due`` (the flush interval is up) or a flush() waits, rows short of a full
        batch stay queued for the next pass: what arrives while a batch is being written
        would otherwise go out in many small transactions, each costing the database about
        as much again per row (a busy replay wrote ~300-row batches back to back).
        """
        while self._spool.pending:
            appends = self._appends
            try:
                items, mark = await asyncio.to_thread(self._peek, self.batch_size)
            except SpoolRowError as exc:
                self._set_aside(exc)
                continue
            if items and not await self._write(items):
                return False
            if self._appends != appends:  # an act spooled meanwhile: more follows
                mark = dataclasses.replace(mark, at_end=False)
            self._spool.advance(mark)
            # A long catch-up (millions of rows spooled): what arrives meanwhile waits on
            # disk behind them, in order, not in memory beyond its bound.
            self._overflow_to_spool()
        while self._queue:
            if (len(self._queue) < self.batch_size and not due and not self._flushing
                    and not self._stopping.is_set()):
                break
            # Behind (a replay at full speed, a catch-up): several batches per transaction.
            count = min(self.batch_size * CATCH_UP_BATCHES, len(self._queue))
            items = list(islice(self._queue, 0, count))
            left = self._left()
            if not await self._write(items):
                return False
            # An act spooled during the write took the front of the queue, these rows with
            # it: they are written again from the spool (harmless: writes are idempotent).
            gone = min(count, self._left() - left)
            for _ in range(count - gone):
                self._queue.popleft()
            self._unqueued(items[gone:])
            if self._flushing:
                self._pass_done.set()  # a flush() whose rows are now written may return
        if not self._stats.db_up and not self._queue and not self._spool.pending:
            # Nothing to write, so nothing would find it back: an empty transaction asks.
            return await self._write([])
        return True

    async def _write(self, items: list[Item]) -> bool:
        try:
            err = await self._attempt(items)
        except StoreUnavailable as exc:
            return self._away(exc.what, exc)
        # Refused, about some rows or for a reason not foreseen: never every row held.
        return True if err is None else await self._split(items, err)

    def _away(self, what: str, exc: BaseException) -> bool:
        """The database did not take the rows: kept, spooled if it lasts, retried with
        back-off. Said when the outage begins, and again if what happened changes (a
        command timed out, then no connection could be made: a network cut)."""
        if self._stats.db_up or what != self._outage:
            log.warning("store: %s (%s); spooling to %s until it is back", what, exc,
                        self._spool.path)
        self._outage = what
        self._stats.db_up = False
        self._catching_up = True
        self._stats.failures += 1
        return False

    async def _split(self, items: list[Item], exc: Exception) -> bool:
        """A refused batch halved until the rows it is about are found, the rest written.

        A row refused for itself (``StoreError``: a constraint, a value out of range) is
        set aside. One refused for a reason nobody foresaw (``StoreRefused``, an exception
        of the driver or of this code) only once the database took other rows of the batch:
        if none went in, the fault may be anyone's (a bug every row meets), so all are kept
        as in an outage and tried again with the rows queued behind them. Nothing is set
        aside before the end, so a batch an outage interrupts is retried whole (written
        rows are ignored then) and no row is set aside twice.
        """
        again = not self._stats.db_up and self._outage == _UNPROVEN  # said at the first try
        log.log(logging.DEBUG if again else logging.ERROR,
                "store: a batch of %d rows refused (%s: %s); splitting it to find the rows it "
                "is about", len(items), type(exc).__name__, exc,
                exc_info=None if isinstance(exc, StoreError) else exc)
        refused: list[tuple[Item, Exception]] = []
        took = False
        parts = [items]
        while parts:
            part = parts.pop()
            err: Exception | None = exc
            if part is not items:  # the whole batch failed already
                try:
                    err = await self._attempt(part)
                except StoreUnavailable as away:
                    return self._away(away.what, away)
            if err is None:
                took = True
            elif len(part) == 1:
                refused.append((part[0], err))
            else:
                half = len(part) // 2
                parts += [part[half:], part[:half]]  # the front first: written in order
        if not took and any(_unforeseen(err) for _, err in refused):
            return self._away(_UNPROVEN, exc)
        for item, err in refused:
            self._reject(item, err)
        return True

    async def _attempt(self, items: list[Item]) -> Exception | None:
        """Write ``items`` in one transaction: None once written, else why not (an outage,
        ``StoreUnavailable``, is raised)."""
        try:
            batch = Batch.of(items)
            new_positions = await self._backend.write_batch(batch)
        except StoreUnavailable:
            raise
        except Exception as exc:
            return exc
        self._written(batch, new_positions)
        return None

    def _written(self, batch: Batch, new_positions: int) -> None:
        if not self._stats.db_up:
            log.warning("store: database back; catching up")
        self._stats.db_up = True
        self._stats.last_write_at = time.time()
        self._backoff = self._retry_initial
        if not (batch.positions or batch.statics or batch.alerts or batch.acts):
            return  # the empty transaction that found it back
        self._stats.batches += 1
        self._stats.written_acts += len(batch.acts) - len(batch.dropped)
        self._stats.dropped_acts += len(batch.dropped)
        self._stats.written_positions += new_positions
        self._stats.duplicate_positions += len(batch.positions) - new_positions
        self._stats.written_statics += len(batch.statics)
        self._stats.written_alerts += len(batch.alerts)

    def _set_aside(self, exc: SpoolRowError) -> None:
        """A spooled line this release cannot read: kept in the rejected file, skipped."""
        self._stats.rejected += 1
        log.error("store: %s", exc)
        self._keep_rejected({"error": str(exc), "line": exc.raw})
        self._spool.skip(exc)

    def _reject(self, item: Item, exc: Exception) -> None:
        """A row the database refuses for its content: kept aside in a file, never retried."""
        self._stats.rejected += 1
        why = f"{type(exc).__name__}: {exc}" if _unforeseen(exc) else str(exc)
        log.error("store: row rejected: %s: %s", why, item)
        self._keep_rejected({"error": why, "item": item})

    def _keep_rejected(self, entry: dict[str, object]) -> None:
        try:
            with self._rejected_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
        except OSError as err:
            log.error("store: cannot keep rejected row in %s: %s", self._rejected_path, err)

    def _overflow_to_spool(self) -> None:
        """Move the oldest rows to disk: all of them while the database is away (alert
        transitions then survive a crash within a pass, and an act has few rows to spool
        ahead of it; rows leave the queue from the front only, so positions go too), and
        past ``memory_limit`` otherwise (a catch-up, a slow database)."""
        if not self._stats.db_up:
            count = len(self._queue)
        else:
            excess = len(self._queue) - self.memory_limit
            if excess <= 0:
                return
            # Move a bit more than the excess so the next overflow is not one row later.
            count = min(len(self._queue), excess + self.memory_limit // 4)
        if not count:
            return
        try:
            self._spool_front(count)
        except StoreError as exc:
            log.error("store: %s; keeping rows in memory", exc)
            return
        if self._stats.db_up:
            log.warning("store: %d rows past the memory bound spooled to %s", count,
                        self._spool.path)
        else:  # at every retry: said once, when the outage began (see ``_write``)
            log.debug("store: %d rows spooled to %s while the database is away",
                      count, self._spool.path)

    def _spool_front(self, count: int) -> None:
        """The first ``count`` queued rows to the spool, then off the queue: taken off only
        once on disk, so any failure (StoreError from the spool, or one nobody foresaw)
        leaves them queued and counted."""
        items = list(islice(self._queue, 0, count))
        with self._spool_lock:
            self._spool.append(items)
        self._appends += 1
        for _ in range(count):
            self._queue.popleft()
        self._unqueued(items)
        self._stats.spooled += count

    def _peek(self, limit: int, only_marked: bool = False) -> tuple[list[Item], Mark]:
        """``Spool.peek`` in a worker thread, never while an act is being appended."""
        with self._spool_lock:
            return self._spool.peek(limit, only_marked=only_marked)
