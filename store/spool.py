"""An append-only JSON-lines spool on local disk, read back in order.

The writer moves its oldest queued rows here when the database has been away long enough to
fill the memory buffer; catch-up reads them back first, so rows reach the database in the
order they were queued. A crash during catch-up replays the whole file on the next start:
harmless, every write is idempotent.

Two files, so that a release can be rolled back with rows spooled:

- ``spool.jsonl``: positions, static data and alert transitions (``p``, ``s``, ``a``), in
  the format every release reads.
- ``spool.acts-v1.jsonl`` (the version is in the name): operator acts made while the
  database was away, each with the byte offset of the main file it follows (its place in
  the queue). A release that does not know acts never opens it: it writes the main file as
  before and leaves the acts for a release that knows them.

A line this release cannot read (another release's, a damaged disk) raises
:class:`SpoolRowError` naming the file and line; the writer sets it aside and goes on.

One process owns a spool (:meth:`Spool.open`): an exclusive ``flock`` on ``<spool>.lock``
beside it, a file of its own because the spool files themselves are unlinked and replaced
while in use. A second process reading it wrote another run's rows into its own database and
truncated them away from their owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.base import QueuedAct, StoreError
from store.rows import Item

log = logging.getLogger(__name__)

#: Version of the acts file's format, part of its name (see the module docstring).
ACTS_VERSION = 1


class SpoolInUse(StoreError):
    """Another process (or another store in this one) holds the spool."""


class SpoolRowError(StoreError):
    """A spooled line this release cannot read: where it is, and the offset after it."""

    def __init__(self, path: Path, line: int, end: int, raw: str, why: str) -> None:
        super().__init__(f"{path}:{line}: cannot read a spooled row ({why}); set aside: "
                         "written by another release, or damaged")
        self.path, self.line, self.end, self.raw = path, line, end, raw


@dataclass(slots=True, frozen=True)
class Mark:
    """Where a :meth:`Spool.peek` stopped: passed back to :meth:`Spool.advance`."""

    pos: int
    line: int
    #: Main-file rows read (lines written ahead, see ``write_ahead``, not counted), acts.
    rows: int
    acts: int
    alerts: int
    #: Offsets of the main-file rows read (for ``write_ahead``).
    offsets: tuple[int, ...] = ()
    #: No complete line follows in the main file (what is left is torn: never acked).
    at_end: bool = False
    #: Acts among the main-file rows read (``o`` lines an older release spooled there).
    old_acts: int = 0


def acts_path(path: Path) -> Path:
    return path.with_suffix(f".acts-v{ACTS_VERSION}.jsonl")


class Spool:
    """Owned by one task (the writer's flush loop); its methods block briefly on disk I/O."""

    def __init__(self, path: Path, *, deferred: bool = False) -> None:
        """Reads what the files hold. ``deferred`` (the writer's): only counts it, and
        :meth:`open` reads it again once it holds the lock, cutting a torn last line then
        (unlocked, it could be another process's line in the making)."""
        self.path = path
        self.acts_path = acts_path(path)
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock: int | None = None  # the lock file's descriptor while this one owns it
        self._deferred = deferred
        self._load(owned=not deferred)

    def _load(self, *, owned: bool = True) -> None:
        """Read the files. ``owned``: this one may change them (cut a torn last line) and
        says what it finds there."""
        self._read_pos = 0
        self._line = 1  # of the line at _read_pos
        #: Pending acts: [offset in the main file they follow, QueuedAct row], in order.
        self._acts: list[tuple[int, dict[str, Any]]] = []
        #: Offsets of main-file lines already written ahead of the rest (``write_ahead``).
        self._ahead: set[int] = set()
        self.pending = 0
        #: Alert transitions among the pending rows (not yet written).
        self.alerts_pending = 0
        #: Acts an older release spooled as ``o`` lines in the main file, pending.
        self._old_acts = 0
        #: Checksum of the main file's first line: which file an act's offset is in.
        self._head: int | None = None
        #: Lines of the acts file this release cannot read: (line, text, why), kept in the
        #: file until ``peek`` has raised them and the writer has set them aside (``skip``).
        self._bad_acts: list[tuple[int, str, str]] = []
        path = self.path
        if owned:
            # A torn last line (a write cut short: disk full, power cut) was never
            # acknowledged; left, the next append would join onto it: one unreadable line.
            _cut_torn_tail(path)
            _cut_torn_tail(self.acts_path)
        if path.exists():
            with path.open("rb") as fh:
                for line in fh:
                    if self._head is None:
                        self._head = zlib.crc32(line)
                    if line.strip():
                        self.pending += 1
                        self.alerts_pending += line.startswith(b'["a"')
                        self._old_acts += line.startswith(b'["o"')
        self._acts = self._load_acts()
        self.pending += len(self._acts) + len(self._bad_acts)
        for other in sorted(path.parent.glob(path.stem + ".acts-v*.jsonl")) if owned else ():
            if other != self.acts_path:
                log.error("store: %s holds operator acts spooled by another release; this "
                          "one does not read it (start that release to write them)", other)

    def open(self) -> None:
        """Own the spool, then read what an earlier run left in it: the lock first, so
        that nothing of a spool another process is writing is read, or cut as torn. Raises
        :class:`SpoolInUse` when another process (or store) holds it; nothing when this one
        does already."""
        if self._lock is not None:
            return
        self._lock = _take_lock(self.path, self.lock_path)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Give the spool up (its files stay for the next owner)."""
        fd, self._lock = self._lock, None
        if fd is None:
            return
        # Unlinked while still held: a process that opened this lock file before the unlink
        # finds it stale once it has the lock (see _take_lock) and takes the new one.
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        os.close(fd)  # releases the lock

    @property
    def acts_pending(self) -> int:
        return len(self._acts) + self._old_acts

    def _load_acts(self) -> list[tuple[int, dict[str, Any]]]:
        acts: list[tuple[int, dict[str, Any]]] = []
        try:
            with self.acts_path.open(encoding="utf-8") as fh:
                lines = fh.readlines()
        except FileNotFoundError:
            return acts
        except OSError as exc:
            raise StoreError(f"cannot read spool {self.acts_path}: {exc}") from exc
        for number, line in enumerate(lines, 1):
            if not line.endswith("\n"):
                break  # torn, and could not be cut (logged): never acknowledged
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                act = QueuedAct.from_row(raw["act"]).to_row()
                # Its offset is in a main file since removed (an older release wrote it,
                # then perhaps spooled rows of its own): its place is gone, it goes first.
                after = int(raw["after"]) if raw.get("head") == self._head else 0
                acts.append((after, act))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # An operator's act: never dropped. ``peek`` raises it, the writer keeps it.
                self._bad_acts.append((number, line.rstrip("\n"), str(exc)))
        return acts

    def append(self, items: list[Item]) -> None:
        if not items:
            return
        if self._deferred:
            self.open()  # a writer stopped without a start: never written unowned, unread
        head = self._head
        try:  # the sizes before the append (None: no file), known before any cut back
            main_size = self.path.stat().st_size if self.path.exists() else None
            acts_size = self.acts_path.stat().st_size if self.acts_path.exists() else None
        except OSError as exc:
            raise StoreError(f"cannot write spool {self.path}: {exc}") from exc
        try:
            size = main_size or 0
            lines: list[str] = []
            acts: list[tuple[int, dict[str, Any]]] = []
            alerts = 0
            for item in items:
                if item[0] == "o":
                    acts.append((size, item[1]))
                    continue
                line = json.dumps(item, separators=(",", ":")) + "\n"  # ASCII: len is bytes
                if self._head is None:
                    self._head = zlib.crc32(line.encode())
                lines.append(line)
                size += len(line)
                alerts += item[0] == "a"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            act_lines = [self._act_line(a) for a in acts]
            if acts:  # first: an operator's act is the one thing nothing else can redo
                _write_lines(self.acts_path, act_lines, "a")
            if lines:
                _write_lines(self.path, lines, "a")
        except Exception as exc:
            # Not appended (the caller keeps the rows): nothing of it may stay, a part line
            # would join onto the next append's first, a whole one be written twice; nor a
            # first line never written as the head the next acts name (any error: a row
            # json cannot encode too).
            self._head = head
            _cut_back(self.acts_path, acts_size)
            _cut_back(self.path, main_size)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write spool {self.path}: {exc}") from exc
            raise
        self._acts.extend(acts)
        self.pending += len(items)
        self.alerts_pending += alerts

    def peek(self, limit: int, *, only_marked: bool = False) -> tuple[list[Item], Mark]:
        """Up to ``limit`` items from the read position, in queue order, and where it
        stopped. ``only_marked``: alert transitions and acts only (with the ``o`` lines an
        older release spooled in the main file), for ``write_ahead`` (that mark is of no use
        to ``advance``); lines it cannot read are passed over, left to the catch-up."""
        if self._bad_acts and not only_marked:  # its place is not known: first
            number, raw, why = self._bad_acts[0]
            raise SpoolRowError(self.acts_path, number, 0, raw, why)
        items: list[Item] = []
        offsets: list[int] = []
        taken = alerts = rows = old_acts = 0
        acts = self._acts
        pos, number = self._read_pos, self._line
        at_end = False
        try:
            fh = self.path.open("rb") if self.path.exists() else None
            if fh is not None:
                fh.seek(pos)
            try:
                while len(items) < limit:
                    if taken < len(acts) and acts[taken][0] <= pos:
                        items.append(("o", acts[taken][1]))
                        taken += 1
                        continue
                    line = fh.readline() if fh is not None else b""
                    if not line.endswith(b"\n"):
                        at_end = True  # or a torn last line from a crash: never acknowledged
                        break
                    start, pos, number = pos, pos + len(line), number + 1
                    if start in self._ahead or not line.strip():
                        continue
                    if only_marked and not line.startswith((b'["a"', b'["o"')):
                        continue
                    try:
                        item = _decode(json.loads(line))
                    except (ValueError, TypeError, KeyError, IndexError) as exc:
                        if only_marked:
                            continue  # set aside by the catch-up, in its place
                        if items:  # the next peek starts with it
                            pos, number = start, number - 1
                            break
                        raise SpoolRowError(self.path, number - 1, pos,
                                            line.decode(errors="replace").strip(), str(exc)
                                            ) from exc
                    items.append(item)
                    offsets.append(start)
                    rows += 1
                    alerts += item[0] == "a"
                    old_acts += item[0] == "o"
            finally:
                if fh is not None:
                    fh.close()
        except OSError as exc:
            raise StoreError(f"cannot read spool {self.path}: {exc}") from exc
        # The main file is read to its end: the acts after its last row follow.
        while at_end and taken < len(acts) and len(items) < limit:
            items.append(("o", acts[taken][1]))
            taken += 1
        return items, Mark(pos, number, rows, taken, alerts, tuple(offsets), at_end, old_acts)

    def write_ahead(self, mark: Mark) -> None:
        """What ``peek(only_marked=True)`` gave is written: its main-file lines are skipped
        when catch-up reaches them, its acts leave the spool."""
        self._ahead.update(mark.offsets)
        self.pending -= mark.rows + mark.acts
        self.alerts_pending -= mark.alerts
        self._old_acts -= mark.old_acts
        try:
            self._drop_acts(mark.acts)
            if self.pending <= 0:  # nothing but positions written ahead: done
                self._remove_main()
        except OSError as exc:
            raise StoreError(f"cannot truncate spool {self.path}: {exc}") from exc

    def skip(self, error: SpoolRowError) -> None:
        """Step over a line ``peek`` could not read (the writer has set it aside)."""
        if error.path == self.acts_path:
            del self._bad_acts[0]
            self.pending = max(0, self.pending - 1)
            try:
                self._rewrite_acts()
                if self.pending - len(self._acts) - len(self._bad_acts) <= 0:
                    self._remove_main()  # its rows are written (ahead), or it has none
            except OSError as exc:
                raise StoreError(f"cannot rewrite spool {self.acts_path}: {exc}") from exc
            return
        self.advance(Mark(error.end, error.line + 1, 1, 0, int(error.raw.startswith('["a"')),
                          old_acts=int(error.raw.startswith('["o"'))))

    def advance(self, mark: Mark) -> None:
        """Mark items up to ``mark`` as written; remove the files when all are."""
        self._read_pos, self._line = mark.pos, mark.line
        self.pending = max(0, self.pending - mark.rows - mark.acts)
        self.alerts_pending = max(0, self.alerts_pending - mark.alerts)
        self._old_acts = max(0, self._old_acts - mark.old_acts)
        try:
            if mark.acts:
                self._drop_acts(mark.acts)
            # What is left past the last row counted is torn, or written ahead.
            if (mark.at_end or self.pending - len(self._acts) - len(self._bad_acts) <= 0
                    or not self.path.exists() or self._read_pos >= self.path.stat().st_size):
                self._remove_main()
        except OSError as exc:
            raise StoreError(f"cannot truncate spool {self.path}: {exc}") from exc

    def _remove_main(self) -> None:
        self.path.unlink(missing_ok=True)
        self._read_pos, self._line, self._head = 0, 1, None
        self._ahead.clear()
        self.alerts_pending = self._old_acts = 0
        if self._acts and any(after for after, _act in self._acts):
            self._acts = [(0, act) for _after, act in self._acts]  # before any new rows
            self._rewrite_acts()
        self.pending = len(self._acts) + len(self._bad_acts)

    def _drop_acts(self, count: int) -> None:
        if count:
            del self._acts[:count]
            self._rewrite_acts()

    def _rewrite_acts(self) -> None:
        if not self._acts and not self._bad_acts:
            self.acts_path.unlink(missing_ok=True)
            return
        tmp = self.acts_path.with_name(self.acts_path.name + ".tmp")
        _write_lines(tmp, [raw + "\n" for _n, raw, _why in self._bad_acts]
                     + [self._act_line(a) for a in self._acts], "w")
        os.replace(tmp, self.acts_path)

    def _act_line(self, act: tuple[int, dict[str, Any]]) -> str:
        return json.dumps({"after": act[0], "head": self._head, "act": act[1]},
                          separators=(",", ":")) + "\n"


def _take_lock(path: Path, lock_path: Path) -> int:
    """An exclusive lock on ``lock_path`` (for the spool ``path``): its descriptor. flock
    locks belong to the open file: the kernel drops them when the process dies (a kill -9
    leaves no stale lock), and two opens in one process exclude each other too."""
    while True:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise StoreError(f"cannot lock spool {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise SpoolInUse(
                f"spool {path} is in use by another harbourwatch process{holder}, which "
                f"holds {lock_path}: two runs sharing a spool write each other's rows into "
                "their own databases; stop that one, or give this run a store.spool_dir of "
                "its own") from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock spool {path} ({lock_path}): {exc}") from exc
        try:
            held, there = os.fstat(fd), os.stat(lock_path)
            same = (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)
        except FileNotFoundError:
            same = False
        if not same:  # its owner unlinked it as it let go: a new one may be held by now
            os.close(fd)
            continue
        with contextlib.suppress(OSError):  # who holds it, for the message above
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return fd


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(os.pread(fd, 32, 0))})"
    return ""


def _write_lines(path: Path, lines: Any, mode: str) -> None:
    with path.open(mode, encoding="utf-8") as fh:
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())


def _cut_torn_tail(path: Path) -> None:
    """Cut a last line that does not end in a newline (a write cut short) off ``path``."""
    try:
        with path.open("rb+") as fh:
            end = fh.seek(0, os.SEEK_END)
            if not end:
                return
            fh.seek(end - 1)
            if fh.read(1) == b"\n":
                return
            keep = end
            while keep > 0:  # back to the last newline, a block at a time
                start = max(0, keep - 65536)
                fh.seek(start)
                found = fh.read(keep - start).rfind(b"\n")
                if found >= 0:
                    keep = start + found + 1
                    break
                keep = start
            fh.seek(keep)
            torn = fh.read(200)
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    except FileNotFoundError:
        return
    except OSError as exc:
        log.error("store: cannot cut the torn last line off %s (%s); it is skipped", path, exc)
        return
    log.warning("store: %s: cut %d bytes of a last line a write left unfinished (never "
                "acknowledged): %r", path, end - keep, torn)


def _cut_back(path: Path, size: int | None) -> None:
    """Undo an append that failed: ``path`` back to ``size`` bytes (None: it was not there)."""
    try:
        if size is None:
            path.unlink(missing_ok=True)
        elif path.exists() and path.stat().st_size > size:
            os.truncate(path, size)
    except OSError as exc:
        log.error("store: cannot cut %s back to %s bytes after a failed append (%s); a torn "
                  "line is cut at the next start", path, size, exc)


def _decode(raw: Any) -> Item:
    """One spooled row; ValueError (or TypeError, KeyError) for one this release cannot
    read, never a row of the wrong kind."""
    if not isinstance(raw, list) or len(raw) != 2:
        raise ValueError("not a [kind, row] pair")
    kind, row = raw
    if kind == "p":
        # Spooled before positions had ``suspect``: not marked.
        if not isinstance(row, list) or len(row) not in (11, 12):
            raise ValueError("not a position row")
        return (kind, tuple(row) if len(row) == 12 else (*row, False))
    if kind == "s":
        return (kind, (int(row[0]), float(row[1]), dict(row[2])))
    if kind == "a":
        return (kind, (str(row[0]), float(row[1]), dict(row[2])))
    if kind == "o":  # acts were spooled here before they had a file of their own
        if not isinstance(row, dict):  # else AttributeError, which no reader expects
            raise ValueError("not an act row")
        return (kind, QueuedAct.from_row(row).to_row())
    raise ValueError(f"unknown row kind {kind!r}")
