"""The live vessel picture the API serves: a sink keeping the latest state per MMSI.

Fed by the pipeline like any sink (one way, never calling back into the rules). Each
vessel is a JSON-ready dict with stable keys (gpsd/pyais names, ``time`` ISO 8601 ``Z``),
updated in place, so ``GET /vessels`` only filters and serialises. Vessels not heard for
``max_age_s`` of message time are left out and pruned.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from geofence.alert import AlertEvent
from geofence.picture import NON_VESSEL_TYPES
from ingest.report import STATIC_FIELDS, Report, iso_time, statics_to_apply

POSITION_KEYS: tuple[str, ...] = (
    "lat", "lon", "speed", "course", "heading", "turn", "status", "accuracy",
)
#: Message time between looks for vessels that left the picture (the MQTT feed's too).
PRUNE_EVERY_S = 60.0


class LivePicture:
    """Latest position, static and voyage data per vessel; implements ``Sink``."""

    def __init__(self, max_age_s: float = 3600.0,
                 clock: Callable[[], float] | None = None, max_vessels: int = 20_000) -> None:
        """``clock``: the rules' clock (it moves on with the wall time in live mode): with
        every source silent, the vessels still leave the picture. ``max_vessels``: the
        rules' bound."""
        self.max_age_s = max_age_s
        self.max_vessels = max_vessels
        self.newest = 0.0
        self._clock = clock
        self._vessels: dict[int, dict[str, Any]] = {}
        self._times: dict[int, float] = {}  # of each vessel's position: what lists it
        self._heard: dict[int, float] = {}  # of each vessel's newest report: what keeps it
        self._static_times: dict[int, float] = {}  # of each vessel's newest static data
        # Encoded JSON per vessel (plain, GeoJSON Feature), dropped when the vessel changes:
        # GET /vessels then only joins bytes for vessels not heard since the last request.
        self._json: dict[int, bytes] = {}
        self._geo: dict[int, bytes] = {}
        self._next_prune = 0.0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def on_alert(self, event: AlertEvent) -> None:
        return None

    def on_report(self, report: Report) -> None:
        if report.own or report.time_source == "none" or report.not_admitted \
                or report.msg_type in NON_VESSEL_TYPES:
            # Base stations and AtoN are no vessels (nor for the rules and MQTT): listed,
            # one of them with a vessel's MMSI moved and renamed it, judged by no rule.
            return
        mmsi = report.mmsi
        vessel = self._vessels.get(mmsi)
        if vessel is None:
            if len(self._vessels) >= self.max_vessels:
                return
            vessel = blank_vessel(mmsi)
        self._json.pop(mmsi, None)
        self._geo.pop(mmsi, None)
        has_position = report.has_position and not report.fix_rejected
        if has_position:
            if report.time < self._times.get(mmsi, float("-inf")):
                return  # an older report (another receiver's late copy) never rolls back
            for key in POSITION_KEYS:
                vessel[key] = getattr(report, key)
            vessel["time"] = iso_time(report.time)
            vessel["msg_type"] = report.msg_type
            vessel["sources"] = list(report.sources)
            vessel["drill"] = bool(report.extra.get("drill", False)) if report.extra else False
            self._times[mmsi] = report.time
        fields = {key: value for key in STATIC_FIELDS
                  if (value := getattr(report, key)) is not None}
        if fields:
            newer = report.time >= self._static_times.get(mmsi, float("-inf"))
            vessel.update(statics_to_apply(vessel, fields, newer))
            if newer:
                self._static_times[mmsi] = report.time
        cls = report.ais_class
        if cls is not None:
            vessel["class"] = cls
        # Static data alone is kept but does not put a vessel on the picture (no ``_times``).
        self._vessels[mmsi] = vessel
        if report.time > self._heard.get(mmsi, float("-inf")):
            self._heard[mmsi] = report.time
        if report.time > self.newest:
            self.newest = report.time
            if report.time >= self._next_prune:
                self._prune()

    def on_duplicate(self, report: Report, receiver: str) -> None:
        """``receiver`` heard ``report`` too (a copy within the dedup window, merged after
        the report went by): listed with the vessel's position when that is the report's."""
        vessel = self._vessels.get(report.mmsi)
        if vessel is None or self._times.get(report.mmsi) != report.time \
                or receiver in vessel["sources"]:
            return
        vessel["sources"] = [*vessel["sources"], receiver]
        self._json.pop(report.mmsi, None)
        self._geo.pop(report.mmsi, None)

    def drop_vessels(self, mmsis: Iterable[int]) -> None:
        """Vessels the rules evicted at their bound (``Pipeline._drop_vessels``)."""
        for mmsi in mmsis:
            self._forget(mmsi)

    def _forget(self, mmsi: int) -> None:
        self._heard.pop(mmsi, None)
        self._times.pop(mmsi, None)
        self._static_times.pop(mmsi, None)
        self._vessels.pop(mmsi, None)
        self._json.pop(mmsi, None)
        self._geo.pop(mmsi, None)

    def _prune(self) -> None:
        self._next_prune = self.newest + PRUNE_EVERY_S
        horizon = self.newest - self.max_age_s
        # By the newest report of any kind: a vessel heard only by its static data (or a
        # garbled one) has no position time, and was kept for good.
        for mmsi in [m for m, t in self._heard.items() if t < horizon]:
            self._forget(mmsi)

    # -- PictureView -------------------------------------------------------------------

    def vessels(self) -> Iterator[Mapping[str, Any]]:
        horizon = self._now() - self.max_age_s
        times = self._times
        vessels = self._vessels
        for mmsi, t in times.items():
            if t >= horizon:
                yield vessels[mmsi]

    def vessel(self, mmsi: int) -> Mapping[str, Any] | None:
        t = self._times.get(mmsi)
        if t is None or t < self._now() - self.max_age_s:
            return None
        return self._vessels[mmsi]

    def encoded(self, vessel: Mapping[str, Any], geojson: bool = False) -> bytes:
        """The vessel as JSON (or a GeoJSON Point Feature), cached until it changes."""
        mmsi = vessel["mmsi"]
        cache = self._geo if geojson else self._json
        data = cache.get(mmsi)
        if data is None:
            obj = feature(vessel) if geojson else vessel
            data = cache[mmsi] = json.dumps(obj, separators=(",", ":")).encode()
        return data

    def __len__(self) -> int:
        return len(self._times)

    def _now(self) -> float:
        return self.newest if self._clock is None else max(self.newest, self._clock())


def blank_vessel(mmsi: int) -> dict[str, Any]:
    """A vessel with every field of ``GET /vessels/{mmsi}`` in its order, none known yet
    (the MQTT feed's vessels start from it too)."""
    vessel: dict[str, Any] = {"mmsi": mmsi, "time": None, "class": None, "msg_type": None}
    for key in POSITION_KEYS + STATIC_FIELDS:
        vessel[key] = None
    vessel["sources"] = []
    vessel["drill"] = False
    return vessel


def feature(vessel: Mapping[str, Any]) -> dict[str, Any]:
    """A vessel as a GeoJSON Point Feature (RFC 7946: ``[lon, lat]``)."""
    props = {k: v for k, v in vessel.items() if k not in ("lat", "lon")}
    return {"type": "Feature", "id": vessel["mmsi"],
            "geometry": {"type": "Point", "coordinates": [vessel["lon"], vessel["lat"]]},
            "properties": props}
