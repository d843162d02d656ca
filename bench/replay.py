"""End-to-end replay at ``--speed max`` against bare pyais decoding, same run.

    python bench/replay.py [--corpus FILE[=ZONES] ...] [--repeat N] [--profile]

*harbourwatch* is the production replay: ``replay.player.play`` drives a ``Pipeline`` built
as ``harbourwatch.service`` builds it (``load_zones``, ``Engine(config.rules, zones)``, an
``Ingestor`` with the config's ingest settings, the SQLite store from ``make_store`` →
``store.open_store("sqlite:///…")``). The clock runs from the first line to the end of
``store.stop()``, so the store's final flush of positions, statics and alerts is timed; the
store's start (schema migration of a fresh file) is not. Every run gets a new database.
As in the service, the lines are decoded by a second process (``replay.decoding``), forked
before the store starts; the fork is timed, and the CPU time of both processes is printed.
*one process* is the same replay decoding in-process (the profile with ``--profile``).

*pyais* is ``pyais.stream.IterMessages`` over the same lines, ``.decode()`` on each message.

``play`` reads its log from a path, so each corpus is decompressed once to a plain file in a
temporary directory before any timing; reading that file (page cache) is part of the
harbourwatch time, while pyais gets the lines already in memory. The read cost is printed too.

Figures are the best of ``--repeat`` runs, the sides taking turns. Both sides are credited
with the distinct messages of the log (the reports harbourwatch delivers): pyais's decodes of
a message a national feed relays from several base stations deliver nothing new, so the
ratio of messages/s is also the ratio of times for the same input. Target (issue 8): >= 0.5x.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import pstats
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))

from pyais_baseline import best_of as best_of_runs  # noqa: E402
from pyais_baseline import run_pyais  # noqa: E402

from geofence.engine import Engine  # noqa: E402
from harbourwatch.config import Config, PortConfig, load_config  # noqa: E402
from harbourwatch.gctune import tune_gc  # noqa: E402
from harbourwatch.pipeline import Pipeline  # noqa: E402
from harbourwatch.service import load_zones, make_store  # noqa: E402
from ingest.ingestor import Ingestor  # noqa: E402
from ingest.logfile import read_log_lines  # noqa: E402
from replay.decoding import DecodingProcess  # noqa: E402
from replay.player import play  # noqa: E402

DEMO = ROOT / "fixtures" / "demo-port"
#: (log, config or None): the Gladstone recording with the demo port's zones and config;
#: the Danish sample has no port drawn for it, so it runs with defaults and no zones
#: (zone-free rules only).
DEFAULT_CORPORA: tuple[tuple[Path, Path | None], ...] = (
    (DEMO / "ais-gladstone-2012-01-27.txt.gz", DEMO / "port.yaml"),
    (ROOT / "fixtures" / "aisabnormal" / "ais-sample.txt.gz", None),
)
NOMINAL_RATE = 10.0  # the CLI's default --nominal-rate (only used by untimed logs)


@dataclass
class Result:
    messages: int
    seconds: float
    alerts: int = 0
    cpu: float = 0.0  # this process
    child_cpu: float = 0.0  # the decoding process

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def make_config(config_path: Path | None, db_path: Path) -> tuple[Config, Path]:
    """The service's config for one run: no API or MQTT, a fresh SQLite file."""
    if config_path is not None:
        config = load_config(config_path)
        config_dir = config_path.resolve().parent
    else:
        config = Config(port=PortConfig(name="bench"))
        config_dir = db_path.parent
    config.api.enabled = False
    config.mqtt.url = None
    config.store.url = f"sqlite:///{db_path}"  # type: ignore[assignment]  # SecretStr
    return config, config_dir


