"""WGS 84 <-> local metric coordinates (pyproj, ``always_xy=True``).

One :class:`Projector` per zone set: its two transformers are built once, because building a
pyproj transformer costs far more than using it and the picture projects every fix.

Directions differ too: grid north (the projection's y axis) is true north only on the central
meridian. A course over ground is true, so a rule that turns one into x/y metres first
subtracts the meridian convergence at the fix (:meth:`Projector.convergence`): 0.8° at 4°E in
UTM 31, 3° at 12.6°E in UTM 32, enough to move a CPA 4 km ahead by 55 m or 200 m.

And lengths: a true metre measures ``k`` projected metres, ``k`` the point scale factor
(:meth:`Projector.scale`). Within the port's UTM zone ``k`` stays within 0.1 % of 1
and is taken as 1; a national or satellite feed's vessels 2,000 km from the central
meridian are stretched by 5 %, 3,700 km by 17 %, so the rules that measure a distance in
projected metres divide it by ``k`` there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyproj import CRS, Proj, Transformer
from pyproj.exceptions import CRSError

WGS84 = "EPSG:4326"
TRANSVERSE_MERCATOR = 9807  # EPSG method code (UTM is one); 9808, south-orientated, is not
_RAD = math.pi / 180.0
_FACTORS_CACHE_MAX = 100_000  # other projections: cached per 0.01° (~1 km) square
#: A scale factor this close to 1 is taken as 1: all of a UTM zone (0.9996 on the central
#: meridian, 1.001 at its edge on the equator) is left as it was measured.
SCALE_TOLERANCE = 1e-3
#: No x is in the empty range: every point goes through :meth:`Projector.scale`.
_NOWHERE = (math.inf, -math.inf)


class ProjectionError(ValueError):
    """A projection override that pyproj does not know, that is not projected, or whose axes
    are not in metres."""


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
    units = _horizontal_units(crs)
    if units != ["metre"]:
        # A state plane CRS in feet would read every threshold in metres as feet.
        found = " and ".join(units) if units else "no unit"
        raise ProjectionError(f"CRS {text!r} measures in {found}, not metres: every "
                              "distance in the config and zones is in metres")
    return crs


def _horizontal_units(crs: CRS) -> list[str]:
    """The distinct units of a CRS's horizontal axes ("metre" for 1 m, whatever its
    spelling); a compound CRS's height is left out."""
    units: list[str] = []
    for axis in crs.axis_info:
        if axis.direction in ("up", "down"):
            continue
        unit = "metre" if axis.unit_conversion_factor == 1.0 else axis.unit_name
        if unit not in units:
            units.append(unit)
    return units


def central_meridian(crs: CRS) -> float | None:
    """λ0 (degrees) of a transverse Mercator projection, else None."""
    tm = transverse_mercator(crs)
    return None if tm is None else tm[0]


def transverse_mercator(crs: CRS) -> tuple[float, float, float | None] | None:
    """(λ0 in degrees, k0, false easting in metres or None in other units) of a transverse
    Mercator projection, else None."""
    operation = crs.coordinate_operation
    if operation is None or operation.method_code != str(TRANSVERSE_MERCATOR):
        return None
    params = {param.code: param for param in operation.params}
    lon0, k0, easting = params.get("8802"), params.get("8805"), params.get("8806")
    if lon0 is None or lon0.unit_name != "degree":
        return None
    return (float(lon0.value), 1.0 if k0 is None else float(k0.value),
            float(easting.value) if easting is not None and easting.unit_name == "metre"
            else None)


def _flat_band(k0: float, easting: float | None, a: float, es: float
               ) -> tuple[float, float]:
    """The x range of a transverse Mercator projection where the scale factor is within
    :data:`SCALE_TOLERANCE` of 1 at any latitude: ``k = k0·cosh(x′ / (k0·R))`` on a
    sphere of radius R, taken with the smallest radius of curvature (the meridian's at
    the equator, a(1 − e²): k grows fastest there), less 1 %."""
    if easting is None or not 1.0 - SCALE_TOLERANCE <= k0 < 1.0 + SCALE_TOLERANCE:
        return _NOWHERE
    half = 0.99 * k0 * a * (1.0 - es) * math.acosh((1.0 + SCALE_TOLERANCE) / k0)
    return easting - half, easting + half


