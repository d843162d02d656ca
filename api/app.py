"""The HTTP API: ``create_app(deps)`` builds a FastAPI app from its collaborators.

Routes read the live picture, the store and the providers in :class:`~api.deps.ApiDeps`;
writes go to the store (which keeps the audit trail with the caller's token name and the
wall time) and, for zones, to the running rules. Errors are JSON ``{"error", "detail"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import abc
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import models as m
from api import vessel_list
from api.auth import Authenticator, AuthError, Principal, Role
from api.deps import AlertMemory, ApiDeps, PictureView
from api.drill_snoozes import DrillSnoozes, SnoozeKeeper
from api.guard import BodyGuard
from api.memory_acts import act_audit, act_in_memory
from api.memory_alerts import (
    SOURCE_HEADER,
    MemoryCannotAnswer,
    held_alert,
    page_from_memory,
)
from api.metrics import CONTENT_TYPE, ServiceCollector, make_registry, render
from api.service_stats import service_stats
from api.stream import StreamFilter, StreamFull
from geofence.alert import RiskArea, Severity
from geofence.zones import ZONE_ID, ZoneError, ZoneSet
from harbourwatch.timeutil import iso_time, parse_iso
from store.base import (
    AlertQuery,
    Conflict,
    NotFound,
    QueuedAct,
    Snooze,
    StoreError,
    StoreUnavailable,
)
from store.rows import ACT_NAMES

log = logging.getLogger(__name__)
_Q = TypeVar("_Q")
_R = TypeVar("_R")

GEOJSON = "application/geo+json"
#: Where the /docs and /redoc pages load their scripts and styles from.
DOCS_STATIC = "/docs/static"
#: Rule names of DESIGN "Rules"; a snooze for anything else is a typo, rejected.
DESIGN_RULES = frozenset({
    "zone_entry", "zone_exit", "restricted_entry", "dark_vessel", "loitering", "encounter",
    "speeding", "collision_risk", "anchor_drag", "sudden_stop", "position_jump",
    "mmsi_conflict", "invalid_mmsi", "identity_change", "emergency_device", "source_silent",
})
_MAX_MMSI = 999_999_999
ALERT_STATES = ("open", "acknowledged", "ended", "resolved")
RISK_AREAS = tuple(area.value for area in RiskArea)
SEVERITIES = tuple(level.value for level in Severity)
#: Seconds an act waits for the store writer's pass before it (see ``act``); past it the
#: writer is stuck on a database that does not answer, and the act is queued instead.
ACT_FLUSH_WAIT_S = 5.0
#: On an act's 202: ``disk`` once it is spooled (a crash or power cut before the database is
#: back does not lose it), ``memory`` when the spool could not be written (a full disk).
QUEUED_HEADER = "X-Harbourwatch-Queued"
#: Marks a query parameter's schema as a comma-separated list (see ``_listed``).
COMMA_SEPARATED = "x-comma-separated"
#: A client turned away at api.max_stream_clients may try again after this long (s).
STREAM_RETRY_AFTER_S = 30

Mmsi = Annotated[int, Path(ge=0, le=_MAX_MMSI, description="9-digit MMSI")]
#: A zone id as the zones file spells it (a slug): what is not one names no zone, then or now.
ZONE_ID_PATTERN = ZONE_ID.pattern
AlertId = Annotated[str, Path(min_length=1, max_length=64, description="Alert id")]


_bearer = HTTPBearer(auto_error=False, description="Token from api.tokens "
                     "(viewer < operator < admin)")


def _need(role: Role) -> Callable[..., Principal]:
    """A dependency checking the caller against the app's authenticator."""

    def check(request: Request, _: Annotated[Any, Depends(_bearer)] = None) -> Principal:
        auth: Authenticator = request.app.state.auth
        principal = auth.check(request.headers.get("authorization"), role)
        _only_known_query_parameters(request)  # after the token: names are for callers
        return principal

    return check


