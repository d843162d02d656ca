"""Sub-commands beyond ``decode``: run, replay, check-config, scenario, score."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harbourwatch.config import ConfigError
from harbourwatch.options import ServiceOptions, add_service_flags, resolve_config

if TYPE_CHECKING:
    from geofence.zones import ZoneSet
    from harbourwatch.config import RulesConfig


def add_commands(commands: Any) -> None:
    """Register the other sub-commands on the ``argparse`` sub-parser action."""
    run = commands.add_parser("run", help="the live service")
    add_service_flags(run, live=True)
    run.add_argument("--drill", action="store_true",
                     help="mark everything as a drill (MQTT under <prefix>/drill/...)")
    run.set_defaults(handler=_run)

    replay = commands.add_parser("replay", help="play recorded AIS logs on message time")
    replay.add_argument("logs", nargs="+", metavar="LOG",
                        help="recorded logs (plain or gzip; several are merged in time order)")
    add_service_flags(replay, live=False)
    replay.add_argument("--speed", default="max", metavar="N|max",
                        help="1 real time, 60 an hour a minute, max as fast as possible "
                             "(deterministic; default)")
    replay.add_argument("--start", metavar="TIME",
                        help="skip ahead to this message time (ISO 8601, or Unix seconds or "
                             "milliseconds), resuming the replay (or with --drill, the "
                             "drill) state saved by then; a stop says where to resume")
    replay.add_argument("--drill", action="store_true",
                        help="mark the run as a drill end to end (alerts, API, store, MQTT)")
    replay.add_argument("--nominal-rate", type=float, default=10.0, metavar="LINES_PER_S",
                        help="how fast to play a log that has no timestamps at all (default 10)")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay.set_defaults(handler=_replay)

    scenario = commands.add_parser(
        "scenario", help="write synthetic port traffic with injected anomalies and ground truth")
    scenario.add_argument("--config", type=Path, metavar="PORT.yaml",
                          help="the config the drill will be replayed with: its rules "
                               "(thresholds, allowed vessels, watch area, rules switched off) "
                               "shape the anomalies and the truth, and its zones are the port")
    scenario.add_argument("--zones", type=Path, metavar="ZONES.geojson",
                          help="the port to simulate, instead of the config's zones (anomalies "
                               "its zones cannot host, e.g. speeding without a channel, are "
                               "skipped and listed)")
    scenario.add_argument("--out", type=Path, required=True, metavar="LOG",
                          help="the NMEA log to write (tag blocks with time and receiver)")
    scenario.add_argument("--truth", type=Path, required=True, metavar="TRUTH.json",
                          help="the anomalies injected and the controls, with time windows")
    scenario.add_argument("--seed", type=int, default=1,
                          help="same seed, same files (default 1)")
    scenario.add_argument("--hours", type=float, default=2.0,
                          help="length in hours, at most 48 (default 2)")
    scenario.add_argument("--start", metavar="TIME",
                          help="message time of the first report (ISO 8601, or Unix seconds or "
                               "milliseconds; default: a minute of 2026 chosen by the seed)")
    scenario.set_defaults(handler=_scenario)

    score = commands.add_parser(
        "score", help="score a replay's alerts against a scenario's ground truth")
    score.add_argument("truth", type=Path, metavar="TRUTH.json",
                       help="the truth file `scenario` wrote")
    score.add_argument("alerts", type=Path, metavar="ALERTS.jsonl",
                       help="the --alerts-out file of the replay of its log")
    score.set_defaults(handler=_score)

    debrief = commands.add_parser(
        "debrief", help="a drill's debrief: each alert's time to acknowledge and resolve, "
                        "on message time")
    debrief.add_argument("alerts", type=Path, metavar="ALERTS.jsonl",
                         help="the --alerts-out file of a --drill run")
    debrief.add_argument("--severity", metavar="LIST",
                         help="only alerts of these severities, comma-separated "
                              "(info,warning,critical; default: every alert)")
    debrief.set_defaults(handler=_debrief)

    check = commands.add_parser("check-config", help="validate a config and its zones")
    check.add_argument("config", nargs="?", type=Path, metavar="PORT.yaml",
                       help="the config file (its zones, sources' files, MQTT TLS files and "
                            "the API tokens of the environment are checked too)")
    check.add_argument("--zones", type=Path, metavar="ZONES.geojson",
                       help="a zones file, checked instead of the config's (as run and "
                            "replay would take it)")
    check.set_defaults(handler=_check_config)


def _private_files() -> None:
    """What a run writes (tracks, operator notes, alerts, the spool) is no other local
    user's to read: the umask loses every bit for others and group write."""
    os.umask(os.umask(0) | 0o027)


