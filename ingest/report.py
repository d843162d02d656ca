"""The decoded vessel report: one AIS message, in gpsd/pyais field names and units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

#: Fields copied to JSON (when not null, or carried by the type), in this order
#: (gpsd/pyais names).
REPORT_FIELDS: tuple[str, ...] = (
    "lat", "lon", "speed", "course", "heading", "turn", "status", "accuracy",
    "shipname", "callsign", "imo", "shiptype", "to_bow", "to_stern", "to_port",
    "to_starboard", "draught", "destination",
)

_KINEMATICS = ("lat", "lon", "speed", "course", "heading")
_DIMENSIONS = ("to_bow", "to_stern", "to_port", "to_starboard")
#: The fields each message type carries: in JSON even when "not available" (null), so a
#: reader tells "not available" from "not in this message" (the rest are left out).
CARRIED_FIELDS: dict[int, frozenset[str]] = {
    **dict.fromkeys((1, 2, 3), frozenset((*_KINEMATICS, "turn", "status", "accuracy"))),
    18: frozenset((*_KINEMATICS, "accuracy")),
    19: frozenset((*_KINEMATICS, "accuracy", "shipname", "shiptype", *_DIMENSIONS)),
    27: frozenset(("lat", "lon", "speed", "course", "status", "accuracy")),
    9: frozenset(("lat", "lon", "speed", "course", "accuracy")),
    **dict.fromkeys((4, 11), frozenset(("lat", "lon", "accuracy"))),
    21: frozenset(("lat", "lon", "accuracy", "shipname", *_DIMENSIONS)),
    5: frozenset(("shipname", "callsign", "imo", "shiptype", *_DIMENSIONS, "draught",
                  "destination")),
}

POSITION_TYPES = frozenset({1, 2, 3, 4, 9, 11, 18, 19, 21, 27})
CLASS_A_TYPES = frozenset({1, 2, 3, 5})
CLASS_B_TYPES = frozenset({14, 18, 19, 24})
STATIC_TYPES = frozenset({5, 19, 21, 24})


@lru_cache(maxsize=4096)
def iso_time(ts: float) -> str:
    """ISO 8601 UTC with a `Z` and millisecond precision when the time has a fraction.

    Cached: times repeat (many reports a second, a report quoted by several alerts, an
    alert's start in each of its transitions), and formatting costs more than a lookup.
    """
    moment = datetime.fromtimestamp(ts, UTC)
    if moment.year < 1000:  # glibc's %Y does not pad them ("1-01-01"): no ISO 8601
        fraction = f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""
        return f"{moment.year:04d}{moment.strftime('-%m-%dT%H:%M:%S')}{fraction}Z"
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


#: Static and voyage data fields of a report (types 5, 19, 24): what every picture merges.
STATIC_FIELDS: tuple[str, ...] = (
    "shipname", "callsign", "imo", "shiptype", "to_bow", "to_stern", "to_port",
    "to_starboard", "draught", "destination",
)


@dataclass(slots=True, eq=False)
class Report:
    """One decoded AIS message, "not available" values already turned into ``None``.

    ``time`` is message time in Unix seconds (see DESIGN "Time is message time");
    ``time_source`` says where it came from: ``tagblock``, ``line``, ``receive``,
    ``basestation``, ``carried`` (the source's previous line) or ``none`` (a log with no
    time at all; ``time`` is then 0 and the JSON shows null). ``sources`` lists every
    receiver that heard it (duplicates from other receivers are appended here rather
    than processed again).
    """

    mmsi: int
    msg_type: int
    time: float
    time_source: str
    sources: list[str]
    nmea: list[str]
    own: bool = False
    channel: str | None = None
    lat: float | None = None
    lon: float | None = None
    speed: float | None = None
    course: float | None = None
    heading: int | None = None
    turn: float | None = None
    status: int | None = None
    accuracy: bool | None = None
    shipname: str | None = None
    callsign: str | None = None
    imo: int | None = None
    shiptype: int | None = None
    to_bow: int | None = None
    to_stern: int | None = None
    to_port: int | None = None
    to_starboard: int | None = None
    draught: float | None = None
    destination: str | None = None
    partno: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None

    @property
    def fix_rejected(self) -> bool:
        """The rules rejected its fix (``extra["suspect"]``: a position jump, an MMSI
        conflict): kept and counted, but it moves no vessel on a map."""
        return "suspect" in self.extra

    @property
    def not_admitted(self) -> bool:
        """The rules did not admit its MMSI (``rules.picture.max_vessels`` held already):
        stored, but kept out of every per-vessel table (the API's picture, MQTT)."""
        return "not_admitted" in self.extra

    @property
    def ais_class(self) -> str | None:
        """``A`` or ``B`` for ship transponders, ``None`` for stations, AtoN and others."""
        if self.msg_type in CLASS_A_TYPES:
            return "A"
        if self.msg_type in CLASS_B_TYPES:
            return "B"
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the design, time as ISO 8601 UTC: the fields the message type
        carries, null when "not available", and the others it set."""
        out: dict[str, Any] = {
            "mmsi": self.mmsi,
            "msg_type": self.msg_type,
            "time": None if self.time_source == "none" else iso_time(self.time),
        }
        carried = CARRIED_FIELDS.get(self.msg_type, frozenset())
        for name in REPORT_FIELDS:
            value = getattr(self, name)
            if value is not None or name in carried:
                out[name] = value
        if self.partno is not None:
            out["partno"] = self.partno
        if self.extra:
            out.update(self.extra)
        out["channel"] = self.channel
        out["own"] = self.own
        out["sources"] = list(self.sources)
        out["time_source"] = self.time_source
        out["nmea"] = list(self.nmea)
        return out


def statics_to_apply(held: Mapping[str, Any], fields: Mapping[str, Any],
                     newer: bool) -> Mapping[str, Any]:
    """The static fields a report may set over ``held``: all of them when it is not older
    than the static data held, else only those still unknown (a late copy of an older
    report from another receiver must not rename the vessel back)."""
    return fields if newer else {k: v for k, v in fields.items() if held.get(k) is None}
