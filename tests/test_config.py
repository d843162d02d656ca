"""The YAML config: defaults, errors with file/line/field, env secrets, migrations, checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harbourwatch import config as config_mod
from harbourwatch.config import (
    Config,
    ConfigError,
    RulesConfig,
    check_config,
    load_config,
    parse_config,
)
from tests.rulekit import PORT_FEATURES, collection, rect

FULL = """\
version: 1
port:
  name: demo-port
  zones: zones.geojson
sources:
  - {kind: udp, name: rx-quay, port: 10110}
  - {kind: tcp, name: national, host: 127.0.0.1, port: 5631}
  - {kind: serial, name: dongle, device: /dev/ttyUSB0}
  - {kind: file, name: log, path: "-"}
ingest: {fragment_ttl_s: 4, dedup_window_s: 2}
rules:
  dark_vessel: {moving_s: 900}
  speeding: {max_speed_kn: 8}
  encounter: {enabled: false}
  exempt_shiptypes: [50, 52]
store: {url: "sqlite:///hw.db", spool_dir: spool}
api:
  enabled: true
  tokens:
    - {name: duty-officer, role: operator, token: s3cret}
    - {name: admin, role: admin, token_sha256: "%s"}
mqtt: {url: "mqtt://127.0.0.1:1883", username: hw}
""" % ("ab" * 32)


def write(tmp_path: Path, text: str, name: str = "port.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_match_the_design() -> None:
    config = Config()
    rules = config.rules
    assert config.version == 1
    assert (rules.dark_vessel.moving_s, rules.dark_vessel.stationary_s,
            rules.dark_vessel.edge_m) == (600, 1800, 2000)
    assert (rules.loitering.speed_kn, rules.loitering.end_speed_kn, rules.loitering.loiter_s,
            rules.loitering.range_m) == (2, 3, 1200, 500)
    assert (rules.encounter.distance_m, rules.encounter.duration_s) == (200, 900)
    assert rules.speeding.hold_s == 60 and rules.source_silent.silent_s == 120
    assert (rules.collision_risk.cpa_m, rules.collision_risk.tcpa_s) == (463, 600)
    assert (rules.anchor_drag.margin_m, rules.anchor_drag.min_radius_m) == (100, 150)
    assert (rules.sudden_stop.from_kn, rules.sudden_stop.to_kn) == (7, 1)
    assert rules.position_jump.max_speed_kn == 50
    assert rules.exempt_shiptypes == [50, 51, 52, 53, 55]
    assert rules.membership.inertia_reports == 2
    assert (config.ingest.fragment_ttl_s, config.ingest.max_pending_groups,
            config.ingest.dedup_window_s) == (5, 1000, 3)
    assert config.mqtt.prefix == "harbourwatch/port"


def test_every_field_has_a_description() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            for arg in getattr(field.annotation, "__args__", (field.annotation,)):
                inner = getattr(arg, "__args__", (arg,))
                for item in inner:
                    if isinstance(item, type) and hasattr(item, "model_fields"):
                        missing += walk(item)
        return missing

    assert walk(Config) == []


def test_full_file_loads_and_resolves_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), env={})
    assert config.port.zones == tmp_path / "zones.geojson"
    assert config.store.spool_dir == tmp_path / "spool"
    assert [s.kind for s in config.sources] == ["udp", "tcp", "serial", "file"]
    assert config.sources[2].baud == 38400
    assert config.rules.dark_vessel.moving_s == 900
    assert not config.rules.rule_enabled("encounter") and config.rules.rule_enabled("loitering")
    assert config.mqtt.prefix == "harbourwatch/demo-port"
    assert config.api.tokens[0].token is not None
    assert config.api.tokens[0].token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    text = FULL.replace("port: 10110", "port: 99999").replace(
        "moving_s: 900", "moving_s: -1, movng_s: 3").replace(
        "{kind: tcp, name: national, host: 127.0.0.1, port: 5631}", "{kind: tcp, name: national}")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.errors == [
        f"{path}:6: sources.0.port: Input should be less than or equal to 65535",
        f"{path}:7: sources.1: a tcp source needs host and port",
        f"{path}:12: rules.dark_vessel.moving_s: Input should be greater than 0",
        f"{path}:12: rules.dark_vessel.movng_s: unknown key (did you mean 'moving_s'?)",
    ]


def test_an_unknown_key_says_which_it_may_have_meant_or_which_there_are(
        tmp_path: Path) -> None:
    """pydantic's "Extra inputs are not permitted" named no key a newcomer could use."""
    text = FULL.replace("encounter:", "watch_aera: port\n  encounter:").replace(
        "max_speed_kn: 8", "max_speed_kts: 8").replace(
        "version: 1\n", "version: 1\nzones: zones.geojson\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert [e.split(": ", 1)[1] for e in info.value.errors] == [
        "rules.speeding.max_speed_kts: unknown key (did you mean 'max_speed_kn'?)",
        "rules.watch_aera: unknown key (did you mean 'watch_area'?)",
        "zones: unknown key (keys here: version, port, sources, ingest, rules, store, api, "
        "mqtt)",
    ]


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nport:\n  name: [demo\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4: not valid YAML"):
        load_config(path, env={})


def test_duplicate_names_and_bad_values(tmp_path: Path) -> None:
    text = ("sources:\n  - {kind: udp, name: a, port: 1}\n  - {kind: udp, name: a, port: 2}\n"
            "port: {name: Bad Name}\nstore: {url: 'mysql://x'}\nmqtt: {url: 'http://x'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    fields = [line.split(": ")[1] for line in info.value.errors]
    assert fields == ["port.name", "sources", "store.url", "mqtt.url"]
    assert "duplicate source name 'a'" in info.value.errors[1]
    text = "sources:\n  - {kind: udp, name: a, port: 1}\n  - {kind: udp, name: b, port: 1}\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.errors[0].endswith("port.yaml:1: sources: duplicate UDP address "
                                         "'0.0.0.0:1'")


def test_env_overrides_secrets(tmp_path: Path) -> None:
    env = {"HARBOURWATCH_MQTT_PASSWORD": "pw", "HARBOURWATCH_DB_URL": "postgresql://h/db",
           "HARBOURWATCH_API_TOKEN_DUTY_OFFICER": "from-env",
           "HARBOURWATCH_API_TOKEN_ADMIN": "admin-env"}
    config = load_config(write(tmp_path, FULL), env=env)
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "pw"
    assert config.store.url is not None
    assert config.store.url.get_secret_value() == "postgresql://h/db"
    tokens = {t.name: t for t in config.api.tokens}
    assert tokens["duty-officer"].token is not None
    assert tokens["duty-officer"].token.get_secret_value() == "from-env"
    assert tokens["admin"].token_sha256 is None  # the env token replaces the hash


def test_token_may_come_only_from_env(tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    text = "api:\n  tokens:\n    - {name: ops, role: viewer}\n"
    with pytest.raises(ConfigError) as missing:  # it names the variable it looked for
        load_config(write(tmp_path, text), env={"HARBOURWATCH_API_TOKEN_OPZ": "t"})
    assert missing.value.errors == [f"{tmp_path / 'port.yaml'}:3: api.tokens.0: no token: set "
                                    "HARBOURWATCH_API_TOKEN_OPS, or give token or token_sha256"]
    assert caplog.messages == [  # the misspelt one opens nothing, and says so
        "HARBOURWATCH_API_TOKEN_OPZ names no api.tokens entry 'opz' and opens nothing: add "
        "the entry (its role), or use HARBOURWATCH_API_TOKENS=opz:<role>:<token>"]
    config = load_config(write(tmp_path, text), env={"HARBOURWATCH_API_TOKEN_OPS": "t"})
    assert config.api.tokens[0].role == "viewer"
    # Set but empty: a token no one could ever present.
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={"HARBOURWATCH_API_TOKEN_OPS": ""})
    assert info.value.errors[0].endswith(
        "api.tokens.0.token (from environment HARBOURWATCH_API_TOKEN_OPS): empty: a token no "
        "one can present")


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, FULL), env={"HARBOURWATCH_DB_URL": "oracle://x"})
    assert info.value.errors == [
        f"{tmp_path / 'port.yaml'}: store.url (from environment HARBOURWATCH_DB_URL): "
        "url must start with sqlite://, postgres:// or postgresql://"]


