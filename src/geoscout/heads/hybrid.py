"""Hybrid head (OSV-5M): geocell classification plus a regressed offset inside each cell.

For every cell the network also predicts where inside it the photo lies, as the offset of
the true point from the cell centroid in the centroid's local azimuthal-equidistant frame
(km east, km north; normalised by the training median offset). It is trained only on the
true cell's offset (smooth-L1). A prediction for cell ``i`` is centroid ``i`` moved by its
predicted offset, capped at the largest offset seen in that cell during training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..geo import destination_point, haversine_km, initial_bearing_deg
from ._registry import HEADS
from .base import TrainingOptions
from .classifier import CellClassifierHead

__all__ = ["HybridHead", "apply_offset_km", "offset_east_north_km"]


def offset_east_north_km(lat: Any, lon: Any, clat: Any, clon: Any) -> NDArray[np.float64]:
    """(N, 2) offset (km east, km north) of points from centres, azimuthal-equidistant about the centre."""
    d = haversine_km(clat, clon, lat, lon)
    b = np.radians(initial_bearing_deg(clat, clon, lat, lon))
    return np.stack([d * np.sin(b), d * np.cos(b)], axis=-1)


def apply_offset_km(clat: Any, clon: Any, east: Any, north: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Inverse of :func:`offset_east_north_km`: the point ``(east, north)`` km from the centre."""
    east = np.asarray(east, dtype=np.float64)
    north = np.asarray(north, dtype=np.float64)
    bearing = np.degrees(np.arctan2(east, north))
    return destination_point(clat, clon, bearing, np.hypot(east, north))


@HEADS.register("hybrid", help="Geocell classifier + per-cell offset regression (OSV-5M hybrid)")
class HybridHead(CellClassifierHead):
    """:class:`CellClassifierHead` plus per-cell offset regression; ``offset_weight`` scales its loss."""

    name = "hybrid"

    def __init__(
        self,
        *,
        hidden: int = 512,
        tau: float = 75.0,
        class_balanced: bool = False,
        offset_weight: float = 1.0,
        dropout: float = 0.2,
        cells: str = "semantic",
        options: TrainingOptions = TrainingOptions(),
    ) -> None:
        super().__init__(
            hidden=hidden, tau=tau, class_balanced=class_balanced, dropout=dropout, cells=cells, options=options
        )
        self.offset_weight = offset_weight

    def _output_dims(self, n_cells: int) -> dict[str, int]:
        return {"cell": n_cells, "offset": 2 * n_cells}

    def _prepare_extra(
        self, y: NDArray[np.float64], labels: NDArray[np.int64], aux: Any, rows: NDArray[np.int64]
    ) -> None:
        import torch

        lab = labels[rows]
        c = self.centroids_[lab]
        off = offset_east_north_km(y[rows, 0], y[rows, 1], c[:, 0], c[:, 1])
        norm = np.hypot(off[:, 0], off[:, 1])
        self.offset_scale_km_ = float(max(np.median(norm), 1.0)) if norm.size else 1.0
        global_max = float(norm.max()) if norm.size else 0.0
        cap = np.full(self.centroids_.shape[0], global_max)
        seen = np.zeros(self.centroids_.shape[0], dtype=bool)
        per_cell = np.zeros(self.centroids_.shape[0])
        np.maximum.at(per_cell, lab, norm)
        seen[lab] = True
        cap[seen] = per_cell[seen]
        self.max_offset_km_ = cap
        self._off_target = torch.from_numpy((off / self.offset_scale_km_).astype(np.float32))
        self._off_label = torch.from_numpy(lab)

    def _extra_loss(self, out: dict[str, Any], rows: NDArray[np.int64]) -> Any:
        import torch

        pred = out["offset"].view(len(rows), -1, 2)
        lab = self._off_label[rows]
        chosen = pred[torch.arange(len(rows)), lab]
        return float(self.offset_weight) * torch.nn.functional.smooth_l1_loss(chosen, self._off_target[rows])

    def _points_from_outputs(
        self, out: dict[str, NDArray[np.float64]]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(N, C) support points: every centroid moved by its predicted, capped offset."""
        off = out["offset"].reshape(out["offset"].shape[0], -1, 2) * self.offset_scale_km_
        norm = np.hypot(off[..., 0], off[..., 1])
        scale = np.minimum(1.0, self.max_offset_km_[None, :] / np.maximum(norm, 1e-9))
        off = off * scale[..., None]
        clat = np.broadcast_to(self.centroids_[None, :, 0], norm.shape)
        clon = np.broadcast_to(self.centroids_[None, :, 1], norm.shape)
        return apply_offset_km(clat, clon, off[..., 0], off[..., 1])

    def fit(self, X: Any, y: Any, **kwargs: Any) -> HybridHead:
        """Fit like :meth:`CellClassifierHead.fit`, plus the offset regression."""
        try:
            super().fit(X, y, **kwargs)
        finally:
            for k in ("_off_target", "_off_label"):
                self.__dict__.pop(k, None)
        return self

    def _extra_config(self) -> dict[str, Any]:
        return {"offset_scale_km": self.offset_scale_km_}

    def _extra_tensors(self) -> dict[str, NDArray[Any]]:
        return {"max_offset_km": np.ascontiguousarray(self.max_offset_km_, dtype=np.float64)}

    def _restore_extra(self, config: dict[str, Any], tensors: dict[str, NDArray[Any]]) -> None:
        self.offset_scale_km_ = float(config["offset_scale_km"])
        self.max_offset_km_ = np.asarray(tensors["max_offset_km"], dtype=np.float64)
