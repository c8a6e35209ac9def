"""The :class:`Partition` base class: a set of geocells learnt from training coordinates.

Conventions (scikit-learn style): ``__init__`` only stores parameters; :meth:`Partition.fit`
learns the cells from training points (degrees) and returns ``self``; everything that needs
the cells raises :class:`~geoscout.errors.NotFittedError` before ``fit``. Cells are indexed
``0 .. n_cells - 1``; :meth:`Partition.assign` maps points to those indices (``-1`` outside
every known cell unless ``fallback="nearest"``).

Files: :meth:`Partition.save` writes GeoJSON (a ``FeatureCollection``: one ``Feature`` per
cell with its polygon, id, centroid and training count; the partition's parameters and any
extra state live in a top-level ``"geoscout"`` member). :func:`load_partition` reads it back
without pickle, and the loaded partition assigns exactly like the saved one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geoscout._io import atomic_write_text
from geoscout.errors import InvalidInput, NotFittedError
from geoscout.geo import latlon_to_xyz, validate_latlon, xyz_to_latlon

__all__ = ["FORMAT", "FORMAT_VERSION", "Partition", "load_partition"]

FORMAT = "geoscout.partition"
FORMAT_VERSION = 1
_FALLBACKS = (None, "nearest")

# registry name -> class, filled by Partition.__init_subclass__ (load_partition needs it)
_CLASSES: dict[str, type[Partition]] = {}


def _wrap180(lo: NDArray[np.float64]) -> NDArray[np.float64]:
    """Longitude 180 -> -180 (the rest of [-180, 180) is left bit-for-bit unchanged)."""
    return np.where(lo >= 180.0, lo - 360.0, lo)


def _check_fallback(fallback: Any) -> str | None:
    if fallback not in _FALLBACKS:
        raise InvalidInput(f"fallback must be None or 'nearest', got {fallback!r}")
    return fallback


def _check_int(value: Any, what: str, lo: int, hi: int | None = None) -> int:
    try:
        v = int(value)
        ok = float(value) == v
    except (TypeError, ValueError):
        ok = False
    if not ok or v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise InvalidInput(f"{what} must be an integer {rng}, got {value!r}")
    return v


class Partition:
    """Base class of every partition (geohash, grid, h3, quadtree, country, admin1, cities, semantic).

    Parameters common to all partitions: ``min_count`` (a cell becomes a class only when at
    least this many training points fall in it; 0 keeps every cell of a finite scheme) and
    ``fallback`` (``None``: points outside every known cell get -1; ``"nearest"``: they get the
    nearest cell). Subclasses implement ``_fit_cells``, ``_locate`` and geometry helpers.

    Fitted attributes: ``cell_ids`` (human-readable, unique), ``counts`` (training points per
    cell), ``centroids`` ((n, 2) lat/lon: spherical mean of the cell's training points, the
    geometric centre for cells without training points).
    """

    name: ClassVar[str] = ""
    default_fallback: ClassVar[str | None] = None
    min_count_zero_ok: ClassVar[bool] = False  # may min_count be 0 (keep every cell of the scheme)?

    # fitted state (set by fit / load)
    cell_ids_: list[str]
    counts_: NDArray[np.int64]
    centroids_: NDArray[np.float64]
    _centroid_tree: Any
    _id_index: dict[str, int]

    def __init__(self, *, min_count: int = 1, fallback: str | None = "default") -> None:
        self.min_count = min_count
        self.fallback = fallback  # stored unchanged (scikit-learn's contract); "default" resolves in _fallback

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            _CLASSES[cls.name] = cls

    # ------------------------------------------------------------------ parameters
    def _spec_arg(self) -> str | None:
        """The part after the colon in :attr:`spec` (None for bare names)."""
        return None

    @property
    def spec(self) -> str:
        """The spec string that creates this partition (``"geohash:4"``, ``"country"``...)."""
        arg = self._spec_arg()
        return self.name if arg is None else f"{self.name}:{arg}"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (JSON-able), as scikit-learn's ``get_params`` (``deep`` changes nothing)."""
        import inspect

        out: dict[str, Any] = {}
        for klass in type(self).__mro__:
            if klass is object:
                continue
            for p in inspect.signature(klass.__init__).parameters.values():  # type: ignore[misc]
                if p.kind == p.KEYWORD_ONLY and p.name not in out and hasattr(self, p.name):
                    out[p.name] = getattr(self, p.name)
        return out

    def set_params(self, **params: Any) -> Partition:
        """Set constructor parameters, as scikit-learn's ``set_params``; returns ``self``."""
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise InvalidInput(f"{type(self).__name__} has no parameter {k!r}; valid: {sorted(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        fitted = f", n_cells={self.n_cells}" if self.is_fitted else ""
        return f"{type(self).__name__}(spec={self.spec!r}{fitted})"

    def _validate_params(self) -> None:
        lo = 0 if self.min_count_zero_ok else 1
        self.min_count = _check_int(self.min_count, f"{self.name}: min_count", lo)
        _check_fallback(self._fallback)

    @property
    def _fallback(self) -> str | None:
        """The fallback in effect: ``fallback``, or the partition's ``default_fallback`` for ``"default"``."""
        return _check_fallback(self.default_fallback if self.fallback == "default" else self.fallback)

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        return getattr(self, "cell_ids_", None) is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} ({self.spec}) is not fitted yet: call .fit(lat, lon) first")

    def fit(self, lat: ArrayLike, lon: ArrayLike) -> Partition:
        """Learn the cells from training points (degrees); returns ``self``."""
        self._validate_params()
        la, lo = validate_latlon(lat, lon, what=f"{self.name}.fit")
        la, lo = la.ravel(), _wrap180(lo.ravel())
        if la.size == 0:
            raise InvalidInput(f"{self.name}.fit: no training points; pass at least one (lat, lon)")
        vars(self).pop("cell_ids_", None)  # unfitted until _fit_cells sets the ids
        self._fit_cells(la, lo)
        self._finish_fit(la, lo)
        return self

    def _finish_fit(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> None:
        """Counts and centroids from the training points, with the partition's own ``assign``."""
        idx = self.assign(la, lo)
        self._set_stats(idx, la, lo)

    def _set_stats(self, idx: NDArray[np.int64], la: NDArray[np.float64], lo: NDArray[np.float64]) -> None:
        n = len(self.cell_ids_)
        ok = idx >= 0
        self.counts_ = np.bincount(idx[ok], minlength=n).astype(np.int64)
        # spherical mean per cell (normalised sum of unit vectors, as geo.spherical_mean)
        xyz = latlon_to_xyz(la[ok], lo[ok])
        sums = np.zeros((n, 3))
        np.add.at(sums, idx[ok], xyz)
        mlat, mlon = xyz_to_latlon(sums)
        cent = np.stack([mlat, mlon], axis=1)
        empty = self.counts_ == 0
        for i in np.flatnonzero(empty):
            cent[i] = self._geometric_centre(int(i))
        self.centroids_ = cent
        self._after_stats()

    def _after_stats(self) -> None:
        """Hook: build lookup structures that depend on centroids (nearest fallback)."""
        self._centroid_tree = None

    # subclasses -----------------------------------------------------------------
    def _fit_cells(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> None:
        """Set ``self.cell_ids_`` (and whatever ``_locate`` needs) from training points."""
        raise NotImplementedError

    def _locate(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
        """Cell index of each point, -1 outside every known cell (no fallback)."""
        raise NotImplementedError

    def _geometric_centre(self, i: int) -> tuple[float, float]:
        """(lat, lon) of the centre of cell ``i``'s shape (used for cells without training points)."""
        g = self.polygon(i)
        p = g.centroid if g.contains(g.centroid) else g.representative_point()
        return float(p.y), float(p.x)

    def polygon(self, i: int) -> Any:
        """Shapely (Multi)Polygon of cell ``i`` in lon/lat degrees (x = longitude)."""
        raise NotImplementedError

    def neighbors(self, i: int) -> list[int]:
        """Indices of the cells adjacent to cell ``i`` (sharing an edge or a corner), sorted."""
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        """Extra JSON-able state written to the file (besides ids, counts, centroids, polygons)."""
        return {}

    def _feature_properties(self, i: int) -> dict[str, Any]:
        return {}

    def _restore(self, features: list[dict[str, Any]], state: dict[str, Any]) -> None:
        """Rebuild lookup structures from a saved file (``cell_ids_`` etc. are already set)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    @property
    def n_cells(self) -> int:
        """Number of cells (classes)."""
        self._check_fitted()
        return len(self.cell_ids_)

    @property
    def cell_ids(self) -> list[str]:
        """Human-readable, unique id of each cell (``"u4p"``, ``"HR"``, ``"HR/Grad Zagreb"``...)."""
        self._check_fitted()
        return list(self.cell_ids_)

    @property
    def counts(self) -> NDArray[np.int64]:
        """Training points per cell (as assigned by :meth:`assign` at fit time)."""
        self._check_fitted()
        return self.counts_.copy()

    @property
    def centroids(self) -> NDArray[np.float64]:
        """(n_cells, 2) array of (lat, lon) degrees: mean of the cell's training points on the sphere."""
        self._check_fitted()
        return self.centroids_.copy()

    def index_of(self, cell_id: str) -> int:
        """Index of the cell named ``cell_id``; raises ``InvalidInput`` if unknown."""
        self._check_fitted()
        if not hasattr(self, "_id_index") or len(self._id_index) != len(self.cell_ids_):
            self._id_index = {c: i for i, c in enumerate(self.cell_ids_)}
        try:
            return self._id_index[cell_id]
        except KeyError:
            raise InvalidInput(f"{self.spec}: no cell with id {cell_id!r}") from None

    def assign(self, lat: ArrayLike, lon: ArrayLike, *, fallback: str | None = "default") -> NDArray[np.int64]:
        """Cell index of each (lat, lon) in degrees (same shape as the input).

        ``-1`` marks points outside every known cell; with ``fallback="nearest"`` (default:
        the partition's own ``fallback``) those points get the nearest cell instead.
        """
        self._check_fitted()
        fb = self._fallback if fallback == "default" else _check_fallback(fallback)
        la, lo = validate_latlon(lat, lon, what=f"{self.spec}.assign")
        shape = la.shape
        la, lo = la.ravel(), _wrap180(lo.ravel())
        idx = np.asarray(self._locate(la, lo), dtype=np.int64)
        if fb == "nearest" and la.size:
            miss = np.flatnonzero(idx < 0)
            if miss.size:
                idx[miss] = self._nearest(la[miss], lo[miss])
        return idx.reshape(shape)

    def _nearest(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
        """Nearest cell by great-circle distance to the cell centroids (polygon partitions override)."""
        from scipy.spatial import cKDTree

        if getattr(self, "_centroid_tree", None) is None:
            self._centroid_tree = cKDTree(latlon_to_xyz(self.centroids_[:, 0], self.centroids_[:, 1]))
        _, idx = self._centroid_tree.query(latlon_to_xyz(la, lo), k=1)
        return np.asarray(idx, dtype=np.int64)

    # ------------------------------------------------------------------ files
    def to_geojson(self) -> dict[str, Any]:
        """The partition as a GeoJSON ``FeatureCollection`` (a dict); see the module docstring."""
        from shapely.geometry import mapping

        self._check_fitted()
        feats = []
        for i, cid in enumerate(self.cell_ids_):
            props = {
                "index": i,
                "cell_id": cid,
                "centroid_lat": float(self.centroids_[i, 0]),
                "centroid_lon": float(self.centroids_[i, 1]),
                "count": int(self.counts_[i]),
            }
            props.update(self._feature_properties(i))
            feats.append({"type": "Feature", "id": cid, "geometry": mapping(self.polygon(i)), "properties": props})
        return {
            "type": "FeatureCollection",
            "geoscout": {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "spec": self.spec,
                "name": self.name,
                "params": self.get_params(),
                "state": self._state(),
            },
            "features": feats,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the partition as GeoJSON to ``path`` (atomically); returns the path."""
        doc = self.to_geojson()
        return atomic_write_text(path, json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")

    @classmethod
    def from_geojson(cls, doc: dict[str, Any], *, source: str = "partition") -> Partition:
        """Rebuild a fitted partition from :meth:`to_geojson` output."""
        meta = doc.get("geoscout") if isinstance(doc, dict) else None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InvalidInput(
                f"{source}: not a geoscout partition file (no top-level 'geoscout' member with "
                f"format {FORMAT!r}); write one with Partition.save()"
            )
        if int(meta.get("version", 0)) > FORMAT_VERSION:
            raise InvalidInput(
                f"{source}: partition format version {meta.get('version')} is newer than this geoscout "
                f"supports ({FORMAT_VERSION}); upgrade geoscout"
            )
        klass = _CLASSES.get(str(meta.get("name")))
        if klass is None:
            raise InvalidInput(
                f"{source}: unknown partition kind {meta.get('name')!r}; known: {', '.join(sorted(_CLASSES))}"
            )
        obj = klass(**dict(meta.get("params") or {}))
        obj._validate_params()
        feats = sorted(doc.get("features") or [], key=lambda f: int(f["properties"]["index"]))
        if not feats:
            raise InvalidInput(f"{source}: the partition has no cells")
        try:
            obj.cell_ids_ = [str(f["properties"]["cell_id"]) for f in feats]
            obj.counts_ = np.array([int(f["properties"]["count"]) for f in feats], dtype=np.int64)
            obj.centroids_ = np.array(
                [[float(f["properties"]["centroid_lat"]), float(f["properties"]["centroid_lon"])] for f in feats]
            )
            obj._restore(feats, dict(meta.get("state") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{source}: malformed partition file ({type(exc).__name__}: {exc})") from None
        obj._after_stats()
        return obj


def load_partition(path: str | os.PathLike[str]) -> Partition:
    """Read a partition written by :meth:`Partition.save` (GeoJSON; never unpickles).

    Cell polygons are parsed on first use: a model that only predicts never needs them. The file's
    JSON is parsed once per machine; later loads read a compact copy from ``cache_dir("partitions")``,
    keyed by the file's SHA-256 (parsing the polygons' coordinates is most of a cold ``locate``)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"{p}: no such partition file; write one with Partition.save(path)")
    try:
        doc = _cached_document(p)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{p}: not valid GeoJSON ({exc})") from None
    return Partition.from_geojson(doc, source=str(p))


class _DeferredGeometry(Mapping[str, Any]):
    """A feature's GeoJSON geometry kept as its JSON text and parsed on first access (a read-only mapping)."""

    __slots__ = ("_text", "_value")

    def __init__(self, text: str) -> None:
        self._text = text
        self._value: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        if self._value is None:
            value = json.loads(self._text)
            if not isinstance(value, dict):
                raise ValueError("a cell's geometry is not a GeoJSON object")
            self._value = value
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Any:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


_DOC_CACHE_VERSION = 1


def _cached_document(p: Path) -> dict[str, Any]:
    """The partition file as a dict whose features' geometries are :class:`_DeferredGeometry`."""
    from geoscout._io import atomic_path, cache_dir, sha256_file

    target = None
    try:
        target = cache_dir("partitions") / f"partition_v{_DOC_CACHE_VERSION}_{sha256_file(p)[:32]}.npz"
        if target.is_file():
            with np.load(target, allow_pickle=False) as z:
                doc = json.loads(z["doc"].tobytes().decode("utf-8"))
                blob, off = z["geometry"].tobytes(), z["geometry_off"]
            feats = doc.get("features") or []
            if len(off) != len(feats) + 1:
                raise ValueError("partition cache: geometry count differs")
            for i, f in enumerate(feats):
                f["geometry"] = _DeferredGeometry(blob[off[i] : off[i + 1]].decode("utf-8"))
            return doc
    except (OSError, ValueError, KeyError, UnicodeDecodeError):
        pass  # no usable copy: parse the file itself
    doc = json.loads(p.read_text(encoding="utf-8"))
    feats = doc.get("features") if isinstance(doc, dict) else None
    if target is not None and isinstance(feats, list) and all(isinstance(f, dict) for f in feats):
        try:
            parts = [json.dumps(f.get("geometry"), separators=(",", ":")).encode("utf-8") for f in feats]
            off = np.concatenate([[0], np.cumsum([len(b) for b in parts])]).astype(np.int64)
            rest = {**doc, "features": [{k: v for k, v in f.items() if k != "geometry"} for f in feats]}
            with atomic_path(target) as tmp, open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    doc=np.frombuffer(json.dumps(rest, separators=(",", ":")).encode("utf-8"), dtype=np.uint8),
                    geometry=np.frombuffer(b"".join(parts), dtype=np.uint8),
                    geometry_off=off,
                )
        except (OSError, ValueError, TypeError):
            pass  # a read-only cache: fine, just slower next time
    return doc


# ---------------------------------------------------------------------- cell geometry helpers
def great_circle_arc(p: NDArray[np.float64], q: NDArray[np.float64], step_rad: float) -> NDArray[np.float64]:
    """Points along the great-circle arc from unit vector p to q (q excluded), at most ``step_rad`` apart."""
    ang = float(np.arccos(np.clip(np.dot(p, q), -1.0, 1.0)))
    k = max(1, int(np.ceil(ang / step_rad)))
    t = np.arange(k)[:, None] / k
    if ang < 1e-12:
        return p[None, :]
    s = np.sin(ang)
    return (np.sin((1 - t) * ang) * p + np.sin(t * ang) * q) / s


def ring_to_lonlat_polygon(xyz: NDArray[np.float64]) -> Any:
    """A closed spherical ring (densified unit vectors) as a lon/lat (Multi)Polygon in [-180, 180]."""
    import shapely

    lat, lon = xyz_to_latlon(xyz)
    lon = np.degrees(np.unwrap(np.radians(lon)))
    # close the unwrapped ring and see whether it winds around a pole
    winding = lon[0] - (lon[-1] + ((lon[0] - lon[-1] + 180.0) % 360.0 - 180.0))
    pts = list(zip(lon.tolist(), lat.tolist()))
    if abs(winding) > 180.0:  # the cell contains a pole: close it through the pole
        last_lon = lon[-1] + ((lon[0] - lon[-1] + 180.0) % 360.0 - 180.0)
        z_mean = xyz[:, 2].mean()
        pole = 90.0 if z_mean > 0 else -90.0
        pts += [(last_lon, lat[0]), (last_lon, pole), (lon[0], pole)]
    poly = shapely.make_valid(shapely.Polygon(pts))
    pieces = []
    for shift in (-720.0, -360.0, 0.0, 360.0, 720.0):
        part = shapely.intersection(poly, shapely.box(-180.0 - shift, -90.0, 180.0 - shift, 90.0))
        if not part.is_empty:
            pieces.append(shapely.affinity.translate(part, xoff=shift))
    geom = shapely.union_all(pieces)
    parts = [g for g in shapely.get_parts(geom) if g.geom_type == "Polygon" and g.area > 0]
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