def _fail(errors: list[str]) -> int:
    for line in errors:
        print(f"harbourwatch: {line}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    from harbourwatch.service import run_service
    from ingest.sources.base import SourceReadError

    options = ServiceOptions.from_args(args)
    _private_files()
    try:
        config = resolve_config(options)
        return asyncio.run(run_service(config, options))
    except ConfigError as exc:
        return _fail(exc.errors)
    except SourceReadError as exc:  # a file source that broke off: a runtime failure
        print(f"harbourwatch: run stopped: {exc}", file=sys.stderr)
        return 1
    except _startup_errors() as exc:
        return _fail(_messages(exc))


def _replay(args: argparse.Namespace) -> int:
    from harbourwatch.service import ReplayPlan, run_service
    from harbourwatch.timeutil import parse_message_time
    from ingest.logfile import missing_logs
    from ingest.sources.base import SourceError
    from replay.decoding import DecodingFailed
    from replay.pacing import parse_speed

    options = ServiceOptions.from_args(args)
    try:
        speed = parse_speed(args.speed)
        start = None if args.start is None else parse_message_time(args.start)
    except ValueError as exc:
        return _fail([str(exc) if args.start is None else f"--start {args.start!r}: {exc}"])
    if not args.nominal_rate > 0:
        return _fail(["--nominal-rate must be greater than 0"])
    missing = missing_logs(args.logs)
    if missing:
        return _fail([f"{p}: no such file" for p in missing])
    plan = ReplayPlan(list(args.logs), speed, start, args.nominal_rate,
                      progress=False if args.no_progress else None)
    _private_files()
    try:
        config = resolve_config(options)
        return asyncio.run(run_service(config, options, replay=plan))
    except ConfigError as exc:
        return _fail(exc.errors)
    except (SourceError, DecodingFailed) as exc:
        # A log that breaks off (or the decoding process killed): what came before it was
        # played and stored.
        print(f"harbourwatch: replay stopped: {exc}", file=sys.stderr)
        return 1
    except _startup_errors() as exc:
        return _fail(_messages(exc))


def _scenario(args: argparse.Namespace) -> int:
    from geofence.zones import ZoneError
    from harbourwatch.timeutil import parse_message_time
    from replay.scenario import MAX_HOURS, LayoutError, generate_scenario

    if args.config is None and args.zones is None:
        return _fail(["give --config PORT.yaml, --zones ZONES.geojson, or both"])
    if not 0 < args.hours <= MAX_HOURS:  # NaN too
        return _fail([f"--hours {args.hours:g}: must be more than 0 and at most "
                      f"{MAX_HOURS:g}"])
    if _same_file(args.out, args.truth):
        return _fail([f"--out and --truth name the same file ({args.out}): the truth would "
                      "overwrite the log"])
    try:
        start = None if args.start is None else parse_message_time(args.start)
    except ValueError as exc:
        return _fail([f"--start {args.start!r}: {exc}"])
    try:
        zones, rules = _scenario_port(args.config, args.zones)
        summary = generate_scenario(zones, seed=args.seed, hours=args.hours, out=args.out,
                                    truth=args.truth, start=start, config=rules)
    except ConfigError as exc:
        return _fail(exc.errors)
    except (ZoneError, LayoutError) as exc:
        return _fail(_messages(exc))
    except OSError as exc:
        return _fail([str(exc)])
    print(f"{summary.lines} lines, {summary.vessels} vessels, anomalies {summary.anomalies}, "
          f"controls {summary.controls} -> {summary.out}, {summary.truth}")
    for rule, why in summary.skipped.items():
        print(f"skipped {rule}: {why}")
    return 0


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (the same path, or links to one file)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:  # one of them is not there yet
        return False


def _scenario_port(config_path: Path | None, zones_path: Path | None,
                   ) -> tuple[ZoneSet | Path, RulesConfig | None]:
    """The zones and rules a scenario is generated for: the config's (its zones unless
    ``--zones`` names others, as ``replay`` takes them), or ``--zones`` with the defaults."""
    from geofence.zones import ZoneSet
    from harbourwatch.config import load_config, zones_file

    if config_path is None:
        assert zones_path is not None
        return zones_path, None
    config = load_config(config_path)
    path = zones_path or zones_file(config)
    if path is None:
        raise ConfigError([f"{config_path}: port.zones: no zones file; give --zones"])
    return ZoneSet.from_geojson(path, projection=config.port.projection), config.rules


def _score(args: argparse.Namespace) -> int:
    """Every anomaly found in its window and no control alerted: exit 0; else 1. Alerts of
    the judged rules that the truth does not explain are listed as unexpected, for review."""
    from harbourwatch.timeutil import parse_iso
    from replay.scenario.scorefiles import ScoreInputError, load_alerts, load_truth
    from replay.scenario.truth import check

    try:
        truth = load_truth(args.truth)
        alerts = load_alerts(args.alerts)
    except ScoreInputError as exc:
        return _fail(exc.errors)
    if not alerts:
        print(f"harbourwatch: warning: {args.alerts}: no alerts at all (the --alerts-out "
              "file of the replay of this scenario's log?)", file=sys.stderr)
    elif not any(truth.start - 60.0 <= parse_iso(a["started_at"]) <= truth.end + 3600.0
                 for a in alerts):
        print(f"harbourwatch: warning: {args.alerts}: no alert started within the scenario's "
              "time (the alerts of another run?)", file=sys.stderr)
    not_drill = sum(1 for alert in alerts if alert.get("drill") is not True)
    if not_drill:
        print(f"harbourwatch: warning: {args.alerts}: {not_drill} of {len(alerts)} alert lines "
              "are not marked drill: true (not the alerts of a --drill replay?)",
              file=sys.stderr)
    verdict = check(truth, alerts)
    for missed in verdict.missed:
        print(f"missed: {_expected(missed.to_dict())}")
    for control, alert in verdict.false_alarms:
        print(f"false alarm: {_expected(control.to_dict())}: alert {alert.get('id')} "
              f"started {alert.get('started_at')}")
    for alert in verdict.unexpected:
        other = f" and {alert['other_mmsi']}" if alert.get("other_mmsi") else ""
        who = alert.get("mmsi") or alert.get("details", {}).get("receiver")
        print(f"unexpected: {alert['rule']} {who}{other}: alert {alert.get('id')} started "
              f"{alert.get('started_at')} (no anomaly planted; review it)")
    found = len(truth.anomalies) - len(verdict.missed)
    print(f"{found} of {len(truth.anomalies)} anomalies detected in their windows; "
          f"{len(verdict.false_alarms)} false alarms on {len(truth.controls)} controls; "
          f"{len(verdict.unexpected)} unexpected alerts (listed, not failing)"
          + "".join(f"; skipped {rule}: {why}" for rule, why in truth.skipped.items()))
    return 0 if verdict.ok else 1


def _debrief(args: argparse.Namespace) -> int:
    """One line per alert of the drill with its ack and resolve and how long each took on
    the drill's message clock, then the totals; exit 0, or 2 for a file it cannot read."""
    from replay.debrief import DebriefInputError, answers, load, report

    wanted: set[str] | None = None
    if args.severity is not None:
        wanted = {s.strip() for s in args.severity.split(",") if s.strip()}
        unknown = sorted(wanted - {"info", "warning", "critical"})
        if unknown or not wanted:
            return _fail([f"--severity: unknown severity {', '.join(unknown) or '(none)'}; "
                          "give info, warning or critical, comma-separated"])
    try:
        found = load(args.alerts)
    except DebriefInputError as exc:
        return _fail(exc.errors)
    if not found.acts:
        print(f"harbourwatch: warning: {args.alerts}: no operator acts (only a --drill run "
              "writes them to its --alerts-out file)", file=sys.stderr)
    alerts = [a for a in answers(found.transitions, found.acts)
              if wanted is None or a.severity in wanted]
    for line in report(alerts):
        print(line)
    return 0


def _expected(item: dict[str, Any]) -> str:
    who = item.get("receiver") or item.get("mmsi")
    other = f" and {item['other_mmsi']}" if item.get("other_mmsi") else ""
    window = f" in {' to '.join(item['window'])}" if item.get("window") else ""
    return f"{item['rule']} {who}{other}{window} ({item['note']})"


def _check_config(args: argparse.Namespace) -> int:
    from harbourwatch.config import check_config

    if args.config is None and args.zones is None:
        return _fail(["give a config file, --zones, or both"])
    errors = check_config(args.config, args.zones)
    if errors:
        return _fail(errors)
    print("ok")
    return 0


def _startup_errors() -> tuple[type[BaseException], ...]:
    """What stops a run before or as it starts, with a message for the user (exit 2)."""
    from api.mqtt import MqttConfigError
    from api.server import ApiAddressError
    from geofence.zones import ZoneError
    from harbourwatch.alerts_file import AlertsFileError
    from ingest.sources.base import SourceError
    from store import StoreError

    return (ZoneError, StoreError, SourceError, MqttConfigError, AlertsFileError,
            ApiAddressError)


def _messages(exc: BaseException) -> list[str]:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return [str(e) for e in errors]
    return [str(exc)]
