"""``harbourwatch decode``: NMEA logs to JSON lines, counters to stderr."""

from __future__ import annotations

import json
import logging
import sys

from ingest.ingestor import Ingestor
from ingest.logfile import missing_logs, read_log_lines
from ingest.sources.base import SourceError
from replay.merge import log_source_names

log = logging.getLogger(__name__)


def run_decode(files: list[str], *, stats: bool, dedup_window_s: float = 3.0) -> int:
    """Decode every file in turn through one ingestor (so cross-file duplicates count)."""
    missing = missing_logs(files)
    if missing:  # a usage error, as for replay: nothing decoded
        for path in missing:
            print(f"harbourwatch: {path}: no such file", file=sys.stderr)
        return 2
    ingestor = Ingestor(dedup_window_s=dedup_window_s)
    out = sys.stdout
    dumps = json.dumps
    try:
        names = log_source_names(files)
        for path, name in zip(files, names, strict=True):
            for line in read_log_lines(path):
                for report in ingestor.feed(name, line, None):
                    out.write(dumps(report.to_dict(), separators=(",", ":")) + "\n")
        for report in ingestor.flush():
            out.write(dumps(report.to_dict(), separators=(",", ":")) + "\n")
    except BrokenPipeError:
        return 0
    except (OSError, SourceError) as exc:
        print(f"harbourwatch decode: {exc}", file=sys.stderr)
        return 1
    finally:
        out.flush()
        if stats:
            summary = {
                "sources": [s.health.to_dict() for s in ingestor.sources.values()],
                "receivers": [r.to_dict() for r in ingestor.receivers.values()],
            }
            print(json.dumps(summary, indent=2), file=sys.stderr)
    return 0
