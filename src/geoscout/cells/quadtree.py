"""``quadtree:MIN:MAX``: data-adaptive rectangles (OSV-5M's quadtree cells).

Definition. The root is the whole lon/lat rectangle [-180, 180) x [-90, 90]; a node at depth d
is a box of 360 / 2^d by 180 / 2^d degrees, split into its four quadrants (south-west, south-east,
north-west, north-east). Building from the training points:

1. A node holding more than ``MAX`` points is split, unless it is at ``max_depth`` (default 20)
   or all its points share one location.
2. Quadrants with at least ``MIN`` points become nodes (and are split again by rule 1).
3. The other non-empty quadrants (1 .. MIN-1 points) plus any boxes the node inherited (rule 4)
   are pooled into a "rest". If the rest holds at least ``MIN`` points it is a cell of its own
   (id ``qt:<node>r``); otherwise it is handed to the kept quadrant with the fewest points,
   which carries those boxes down and treats them the same way (so they end in a leaf).
4. If no quadrant reaches ``MIN`` points the node is not split (it stays one cell, possibly
   with more than ``MAX`` points; impossible when MAX >= 4 * MIN).
5. Empty quadrants are no cell: points there get -1 (or the nearest cell with
   ``fallback="nearest"``).

So every cell holds between MIN and MAX training points, except for rule 1's and rule 4's
exceptions and a world with fewer than MIN points. Every training point lies in exactly one
cell. Cell ids are ``qt:`` plus the quadkey of the cell's main box (one digit 0-3 per level:
``2 * north + east``); ``qt:`` alone is the root.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoscout.errors import InvalidInput

from ._registry import PARTITIONS
from .base import Partition, _check_int

__all__ = ["QuadtreePartition"]

_MAX_DEPTH = 24


def _qkey(d: int, iy: int, ix: int) -> str:
    return "".join(str(2 * ((iy >> (d - 1 - k)) & 1) + ((ix >> (d - 1 - k)) & 1)) for k in range(d))


def _parse_qkey(q: str) -> tuple[int, int, int]:
    iy = ix = 0
    for ch in q:
        if ch not in "0123":
            raise InvalidInput(f"quadtree key {q!r} must consist of digits 0-3")
        v = int(ch)
        iy = (iy << 1) | (v >> 1)
        ix = (ix << 1) | (v & 1)
    return len(q), iy, ix


def _box(d: int, iy: int, ix: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a quadtree box."""
    w = 360.0 / (1 << d)
    h = 180.0 / (1 << d)
    return -180.0 + ix * w, -90.0 + iy * h, -180.0 + (ix + 1) * w, -90.0 + (iy + 1) * h