async def run_harbourwatch(log: Path, config_path: Path | None, db_path: Path, *,
                           in_child: bool = True) -> Result:
    config, config_dir = make_config(config_path, db_path)
    engine = Engine(config.rules, load_zones(config))
    ingestor = Ingestor(fragment_ttl_s=config.ingest.fragment_ttl_s,
                        max_pending_groups=config.ingest.max_pending_groups,
                        dedup_window_s=config.ingest.dedup_window_s,
                        nominal_rate=NOMINAL_RATE)
    forking = time.perf_counter()
    decoder = DecodingProcess.start([str(log)], ingestor) if in_child else None
    forking = time.perf_counter() - forking
    assert (decoder is not None) == in_child, "another thread runs: cannot fork"
    store = make_store(config, config_dir, drill=False, replay=True)
    await store.start()
    pipeline = Pipeline(ingestor, engine, [store], live=False)
    tune_gc()  # as the service does after start-up
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time()
    start = time.perf_counter()
    try:
        result = await play([str(log)], pipeline, speed=None, decoder=decoder)
    finally:
        await store.stop()  # flushes every buffered row: part of the timed work
        if decoder is not None:
            decoder.close()  # waits for the child
    seconds = time.perf_counter() - start + forking
    cpu = time.process_time() - cpu
    child_cpu = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - _cpu(children)
    gc.unfreeze()
    return Result(result.reports, seconds, pipeline.alert_events, cpu, child_cpu)


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def faster(best: Result | None, result: Result) -> Result:
    return result if best is None or result.seconds < best.seconds else best


def read_seconds(log: Path) -> float:
    start = time.perf_counter()
    for _ in read_log_lines(str(log)):
        pass
    return time.perf_counter() - start


def compare(log: Path, config: Path | None, repeat: int, tmp: Path, profile: bool) -> float:
    lines = list(read_log_lines(str(log)))
    plain = tmp / log.name.removesuffix(".gz")
    plain.write_bytes(b"".join(line if line.endswith(b"\n") else line + b"\n"
                               for line in lines))
    ours = alone = theirs = None
    # The sides take turns, so a machine whose speed drifts slows each of them alike.
    for index in range(repeat):
        ours = faster(ours, asyncio.run(run_harbourwatch(plain, config, tmp / f"{index}.db")))
        alone = faster(alone, asyncio.run(run_harbourwatch(
            plain, config, tmp / f"{index}-alone.db", in_child=False)))
        theirs = faster(theirs, Result(*best_of_runs(1, lambda: run_pyais(lines))))
    assert ours is not None and alone is not None and theirs is not None
    reading = min(read_seconds(plain) for _ in range(3))
    # Both deliver the same distinct messages; pyais's decodes of a message relayed by
    # several base stations add none (as in bench/ingest.py).
    distinct = Result(ours.messages, theirs.seconds)
    ratio = ours.rate / distinct.rate if distinct.rate else float("inf")
    zones = f"zones and config of {config.parent.name}/{config.name}" if config else "no zones"
    print(f"{log.name}: {len(lines):,} lines, {zones}")
    print(f"  harbourwatch  {ours.messages:>8,} msgs  {ours.seconds:7.3f} s  "
          f"{ours.rate:>10,.0f} msg/s   ({ours.alerts:,} alert transitions; "
          f"{reading:.3f} s of it reading the file; CPU {ours.cpu:.3f} s + "
          f"{ours.child_cpu:.3f} s decoding process)")
    print(f"  one process   {alone.messages:>8,} msgs  {alone.seconds:7.3f} s  "
          f"{alone.rate:>10,.0f} msg/s   (decoding in-process, as paced replays do)")
    print(f"  pyais         {distinct.messages:>8,} msgs  {distinct.seconds:7.3f} s  "
          f"{distinct.rate:>10,.0f} msg/s   ({theirs.messages:,} decoded, "
          f"{theirs.messages - ours.messages:,} of them repeats)")
    print(f"  ratio         {ratio:.2f}x   (one process: {alone.rate / distinct.rate:.2f}x)")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(run_harbourwatch(plain, config, tmp / "profile.db", in_child=False))
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return ratio


def parse_corpus(text: str) -> tuple[Path, Path | None]:
    log, _, config = text.partition("=")
    return Path(log), Path(config) if config else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", action="append", type=parse_corpus, metavar="LOG[=PORT.yaml]",
                        help="log file (plain or gzip), optionally with a config; repeatable; "
                             "default: the bundled ones")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure, best kept")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one one-process run per corpus")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the store's start-up notes are not figures
    print(f"python {sys.version.split()[0]}, best of {args.repeat}")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-replay-") as name:
        for log, config in args.corpus or DEFAULT_CORPORA:
            ratio = compare(log, config, args.repeat, Path(name), args.profile)
            verdicts.append(f"{'met' if ratio >= 0.5 else 'NOT met'} on {log.name}")
    print("target (>= 0.5x msg/s):", "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