class Projector:
    """Projects lon/lat to x/y metres and back in one fixed CRS."""

    __slots__ = ("_back", "_ep2", "_factors", "_fwd", "_k0", "_lon0", "_min_scale", "_proj",
                 "crs", "flat")

    def __init__(self, crs: str) -> None:
        self.crs = crs
        target = check_crs(crs)
        self._fwd = Transformer.from_crs(WGS84, target, always_xy=True)
        self._back = Transformer.from_crs(target, WGS84, always_xy=True)
        tm = transverse_mercator(target)
        self._lon0 = None if tm is None else tm[0]
        self._k0 = 1.0 if tm is None else tm[1]
        ellipsoid = target.ellipsoid
        a = ellipsoid.semi_major_metre if ellipsoid is not None else 6_378_137.0
        flattening = (1.0 / ellipsoid.inverse_flattening
                      if ellipsoid is not None and ellipsoid.inverse_flattening else 0.0)
        es = flattening * (2.0 - flattening)
        self._ep2 = es / (1.0 - es)  # second eccentricity squared
        #: (x0, x1): at a projected x strictly between them the scale factor is 1 (within
        #: the tolerance) whatever the latitude, so a rule may skip :meth:`scale`; an empty
        #: range for other projections.
        self.flat = _NOWHERE if tm is None else _flat_band(tm[1], tm[2], a, es)
        self._proj: Proj | None = None  # built on first use, for other projections only
        #: transverse Mercator: k0, its smallest scale; other projections: on first use
        self._min_scale: float | None = None if tm is None else tm[1]
        #: other projections: (convergence, scale) per 0.01° square
        self._factors: dict[tuple[int, int], tuple[float, float]] = {}

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
        return self._other_factors(lon, lat)[0]

    def scale(self, lon: float, lat: float) -> float:
        """Point scale factor k at a point: projected metres per true metre (1.0 when
        within :data:`SCALE_TOLERANCE` of it). A true distance of a few km around the point
        is the projected one divided by k.

        Transverse Mercator (conformal: the same k in every direction): the sphere's
        k0 / sqrt(1 − (cos φ · sin(λ − λ0))²) times (1 + e′²·cos⁴φ·(λ − λ0)²/2), the
        ellipsoid's leading term; within 5e-5 of pyproj's value up to 2,000 km from the
        central meridian, 2.2e-4 at 3,000 km. Any other projection: pyproj's at the centre
        of the point's 0.01° square, cached; where it is not conformal (distances stretch
        by direction), the geometric mean of its largest and smallest scale,
        sqrt(areal scale).
        """
        lon0 = self._lon0
        if lon0 is None:
            return self._other_factors(lon, lat)[1]
        c = math.cos(lat * _RAD)
        d = ((lon - lon0 + 180.0) % 360.0 - 180.0) * _RAD  # across the antimeridian too
        b = c * math.sin(d)
        cc = c * c
        k = self._k0 / math.sqrt(max(1.0 - b * b, 1e-12)) * (
            1.0 + 0.5 * self._ep2 * cc * cc * d * d)
        return 1.0 if abs(k - 1.0) < SCALE_TOLERANCE else k

    def scale_at(self, x: float, lon: float, lat: float) -> float:
        """:meth:`scale` at a fix projected to ``x``, without the trigonometry where the
        projection's :attr:`flat` range says it is 1."""
        x0, x1 = self.flat
        return 1.0 if x0 < x < x1 else self.scale(lon, lat)

    @property
    def min_scale(self) -> float:
        """A lower bound of the scale factor anywhere and in any direction: the line on the
        ellipsoid under a straight line of ``d`` projected metres is at most
        ``d / min_scale`` true metres long, and the geodesic no longer, so a projected
        distance is at least ``min_scale`` times the true one.

        Transverse Mercator: k0 (0.9996 in UTM), its scale on the central meridian, where a
        projected metre is shorter than a true one. Any other projection: the smallest
        scale in any direction (pyproj's Tissot semi-minor axis) at the centres of a 1°
        grid over the globe, less 0.1 % for what lies between them; worked out once, on
        first use (some 0.1 s).
        """
        found = self._min_scale
        if found is None:
            found = self._min_scale = self._grid_min_scale()
        return found

    def _grid_min_scale(self) -> float:
        lons, lats = np.meshgrid(np.arange(-179.5, 180.0), np.arange(-89.5, 90.0))
        if self._proj is None:
            self._proj = Proj(check_crs(self.crs))
        with np.errstate(invalid="ignore"):
            minor = np.asarray(self._proj.get_factors(
                lons.ravel(), lats.ravel(), errcheck=False).tissot_semiminor, dtype=float)
        minor = minor[np.isfinite(minor) & (minor > 0.0)]  # outside the projection's domain
        return 0.999 * float(minor.min()) if minor.size else 0.0

    def _other_factors(self, lon: float, lat: float) -> tuple[float, float]:
        """(convergence in radians, scale) of a projection other than transverse Mercator,
        at the centre of the point's 0.01° square (cached)."""
        key = (round(lon * 100.0), round(lat * 100.0))
        found = self._factors.get(key)
        if found is None:
            if self._proj is None:
                self._proj = Proj(check_crs(self.crs))
            if len(self._factors) >= _FACTORS_CACHE_MAX:
                self._factors.clear()
            factors = self._proj.get_factors(key[0] / 100.0, key[1] / 100.0)
            k = math.sqrt(factors.areal_scale)
            found = self._factors[key] = (math.radians(factors.meridian_convergence),
                                          1.0 if abs(k - 1.0) < SCALE_TOLERANCE else k)
        return found

    def forward_arrays(self, lons: Any, lats: Any) -> tuple[Any, Any]:
        """Vectorised :meth:`forward` on arrays (projects zone rings once at load)."""
        xs, ys = self._fwd.transform(lons, lats)
        return xs, ys