def test_versions_and_migrations(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="newer than this harbourwatch"):
        parse_config("version: 2\n", env={})
    with pytest.raises(ConfigError, match="must be an integer"):
        parse_config("version: '1'\n", env={})
    assert parse_config("", env={}).version == 1

    def rename(data: dict[str, object]) -> dict[str, object]:
        data["port"] = {"name": data.pop("harbour")}
        return data

    monkeypatch.setattr(config_mod, "CURRENT_VERSION", 2)
    monkeypatch.setitem(config_mod.MIGRATIONS, 1, rename)
    migrated = config_mod.migrate({"version": 1, "harbour": "old"})
    assert migrated == {"version": 2, "port": {"name": "old"}}


def test_default_for_zones() -> None:
    config = Config.default_for_zones("fixtures/Demo Port.geojson", env={})
    assert config.port.name == "demo-port" and config.port.zones is not None
    assert config.port.zones.is_absolute() and config.mqtt.prefix == "harbourwatch/demo-port"
    assert config.store.url is None and config.mqtt.username is None


def test_with_zones_only_the_secrets_still_come_from_the_environment() -> None:
    """A port started from nothing but its zones file: the database and broker account in
    the environment (the README's secrets) are used, not silently a local SQLite file."""
    env = {"HARBOURWATCH_DB_URL": "postgresql://hw@db/port", "HARBOURWATCH_MQTT_USERNAME": "hw",
           "HARBOURWATCH_MQTT_PASSWORD": "pw"}
    config = Config.default_for_zones("fixtures/demo.geojson", env=env)
    assert config.store.url is not None and config.mqtt.username == "hw"
    assert config.store.url.get_secret_value() == "postgresql://hw@db/port"
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "pw"
    with pytest.raises(ConfigError) as info:
        Config.default_for_zones("fixtures/demo.geojson", env={"HARBOURWATCH_DB_URL": "x"})
    (error,) = info.value.errors
    assert error.startswith("<environment>: store.url (from environment HARBOURWATCH_DB_URL)")


