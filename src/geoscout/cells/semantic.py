"""``semantic``: PIGEON's semantic geocells, built offline from admin-1 regions and the training data.

Algorithm (``fit``), per country that holds training points:

1. Start from the country's admin-1 regions (:func:`geoscout.cells.regions.admin1_regions`).
   Every training point gets a country and a region by point-in-polygon; sea and coastal
   points get the nearest country, then that country's nearest region.
2. Merge: while some region holds fewer than ``min_samples`` points (and the country has more
   than one region), take the region with the fewest points and merge it into the adjacent
   region of the same country (polygons within twice ``simplify_deg``) with the fewest points;
   a region without an adjacent one (an island) joins the nearest region of its country.
   Merged cells never cross a border. A country with fewer than ``min_samples`` points in
   total ends as one cell.
3. Split: a region with more than ``max_samples`` points is split. OPTICS (scikit-learn,
   haversine metric, ``optics_min_samples``) finds dense clusters of its distinct locations;
   clusters with ``min_samples`` .. ``max_samples`` points become parts (fewest-point clusters
   are returned to the rest while the rest would hold fewer than ``min_samples``). The rest, if it
   holds more than ``max_samples`` points, is bisected recursively with weighted 2-means (Lloyd,
   deterministic farthest-point start) on unit vectors
   (a weighted median cut along the principal axis when 2-means leaves a side below
   ``min_samples``). The region is then tessellated by the (planar, lon/lat) Voronoi cells of
   its distinct training locations, dissolved per part and clipped to the region: every training
   point lies in its own part. Regions with more than ``optics_max_points`` (default 500) distinct
   locations skip OPTICS and are only bisected: scikit-learn's OPTICS costs about 7 ms per
   location on one core, too slow for large regions. Parts respect both bounds except where many points share one location.

Countries without training points become one cell each when ``cover_land=True`` (default), so
the cells cover all land. Ids: ``"sem:HR/Zagreb"`` (an admin-1 region, possibly with merged
neighbours listed in the feature's ``members``), ``"sem:HR/Zagreb#2"`` (a split part),
``"sem:FR"`` (a whole country without data).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoscout.errors import InvalidInput
from geoscout.geo import latlon_to_xyz

from ._registry import PARTITIONS
from .base import _check_int
from .regions import (
    PolygonPartition,
    _BoundaryIndex,
    _clean,
    _country_index,
    _locate_in,
    admin1_regions,
    countries_of_points,
)

__all__ = ["SemanticPartition"]


class SemanticPartition(PolygonPartition):
    """PIGEON-style semantic geocells (``semantic``); see the module docstring for the algorithm."""

    name = "semantic"

    def __init__(
        self,
        *,
        min_samples: int = 20,
        max_samples: int = 1000,
        optics_min_samples: int = 5,
        optics_max_points: int = 500,
        cover_land: bool = True,
        simplify_deg: float = 0.01,
        min_count: int = 1,
        fallback: str | None = "default",
    ) -> None:
        super().__init__(simplify_deg=simplify_deg, min_count=min_count, fallback=fallback)
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.optics_min_samples = optics_min_samples
        self.optics_max_points = optics_max_points
        self.cover_land = cover_land

    def _validate_params(self) -> None:
        super()._validate_params()
        self.min_samples = _check_int(self.min_samples, "semantic min_samples", 1)
        self.max_samples = _check_int(self.max_samples, "semantic max_samples", 2)
        if self.max_samples < 2 * self.min_samples:
            raise InvalidInput(
                f"semantic: max_samples ({self.max_samples}) must be at least twice min_samples ({self.min_samples})"
            )
        self.optics_min_samples = _check_int(self.optics_min_samples, "semantic optics_min_samples", 2)
        self.optics_max_points = _check_int(self.optics_max_points, "semantic optics_max_points", 0)
        self.cover_land = bool(self.cover_land)

    # ------------------------------------------------------------------ fitting
    def _fit_cells(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> None:
        codes, names, cgeoms, _, _ = _country_index(self.simplify_deg)
        cidx = countries_of_points(la, lo, self.simplify_deg, nearest=True)
        ids: list[str] = []
        countries: list[str] = []
        geoms: list[Any] = []
        members: list[list[str]] = []
        for k in range(len(codes)):
            sel = np.flatnonzero(cidx == k)
            if sel.size == 0:
                if self.cover_land:
                    ids.append(f"sem:{codes[k]}")
                    countries.append(codes[k])
                    geoms.append(cgeoms[k])
                    members.append([])
                continue
            for cid, geom, mem in self._country_cells(codes[k], la[sel], lo[sel]):
                ids.append(cid)
                countries.append(codes[k])
                geoms.append(geom)
                members.append(mem)
        self.cell_ids_ = ids
        self.cell_country_ = countries
        self.cell_members_ = members
        self._set_geoms(geoms)

    def _country_cells(
        self, code: str, la: NDArray[np.float64], lo: NDArray[np.float64]
    ) -> list[tuple[str, Any, list[str]]]:
        import shapely

        regions = admin1_regions(code, self.simplify_deg)
        rg = np.empty(len(regions), dtype=object)
        rg[:] = [g for _, g in regions]
        shapely.prepare(rg)
        ridx = _locate_in(rg, shapely.STRtree(rg), la, lo)
        miss = np.flatnonzero(ridx < 0)
        if miss.size:
            ridx[miss] = _BoundaryIndex(rg).nearest(la[miss], lo[miss])
        groups = [
            {"id": f"sem:{code}/{name}", "geom": g, "members": [name], "pts": np.flatnonzero(ridx == r)}
            for r, (name, g) in enumerate(regions)
        ]
        groups = self._merge(groups)
        out: list[tuple[str, Any, list[str]]] = []
        for g in groups:
            if g["pts"].size > self.max_samples:
                parts = self._split(g["geom"], la[g["pts"]], lo[g["pts"]])
                if len(parts) > 1:
                    out.extend((f"{g['id']}#{j + 1}", part, g["members"]) for j, part in enumerate(parts))
                    continue
            out.append((g["id"], g["geom"], g["members"]))
        return out

    def _merge(self, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Step 2 on a region adjacency graph; geometries are dissolved once at the end."""
        import shapely

        n = len(groups)
        if n < 2:
            return groups
        geoms = np.empty(n, dtype=object)
        geoms[:] = [g["geom"] for g in groups]
        gap = 2 * self.simplify_deg + 1e-9
        a, b = shapely.STRtree(geoms).query(geoms, predicate="dwithin", distance=gap)
        adj: list[set[int]] = [set() for _ in range(n)]
        for i, j in zip(a.tolist(), b.tolist()):
            if i != j:
                adj[i].add(j)
                adj[j].add(i)
        alive: dict[int, dict[str, Any]] = {
            i: {"members": [i], "count": int(groups[i]["pts"].size), "adj": set(adj[i])} for i in range(n)
        }
        while len(alive) > 1:
            small = [i for i, g in alive.items() if g["count"] < self.min_samples]
            if not small:
                break
            i = min(small, key=lambda j: (alive[j]["count"], j))
            near = [j for j in alive[i]["adj"] if j in alive and j != i]
            if near:
                t = min(near, key=lambda j: (alive[j]["count"], j))
            else:  # an island region: the nearest region of the same country
                mine = geoms[alive[i]["members"]][:, None]
                t = min(
                    (j for j in alive if j != i),
                    key=lambda j: (float(shapely.distance(mine, geoms[alive[j]["members"]][None, :]).min()), j),
                )
            src = alive.pop(i)
            dst = alive[t]
            dst["members"] += src["members"]
            dst["count"] += src["count"]
            dst["adj"] = (dst["adj"] | src["adj"]) - {i, t}
            for j in src["adj"]:
                if j in alive and j != t:
                    alive[j]["adj"].discard(i)
                    alive[j]["adj"].add(t)
        out = []
        for t in sorted(alive):
            mem = alive[t]["members"]
            geom = groups[t]["geom"] if len(mem) == 1 else _clean(shapely.union_all(geoms[mem]))
            out.append(
                {
                    "id": groups[t]["id"],
                    "geom": geom,
                    "members": [m for k in mem for m in groups[k]["members"]],
                    "pts": np.concatenate([groups[k]["pts"] for k in mem]),
                }
            )
        return out

    def _split(self, region: Any, la: NDArray[np.float64], lo: NDArray[np.float64]) -> list[Any]:
        """Polygons of the parts of ``region`` (see step 3); one polygon when it cannot be split."""
        import shapely

        loc, inv, w = np.unique(np.column_stack([la, lo]), axis=0, return_inverse=True, return_counts=True)
        if len(loc) < 2:
            return [region]
        labels = self._part_labels(loc[:, 0], loc[:, 1], w.astype(np.int64))
        if labels.max() == 0:
            return [region]
        minx, miny, maxx, maxy = region.bounds
        ext = shapely.box(
            min(minx, loc[:, 1].min()) - 1,
            min(miny, loc[:, 0].min()) - 1,
            max(maxx, loc[:, 1].max()) + 1,
            max(maxy, loc[:, 0].max()) + 1,
        )
        vor = shapely.voronoi_polygons(shapely.multipoints(loc[:, ::-1]), extend_to=ext, ordered=True)
        cells = np.asarray(shapely.get_parts(vor))
        parts = []
        for lab in range(labels.max() + 1):
            piece = shapely.coverage_union_all(cells[labels == lab])
            piece = _clean(shapely.intersection(piece, shapely.clip_by_rect(region, *piece.bounds)))
            if not piece.is_empty:
                parts.append(piece)
        return parts if parts else [region]

    def _part_labels(
        self, lat: NDArray[np.float64], lon: NDArray[np.float64], w: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """Part label (0..k-1) of each distinct location; ``w`` = training points at that location."""
        lo_, hi = self.min_samples, self.max_samples
        n = len(lat)
        labels = np.full(n, -1, dtype=np.int64)
        parts: list[NDArray[np.int64]] = []
        if 2 < n <= self.optics_max_points:
            from sklearn.cluster import OPTICS

            ms = min(self.optics_min_samples, n - 1)
            with warnings.catch_warnings():  # "all reachability values are inf" on tiny inputs: no clusters
                warnings.simplefilter("ignore", UserWarning)
                opt = OPTICS(min_samples=ms, min_cluster_size=max(2, min(lo_, n)), metric="haversine").fit(
                    np.radians(np.column_stack([lat, lon]))
                )
            clusters = [np.flatnonzero(opt.labels_ == c) for c in range(opt.labels_.max() + 1)]
            clusters = [c for c in clusters if lo_ <= w[c].sum() <= hi]
            clusters.sort(key=lambda c: (int(w[c].sum()), int(c[0])))
            taken = np.zeros(n, dtype=bool)
            for c in clusters:
                taken[c] = True
            rest_w = int(w[~taken].sum())
            while clusters and 0 < rest_w < lo_:  # the rest must be a valid part too
                c = clusters.pop(0)
                taken[c] = False
                rest_w += int(w[c].sum())
            parts.extend(clusters)
            rest = np.flatnonzero(~taken)
        else:
            rest = np.arange(n)
        if rest.size:
            parts.extend(self._bisect(rest, lat, lon, w))
        for k, p in enumerate(parts):
            labels[p] = k
        return labels

    def _bisect(
        self, idx: NDArray[np.int64], lat: NDArray[np.float64], lon: NDArray[np.float64], w: NDArray[np.int64]
    ) -> list[NDArray[np.int64]]:
        total = int(w[idx].sum())
        if total <= self.max_samples or idx.size < 2:
            return [idx]
        xyz = latlon_to_xyz(lat[idx], lon[idx])
        side = _two_means(xyz, w[idx])
        if min(int(w[idx][side].sum()), int(w[idx][~side].sum())) < self.min_samples or side.all() or not side.any():
            side = self._median_cut(xyz, w[idx])
        if side.all() or not side.any():
            return [idx]
        return self._bisect(idx[~side], lat, lon, w) + self._bisect(idx[side], lat, lon, w)

    @staticmethod
    def _median_cut(xyz: NDArray[np.float64], w: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Weighted median split along the principal axis (between distinct locations)."""
        c = xyz - np.average(xyz, axis=0, weights=w)
        _, _, vt = np.linalg.svd(c * np.sqrt(w)[:, None], full_matrices=False)
        proj = c @ vt[0]
        order = np.argsort(proj, kind="stable")
        cum = np.cumsum(w[order])
        k = int(np.searchsorted(cum, cum[-1] / 2.0))
        k = min(max(k, 0), len(order) - 2)
        side = np.zeros(len(w), dtype=bool)
        side[order[k + 1 :]] = True
        return side

    # ------------------------------------------------------------------ files
    def _feature_properties(self, i: int) -> dict[str, Any]:
        return {"country": self.cell_country_[i], "members": list(self.cell_members_[i])}

    def _restore(self, features: list[dict[str, Any]], state: dict[str, Any]) -> None:
        super()._restore(features, state)
        self.cell_members_ = [list(f["properties"].get("members", [])) for f in features]


def _two_means(xyz: NDArray[np.float64], w: NDArray[np.int64], iters: int = 50) -> NDArray[np.bool_]:
    """Weighted 2-means (Lloyd) on unit vectors; deterministic farthest-point start. True = second cluster."""
    mean = np.average(xyz, axis=0, weights=w)
    a = xyz[np.argmax(((xyz - mean) ** 2).sum(1))]
    b = xyz[np.argmax(((xyz - a) ** 2).sum(1))]
    side = np.zeros(len(xyz), dtype=bool)
    for _ in range(iters):
        new = ((xyz - b) ** 2).sum(1) < ((xyz - a) ** 2).sum(1)
        if new.all() or not new.any():
            return new
        if (new == side).all():
            break
        side = new
        a = np.average(xyz[~side], axis=0, weights=w[~side])
        b = np.average(xyz[side], axis=0, weights=w[side])
    return side


@PARTITIONS.register("semantic", help="semantic - PIGEON semantic geocells (admin-1 regions merged/split by data)")
def _make_semantic(arg: str | None = None, **kw: Any) -> SemanticPartition:
    if arg is not None:
        raise InvalidInput(f"'semantic' takes keyword parameters (min_samples, max_samples), not 'semantic:{arg}'")
    return SemanticPartition(**kw)
