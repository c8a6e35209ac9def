"""Multi-task head (PIGEON): geocells plus auxiliary geography on a shared trunk.

Auxiliary tasks, each with its own linear layer on the shared trunk and a configurable
loss weight (``aux_weights``): Köppen climate class (cross-entropy; sea/unknown masked),
elevation (standardised metres, smooth-L1), log population density (standardised
``log1p(people/km²)``, smooth-L1) and month (12-class cross-entropy, masked where
unknown). Labels come from ``fit(..., aux=...)`` (a mapping or DataFrame with columns
``climate``, ``elevation_m``, ``pop_density``, ``month``) and, for the missing ones,
from :class:`geoscout.places.aux.AuxRasters` (``aux_dir``). The auxiliary outputs only
shape the trunk; :meth:`MultiTaskHead.predict_aux` exposes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidInput
from ._registry import HEADS
from .base import TrainingOptions, check_embeddings
from .classifier import CellClassifierHead

__all__ = ["DEFAULT_AUX_WEIGHTS", "MultiTaskHead"]

DEFAULT_AUX_WEIGHTS: dict[str, float] = {"climate": 0.3, "elevation": 0.3, "population": 0.3, "month": 0.1}
_TASKS = ("climate", "elevation", "population", "month")


def _column(aux: Any, name: str, n: int) -> NDArray[Any] | None:
    if aux is None:
        return None
    try:
        col = aux[name]
    except (KeyError, IndexError, TypeError):
        return None
    arr = np.asarray(col)
    if arr.shape[0] != n:
        raise InvalidInput(f"aux[{name!r}]: expected {n} values (one per embedding), got {arr.shape[0]}")
    return arr


def _class_labels(col: NDArray[Any]) -> NDArray[Any]:
    """Category labels as strings (integral floats as ints: 3.0 -> "3"); None where missing."""

    def one(v: Any) -> str | None:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        s = str(v).strip()
        return s or None

    return np.array([one(v) for v in col], dtype=object)


def _numbers(col: NDArray[Any], name: str) -> NDArray[np.float64]:
    try:
        import pandas as pd

        return pd.to_numeric(pd.Series(col), errors="raise").to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"aux_columns[{name!r}] = 'value' needs numbers ({exc}); use 'class' for categories"
        ) from None


@HEADS.register("multitask", help="Geocell classifier + auxiliary climate/elevation/population/month heads (PIGEON)")
class MultiTaskHead(CellClassifierHead):
    """:class:`CellClassifierHead` with auxiliary tasks on the shared trunk (``hidden`` > 0 recommended)."""

    name = "multitask"

    def __init__(
        self,
        *,
        hidden: int = 512,
        tau: float = 75.0,
        class_balanced: bool = False,
        aux_weights: dict[str, float] | None = None,
        aux_dir: str | None = None,
        aux_columns: dict[str, str] | None = None,
        dropout: float = 0.2,
        cells: str = "semantic",
        options: TrainingOptions = TrainingOptions(),
    ) -> None:
        super().__init__(
            hidden=hidden, tau=tau, class_balanced=class_balanced, dropout=dropout, cells=cells, options=options
        )
        self.aux_weights = aux_weights
        self.aux_dir = aux_dir
        self.aux_columns = aux_columns

    def _columns(self) -> dict[str, str]:
        cols = dict(self.aux_columns or {})
        for c, kind in cols.items():
            if kind not in ("class", "value"):
                raise InvalidInput(f"aux_columns[{c!r}] = {kind!r}: expected 'class' (categories) or 'value' (numbers)")
            if c in ("climate", "elevation_m", "pop_density", "month"):
                raise InvalidInput(f"aux_columns: {c!r} is a built-in task already; leave it out of aux_columns")
        return cols

    def _weights(self) -> dict[str, float]:
        w = dict(DEFAULT_AUX_WEIGHTS)
        cols = self._columns()
        w.update(dict.fromkeys(cols, 0.3))
        for k, v in (self.aux_weights or {}).items():
            if k not in _TASKS and k not in cols:
                raise InvalidInput(f"aux_weights: unknown task {k!r}; valid: {', '.join([*_TASKS, *cols])}")
            w[k] = float(v)
        return w

    def _output_dims(self, n_cells: int) -> dict[str, int]:
        dims = {"cell": n_cells}
        tasks = getattr(self, "aux_tasks_", None)
        if tasks is None:  # during fit the tasks are decided in _prepare_extra, before the net is built
            tasks = list(_TASKS)
        if "climate" in tasks:
            dims["climate"] = max(1, len(self.climate_classes_))
        if "elevation" in tasks:
            dims["elevation"] = 1
        if "population" in tasks:
            dims["population"] = 1
        if "month" in tasks:
            dims["month"] = 12
        for i, t in enumerate(getattr(self, "extra_tasks_", [])):
            dims[f"x{i}"] = max(1, len(t["classes"])) if t["kind"] == "class" else 1
        return dims

    def _labels_from(self, y: NDArray[np.float64], aux: Any) -> dict[str, NDArray[Any]]:
        n = y.shape[0]
        cols = {k: _column(aux, k, n) for k in ("climate", "elevation_m", "pop_density", "month")}
        w = self._weights()
        task_of = {"climate": "climate", "elevation_m": "elevation", "pop_density": "population"}
        need = [k for k in ("climate", "elevation_m", "pop_density") if cols[k] is None and w[task_of[k]] > 0]
        for k in ("climate", "elevation_m", "pop_density"):
            if cols[k] is None and k not in need:  # a task switched off (weight 0) needs no rasters
                cols[k] = np.full(n, None if k == "climate" else np.nan, dtype=object if k == "climate" else np.float64)
        if need:
            from ..places.aux import AuxRasters

            r = AuxRasters(self.aux_dir)
            if "climate" in need:
                cols["climate"] = r.climate(y[:, 0], y[:, 1])
            if "elevation_m" in need:
                cols["elevation_m"] = r.elevation_m(y[:, 0], y[:, 1])
            if "pop_density" in need:
                cols["pop_density"] = r.population_density(y[:, 0], y[:, 1])
        return cols  # type: ignore[return-value]

    def fit(self, X: Any, y: Any, **kwargs: Any) -> MultiTaskHead:
        """Fit like :meth:`CellClassifierHead.fit` plus the auxiliary losses (labels from ``aux`` or the rasters)."""
        X = check_embeddings(X)
        from .base import check_targets

        yy = check_targets(y, X.shape[0])
        self._weights()  # validate early
        self._aux_cols = self._labels_from(yy, kwargs.get("aux"))
        # decide the tasks and class lists before the network is built (it needs the output sizes)
        clim = np.asarray(self._aux_cols["climate"], dtype=object)
        self.climate_classes_ = sorted({str(c) for c in clim if isinstance(c, str) and c})
        month = self._aux_cols.get("month")
        has_month = month is not None and np.isfinite(np.asarray(month, dtype=np.float64)).any()
        w = self._weights()
        self.aux_tasks_ = [
            t for t in _TASKS if w[t] > 0 and (t != "month" or has_month) and (t != "climate" or self.climate_classes_)
        ]
        self.extra_tasks_: list[dict[str, Any]] = []
        for c, kind in self._columns().items():
            col = _column(kwargs.get("aux"), c, yy.shape[0])
            if col is None:
                raise InvalidInput(
                    f"aux_columns: no column {c!r} in the training data; pass it in aux= (geoscout train carries "
                    "the manifests' columns named in aux_columns)"
                )
            if kind == "class":
                vals = _class_labels(col)
                classes = sorted({v for v in vals if v is not None})
                self._aux_cols[c] = vals
                self.extra_tasks_.append({"column": c, "kind": "class", "classes": classes})
            else:
                self._aux_cols[c] = _numbers(col, c)
                self.extra_tasks_.append({"column": c, "kind": "value", "stats": [0.0, 1.0]})
        try:
            super().fit(X, yy, **kwargs)
        finally:
            for k in ("_aux_cols", "_aux_t"):
                self.__dict__.pop(k, None)
        return self

    def _prepare_extra(
        self, y: NDArray[np.float64], labels: NDArray[np.int64], aux: Any, rows: NDArray[np.int64]
    ) -> None:
        import torch

        cols = self._aux_cols
        t: dict[str, Any] = {}
        if "climate" in self.aux_tasks_:
            index = {c: i for i, c in enumerate(self.climate_classes_)}
            clim = np.asarray(cols["climate"], dtype=object)[rows]
            t["climate"] = torch.from_numpy(
                np.array([index.get(str(c), -1) if isinstance(c, str) else -1 for c in clim], dtype=np.int64)
            )
        self.aux_stats_: dict[str, list[float]] = {}
        for task, col, transform in (
            ("elevation", "elevation_m", lambda v: v),
            ("population", "pop_density", np.log1p),
        ):
            if task not in self.aux_tasks_:
                continue
            v = np.asarray(cols[col], dtype=np.float64)[rows]
            with np.errstate(invalid="ignore"):
                v = transform(np.where(v < 0, 0.0, v) if task == "population" else v)
            ok = np.isfinite(v)
            mu, sd = (float(v[ok].mean()), float(v[ok].std() + 1e-6)) if ok.any() else (0.0, 1.0)
            self.aux_stats_[task] = [mu, sd]
            t[task] = torch.from_numpy(np.where(ok, (v - mu) / sd, np.nan).astype(np.float32))
        if "month" in self.aux_tasks_:
            m = np.asarray(cols["month"], dtype=np.float64)[rows]
            t["month"] = torch.from_numpy(np.where(np.isfinite(m) & (m >= 1) & (m <= 12), m - 1, -1).astype(np.int64))
        for i, extra in enumerate(self.extra_tasks_):
            extra_col = cols[extra["column"]]
            if extra["kind"] == "class":
                index = {c: j for j, c in enumerate(extra["classes"])}
                t[f"x{i}"] = torch.from_numpy(
                    np.array([index.get(v, -1) if v is not None else -1 for v in extra_col[rows]], dtype=np.int64)
                )
            else:
                v = np.asarray(extra_col, dtype=np.float64)[rows]
                ok = np.isfinite(v)
                mu, sd = (float(v[ok].mean()), float(v[ok].std() + 1e-6)) if ok.any() else (0.0, 1.0)
                extra["stats"] = [mu, sd]
                t[f"x{i}"] = torch.from_numpy(np.where(ok, (v - mu) / sd, np.nan).astype(np.float32))
        self._aux_t = t

    def _extra_loss(self, out: dict[str, Any], rows: NDArray[np.int64]) -> Any:
        import torch
        import torch.nn.functional as F

        w = self._weights()
        kinds = {f"x{i}": t["kind"] for i, t in enumerate(self.extra_tasks_)}
        names: dict[str, str] = {f"x{i}": t["column"] for i, t in enumerate(self.extra_tasks_)}
        total = out["cell"].new_zeros(())
        for task, target in self._aux_t.items():
            tgt = target[rows]
            weight = w[names.get(task, task)]
            if weight <= 0:
                continue
            if task in ("climate", "month") or kinds.get(task) == "class":
                ok = tgt >= 0
                if ok.any():
                    total = total + weight * F.cross_entropy(out[task][ok], tgt[ok])
            else:
                ok = torch.isfinite(tgt)
                if ok.any():
                    total = total + weight * F.smooth_l1_loss(out[task][ok, 0], tgt[ok])
        return total

    def predict_aux(self, X: Any) -> dict[str, NDArray[Any]]:
        """Auxiliary predictions: ``climate`` (Köppen class), ``elevation_m``, ``pop_density`` (people/km²), ``month`` (1-12)."""
        self.check_is_fitted()
        out = self._forward(check_embeddings(X, dim=self.n_features_in_))
        res: dict[str, NDArray[Any]] = {}
        if "climate" in out:
            res["climate"] = np.asarray(self.climate_classes_, dtype=object)[out["climate"].argmax(axis=1)]
        if "elevation" in out:
            mu, sd = self.aux_stats_["elevation"]
            res["elevation_m"] = out["elevation"][:, 0] * sd + mu
        if "population" in out:
            mu, sd = self.aux_stats_["population"]
            res["pop_density"] = np.expm1(out["population"][:, 0] * sd + mu)
        if "month" in out:
            res["month"] = out["month"].argmax(axis=1) + 1
        for i, t in enumerate(getattr(self, "extra_tasks_", [])):
            o = out[f"x{i}"]
            if t["kind"] == "class":
                res[t["column"]] = np.asarray(t["classes"] or [None], dtype=object)[o.argmax(axis=1)]
            else:
                mu, sd = t["stats"]
                res[t["column"]] = o[:, 0] * sd + mu
        return res

    def _extra_config(self) -> dict[str, Any]:
        return {
            "aux_tasks": list(self.aux_tasks_),
            "climate_classes": list(self.climate_classes_),
            "aux_stats": self.aux_stats_,
            "extra_tasks": list(self.extra_tasks_),
        }

    def _restore_extra(self, config: dict[str, Any], tensors: dict[str, NDArray[Any]]) -> None:
        self.aux_tasks_ = list(config["aux_tasks"])
        self.climate_classes_ = list(config["climate_classes"])
        self.aux_stats_ = {k: list(v) for k, v in config["aux_stats"].items()}
        self.extra_tasks_ = [dict(t) for t in config.get("extra_tasks", [])]
