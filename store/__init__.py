"""Tracks, alerts, zones and restart state: TimescaleDB/PostgreSQL via asyncpg, or SQLite.

``open_store(url, config_dir)`` picks the backend from the ``--db`` URL; both implement
:class:`store.base.Store` (and the ``Sink`` protocol). Call ``await store.start()`` before use.
"""

from __future__ import annotations

import hashlib
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
    StoreTimedOut,
    StoreUnavailable,
    StoreUnreachable,
    VesselState,
    VesselStateJSON,
    WriterStats,
)

__all__ = [
    "DEFAULT_SQLITE_NAME", "AlertQuery", "Conflict", "NotFound", "OutboxMessage", "QueuedAct",
    "Snooze", "Store", "StoreError", "StoreTimedOut", "StoreUnavailable", "StoreUnreachable",
    "VesselState", "VesselStateJSON", "WriterStats", "open_store", "spool_file",
]

DEFAULT_SQLITE_NAME = "harbourwatch.db"
#: The live service's spool in ``store.spool_dir`` or the config directory: the name every
#: run used before runs had spools of their own, so that an upgrade finds its rows.
LIVE_SPOOL = "harbourwatch-spool.jsonl"


def spool_file(scope: str, database: str, *, directory: Path | None = None,
               sqlite: Path | None = None) -> Path:
    """The outage spool of a run of ``scope`` ("live", "replay", "drill") into ``database``
    (its URL): in ``directory``, else beside the ``sqlite`` file (else give a directory).

    Each kind of run has its own: a drill with the port's config caught up the live
    service's spooled rows into the drill database. A replay's or drill's also depends on the
    database (a short hash of its URL without password, or of the SQLite file's path), so
    two replays into different databases never write each other's rows; beside an SQLite
    file it is that database's already.
    """
    if directory is None:
        if sqlite is None:
            raise ValueError("a spool needs a directory, or an SQLite file to go beside")
        return sqlite.with_name(sqlite.name + (".spool.jsonl" if scope == "live"
                                               else f".{scope}-spool.jsonl"))
    if scope == "live":
        return directory / LIVE_SPOOL
    digest = hashlib.sha256(database.encode()).hexdigest()[:8]
    return directory / f"harbourwatch-{scope}-spool-{digest}.jsonl"


def _without_password(url: str) -> str:
    """The URL as a key: the same database whatever its password (rotated, or elsewhere).
    Not parsed beyond that: a URL asyncpg cannot read is named at start, not here."""
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    netloc = user.partition(":")[0] + at + host
    return parts._replace(scheme="postgresql", netloc=netloc).geturl()


def open_store(url: str | None, config_dir: Path | None = None, *,
               retention: timedelta | None = None,
               compress_after: timedelta = timedelta(days=7),
               spool_path: Path | None = None, spool_dir: Path | None = None,
               scope: str | None = None, drill: bool = False,
               batch_size: int = 2000, max_age: float = 1.0,
               memory_limit: int = 200_000, inline_writes: bool = False,
               hold_s: float = 0.0) -> Store:
    """The store for ``--db``: ``None`` (SQLite next to the config, or in the working
    directory), ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or
    ``postgresql://user:pass@host:port/db`` (``postgres://`` too).

    Not started yet: ``await store.start()`` connects and migrates. ``retention`` and
    ``compress_after`` apply to TimescaleDB only. The outage spool is ``spool_path`` when
    given, else ``spool_file`` for the run's ``scope`` (default: "drill" with ``drill``,
    else "live") in ``spool_dir``, else beside the SQLite database, or in the config
    directory.
    ``inline_writes`` (SQLite only; replays) writes batches on the event loop's thread.
    ``hold_s``: message time positions wait before they are queued, so that receivers of
    later duplicates are stored with them (``ingest.ingestor.sources_final_after``).
    """
    base = config_dir if config_dir is not None else Path.cwd()
    scope = scope or ("drill" if drill else "live")
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
        spool_path = spool_path or spool_file(scope, f"sqlite:{path.resolve()}",
                                              directory=spool_dir, sqlite=path)
        return SqliteStore(path, spool_path=spool_path, drill=drill, batch_size=batch_size,
                           max_age=max_age, memory_limit=memory_limit,
                           inline_writes=inline_writes, hold_s=hold_s)
    if scheme in ("postgresql", "postgres"):
        from store.postgres import PostgresStore

        spool_path = spool_path or spool_file(scope, _without_password(url),
                                              directory=spool_dir or base)
        return PostgresStore(url, spool_path=spool_path,
                             retention=retention, compress_after=compress_after, drill=drill,
                             batch_size=batch_size, max_age=max_age, memory_limit=memory_limit,
                             hold_s=hold_s)
    raise StoreError(f"unknown database URL {url!r}: use sqlite:///path.db or postgresql://…")
