"""The one YAML configuration file, validated by pydantic v2.

Every model forbids unknown keys and every field has a description and bounds. Secrets can
come from the environment (``HARBOURWATCH_MQTT_PASSWORD``, ``HARBOURWATCH_MQTT_USERNAME``,
``HARBOURWATCH_DB_URL``, ``HARBOURWATCH_API_TOKEN_<NAME>``). Errors name the file, the line
(from the YAML node tree) and the field. ``version`` is an integer; older files are brought up
to date by the ordered functions in :data:`MIGRATIONS`.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from geofence.mid import Mmsi

if TYPE_CHECKING:
    from api.auth import Authenticator

log = logging.getLogger(__name__)

CURRENT_VERSION = 1
SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ZoneKind = Literal["port_limit", "coverage", "berth", "anchorage", "restricted", "channel",
                   "security"]
ALL_KINDS: list[ZoneKind] = ["port_limit", "coverage", "berth", "anchorage", "restricted",
                             "channel", "security"]

IdentityField = Literal["shipname", "callsign", "imo", "shiptype"]


def _event_kinds() -> list[ZoneKind]:
    return [k for k in ALL_KINDS if k != "coverage"]


def _restricted_kinds() -> list[ZoneKind]:
    return ["restricted", "security"]


def _loiter_kinds() -> list[ZoneKind]:
    return ["berth", "security"]


def _encounter_kinds() -> list[ZoneKind]:
    return ["berth", "anchorage"]


def _speed_kinds() -> list[ZoneKind]:
    return ["port_limit", "channel"]


def _identity_fields() -> list[IdentityField]:
    return ["shipname", "callsign", "imo", "shiptype"]


#: ``MIGRATIONS[n]`` turns a version-n document into a version-(n+1) one (none yet).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class ConfigError(ValueError):
    """A configuration that cannot be used; each line of ``errors`` names file, line, field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _not_true_or_false(value: Any) -> Any:
    """YAML's true/false are no numbers, in a mapping's values too."""
    if isinstance(value, bool):
        raise ValueError("a number is needed, not true or false")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's true/false are no numbers: pydantic took ``queue_size: true`` as 1."""
        if isinstance(value, bool) and info.field_name in _numeric_fields(cls):
            raise ValueError("a number is needed, not true or false")
        return value

    @model_validator(mode="before")
    @classmethod
    def _empty_means_defaults(cls, data: Any) -> Any:
        """A section left empty (its entries commented out, YAML's null) means its defaults,
        at any depth (``rules:``, ``  loitering:``), and so does a list or mapping whose
        default is empty (``sources:``, ``receiver_silent_s:``). Not a list with entries by
        default (``exempt_shiptypes:``): emptied, it would mean "none", so it stays an error
        naming it."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            field = cls.model_fields.get(key)
            if value is None and field is not None and field.default_factory is not None:
                default = field.default_factory()  # type: ignore[call-arg]
                if isinstance(default, BaseModel) or default in ([], {}):
                    out[key] = default
        return out


_NUMERIC_FIELDS: dict[type[BaseModel], frozenset[str]] = {}


def _numeric_fields(model: type[BaseModel]) -> frozenset[str]:
    """Names of the int and float fields (optional ones included) of a model."""
    names = _NUMERIC_FIELDS.get(model)
    if names is None:
        names = _NUMERIC_FIELDS[model] = frozenset(
            name for name, field in model.model_fields.items()
            if {t for t in (get_args(field.annotation) or (field.annotation,))
                if t is not type(None)} <= {int, float})
    return names


# --- port, sources, ingest ------------------------------------------------------------------

class PortConfig(_Model):
    name: str = Field(default="port", pattern=SLUG,
                      description="Port name (slug), used in MQTT topics")
    zones: Path | None = Field(default=None,
                               description="Zones GeoJSON, relative to the config file")
    projection: str | None = Field(
        default=None, max_length=200,
        description="Metric CRS override (projected, axes in metres), e.g. "
                    "EPSG:32631; default the zones' UTM zone")

    @field_validator("projection")
    @classmethod
    def _metric_crs(cls, value: str | None) -> str | None:
        if value is not None:
            from geofence.projection import check_crs
            check_crs(value)
        return value


class SourceConfig(_Model):
    kind: Literal["udp", "tcp", "serial", "file"] = Field(description="Transport")
    name: str = Field(pattern=SLUG, description="Source name (slug)")
    host: str | None = Field(default=None, max_length=255,
                             description="udp: address to bind; tcp: server to connect to")
    port: int | None = Field(default=None, ge=1, le=65535, description="udp/tcp port")
    device: str | None = Field(default=None, max_length=4096, description="serial device path")
    baud: int = Field(default=38400, ge=300, le=4_000_000, description="serial speed")
    path: str | None = Field(default=None, max_length=4096,
                             description="file: log path (plain or .gz), '-' for stdin")
    idle_timeout_s: float = Field(default=0.0, ge=0, le=86400,
                                  description="tcp: reconnect after this long without a byte, "
                                              "e.g. 300 for a national feed (a stalled server "
                                              "keeps the connection open; TCP keep-alive only "
                                              "finds one that is gone); 0: never (a small "
                                              "port's receiver may be quiet for minutes)")

    allow_from: list[str] | None = Field(
        default=None, min_length=1, max_length=1000,
        description="udp: take datagrams only from these senders, addresses or networks "
                    "(e.g. 192.0.2.7, 10.20.0.0/24, 2001:db8::/32); others are dropped and "
                    "counted (refused_datagrams). Default: any sender (a forged datagram "
                    "from anywhere on the network is taken)")

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"allow_from: {item!r} is not an IP address or network "
                                 "(e.g. 192.0.2.7 or 10.20.0.0/24)") from None
        return value

    @property
    def allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
        """``allow_from`` parsed (None: any sender)."""
        return (None if self.allow_from is None
                else [ipaddress.ip_network(item, strict=False) for item in self.allow_from])

    @model_validator(mode="after")
    def _needs_for_kind(self) -> SourceConfig:
        needs = {"udp": ("port",), "tcp": ("host", "port"), "serial": ("device",),
                 "file": ("path",)}[self.kind]
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"a {self.kind} source needs {' and '.join(missing)}")
        if self.kind != "tcp" and "idle_timeout_s" in self.model_fields_set:
            raise ValueError(f"idle_timeout_s is for tcp sources, not {self.kind}")
        if self.kind != "udp" and self.allow_from is not None:
            raise ValueError(f"allow_from is for udp sources, not {self.kind} (a tcp source "
                             "connects out to the server it names)")
        return self

    @property
    def log_path(self) -> Path | None:
        """The log a file source reads (None: another kind, or stdin)."""
        return Path(self.path) if self.kind == "file" and self.path not in (None, "-") else None


class IngestConfig(_Model):
    fragment_ttl_s: float = Field(default=5.0, gt=0, le=120,
                                  description="Multipart fragment lifetime")
    max_pending_groups: int = Field(default=1000, ge=1, le=1_000_000,
                                    description="Bound on incomplete multipart groups, per "
                                                "source: beyond it that source's oldest "
                                                "group is dropped (overflow)")
    dedup_window_s: float = Field(default=3.0, ge=0, le=60,
                                  description="Same payload from several receivers within this "
                                              "window is processed once")
    queue_size: int = Field(default=10000, ge=1, le=10_000_000,
                            description="Bounded line queue; a flood beyond it is dropped and "
                                        "counted")
    max_receivers: int = Field(default=2000, ge=1, le=1_000_000,
                               description="Distinct receivers (tag-block or $PGHP stations) "
                                           "kept; a line naming a new station beyond them "
                                           "counts as its source's own, counted "
                                           "(stations_over_limit) and logged once: a feed "
                                           "open to injection can name any number")
    max_clock_lead_s: float = Field(default=10.0, ge=0, le=86400,
                                    description="Live: a line whose own time (tag block, log "
                                                "prefix) runs further ahead of its arrival is "
                                                "timed by its arrival and counted "
                                                "(clock_ahead)")
    max_clock_lag_s: float = Field(default=86400.0, ge=0, le=365 * 86400,
                                   description="Live: a line whose own time runs further "
                                               "behind its arrival (a late feed is hours "
                                               "behind, not days) is timed by its arrival and "
                                               "counted (clock_behind); replay keeps old times")


# --- rules ----------------------------------------------------------------------------------

class MembershipConfig(_Model):
    inertia_reports: int = Field(default=2, ge=1, le=20,
                                 description="Consecutive reports needed to enter or leave a "
                                             "zone")
    exit_margin_m: float = Field(default=20.0, ge=0, le=1000,
                                 description="A vessel must be this far outside a zone to count "
                                             "as out (hysteresis against GPS jitter)")


class PictureConfig(_Model):
    live_s: float = Field(default=900.0, ge=30, le=86400,
                          description="A vessel not heard for this long leaves the live picture")
    forget_s: float = Field(default=86400.0, ge=60, le=30 * 86400,
                            description="A vessel's state is dropped after this silence; "
                                        "alerts still open on it then end (end_reason "
                                        "forgotten)")
    history_len: int = Field(default=16, ge=2, le=1024, description="Recent fixes kept per vessel")
    tick_interval_s: float = Field(default=1.0, gt=0, le=60,
                                   description="Timers run at most this often in message time")
    max_vessels: int = Field(default=20_000, ge=10, le=1_000_000,
                             description="Vessels (MMSIs) held by the rules, the API's picture "
                                         "and the MQTT feed; beyond it a new MMSI evicts the "
                                         "oldest vessel heard only once (none with an open "
                                         "alert or in a zone), else the one silent longest, "
                                         "if silent past live_s and dark_vessel's thresholds "
                                         "(a zone's own included) "
                                         "(none with an open alert), else is not admitted: "
                                         "counted (vessels_over_limit) and logged once. A UDP "
                                         "feed open to injection can forge any number")


class ZoneEventConfig(_Model):
    enabled: bool = Field(default=True, description="Emit this event")
    kinds: list[ZoneKind] = Field(
        default_factory=_event_kinds,
        description="Zone kinds that produce the event (a zone's `events` property overrides)")


class RestrictedEntryConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    kinds: list[ZoneKind] = Field(default_factory=_restricted_kinds,
                                  description="Zone kinds that are restricted")
    allowed_mmsi: list[Mmsi] = Field(default_factory=list,
                                    description="Allowed everywhere (zone allowed_mmsi adds)")


class DarkVesselConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    edge_m: float = Field(default=2000.0, ge=0, le=100_000,
                          description="Last fix at least this far inside coverage")
    moving_s: float = Field(default=600.0, gt=0, le=7 * 86400, description="Silence when moving")
    stationary_s: float = Field(default=1800.0, gt=0, le=7 * 86400,
                                description="Silence when stationary (at anchor, moored or slow)")
    stationary_below_kn: float = Field(default=2.0, ge=0, le=10,
                                       description="Slower than this counts as stationary "
                                                   "(class B reports every 3 min below 2 kn)")
    receiver_window_s: float = Field(default=600.0, gt=0, le=86400,
                                     description="Receivers that heard a stationary vessel "
                                                 "this long before its last report count as "
                                                 "its receivers (reports every 3 min)")
    receiver_window_moving_s: float = Field(
        default=60.0, gt=0, le=3600,
        description="For a moving vessel only receivers that heard it this close to its last "
                    "report count: it may have sailed out of the others' range")


class LoiteringConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    speed_kn: float = Field(default=2.0, gt=0, le=10, description="Slower than this counts")
    end_speed_kn: float = Field(default=3.0, gt=0, le=20, description="Faster than this ends it")
    loiter_s: float = Field(default=1200.0, gt=0, le=86400, description="Dwell time")
    range_m: float = Field(default=500.0, ge=0, le=10000, description="Distance from the zone")
    kinds: list[ZoneKind] = Field(default_factory=_loiter_kinds,
                                  description="Zone kinds watched")
    berth_requires_moored_status: bool = Field(
        default=False, description="Exempt vessels inside a berth only when status is 5 (moored); "
                           "off by default because class B has no status")

    @model_validator(mode="after")
    def _end_above_start(self) -> LoiteringConfig:
        if self.end_speed_kn < self.speed_kn:
            raise ValueError("end_speed_kn must not be below speed_kn")
        return self


class EncounterConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    distance_m: float = Field(default=200.0, gt=0, le=5000, description="Distance between the two")
    speed_kn: float = Field(default=2.0, gt=0, le=10, description="Both slower than this")
    duration_s: float = Field(default=900.0, gt=0, le=86400, description="Held this long")
    excluded_kinds: list[ZoneKind] = Field(default_factory=_encounter_kinds,
                                           description="Not inside these zone kinds")
    end_margin_m: float = Field(default=100.0, ge=0, le=5000,
                                description="An open encounter ends beyond distance_m + this")
    end_speed_kn: float = Field(default=3.0, gt=0, le=20,
                                description="An open encounter ends when either is faster")
    stale_s: float = Field(default=600.0, gt=0, le=86400,
                           description="A vessel silent this long leaves its pairs (slow "
                                       "vessels report every 3 min)")


class SpeedingConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    hold_s: float = Field(default=60.0, ge=0, le=3600, description="Over the limit this long")
    max_speed_kn: float | None = Field(default=None, gt=0, le=60,
                                       description="Limit for zones of `default_kinds` that "
                                                   "set none")
    default_kinds: list[ZoneKind] = Field(default_factory=_speed_kinds,
                                          description="Kinds the global limit applies to")
    end_margin_kn: float = Field(default=0.5, ge=0, le=10,
                                 description="Ends at or below limit minus this margin")


class CollisionRiskConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    speed_kn: float = Field(default=3.0, ge=0, le=50, description="Both faster than this")
    cpa_m: float = Field(default=463.0, gt=0, le=20000, description="CPA limit (0.25 NM)")
    tcpa_s: float = Field(default=600.0, gt=0, le=7200, description="TCPA limit (10 min)")
    end_factor: float = Field(default=1.25, ge=1, le=5,
                              description="An open alert ends when CPA or TCPA exceed their "
                                          "limit times this, or the vessels have passed")
    search_m: float = Field(default=5000.0, ge=100, le=50000,
                            description="Pairs are assessed within this distance (a closing "
                                        "speed of 24 kn is then caught ~6 min ahead)")
    max_age_s: float = Field(default=120.0, gt=0, le=3600,
                             description="A fix older than this is not dead-reckoned")
    min_relative_kn: float = Field(default=1.0, ge=0, le=50,
                                   description="Opens only when the vessels' relative speed "
                                               "is at least this (vessels in company, a tow, "
                                               "keep their distance)")
    end_speed_kn: float = Field(default=2.0, ge=0, le=50,
                                description="An open alert ends when either is this slow "
                                            "or slower (at most speed_kn: a ferry hovering "
                                            "about speed_kn keeps its one alert)")
    reopen_s: float = Field(default=120.0, ge=0, le=3600,
                            description="After its alert ends, a pair opens again within "
                                        "this long only for a CPA under half the ended "
                                        "alert's smallest (a fix jittering about the "
                                        "passing point does not re-open it)")


class AnchorDragConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    learn_s: float = Field(default=1800.0, gt=0, le=86400,
                           description="Swing circle learned this long")
    margin_m: float = Field(default=100.0, ge=0, le=5000,
                            description="Limit = swing radius + margin")
    min_radius_m: float = Field(default=150.0, ge=0, le=5000, description="Limit at least this")
    settle_kn: float = Field(default=1.0, gt=0, le=10,
                             description="Only fixes slower than this are learnt (a crew may "
                                         "set 'at anchor' while still approaching)")
    reports: int = Field(default=2, ge=1, le=20, description="Consecutive reports outside")
    risk_area: Literal["port_operations", "natural_hazard"] = Field(
        default="port_operations", description="Risk area of the alert (natural_hazard for "
                                               "ports where dragging means weather)")


class SuddenStopConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    from_kn: float = Field(default=7.0, gt=0, le=50, description="Faster than this before")
    to_kn: float = Field(default=1.0, ge=0, le=20, description="Slower than this after")
    within_s: float = Field(default=30.0, gt=0, le=600, description="Drop happened within")
    hold_s: float = Field(default=60.0, ge=0, le=3600, description="Stopped for at least")


class PositionJumpConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    max_speed_kn: float = Field(default=50.0, gt=0, le=1000, description="Implied speed limit")
    min_distance_m: float = Field(default=1000.0, ge=0, le=1_000_000, description="Jump at least")
    confirm_reports: int = Field(default=3, ge=2, le=100,
                                 description="This many rejected fixes in a row that agree "
                                             "with each other are accepted (relocated)")
    clear_s: float = Field(default=300.0, gt=0, le=86400,
                           description="The alert ends after this long without a rejected fix")


class MmsiConflictConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    jumps: int = Field(default=3, ge=2, le=100, description="Back-and-forth jumps")
    window_s: float = Field(default=600.0, gt=0, le=86400, description="Within this time")


class SimpleRuleConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")


class IdentityChangeConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    fields: list[IdentityField] = Field(
        default_factory=_identity_fields,
        description="Static fields watched")
    flap_s: float = Field(default=3600.0, ge=0, le=30 * 86400,
                          description="A change back to a value held within this long is "
                                      "counted, not alerted again")


class EmergencyDeviceConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    end_after_s: float = Field(default=900.0, gt=0, le=86400,
                               description="Alert ends after the device is silent this long")


#: A receiver's name as ingest gives it: a tag-block station (printable ASCII, at most 64),
#: a $PGHP station or a source name (both narrower).
ReceiverName = Annotated[str, Field(pattern=r"^[ -~]{1,64}$")]
SilenceLimit = Annotated[float, BeforeValidator(_not_true_or_false), Field(gt=0, le=86400)]


class SourceSilentConfig(_Model):
    enabled: bool = Field(default=True, description="Run the rule")
    silent_s: float = Field(default=120.0, gt=0, le=86400,
                            description="Receiver silent longer than; also how long "
                                        "a live source may send no sentence before its "
                                        "MQTT status says offline")
    receiver_silent_s: dict[ReceiverName, SilenceLimit] = Field(
        default_factory=dict, max_length=1000,
        description="Receiver name (exact) -> its own silence limit in place of silent_s, "
                    "for a receiver that is sparse by nature (a remote station hearing a few "
                    "vessels, a satellite feed); also how long it may go unheard and still "
                    "count as hearing its vessels for dark_vessel")
    receivers: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=1000,
        description="Receivers to alert on, as shell patterns (fnmatch) of receiver names "
                    "(the tag-block or $PGHP station, else the source); '!pattern' leaves "
                    "receivers out. A national feed's hundreds of stations need not alert; "
                    "vessels only a silent receiver heard are never called dark, whether or "
                    "not it is listed")

    @field_validator("receivers", "receiver_silent_s", mode="before")
    @classmethod
    def _station_numbers_are_names(cls, value: Any) -> Any:
        """Gatehouse stations are numbers (``2190067``): YAML reads them unquoted as ints."""
        if isinstance(value, list):
            return [_name(v) for v in value]
        if isinstance(value, dict):
            return {_name(k): v for k, v in value.items()}
        return value

    def silent_s_for(self, receiver: str) -> float:
        """The silence limit of ``receiver``: its own, else ``silent_s``."""
        return self.receiver_silent_s.get(receiver, self.silent_s)


def _name(value: Any) -> Any:
    """An unquoted station number as the name it is (not true/false: no name)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RulesConfig(_Model):
    membership: MembershipConfig = Field(default_factory=MembershipConfig,
                                         description="Zone membership inertia")
    picture: PictureConfig = Field(default_factory=PictureConfig, description="Live picture")
    watch_area: Literal["everywhere", "port"] = Field(
        default="everywhere",
        description="port: raise alerts only for vessels inside the coverage or port_limit "
                    "zones (a national feed hears the whole coast); vessels elsewhere stay in "
                    "the picture, emergency devices alert everywhere")
    exempt_shiptypes: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        default_factory=lambda: [50, 51, 52, 53, 55],
        description="Ship types exempt from encounter and collision_risk (pilot, SAR, tug, "
                    "port tender, law enforcement)")
    zone_entry: ZoneEventConfig = Field(default_factory=ZoneEventConfig, description="zone_entry")
    zone_exit: ZoneEventConfig = Field(default_factory=ZoneEventConfig, description="zone_exit")
    restricted_entry: RestrictedEntryConfig = Field(default_factory=RestrictedEntryConfig,
                                                    description="restricted_entry")
    dark_vessel: DarkVesselConfig = Field(default_factory=DarkVesselConfig,
                                          description="dark_vessel")
    loitering: LoiteringConfig = Field(default_factory=LoiteringConfig, description="loitering")
    encounter: EncounterConfig = Field(default_factory=EncounterConfig, description="encounter")
    speeding: SpeedingConfig = Field(default_factory=SpeedingConfig, description="speeding")
    collision_risk: CollisionRiskConfig = Field(default_factory=CollisionRiskConfig,
                                                description="collision_risk")
    anchor_drag: AnchorDragConfig = Field(default_factory=AnchorDragConfig,
                                          description="anchor_drag")
    sudden_stop: SuddenStopConfig = Field(default_factory=SuddenStopConfig,
                                          description="sudden_stop")
    position_jump: PositionJumpConfig = Field(default_factory=PositionJumpConfig,
                                              description="position_jump")
    mmsi_conflict: MmsiConflictConfig = Field(default_factory=MmsiConflictConfig,
                                              description="mmsi_conflict")
    invalid_mmsi: SimpleRuleConfig = Field(default_factory=SimpleRuleConfig,
                                           description="invalid_mmsi")
    identity_change: IdentityChangeConfig = Field(default_factory=IdentityChangeConfig,
                                                  description="identity_change")
    emergency_device: EmergencyDeviceConfig = Field(default_factory=EmergencyDeviceConfig,
                                                    description="emergency_device")
    source_silent: SourceSilentConfig = Field(default_factory=SourceSilentConfig,
                                              description="source_silent")

    def rule_enabled(self, name: str) -> bool:
        """False when the rule's section says ``enabled: false``; unknown names are on."""
        section = getattr(self, name, None)
        return bool(getattr(section, "enabled", True))


