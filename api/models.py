"""Request and response shapes of the HTTP API (pydantic v2), with OpenAPI examples.

Field names and units follow gpsd/pyais (speed in knots, times ISO 8601 UTC with ``Z``);
GeoJSON follows RFC 7946 (``[lon, lat]``, WGS 84).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_ALERT_EXAMPLE: dict[str, Any] = {
    "id": "3f1c0b5e9a7d2c4e6f80", "rule": "dark_vessel", "risk_area": "criminal_activity",
    "severity": "warning", "state": "open", "mmsi": 244123456, "other_mmsi": None,
    "shipname": "NORTHERN STAR", "zone": "berth_3", "lat": 51.9, "lon": 4.1,
    "started_at": "2026-01-01T10:00:00Z", "ended_at": None, "drill": False,
    "details": {"silent_s": 720}, "updated_at": "2026-01-01T10:00:00Z",
    "acknowledged_at": None, "acknowledged_by": None, "ack_note": None,
    "resolved_at": None, "resolved_by": None, "resolve_note": None,
}


class ErrorOut(BaseModel):
    """Every error: a message for people and details for programs."""

    error: str = Field(description="What went wrong, in one sentence")
    detail: Any = Field(default=None, description="Specifics (invalid fields, zone problems)")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": "zones rejected", "detail": ["feature 'berth_1': unknown kind 'pier'"]}]})


class VesselOut(BaseModel):
    """One vessel of the live picture: latest position plus static and voyage data."""

    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"examples": [{
        "mmsi": 244123456, "time": "2026-01-01T10:00:00Z", "class": "A", "msg_type": 1,
        "lat": 51.9, "lon": 4.1, "speed": 5.2, "course": 87.5, "heading": 88, "turn": 0.0,
        "status": 0, "accuracy": True, "shipname": "NORTHERN STAR", "callsign": "PD1234",
        "imo": 9123456, "shiptype": 70, "to_bow": 80, "to_stern": 20, "to_port": 8,
        "to_starboard": 8, "draught": 6.5, "destination": "ROTTERDAM",
        "sources": ["rx1"], "drill": False}]})

    mmsi: int
    time: str | None = Field(description="Message time of the latest position")
    ais_class: Literal["A", "B"] | None = Field(alias="class", default=None)
    msg_type: int | None = None
    lat: float | None = None
    lon: float | None = None
    speed: float | None = Field(default=None, description="Knots")
    course: float | None = Field(default=None, description="Degrees true")
    heading: int | None = None
    turn: float | None = None
    status: int | None = Field(default=None, description="Navigational status (0-15)")
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
    sources: list[str] = Field(default_factory=list)
    drill: bool = False


class VesselList(BaseModel):
    count: int = Field(description="Vessels listed")
    total: int = Field(description="Vessels that matched the filters")
    truncated: bool = Field(description="More matched than `limit`: the most recently "
                                        "heard are listed, newest first")
    vessels: list[VesselOut]


class PointGeometry(BaseModel):
    type: Literal["Point"]
    coordinates: list[float] = Field(description="[lon, lat]")


class VesselFeature(BaseModel):
    type: Literal["Feature"]
    id: int
    geometry: PointGeometry
    properties: dict[str, Any]


class VesselCollection(BaseModel):
    """``GET /vessels?format=geojson``: a FeatureCollection of Points."""

    type: Literal["FeatureCollection"]
    count: int = Field(description="Features listed")
    total: int = Field(description="Vessels that matched the filters")
    truncated: bool = Field(description="More matched than `limit`")
    features: list[VesselFeature]


class LineGeometry(BaseModel):
    type: Literal["LineString"]
    coordinates: list[list[float]] = Field(description="[[lon, lat], ...]")


class TrackOut(BaseModel):
    """A track as a GeoJSON Feature; one time per vertex in ``coordinateProperties.times``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "type": "Feature", "id": 244123456,
        "geometry": {"type": "LineString", "coordinates": [[4.1, 51.9], [4.101, 51.901]]},
        "properties": {"mmsi": 244123456, "start": "2026-01-01T10:00:00Z",
                       "end": "2026-01-01T11:00:00Z", "points": 2,
                       "coordinateProperties": {
                           "times": ["2026-01-01T10:00:00Z", "2026-01-01T10:00:10Z"],
                           "speed": [5.2, 5.3], "course": [87.5, 88.0]}}}]})

    type: Literal["Feature"]
    id: int
    geometry: LineGeometry | None = Field(description="null when fewer than two points")
    properties: dict[str, Any]