def test_check_config_reports_config_and_zone_problems(tmp_path: Path) -> None:
    (tmp_path / "zones.geojson").write_text(json.dumps(collection(*PORT_FEATURES)))
    path = write(tmp_path, FULL)
    assert check_config(path, env={}) == []
    (tmp_path / "zones.geojson").write_text(json.dumps(collection(
        rect("a", "harbour", 0, 0, 10, 10))))
    (error,) = check_config(path, env={})
    assert error.startswith(f"{tmp_path / 'zones.geojson'}: feature 'a': unknown kind")
    assert check_config(write(tmp_path, "bogus: 1\n", "bad.yaml"), env={}) == [
        f"{tmp_path / 'bad.yaml'}:1: bogus: unknown key (keys here: version, port, sources, "
        "ingest, rules, store, api, mqtt)"]
    assert check_config(None, tmp_path / "missing.geojson") == [
        f"--zones: no such file: {tmp_path / 'missing.geojson'}"]
    path.write_text(FULL.replace("zones.geojson", "nothere.geojson"))
    line = FULL.splitlines().index(next(t for t in FULL.splitlines() if "zones.geojson" in t))
    assert check_config(path, env={}) == [  # the setting that names the file, and its line
        f"{path}:{line + 1}: port.zones: no such file: {tmp_path / 'nothere.geojson'}"]