# --- store, api, mqtt -----------------------------------------------------------------------

class StoreConfig(_Model):
    url: SecretStr | None = Field(
        default=None, description="sqlite:///path.db or postgresql://…; default SQLite next to the "
                          "config (env HARBOURWATCH_DB_URL)")
    batch_size: int = Field(default=500, ge=1, le=100_000, description="Rows per bulk write")
    flush_interval_s: float = Field(default=1.0, gt=0, le=300,
                                    description="Flush at least this often")
    buffer_rows: int = Field(default=100_000, ge=100, le=100_000_000,
                             description="Rows kept in memory, while the database "
                                         "catches up or is slow, before spooling to disk "
                                         "(while it is away every retry spools them)")
    spool_dir: Path | None = Field(default=None,
                                   description="Spool directory (default: beside the SQLite "
                                               "database, or the config for PostgreSQL); the "
                                               "live service, replays and drills each have "
                                               "a spool of their own there")
    retention_days: int | None = Field(default=90, ge=1, le=36500,
                                       description="Positions (and receiver-health "
                                                   "snapshots) older than this on the wall "
                                                   "clock are dropped: hourly by a live run, "
                                                   "by TimescaleDB's policy there; null: kept")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"^(sqlite|postgres|postgresql)://",
                                              value.get_secret_value()):
            raise ValueError("url must start with sqlite://, postgres:// or postgresql://")
        if value is not None and re.match(r"^sqlite://[^/]", value.get_secret_value()):
            # Other tools read sqlite://x.db as /x.db; run refused it after check-config
            # said ok.
            raise ValueError("use sqlite:///relative.db (beside the config) or "
                             "sqlite:////absolute.db")
        return value