class AlertOut(BaseModel):
    """An alert (DESIGN "Alerts") with the operator's acts."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ALERT_EXAMPLE]})

    id: str
    rule: str
    risk_area: str
    severity: str
    state: Literal["open", "acknowledged", "ended", "resolved"]
    mmsi: int | None = None
    other_mmsi: int | None = None
    shipname: str | None = None
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    started_at: str
    ended_at: str | None = None
    drill: bool = False
    details: dict[str, Any] = Field(default_factory=dict)
    updated_at: str | None = None
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    ack_note: str | None = None
    resolved_at: str | None = None
    resolved_by: str | None = None
    resolve_note: str | None = None


class AuditEntry(BaseModel):
    alert_id: str | None
    # Two clocks, as each writer has its own: the rules run on message time (DESIGN "Time
    # is message time"), an operator acts now.
    time: str | None = Field(description=(
        "When it happened, on the clock of whoever did it: for the rules' transitions "
        "(actor `rules`) the rules' clock, i.e. the message time of the report that made it "
        "(in a live run moved on by the wall clock while every source is silent); for an "
        "operator's act (actor: a token name) the wall time of the act. In a live run the "
        "two agree to within the feed's latency; in a replay or drill of a recorded log "
        "they do not (a 2012 log's transitions next to this year's acts)"))
    message_time: str | None = Field(default=None, description=(
        "When it happened on the rules' clock (message time): for the rules' transitions "
        "the same as `time`; for an operator's act the rules' clock when the act was taken "
        "(in a drill, the point of the exercise at which the trainee acted: a debrief reads "
        "the time to acknowledge from it). Null for an act stored before harbourwatch kept "
        "it, or made on an API that runs no rules"))
    actor: str | None = Field(description="Token name, or 'rules' for rule transitions")
    action: str
    note: str | None = None
    before: Any = None
    after: Any = None


class AlertDetail(AlertOut):
    """``GET /alerts/{id}``: the alert and its audit trail."""

    audit: list[AuditEntry] = Field(description=(
        "Every transition and act, in the order recorded: not sorted by `time`, which is "
        "on two clocks (see AuditEntry)"))
    source: Literal["memory"] | None = Field(default=None, description=(
        "Only while the database is away: `memory` (the trail is then in the database, "
        "`audit` has only an act just queued)"))


class AlertPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"total": 1, "limit": 100, "offset": 0, "next": None, "alerts": [_ALERT_EXAMPLE]}]})

    total: int = Field(description="Alerts matching the filters, over all pages")
    limit: int
    offset: int
    next: str | None = Field(description="For the next page: `after=<next>` (null on the "
                                         "last page)")
    alerts: list[AlertOut]
    source: Literal["memory"] | None = Field(default=None, description=(
        "Only while the database is away: `memory`, the alerts the running rules hold "
        "(also in the `X-Harbourwatch-Source` header)"))
    incomplete: dict[str, str] | None = Field(default=None, description=(
        "With `source`: each filter memory could not honour in full, and why (ended "
        "alerts are in the database only)"))


class ResponseTimesOut(BaseModel):
    count: int = Field(description="Alerts whose act has a message time")
    median_s: float
    p90_s: float = Field(description="90th percentile, linear between the two nearest "
                                     "values (as PostgreSQL's percentile_cont)")
    longest_s: float


class AlertSummary(BaseModel):
    """Alerts that started in ``[start, end)``: counts, and how fast they were answered."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z", "total": 3,
        "by_kind": {"live": 3, "drill": 0},
        "by_risk_area": {"criminal_activity": 2, "port_operations": 1},
        "by_rule": {"dark_vessel": 2, "speeding": 1}, "by_severity": {"warning": 3},
        "by_state": {"acknowledged": 1, "ended": 1, "open": 1},
        "acknowledged": 1, "resolved": 0, "unanswered": 2,
        "time_to_acknowledge": {
            "all": {"count": 1, "median_s": 40.0, "p90_s": 40.0, "longest_s": 40.0},
            "criminal_activity": {"count": 1, "median_s": 40.0, "p90_s": 40.0,
                                  "longest_s": 40.0}},
        "time_to_resolve": {}, "snoozes": {"loitering": 1}}]})

    start: str | None
    end: str | None
    total: int
    by_kind: dict[str, int] = Field(description="`live` and `drill` alerts")
    by_risk_area: dict[str, int]
    by_rule: dict[str, int]
    by_severity: dict[str, int]
    by_state: dict[str, int]
    acknowledged: int
    resolved: int
    unanswered: int = Field(description="Neither acknowledged nor resolved")
    time_to_acknowledge: dict[str, ResponseTimesOut] = Field(description=(
        "`all`, then each risk area: seconds of message time from the alert's raising "
        "(its `new`) to the act's `message_time`; an act with no `message_time`, or one "
        "dated before the `new` (another run's clock), counts as made but is not timed"))
    time_to_resolve: dict[str, ResponseTimesOut]
    snoozes: dict[str, int] | None = Field(description=(
        "Snooze acts made in the period (wall time), by rule; null with `zone` or "
        "`risk_area` (a snooze names neither) and for drills (their snoozes are not "
        "stored)"))


