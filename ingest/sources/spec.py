"""Sources from command-line flags: ``--udp HOST:PORT``, ``--tcp HOST:PORT``,
``--serial DEV[:BAUD]`` (and a log path for ``file``).

Every parser raises ValueError with a message fit to show the user as it is.
"""

from __future__ import annotations

import os
from typing import Literal

from ingest.sources.base import SourceBase, slugify
from ingest.sources.file import STDIN, FileSource
from ingest.sources.serialport import DEFAULT_BAUDRATE, SerialSource
from ingest.sources.tcp import TcpClientSource
from ingest.sources.udp import UdpSource

SourceKind = Literal["udp", "tcp", "serial", "file"]

# Rates a serial port can be asked for; anything else after the last ':' is part of the
# device path (by-path names such as pci-0000:00:14.0-usb-0:2:1.0-port0 hold colons).
STANDARD_BAUDRATES = (
    1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600,
)  # fmt: skip


def parse_host_port(spec: str, *, flag: str, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6addr]:PORT``, or ``PORT`` alone when ``default_host`` is given."""
    text = spec.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{flag} {spec!r}: write an IPv6 address in brackets, e.g. [::1]:10110")
    if not host:
        if default_host is None:
            raise ValueError(f"{flag} {spec!r}: expected HOST:PORT, e.g. 127.0.0.1:10110")
        host = default_host
    if not port_text.isdigit():
        raise ValueError(f"{flag} {spec!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"{flag} {spec!r}: port {port} is outside 1-65535")
    return host, port


def parse_udp_spec(spec: str, *, name: str | None = None) -> UdpSource:
    """``--udp [HOST:]PORT`` (HOST defaults to 0.0.0.0, every interface); name ``udp-<port>``."""
    host, port = parse_host_port(spec, flag="--udp", default_host="0.0.0.0")
    return UdpSource(name or f"udp-{port}", host, port, where=f"--udp {spec}")


def parse_tcp_spec(spec: str, *, name: str | None = None) -> TcpClientSource:
    """``--tcp HOST:PORT``; name ``tcp-<host>-<port>`` (host slugified)."""
    host, port = parse_host_port(spec, flag="--tcp")
    return TcpClientSource(name or slugify(f"tcp-{host}-{port}"), host, port)


def parse_serial_spec(spec: str, *, name: str | None = None) -> SerialSource:
    """``--serial DEV[:BAUD]`` (38400 baud by default); name ``serial-<basename of DEV>``."""
    text = spec.strip()
    device, baudrate = text, DEFAULT_BAUDRATE
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit():
        if int(tail) not in STANDARD_BAUDRATES:
            rates = ", ".join(str(r) for r in STANDARD_BAUDRATES)
            raise ValueError(f"--serial {spec!r}: baud rate {tail} is not one of {rates}")
        device, baudrate = head, int(tail)
    if not device:
        raise ValueError(f"--serial {spec!r}: expected DEV[:BAUD], e.g. /dev/ttyUSB0:38400")
    base = os.path.basename(device.rstrip("/")) or device
    return SerialSource(name or slugify(f"serial-{base}"), device, baudrate)


def log_source_name(path: str) -> str:
    """The default name of a log's source, the same in ``run``, ``replay`` and ``decode``:
    ``stdin`` for ``-``, else the file name without log and compression suffixes, as a slug
    (``day1-rx2.nmea.gz`` → ``day1-rx2``)."""
    if path == STDIN:
        return "stdin"
    name = os.path.basename(path)
    for suffix in (".gz", ".txt", ".nmea", ".ais", ".log"):
        name = name.removesuffix(suffix)
    return slugify(name) or "log"


def parse_file_spec(spec: str, *, name: str | None = None) -> FileSource:
    """A log path or ``-`` (stdin); named by :func:`log_source_name` unless ``name``."""
    if not spec:
        raise ValueError("log path is empty (use - for stdin)")
    return FileSource(name or log_source_name(spec), spec)


def parse_source_spec(kind: SourceKind | str, spec: str, *, name: str | None = None) -> SourceBase:
    """A source of ``kind`` (udp, tcp, serial, file) from its flag value."""
    if kind == "udp":
        return parse_udp_spec(spec, name=name)
    if kind == "tcp":
        return parse_tcp_spec(spec, name=name)
    if kind == "serial":
        return parse_serial_spec(spec, name=name)
    if kind == "file":
        return parse_file_spec(spec, name=name)
    raise ValueError(f"unknown source kind {kind!r}: expected udp, tcp, serial or file")