class ApiToken(_Model):
    name: str = Field(pattern=SLUG, description="Who holds it (slug), shown in the audit trail")
    role: Literal["viewer", "operator", "admin"] = Field(description="What it may do")
    token: SecretStr | None = Field(default=None, description="The token itself "
                                                      "(env HARBOURWATCH_API_TOKEN_<NAME>)")
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                     description="Or its SHA-256, hex")

    @field_validator("token")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("empty: a token no one can present")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> ApiToken:
        if self.token is None and self.token_sha256 is None:
            raise ValueError(f"no token: set {token_variable(self.name)}, or give token or "
                             "token_sha256")
        if self.token is not None and self.token_sha256 is not None:
            raise ValueError("give exactly one of token or token_sha256")
        return self


class ApiConfig(_Model):
    enabled: bool = Field(default=False, description="Serve the HTTP API")
    host: str = Field(default="127.0.0.1", max_length=255, description="Listen address")
    port: int = Field(default=8080, ge=1, le=65535, description="Listen port")
    tokens: list[ApiToken] = Field(default_factory=list, description="Bearer tokens")
    open_read: bool = Field(default=False, description="Allow reads without a token")
    max_stream_clients: int = Field(default=100, ge=1, le=10_000,
                                    description="Live streams (GET /stream) open at once; "
                                                "beyond them 503 with Retry-After, counted "
                                                "(stream refused). Each holds a connection "
                                                "and a file descriptor; a port's screens are "
                                                "a handful")

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, value: list[ApiToken]) -> list[ApiToken]:
        _no_duplicates([t.name for t in value], "token name")
        return value


