"""``GET /vessels``: filter the live picture, keep at most ``limit`` vessels, encode.

Runs on the event loop, so its cost is bounded: the picture holds at most
``rules.picture.max_vessels``, the answer at most :data:`MAX_LIMIT`, and each vessel's JSON
comes from the picture's cache (only vessels heard since the last request are encoded).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import shapely

from api.deps import PictureView
from api.picture import feature

#: A harbour master's map shows every vessel in view: a medium port's own receivers hear a
#: few hundred, a national feed's whole coast a few thousand. Beyond that a map needs a bbox.
DEFAULT_LIMIT = 10_000
#: The default bound on the picture (``rules.picture.max_vessels``): all of it in one answer.
MAX_LIMIT = 20_000


def filter_vessels(vessels: Iterable[Mapping[str, Any]],
                   bbox: tuple[float, float, float, float] | None, min_speed: float | None,
                   ais_class: str | None, zone_geom: Any) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for v in vessels:
        lon, lat = v["lon"], v["lat"]
        if lon is None or lat is None:
            continue
        if bbox is not None and not (bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]):
            continue
        if min_speed is not None and (v["speed"] is None or v["speed"] < min_speed):
            continue
        if ais_class is not None and v["class"] != ais_class:
            continue
        out.append(v)
    if zone_geom is not None and out:
        lons = np.fromiter((v["lon"] for v in out), float, len(out))
        lats = np.fromiter((v["lat"] for v in out), float, len(out))
        inside = shapely.contains_xy(zone_geom, lons, lats)
        out = [v for v, keep in zip(out, inside, strict=True) if keep]
    return out


def newest(vessels: list[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
    """At most ``limit`` vessels: when there are more, the most recently heard, newest
    first (a map cut short should show what is there now); else all, in picture order."""
    if len(vessels) <= limit:
        return vessels
    # ISO 8601 times of one format sort as strings.
    return heapq.nlargest(limit, vessels, key=lambda v: v["time"] or "")


def encode_vessels(picture: PictureView, vessels: list[Mapping[str, Any]], total: int,
                   geojson: bool) -> bytes:
    """The list body, joining per-vessel JSON the picture caches when it can; ``total``:
    how many matched (``truncated`` when more than are listed)."""
    encoded = getattr(picture, "encoded", None)
    if callable(encoded):
        parts = [encoded(v, geojson) for v in vessels]
    else:
        parts = [json.dumps(feature(v) if geojson else v, separators=(",", ":")).encode()
                 for v in vessels]
    body = b",".join(parts)
    head = b'"count":%d,"total":%d,"truncated":%s' % (
        len(vessels), total, b"true" if total > len(vessels) else b"false")
    if geojson:  # RFC 7946 foreign members
        return b'{"type":"FeatureCollection",' + head + b',"features":[' + body + b"]}"
    return b"{" + head + b',"vessels":[' + body + b"]}"
