"""Fixed partitions of the globe whose cells are known before seeing data: geohash, lat/lon grid, H3.

``fit`` keeps the *occupied* cells (those holding at least ``min_count`` training points,
default 1) as classes, ordered by their key. ``assign`` gives -1 for a point in a cell that
was not occupied at fit time (e.g. an unseen geohash), or the cell with the nearest centroid
when ``fallback="nearest"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoscout.errors import InvalidInput
from geoscout.geo import geohash_bbox, geohash_decode, geohash_encode, geohash_neighbors

from ._registry import PARTITIONS
from .base import Partition, _check_int, great_circle_arc, ring_to_lonlat_polygon

__all__ = ["GeohashPartition", "GridPartition", "H3Partition"]


class _KeyedPartition(Partition):
    """Cells named by a sortable key computed from each point; subclasses give ``_keys`` and id <-> key."""

    def _keys(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[Any]:
        raise NotImplementedError

    def _key_to_id(self, key: Any) -> str:
        return str(key)

    def _id_to_key(self, cell_id: str) -> Any:
        return cell_id

    def _index_keys(self, keys: NDArray[Any]) -> None:
        order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[order]
        self._sorted_pos = order.astype(np.int64)

    def _fit_cells(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> None:
        keys = self._keys(la, lo)
        uniq, cnt = np.unique(keys, return_counts=True)
        uniq = uniq[cnt >= max(self.min_count, 1)]
        if uniq.size == 0:
            raise InvalidInput(
                f"{self.spec}.fit: no cell holds min_count={self.min_count} training points; lower min_count"
            )
        self.cell_ids_ = [self._key_to_id(k) for k in uniq]
        self._index_keys(uniq)

    def _restore(self, features: list[dict[str, Any]], state: dict[str, Any]) -> None:
        keys = np.array([self._id_to_key(c) for c in self.cell_ids_])
        self._index_keys(keys)

    def _locate(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
        if la.size == 0:
            return np.zeros(0, dtype=np.int64)
        keys = self._keys(la, lo)
        sk = self._sorted_keys
        pos = np.clip(np.searchsorted(sk, keys), 0, sk.size - 1)
        hit = sk[pos] == keys
        return np.where(hit, self._sorted_pos[pos], -1).astype(np.int64)

    def _known(self, cell_ids: Any) -> list[int]:
        lookup = {c: i for i, c in enumerate(self.cell_ids_)}
        return sorted({lookup[c] for c in cell_ids if c in lookup})


# ---------------------------------------------------------------------------- geohash
class GeohashPartition(_KeyedPartition):
    """Geohash cells of ``precision`` characters (``geohash:K``); ids are the geohashes ("u4p")."""

    name = "geohash"

    def __init__(self, *, precision: int = 3, min_count: int = 1, fallback: str | None = "default") -> None:
        super().__init__(min_count=min_count, fallback=fallback)
        self.precision = precision

    def _validate_params(self) -> None:
        super()._validate_params()
        self.precision = _check_int(self.precision, "geohash precision", 1, 12)

    def _spec_arg(self) -> str:
        return str(self.precision)

    def _keys(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[Any]:
        return np.asarray(geohash_encode(la, lo, self.precision)).astype(f"U{self.precision}")

    def _restore(self, features: list[dict[str, Any]], state: dict[str, Any]) -> None:
        keys = np.array(self.cell_ids_, dtype=f"U{self.precision}")
        self._index_keys(keys)

    def polygon(self, i: int) -> Any:
        import shapely

        self._check_fitted()
        s, w, n, e = geohash_bbox(self.cell_ids_[i])
        return shapely.box(w, s, e, n)

    def _geometric_centre(self, i: int) -> tuple[float, float]:
        lat, lon = geohash_decode(self.cell_ids_[i])
        return float(lat), float(lon)

    def neighbors(self, i: int) -> list[int]:
        self._check_fitted()
        nb = [g for g in geohash_neighbors(self.cell_ids_[i]).values() if g is not None]
        return [j for j in self._known(nb) if j != i]


@PARTITIONS.register("geohash", help="geohash:K - geohash cells of K characters (occupied cells only)")
def _make_geohash(arg: str | None = None, **kw: Any) -> GeohashPartition:
    if arg is not None:
        kw["precision"] = _check_int(arg, "geohash:K precision K", 1, 12)
    return GeohashPartition(**kw)


# ---------------------------------------------------------------------------- grid
class GridPartition(_KeyedPartition):
    """Uniform latitude/longitude grid of ``degrees``-sized cells (``grid:DEG``).

    Rows start at latitude -90 and columns at longitude -180; a cell is
    ``[south, south + deg) x [west, west + deg)`` (the last row includes latitude 90; longitude
    180 wraps to -180). If 360 or 180 is not a multiple of ``deg`` the last column / row is
    narrower. Ids are the south-west corner ``"45,15"`` (lat,lon in degrees).
    """

    name = "grid"

    def __init__(self, *, degrees: float = 1.0, min_count: int = 1, fallback: str | None = "default") -> None:
        super().__init__(min_count=min_count, fallback=fallback)
        self.degrees = degrees

    def _validate_params(self) -> None:
        super()._validate_params()
        try:
            d = float(self.degrees)
        except (TypeError, ValueError):
            d = float("nan")
        if not (0.001 <= d <= 180.0):
            raise InvalidInput(f"grid cell size must be a number of degrees in [0.001, 180], got {self.degrees!r}")
        self.degrees = d

    def _spec_arg(self) -> str:
        return str(float(self.degrees))

    @property
    def _shape(self) -> tuple[int, int]:
        return math.ceil(180.0 / self.degrees - 1e-9), math.ceil(360.0 / self.degrees - 1e-9)

    def _keys(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[Any]:
        nrow, ncol = self._shape
        d = self.degrees
        row = np.clip(np.floor((la + 90.0) / d), 0, nrow - 1).astype(np.int64)
        col = np.clip(np.floor((lo + 180.0) / d), 0, ncol - 1).astype(np.int64)
        # rounding in (x + 180) can push a value just below a cell edge into the next cell: step back
        row -= ((la < -90.0 + row * d) & (row > 0)).astype(np.int64)
        col -= ((lo < -180.0 + col * d) & (col > 0)).astype(np.int64)
        return row * ncol + col

    def _rowcol(self, i: int) -> tuple[int, int]:
        key = self._id_to_key(self.cell_ids_[i])
        return divmod(int(key), self._shape[1])

    def _bounds(self, row: int, col: int) -> tuple[float, float, float, float]:
        s = -90.0 + row * self.degrees
        w = -180.0 + col * self.degrees
        return s, w, min(s + self.degrees, 90.0), min(w + self.degrees, 180.0)

    def _key_to_id(self, key: Any) -> str:
        row, col = divmod(int(key), self._shape[1])
        s, w, _, _ = self._bounds(row, col)
        return f"{s:.10g},{w:.10g}"

    def _id_to_key(self, cell_id: str) -> Any:
        try:
            s, w = (float(v) for v in cell_id.split(","))
        except ValueError:
            raise InvalidInput(f"grid cell id must be 'south,west' in degrees, got {cell_id!r}") from None
        row = round((s + 90.0) / self.degrees)
        col = round((w + 180.0) / self.degrees)
        return row * self._shape[1] + col

    def polygon(self, i: int) -> Any:
        import shapely

        self._check_fitted()
        s, w, n, e = self._bounds(*self._rowcol(i))
        return shapely.box(w, s, e, n)

    def _geometric_centre(self, i: int) -> tuple[float, float]:
        s, w, n, e = self._bounds(*self._rowcol(i))
        return (s + n) / 2.0, (w + e) / 2.0

    def neighbors(self, i: int) -> list[int]:
        self._check_fitted()
        nrow, ncol = self._shape
        row, col = self._rowcol(i)
        keys = {
            r * ncol + (col + dc) % ncol
            for dr in (-1, 0, 1)
            for dc in (-1, 0, 1)
            if (dr or dc) and 0 <= (r := row + dr) < nrow
        }
        ids = [self._key_to_id(k) for k in keys]
        return [j for j in self._known(ids) if j != i]


@PARTITIONS.register("grid", help="grid:DEG - uniform lat/lon grid of DEG-degree cells (occupied cells only)")
def _make_grid(arg: str | None = None, **kw: Any) -> GridPartition:
    if arg is not None:
        try:
            kw["degrees"] = float(arg)
        except ValueError:
            raise InvalidInput(f"grid:DEG needs a number of degrees, got {arg!r} (e.g. grid:1.0)") from None
    return GridPartition(**kw)


# ---------------------------------------------------------------------------- h3
class H3Partition(_KeyedPartition):
    """Uber H3 hexagons at ``resolution`` 0..15 (``h3:R``); ids are H3 index strings."""

    name = "h3"

    def __init__(self, *, resolution: int = 2, min_count: int = 1, fallback: str | None = "default") -> None:
        super().__init__(min_count=min_count, fallback=fallback)
        self.resolution = resolution

    def _validate_params(self) -> None:
        super()._validate_params()
        self.resolution = _check_int(self.resolution, "h3 resolution", 0, 15)

    def _spec_arg(self) -> str:
        return str(self.resolution)

    def _keys(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[Any]:
        import h3

        r = self.resolution
        f = h3.latlng_to_cell
        return np.array([f(a, b, r) for a, b in zip(la.tolist(), lo.tolist())], dtype="U15")

    def _restore(self, features: list[dict[str, Any]], state: dict[str, Any]) -> None:
        self._index_keys(np.array(self.cell_ids_, dtype="U15"))

    def polygon(self, i: int) -> Any:
        """The hexagon in lon/lat, edges densified along great circles; split at the antimeridian,
        closed through the pole for the polar cells."""
        import h3

        from geoscout.geo import latlon_to_xyz

        self._check_fitted()
        ring = np.array(h3.cell_to_boundary(self.cell_ids_[i]))  # (lat, lng) pairs
        v = latlon_to_xyz(ring[:, 0], ring[:, 1])
        step = np.radians(0.1)
        dense = np.concatenate([great_circle_arc(v[k], v[(k + 1) % len(v)], step) for k in range(len(v))])
        return ring_to_lonlat_polygon(dense)

    def _geometric_centre(self, i: int) -> tuple[float, float]:
        import h3

        lat, lon = h3.cell_to_latlng(self.cell_ids_[i])
        return float(lat), float(lon)

    def neighbors(self, i: int) -> list[int]:
        import h3

        self._check_fitted()
        return [j for j in self._known(h3.grid_disk(self.cell_ids_[i], 1)) if j != i]


@PARTITIONS.register("h3", help="h3:R - Uber H3 hexagons at resolution R (occupied cells only)")
def _make_h3(arg: str | None = None, **kw: Any) -> H3Partition:
    if arg is not None:
        kw["resolution"] = _check_int(arg, "h3:R resolution R", 0, 15)
    return H3Partition(**kw)
