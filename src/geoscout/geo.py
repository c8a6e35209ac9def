"""Spherical geodesy, geohash and GeoGuessr scores: pure numpy, vectorised.

Conventions: degrees in, degrees out, latitude before longitude, kilometres for
distance, a sphere of radius 6371 km (as PIGEON and OSV-5M compute distances).
Every function accepts scalars or numpy arrays and broadcasts like numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InvalidInput

__all__ = [
    "ACCURACY_THRESHOLDS_KM",
    "EARTH_RADIUS_KM",
    "GEOHASH_ALPHABET",
    "destination_point",
    "exp1160_score",
    "geoguessr_score",
    "geohash_bbox",
    "geohash_decode",
    "geohash_encode",
    "geohash_neighbors",
    "haversine_km",
    "initial_bearing_deg",
    "l2_normalize",
    "latlon_to_xyz",
    "pairwise_haversine_km",
    "spherical_mean",
    "valid_latlon",
    "validate_latlon",
    "wrap_longitude",
    "xyz_to_latlon",
]

EARTH_RADIUS_KM = 6371.0
GEOHASH_ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
ACCURACY_THRESHOLDS_KM: tuple[float, ...] = (1.0, 25.0, 200.0, 750.0, 2500.0)
_GH_INDEX = {c: i for i, c in enumerate(GEOHASH_ALPHABET)}


def l2_normalize(x: NDArray[Any]) -> NDArray[Any]:
    """``x`` scaled to unit length along its last axis (rows of an (N, D) matrix, or one vector).

    Norms are floored at 1e-12, so zero vectors stay zero instead of becoming NaN; the dtype follows ``x``.
    """
    out: NDArray[Any] = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return out


def valid_latlon(lat: ArrayLike, lon: ArrayLike, *, lon_limit: float = 180.0) -> NDArray[np.bool_]:
    """True where ``(lat, lon)`` are finite degrees with ``|lat| <= 90`` and ``|lon| <= lon_limit`` (broadcast)."""
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok: NDArray[np.bool_] = np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90.0) & (np.abs(lo) <= lon_limit)
    return ok


def validate_latlon(
    lat: ArrayLike, lon: ArrayLike, *, what: str = "coordinates"
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return ``(lat, lon)`` as float arrays, or raise :class:`InvalidInput` naming the first bad entry.

    Latitude must lie in [-90, 90] and longitude in [-180, 180] degrees, both finite.
    """
    try:
        la = np.asarray(lat, dtype=np.float64)
        lo = np.asarray(lon, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what}: latitude/longitude must be numbers in degrees ({exc})") from None
    la, lo = np.broadcast_arrays(la, lo)
    bad = ~valid_latlon(la, lo)
    if bad.any():
        idx = np.argwhere(bad)[0]
        where = f" at index {tuple(int(i) for i in idx) if la.ndim > 1 else int(idx[0])}" if la.ndim else ""
        raise InvalidInput(
            f"{what}{where}: ({la[tuple(idx)]!r}, {lo[tuple(idx)]!r}) is not a valid (lat, lon); "
            f"expected latitude in [-90, 90] and longitude in [-180, 180] degrees "
            f"({int(bad.sum())} invalid of {bad.size}). Check the column order (lat before lon) and units."
        )
    return la, lo


def wrap_longitude(lon: ArrayLike) -> NDArray[np.float64]:
    """Wrap longitudes into [-180, 180)."""
    lo = np.asarray(lon, dtype=np.float64)
    return (lo + 180.0) % 360.0 - 180.0


