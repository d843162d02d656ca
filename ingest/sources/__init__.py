"""Where lines come from: UDP, TCP client, serial port, file or stdin.

Each source cuts its bytes into lines and puts :class:`ingest.lines.RawLine` on a shared
:class:`LineQueue`; the ingestor takes them from there. See :mod:`ingest.sources.base` for
the protocol and :mod:`ingest.sources.spec` for building sources from command-line flags.
"""

from ingest.sources.backoff import Backoff, BackoffPolicy
from ingest.sources.base import (
    Source,
    SourceBase,
    SourceError,
    SourceReadError,
    SourceStats,
    StatusListener,
    slugify,
    validate_name,
)
from ingest.sources.file import STDIN, FileSource, open_log_lines
from ingest.sources.queue import DEFAULT_MAXSIZE, LineQueue, LineQueueClosed
from ingest.sources.runner import run_sources
from ingest.sources.serialport import DEFAULT_BAUDRATE, SerialSource
from ingest.sources.spec import (
    parse_file_spec,
    parse_host_port,
    parse_serial_spec,
    parse_source_spec,
    parse_tcp_spec,
    parse_udp_spec,
)
from ingest.sources.splitter import LineSplitter, split_lines
from ingest.sources.stream import StreamSource
from ingest.sources.tcp import TcpClientSource
from ingest.sources.udp import UdpSource

__all__ = [
    "DEFAULT_BAUDRATE",
    "DEFAULT_MAXSIZE",
    "STDIN",
    "Backoff",
    "BackoffPolicy",
    "FileSource",
    "LineQueue",
    "LineQueueClosed",
    "LineSplitter",
    "SerialSource",
    "Source",
    "SourceBase",
    "SourceError",
    "SourceReadError",
    "SourceStats",
    "StatusListener",
    "StreamSource",
    "TcpClientSource",
    "UdpSource",
    "open_log_lines",
    "parse_file_spec",
    "parse_host_port",
    "parse_serial_spec",
    "parse_source_spec",
    "parse_tcp_spec",
    "parse_udp_spec",
    "run_sources",
    "slugify",
    "split_lines",
    "validate_name",
]
