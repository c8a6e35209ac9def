"""Train a geolocation model from one or more datasets and write a :class:`ModelBundle`.

``train_model`` embeds every dataset with the backbone (resumable, cached EmbeddingStores),
splits by location (views of one panorama never straddle train/val), fits the partition on
the training coordinates, fits the head with early stopping on the validation GeoGuessr
score, and writes the bundle with a model card that records data, split and metrics.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .bundle import ModelBundle, RetrievalData
from .errors import InvalidInput
from .geo import haversine_km, spherical_mean

__all__ = ["TrainingData", "load_training_data", "train_model"]


_AUX_COLUMNS = ("climate", "elevation_m", "pop_density", "month")


class TrainingData:
    """Embeddings of one or more datasets with their coordinates and location groups.

    ``X`` (N, D) float32, ``y`` (N, 2) lat/lon degrees, ``frame`` one row per embedding with
    ``dataset``, ``image_id``, ``location_id`` (prefixed by the dataset name), ``split`` if known
    and the auxiliary label columns the manifests carry. ``fingerprint`` is the backbone's.
    """

    def __init__(self, X: NDArray[np.float32], frame: Any, fingerprint: dict[str, Any], skipped: int) -> None:
        self.X = X
        self.frame = frame
        self.fingerprint = fingerprint
        self.skipped = skipped

    @property
    def y(self) -> NDArray[np.float64]:
        return self.frame[["lat", "lon"]].to_numpy(dtype=np.float64)

    def __len__(self) -> int:
        return int(self.X.shape[0])


def _as_list(datasets: Any) -> list[Any]:
    if isinstance(datasets, (str, os.PathLike)) or not isinstance(datasets, Sequence):
        return [datasets]
    return list(datasets)


def load_training_data(
    datasets: Any,
    *,
    backbone: Any = "effnet-lite2",
    store_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    embed_missing: bool = True,
    columns: Sequence[str] = (),
    device: str = "cpu",
    precision: str = "auto",
) -> TrainingData:
    """Load and embed ``datasets`` (paths or :class:`~geoscout.data.Dataset`), resumably.

    Stores go to ``store_dir/<dataset>-<backbone>`` when given, else to the embeddings module's
    default cache path. Images that failed to embed are skipped and counted; with
    ``embed_missing=False`` nothing is embedded and images absent from the stores are skipped too.
    ``columns`` are further manifest columns to carry (auxiliary labels such as OSV-5M's ``land_cover``).
    """
    import pandas as pd

    from .data import Dataset, load_dataset
    from .embeddings import EmbeddingStore, default_store_path, embed_dataset

    items = _as_list(datasets)
    if not items:
        raise InvalidInput("no datasets given; pass at least one dataset folder or CSV")
    frames, mats = [], []
    fingerprint: dict[str, Any] = {}
    skipped = 0
    seen_names: dict[str, int] = {}
    for item in items:
        ds = item if isinstance(item, Dataset) else load_dataset(item)
        name = ds.name
        if name in seen_names:  # two sets with the same folder name
            seen_names[name] += 1
            name = f"{name}#{seen_names[name]}"
        else:
            seen_names[name] = 0
        bb_name = backbone if isinstance(backbone, str) else getattr(backbone, "name", "backbone")
        out = None if store_dir is None else Path(store_dir) / f"{name}-{bb_name}".replace("/", "_").replace(":", "_")
        if embed_missing:
            store = embed_dataset(
                ds,
                backbone,
                out,
                batch_size=batch_size,
                workers=workers,
                progress=progress,
                device=device,
                precision=precision,
            )
        else:
            path = out if out is not None else default_store_path(ds, bb_name)
            if not EmbeddingStore.exists(path):
                raise InvalidInput(f"{path}: no embedding store for {ds.name}; run `geoscout embed` first")
            store = EmbeddingStore.open(path)
        fingerprint = dict(store.fingerprint)
        g, vec, n_failed = _embedded_rows(ds, name, store, columns)
        skipped += n_failed
        frames.append(g)
        mats.append(vec)
    frame = pd.concat(frames, ignore_index=True)
    return TrainingData(np.concatenate(mats, axis=0), frame, fingerprint, skipped)


def _embedded_rows(ds: Any, name: str, store: Any, columns: Sequence[str]) -> tuple[Any, NDArray[np.float32], int]:
    """The rows of dataset ``ds`` (called ``name``) that ``store`` holds a vector for: the training frame (dataset,
    image and location ids, lat/lon, split, auxiliary ``columns``), their vectors and how many rows had none."""
    import pandas as pd

    f = ds.frame.reset_index(drop=True)
    ids = f["image_id"].astype(str).to_numpy()
    store_ids = np.asarray(store.ids).astype(str)
    have = np.isin(ids, store_ids)
    vec = np.full((len(f), store.dim), np.nan, dtype=np.float32)
    if have.any():
        vec[have] = store.load(ids=list(ids[have]))
    ok = np.isfinite(vec).all(axis=1)
    if not ok.any():
        raise InvalidInput(f"{ds.root}: no image could be embedded; see the store's failures")
    f = f.loc[ok].reset_index(drop=True)
    loc = f["location_id"] if "location_id" in f.columns else f["image_id"]
    loc = loc.where(loc.notna(), f["image_id"]).astype(str)
    g = pd.DataFrame(
        {
            "dataset": name,
            "image_id": f["image_id"].astype(str),
            "location_id": name + "/" + loc,
            "lat": f["lat"].astype(np.float64),
            "lon": f["lon"].astype(np.float64),
        }
    )
    if "split" in f.columns:
        g["split"] = f["split"].astype(object)
    for c in dict.fromkeys((*_AUX_COLUMNS, *columns)):
        if c in f.columns:
            g[c] = f[c].to_numpy()
    return g, vec[ok], int((~ok).sum())


def _head_kwargs(head_name: str, wanted: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments of ``create_head``: ``wanted`` (train's own settings) where the head takes them, then
    ``extra`` (``--param``), checked against the head's parameters (and training options, where it has them)."""
    from .heads import HEADS, TrainingOptions, list_heads

    list_heads()  # load the built-in heads
    factory = HEADS.get(head_name)
    names = set(factory._param_names()) if hasattr(factory, "_param_names") else set()
    defaults = _param_defaults(factory)
    if isinstance(defaults.get("options"), TrainingOptions):
        names |= set(TrainingOptions.fields())
        defaults.update(defaults["options"].to_dict())
    kw = {k: v for k, v in wanted.items() if k in names and v is not None}
    for k, v in (extra or {}).items():
        if names and k not in names:
            raise InvalidInput(f"head {head_name!r} has no parameter {k!r}; valid: {', '.join(sorted(names))}")
        _check_param_type(head_name, k, v, defaults.get(k))
        kw[k] = v
    return kw


def training_options(head: str, **changes: Any) -> Any:
    """The :class:`~geoscout.heads.TrainingOptions` head ``head`` trains with: its defaults with ``changes``
    (``epochs=``, ``lr=``, ...); None for a head that trains no network (``epochs`` and ``seed`` are then ignored,
    other options refused)."""
    import dataclasses

    from .heads import HEADS, TrainingOptions, list_heads

    list_heads()
    default = _param_defaults(HEADS.get(head)).get("options")
    if not isinstance(default, TrainingOptions):
        other = sorted(set(changes) - {"epochs", "seed"})
        if other:
            raise InvalidInput(f"head {head!r} trains no network: it has no parameter {other[0]!r}")
        return None
    unknown = sorted(set(changes) - set(TrainingOptions.fields()))
    if unknown:
        raise InvalidInput(f"no training option {unknown[0]!r}; valid: {', '.join(TrainingOptions.fields())}")
    return dataclasses.replace(default, **changes)


def _param_defaults(factory: Any) -> dict[str, Any]:
    import inspect

    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return {}
    return {n: p.default for n, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def _check_param_type(head_name: str, key: str, value: Any, default: Any) -> None:
    """A head parameter must have its default's type (bool, int, float, str); ints pass for floats."""
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}
    want = kinds.get(type(default))
    if want is None or value is None:
        return
    if isinstance(value, want) and not (isinstance(value, bool) and type(default) is not bool):
        return
    raise InvalidInput(
        f"head {head_name!r} parameter {key!r} expects {type(default).__name__} (default {default!r}), "
        f"got {value!r}; e.g. --param {key}={json.dumps(default)}"
    )


def describe_cells(summary: dict[str, Any]) -> str:
    """``"20 cells with training photos (257 in the partition)"``, or ``"20 cells"`` when all hold photos."""
    n, used = summary["n_cells"], summary.get("n_cells_with_data", summary["n_cells"])
    return f"{used} cells" if used == n else f"{used} cells with training photos ({n} in the partition)"


def _model_card(summary: dict[str, Any]) -> str:
    m = summary.get("val_metrics") or {}
    lines = [
        "# geoscout model card",
        "",
        f"Trained {summary['trained_at']} with geoscout {summary['geoscout_version']}.",
        *(["", f"Command: `{summary['command']}`"] if summary.get("command") else []),
        "",
        "## Data",
        "",
        "| dataset | images (train / val) | test rows left out |",
        "|---|---|---|",
    ]
    left_out = summary.get("test_left_out") or {}
    for name, (ntr, nva) in summary["datasets"].items():
        lines.append(f"| {name} | {ntr} / {nva} | {left_out.get(name, 0)} |")
    lines += [
        "",
        f"Split: {summary['split']}. Images that failed to embed (skipped): {summary['skipped_images']}.",
        "",
        "## Model",
        "",
        f"- backbone: `{summary['backbone']}`",
        f"- partition: `{summary['partition']}` ({describe_cells(summary)})",
        f"- head: `{summary['head']}` with {summary['head_params']}",
        f"- training time: {summary['fit_seconds']:.1f} s (head), {summary['total_seconds']:.1f} s (total, embedding included)",
        "",
        "## Validation (held-out locations)",
        "",
    ]
    if m:
        keys = [k for k in m if k != "n"]
        lines += [
            "| n | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
            f"| {m.get('n')} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |",
        ]
        prior = summary.get("val_prior_metrics") or {}
        if prior:
            lines += [
                "",
                f"Predicting the training centroid instead scores GeoGuessr {prior['geoguessr']:.0f}, "
                f"median {prior['median_km']:.0f} km.",
            ]
    else:
        lines.append("No validation set (val_fraction = 0).")
    cal = summary.get("calibration")
    if cal:
        lines += _calibration_section(cal)
    lines += ["", "Photos' licences are those of their sources; check them before publishing predictions.", ""]
    return "\n".join(lines)


def _calibration_section(cal: dict[str, Any]) -> list[str]:
    """The model card's calibration section, from the summary's ``calibration`` entry."""

    def fmt(sc: dict[str, float]) -> str:
        return ", ".join(f"{float(k) * 100:.0f} %: x{v:.2f}" for k, v in sc.items())

    method = cal.get("method", "global")
    how = (
        "expected GeoGuessr scores that best predict the achieved ones"
        if cal.get("objective") == "score"
        else "negative log-likelihood of the true cells"
    )
    temp = f"temperature {cal['temperature']:.2f} ({how})"
    if method in ("novelty", "novelty+mondrian"):
        temp = (
            f"temperature {cal['temperature']:.2f} x exp({cal['novelty_slope']:.2f} x (novelty - "
            f"{cal['novelty_center']:.3f})) ({how}; novelty = 1 - mean cosine similarity to the "
            f"{cal['novelty_k']} most similar training views)"
        )
    scales = fmt(cal["radius_scale"])
    if cal.get("novelty_edges"):
        edges = [f"{e:.3f}" for e in cal["novelty_edges"]]
        names = [f"novelty < {edges[0]}"] + [f"{a}-{b}" for a, b in itertools.pairwise(edges)] + [f">= {edges[-1]}"]
        scales = "; ".join(f"{n}: {fmt(b)}" for n, b in zip(names, cal["radius_scale_bins"]))
        scales = f"per novelty bin (Mondrian) {scales}"
    return [
        "",
        "## Calibration",
        "",
        f"Method `{method}`, fitted on {cal['fitted_on']}: {temp}; stated 50 / 68 / 90 % radii = split-conformal "
        f"factor x the radius holding that share of the tempered probability (at least {cal['r_min_km']:.0f} km): "
        f"{scales}. The expected score is computed under the same tempered distribution. Answered point: "
        f"`{cal['guess']}`.",
    ]


def train_model(
    datasets: Any,
    *,
    backbone: str = "effnet-lite2",
    cells: str = "semantic",
    head: str = "classifier",
    out: str | os.PathLike[str] | None = None,
    tau: float = 75.0,
    aux_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int | None = None,
    epochs: int | None = None,
    options: Any = None,
    head_params: dict[str, Any] | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    workers: int = 2,
    retrieval: bool = True,
    progress: bool = True,
    data: TrainingData | None = None,
    device: str = "cpu",
    precision: str = "auto",
    guess: str = "expected-score",
    calibrate: Any = None,
    command: str | None = None,
) -> ModelBundle:
    """Train a model on ``datasets`` and return (and, with ``out``, write) its :class:`ModelBundle`.

    ``tau`` is the label-smoothing temperature in km, ``val_fraction`` the share of locations
    held out for early stopping and the model card's metrics, from the rows whose manifest has no
    ``split`` (rows that have one keep it; see :func:`geoscout.data.split_for_training`), ``head_params``
    extra head parameters. ``options`` (a :class:`~geoscout.heads.TrainingOptions`, see :func:`training_options`)
    says how the head's network trains (default: the head's own, with ``epochs`` 30 and ``seed``); ``epochs``, when
    given, replaces its epochs. ``seed`` (default 0, or ``options.seed``) draws the split (and, without ``options``,
    seeds the head). ``data`` skips loading/embedding (already embedded :class:`TrainingData`). ``device`` and
    ``precision`` are the backbone's for the embedding step (see :mod:`geoscout.devices`); heads train on the CPU.
    With a validation split and ``calibrate`` (a function ``(bundle, X_val, y_val, guess=, fitted_on=)`` ->
    Calibration, e.g. :func:`geoscout.locator.calibrate`, which ``geoscout train`` passes), the bundle carries a
    calibration fitted on it (temperature, 50 / 68 / 90 % radius factors) and ``guess`` as its answer rule.
    ``command`` (the command line that trained it) is recorded in the summary and the model card.
    """
    from .cells import create_partition

    t0 = time.perf_counter()
    seed = seed if seed is not None else (0 if options is None else int(options.seed))
    head_seed = seed if options is None else None  # given options carry the head's own seed
    if epochs is None and options is None:
        epochs = 30
    if not 0.0 <= val_fraction < 1.0:
        raise InvalidInput(f"val_fraction must be in [0, 1), got {val_fraction}")
    create_partition(cells)  # fail on a bad spec / head name before the (long) embedding step
    _head_kwargs(head, {}, head_params)
    td = (
        data
        if data is not None
        else load_training_data(
            datasets,
            backbone=backbone,
            store_dir=store_dir,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            columns=list((head_params or {}).get("aux_columns") or {}),
            device=device,
            precision=precision,
        )
    )
    split, split_desc, tr, va = _split_rows(td, val_fraction, seed)
    y = td.y
    partition = create_partition(cells).fit(y[tr, 0], y[tr, 1])
    wanted = {"tau": tau, "options": options, "seed": head_seed, "epochs": epochs, "cells": cells, "aux_dir": aux_dir}
    model, fit_seconds = _fit_head(head, wanted, head_params, td, (tr, va), partition, progress)
    summary = {
        **({"command": command} if command else {}),
        **_summary(td, (split, split_desc, tr, va), backbone, partition, head, model),
        "fit_seconds": fit_seconds,
    }
    bundle = ModelBundle(
        head=model,
        partition=partition,
        backbone_name=backbone,
        backbone_fingerprint=td.fingerprint,
        retrieval=_retrieval_data(td, tr, partition) if retrieval else None,
        training=summary,
        card="",
    )
    if calibrate is not None and va.size >= 10:
        _calibrate_on_validation(bundle, calibrate, td, va, guess)
    summary["total_seconds"] = time.perf_counter() - t0
    bundle.card = _model_card(summary)
    if out is not None:
        bundle.save(out)
    return bundle


def _calibrate_on_validation(bundle: ModelBundle, calibrate: Any, td: TrainingData, va: np.ndarray, guess: str) -> None:
    """Give ``bundle`` the calibration ``calibrate`` fits on the validation rows ``va`` (and record it in its
    training summary)."""
    bundle.calibration = calibrate(
        bundle, td.X[va], td.y[va], guess=guess, fitted_on=f"the validation split ({va.size} images)"
    )
    bundle.training["calibration"] = bundle.calibration.to_dict()


def _split_rows(td: TrainingData, val_fraction: float, seed: int) -> tuple[Any, str, np.ndarray, np.ndarray]:
    """The split of ``td``'s rows (labels, description) and the train and validation row numbers."""
    from .data import split_for_training

    split, split_desc = split_for_training(td.frame, val_fraction=val_fraction, seed=seed)
    tr = np.flatnonzero(split == "train")
    va = np.flatnonzero(split == "val")
    if tr.size == 0:
        raise InvalidInput("no training images after the split; add data or lower --val-fraction")
    return split, split_desc, tr, va


def _fit_head(
    head: str,
    wanted: dict[str, Any],
    head_params: dict[str, Any] | None,
    td: TrainingData,
    rows: tuple[NDArray[np.int64], NDArray[np.int64]],
    partition: Any,
    progress: bool,
) -> tuple[Any, float]:
    """Build head ``head`` from train's settings (``wanted``) and ``head_params``, fit it on the training rows
    (validated on the validation rows: none means no early stopping); returns it and the seconds fitting took."""
    from .heads import create_head

    tr, va = rows
    aux_dir = wanted.get("aux_dir")
    wanted = {**wanted, "aux_dir": None if aux_dir is None else str(aux_dir)}
    wanted["val_fraction"] = 0.0 if va.size == 0 else None
    model = create_head(head, **_head_kwargs(head, wanted, head_params))
    t_fit = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(td.X[tr], td.y[tr], **_fit_kwargs(td, tr, va, partition, head_params, progress))
    return model, time.perf_counter() - t_fit


def _summary(
    td: TrainingData,
    rows: tuple[NDArray[Any], str, NDArray[np.int64], NDArray[np.int64]],
    backbone: str,
    partition: Any,
    head: str,
    model: Any,
) -> dict[str, Any]:
    """The training summary's data, model and validation entries (the bundle's ``training``); ``rows`` is the
    split: (per-row split names, its description, training rows, validation rows)."""
    from . import __version__

    split, split_desc, tr, va = rows
    frame = td.frame
    val_metrics, prior_metrics = _validation_metrics(model, td, tr, va)
    counts, left_out = _rows_per_dataset(frame, split, tr, va)
    return {
        "trained_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "geoscout_version": __version__,
        "datasets": counts,
        "test_left_out": left_out,
        "n_train": int(tr.size),
        "n_val": int(va.size),
        "n_train_locations": int(frame["location_id"].iloc[tr].nunique()),
        "split": split_desc,
        "skipped_images": int(td.skipped),
        "backbone": backbone,
        "partition": partition.spec,
        "n_cells": int(partition.n_cells),
        "n_cells_with_data": int((np.asarray(partition.counts) > 0).sum()),
        "head": head,
        "head_params": getattr(model, "params_json", model.get_params)(),
        "val_metrics": val_metrics,
        "val_prior_metrics": prior_metrics,
    }


def _fit_kwargs(
    td: TrainingData,
    tr: NDArray[np.int64],
    va: NDArray[np.int64],
    partition: Any,
    head_params: dict[str, Any] | None,
    progress: bool,
) -> dict[str, Any]:
    """The head's ``fit`` keywords: partition, location groups, aux label columns, validation rows."""
    frame = td.frame
    fit_kw: dict[str, Any] = {
        "partition": partition,
        "groups": frame["location_id"].to_numpy()[tr],
        "progress": progress,
    }
    extra_cols = list((head_params or {}).get("aux_columns") or {})
    have_aux = [c for c in dict.fromkeys((*_AUX_COLUMNS, *extra_cols)) if c in frame.columns]
    if have_aux:
        fit_kw["aux"] = {c: frame[c].to_numpy()[tr] for c in have_aux}
    if va.size:
        fit_kw["X_val"], fit_kw["y_val"] = td.X[va], td.y[va]
    return fit_kw


def _validation_metrics(
    model: Any, td: TrainingData, tr: NDArray[np.int64], va: NDArray[np.int64]
) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """Distance metrics of the model and of the prior it must beat (the training set's spherical mean) on ``va``."""
    from .evaluate import distance_metrics

    if not va.size:
        return None, None
    y = td.y
    p = model.predict(td.X[va])
    val_metrics = distance_metrics(haversine_km(p[:, 0], p[:, 1], y[va, 0], y[va, 1]))
    clat, clon = spherical_mean(y[tr, 0], y[tr, 1])
    prior_metrics = distance_metrics(haversine_km(clat, clon, y[va, 0], y[va, 1]))
    return val_metrics, prior_metrics


def _rows_per_dataset(
    frame: Any, split: NDArray[Any], tr: NDArray[np.int64], va: NDArray[np.int64]
) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """Per dataset: (training rows, validation rows), and the test rows left out."""
    names = list(dict.fromkeys(frame["dataset"]))
    counts = {
        n: (int(((frame["dataset"] == n).to_numpy()[tr]).sum()), int(((frame["dataset"] == n).to_numpy()[va]).sum()))
        for n in names
    }
    left_out = {n: int(((frame["dataset"] == n).to_numpy() & (split == "test")).sum()) for n in names}
    return counts, left_out


def _retrieval_data(td: TrainingData, tr: NDArray[np.int64], partition: Any) -> RetrievalData:
    """The training rows' embeddings (float16), coordinates, cells and location ids, for retrieval refinement."""
    y = td.y
    return RetrievalData(
        vectors=td.X[tr].astype(np.float16),
        lat=y[tr, 0],
        lon=y[tr, 1],
        cell=np.asarray(partition.assign(y[tr, 0], y[tr, 1]), dtype=np.int64),
        ids=list(td.frame["location_id"].iloc[tr].astype(str)),
    )