def haversine_km(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> NDArray[np.float64]:
    """Great-circle distance in km between points 1 and 2 (broadcasting), sphere R = 6371 km."""
    p1, l1, p2, l2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((p2 - p1) / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2.0) ** 2
    d: NDArray[np.float64] = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return d


def pairwise_haversine_km(
    lat_a: ArrayLike, lon_a: ArrayLike, lat_b: ArrayLike, lon_b: ArrayLike
) -> NDArray[np.float64]:
    """Matrix of distances in km: rows are points a (N), columns points b (M) -> (N, M)."""
    la = np.asarray(lat_a, dtype=np.float64).reshape(-1, 1)
    oa = np.asarray(lon_a, dtype=np.float64).reshape(-1, 1)
    lb = np.asarray(lat_b, dtype=np.float64).reshape(1, -1)
    ob = np.asarray(lon_b, dtype=np.float64).reshape(1, -1)
    return haversine_km(la, oa, lb, ob)


def initial_bearing_deg(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> NDArray[np.float64]:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from north in [0, 360)."""
    p1, l1, p2, l2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (lat1, lon1, lat2, lon2))
    y = np.sin(l2 - l1) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(l2 - l1)
    bearing: NDArray[np.float64] = np.degrees(np.arctan2(y, x)) % 360.0
    return bearing


def destination_point(
    lat: ArrayLike, lon: ArrayLike, bearing_deg: ArrayLike, distance_km: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Point reached from (lat, lon) after ``distance_km`` along initial bearing ``bearing_deg``.

    Returns ``(lat, lon)`` with longitude wrapped into [-180, 180).
    """
    p1 = np.radians(np.asarray(lat, dtype=np.float64))
    l1 = np.radians(np.asarray(lon, dtype=np.float64))
    th = np.radians(np.asarray(bearing_deg, dtype=np.float64))
    d = np.asarray(distance_km, dtype=np.float64) / EARTH_RADIUS_KM
    p2 = np.arcsin(np.clip(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(th), -1.0, 1.0))
    l2 = l1 + np.arctan2(np.sin(th) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2))
    return np.degrees(p2), wrap_longitude(np.degrees(l2))


def latlon_to_xyz(lat: ArrayLike, lon: ArrayLike) -> NDArray[np.float64]:
    """Unit vectors (..., 3) on the sphere for (lat, lon) in degrees."""
    p = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(p) * np.cos(lam), np.cos(p) * np.sin(lam), np.sin(p)], axis=-1)