class NoteIn(BaseModel):
    """Body of ``POST /alerts/{id}/ack`` and ``/resolve`` (the body may be omitted)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"note": "Pilot boat confirmed on scene"}]})

    note: str | None = Field(default=None, max_length=2000)


class SnoozeIn(BaseModel):
    """Silence one rule for one vessel for a while; it re-arms by itself afterwards."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"rule": "loitering", "mmsi": 244123456, "duration_s": 3600,
         "note": "Bunker barge, expected"}]})

    rule: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    mmsi: int = Field(ge=0, le=999_999_999)
    duration_s: float = Field(gt=0, le=30 * 86400, description="Seconds (at most 30 days)")
    note: str | None = Field(default=None, max_length=2000)


class SnoozeOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "loitering:244123456", "rule": "loitering", "mmsi": 244123456,
         "until": "2026-01-01T11:00:00Z", "actor": "duty-officer", "note": "Bunker barge",
         "created": "2026-01-01T10:00:00Z", "active": True}]})

    id: str = Field(description="'<rule>:<mmsi>', used by DELETE /snoozes/{id}")
    rule: str
    mmsi: int
    until: str = Field(description="Message time at which the rule re-arms")
    actor: str
    note: str | None = None
    created: str = Field(description="Wall time of the act")
    active: bool


class SnoozeActOut(BaseModel):
    """One snooze or unsnooze, as the audit trail keeps it."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"time": "2026-01-01T10:00:00Z", "actor": "duty-officer", "action": "snooze",
         "rule": "loitering", "mmsi": 244123456, "until": "2026-01-01T11:00:00Z",
         "note": "Bunker barge"}]})

    time: str = Field(description="Wall time of the act")
    actor: str
    action: Literal["snooze", "unsnooze"]
    rule: str | None
    mmsi: int | None
    until: str | None = Field(description="Message time the snooze ran to (snooze only)")
    note: str | None = None


class ZonesOut(BaseModel):
    """The running zones: a FeatureCollection plus version metadata (foreign members)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]]
    version: int | None = Field(default=None, description="Store version; null if never saved")
    updated_at: str | None = None
    updated_by: str | None = None


class ZonesIn(BaseModel):
    """A GeoJSON FeatureCollection of zones (DESIGN "Zones"); validated in full on PUT."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "FeatureCollection", "features": [{
            "type": "Feature",
            "properties": {"id": "berth_1", "name": "Berth 1", "kind": "berth"},
            "geometry": {"type": "Polygon", "coordinates": [[
                [151.25, -23.83], [151.26, -23.83], [151.26, -23.82], [151.25, -23.82],
                [151.25, -23.83]]]}}]}]})

    type: str
    features: list[Any]


class ZonesSaved(BaseModel):
    version: int | None = Field(description="null: applied to this replay or drill only, "
                                            "not saved as the port's zones")
    zones: int = Field(description="Number of zones now running")
    warnings: list[str]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded: the database or the MQTT broker is away (what they miss is "
                    "buffered and caught up); the API and the rules go on")
    version: str
    store_up: bool
    mqtt_connected: bool | None = Field(description="null when the run feeds no broker")


class SourcesOut(BaseModel):
    """Per-source counters and per-receiver last heard (DESIGN "Ingest contract")."""

    sources: dict[str, Any]
    receivers: dict[str, Any]
