"""Shared by ablation.py and train_default.py: the world-wide data of the default model, from the feature cache.

Every ../shared/data set is embedded once per view by ``benchmarks/feature_cache.py`` (EfficientNet-Lite2 on
ONNX Runtime; panorama strips split into their views). Splits are by location and seeded:

- ``streetview-panoramas``: 70 % train / 10 % val / 20 % test of the panoramas, drawn by ~1 km areas
  (coordinates rounded to 0.01 degree), so a panorama's views, the duplicates found by ``import`` and
  nearby shots never straddle two parts;
- ``streetview-world``, ``streetview-strips``, ``osv5m-sample``: 90 % train / 10 % val of their locations;
- ``streetview-croatia``: train only (the validation and calibration sets are world-wide, never Croatia);
- ``im2gps``: test only, never used for fitting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _common import SHARED

CACHE = Path(os.environ.get("GEOSCOUT_FEATURE_CACHE", "/work/cache16"))
TRAIN_SETS = ("streetview-croatia", "streetview-world", "streetview-strips", "osv5m-sample", "streetview-panoramas")
#: feature kind of the cache -> the registered backbone that embeds exactly that vector at locate time
KIND_BACKBONE = {"mean": "effnet-lite2", "mean+stages": "effnet-lite2-stages"}
VAL_SETS = ("streetview-world", "streetview-strips", "osv5m-sample", "streetview-panoramas")


@dataclass
class Views:
    """Per-view features of one or more sets: ``X`` (n, d) L2-normalised, coordinates, groups, split."""

    X: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    dataset: np.ndarray
    location: np.ndarray  # "<dataset>/<location key>": the views of one place share it
    path: np.ndarray
    split: np.ndarray

    def __len__(self) -> int:
        return len(self.lat)

    def take(self, mask: np.ndarray) -> Views:
        return Views(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    @property
    def y(self) -> np.ndarray:
        return np.stack([self.lat, self.lon], axis=1)


def _l2(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def feature(z, kind: str) -> np.ndarray:
    """One feature kind from a cache file: ``mean`` (today's), ``gem``, ``mean+stages`` (normalised blocks)."""
    if kind == "mean":
        return _l2(z["mean"])
    if kind == "gem":
        return _l2(z["gem"])
    if kind == "mean+stages":  # what the effnet-lite2-stages backbone embeds (geoscout.backbones.efficientnet_lite)
        from geoscout.backbones._lite import STAGES_WEIGHT

        st = z["stages"].astype(np.float32)
        return _l2(np.concatenate([_l2(z["mean"]), STAGES_WEIGHT * _l2(st)], axis=1))
    raise ValueError(kind)


def _files(name: str, variant: str, flip: bool) -> list[Path]:
    stem = f"{name}-{variant}{'-flip' if flip else ''}"
    one = CACHE / f"{stem}.npz"
    return [one] if one.is_file() else sorted(CACHE.glob(f"{stem}.part*.npz"))


def _area(key: str) -> str:
    a, b = (float(x) for x in key.split(","))
    return f"{a:.2f},{b:.2f}"


def _split_of(name: str, keys: np.ndarray, seed: int) -> np.ndarray:
    """train / val / test per row from its location key (hash-free: a seeded permutation of the sorted keys)."""
    uniq = np.unique(keys)
    rng = np.random.default_rng(seed + sum(map(ord, name)))
    u = rng.random(len(uniq))
    if name == "streetview-panoramas":
        lab = np.where(u < 0.7, "train", np.where(u < 0.8, "val", "test"))
    elif name == "streetview-croatia":
        lab = np.full(len(uniq), "train")
    elif name == "im2gps":
        lab = np.full(len(uniq), "test")
    else:
        lab = np.where(u < 0.9, "train", "val")
    return lab[np.searchsorted(uniq, keys)]


def load_views(names, *, kind: str = "mean", variant: str = "lite2", flip: bool = False, seed: int = 0) -> Views:
    """Cached per-view features of ``names`` with their location-grouped split (see the module docstring)."""
    parts = []
    for name in names:
        files = _files(name, variant, flip)
        if not files:
            raise SystemExit(f"no cached features for {name} ({variant}); run benchmarks/feature_cache.py first")
        for f in files:
            z = np.load(f)
            # views of one place share coordinates (rounded to ~10 m); so do the duplicate panoramas
            keys = np.array([f"{a:.4f},{b:.4f}" for a, b in zip(z["lat"], z["lon"])])
            parts.append((name, z, keys, feature(z, kind)))
    # splits go by ~1 km areas (2 decimals), stricter than places: nearby shots never straddle train and test
    area = {}
    for name, _, keys, _ in parts:
        area.setdefault(name, set()).update(_area(k) for k in keys)
    split_of = {}
    for n, a in area.items():
        a = np.array(sorted(a))
        split_of[n] = dict(zip(a, _split_of(n, a, seed)))
    return Views(
        X=np.concatenate([p[3] for p in parts]),
        lat=np.concatenate([p[1]["lat"] for p in parts]),
        lon=np.concatenate([p[1]["lon"] for p in parts]),
        dataset=np.concatenate([np.full(len(p[2]), p[0]) for p in parts]),
        location=np.concatenate([np.char.add(p[0] + "/", p[2]) for p in parts]),
        path=np.concatenate([p[1]["path"] for p in parts]),
        split=np.concatenate([[split_of[p[0]][_area(k)] for k in p[2]] for p in parts]).astype(object),
    )


def fuse(v: Views) -> Views:
    """One row per location: the mean of its views' vectors, renormalised (PIGEON's panorama fusion)."""
    uniq, inv = np.unique(v.location, return_inverse=True)
    X = np.zeros((len(uniq), v.X.shape[1]), np.float64)
    np.add.at(X, inv, v.X)
    first = np.zeros(len(uniq), np.int64)
    first[inv[::-1]] = np.arange(len(inv))[::-1]
    return Views(
        X=_l2(X),
        lat=v.lat[first],
        lon=v.lon[first],
        dataset=v.dataset[first],
        location=uniq,
        path=v.path[first],
        split=v.split[first],
    )


def training_data(v: Views, fingerprint: dict):
    """A :class:`geoscout.train.TrainingData` (split column: train / val / test) from cached views."""
    import pandas as pd

    from geoscout.train import TrainingData

    frame = pd.DataFrame(
        {
            "dataset": v.dataset,
            "image_id": v.path,
            "location_id": v.location,
            "lat": v.lat,
            "lon": v.lon,
            "split": v.split,
        }
    )
    return TrainingData(v.X.astype(np.float32), frame, fingerprint, 0)


def shared_root() -> Path:
    return SHARED / "data"