def xyz_to_latlon(xyz: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(lat, lon) in degrees of vectors (..., 3); vectors need not be unit length."""
    v = np.asarray(xyz, dtype=np.float64)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


def spherical_mean(
    lat: ArrayLike, lon: ArrayLike, weights: ArrayLike | None = None, axis: int = -1
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Weighted mean of points on the sphere (normalised mean of unit vectors) along ``axis``.

    Correct across the antimeridian. Antipodal sets with no defined mean return the
    arithmetic result of the vector sum, which is as good as any.
    """
    v = latlon_to_xyz(lat, lon)
    ax = axis if axis >= 0 else v.ndim - 1 + axis
    if weights is None:
        s = v.sum(axis=ax)
    else:
        w = np.asarray(weights, dtype=np.float64)
        s = (v * np.expand_dims(w, -1)).sum(axis=ax)
    return xyz_to_latlon(s)


def geoguessr_score(distance_km: ArrayLike) -> NDArray[np.float64]:
    """GeoGuessr points for a guess ``distance_km`` away: ``5000 * exp(-d / 1492.7)`` (PIGEON, OSV-5M)."""
    return 5000.0 * np.exp(-np.asarray(distance_km, dtype=np.float64) / 1492.7)


def exp1160_score(distance_km: ArrayLike) -> NDArray[np.float64]:
    """The US/Canada project's score in [0, 1]: ``exp(-d / 1160)``."""
    return np.exp(-np.asarray(distance_km, dtype=np.float64) / 1160.0)


# ---------------------------------------------------------------------------- geohash
def _check_precision(precision: int) -> int:
    if not isinstance(precision, (int, np.integer)) or not 1 <= int(precision) <= 12:
        raise InvalidInput(f"geohash precision must be an integer in 1..12, got {precision!r}")
    return int(precision)


def _gh_bits(precision: int) -> tuple[int, int]:
    nbits = 5 * precision
    return (nbits + 1) // 2, nbits // 2  # (longitude bits, latitude bits)


def geohash_encode(lat: ArrayLike, lon: ArrayLike, precision: int = 12) -> Any:
    """Geohash of (lat, lon) with ``precision`` characters (1..12).

    Scalar in, ``str`` out; arrays in, numpy array of ``str`` out.
    (57.64911, 10.40744) -> ``'u4pruydqyv'`` at precision 10.
    """
    precision = _check_precision(precision)
    la, lo = validate_latlon(lat, lon, what="geohash_encode")
    scalar = la.ndim == 0
    la, lo = np.atleast_1d(la), np.atleast_1d(lo)
    nlon, nlat = _gh_bits(precision)
    # Quantise: bisection sends a value equal to the midpoint to the upper half, like floor().
    qlon = np.clip(np.floor((lo + 180.0) / 360.0 * (1 << nlon)), 0, (1 << nlon) - 1).astype(np.uint64)
    qlat = np.clip(np.floor((la + 90.0) / 180.0 * (1 << nlat)), 0, (1 << nlat) - 1).astype(np.uint64)
    # Rounding in (x + 180) can push a value just below a cell edge into the next cell;
    # cell edges are exact binary fractions, so compare against them and step back.
    qlon -= (lo < -180.0 + qlon.astype(np.float64) * (360.0 / (1 << nlon))).astype(np.uint64)
    qlat -= (la < -90.0 + qlat.astype(np.float64) * (180.0 / (1 << nlat))).astype(np.uint64)
    code = np.zeros(la.shape, dtype=np.uint64)
    ilon, ilat = nlon, nlat
    for bit in range(5 * precision):  # even bits are longitude, starting with the most significant
        if bit % 2 == 0:
            ilon -= 1
            b = (qlon >> np.uint64(ilon)) & np.uint64(1)
        else:
            ilat -= 1
            b = (qlat >> np.uint64(ilat)) & np.uint64(1)
        code = (code << np.uint64(1)) | b
    alphabet = np.frombuffer(GEOHASH_ALPHABET.encode(), dtype="S1")
    chars = np.empty((*la.shape, precision), dtype="S1")
    for k in range(precision):
        shift = np.uint64(5 * (precision - 1 - k))
        chars[..., k] = alphabet[((code >> shift) & np.uint64(31)).astype(np.intp)]
    out = chars.view(f"S{precision}").reshape(la.shape).astype(str)
    return str(out[0]) if scalar else out


def _decode_one(geohash: str) -> tuple[float, float, float, float]:
    if not isinstance(geohash, str) or not 1 <= len(geohash) <= 12:
        raise InvalidInput(f"a geohash is a string of 1..12 characters from {GEOHASH_ALPHABET!r}, got {geohash!r}")
    s, w, n, e = -90.0, -180.0, 90.0, 180.0
    even = True
    for ch in geohash.lower():
        try:
            val = _GH_INDEX[ch]
        except KeyError:
            raise InvalidInput(f"geohash {geohash!r} has {ch!r}, which is not in {GEOHASH_ALPHABET!r}") from None
        for shift in range(4, -1, -1):
            bit = (val >> shift) & 1
            if even:
                mid = (w + e) / 2.0
                w, e = (mid, e) if bit else (w, mid)
            else:
                mid = (s + n) / 2.0
                s, n = (mid, n) if bit else (s, mid)
            even = not even
    return s, w, n, e


def geohash_bbox(geohash: str) -> tuple[float, float, float, float]:
    """Bounding box of a geohash cell as ``(south, west, north, east)`` in degrees."""
    return _decode_one(geohash)


def geohash_decode(geohash: str | ArrayLike) -> tuple[Any, Any]:
    """Centre ``(lat, lon)`` of a geohash cell (or arrays of centres for an array of geohashes)."""
    if isinstance(geohash, str):
        s, w, n, e = _decode_one(geohash)
        return (s + n) / 2.0, (w + e) / 2.0
    boxes = np.array([_decode_one(str(g)) for g in np.asarray(geohash).ravel()], dtype=np.float64).reshape(-1, 4)
    shape = np.asarray(geohash).shape
    return ((boxes[:, 0] + boxes[:, 2]) / 2).reshape(shape), ((boxes[:, 1] + boxes[:, 3]) / 2).reshape(shape)


def geohash_neighbors(geohash: str) -> dict[str, str | None]:
    """The 8 neighbouring cells of the same precision: keys n, ne, e, se, s, sw, w, nw.

    Longitude wraps across the antimeridian; a neighbour beyond a pole is ``None``.
    """
    s, w, n, e = _decode_one(geohash)
    dlat, dlon = n - s, e - w
    clat, clon = (s + n) / 2.0, (w + e) / 2.0
    out: dict[str, str | None] = {}
    for key, (dy, dx) in {
        "n": (1, 0),
        "ne": (1, 1),
        "e": (0, 1),
        "se": (-1, 1),
        "s": (-1, 0),
        "sw": (-1, -1),
        "w": (0, -1),
        "nw": (1, -1),
    }.items():
        lat = clat + dy * dlat
        if lat > 90.0 or lat < -90.0:
            out[key] = None
            continue
        lon = float(wrap_longitude(clon + dx * dlon))
        out[key] = geohash_encode(lat, lon, len(geohash))
    return out
