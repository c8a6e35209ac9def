"""Geocell classifier with haversine label smoothing (PIGEON), linear or MLP.

The head predicts a probability per partition cell; the support points of its
distribution are the cell centroids. Training targets are smoothed by distance:
``target_i ∝ exp(-(d_i - min_j d_j) / tau)`` with ``d_i`` the haversine distance (km)
from the true point to cell ``i``'s centroid; ``tau = 0`` gives one-hot targets on the
true point's cell. :class:`CellClassifierHead` is also the base of the ``hybrid`` and
``multitask`` heads, which add outputs and losses on the same trunk.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidInput, NotFittedError
from ..geo import pairwise_haversine_km
from ._registry import HEADS
from ._torch import (
    available_cores,
    column_mean_std,
    fit_head_network,
    mean_geoguessr,
    split_train_val,
    standardized_rows,
    torch_threads,
)
from .base import Distribution, GeoHead, TrainingOptions, check_embeddings, check_targets

__all__ = ["CellClassifierHead", "haversine_smoothing"]

_PREDICT_BATCH = 4096


def haversine_smoothing(lat: Any, lon: Any, centroids: Any, tau_km: float, labels: Any = None) -> NDArray[np.float64]:
    """PIGEON's smoothed targets (N, C): ``exp(-(d_i - min_j d_j) / tau_km)`` normalised per row.

    ``lat``/``lon`` are the true points (degrees), ``centroids`` (C, 2) the cell centroids.
    ``tau_km = 0`` gives one-hot rows: on ``labels`` (the true cells) when given, else on the
    nearest centroid.
    """
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    c = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    if tau_km < 0:
        raise InvalidInput(f"tau must be >= 0 km, got {tau_km}")
    if tau_km == 0:
        idx = np.asarray(labels, dtype=np.int64) if labels is not None else None
        if idx is None:
            idx = pairwise_haversine_km(lat, lon, c[:, 0], c[:, 1]).argmin(axis=1)
        out = np.zeros((lat.size, c.shape[0]))
        out[np.arange(lat.size), idx] = 1.0
        return out
    d = pairwise_haversine_km(lat, lon, c[:, 0], c[:, 1])
    w = np.exp(-(d - d.min(axis=1, keepdims=True)) / float(tau_km))
    return w / w.sum(axis=1, keepdims=True)


def _build_net(d_in: int, hidden: int, dropout: float, outputs: dict[str, int]) -> Any:
    import torch
    from torch import nn

    class GeoNet(nn.Module):
        """Shared trunk (identity for a linear head, else Linear-GELU-Dropout) + one linear layer per output."""

        def __init__(self) -> None:
            super().__init__()
            if hidden > 0:
                self.trunk: nn.Module = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout))
                width = hidden
            else:
                self.trunk = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
                width = d_in
            self.outputs = nn.ModuleDict({k: nn.Linear(width, m) for k, m in outputs.items()})

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            h = self.trunk(x)
            return {k: layer(h) for k, layer in self.outputs.items()}

    return GeoNet()


_erf_ufunc = np.frompyfunc(math.erf, 1, 1)


def _erf(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Elementwise error function (``math.erf``; importing scipy.special costs more than a photo's head pass)."""
    return np.asarray(_erf_ufunc(x)).astype(np.float32)


class _NumpyGeoNet:
    """The trained GeoNet (see :func:`_build_net`) evaluated with numpy from its ``state_dict`` arrays:
    ``trunk.0`` Linear + exact GELU when ``hidden`` > 0 (dropout is off at inference), then
    one Linear per output (``outputs.<name>``)."""

    def __init__(self, arrays: dict[str, NDArray[Any]], hidden: int) -> None:
        self.arrays = arrays
        self.hidden = hidden

    def check(self, d_in: int, outputs: dict[str, int]) -> None:
        """Raise ValueError when the arrays do not form the network these sizes describe."""
        want: dict[str, tuple[int, ...]] = {}
        width = d_in
        if self.hidden > 0:
            want |= {"trunk.0.weight": (self.hidden, d_in), "trunk.0.bias": (self.hidden,)}
            width = self.hidden
        for k, m in outputs.items():
            want |= {f"outputs.{k}.weight": (m, width), f"outputs.{k}.bias": (m,)}
        got = {k: tuple(v.shape) for k, v in self.arrays.items()}
        if got != want:
            raise ValueError(f"network arrays {got} do not match the expected {want}")

    def __call__(self, x: NDArray[Any]) -> dict[str, NDArray[Any]]:
        a = self.arrays
        h = np.asarray(x, dtype=np.float32)
        if self.hidden > 0:
            h = h @ a["trunk.0.weight"].T + a["trunk.0.bias"]
            h = 0.5 * h * (1.0 + _erf(h / np.float32(np.sqrt(2.0))))
        names = [k[len("outputs.") : -len(".weight")] for k in a if k.startswith("outputs.") and k.endswith(".weight")]
        return {n: h @ a[f"outputs.{n}.weight"].T + a[f"outputs.{n}.bias"] for n in names}


