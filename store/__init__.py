"""Tracks, alerts, zones and restart state: TimescaleDB/PostgreSQL via asyncpg, or SQLite.

``open_store(url, config_dir)`` picks the backend from the ``--db`` URL; both implement
:class:`store.base.Store` (and the ``Sink`` protocol). Call ``await store.start()`` before use.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from store.base import (
    AlertQuery,
    Conflict,
    NotFound,
    OutboxMessage,
    QueuedAct,
    Snooze,
    Store,
    StoreError,
    StoreUnavailable,
    VesselState,
    VesselStateJSON,
    WriterStats,
)

__all__ = [
    "DEFAULT_SQLITE_NAME", "AlertQuery", "Conflict", "NotFound", "OutboxMessage", "QueuedAct",
    "Snooze", "Store", "StoreError", "StoreUnavailable", "VesselState", "VesselStateJSON",
    "WriterStats", "open_store",
]

DEFAULT_SQLITE_NAME = "harbourwatch.db"


def open_store(url: str | None, config_dir: Path | None = None, *,
               retention: timedelta | None = None,
               compress_after: timedelta = timedelta(days=7),
               spool_path: Path | None = None, drill: bool = False,
               batch_size: int = 2000, max_age: float = 1.0,
               memory_limit: int = 200_000, inline_writes: bool = False,
               hold_s: float = 0.0) -> Store:
    """The store for ``--db``: ``None`` (SQLite next to the config, or in the working
    directory), ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or
    ``postgresql://user:pass@host:port/db`` (``postgres://`` too).

    Not started yet: ``await store.start()`` connects and migrates. ``retention`` and
    ``compress_after`` apply to TimescaleDB only. The outage spool defaults to a file next to
    the SQLite database, or ``harbourwatch-spool.jsonl`` in the config directory.
    ``inline_writes`` (SQLite only; replays) writes batches on the event loop's thread.
    ``hold_s``: message time positions wait before they are queued, so that receivers of
    later duplicates are stored with them (``ingest.ingestor.sources_final_after``).
    """
    base = config_dir if config_dir is not None else Path.cwd()
    if url is None or not url.strip():
        url = f"sqlite:///{base / DEFAULT_SQLITE_NAME}"
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from store.sqlite import SqliteStore

        if url.startswith("sqlite://") and not url.startswith("sqlite:///"):
            # sqlite://rel.db made /rel.db at the file system's root
            raise StoreError(f"{url!r}: use sqlite:///relative.db or sqlite:////absolute.db")
        raw = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite:"):]
        if not raw:
            raise StoreError(f"no file in {url!r}: use sqlite:///path.db")
        # Relative to the working directory, like any command-line path; the log names it
        # in full.
        path = Path(raw).absolute()
        return SqliteStore(path, spool_path=spool_path, drill=drill, batch_size=batch_size,
                           max_age=max_age, memory_limit=memory_limit,
                           inline_writes=inline_writes, hold_s=hold_s)
    if scheme in ("postgresql", "postgres"):
        from store.postgres import PostgresStore

        return PostgresStore(url, spool_path=spool_path or base / "harbourwatch-spool.jsonl",
                             retention=retention, compress_after=compress_after, drill=drill,
                             batch_size=batch_size, max_age=max_age, memory_limit=memory_limit,
                             hold_s=hold_s)
    raise StoreError(f"unknown database URL {url!r}: use sqlite:///path.db or postgresql://…")
