"""Recorded logs read synchronously (CLI ``decode``, replay, benchmarks).

One implementation serves files, gzip and stdin: :func:`ingest.sources.file.open_log_lines`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ingest.sources.file import open_log_lines as read_log_lines

__all__ = ["missing_logs", "read_log_lines"]


def missing_logs(paths: Iterable[str]) -> list[str]:
    """The log paths that name nothing readable as a log: not there, or a directory. A pipe
    (``<(zcat …)``, a FIFO) is one; ``-`` is standard input."""
    return [p for p in paths if p != "-" and (not Path(p).exists() or Path(p).is_dir())]