class MqttTls(_Model):
    enabled: bool = Field(default=False, description="Use TLS (implied by mqtts://)")
    ca_file: Path | None = Field(default=None, description="CA bundle")
    cert_file: Path | None = Field(default=None, description="Client certificate")
    key_file: Path | None = Field(default=None, description="Client key")
    insecure: bool = Field(default=False, description="Skip hostname verification (testing only)")


class MqttConfig(_Model):
    url: str | None = Field(default=None, pattern=r"^mqtts?://[^/\s]+(:\d+)?/?$",
                            description="mqtt://host:port or mqtts://host:port; none = off")
    prefix: str | None = Field(default=None, pattern=r"^[^#+\s]+$", max_length=200,
                               description="Topic prefix, default harbourwatch/<port>")
    username: str | None = Field(default=None, max_length=255,
                                 description="User (env HARBOURWATCH_MQTT_USERNAME)")
    password: SecretStr | None = Field(default=None, description="Password "
                                                         "(env HARBOURWATCH_MQTT_PASSWORD)")
    tls: MqttTls = Field(default_factory=MqttTls, description="TLS options")
    client_id: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="The live service's client id; unset: one generated per run. 1-23 "
                    "letters and digits is all MQTT 3.1.1 obliges a broker to take: another "
                    "is warned about (check-config, start-up), not refused, as most brokers "
                    "take it. Replays and drills use ids of their own")
    position_max_age_s: float = Field(default=300.0, gt=0, le=3600,
                                      description="Positions older than this are dropped, "
                                                  "not sent late (class A at anchor and "
                                                  "class B report every 3 min)")
    stats_interval_s: float = Field(default=60.0, gt=0, le=86400, description="Stats period")


