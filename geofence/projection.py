"""WGS 84 <-> local metric coordinates (pyproj, ``always_xy=True``).

One :class:`Projector` per zone set: its two transformers are built once, because building a
pyproj transformer costs far more than using it and the picture projects every fix.

Directions differ too: grid north (the projection's y axis) is true north only on the central
meridian. A course over ground is true, so a rule that turns one into x/y metres first
subtracts the meridian convergence at the fix (:meth:`Projector.convergence`): 0.8° at 4°E in
UTM 31, 3° at 12.6°E in UTM 32, enough to move a CPA 4 km ahead by 55 m or 200 m.
"""

from __future__ import annotations

import math
from typing import Any

from pyproj import CRS, Proj, Transformer
from pyproj.exceptions import CRSError

WGS84 = "EPSG:4326"
TRANSVERSE_MERCATOR = 9807  # EPSG method code (UTM is one); 9808, south-orientated, is not
_RAD = math.pi / 180.0
_CONVERGENCE_CACHE_MAX = 100_000  # other projections: cached per 0.01° (~1 km) square


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


def central_meridian(crs: CRS) -> float | None:
    """λ0 (degrees) of a transverse Mercator projection, else None."""
    operation = crs.coordinate_operation
    if operation is None or operation.method_code != str(TRANSVERSE_MERCATOR):
        return None
    for param in operation.params:
        if param.code == "8802" and param.unit_name == "degree":  # longitude of origin
            return float(param.value)
    return None


class Projector:
    """Projects lon/lat to x/y metres and back in one fixed CRS."""

    __slots__ = ("_back", "_convergence", "_fwd", "_lon0", "_proj", "crs")

    def __init__(self, crs: str) -> None:
        self.crs = crs
        target = check_crs(crs)
        self._fwd = Transformer.from_crs(WGS84, target, always_xy=True)
        self._back = Transformer.from_crs(target, WGS84, always_xy=True)
        self._lon0 = central_meridian(target)
        self._proj: Proj | None = None  # built on first use, for other projections only
        self._convergence: dict[tuple[int, int], float] = {}

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

    def convergence(self, lon: float, lat: float) -> float:
        """Meridian convergence at a point, in radians: the grid bearing of a direction is
        its true bearing minus this (positive east of a transverse Mercator's central
        meridian in the northern hemisphere, as pyproj's ``meridian_convergence``).

        Transverse Mercator (UTM): the closed form atan(tan(λ − λ0)·sin φ), exact on the
        sphere and within 1e-4° of the ellipsoid's value across a UTM zone; a few
        floating-point operations, as the rules ask it on every moving fix. Any other
        projection: pyproj's value at the centre of the fix's 0.01° square, cached.
        """
        lon0 = self._lon0
        if lon0 is not None:
            return math.atan(math.tan((lon - lon0) * _RAD) * math.sin(lat * _RAD))
        key = (round(lon * 100.0), round(lat * 100.0))
        gamma = self._convergence.get(key)
        if gamma is None:
            if self._proj is None:
                self._proj = Proj(check_crs(self.crs))
            if len(self._convergence) >= _CONVERGENCE_CACHE_MAX:
                self._convergence.clear()
            factors = self._proj.get_factors(key[0] / 100.0, key[1] / 100.0)
            gamma = self._convergence[key] = math.radians(factors.meridian_convergence)
        return gamma

    def forward_arrays(self, lons: Any, lats: Any) -> tuple[Any, Any]:
        """Vectorised :meth:`forward` on arrays (projects zone rings once at load)."""
        xs, ys = self._fwd.transform(lons, lats)
        return xs, ys
