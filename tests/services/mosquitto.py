"""A real Mosquitto broker for tests, on a free port of 127.0.0.1.

Fixtures (session scope): ``mosquitto`` (anonymous access) and ``mosquitto_auth`` (password
file, user ``harbourwatch``). Each yields a :class:`MosquittoBroker` with ``host``, ``port``,
``username``/``password`` and ``stop()``/``start()``: a test that needs the broker to go away
and come back stops and restarts it on the same port. A test that stops the broker must start
it again before it ends, as the broker is shared by the session.

tests/conftest.py declares both for every test module: a test names them as parameters.
Importing them into a test module would give that module a broker of its own.

The broker binary is Debian's ``mosquitto`` (``apt-get install mosquitto``); set
``MOSQUITTO`` to another path if needed. A missing binary fails the tests: it never skips them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

BINARY_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
#: How long the broker may take to open its port; a readiness wait, not a timed assertion.
READY_TIMEOUT_S = 15.0


def _find(env: str, name: str, candidates: tuple[str, ...]) -> str:
    """Path of a Mosquitto executable, or fail the test with what to install."""
    configured = os.environ.get(env)
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.fail(f"{env}={configured} is not an executable file", pytrace=False)
        return configured
    found = shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if found is None:
        pytest.fail(
            f"{name} not found: the MQTT tests need a real Mosquitto broker. "
            f"Install it with `apt-get install mosquitto` (Debian/Ubuntu) or set {env}.",
            pytrace=False,
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class MosquittoBroker:
    """One Mosquitto process bound to ``host:port``; stop and start keep the same port."""

    def __init__(self, workdir: Path, *, username: str | None = None,
                 password: str | None = None, extra: Sequence[str] = ()) -> None:
        """``extra``: more mosquitto.conf lines (a broker's policy a test needs)."""
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.username = username
        self.password = password
        self.extra = list(extra)
        self.workdir = workdir
        self.binary = _find("MOSQUITTO", "mosquitto", BINARY_CANDIDATES)
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        """``mqtt://[user:password@]host:port``, the form the CLI flag takes."""
        auth = f"{self.username}:{self.password}@" if self.username else ""
        return f"mqtt://{auth}{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto switches to the `mosquitto` user, which cannot read
            # the private temporary directory; CI runs as root, so stay root there.
            lines.append("user root")
        if self.username is not None and self.password is not None:
            passwd = self.workdir / "passwd"
            tool = _find("MOSQUITTO_PASSWD", "mosquitto_passwd",
                         ("/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd"))
            subprocess.run([tool, "-c", "-b", str(passwd), self.username, self.password],
                           check=True, capture_output=True)
            passwd.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        lines += self.extra
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}:\n"
                                   f"{self.log.read_text(errors='replace')}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not open {self.host}:{self.port}:\n"
                                       f"{self.log.read_text(errors='replace')}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and wait for the process to end."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _broker(username: str | None = None, password: str | None = None
            ) -> Iterator[MosquittoBroker]:
    with tempfile.TemporaryDirectory(prefix="hw-mosquitto-") as tmp:
        broker = MosquittoBroker(Path(tmp), username=username, password=password)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A broker with anonymous access, shared by the session."""
    yield from _broker()


@pytest.fixture(scope="session")
def mosquitto_auth() -> Iterator[MosquittoBroker]:
    """A broker that only accepts user ``harbourwatch`` with password ``s3cret-test``."""
    yield from _broker("harbourwatch", "s3cret-test")