Viewer = Annotated[Principal, Depends(_need(Role.VIEWER))]
Operator = Annotated[Principal, Depends(_need(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(_need(Role.ADMIN))]


class ApiError(Exception):
    """An error answer: status, message and optional details."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


@dataclass(slots=True)
class _ZoneState:
    zones: ZoneSet
    version: int | None = None
    updated_at: str | None = None
    updated_by: str | None = None
    checked_store: bool = False


def _not_json(request: Request, detail: list[dict[str, Any]]) -> str | None:
    """The media type a refused body was sent as, when it is not JSON (else None)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    if not any(d["loc"][:1] == ["body"] for d in detail):
        return None
    return media or "no Content-Type"


def _error(status: int, error: str, detail: Any = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status,
                        headers=dict(headers) if headers else None)


def _dump(obj: Any, media_type: str = "application/json") -> Response:
    return Response(json.dumps(obj, separators=(",", ":")), media_type=media_type)


#: The times a datetime can show (ISO 8601 years 1 to 9999), in Unix seconds.
_FIRST_TIME = -62_135_596_800.0
_LAST_TIME = 253_402_300_799.0


def _parse_time(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        ts = parse_iso(value)
    except (ValueError, OverflowError) as exc:
        raise ApiError(422, _plus_read_as_space(value, name)
                       or f"{name}: not an ISO 8601 time ({value!r})") from exc
    if not math.isfinite(ts):
        raise ApiError(422, f"{name}: not a finite time")
    if not _FIRST_TIME <= ts <= _LAST_TIME:
        raise ApiError(422, f"{name}: out of range (years 1 to 9999)")
    return ts


def _plus_read_as_space(value: str, name: str) -> str | None:
    """The error for a time whose offset's ``+`` the URL's query decoded to a space
    (``…T22:00:00+10:00`` typed unescaped, as a port east of Greenwich writes local time),
    else None: "not an ISO 8601 time" would blame a time that was right."""
    stamp, space, offset = value.rpartition(" ")
    if not space or not offset.replace(":", "").isdigit():
        return None
    try:
        parse_iso(f"{stamp}+{offset}")
    except (ValueError, OverflowError):
        return None
    return (f"{name}: {value!r} has a space where its offset's '+' was: a URL query reads "
            f"'+' as a space; write it %2B ({stamp}%2B{offset}), or give the time in UTC "
            "with Z")


def _parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    parts = value.split(",")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) != 4 or not all(math.isfinite(n) for n in nums):
        raise ApiError(422, "bbox: expected minlon,minlat,maxlon,maxlat (four numbers)")
    lon0, lat0, lon1, lat1 = nums
    if not (-180 <= lon0 <= lon1 <= 180 and -90 <= lat0 <= lat1 <= 90):
        raise ApiError(422, "bbox: need -180 <= minlon <= maxlon <= 180 and "
                            "-90 <= minlat <= maxlat <= 90")
    return lon0, lat0, lon1, lat1


def _csv(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _check_names(names: Iterable[str], field: str, known: Collection[str], what: str) -> None:
    """A misspelt name would match nothing, silently: 422 naming every unknown one, with
    the known names as its detail."""
    unknown = list(dict.fromkeys(n for n in names if n not in known))
    if unknown:
        whats = what[:-1] + "ies" if what.endswith("y") else what + "s"  # severity
        raise ApiError(422, f"{field}: unknown {whats if len(unknown) > 1 else what} "
                       + ", ".join(map(repr, unknown)), sorted(known))


def _names(value: str | None, field: str, known: Collection[str],
           what: str) -> tuple[str, ...] | None:
    """A comma-separated filter (``a,b``: either), each name checked; ``None`` when it
    names none (``state=,`` is no filter, never an empty ``IN ()``)."""
    names = tuple(dict.fromkeys(_csv(value) or ()))
    _check_names(names, field, known, what)
    return names or None


def _snooze_out(s: Snooze, now: float) -> dict[str, Any]:
    return {"id": f"{s.rule}:{s.mmsi}", "rule": s.rule, "mmsi": s.mmsi,
            "until": iso_time(s.until), "actor": s.actor, "note": s.note,
            "created": iso_time(s.created), "active": s.until > now}


def _track_feature(mmsi: int, start: float, end: float, points: list[dict[str, Any]],
                   rejected: bool = False) -> dict[str, Any]:
    coords = [[p["lon"], p["lat"]] for p in points]
    geometry: dict[str, Any] | None
    if len(coords) >= 2:
        geometry = {"type": "LineString", "coordinates": coords}
    elif coords:
        geometry = {"type": "Point", "coordinates": coords[0]}
    else:
        geometry = None
    return {"type": "Feature", "id": mmsi, "geometry": geometry, "properties": {
        "mmsi": mmsi, "start": iso_time(start), "end": iso_time(end), "points": len(points),
        "coordinateProperties": {
            "times": [p["time"] for p in points],
            "speed": [p.get("speed") for p in points],
            "course": [p.get("course") for p in points],
            "heading": [p.get("heading") for p in points],
            **({"rejected": [bool(p.get("rejected")) for p in points]} if rejected else {}),
        }}}


def _unreadable_body(exc: StarletteHTTPException) -> str | None:
    """Why a body that is not bad JSON syntax could not be read, or None: FastAPI answers
    such a body with a 400 "There was an error parsing the body" that names no reason,
    where bad syntax gets the 422 of every other bad body."""
    cause = exc.__cause__
    if isinstance(cause, RecursionError):  # json's decoder stops at the recursion limit
        return "the body's JSON nests arrays and objects too deep to read"
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not UTF-8 ({cause.reason} at byte offset {cause.start})"
    return None


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(AuthError)
    async def auth_error(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.message, None, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")}
                  for e in exc.errors()]
        sent = _not_json(request, detail)
        if sent is not None:  # curl --data without the header: pydantic's words name neither
            return _error(422, "invalid request: the body must be JSON, sent with "
                          f"Content-Type: application/json (this request said {sent})", detail)
        where = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in detail[:3])
        return _error(422, f"invalid request: {where}", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        unread = _unreadable_body(exc)
        if unread is not None:
            return _error(422, f"invalid request: {unread}")
        return _error(exc.status_code, str(exc.detail), None, exc.headers)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(StoreUnavailable)
    async def unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return _error(503, "store unavailable, retry later", str(exc), {"Retry-After": "5"})

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        log.error("store error: %s", exc)
        return _error(500, "store error", str(exc))


def _install_openapi(app: FastAPI, extra: Iterable[type[BaseModel]]) -> None:
    """Add models only named in ``responses`` (e.g. the GeoJSON form) to the components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description=app.description)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in extra:
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                comps.update(js.pop("$defs", {}))
                comps[model.__name__] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _listed(**query: Any) -> Any:
    """A query parameter that takes several values in one, comma-separated (``a,b``): a
    repeated one is refused with that hint (see ``_only_known_query_parameters``)."""
    return Query(json_schema_extra={COMMA_SEPARATED: True}, **query)


def _takes_many(annotation: Any) -> bool:
    """A list-typed parameter (``list[str]``): FastAPI reads every value of it."""
    if get_origin(annotation) in (Union, UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    kind = get_origin(annotation) or annotation
    return (isinstance(kind, type) and issubclass(kind, (abc.Sequence, abc.Set))
            and not issubclass(kind, (str, bytes)))


@dataclass(frozen=True, slots=True)
class _QueryParams:
    """The query parameters of a route and of its dependencies."""

    known: frozenset[str]
    #: Read with every value (a list-typed parameter); any other is read with its last.
    repeatable: frozenset[str]
    #: Single values holding a comma-separated list (``_listed``).
    listed: frozenset[str]


def _query_params(request: Request, route: APIRoute) -> _QueryParams:
    """The route's :class:`_QueryParams` (kept per route)."""
    cache: dict[int, _QueryParams] = request.app.state.query_params
    found = cache.get(id(route))  # the app holds its routes: their ids stay theirs
    if found is not None:
        return found
    known: set[str] = set()
    repeatable: set[str] = set()
    listed: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        for param in dependant.query_params:
            known.add(param.alias)
            if _takes_many(param.field_info.annotation):
                repeatable.add(param.alias)
            extra = param.field_info.json_schema_extra
            if isinstance(extra, dict) and extra.get(COMMA_SEPARATED):
                listed.add(param.alias)
        pending.extend(dependant.dependencies)
    found = cache[id(route)] = _QueryParams(frozenset(known), frozenset(repeatable),
                                            frozenset(listed))
    return found


def _only_known_query_parameters(request: Request) -> None:
    """A misspelt filter (``severity=``, ``max_speed=``) was ignored and gave every item; a
    repeated one (``rule=a&rule=b``) counted only its last value."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    params = _query_params(request, route)
    query = request.query_params
    for name in query:
        if name not in params.known:
            raise ApiError(422, f"{name}: unknown query parameter"
                           + (f" (expected {', '.join(sorted(params.known))})"
                              if params.known else ""))
        given = len(query.getlist(name))
        if given > 1 and name not in params.repeatable:
            raise ApiError(422, f"{name}: given {given} times; give one value"
                           + (f", comma-separated for several ({name}=a,b)"
                              if name in params.listed else ""))


def create_app(deps: ApiDeps) -> FastAPI:
    """The API over ``deps``; serve it with :func:`api.server.serve` or any ASGI server."""
    store, auth, hub, memory = deps.store, deps.auth, deps.hub, deps.alert_memory
    zone_state = _ZoneState(deps.zones)
    zone_puts = asyncio.Lock()  # applied in the order they are checked
    rules = deps.extra.get("rules", DESIGN_RULES)

    def known_rules(names: Iterable[str] | None, field: str) -> None:
        _check_names(names or (), field, rules, "rule")

    def vessel_count() -> int:
        return 0 if deps.picture is None else sum(1 for _ in deps.picture.vessels())

    collector = ServiceCollector(
        stats=deps.stats, sources=deps.sources, writer=store.stats,
        hub=None if hub is None else hub.stats, mqtt=deps.mqtt,
        vessels=None if deps.picture is None else vessel_count)
    registry = make_registry(collector)

    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": m.ErrorOut, "description": "No or unknown token"},
        403: {"model": m.ErrorOut, "description": "Role too small"},
        422: {"model": m.ErrorOut, "description": "Invalid input"},
    }
    not_found: dict[int | str, dict[str, Any]] = {
        **errors, 404: {"model": m.ErrorOut, "description": "Not found"}}
    acted: dict[int | str, dict[str, Any]] = {
        **not_found, 409: {"model": m.ErrorOut, "description": "Already acted on"}}
    # While the database is away (see api.memory_alerts): answers from memory say so in a
    # header; acts are queued (202); what memory cannot answer is 503.
    source_header = {SOURCE_HEADER: {
        "description": "`memory`: answered from the alerts the running rules hold (the "
                       "database is away, or still writing what was queued meanwhile); "
                       "absent when the answer is the database's",
        "schema": {"type": "string", "enum": ["memory"]}}}
    queued_headers = {**source_header, QUEUED_HEADER: {
        "description": "`disk`: the act is spooled and survives a crash or power cut before "
                       "the database is back; `memory`: the spool could not be written (a "
                       "full disk, logged), the act is lost if the service dies first",
        "schema": {"type": "string", "enum": ["disk", "memory"]}}}
    unavailable: dict[int | str, dict[str, Any]] = {503: {
        "model": m.ErrorOut, "description": "The database is away and memory cannot answer "
                                            "(Retry-After)"}}

    def from_memory_doc(base: dict[int | str, dict[str, Any]], ok: int = 200,
                        queued: type[BaseModel] | None = None) -> dict[int | str, dict[str, Any]]:
        """``base`` with the outage's answers: the memory header on ``ok``, 503, and 202
        (``queued``'s model) for an act."""
        out = {**base, **unavailable, ok: {**base.get(ok, {}), "headers": source_header}}
        if queued is not None:
            out[202] = {"model": queued, "headers": queued_headers,
                        "description": "The database is away: applied at once, queued for "
                                       "the store"}
        return out

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if hub is not None:
            hub.close()  # end the streams so shutdown need not wait for them

    # No redirect of a trailing slash: Starlette builds its Location from the Host header.
    # FastAPIOffline serves Swagger UI and ReDoc from its package: a port network often has
    # no internet, and the CDN's scripts left /docs blank there.
    app = FastAPIOffline(title="harbourwatch", version=deps.version, lifespan=lifespan,
                         redirect_slashes=False, static_url=DOCS_STATIC,
                         description="Live vessel picture, tracks, alerts and their lifecycle "
                                     "for a small or medium seaport. Bearer tokens; roles "
                                     "viewer < operator < admin.")
    for route in app.routes:  # the doc pages answer HEAD, as they did before (probes)
        if isinstance(route, APIRoute) and route.path in ("/docs", "/redoc") and route.methods:
            route.methods.add("HEAD")
    app.state.auth = auth
    app.state.query_params = {}
    app.add_middleware(BodyGuard, auth=auth)
    _install_errors(app)
    _install_openapi(app, [m.VesselCollection])

    def picture_or_503() -> PictureView:
        if deps.picture is None:
            raise ApiError(503, "no live picture in this process (store-only API)")
        return deps.picture

    # -- vessels --------------------------------------------------------------------------

    @app.get("/vessels", response_model=m.VesselList, tags=["vessels"], responses={
        **errors, 200: {"content": {GEOJSON: {"schema": {
            "$ref": "#/components/schemas/VesselCollection"}}},
            "description": "JSON list, or a GeoJSON FeatureCollection of Points"}})
    async def vessels(
        request: Request, _: Viewer,
        bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat",
                                          examples=["151.2,-23.9,151.4,-23.7"])] = None,
        zone: Annotated[str | None, Query(
            max_length=64, pattern=ZONE_ID_PATTERN,
            description="Id of a running zone (GET /zones): the vessels inside it now; 422 "
                        "for one that is not running")] = None,
        min_speed: Annotated[float | None, Query(ge=0, le=120, description="Knots")] = None,
        ais_class: Annotated[Literal["A", "B"] | None, Query(alias="class")] = None,
        format: Annotated[Literal["json", "geojson"] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=vessel_list.MAX_LIMIT, description=(
            "At most this many vessels; when more match, the most recently heard, newest "
            "first, and `truncated` is true (`total`: how many matched)"))
        ] = vessel_list.DEFAULT_LIMIT,
    ) -> Response:
        box = _parse_bbox(bbox)
        geom = None
        if zone is not None:
            # The live picture is filtered by the zone's outline, which only a running zone
            # has (/alerts, a history, takes any zone id).
            found = zone_state.zones.by_id.get(zone)
            if found is None:
                raise ApiError(422, f"zone: unknown zone {zone!r}",
                               sorted(zone_state.zones.by_id))
            geom = found.geometry
        picture = picture_or_503()
        picked = vessel_list.filter_vessels(picture.vessels(), box, min_speed, ais_class, geom)
        shown = vessel_list.newest(picked, limit)
        geo = format == "geojson" or (format is None
                                      and GEOJSON in request.headers.get("accept", ""))
        return Response(vessel_list.encode_vessels(picture, shown, len(picked), geo),
                        media_type=GEOJSON if geo else "application/json")

    @app.get("/vessels/{mmsi}", response_model=m.VesselOut, tags=["vessels"],
             responses=not_found)
    async def vessel(mmsi: Mmsi, _: Viewer) -> Response:
        live = None if deps.picture is None else deps.picture.vessel(mmsi)
        if live is not None:
            return _dump(live)
        known = await store.vessel(mmsi)
        if known is None:
            raise ApiError(404, f"vessel {mmsi} is not in the picture nor in the store")
        out = m.VesselOut.model_validate({**known, "time": None}).model_dump(by_alias=True)
        return _dump(out)

    @app.get("/vessels/{mmsi}/track", response_model=m.TrackOut, tags=["vessels"],
             responses={**errors, 200: {"content": {GEOJSON: {}}}})
    async def track(
        mmsi: Mmsi, _: Viewer,
        start: Annotated[str | None, Query(description="ISO 8601; default end - 1 h",
                                           examples=["2026-01-01T10:00:00Z"])] = None,
        end: Annotated[str | None, Query(
            description="ISO 8601; default start + 1 h, or without start the rules' clock "
                        "(message time)",
            examples=["2026-01-01T11:00:00Z"])] = None,
        max_points: Annotated[int, Query(ge=2, le=20_000)] = 2000,
        drill: Annotated[bool | None, Query(
            description="Drill positions (true) or real ones (false); default: those of "
                        "the run serving the API")] = None,
        rejected: Annotated[bool, Query(
            description="Also the fixes the rules rejected (a position jump, an MMSI "
                        "conflict), flagged in coordinateProperties.rejected")] = False,
    ) -> Response:
        t_end = _parse_time(end, "end")
        t_start = _parse_time(start, "start")
        if t_end is None:
            t_end = deps.clock() if t_start is None else t_start + 3600.0
        if t_start is None:
            t_start = t_end - 3600.0
        if t_end < t_start:
            raise ApiError(422, "end is before start")
        if t_start < _FIRST_TIME or t_end > _LAST_TIME:  # a bound made by default
            raise ApiError(422, "start/end: the default hour falls outside years 1 to 9999")
        untried_while_away("; tracks are in the database alone")
        points = await store.track(mmsi, t_start, t_end, max_points,
                                   drill=deps.drill if drill is None else drill,
                                   rejected=rejected)
        return _dump(_track_feature(mmsi, t_start, t_end, points, rejected), GEOJSON)

    # -- alerts ---------------------------------------------------------------------------

    @app.get("/alerts", response_model=m.AlertPage, tags=["alerts"],
             responses=from_memory_doc(errors))
    async def alerts(
        _: Viewer,
        rule: Annotated[str | None, _listed(
            max_length=1024, description="Rule names; comma-separated for several",
            examples=["speeding,restricted_entry"])] = None,
        state: Annotated[str | None, _listed(
            description="open, acknowledged, ended, resolved; comma-separated for several",
            examples=["open,acknowledged"])] = None,
        risk_area: Annotated[str | None, _listed(
            max_length=1024, description=", ".join(RISK_AREAS)
            + "; comma-separated for several",
            examples=["criminal_activity,information_security"])] = None,
        severity: Annotated[str | None, _listed(
            max_length=1024, description=", ".join(SEVERITIES) + "; comma-separated for several",
            examples=["warning,critical"])] = None,
        zone: Annotated[str | None, Query(
            max_length=64, pattern=ZONE_ID_PATTERN,
            description="Zone id the alerts name: any zone id, also one no longer running "
                        "(an alert keeps the zone it was raised in); none matching: an "
                        "empty page")] = None,
        mmsi: Annotated[int | None, Query(ge=0, le=_MAX_MMSI)] = None,
        start: Annotated[str | None, Query(description="Active at or after (ISO 8601)")] = None,
        end: Annotated[str | None, Query(description="Started at or before (ISO 8601)")] = None,
        drill: Annotated[bool | Literal["any"] | None, Query(
            description="Drill alerts (true), real ones (false) or both (any); default: "
                        "those of the run serving the API, so a drill replayed into the "
                        "live database stays out of the watch's list. `true` leaves out "
                        "the alerts an earlier drill exercise left that the running one "
                        "has not raised again; `any` lists them")] = None,
        after: Annotated[str | None, Query(
            max_length=64, description="The last alert of the page before (its `next`): "
                                       "new alerts do not shift the pages, as with offset")
                         ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Response:
        rule_names = _names(rule, "rule", rules, "rule")
        states = _names(state, "state", ALERT_STATES, "state")
        risk_areas = _names(risk_area, "risk_area", RISK_AREAS, "risk area")
        severities = _names(severity, "severity", SEVERITIES, "severity")
        t_start, t_end = _parse_time(start, "start"), _parse_time(end, "end")
        if t_start is not None and t_end is not None and t_end < t_start:
            raise ApiError(422, "end is before start")
        query = AlertQuery(rule=rule_names, state=states, risk_area=risk_areas,
                           severity=severities, zone=zone, mmsi=mmsi, start=t_start, end=t_end,
                           drill=(deps.drill if drill is None
                                  else None if drill == "any" else drill),
                           after=after, limit=limit, offset=offset)
        if after is not None and offset:
            raise ApiError(422, "after and offset: give one (after pages by the last alert "
                                "seen, offset by a count that new alerts shift)")
        if memory is not None and catching_up():  # the store lacks what is still queued
            with contextlib.suppress(MemoryCannotAnswer):
                return memory_response(page_from_memory(memory, query))
        try:
            not_while_away()
            page = await store.alerts(query)
            if after is not None and not page:  # the end, or a cursor that names no alert
                try:
                    await store.alert(after)
                except NotFound:
                    raise ApiError(422, f"after: no alert {after!r}") from None
            total = (offset + len(page) if after is None and 0 < len(page) < limit
                     else await store.count_alerts(query))
        except StoreUnavailable as exc:
            return memory_response(from_memory(page_from_memory, query, exc))
        return _dump({"total": total, "limit": limit, "offset": offset,
                      "next": page[-1]["id"] if len(page) == limit else None, "alerts": page})

    @app.get("/alerts/summary", response_model=m.AlertSummary, tags=["alerts"],
             responses={**errors, **unavailable})
    async def alert_summary(
        _: Viewer,
        rule: Annotated[str | None, _listed(
            max_length=1024, description="Rule names; comma-separated for several",
            examples=["speeding,restricted_entry"])] = None,
        risk_area: Annotated[str | None, _listed(
            max_length=1024, description=", ".join(RISK_AREAS)
            + "; comma-separated for several")] = None,
        severity: Annotated[str | None, _listed(
            max_length=1024, description=", ".join(SEVERITIES) + "; comma-separated for several",
            examples=["warning,critical"])] = None,
        zone: Annotated[str | None, Query(
            max_length=64, pattern=ZONE_ID_PATTERN,
            description="Zone id the alerts name (also one no longer running)")] = None,
        mmsi: Annotated[int | None, Query(ge=0, le=_MAX_MMSI)] = None,
        start: Annotated[str | None, Query(
            description="Started at or after (ISO 8601)",
            examples=["2026-01-01T00:00:00Z"])] = None,
        end: Annotated[str | None, Query(
            description="Started before (ISO 8601): consecutive periods add up",
            examples=["2026-02-01T00:00:00Z"])] = None,
        drill: Annotated[bool | Literal["any"] | None, Query(
            description="Drill alerts (true: every one the store holds, an earlier "
                        "exercise's too), real ones (false) or both (any); default: those "
                        "of the run serving the API")] = None,
    ) -> Response:
        """Counts by risk area, rule, severity, state and kind, and the times to
        acknowledge and to resolve, of the alerts that started in the period."""
        t_start, t_end = _parse_time(start, "start"), _parse_time(end, "end")
        if t_start is not None and t_end is not None and t_end < t_start:
            raise ApiError(422, "end is before start")
        query = AlertQuery(rule=_names(rule, "rule", rules, "rule"),
                           risk_area=_names(risk_area, "risk_area", RISK_AREAS, "risk area"),
                           severity=_names(severity, "severity", SEVERITIES, "severity"),
                           zone=zone, mmsi=mmsi, start=t_start, end=t_end,
                           drill=(deps.drill if drill is None
                                  else None if drill == "any" else drill))
        # The database's alone: memory holds the open alerts, not the period's.
        untried_while_away("; the summary is the database's alone")
        return _dump(await store.alert_summary(query))

    @app.get("/alerts/{alert_id}", response_model=m.AlertDetail, tags=["alerts"],
             responses=from_memory_doc(not_found))
    async def alert(alert_id: AlertId, _: Viewer) -> Response:
        held = None if memory is None else memory.alert(alert_id)
        if memory is not None and held is not None and catching_up():
            return memory_response(held_alert(memory, alert_id))
        try:
            not_while_away()
            found = await store.alert(alert_id)
            trail = await store.audit(alert_id)
        except StoreUnavailable as exc:
            return memory_response(from_memory(held_alert, alert_id, exc))
        except NotFound:
            if memory is None or held is None:
                raise
            # Raised and announced, not written yet (the writer's next batch, or its
            # catch-up after an outage): memory has it.
            return memory_response(held_alert(memory, alert_id))
        return _dump({**found, "audit": trail})

    def catching_up() -> bool:
        """The database is back, and alert transitions or acts queued while it was away
        are not all written: memory has them, the store not yet."""
        return memory is not None and store.stats().catching_up

    def untried_while_away(why: str = "") -> None:
        """503 (``why`` added to the reason) without trying the database while the store's
        writer knows it is away: in a network cut every try waits for a timeout, and a
        SQLite file locked for writes still reads, without what is queued meanwhile."""
        if not store.stats().db_up:
            raise StoreUnavailable(f"database away (the store writer's last try failed){why}")

    def not_while_away() -> None:
        """A process with memory answers from it instead (see ``untried_while_away``)."""
        if memory is not None:
            untried_while_away()

    async def flushed() -> None:
        try:
            await asyncio.wait_for(store.flush(held=False), ACT_FLUSH_WAIT_S)
        except TimeoutError as exc:
            raise StoreUnavailable(f"the store writer's pass did not end within "
                                   f"{ACT_FLUSH_WAIT_S:g} s") from exc

    def from_memory(answer: Callable[[AlertMemory, _Q], _R], query: _Q,
                    outage: StoreUnavailable) -> _R:
        """The store is away: ``answer`` from the alerts the rules hold, or the outage's
        503 when this process runs no rules or memory cannot answer."""
        if memory is None:
            raise outage
        try:
            return answer(memory, query)
        except MemoryCannotAnswer as why:
            raise StoreUnavailable(f"{outage}; not answered from memory: {why}") from outage

    def memory_response(out: Any, status: int = 200) -> Response:
        """An answer from memory, marked as such (see api.memory_alerts)."""
        resp = Response() if out is None else _dump(out)
        resp.status_code = status
        resp.headers[SOURCE_HEADER] = "memory"
        return resp

    def queued_response(out: Any, on_disk: bool) -> Response:
        """An act's 202: from memory, and whether the act is on disk (see QUEUED_HEADER)."""
        resp = memory_response(out, 202)
        resp.headers[QUEUED_HEADER] = "disk" if on_disk else "memory"
        return resp

    def message_clock() -> float | None:
        """The rules' clock now, for an act's ``message_time`` (None where no rules run:
        the default clock is the wall's)."""
        return deps.clock() if memory is not None else None

    async def act(alert_id: str, who: Principal, body: m.NoteIn | None,
                  action: Literal["ack", "resolve"]) -> Response:
        note = None if body is None else body.note
        # Taken when the request comes: in a drill the trainee acted at this point of the
        # exercise, whatever the writer's pass then takes.
        message_at = message_clock()
        try:
            # The stream and MQTT tell of an alert before the writer's batch stores it (up
            # to store.flush_interval_s): acting at once got 404, or, in a drill run again,
            # a 409 as on an earlier exercise's alert. Alerts are never held: the positions
            # held for late receivers stay held.
            not_while_away()
            await flushed()
            if action == "ack":
                out = await store.ack(alert_id, who.name, note, message_at=message_at)
            else:
                out = await store.resolve(alert_id, who.name, note, message_at=message_at)
        except StoreUnavailable as exc:  # not stored (the act reads its answer itself)
            queued, on_disk = from_memory(
                queue_act, (alert_id, who.name, note, action, message_at), exc)
            push(queued)
            record_act(action, queued, message_at)
            return queued_response(queued, on_disk)
        push(out)
        record_act(action, out, message_at)
        try:
            trail = await store.audit(alert_id)
        except StoreUnavailable:  # the act is stored: said so, with the act alone
            trail = [act_audit({"state": None}, out, action, message_at)]
        return _dump({**out, "audit": trail})

    def record_act(action: str, out: Mapping[str, Any], message_at: float | None) -> None:
        """An ack or resolve made, told to ``deps.act_records`` (a drill's alerts file)."""
        if not deps.act_records:
            return
        names = ACT_NAMES[action]
        alert = {k: v for k, v in out.items() if k not in ("audit", "source")}
        act = {"act": action, "actor": out[f"{names.field}_by"], "note": out[names.note],
               "time": out[f"{names.field}_at"],
               "message_time": None if message_at is None else iso_time(message_at),
               "alert": alert}
        tell_act_records(act)

    rereads: set[asyncio.Task[None]] = set()

    def act_dropped(act: QueuedAct) -> None:
        """The store refused an act queued while it was away (the alert acted on meanwhile
        by another process): the stream, MQTT and memory showed it; they get the store's
        alert instead, as an ``update``."""
        if act.alert_id is not None:
            task = asyncio.create_task(reread(act.alert_id))
            rereads.add(task)
            task.add_done_callback(rereads.discard)

    async def reread(alert_id: str) -> None:
        try:
            found = await store.alert(alert_id)
        except StoreError as exc:
            log.warning("alert %s: an act on it was refused by the store, which cannot be "
                        "read now (%s): the stream and MQTT still show the act", alert_id, exc)
            return
        push(found)

    if memory is not None:  # the process that runs the rules, and pushes acts
        store.watch_dropped_acts(act_dropped)

    def push(out: Mapping[str, Any]) -> None:
        """An act reaches the stream and the listeners (MQTT, the rules' overlay)."""
        # A muted alert's acts are not pushed either: the stream never told of it.
        muted = deps.snooze_target is not None and deps.snooze_target.is_muted(out["id"])
        alert = {k: v for k, v in out.items() if k not in ("audit", "source")}
        if hub is not None and not muted:
            hub.publish_alert("update", alert)
        for listener in deps.operator_updates:
            listener(alert)

    def queue_act(held: AlertMemory,
                  act: tuple[str, str, str | None, Literal["ack", "resolve"], float | None]
                  ) -> tuple[dict[str, Any], bool]:
        """The act on the alert memory holds, queued for the store (see QueuedAct), and
        whether it is on disk."""
        alert_id, actor, note, action, message_at = act
        found = held.alert(alert_id)
        if found is None:
            raise MemoryCannotAnswer(f"alert {alert_id!r} is not open in memory (an ended "
                                     "alert's acts need the database)")
        out, at = act_in_memory(found, action, actor, note)
        on_disk = store.queue_act(QueuedAct(action, actor, at, note, alert_id=alert_id,
                                            message_at=message_at))
        return ({**out, "audit": [act_audit(found, out, action, message_at)],
                 "source": "memory"}, on_disk)

    @app.post("/alerts/{alert_id}/ack", response_model=m.AlertDetail, tags=["alerts"],
              responses=from_memory_doc(acted, queued=m.AlertDetail))
    async def ack(alert_id: AlertId, who: Operator, body: m.NoteIn | None = None) -> Response:
        """Acknowledge (operator): records the token name, the wall time, the rules' clock
        (the audit entry's ``message_time``) and the note."""
        return await act(alert_id, who, body, "ack")

    @app.post("/alerts/{alert_id}/resolve", response_model=m.AlertDetail, tags=["alerts"],
              responses=from_memory_doc(acted, queued=m.AlertDetail))
    async def resolve(alert_id: AlertId, who: Operator,
                      body: m.NoteIn | None = None) -> Response:
        """Resolve (operator): the alert is closed for operators; audited."""
        return await act(alert_id, who, body, "resolve")

    # -- snoozes --------------------------------------------------------------------------

    snooze_keeper: SnoozeKeeper = DrillSnoozes() if deps.drill else store

    @app.post("/snoozes", status_code=201, response_model=m.SnoozeOut, tags=["alerts"],
              responses=from_memory_doc(errors, 201, queued=m.SnoozeOut))
    async def snooze(body: m.SnoozeIn, who: Operator) -> Response:
        """Silence one rule for one vessel for ``duration_s`` of message time, then re-arm."""
        known_rules([body.rule], "rule")
        now = deps.clock()
        until = now + body.duration_s
        status, on_disk = 201, False
        try:
            if snooze_keeper is store:
                not_while_away()
            saved = await snooze_keeper.snooze(body.rule, body.mmsi, until, who.name,
                                               body.note)
        except StoreUnavailable:
            if memory is None or deps.snooze_target is None:
                raise
            saved = Snooze(body.rule, body.mmsi, until, who.name, body.note, time.time())
            on_disk = store.queue_act(QueuedAct("snooze", who.name, saved.created, body.note,
                                                rule=body.rule, mmsi=body.mmsi, until=until))
            status = 202
        if deps.snooze_target is not None:
            deps.snooze_target.snooze(body.rule, body.mmsi, until, saved)
        tell_act_records({"act": "snooze", "actor": who.name, "note": body.note,
                           "time": iso_time(saved.created), "message_time": iso_time(now),
                           "rule": body.rule, "mmsi": body.mmsi, "until": iso_time(until)})
        if status == 202:
            return queued_response(_snooze_out(saved, now), on_disk)
        resp = _dump(_snooze_out(saved, now))
        resp.status_code = status
        return resp

    def tell_act_records(act: Mapping[str, Any]) -> None:
        """An operator act (ack, resolve, snooze, unsnooze), told to ``deps.act_records``
        (a drill's alerts file)."""
        for listener in deps.act_records:
            listener(act)

    @app.get("/snoozes", response_model=list[m.SnoozeOut], tags=["alerts"],
             responses=from_memory_doc(errors))
    async def snoozes(_: Viewer, active: bool = True) -> Response:
        """The snoozes kept, by rule and vessel; while the database is away, from the
        rules' (the list has no room for ``source``: the header says it)."""
        now = deps.clock()
        if snooze_keeper is store and catching_up():  # the store lacks what is queued
            with contextlib.suppress(MemoryCannotAnswer):
                return memory_response(held_snoozes(None, (active, now)))
        try:
            if snooze_keeper is store:
                not_while_away()
            found = await snooze_keeper.snoozes(active_at=now if active else None)
        except StoreUnavailable as exc:
            return memory_response(from_memory(held_snoozes, (active, now), exc))
        return _dump([_snooze_out(s, now) for s in found])

    def held_snoozes(_: AlertMemory | None, asked: tuple[bool, float]) -> list[dict[str, Any]]:
        """``GET /snoozes`` (``active``, at ``now``) from the snoozes the rules hold."""
        active, now = asked
        kept = None if deps.snooze_target is None else deps.snooze_target.kept()
        if kept is None:
            raise MemoryCannotAnswer("the running rules do not hold the database's snoozes "
                                     "(a replay from its start does not load them)")
        return [_snooze_out(s, now) for s in kept if not active or s.until > now]

    @app.get("/snoozes/history", response_model=list[m.SnoozeActOut], tags=["alerts"],
             responses=errors)
    async def snooze_history(
        _: Viewer,
        rule: Annotated[str | None, _listed(
            max_length=1024, description="Rule names; comma-separated for several",
            examples=["loitering,dark_vessel"])] = None,
        mmsi: Annotated[int | None, Query(ge=0, le=_MAX_MMSI)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """Who snoozed and unsnoozed which rule for which vessel, newest first."""
        rule_names = _names(rule, "rule", rules, "rule")
        if snooze_keeper is store:
            # Memory holds the outage's acts alone: a part of the history, not the whole.
            untried_while_away("; the snooze history is in the database alone")
        return _dump(await snooze_keeper.snooze_acts(rule_names, mmsi, limit))

    @app.delete("/snoozes/{snooze_id}", status_code=204, tags=["alerts"],
                responses={**not_found, **unavailable, 202: {
                    "headers": queued_headers,
                    "description": "The database is away: lifted at once, queued for the "
                                   "store"}})
    async def unsnooze(who: Operator, snooze_id: Annotated[str, Path(
            max_length=80, description="'<rule>:<mmsi>'", examples=["loitering:244123456"])],
    ) -> Response:
        rule, _, mmsi_text = snooze_id.partition(":")
        if not mmsi_text.isdigit() or len(mmsi_text) > 9 or not rule:
            raise ApiError(422, "snooze id: expected '<rule>:<mmsi>'")
        known_rules([rule], "rule")  # as POST /snoozes: a typo, not "no snooze"
        mmsi = int(mmsi_text)
        status, on_disk = 204, False
        try:
            if snooze_keeper is store:
                not_while_away()
            if not await snooze_keeper.unsnooze(rule, mmsi, who.name):
                raise ApiError(404, f"no snooze {snooze_id!r}")
        except StoreUnavailable as exc:
            target = deps.snooze_target
            if memory is None or target is None:
                raise
            if not target.is_snoozed(rule, mmsi):
                raise StoreUnavailable(f"{exc}; not answered from memory: no snooze "
                                       f"{snooze_id!r} is held in memory") from exc
            on_disk = store.queue_act(QueuedAct("unsnooze", who.name, time.time(), rule=rule,
                                                mmsi=mmsi))
            status = 202
        if deps.snooze_target is not None:
            deps.snooze_target.unsnooze(rule, mmsi)
        tell_act_records({"act": "unsnooze", "actor": who.name, "note": None,
                           "time": iso_time(time.time()), "message_time": iso_time(deps.clock()),
                           "rule": rule, "mmsi": mmsi, "until": None})
        return queued_response(None, on_disk) if status == 202 else Response(status_code=204)

    # -- zones ----------------------------------------------------------------------------

    async def zone_metadata() -> None:
        """Adopt the store's version if the running zones are the latest saved ones."""
        zone_state.checked_store = True
        latest = await store.latest_zones()
        if latest is None:
            return
        try:
            # A comparison only: the start said these zones' warnings.
            saved = ZoneSet.from_geojson(latest["geojson"], log_warnings=False).to_geojson()
        except ZoneError:
            return
        if saved == zone_state.zones.to_geojson():
            zone_state.version = int(latest["version"])
            zone_state.updated_at, zone_state.updated_by = latest["time"], latest["actor"]

    @app.get("/zones", response_model=m.ZonesOut, tags=["zones"], responses=errors)
    async def get_zones(_: Viewer) -> Response:
        if not zone_state.checked_store:
            await zone_metadata()
        return _dump({**zone_state.zones.to_geojson(), "version": zone_state.version,
                      "updated_at": zone_state.updated_at,
                      "updated_by": zone_state.updated_by}, GEOJSON)

    @app.put("/zones", response_model=m.ZonesSaved, tags=["zones"], responses=errors)
    async def put_zones(body: m.ZonesIn, who: Admin) -> Response:
        """Validate, save (new version) and apply to the running rules without restart."""
        raw = body.model_dump()
        for member in ("version", "updated_at", "updated_by"):
            raw.pop(member, None)  # our own foreign members, when a GET is PUT back
        async with zone_puts:
            return await apply_zones(raw, who)

    async def apply_zones(raw: dict[str, Any], who: Principal) -> Response:
        try:
            # In a thread (GEOS lets go of the GIL): the validity check of a contrived
            # outline (a star of 80,000 points) took a minute on the event loop, and ingest,
            # the API and the MQTT keep-alive stopped with it.
            zones = await asyncio.to_thread(ZoneSet.from_geojson, raw,
                                            projection=zone_state.zones.crs)
        except ZoneError as exc:
            raise ApiError(422, "zones rejected: " + exc.errors[0], exc.errors) from exc
        if not len(zones):
            # Every zone of the running port gone at once: a mistake far more often than a
            # wish (with watch_area: port, zone alerting stops).
            raise ApiError(422, "zones rejected: no zones (a port keeps at least one)")
        version = None
        if deps.saves_zones:
            digest = deps.zones_file_sha256
            file_sha256 = None if digest is None else await asyncio.to_thread(digest)
            version = await store.save_zones(zones.to_geojson(), who.name,
                                             file_sha256=file_sha256)
        warnings = list(zones.warnings)
        if deps.zone_target is not None:
            # Saved and in force: a rule that raised on them is a warning, not an error (a
            # 5xx would say they were not applied, and a retry save a version more).
            warnings += deps.zone_target.set_zones(zones) or []
        zone_state.zones, zone_state.version = zones, version
        zone_state.updated_at, zone_state.updated_by = iso_time(deps.clock()), who.name
        zone_state.checked_store = True
        if version is not None:
            latest = await store.latest_zones()
            if latest is not None and latest.get("version") == version:
                zone_state.updated_at = latest["time"]
        log.warning("zones %s applied over the API by %s (%d zones)",
                    "not saved (a replay's own)" if version is None else f"version {version}",
                    who.name, len(zones))
        return _dump({"version": version, "zones": len(zones), "warnings": warnings})

    # -- service --------------------------------------------------------------------------

    @app.get("/sources", response_model=m.SourcesOut, tags=["service"], responses=errors)
    async def sources(_: Viewer) -> Response:
        data = deps.sources()
        return _dump({"sources": dict(data.get("sources") or {}),
                      "receivers": dict(data.get("receivers") or {})})

    @app.get("/stats", tags=["service"], responses=errors)
    async def stats(_: Viewer) -> Response:
        return _dump(service_stats(
            deps.stats(), store, hub=hub,
            vessels=None if deps.picture is None else vessel_count(),
            mqtt=None if deps.mqtt is None else deps.mqtt()))

    @app.head("/health", include_in_schema=False)
    async def health_probe() -> Response:
        """A load balancer's probe (it read 405 as down): 200 while the API answers."""
        return Response(status_code=200)

    @app.get("/health", response_model=m.HealthOut, tags=["service"])
    async def health(request: Request) -> Response:
        """Open to everyone (load balancers, monitoring); 200 while the API answers."""
        _only_known_query_parameters(request)
        store_up = store.stats().db_up
        mqtt_up = None if deps.mqtt is None else bool(deps.mqtt().get("connected"))
        return _dump({"status": "ok" if store_up and mqtt_up is not False else "degraded",
                      "version": deps.version, "store_up": store_up,
                      "mqtt_connected": mqtt_up})

    @app.get("/metrics", tags=["service"], responses={
        **errors, 200: {"content": {"text/plain": {}}, "description": "Prometheus text"}})
    async def metrics(_: Viewer) -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE)

    @app.get("/stream", tags=["stream"], responses={
        **errors, 200: {"content": {"text/event-stream": {}},
                        "description": "Server-sent events: alert, position, dropped"},
        503: {"model": m.ErrorOut, "description": "api.max_stream_clients streams are open "
                                                  "(Retry-After)"}})
    async def stream(
        _: Viewer,
        bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
        rules: Annotated[str | None, _listed(description="Alert rules, comma-separated")
                         ] = None,
        vessels: Annotated[str | None, _listed(description="MMSIs, comma-separated")] = None,
        types: Annotated[str | None, _listed(description="alert,position (default both)")
                         ] = None,
        last_event_id: Annotated[str | None, Header(
            alias="Last-Event-ID", max_length=64,
            description="Resume after this event (sent by EventSource on reconnect)")] = None,
    ) -> Response:
        """Live alert transitions and positions; a slow client loses its oldest events."""
        if hub is None:
            raise ApiError(503, "no live stream in this process")
        box = _parse_bbox(bbox)
        try:
            mmsis = None if vessels is None else frozenset(int(v) for v in _csv(vessels) or ())
        except ValueError as exc:
            raise ApiError(422, "vessels: expected comma-separated MMSIs") from exc
        kinds = _csv(types)
        if kinds is not None and not set(kinds) <= {"alert", "position"}:
            raise ApiError(422, "types: expected alert, position or both")
        rule_set = _csv(rules)
        known_rules(rule_set, "rules")
        filt = StreamFilter(bbox=box, vessels=mmsis,
                            rules=None if rule_set is None else frozenset(rule_set),
                            kinds=frozenset(kinds or ("alert", "position")))
        try:
            sub = hub.subscribe(filt, last_event_id)  # its place is taken now, not later
        except StreamFull as exc:
            return _error(503, str(exc), headers={"Retry-After": str(STREAM_RETRY_AFTER_S)})
        # The background task frees the place also when the body never starts (the client
        # went away first); the body frees it when it ends.
        return StreamingResponse(hub.events(sub), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"},
                                 background=BackgroundTask(hub.unsubscribe, sub))

    return app
