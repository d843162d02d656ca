"""The alert object of the design, its enums and its deterministic id."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ingest.report import iso_time


class RiskArea(StrEnum):
    """ISO 28004-2 risk areas; every alert names one."""

    PORT_OPERATIONS = "port_operations"
    CRIMINAL_ACTIVITY = "criminal_activity"
    FIRE = "fire"
    FINANCIAL = "financial"
    INFORMATION_SECURITY = "information_security"
    NATURAL_HAZARD = "natural_hazard"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    """``open``/``ended`` follow the condition; ``acknowledged``/``resolved`` are operator acts."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ENDED = "ended"
    RESOLVED = "resolved"


class Transition(StrEnum):
    """What happened to an alert, as published on MQTT and in ``--alerts-out``."""

    NEW = "new"
    UPDATE = "update"
    END = "end"


def alert_id(rule: str, mmsi: int | None, other_mmsi: int | None, zone: str | None,
             started_at: float, drill: bool = False) -> str:
    """Deterministic: a replay of the same log yields the same ids. A drill's alerts have
    ids of their own, so a drill replayed into the live database never takes over (and
    marks as drill) the real alerts of the same log."""
    key = f"{rule}|{mmsi}|{other_mmsi}|{zone}|{started_at:.3f}" + ("|drill" if drill else "")
    return hashlib.sha1(key.encode()).hexdigest()[:20]


@dataclass(slots=True, eq=False)
class Alert:
    """One alert; times are message time in Unix seconds."""

    rule: str
    risk_area: RiskArea
    severity: Severity
    mmsi: int | None
    started_at: float
    other_mmsi: int | None = None
    shipname: str | None = None
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    state: AlertState = AlertState.OPEN
    ended_at: float | None = None
    drill: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = alert_id(self.rule, self.mmsi, self.other_mmsi, self.zone, self.started_at,
                               self.drill)

    @property
    def is_active(self) -> bool:
        """Condition still holds (open or acknowledged)."""
        return self.state in (AlertState.OPEN, AlertState.ACKNOWLEDGED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "risk_area": str(self.risk_area),
            "severity": str(self.severity),
            "state": str(self.state),
            "mmsi": self.mmsi,
            "other_mmsi": self.other_mmsi,
            "shipname": self.shipname,
            "zone": self.zone,
            "lat": self.lat,
            "lon": self.lon,
            "started_at": iso_time(self.started_at),
            "ended_at": None if self.ended_at is None else iso_time(self.ended_at),
            "drill": self.drill,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        """Inverse of :meth:`to_dict` (times parsed back to Unix seconds)."""
        from harbourwatch.timeutil import parse_iso

        ended = data.get("ended_at")
        return cls(
            id=data["id"],
            rule=data["rule"],
            risk_area=RiskArea(data["risk_area"]),
            severity=Severity(data["severity"]),
            state=AlertState(data["state"]),
            mmsi=data.get("mmsi"),
            other_mmsi=data.get("other_mmsi"),
            shipname=data.get("shipname"),
            zone=data.get("zone"),
            lat=data.get("lat"),
            lon=data.get("lon"),
            started_at=parse_iso(data["started_at"]),
            ended_at=None if ended is None else parse_iso(ended),
            drill=bool(data.get("drill", False)),
            details=dict(data.get("details") or {}),
        )


@dataclass(slots=True, frozen=True)
class AlertEvent:
    """An alert transition handed to the sinks: a snapshot, safe to keep."""

    transition: Transition
    alert: dict[str, Any]
    time: float