@HEADS.register("classifier", help="Geocell classifier (linear or MLP) with haversine label smoothing (PIGEON)")
class CellClassifierHead(GeoHead):
    """Classify embeddings into partition cells; trained with haversine label smoothing.

    Parameters: ``hidden`` MLP width (0 = linear), ``tau`` smoothing temperature in km (0 =
    one-hot), ``class_balanced`` weights samples by inverse cell frequency, ``dropout`` after the
    hidden layer, ``cells`` the partition spec used when ``fit`` gets no partition, ``options`` the
    :class:`~geoscout.heads.TrainingOptions` (epochs, lr, early stopping, seed, threads: default the
    available cores for big batches).
    """

    name = "classifier"

    def __init__(
        self,
        *,
        hidden: int = 512,
        tau: float = 75.0,
        class_balanced: bool = False,
        dropout: float = 0.2,
        cells: str = "semantic",
        options: TrainingOptions = TrainingOptions(),
    ) -> None:
        self.hidden = hidden
        self.tau = tau
        self.class_balanced = class_balanced
        self.dropout = dropout
        self.cells = cells
        self.options = options

    # -- hooks for subclasses ------------------------------------------------------------------
    def _output_dims(self, n_cells: int) -> dict[str, int]:
        return {"cell": n_cells}

    def _prepare_extra(
        self, y: NDArray[np.float64], labels: NDArray[np.int64], aux: Any, rows: NDArray[np.int64]
    ) -> None:
        """Compute extra training targets for the training rows (``rows`` index into the full fit input)."""

    def _extra_loss(self, out: dict[str, Any], rows: NDArray[np.int64]) -> Any:
        return 0.0

    def _extra_config(self) -> dict[str, Any]:
        return {}

    def _extra_tensors(self) -> dict[str, NDArray[Any]]:
        return {}

    def _restore_extra(self, config: dict[str, Any], tensors: dict[str, NDArray[Any]]) -> None:
        pass

    def _points_from_outputs(
        self, out: dict[str, NDArray[np.float64]]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Support points (lat, lon) of the distribution: (C,) centroids for the plain classifier."""
        return self.centroids_[:, 0], self.centroids_[:, 1]

    # -- fitting ---------------------------------------------------------------------------------
    def _resolve_partition(self, partition: Any, y: NDArray[np.float64]) -> Any:
        if partition is None:
            from ..cells import create_partition

            return create_partition(self.cells).fit(y[:, 0], y[:, 1])
        try:
            _ = partition.n_cells
            _ = partition.centroids
        except NotFittedError:
            partition.fit(y[:, 0], y[:, 1])
        return partition

    def _labels(self, y: NDArray[np.float64]) -> NDArray[np.int64]:
        """Cell index of each point; points outside every cell go to the nearest centroid."""
        lab = np.asarray(self.partition_.assign(y[:, 0], y[:, 1]), dtype=np.int64).reshape(-1)
        out = lab < 0
        if out.any():
            d = pairwise_haversine_km(y[out, 0], y[out, 1], self.centroids_[:, 0], self.centroids_[:, 1])
            lab[out] = d.argmin(axis=1)
        return lab

    def _n_threads(self, d_in: int, n_cells: int) -> int:
        """``threads`` if set; else all available cores for big batches, 1 for small ones (thread
        synchronisation costs more than it saves) and 1 when the load average already exceeds the cores."""
        if self.options.threads:
            return int(self.options.threads)
        width = int(self.hidden) if int(self.hidden) > 0 else d_in
        outs = sum(self._output_dims(n_cells).values()) if n_cells else n_cells
        macs = int(self.options.batch_size) * ((d_in * width if int(self.hidden) > 0 else 0) + width * outs)
        if macs < 50_000_000:
            return 1
        cores = available_cores()
        try:  # a machine already busier than its cores: extra threads only spin-wait
            busy = os.getloadavg()[0] >= cores + 1
        except OSError:  # pragma: no cover
            busy = False
        return 1 if busy else cores

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        partition: Any = None,
        aux: Any = None,
        X_val: Any = None,
        y_val: Any = None,
        groups: Any = None,
        progress: bool = False,
    ) -> CellClassifierHead:
        """Fit on embeddings ``X`` (N, D) and true ``y`` (N, 2) lat/lon degrees.

        ``partition`` is a (fitted or unfitted) geoscout Partition; ``groups`` (N,) marks rows
        of one location so the automatic validation split never separates them (default:
        identical coordinates). Returns ``self``.
        """
        import torch

        X = check_embeddings(X)
        y = check_targets(y, X.shape[0])
        if self.tau < 0:
            raise InvalidInput(f"tau must be >= 0 km, got {self.tau}")
        self.partition_ = self._resolve_partition(partition, y)
        self.centroids_ = np.asarray(self.partition_.centroids, dtype=np.float64).reshape(-1, 2)
        self.cell_ids_ = [str(c) for c in self.partition_.cell_ids]
        self.partition_spec_ = str(getattr(self.partition_, "spec", self.cells))
        n_cells = self.centroids_.shape[0]
        if n_cells < 1:
            raise InvalidInput("the partition has no cells; fit it on training coordinates first")
        labels = self._labels(y)

        opts = self.options
        tr, X_val, y_val = split_train_val(X, y, X_val, y_val, groups, opts.val_fraction, opts.seed)
        ytr, ltr = y[tr], labels[tr]
        self.x_mean_, self.x_std_ = column_mean_std(X, tr)

        with torch_threads(self._n_threads(X.shape[1], n_cells)), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(opts.seed))
            net = _build_net(X.shape[1], int(self.hidden), float(self.dropout), self._output_dims(n_cells))
            self.net_ = net
            self._prepare_extra(y, labels, aux, tr)
            x_batch = standardized_rows(X, tr, self.x_mean_, self.x_std_)
            lt = torch.from_numpy(ltr)
            if self.class_balanced:
                counts = np.bincount(ltr, minlength=n_cells).astype(np.float64)
                w = np.where(counts > 0, len(ltr) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
                sample_w = torch.from_numpy(w[ltr].astype(np.float32))
            else:
                sample_w = None

            def batch_loss(rows: NDArray[np.int64]) -> Any:
                out = net(x_batch(rows))
                logp = torch.log_softmax(out["cell"], dim=1)
                if self.tau == 0:
                    nll = -logp.gather(1, lt[rows, None])[:, 0]
                else:
                    tgt = haversine_smoothing(ytr[rows, 0], ytr[rows, 1], self.centroids_, self.tau)
                    nll = -(torch.from_numpy(tgt.astype(np.float32)) * logp).sum(dim=1)
                loss = (nll * sample_w[rows]).mean() if sample_w is not None else nll.mean()
                return loss + self._extra_loss(out, rows)

            val_fn = None
            if X_val is not None:
                Xv, yv = X_val, y_val

                def val_fn() -> float:
                    return mean_geoguessr(self._predict_points_fitted(Xv), yv)

            self.history_ = fit_head_network(self, net, batch_loss, len(tr), X.shape[1], val_fn, progress)
        self.history_["n_train"] = len(tr)
        self.history_["n_val"] = int(0 if X_val is None else len(X_val))
        return self

    # -- prediction --------------------------------------------------------------------------------
    def _forward(self, X: NDArray[np.float32]) -> dict[str, NDArray[np.float64]]:
        """Raw network outputs (softmaxed ``cell``) for checked embeddings, in batches, evaluated with numpy
        (so predicting with a loaded head never imports torch)."""
        net = _NumpyGeoNet(self._net_arrays(), int(self.hidden))
        parts: dict[str, list[NDArray[np.float64]]] = {}
        for s in range(0, X.shape[0], _PREDICT_BATCH):
            out = net((X[s : s + _PREDICT_BATCH] - self.x_mean_) / self.x_std_)
            z = out["cell"].astype(np.float64)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            out["cell"] = z / z.sum(axis=1, keepdims=True)
            for k, v in out.items():
                parts.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
        return {k: np.concatenate(v, axis=0) for k, v in parts.items()}

    def _net_arrays(self) -> dict[str, NDArray[Any]]:
        """The network's parameters as numpy arrays (torch ``state_dict`` names)."""
        if isinstance(self.net_, _NumpyGeoNet):
            return self.net_.arrays
        return {k: v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}

    def _predict_points_fitted(self, X: NDArray[np.float32]) -> NDArray[np.float64]:
        out = self._forward(X)
        lat, lon = self._points_from_outputs(out)
        best = out["cell"].argmax(axis=1)
        if lat.ndim == 1:
            return np.stack([lat[best], lon[best]], axis=1)
        rows = np.arange(lat.shape[0])
        return np.stack([lat[rows, best], lon[rows, best]], axis=1)

    def predict_distribution(self, X: Any) -> Distribution:
        """Probability per cell; support points are the cell centroids (hybrid: centroid + offset)."""
        self.check_is_fitted()
        X = check_embeddings(X, dim=self.n_features_in_)
        out = self._forward(X)
        lat, lon = self._points_from_outputs(out)
        return Distribution(lat=lat, lon=lon, prob=out["cell"], cell=list(self.cell_ids_))

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """(N, C) cell probabilities, columns in the order of ``cell_ids_``."""
        self.check_is_fitted()
        return self._forward(check_embeddings(X, dim=self.n_features_in_))["cell"]

    # -- state ---------------------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """JSON-able config (name, params, number of cells, history) and named float32 arrays. The cells
        themselves (ids, centroids) are the partition's: :meth:`from_state` takes them from it."""
        self.check_is_fitted()
        config: dict[str, Any] = {
            "name": self.name,
            "params": self.params_json(),
            "n_features_in": int(self.n_features_in_),
            "n_cells": len(self.cell_ids_),
            "partition_spec": self.partition_spec_,
            "history": self.history_,
            **self._extra_config(),
        }
        tensors: dict[str, NDArray[Any]] = {
            "x_mean": np.ascontiguousarray(self.x_mean_),
            "x_std": np.ascontiguousarray(self.x_std_),
        }
        for k, v in self._net_arrays().items():
            tensors[f"net.{k}"] = np.ascontiguousarray(v)
        tensors.update(self._extra_tensors())
        return config, tensors

    @classmethod
    def from_state(
        cls, config: dict[str, Any], tensors: dict[str, NDArray[Any]], *, partition: Any = None
    ) -> CellClassifierHead:
        """Rebuild a fitted head from :meth:`get_state` output and the ``partition`` it was trained on (its cells);
        a state written with its own copy of the cells (``cell_ids`` + ``centroids``, bundles before the partition
        was stored once) needs none. Never unpickles, never imports torch."""
        if config.get("name") != cls.name:
            raise InvalidInput(f"head config is for {config.get('name')!r}, not {cls.name!r}")
        try:
            head = cls(**cls._params_from_config(config))
            head._restore_cells(config, tensors, partition)
            head.partition_spec_ = config.get("partition_spec", head.cells)
            head.history_ = config.get("history", {})
            head.x_mean_ = np.asarray(tensors["x_mean"], dtype=np.float32)
            head.x_std_ = np.asarray(tensors["x_std"], dtype=np.float32)
            d_in = int(config["n_features_in"])
            head._restore_extra(config, tensors)
            arrays = {k[4:]: np.asarray(v, dtype=np.float32) for k, v in tensors.items() if k.startswith("net.")}
            net = _NumpyGeoNet(arrays, int(head.hidden))
            net.check(d_in, head._output_dims(len(head.cell_ids_)))
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{cls.name} head state is incomplete or inconsistent: {exc}") from None
        head.net_ = net
        head.n_features_in_ = d_in
        return head

    def _restore_cells(self, config: dict[str, Any], tensors: dict[str, NDArray[Any]], partition: Any) -> None:
        """Cell ids and centroids: the state's own copy (old layout), else the partition's."""
        if "cell_ids" in config and "centroids" in tensors:
            self.cell_ids_ = [str(c) for c in config["cell_ids"]]
            self.centroids_ = np.asarray(tensors["centroids"], dtype=np.float64)
            if partition is not None:
                self.partition_ = partition
            return
        if partition is None:
            raise InvalidInput(
                f"the {self.name} head's cells are those of its partition: load it with the partition it was "
                "trained on (ModelBundle.load does; head_from_state(config, tensors, partition=...))"
            )
        self.cell_ids_ = [str(c) for c in partition.cell_ids]
        self.centroids_ = np.asarray(partition.centroids, dtype=np.float64).reshape(-1, 2)
        n = config.get("n_cells")
        if n is not None and int(n) != len(self.cell_ids_):
            raise InvalidInput(
                f"the partition has {len(self.cell_ids_)} cells but the {self.name} head was trained on {n}; "
                "the bundle's partition.geojson belongs to another model"
            )
        self.partition_ = partition