def _no_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} {name!r}")
        seen.add(name)


class Config(_Model):
    version: int = Field(default=CURRENT_VERSION, ge=1, le=CURRENT_VERSION,
                         description="Config format version")
    port: PortConfig = Field(default_factory=PortConfig, description="The port")
    sources: list[SourceConfig] = Field(default_factory=list, description="AIS inputs")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Ingest")
    rules: RulesConfig = Field(default_factory=RulesConfig, description="Rules and thresholds")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Storage")
    api: ApiConfig = Field(default_factory=ApiConfig, description="HTTP API")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT feed")
    #: Where settings that name files were written ("port.yaml:4"), for messages about
    #: those files (and the MQTT client id, for its warning); a command-line flag writes
    #: its own name ("--zones").
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    def where(self, field: str) -> str:
        """``port.yaml:4: port.zones``, ``--zones``, or the field alone: what to name in a
        message about the file a setting names."""
        origin = self._origins.get(field)
        if origin is None:
            return field
        return origin if origin.startswith("--") else f"{origin}: {field}"

    def set_origin(self, field: str, origin: str) -> None:
        self._origins[field] = origin

    def origin(self, field: str) -> str | None:
        """Where a setting was written (``port.yaml:4``, ``--zones``, ``environment …``)."""
        return self._origins.get(field)

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: list[SourceConfig]) -> list[SourceConfig]:
        _no_duplicates([s.name for s in value], "source name")
        # Two listeners on one UDP port: the second could not start ("address in use").
        _no_duplicates([f"{s.host or '0.0.0.0'}:{s.port}" for s in value if s.kind == "udp"],
                       "UDP address")
        return value

    @model_validator(mode="after")
    def _default_prefix(self) -> Config:
        if self.mqtt.prefix is None:
            self.mqtt.prefix = f"harbourwatch/{self.port.name}"
        return self

    @classmethod
    def default_for_zones(cls, zones_path: str | Path, *,
                          env: Mapping[str, str] | None = None) -> Config:
        """Defaults for a run started with nothing but ``--zones``, with the secrets from
        the environment as a config file would take them (``HARBOURWATCH_DB_URL`` …)."""
        path = Path(zones_path)
        name = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-_")[:63] or "port"
        return _validated({"port": {"name": name, "zones": str(path.resolve())}},
                          "<environment>", None, env)


