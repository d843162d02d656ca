"""Command-line flags of ``run`` and ``replay`` applied over the config file.

The config file is optional when the essentials come as flags (DESIGN "Command line"):
``--zones`` alone starts a port with default thresholds. Flags override the file.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harbourwatch.config import Config, ConfigError, load_config
from ingest.sources.base import SourceBase

#: ``--serve off`` / ``--mqtt off``: not the API or broker the config names.
OFF = "off"


@dataclass(slots=True)
class ServiceOptions:
    config: Path | None = None
    zones: Path | None = None
    db: str | None = None
    mqtt: str | None = None
    mqtt_prefix: str | None = None
    serve: str | None = None
    alerts_out: Path | None = None
    udp: list[str] = field(default_factory=list)
    tcp: list[str] = field(default_factory=list)
    serial: list[str] = field(default_factory=list)
    drill: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServiceOptions:
        return cls(
            config=args.config, zones=args.zones, db=args.db, mqtt=args.mqtt,
            mqtt_prefix=args.mqtt_prefix, serve=args.serve, alerts_out=args.alerts_out,
            udp=list(getattr(args, "udp", None) or []),
            tcp=list(getattr(args, "tcp", None) or []),
            serial=list(getattr(args, "serial", None) or []),
            drill=bool(getattr(args, "drill", False)),
        )


def add_service_flags(parser: argparse.ArgumentParser, *, live: bool) -> None:
    parser.add_argument("--config", type=Path, metavar="PORT.yaml",
                        help="config file (optional when --zones is given)")
    parser.add_argument("--zones", type=Path, metavar="ZONES.geojson",
                        help="zones GeoJSON (overrides the config's)")
    parser.add_argument("--db", metavar="URL",
                        help="sqlite:///path.db or postgresql://… (default: SQLite file next "
                             "to the config, or in the working directory)")
    parser.add_argument("--mqtt", metavar="mqtt://HOST:PORT",
                        help="publish to this broker ('off': not to the config's; a drill "
                             "beside the live service with the port's own config)")
    parser.add_argument("--mqtt-prefix", metavar="PREFIX",
                        help="topic prefix (default harbourwatch/<port>)" if live else
                        "topic prefix; without it a replay publishes under the config's "
                        "prefix + /replay, never on the live service's topics (a drill "
                        "always under <prefix>/drill)")
    parser.add_argument("--serve", metavar="HOST:PORT",
                        help="serve the HTTP API here ('off': not at all, though the config "
                             "enables it; a replay then exits when it ends)")
    parser.add_argument("--alerts-out", type=Path, metavar="FILE.jsonl",
                        help="write every alert transition as a JSON line")
    if live:
        parser.add_argument("--udp", action="append", metavar="[HOST:]PORT",
                            help="listen for NMEA datagrams (repeatable)")
        parser.add_argument("--tcp", action="append", metavar="HOST:PORT",
                            help="connect to an NMEA TCP feed (repeatable)")
        parser.add_argument("--serial", action="append", metavar="DEV[:BAUD]",
                            help="read a serial AIS receiver (repeatable; 38400 baud default)")


def resolve_config(options: ServiceOptions) -> Config:
    """Load the config (or defaults for ``--zones``) and apply the flags over it."""
    if options.config is not None:
        config = load_config(options.config)
    elif options.zones is not None:
        config = Config.default_for_zones(options.zones)
    else:
        raise ConfigError(["give --config PORT.yaml or --zones ZONES.geojson"])
    if options.zones is not None:
        config.port.zones = options.zones.resolve()
        config.set_origin("port.zones", "--zones")
    if options.db is not None:
        if not options.db.startswith(("sqlite://", "postgres://", "postgresql://")):
            raise ConfigError([f"--db {options.db!r}: expected sqlite:///path.db or "
                               "postgresql://…"])
        _set(config.store, "url", options.db, "--db")
        config.set_origin("store.url", "--db")  # over the file's and the environment's
    if options.mqtt == OFF:
        config.mqtt.url = None
    elif options.mqtt is not None:
        _set(config.mqtt, "url", options.mqtt, "--mqtt")
    if options.mqtt_prefix is not None:
        _set(config.mqtt, "prefix", options.mqtt_prefix, "--mqtt-prefix")
    if options.serve == OFF:
        config.api.enabled = False
    elif options.serve is not None:
        host, _, port = options.serve.rpartition(":")
        if not port.isdigit():
            raise ConfigError([f"--serve {options.serve!r}: expected HOST:PORT"])
        config.api.enabled = True
        _set(config.api, "host", host or "127.0.0.1", "--serve")
        _set(config.api, "port", int(port), "--serve")
        config.set_origin("api.port", "--serve")
    return config


def _set(section: Any, field: str, value: Any, flag: str) -> None:
    """Assign a flag's value through the config model's validation; errors name the flag."""
    try:
        setattr(section, field, value)
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]) for e in exc.errors())
        raise ConfigError([f"{flag} {value!r}: {reason}"]) from exc


def build_sources(config: Config, options: ServiceOptions) -> list[SourceBase]:
    """Live sources from the config file and the ``--udp/--tcp/--serial`` flags."""
    from ingest.sources.file import FileSource
    from ingest.sources.serialport import SerialSource
    from ingest.sources.spec import parse_serial_spec, parse_tcp_spec, parse_udp_spec
    from ingest.sources.tcp import TcpClientSource
    from ingest.sources.udp import UdpSource

    sources: list[SourceBase] = []
    for i, item in enumerate(config.sources):
        if item.kind == "udp":
            assert item.port is not None
            sources.append(UdpSource(item.name, item.host or "0.0.0.0", item.port,
                                     allow_from=item.allowed_networks,
                                     where=config.where(f"sources.{i}.port")))
        elif item.kind == "tcp":
            assert item.host is not None and item.port is not None
            sources.append(TcpClientSource(item.name, item.host, item.port,
                                           idle_timeout=item.idle_timeout_s or None))
        elif item.kind == "serial":
            assert item.device is not None
            sources.append(SerialSource(item.name, item.device, item.baud))
        else:
            assert item.path is not None
            # A file or pipe in the live service is a live feed: timed by arrival too.
            sources.append(FileSource(item.name, item.path, arrival=True))
    try:
        sources += [parse_udp_spec(s) for s in options.udp]
        sources += [parse_tcp_spec(s) for s in options.tcp]
        sources += [parse_serial_spec(s) for s in options.serial]
    except ValueError as exc:
        raise ConfigError([str(exc)]) from exc
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError([f"two sources are named {', '.join(duplicates)}"])
    return sources
