"""WGS 84 <-> local metric coordinates (pyproj, ``always_xy=True``).

One :class:`Projector` per zone set: its two transformers are built once, because building a
pyproj transformer costs far more than using it and the picture projects every fix.
"""

from __future__ import annotations

import math
from typing import Any

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

WGS84 = "EPSG:4326"


class ProjectionError(ValueError):
    """A projection override that pyproj does not know or that is not metric."""


def utm_epsg(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone CRS of a point (north 326xx, south 327xx)."""
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def check_crs(text: str) -> CRS:
    """Parse a CRS override and insist on a projected (metric) one."""
    try:
        crs = CRS.from_user_input(text)
    except CRSError as exc:
        raise ProjectionError(f"unknown CRS {text!r}: {exc}") from exc
    if not crs.is_projected:
        raise ProjectionError(f"CRS {text!r} is not projected: distances need metres")
    return crs


class Projector:
    """Projects lon/lat to x/y metres and back in one fixed CRS."""

    __slots__ = ("_back", "_fwd", "crs")

    def __init__(self, crs: str) -> None:
        self.crs = crs
        target = check_crs(crs)
        self._fwd = Transformer.from_crs(WGS84, target, always_xy=True)
        self._back = Transformer.from_crs(target, WGS84, always_xy=True)

    @classmethod
    def around(cls, lon: float, lat: float) -> Projector:
        """The UTM projection of the zone containing ``(lon, lat)``."""
        return cls(utm_epsg(lon, lat))

    def forward(self, lon: float, lat: float) -> tuple[float, float]:
        x, y = self._fwd.transform(lon, lat)
        return float(x), float(y)

    def inverse(self, x: float, y: float) -> tuple[float, float]:
        lon, lat = self._back.transform(x, y)
        return float(lon), float(lat)

    def forward_arrays(self, lons: Any, lats: Any) -> tuple[Any, Any]:
        """Vectorised :meth:`forward` on arrays (projects zone rings once at load)."""
        xs, ys = self._fwd.transform(lons, lats)
        return xs, ys