# --- loading --------------------------------------------------------------------------------

ENV_PREFIX = "HARBOURWATCH_"
TOKEN_VARIABLE_PREFIX = ENV_PREFIX + "API_TOKEN_"


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[Any, ...], str]:
    """Overlay secrets from the environment; return which locations came from which var."""
    origin: dict[tuple[Any, ...], str] = {}

    def section(key: str) -> dict[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            value = data[key] = {}
        return value

    for var, (sect, key) in {"MQTT_PASSWORD": ("mqtt", "password"),
                             "MQTT_USERNAME": ("mqtt", "username"),
                             "DB_URL": ("store", "url")}.items():
        if ENV_PREFIX + var in env:
            section(sect)[key] = env[ENV_PREFIX + var]
            origin[(sect, key)] = ENV_PREFIX + var
    tokens = section("api").get("tokens")
    used: set[str] = set()
    if isinstance(tokens, list):
        for index, entry in enumerate(tokens):
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                var = token_variable(entry["name"])
                if var in env:
                    used.add(var)
                    entry["token"] = env[var]
                    entry.pop("token_sha256", None)
                    origin[("api", "tokens", index, "token")] = var
    for var in sorted(env):
        if var.startswith(TOKEN_VARIABLE_PREFIX) and var not in used:
            name = var.removeprefix(TOKEN_VARIABLE_PREFIX).lower().replace("_", "-")
            log.warning("%s names no api.tokens entry %r and opens nothing: add the entry "
                        "(its role), or use %sAPI_TOKENS=%s:<role>:<token>", var, name,
                        ENV_PREFIX, name)
    return origin


def token_variable(name: str) -> str:
    """The environment variable that holds a configured token's secret."""
    return TOKEN_VARIABLE_PREFIX + name.upper().replace("-", "_")


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The deepest YAML node along a pydantic error location."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key, value in node.value:
                if key.value == str(part):
                    nxt = value if part != loc[-1] else key
                    break
            if nxt is None:
                return node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _field_at(loc: tuple[Any, ...]) -> tuple[Any, Any]:
    """The config model reached at a pydantic error location, and the field that led there
    (``(Config, None)`` for the top level; ``(None, None)`` past a model's fields)."""
    model: Any = Config
    info = None
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list of models
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None, None
        info = fields[part]
        model = info.annotation
        args = [a for a in get_args(model) if isinstance(a, type)]
        model = next((a for a in args if hasattr(a, "model_fields")), model)
    return model, info


def _description(loc: tuple[Any, ...]) -> str | None:
    """The description of the config field at a pydantic error location."""
    _model, info = _field_at(loc)
    return None if info is None else info.description


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """What to say of a key the config does not have: the one it is closest to (a typo, a
    unit: ``max_speed_kts``), else the keys there are."""
    model, _info = _field_at(loc[:-1])
    known = list(getattr(model, "model_fields", {}))
    if not known:
        return "unknown key"
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (keys here: {', '.join(known)})"


def _format_errors(exc: ValidationError, source: str, root: yaml.Node | None,
                   origin: dict[tuple[Any, ...], str]) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function")))
        field = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":  # pydantic's words name no key to use
            msg = _unknown_key(loc)
        elif err["type"] == "string_pattern_mismatch":  # a regex says little: say the form
            # (Not echoing the value: token_sha256 may hold a pasted token.)
            if (err.get("ctx") or {}).get("pattern") == SLUG:
                msg = ("not a slug (a-z, 0-9, '_' and '-', starting with a letter or digit, "
                       "at most 63)")
            else:
                described = _description(loc)  # none for a mapping's key
                msg = f"not of the form: {described}" if described else msg
        if loc in origin:
            lines.append(f"{source}: {field} (from environment {origin[loc]}): {msg}")
            continue
        node = _node_at(root, loc)
        where = f"{source}:{node.start_mark.line + 1}" if node is not None else source
        lines.append(f"{where}: {field}: {msg}")
    return lines


def migrate(data: dict[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Bring a document to :data:`CURRENT_VERSION` through :data:`MIGRATIONS`, in order."""
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError([f"{source}: version: must be an integer, not {version!r}"])
    if version > CURRENT_VERSION:
        raise ConfigError([f"{source}: version: {version} is newer than this harbourwatch "
                           f"understands ({CURRENT_VERSION})"])
    while version < CURRENT_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ConfigError([f"{source}: version: no migration from version {version}"])
        data = step(data)
        version += 1
        data["version"] = version
    return data


def parse_config(text: str, source: str = "<config>", *, base_dir: Path | None = None,
                 env: Mapping[str, str] | None = None) -> Config:
    """Validate YAML text; relative paths resolve against ``base_dir``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from exc
    repeated = _repeated_keys(root)
    if repeated:
        # YAML keeps the last silently: a second ``sources:`` wiped the first.
        raise ConfigError([f"{source}:{line}: {key!r} given twice (first on line {first})"
                           for key, first, line in repeated])
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: the config must be a mapping of sections"])
    config = _validated(migrate(data, source), source, root, env)
    if base_dir is not None:
        _resolve_paths(config, base_dir)
    fields = [("port", "zones"), ("mqtt", "client_id"), ("mqtt", "tls", "ca_file"),
              ("mqtt", "tls", "cert_file"), ("api", "port")] + [
        ("sources", i, key) for i in range(len(config.sources)) for key in ("path", "port")]
    for loc in fields:
        node = _node_at(root, loc)
        if node is not None and node.value == loc[-1]:  # the key itself: it was written
            config.set_origin(".".join(map(str, loc)), f"{source}:{node.start_mark.line + 1}")
    return config


def _validated(data: dict[str, Any], source: str, root: yaml.Node | None,
               env: Mapping[str, str] | None) -> Config:
    """``data`` with the environment's secrets over it, validated; errors name where."""
    origin = _apply_env(data, os.environ if env is None else env)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, root, origin)) from exc
    for loc, var in origin.items():
        config.set_origin(".".join(map(str, loc)), f"environment {var}")
    return config


def _repeated_keys(node: yaml.Node | None) -> list[tuple[str, int, int]]:
    """(key, first line, repeated line) of every key given twice in one mapping."""
    out: list[tuple[str, int, int]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            line = key.start_mark.line + 1
            if name in seen:
                out.append((name, seen[name], line))
            else:
                seen[name] = line
            out += _repeated_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out += _repeated_keys(item)
    return out


def _resolve_paths(config: Config, base: Path) -> None:
    def resolve(path: Path | None) -> Path | None:
        return None if path is None or path.is_absolute() else (base / path).resolve()

    if config.port.zones is not None:
        config.port.zones = resolve(config.port.zones) or config.port.zones
    for item in config.sources:  # like the zones: relative to the config file, not the cwd
        if item.log_path is not None:
            item.path = str(resolve(item.log_path) or item.path)
    if config.store.spool_dir is not None:
        config.store.spool_dir = resolve(config.store.spool_dir) or config.store.spool_dir
    url = config.store.url.get_secret_value() if config.store.url is not None else ""
    if url.startswith("sqlite:///") and config.origin("store.url") is None:
        # Written in the file: beside it, like every other path there (under systemd the
        # working directory is /). A URL from --db or the environment is the shell's.
        db = Path(url.removeprefix("sqlite:///"))
        config.store.url = SecretStr(f"sqlite:///{resolve(db) or db}")
    tls = config.mqtt.tls
    for name in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, name)
        if value is not None:
            setattr(tls, name, resolve(value) or value)


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raise :class:`ConfigError` naming file, line, field."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError([f"{file}:{line}: not UTF-8 text (byte {exc.start})"]) from exc
    return parse_config(text, str(file), base_dir=file.parent.resolve(), env=env)


def api_authenticator(config: Config, env: Mapping[str, str] | None = None) -> Authenticator:
    """The API's tokens (config and environment), or the ConfigError that stops a run: the
    API task would fail alone, leaving the service running without its API."""
    from api.auth import Authenticator

    try:
        return Authenticator.from_config(config.api.tokens, open_read=config.api.open_read,
                                         env=env)
    except ValueError as exc:
        raise ConfigError([f"api.tokens: {exc}"]) from exc


def check_config(path: str | Path | None, zones: str | Path | None = None, *,
                 env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem in a config file and its zones (empty when both load)."""
    from geofence.zones import ZoneError, ZoneSet

    try:
        config = load_config(path, env=env) if path is not None else (
            Config.default_for_zones(zones, env=env) if zones is not None else Config())
    except ConfigError as exc:
        return exc.errors
    where = str(path) if path is not None else "<flags>"
    # What ``run`` finds only when it starts (it said "ok" here, then stopped there).
    errors = [f"{config.where(f'sources.{index}.path')}: source {item.name}: no such file: "
              f"{item.path}" for index, item in enumerate(config.sources)
              if item.log_path is not None and not item.log_path.exists()]  # FIFOs play
    try:  # also without api.enabled: ``run --serve`` turns the API on
        api_authenticator(config, env)
    except ConfigError as exc:
        errors += [f"{where}: {e}" for e in exc.errors]
    if config.mqtt.url is not None:
        from api.mqtt import MqttConfigError, MqttFeed, client_id_warning

        try:
            MqttFeed.from_config(config.mqtt, port_name=config.port.name)
        except MqttConfigError as exc:  # it names the mqtt setting; the line when known
            placed = exc.placed(config.origin)
            errors.append(str(placed) if placed is not exc else f"{where}: {exc}")
        problem = client_id_warning(config.mqtt.client_id)
        if problem is not None:  # said, as run says it; some brokers take it
            log.warning("%s: %s", config.where("mqtt.client_id"), problem)
    if zones is not None:
        config.port.zones = Path(zones)
        config.set_origin("port.zones", "--zones")
    if config.port.zones is not None:
        try:
            zones_file(config)
            loaded = ZoneSet.from_geojson(config.port.zones, projection=config.port.projection)
        except (ZoneError, ConfigError) as exc:
            errors += exc.errors
        else:
            from geofence.engine import zone_set_warnings

            # Not errors (a port may want it so), but said: run would only log them.
            for warning in ([f"{config.port.zones}: no zone in the file"] if not len(loaded)
                            else zone_set_warnings(config.rules, loaded)):
                log.warning("%s", warning)
    return errors


def zones_file(config: Config) -> Path | None:
    """The zones file the config names; :class:`ConfigError` naming the setting's file and
    line when there is no such file (the GeoJSON's own errors name the GeoJSON file)."""
    path = config.port.zones
    if path is not None and not path.exists():
        raise ConfigError([f"{config.where('port.zones')}: no such file: {path}"])
    return path
