"""An append-only JSON-lines spool on local disk, read back in order.

The writer moves its oldest queued rows here when the database has been away long enough to
fill the memory buffer; catch-up reads them back first, so rows reach the database in the
order they were queued. A crash during catch-up replays the whole file on the next start:
harmless, every write is idempotent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from store.base import StoreError
from store.rows import Item


class Spool:
    """Owned by one task (the writer's flush loop); its methods block briefly on disk I/O."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read_pos = 0
        self.pending = 0
        if path.exists():
            with path.open("rb") as fh:
                self.pending = sum(1 for line in fh if line.strip())

    def append(self, items: list[Item]) -> None:
        if not items:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(item, separators=(",", ":")) + "\n" for item in items)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StoreError(f"cannot write spool {self.path}: {exc}") from exc
        self.pending += len(items)

    def peek(self, limit: int) -> tuple[list[Item], int]:
        """Up to ``limit`` items from the read position, and the position after them."""
        items: list[Item] = []
        if self.pending == 0:
            return items, self._read_pos
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._read_pos)
                pos = self._read_pos
                while len(items) < limit:
                    line = fh.readline()
                    if not line:
                        break
                    if not line.endswith(b"\n"):
                        break  # a torn last line from a crash: ignore it, it was never acked
                    pos += len(line)
                    if line.strip():
                        items.append(_decode(json.loads(line)))
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read spool {self.path}: {exc}") from exc
        return items, pos

    def advance(self, pos: int, count: int) -> None:
        """Mark items up to ``pos`` as written; remove the file when all are."""
        self._read_pos = pos
        self.pending = max(0, self.pending - count)
        try:
            if self.pending == 0 or self._read_pos >= self.path.stat().st_size:
                self.path.unlink(missing_ok=True)
                self._read_pos = 0
                self.pending = 0
        except OSError as exc:
            raise StoreError(f"cannot truncate spool {self.path}: {exc}") from exc


def _decode(raw: Any) -> Item:
    kind, row = raw
    if kind == "p":
        # Spooled before positions had ``suspect``: not marked.
        return (kind, tuple(row) if len(row) == 12 else (*row, False))
    if kind == "s":
        return (kind, (int(row[0]), float(row[1]), dict(row[2])))
    if kind == "o":
        return (kind, dict(row))
    return (kind, (str(row[0]), float(row[1]), dict(row[2])))
