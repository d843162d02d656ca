"""A real PostgreSQL server for the tests, from Debian's binaries, on 127.0.0.1.

``postgres_server`` (session) runs initdb + pg_ctl in a temporary directory on a free port;
as root the binaries run as the ``postgres`` user (PostgreSQL refuses to run as root).
``pg_dsn`` (function) gives each test a fresh database on it. Missing binaries FAIL the test
with the package to install: a silently skipped database test proves nothing.

``HARBOURWATCH_PG_PRELOAD`` (opt-in, comma-separated) starts the server with those
``shared_preload_libraries``, e.g. ``timescaledb`` to run the store tests on TimescaleDB
(telemetry is then switched off). Unset, the server loads nothing extra.

tests/conftest.py declares both for every test module: a test names them as parameters.
Importing them into a test module would give that module a cluster of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: util-linux's runuser lives in /usr/sbin, which a minimal PATH (cron, CI) may lack.
_RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"

PG_VERSIONS = ("17", "16", "15")


def pg_bindir() -> Path | None:
    """Debian's server binaries (``postgresql-NN`` package), newest first; env overrides."""
    override = os.environ.get("HARBOURWATCH_PG_BINDIR")
    if override:
        return Path(override)
    for version in PG_VERSIONS:
        candidate = Path(f"/usr/lib/postgresql/{version}/bin")
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def preload_options() -> str:
    """Server options for ``HARBOURWATCH_PG_PRELOAD``; empty when it is unset."""
    libraries = [lib.strip() for lib in os.environ.get("HARBOURWATCH_PG_PRELOAD", "").split(",")
                 if lib.strip()]
    if not libraries:
        return ""
    opts = f" -c shared_preload_libraries={shlex.quote(','.join(libraries))}"
    if "timescaledb" in libraries:
        # No telemetry from a test server: network traffic stays on 127.0.0.1.
        opts += " -c timescaledb.telemetry_level=off"
    return opts


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One throw-away cluster; ``stop()``/``start()`` let outage tests take it away."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="hw-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._names = itertools.count(1)

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = [_RUNUSER, "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}\n{log}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=50" + preload_options())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts,
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql (as a TCP client) and return its unaligned output."""
        done = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
             "-c", statement], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql {statement!r} failed: {done.stderr}")
        return done.stdout.strip()

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def new_database_name(self) -> str:
        return f"hw_test_{os.getpid()}_{next(self._names)}"

    def cleanup(self) -> None:
        if self.is_running():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries not found (/usr/lib/postgresql/NN/bin/initdb, "
                    "pg_ctl): install Debian's 'postgresql' package (apt-get install -y "
                    "postgresql) or set HARBOURWATCH_PG_BINDIR")
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A DSN to a fresh, empty database, dropped after the test.

    Synchronous (psql) so that it can be requested from sync and async tests alike, and
    through ``request.getfixturevalue`` in parametrised fixtures.
    """
    name = postgres_server.new_database_name()
    if not postgres_server.is_running():
        postgres_server.start()
    postgres_server.sql(f'CREATE DATABASE "{name}"')
    yield postgres_server.dsn(name)
    if not postgres_server.is_running():
        postgres_server.start()
    postgres_server.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