def test_a_config_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "port.yaml"
    path.write_bytes(b"version: 1\nport: {name: caf\xe9}\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [f"{path}:2: not UTF-8 text (byte 27)"]


def test_a_key_given_twice_names_both_lines() -> None:
    """YAML keeps the last silently: a second sources: wiped the first."""
    text = ("version: 1\nsources:\n  - {kind: udp, name: a, port: 10110}\nport: {name: t}\n"
            "sources:\n  - {kind: udp, name: b, port: 10111, port: 10112}\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "port.yaml")
    assert caught.value.errors == ["port.yaml:5: 'sources' given twice (first on line 2)",
                                   "port.yaml:6: 'port' given twice (first on line 6)"]


def test_a_file_source_path_is_relative_to_the_config(tmp_path: Path) -> None:
    text = "version: 1\nsources:\n  - {kind: file, name: log, path: logs/today.nmea}\n"
    config = parse_config(text, "port.yaml", base_dir=tmp_path)
    assert config.sources[0].path == str(tmp_path / "logs" / "today.nmea")


def test_check_config_finds_what_run_would_stop_on(tmp_path: Path) -> None:
    """It said "ok", then run stopped on a missing log, an MQTT port out of range, or a
    TLS file that is not there."""
    path = tmp_path / "port.yaml"
    path.write_text("version: 1\nsources:\n  - {kind: file, name: log, path: missing.nmea}\n"
                    "mqtt: {url: 'mqtt://127.0.0.1:99999'}\n")
    assert check_config(path) == [
        f"{path}:3: sources.0.path: source log: no such file: {tmp_path / 'missing.nmea'}",
        f"{path}: MQTT URL has a bad port: Port out of range 0-65535"]
    path.write_text("version: 1\nmqtt: {url: 'mqtt://127.0.0.1:1883', "
                    "tls: {enabled: true, ca_file: ca.pem}}\n")
    said = (f"{path}:2: mqtt.tls.ca_file {str(tmp_path / 'ca.pem')!r}: [Errno 2] No such "
            "file or directory")
    assert check_config(path) == [said]
    # run says it as check-config does: the line too (it named no file at all).
    done = subprocess.run([sys.executable, "-m", "harbourwatch.cli", "run", "--config",
                           str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}"],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (2, f"harbourwatch: {said}")


def test_true_is_no_number() -> None:
    """pydantic took queue_size: true as 1, a speed limit of true as 1 kn."""
    with pytest.raises(ConfigError) as caught:
        parse_config("version: 1\ningest: {queue_size: true}\nrules:\n"
                     "  speeding: {max_speed_kn: true, enabled: false}\n", "port.yaml")
    assert caught.value.errors == [
        "port.yaml:2: ingest.queue_size: a number is needed, not true or false",
        "port.yaml:4: rules.speeding.max_speed_kn: a number is needed, not true or false"]


def test_mmsis_and_ship_types_in_lists_are_bounded(tmp_path: Path) -> None:
    """A ten-digit MMSI (a typo) or a ship type beyond the 8-bit field is refused by name."""
    text = ("rules:\n  restricted_entry: {allowed_mmsi: [244123456, 2441234567]}\n"
            "  exempt_shiptypes: [50, 256]\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert sorted(info.value.errors) == [
        f"{path}:2: rules.restricted_entry.allowed_mmsi.1: "
        "Input should be less than or equal to 999999999",
        f"{path}:3: rules.exempt_shiptypes.1: Input should be less than or equal to 255",
    ]


def test_unquoted_station_numbers_are_receiver_names(tmp_path: Path) -> None:
    """The README's own example: Gatehouse stations are numbers, written unquoted."""
    path = write(tmp_path, "rules:\n  source_silent: {receivers: [rx-quay*, 2190067]}\n")
    config = load_config(path, env={})
    assert config.rules.source_silent.receivers == ["rx-quay*", "2190067"]


def test_a_receiver_may_have_a_silence_limit_of_its_own(tmp_path: Path) -> None:
    """Keyed by receiver name (a station number unquoted too); positive, at most a day."""
    path = write(tmp_path, "rules:\n  source_silent:\n    receiver_silent_s:\n"
                           "      316000002: 3600\n      rx-remote: 600\n")
    cfg = load_config(path, env={}).rules.source_silent
    assert cfg.receiver_silent_s == {"316000002": 3600.0, "rx-remote": 600.0}
    assert [cfg.silent_s_for(name) for name in ("rx-remote", "316000002", "rx-quay")] == [
        600.0, 3600.0, 120.0]
    assert parse_config("rules:\n  source_silent:\n    receiver_silent_s:\n").rules == (
        RulesConfig())
    with pytest.raises(ConfigError) as info:
        parse_config("rules:\n  source_silent:\n    receiver_silent_s:\n      a: 0\n"
                     "      b: 86401\n      c: true\n      \"\": 60\n", "port.yaml")
    assert info.value.errors == [
        "port.yaml:4: rules.source_silent.receiver_silent_s.a: Input should be greater than 0",
        "port.yaml:5: rules.source_silent.receiver_silent_s.b: "
        "Input should be less than or equal to 86400",
        "port.yaml:6: rules.source_silent.receiver_silent_s.c: "
        "a number is needed, not true or false",
        "port.yaml:7: rules.source_silent.receiver_silent_s..[key]: "
        "String should match pattern '^[ -~]{1,64}$'"]


def test_the_readme_lists_every_config_key_as_the_models_define_it() -> None:
    """The README's reference table is the models' own (regenerate it when this fails:
    python -m harbourwatch.config_reference)."""
    from harbourwatch.config_reference import reference
    from tests.paths import ROOT

    table = reference()
    assert table in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "| `rules.collision_risk.min_relative_kn` | float | `1.0` | ≥ 0, ≤ 50 |" in table
    assert "| `sources[].kind` | `udp` \\| `tcp` \\| `serial` \\| `file` | required |" in table


def test_a_tcp_feed_can_be_reconnected_when_it_stalls(tmp_path: Path) -> None:
    from harbourwatch.options import ServiceOptions, build_sources
    from ingest.sources.tcp import TcpClientSource

    text = ("sources:\n  - {kind: tcp, name: national, host: 127.0.0.1, port: 5631, "
            "idle_timeout_s: 300}\n  - {kind: tcp, name: own, host: 127.0.0.1, port: 5632}\n")
    config = load_config(write(tmp_path, text), env={})
    national, own = build_sources(config, ServiceOptions())
    assert isinstance(national, TcpClientSource) and isinstance(own, TcpClientSource)
    assert (national.idle_timeout, own.idle_timeout) == (300.0, None)
    path = write(tmp_path, "sources:\n  - {kind: udp, name: u, port: 1, idle_timeout_s: 60}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.errors == [
        f"{path}:2: sources.0: idle_timeout_s is for tcp sources, not udp"]


def test_a_udp_source_takes_senders_from_allow_from(tmp_path: Path) -> None:
    import ipaddress

    from harbourwatch.options import ServiceOptions, build_sources
    from ingest.sources.udp import UdpSource

    text = ("sources:\n  - {kind: udp, name: quay, port: 10110, "
            "allow_from: [192.0.2.7, 10.20.0.0/24, '2001:db8::/32']}\n"
            "  - {kind: udp, name: open, port: 10111}\n")
    quay, open_ = build_sources(load_config(write(tmp_path, text), env={}), ServiceOptions())
    assert isinstance(quay, UdpSource) and isinstance(open_, UdpSource)
    assert quay.allow_from == (ipaddress.ip_network("192.0.2.7/32"),
                               ipaddress.ip_network("10.20.0.0/24"),
                               ipaddress.ip_network("2001:db8::/32"))
    assert open_.allow_from is None
    for bad, said in (
            ("{kind: udp, name: u, port: 1, allow_from: [10.20.0.300]}",
             "sources.0.allow_from: allow_from: '10.20.0.300' is not an IP address or network "
             "(e.g. 192.0.2.7 or 10.20.0.0/24)"),
            ("{kind: tcp, name: t, host: 127.0.0.1, port: 1, allow_from: [10.0.0.1]}",
             "sources.0: allow_from is for udp sources, not tcp (a tcp source connects out to "
             "the server it names)")):
        path = write(tmp_path, f"sources:\n  - {bad}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        assert info.value.errors == [f"{path}:2: {said}"]


def test_a_section_left_empty_means_its_defaults() -> None:
    """``rules:`` with its settings commented out said "Input should be a valid dictionary
    or instance of RulesConfig"."""
    config = parse_config("version: 1\nrules:\n#  dark_vessel: {moving_s: 900}\ningest:\n")
    assert config.rules == RulesConfig() and config.ingest.queue_size == 10000
    nested = parse_config("version: 1\nrules:\n  loitering:\n  speeding: {max_speed_kn: 8}\n"
                          "sources:\nmqtt:\n  url: mqtt://127.0.0.1\n  tls:\n")
    assert nested.rules.loitering == RulesConfig().loitering and nested.sources == []
    assert nested.rules.speeding.max_speed_kn == 8 and nested.mqtt.tls.enabled is False
    # A list with entries by default, emptied, would mean "none": an error, not the default.
    with pytest.raises(ConfigError, match=r"rules\.exempt_shiptypes"):
        parse_config("version: 1\nrules:\n  exempt_shiptypes:\n#   - 52\n")


def test_check_config_warns_of_what_the_zones_leave_the_rules_unable_to_do(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Berths, a restricted zone and an anchorage but no coverage: dark_vessel could never
    fire, and check-config said "ok"; an empty zones file too."""
    from geofence.engine import Engine
    from geofence.zones import ZoneSet

    zones = tmp_path / "zones.geojson"
    no_coverage = [f for f in PORT_FEATURES if f["properties"]["kind"] != "coverage"]
    zones.write_text(json.dumps(collection(*no_coverage)))
    assert check_config(None, zones) == []
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith("the zones have no coverage zone: dark_vessel")
    caplog.clear()
    engine = Engine(RulesConfig(), ZoneSet.from_geojson(zones))
    engine.set_zones(ZoneSet.from_geojson(zones))  # the live service sets them twice
    assert [r.getMessage() for r in caplog.records] == [said]  # once
    caplog.clear()
    zones.write_text(json.dumps(collection()))
    assert check_config(None, zones) == []
    assert [r.getMessage() for r in caplog.records] == [f"{zones}: no zone in the file"]
    caplog.clear()
    zones.write_text(json.dumps(collection(*PORT_FEATURES)))
    assert check_config(None, zones) == [] and caplog.records == []


def test_a_relative_sqlite_path_in_the_file_is_beside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every other path in the file is; the database went to the working directory (under
    systemd, /). From the environment it is the shell's, as from --db."""
    text = "version: 1\nstore: {url: 'sqlite:///data/port.db'}\n"
    config = load_config(write(tmp_path, text), env={})
    assert config.store.url is not None
    assert config.store.url.get_secret_value() == f"sqlite:///{tmp_path / 'data' / 'port.db'}"
    config = load_config(write(tmp_path, "version: 1\n"),
                         env={"HARBOURWATCH_DB_URL": "sqlite:///env.db"})
    assert config.store.url is not None
    assert config.store.url.get_secret_value() == "sqlite:///env.db"
    assert config.origin("store.url") == "environment HARBOURWATCH_DB_URL"
    from harbourwatch.options import ServiceOptions, resolve_config

    monkeypatch.setenv("HARBOURWATCH_DB_URL", "sqlite:///env.db")
    flagged = resolve_config(ServiceOptions(config=write(tmp_path, "version: 1\n"),
                                            db="sqlite:///flag.db"))
    assert flagged.origin("store.url") == "--db"  # the flag wins, and is said to
    path = write(tmp_path, "version: 1\nstore:\n  url: 'sqlite://port.db'\n")
    assert check_config(path, env={}) == [  # run refused it after check-config said ok
        f"{path}:3: store.url: use sqlite:///relative.db (beside the config) or "
        "sqlite:////absolute.db"]


def test_serve_and_mqtt_off_leave_out_what_the_config_turns_on(tmp_path: Path) -> None:
    """A drill beside the live service with the port's own config: its API port was taken,
    and a replay that serves the API never ends (no scripted drills)."""
    from harbourwatch.options import ServiceOptions, resolve_config

    path = write(tmp_path, "version: 1\napi: {enabled: true, port: 8080}\n"
                           "mqtt: {url: 'mqtt://127.0.0.1:1883'}\n")
    config = resolve_config(ServiceOptions(config=path, serve="off", mqtt="off"))
    assert (config.api.enabled, config.mqtt.url) == (False, None)
    config = resolve_config(ServiceOptions(config=path))
    assert config.api.enabled and config.mqtt.url is not None


def test_a_value_of_the_wrong_form_says_the_form_not_a_regex() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("mqtt: {url: 'http://broker'}\nport: {name: Bad Name}\n", "p.yaml")
    assert caught.value.errors == [
        "p.yaml:2: port.name: not a slug (a-z, 0-9, '_' and '-', starting with a letter or "
        "digit, at most 63)",
        "p.yaml:1: mqtt.url: not of the form: mqtt://host:port or mqtts://host:port; none = off"]


def test_an_mqtt_client_id_outside_what_every_broker_takes_is_said(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """MQTT 3.1.1 obliges a broker to take 1-23 of [0-9a-zA-Z]: another id is said (most
    brokers take it, so not refused); an empty one is refused (it is no id at all)."""
    path = tmp_path / "port.yaml"
    path.write_text("version: 1\nmqtt:\n  url: mqtt://127.0.0.1:1883\n"
                    "  client_id: harbourwatch-gladstone-main\n")
    assert check_config(path) == []
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}:4: mqtt.client_id: client id 'harbourwatch-gladstone-main' is not 1-23 "
        "letters and digits, all that MQTT 3.1.1 obliges a broker to accept: a strict "
        "broker refuses it (CONNACK 2, identifier rejected)"]
    caplog.clear()
    path.write_text("version: 1\nmqtt: {url: 'mqtt://127.0.0.1:1883', client_id: hwGladstone1}\n")
    assert check_config(path) == [] and caplog.records == []
    path.write_text("version: 1\nmqtt: {url: 'mqtt://127.0.0.1:1883', client_id: ''}\n")
    (error,) = check_config(path)
    assert error.startswith(f"{path}:2: mqtt.client_id") and "at least 1" in error


@pytest.mark.parametrize(("crs", "unit"), [("EPSG:2229", "US survey foot"),
                                           ("EPSG:2263+6360", "US survey foot"),
                                           ("+proj=utm +zone=56 +south +units=ft", "foot")])
def test_a_projection_in_feet_names_its_unit_with_file_line_and_field(
        tmp_path: Path, crs: str, unit: str) -> None:
    """A state plane CRS in feet was taken: every threshold in metres then meant feet."""
    import subprocess
    import sys
    path = write(tmp_path, f"version: 1\nport:\n  name: demo\n  projection: \"{crs}\"\n")
    said = (f"{path}:4: port.projection: CRS {crs!r} measures in {unit}, not metres: every "
            "distance in the config and zones is in metres")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.errors == [said]
    assert check_config(path, env={}) == [said]
    done = subprocess.run([sys.executable, "-m", "harbourwatch.cli", "check-config", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (2, f"harbourwatch: {said}")
    path.write_text("version: 1\nport:\n  name: demo\n  projection: EPSG:32631+5773\n")
    assert load_config(path, env={}).port.projection == "EPSG:32631+5773"  # height: any unit
