"""Decoded messages per second: harbourwatch's ingest path against bare pyais, same run.

    python bench/ingest.py [--corpus FILE ...] [--repeat N] [--overlap 0.4] [--profile]

For each corpus (lines read into memory first, so no I/O is timed):

- *one receiver*: every line goes through ``Ingestor.feed`` (framing, checksum, tag block,
  time, assembly with TTL, de-duplication, decoding, report building, counters), then
  ``flush()``; against ``pyais.stream.IterMessages(lines)`` with ``.decode()`` on every
  message it yields (pyais's idiomatic path: it assembles multipart messages and decodes them
  into message objects, without verifying checksums).
- *two receivers*: a second receiver hears a share (``--overlap``, default 40 %) of the
  messages too; each copy is the whole message (its fragments and the ``$PGHP``/tag-block lines
  before it) and arrives a few messages after the original, as from an overlapping receiver.
  harbourwatch decodes each message once and counts the copy as a duplicate; pyais has no
  de-duplication and decodes every copy.

Both sides are credited with the *distinct* messages of the input (the reports harbourwatch
delivers): pyais's decodes of a copy, or of a message a national feed relays from several
base stations, deliver nothing new. The ratio is therefore also the ratio of times for the
same input. The counts printed let anyone check the credit: pyais's decodes = distinct +
repeats, and the repeats match the duplicates harbourwatch dropped.

Figures are the best of ``--repeat`` runs (least disturbed by other load); the ratio is
harbourwatch msg/s divided by pyais msg/s. Targets: >= 0.8 with one receiver, >= 1.2 with two.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))

from pyais_baseline import best_of as best_of_runs  # noqa: E402
from pyais_baseline import run_pyais  # noqa: E402

from ingest.ingestor import Ingestor  # noqa: E402
from ingest.logfile import read_log_lines  # noqa: E402

DEFAULT_CORPORA = (
    ROOT / "fixtures" / "aisabnormal" / "ais-sample.txt.gz",
    ROOT / "fixtures" / "demo-port" / "ais-gladstone-2012-01-27.txt.gz",
)
_FRAGMENT = re.compile(rb"![A-Z=-]{2}VD[MO],(\d),(\d),")

Item = tuple[str, bytes]


@dataclass
class Result:
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def units(lines: Sequence[bytes]) -> list[list[bytes]]:
    """Split a log into messages: each its fragments plus the meta lines before them."""
    out: list[list[bytes]] = []
    current: list[bytes] = []
    for line in lines:
        current.append(line)
        match = _FRAGMENT.search(line)
        if match is None:
            if line[:1] == b"!":  # a broken sentence: a unit of its own
                out.append(current)
                current = []
            continue
        if match.group(1) == match.group(2):  # single part, or the last fragment
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def two_receivers(lines: Sequence[bytes], overlap: float, delay: int = 3,
                  seed: int = 1) -> tuple[list[Item], int]:
    """The log as heard by rx1, plus copies of ``overlap`` of its messages from rx2.

    Returns the items and the number of copied messages (units).
    """
    rng = random.Random(seed)
    items: list[Item] = []
    pending: list[tuple[int, list[bytes]]] = []
    copies = 0
    for index, unit in enumerate(units(lines)):
        items.extend(("rx1", line) for line in unit)
        while pending and pending[0][0] <= index:
            items.extend(("rx2", line) for line in pending.pop(0)[1])
        if rng.random() < overlap:
            pending.append((index + delay, unit))
            copies += 1
    for _, unit in pending:
        items.extend(("rx2", line) for line in unit)
    return items, copies


def run_harbourwatch(items: Sequence[Item]) -> int:
    ingestor = Ingestor()
    feed = ingestor.feed
    count = 0
    for source, line in items:
        count += len(feed(source, line, None))
    count += len(ingestor.flush())
    return count


def duplicates(items: Sequence[Item]) -> int:
    """Messages harbourwatch recognised as already heard (untimed: counted once)."""
    ingestor = Ingestor()
    for source, line in items:
        ingestor.feed(source, line, None)
    ingestor.flush()
    return sum(state.health.duplicates for state in ingestor.sources.values())


def best_of(repeat: int, job: Callable[[], int]) -> Result:
    return Result(*best_of_runs(repeat, job))


def compare(label: str, items: Sequence[Item], lines: Sequence[bytes], repeat: int) -> float:
    ours = best_of(repeat, lambda: run_harbourwatch(items))
    theirs = best_of(repeat, lambda: run_pyais(lines))
    # Both deliver the same distinct messages; pyais's decodes of repeats add none.
    distinct = Result(ours.messages, theirs.seconds)
    ratio = ours.rate / distinct.rate if distinct.rate else float("inf")
    print(f"  {label}: {len(lines):,} lines")
    print(f"    harbourwatch  {ours.messages:>8,} msgs  {ours.seconds:7.3f} s  "
          f"{ours.rate:>10,.0f} msg/s ({duplicates(items):,} duplicates dropped)")
    print(f"    pyais         {distinct.messages:>8,} msgs  {distinct.seconds:7.3f} s  "
          f"{distinct.rate:>10,.0f} msg/s ({theirs.messages:,} decoded, "
          f"{theirs.messages - ours.messages:,} of them repeats)")
    print(f"    ratio         {ratio:.2f}x")
    return ratio


def profile(items: Sequence[Item], top: int = 25) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(run_harbourwatch, items)
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", action="append", type=Path,
                        help="log file (plain or gzip); repeatable; default: the bundled ones")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure, best kept")
    parser.add_argument("--overlap", type=float, default=0.4,
                        help="share of messages the second receiver also hears")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of the harbourwatch path (two receivers)")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, best of {args.repeat}")
    targets_met = True
    for path in args.corpus or DEFAULT_CORPORA:
        lines = list(read_log_lines(str(path)))
        print(f"{path.name}")
        one = compare("one receiver", [("rx1", line) for line in lines], lines, args.repeat)
        items, copies = two_receivers(lines, args.overlap)
        both = [line for _, line in items]
        print(f"  (second receiver: {copies:,} messages copied, "
              f"{len(items) - len(lines):,} extra lines)")
        two = compare("two receivers", items, both, args.repeat)
        targets_met &= one >= 0.8 and two >= 1.2
        if args.profile:
            profile(items)
    print("targets (>= 0.8x one, >= 1.2x two):", "met" if targets_met else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
