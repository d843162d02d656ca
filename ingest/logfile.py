"""Recorded logs read synchronously (CLI ``decode``, replay, benchmarks).

One implementation serves files, gzip and stdin: :func:`ingest.sources.file.open_log_lines`.
"""

from __future__ import annotations

from ingest.sources.file import open_log_lines as read_log_lines

__all__ = ["read_log_lines"]