def _cells_at(la: NDArray[np.float64], lo: NDArray[np.float64], d: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    n = 1 << d
    ix = np.clip(np.floor((lo + 180.0) / 360.0 * n), 0, n - 1).astype(np.int64)
    iy = np.clip(np.floor((la + 90.0) / 180.0 * n), 0, n - 1).astype(np.int64)
    # rounding in (x + 180) may push a value just below an edge into the next box: step back
    ix -= ((lo < -180.0 + ix * (360.0 / n)) & (ix > 0)).astype(np.int64)
    iy -= ((la < -90.0 + iy * (180.0 / n)) & (iy > 0)).astype(np.int64)
    return iy, ix


def _code(d: int, iy: NDArray[np.int64] | int, ix: NDArray[np.int64] | int) -> Any:
    return (
        (np.int64(d) << np.int64(52))
        | (np.asarray(iy, dtype=np.int64) << np.int64(26))
        | np.asarray(ix, dtype=np.int64)
    )


class QuadtreePartition(Partition):
    """Adaptive quadtree cells (``quadtree:MIN:MAX``); see the module docstring for the exact rules."""

    name = "quadtree"

    def __init__(
        self,
        *,
        min_points: int = 10,
        max_points: int = 1000,
        max_depth: int = 20,
        min_count: int = 1,
        fallback: str | None = "default",
    ) -> None:
        super().__init__(min_count=min_count, fallback=fallback)
        self.min_points = min_points
        self.max_points = max_points
        self.max_depth = max_depth

    def _validate_params(self) -> None:
        super()._validate_params()
        self.min_points = _check_int(self.min_points, "quadtree MIN", 1)
        self.max_points = _check_int(self.max_points, "quadtree MAX", 1)
        self.max_depth = _check_int(self.max_depth, "quadtree max_depth", 0, _MAX_DEPTH)
        if self.max_points < self.min_points:
            raise InvalidInput(f"quadtree:MIN:MAX needs MIN <= MAX, got MIN={self.min_points}, MAX={self.max_points}")

    def _spec_arg(self) -> str:
        return f"{self.min_points}:{self.max_points}"

    # ------------------------------------------------------------------ building
    def _fit_cells(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> None:
        cells: list[tuple[str, list[tuple[int, int, int]]]] = []  # (id, boxes)
        # work items: (depth, iy, ix, point indices in the main box, extra boxes, indices in extras)
        stack: list[tuple[int, int, int, NDArray[np.int64], list[tuple[int, int, int]], NDArray[np.int64]]]
        stack = [(0, 0, 0, np.arange(la.size), [], np.zeros(0, dtype=np.int64))]
        while stack:
            d, iy, ix, pts, extra, extra_pts = stack.pop()
            n = pts.size + extra_pts.size
            main = (d, iy, ix)
            kept: list[tuple[int, int, int, NDArray[np.int64]]] = []
            rest_boxes: list[tuple[int, int, int]] = list(extra)
            rest_pts = [extra_pts]
            if (
                n > self.max_points
                and d < self.max_depth
                and pts.size
                and not self._one_location(la, lo, pts, extra_pts)
            ):
                cy, cx = _cells_at(la[pts], lo[pts], d + 1)
                for qy in (2 * iy, 2 * iy + 1):
                    for qx in (2 * ix, 2 * ix + 1):
                        sel = pts[(cy == qy) & (cx == qx)]
                        if sel.size >= self.min_points:
                            kept.append((d + 1, qy, qx, sel))
                        elif sel.size:
                            rest_boxes.append((d + 1, qy, qx))
                            rest_pts.append(sel)
            if not kept:  # a leaf: the main box plus whatever it inherited
                cells.append(("qt:" + _qkey(d, iy, ix), [main, *extra]))
                continue
            rest = np.concatenate(rest_pts)
            handed: tuple[list[tuple[int, int, int]], NDArray[np.int64]] = ([], np.zeros(0, dtype=np.int64))
            if rest.size >= self.min_points:
                cells.append(("qt:" + _qkey(d, iy, ix) + "r", rest_boxes))
            elif rest.size:
                handed = (rest_boxes, rest)
            smallest = min(range(len(kept)), key=lambda k: (kept[k][3].size, k))
            for k, (qd, qy, qx, sel) in enumerate(kept):
                ex, ex_pts = handed if k == smallest else ([], np.zeros(0, dtype=np.int64))
                stack.append((qd, qy, qx, sel, ex, ex_pts))
        cells.sort(key=lambda c: c[0])
        self.cell_ids_ = [c[0] for c in cells]
        self._boxes_ = [c[1] for c in cells]
        self._index_boxes()

    @staticmethod
    def _one_location(
        la: NDArray[np.float64], lo: NDArray[np.float64], a: NDArray[np.int64], b: NDArray[np.int64]
    ) -> bool:
        idx = np.concatenate([a, b])
        return bool(np.ptp(la[idx]) == 0 and np.ptp(lo[idx]) == 0)

    def _index_boxes(self) -> None:
        codes, owner = [], []
        for i, boxes in enumerate(self._boxes_):
            for d, iy, ix in boxes:
                codes.append(int(_code(d, iy, ix)))
                owner.append(i)
        order = np.argsort(codes)
        self._codes = np.asarray(codes, dtype=np.int64)[order]
        self._owner = np.asarray(owner, dtype=np.int64)[order]
        self._depths = sorted({d for boxes in self._boxes_ for d, _, _ in boxes})
        self._nb_cache: dict[int, list[int]] = {}
        self._box_tree: Any = None

    def _locate(self, la: NDArray[np.float64], lo: NDArray[np.float64]) -> NDArray[np.int64]:
        out = np.full(la.size, -1, dtype=np.int64)
        if la.size == 0:
            return out
        for d in self._depths:  # boxes are disjoint, so at most one depth matches a point
            iy, ix = _cells_at(la, lo, d)
            c = _code(d, iy, ix)
            pos = np.clip(np.searchsorted(self._codes, c), 0, self._codes.size - 1)
            hit = self._codes[pos] == c
            out[hit] = self._owner[pos[hit]]
        return out

    # ------------------------------------------------------------------ geometry, files
    def polygon(self, i: int) -> Any:
        import shapely

        self._check_fitted()
        boxes = [shapely.box(*_box(*b)) for b in self._boxes_[i]]
        return boxes[0] if len(boxes) == 1 else shapely.union_all(boxes)

    def neighbors(self, i: int) -> list[int]:
        """Cells whose boxes share an edge or a corner with cell ``i`` (across the antimeridian too)."""
        import shapely

        self._check_fitted()
        if self._box_tree is None:
            geoms, owner = [], []
            for k, boxes in enumerate(self._boxes_):
                for b in boxes:
                    geoms.append(shapely.box(*_box(*b)))
                    owner.append(k)
            self._box_geoms = np.array(geoms, dtype=object)
            self._box_owner = np.asarray(owner)
            self._box_tree = shapely.STRtree(self._box_geoms)
        if i not in self._nb_cache:
            found: set[int] = set()
            for b in self._boxes_[i]:
                w, s, e, n = _box(*b)
                for shift in (0.0, 360.0, -360.0):
                    hits = self._box_tree.query(shapely.box(w + shift, s, e + shift, n), predicate="intersects")
                    found.update(int(self._box_owner[h]) for h in hits)
            found.discard(i)
            self._nb_cache[i] = sorted(found)
        return list(self._nb_cache[i])

    def _geometric_centre(self, i: int) -> tuple[float, float]:
        w, s, e, n = _box(*self._boxes_[i][0])
        return (s + n) / 2.0, (w + e) / 2.0

    def _feature_properties(self, i: int) -> dict[str, Any]:
        return {"boxes": [_qkey(*b) for b in self._boxes_[i]]}

    def _restore(self, features: list[dict[str, Any]], state: dict[str, Any]) -> None:
        self._boxes_ = [[_parse_qkey(str(q)) for q in f["properties"]["boxes"]] for f in features]
        self._index_boxes()


@PARTITIONS.register(
    "quadtree", help="quadtree:MIN:MAX - adaptive quadtree: split cells with > MAX points, keep >= MIN"
)
def _make_quadtree(arg: str | None = None, **kw: Any) -> QuadtreePartition:
    if arg is not None:
        parts = arg.split(":")
        if len(parts) != 2:
            raise InvalidInput(f"quadtree spec is quadtree:MIN:MAX (e.g. quadtree:10:1000), got 'quadtree:{arg}'")
        kw["min_points"] = _check_int(parts[0], "quadtree MIN", 1)
        kw["max_points"] = _check_int(parts[1], "quadtree MAX", 1)
    return QuadtreePartition(**kw)
