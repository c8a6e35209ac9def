"""Polygon partitions from administrative regions: ``country`` and ``admin1``.

Shapes: Natural Earth 10m admin-0 polygons (``geoscout.places.country_polygons``), simplified
to ``simplify_deg`` degrees (default 0.01, about 1 km; keeps partition files small and
assignment fast). Admin-1 regions are built offline: the Voronoi cells (planar, in lon/lat)
of the GeoNames places of one country (``geoscout.places.geonames_cities``), dissolved per
admin-1 name and clipped to the country polygon. They approximate province borders to within
roughly the spacing of towns, which is all a geolocation classifier needs.

Sea and coastal points: a point inside no polygon (a ferry, a pier, a beach the generalised
coastline cuts off) gets -1 with ``fallback=None``; the default for these partitions is
``fallback="nearest"``: the cell whose polygon is nearest (planar distance in degrees). Fitting
uses the same rule, so every training point counts in exactly one cell.

Point on a shared border: the cell with the lower index wins.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoscout.errors import InvalidInput

from ._registry import PARTITIONS
from .base import Partition

__all__ = ["Admin1Partition", "CountryPartition", "PolygonPartition", "admin1_regions", "country_shapes"]

DEFAULT_SIMPLIFY_DEG = 0.01
_MAX_VORONOI_SITES = 2500  # per country; larger sets are thinned deterministically


# ---------------------------------------------------------------------------- sources
@functools.lru_cache(maxsize=4)
def country_shapes(simplify_deg: float = DEFAULT_SIMPLIFY_DEG) -> tuple[tuple[str, str, Any], ...]:
    """``(iso2, name, geometry)`` of every Natural Earth country, simplified to ``simplify_deg`` degrees."""
    import shapely

    from geoscout.places import country_polygons

    shapes = country_polygons()
    geoms = [s.geometry for s in shapes]
    if simplify_deg > 0:
        simple = shapely.simplify(geoms, simplify_deg, preserve_topology=False)
        # a country made of islands smaller than the tolerance keeps its full-detail shape
        geoms = [g if s.is_empty else s for g, s in zip(geoms, simple)]
    geoms = [_clean(g) for g in geoms]
    return tuple((s.iso2, s.name, g) for s, g in zip(shapes, geoms) if not g.is_empty)


def _clean(g: Any) -> Any:
    """Coordinates rounded to 1e-5 degrees (about 1 m: compact files), valid, polygon parts only."""
    import shapely

    g = shapely.transform(g, lambda c: np.round(c, 5))
    if not g.is_valid:
        g = shapely.make_valid(g)
    return _polygonal(g)


def _polygonal(g: Any) -> Any:
    """Only the polygon parts of ``g`` (an intersection may add slivers of lines or points)."""
    import shapely

    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    if not parts:
        return shapely.Polygon()
    return shapely.union_all(parts) if len(parts) > 1 else parts[0]


@functools.lru_cache(maxsize=1)
def _cities() -> Any:
    from geoscout.places import geonames_cities

    df = geonames_cities()
    df = df[df["admin1"].astype(str).str.len() > 0]
    return {code: g for code, g in df.groupby("country", sort=False)}  # noqa: C416 - dict(groupby) calls its .keys


@functools.lru_cache(maxsize=512)
def admin1_regions(iso2: str, simplify_deg: float = DEFAULT_SIMPLIFY_DEG) -> tuple[tuple[str, Any], ...]:
    """``(admin1 name, geometry)`` regions of one country (see the module docstring), sorted by name.

    A country without GeoNames places (or with one admin-1 name only) is one region named
    after that admin-1 or, failing one, after the country.
    """
    import shapely

    shapes = {c: (n, g) for c, n, g in country_shapes(simplify_deg)}
    if iso2 not in shapes:
        raise InvalidInput(f"unknown country code {iso2!r}")
    cname, geom = shapes[iso2]
    sub = _cities().get(iso2)
    if sub is None or sub["admin1"].nunique() <= 1:
        return (((str(sub["admin1"].iloc[0]) if sub is not None else cname), geom),)
    sub = sub.drop_duplicates(subset=["lat", "lon"])
    if len(sub) > _MAX_VORONOI_SITES:
        # thin deterministically, keeping the most populous place of every admin-1
        pop = sub["population"].fillna(0.0).to_numpy()
        order = np.lexsort((np.arange(len(sub)), -pop))
        sub = sub.iloc[order]
        first = ~sub.duplicated(subset=["admin1"])
        rest = np.flatnonzero(~first.to_numpy())
        rng = np.random.default_rng(0)
        pick = rng.choice(rest, size=_MAX_VORONOI_SITES - int(first.sum()), replace=False)
        keep = np.sort(np.concatenate([np.flatnonzero(first.to_numpy()), pick]))
        sub = sub.iloc[keep]
    lon = sub["lon"].to_numpy(dtype=np.float64)
    lat = sub["lat"].to_numpy(dtype=np.float64)
    minx, miny, maxx, maxy = geom.bounds
    pad = 1.0
    extent = shapely.box(
        min(minx, lon.min()) - pad, min(miny, lat.min()) - pad, max(maxx, lon.max()) + pad, max(maxy, lat.max()) + pad
    )
    vor = shapely.voronoi_polygons(shapely.multipoints(np.column_stack([lon, lat])), extend_to=extent, ordered=True)
    cells = np.asarray(shapely.get_parts(vor))
    labels = sub["admin1"].astype(str).to_numpy()
    out = []
    for name in sorted(set(labels)):
        region = shapely.coverage_union_all(cells[labels == name])
        # clip the (large) country to the region's box first: intersection cost scales with vertices
        local = shapely.clip_by_rect(geom, *region.bounds)
        region = _clean(shapely.intersection(region, local))
        if not region.is_empty:
            out.append((name, region))
    return tuple(out) if out else ((cname, geom),)


# ---------------------------------------------------------------------------- base class
class PolygonPartition(Partition):
    """Cells given by (Multi)Polygons in lon/lat; vectorised point-in-polygon with an STRtree."""

    default_fallback = "nearest"

    def __init__(
        self, *, simplify_deg: float = DEFAULT_SIMPLIFY_DEG, min_count: int = 1, fallback: str | None = "default"
    ) -> None:
        super().__init__(min_count=min_count, fallback=fallback)
        self.simplify_deg = simplify_deg

    def _validate_params(self) -> None:
        super()._validate_params()
        try:
            t = float(self.simplify_deg)
        except (TypeError, ValueError):
            t = float("nan")
        if not (0.0 <= t <= 1.0):
            raise InvalidInput(f"simplify_deg must be a number of degrees in [0, 1], got {self.simplify_deg!r}")
        self.simplify_deg = t

    # geometry store -------------------------------------------------------------
    def _set_geoms(self, geoms: list[Any]) -> None:
        import shapely

        arr = np.empty(len(geoms), dtype=object)
        arr[:] = geoms
        shapely.prepare(arr)
        self._geom_store: tuple[NDArray[Any], Any] | None = (arr, shapely.STRtree(arr))
        self._geojson_geoms: list[dict[str, Any]] | None = None
        self._nb_cache: dict[int, list[int]] = {}
        self._boundary: _BoundaryIndex | None = None

    def _geometry(self) -> tuple[NDArray[Any], Any]:
        """(polygons, STRtree): built on first use from a loaded file's GeoJSON (a bundle that only
        predicts, as ``locate`` does, never needs them)."""
        if self._geom_store is None:
            from shapely.geometry import shape

            assert self._geojson_geoms is not None
            self._set_geoms([shape(g) for g in self._geojson_geoms])
        assert self._geom_store is not None
        return self._geom_store

    @property
    def _geoms_(self) -> NDArray[Any]:
        return self._geometry()[0]

    @property
    def _tree(self) -> Any:
        return self._geometry()[1]

    def _locate(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
        return _locate_in(self._geoms_, self._tree, la, lo)

    def _nearest(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
        """Cell with the nearest boundary (great-circle distance, within about 5 km; see _BoundaryIndex)."""
        boundary = getattr(self, "_boundary", None)
        if boundary is None:
            boundary = self._boundary = _BoundaryIndex(self._geoms_)
        return boundary.nearest(la, lo)

    def polygon(self, i: int) -> Any:
        self._check_fitted()
        return self._geoms_[i]

    def neighbors(self, i: int) -> list[int]:
        """Cells whose polygons touch (within twice the simplification tolerance) cell ``i``."""
        self._check_fitted()
        if i not in self._nb_cache:
            hits = self._tree.query(self._geoms_[i], predicate="dwithin", distance=2 * self.simplify_deg + 1e-9)
            self._nb_cache[i] = sorted(int(j) for j in hits if j != i)
        return list(self._nb_cache[i])

    def _restore(self, features: list[dict[str, Any]], state: dict[str, Any]) -> None:
        geoms = [f["geometry"] for f in features]
        if not all(isinstance(g, Mapping) for g in geoms):
            raise ValueError("a cell's geometry is not a GeoJSON geometry")
        self._geom_store = None
        self._geojson_geoms = geoms
        self._nb_cache = {}
        self._boundary = None
        self.cell_country_ = [str(f["properties"].get("country", "")) for f in features]

    def _feature_properties(self, i: int) -> dict[str, Any]:
        return {"country": self.cell_country_[i]}


def _locate_in(geoms: NDArray[Any], tree: Any, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
    """Index of the (lowest-index) geometry containing or touching each point; -1 for none."""
    import shapely

    n = la.size
    out = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    if n == 0 or len(geoms) == 0:
        return np.full(n, -1, dtype=np.int64)
    pi, ti = tree.query(shapely.points(lo, la))  # bounding-box candidates
    if pi.size:
        order = np.argsort(ti, kind="stable")
        pi, ti = pi[order], ti[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(ti)) + 1, [ti.size]])
        hit = np.zeros(pi.size, dtype=bool)
        for a, b in itertools.pairwise(starts):
            p = pi[a:b]
            hit[a:b] = shapely.intersects_xy(geoms[ti[a]], lo[p], la[p])
        np.minimum.at(out, pi[hit], ti[hit])
    out[out == np.iinfo(np.int64).max] = -1
    return out


class _BoundaryIndex:
    """Nearest polygon by great-circle distance to its boundary, approximated by boundary vertices.

    Boundaries are densified to at most ``step_deg`` degrees between vertices, so the error is
    at most half a step (about 5 km for 0.1 degree); a scipy cKDTree on unit vectors makes a
    query of 100k points take a fraction of a second (an exact STRtree nearest query against
    detailed country polygons takes minutes).
    """

    def __init__(self, geoms: Any, step_deg: float = 0.1) -> None:
        import shapely
        from scipy.spatial import cKDTree

        from geoscout.geo import latlon_to_xyz

        rings = shapely.boundary(np.asarray(geoms, dtype=object))
        rings = shapely.segmentize(rings, step_deg)
        xy, owner = shapely.get_coordinates(rings, return_index=True)
        self.owner = owner.astype(np.int64)
        self.tree = cKDTree(latlon_to_xyz(xy[:, 1], xy[:, 0]))

    def nearest(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
        from geoscout.geo import latlon_to_xyz

        if la.size == 0:
            return np.zeros(0, dtype=np.int64)
        _, j = self.tree.query(latlon_to_xyz(la, lo), k=1)
        return self.owner[np.asarray(j, dtype=np.int64)]


def _country_index(simplify_deg: float) -> tuple[list[str], list[str], Any, Any, _BoundaryIndex]:
    """(codes, names, geometry array, STRtree, boundary index) over every country (cached per tolerance)."""
    return _country_index_cached(float(simplify_deg))


@functools.lru_cache(maxsize=4)
def _country_index_cached(simplify_deg: float) -> tuple[list[str], list[str], Any, Any, _BoundaryIndex]:
    import shapely

    shapes = country_shapes(simplify_deg)
    arr = np.empty(len(shapes), dtype=object)
    arr[:] = [g for _, _, g in shapes]
    shapely.prepare(arr)
    codes, names = [c for c, _, _ in shapes], [n for _, n, _ in shapes]
    return codes, names, arr, shapely.STRtree(arr), _BoundaryIndex(arr)


def countries_of_points(
    la: NDArray[np.float64], lo: NDArray[np.float64], simplify_deg: float, nearest: bool
) -> NDArray[np.int64]:
    """Index into ``country_shapes(simplify_deg)`` of each point (nearest country if outside and ``nearest``)."""
    _, _, geoms, tree, boundary = _country_index(simplify_deg)
    idx = _locate_in(geoms, tree, la, lo)
    if nearest:
        miss = np.flatnonzero(idx < 0)
        if miss.size:
            idx[miss] = boundary.nearest(la[miss], lo[miss])
    return idx


# ---------------------------------------------------------------------------- country
class CountryPartition(PolygonPartition):
    """One cell per country (``country``); ids are ISO 3166-1 alpha-2 codes ("HR").

    ``min_count=0`` keeps every country (the cells then cover all land); the default keeps the
    countries with at least one training point.
    """

    name = "country"
    min_count_zero_ok = True

    def _fit_cells(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> None:
        codes, names, geoms, _, boundary = _country_index(self.simplify_deg)
        idx = countries_of_points(la, lo, self.simplify_deg, nearest=self._fallback == "nearest")
        counts = np.bincount(idx[idx >= 0], minlength=len(codes))
        keep = np.flatnonzero(counts >= self.min_count)
        if keep.size == 0:
            raise InvalidInput(f"{self.spec}.fit: no country holds min_count={self.min_count} training points")
        self.cell_ids_ = [codes[k] for k in keep]
        self.cell_country_ = list(self.cell_ids_)
        self.cell_name_ = [names[k] for k in keep]
        self._set_geoms([geoms[k] for k in keep])
        if keep.size == len(codes):  # every country: share the cached boundary index
            self._boundary = boundary

    def _restore(self, features: list[dict[str, Any]], state: dict[str, Any]) -> None:
        super()._restore(features, state)
        self.cell_name_ = [str(f["properties"].get("name", "")) for f in features]

    def _feature_properties(self, i: int) -> dict[str, Any]:
        return {"country": self.cell_country_[i], "name": self.cell_name_[i]}


@PARTITIONS.register("country", help="country - one cell per country (Natural Earth polygons)")
def _make_country(arg: str | None = None, **kw: Any) -> CountryPartition:
    if arg is not None:
        raise InvalidInput(f"'country' takes no argument, got 'country:{arg}'")
    return CountryPartition(**kw)


# ---------------------------------------------------------------------------- admin1
class Admin1Partition(PolygonPartition):
    """One cell per first-level administrative region (``admin1``); ids ``"HR/Grad Zagreb"``.

    Regions are built for the countries that hold training points (all countries with
    ``min_count=0``, which takes a minute); of those, the regions with at least ``min_count``
    training points become cells.
    """

    name = "admin1"
    min_count_zero_ok = True

    def _fit_cells(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> None:
        codes, _, _, _, _ = _country_index(self.simplify_deg)
        cidx = countries_of_points(la, lo, self.simplify_deg, nearest=self._fallback == "nearest")
        wanted = range(len(codes)) if self.min_count == 0 else sorted(set(cidx[cidx >= 0].tolist()))
        ids, countries, geoms = [], [], []
        for k in wanted:
            for name, g in admin1_regions(codes[k], self.simplify_deg):
                ids.append(f"{codes[k]}/{name}")
                countries.append(codes[k])
                geoms.append(g)
        if not ids:
            raise InvalidInput(f"{self.spec}.fit: no training point lies in or near a country")
        self.cell_ids_ = ids
        self.cell_country_ = countries
        self._set_geoms(geoms)
        idx = self.assign(la, lo)
        counts = np.bincount(idx[idx >= 0], minlength=len(ids))
        keep = np.flatnonzero(counts >= self.min_count)
        if keep.size == 0:
            raise InvalidInput(f"{self.spec}.fit: no admin-1 region holds min_count={self.min_count} training points")
        self.cell_ids_ = [ids[k] for k in keep]
        self.cell_country_ = [countries[k] for k in keep]
        self._set_geoms([geoms[k] for k in keep])


@PARTITIONS.register("admin1", help="admin1 - one cell per province/state (GeoNames-based regions)")
def _make_admin1(arg: str | None = None, **kw: Any) -> Admin1Partition:
    if arg is not None:
        raise InvalidInput(f"'admin1' takes no argument, got 'admin1:{arg}'")
    return Admin1Partition(**kw)
