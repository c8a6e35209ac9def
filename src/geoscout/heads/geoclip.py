"""The pretrained ``geoclip`` head: GeoCLIP's location encoder scored against a GPS gallery.

``prob = softmax(exp(logit_scale) * normalize(image_features) @ normalize(location_encoder(gallery)).T)``,
exactly GeoCLIP's ``predict``, but batched and with the gallery's location features computed once
and cached on disk (``cache_dir("geoclip")``, keyed by the location-encoder weights' hash and the
gallery's hash; written atomically). GeoCLIP recomputes them (~15 s on 2 cores) on every photo.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._io import atomic_path, cache_dir
from ..errors import InvalidInput
from ..geo import validate_latlon
from ..geoclip._wheel import load_gallery_csv, load_wheel_weights, weights_digest, wheel_gallery
from ..geoclip.location_encoder import LocationEncoder
from ..types import Candidate
from ._registry import HEADS
from .base import Distribution, GeoHead, check_embeddings

__all__ = ["GeoCLIPHead", "gallery_features", "load_geoclip_head"]


def _gallery_digest(gallery: NDArray[np.float32]) -> str:
    return hashlib.sha256(np.ascontiguousarray(gallery, dtype=np.float32).tobytes()).hexdigest()[:16]


def gallery_features(
    encoder: Any, gallery: NDArray[Any], *, weights_hash: str, cache: bool = True, chunk: int = 8192
) -> NDArray[np.float32]:
    """L2-normalised (M, D) location features of ``gallery`` (M, 2) degrees, from the disk cache when present.

    The cache file is ``cache_dir("geoclip")/gallery-<weights_hash>-<gallery_hash>.safetensors``.
    """
    import torch
    from safetensors.numpy import load_file, save_file

    gal = np.ascontiguousarray(gallery, dtype=np.float32)
    path = cache_dir("geoclip") / f"gallery-{weights_hash}-{_gallery_digest(gal)}.safetensors" if cache else None
    if path is not None and path.is_file():
        try:
            data = load_file(str(path))
            feats = data["features"]
            if feats.shape[0] == len(gal) and np.array_equal(data["gallery"], gal):
                return feats
        except Exception:
            pass
    parts = []
    with torch.inference_mode():
        for i in range(0, len(gal), chunk):
            f = encoder(torch.from_numpy(gal[i : i + chunk]))
            parts.append(torch.nn.functional.normalize(f, dim=1).float().numpy())
    feats = np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)
    if path is not None:
        with atomic_path(path) as tmp:
            save_file({"features": feats, "gallery": gal}, str(tmp))
    return feats


@HEADS.register(
    "geoclip", help="GeoCLIP's pretrained location encoder over its 100k GPS gallery (input: geoclip backbone features)"
)
class GeoCLIPHead(GeoHead):
    """GeoCLIP's pretrained head; ready without ``fit`` (weights from the ``geoclip`` wheel or a saved state).

    Parameters: ``gallery``: None (GeoCLIP's 100k GPS gallery), a CSV path with LAT/LON columns, or an
    (M, 2) array of degrees; ``cache``: keep the gallery features on disk; ``batch_size``: images per
    matrix product.
    """

    name = "geoclip"
    _fitted_attr = "gallery_features_"

    def __init__(
        self, gallery: str | os.PathLike[str] | NDArray[Any] | None = None, *, cache: bool = True, batch_size: int = 256
    ) -> None:
        self.gallery = gallery
        self.cache = cache
        self.batch_size = batch_size

    # -- loading -------------------------------------------------------------------------
    def _setup(
        self,
        loc_state: dict[str, Any] | None = None,
        logit_scale: float | None = None,
        gallery: NDArray[Any] | None = None,
    ) -> None:
        import torch

        if loc_state is None:
            loc_state = load_wheel_weights("location_encoder")
        if logit_scale is None:
            logit_scale = float(load_wheel_weights("logit_scale"))
        n_branches = len({k.split(".")[0] for k in loc_state})
        sigmas = [2.0 ** (4 * i) for i in range(n_branches)]  # GeoCLIP's 2^0, 2^4, 2^8 (informative: B is stored)
        enc = LocationEncoder(sigmas, seed=None)
        enc.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in loc_state.items()}, strict=True)
        self.encoder_ = enc.eval()
        self.weights_hash_ = weights_digest(enc.state_dict())
        self.logit_scale_ = float(logit_scale)
        if gallery is None:
            g = self.gallery
            if g is None:
                gallery = wheel_gallery()
            elif isinstance(g, (str, os.PathLike)):
                gallery = load_gallery_csv(Path(g))
            else:
                gallery = np.asarray(g, dtype=np.float64)
                if gallery.ndim != 2 or gallery.shape[1] != 2 or len(gallery) == 0:
                    raise InvalidInput(
                        f"gallery: expected (M, 2) latitude/longitude degrees, got shape {gallery.shape}"
                    )
                validate_latlon(gallery[:, 0], gallery[:, 1], what="gallery")
        gal32 = np.ascontiguousarray(gallery, dtype=np.float32)
        self.gallery_ = gal32
        self.gallery_features_ = gallery_features(enc, gal32, weights_hash=self.weights_hash_, cache=self.cache)
        self.n_features_in_ = int(self.gallery_features_.shape[1])

    def check_is_fitted(self) -> None:
        """The pretrained head loads its weights and gallery features on first use."""
        if not hasattr(self, "gallery_features_"):
            self._setup()

    def fit(self, X: Any = None, y: Any = None, **kwargs: Any) -> GeoCLIPHead:
        """Pretrained: loads the weights and the (cached) gallery features; ``X``/``y`` are not used for training."""
        self.check_is_fitted()
        if X is not None:
            check_embeddings(X, dim=self.n_features_in_)
        return self

    # -- prediction ----------------------------------------------------------------------
    def _probs(self, X: Any) -> Any:
        """Yield (start, probs (b, M) float32 torch) over batches of X."""
        import torch

        self.check_is_fitted()
        Xc = check_embeddings(X, dim=self.n_features_in_)
        gal = torch.from_numpy(self.gallery_features_)
        scale = torch.tensor(self.logit_scale_, dtype=torch.float32).exp()
        with torch.inference_mode():
            for i in range(0, len(Xc), max(1, int(self.batch_size))):
                img = torch.nn.functional.normalize(torch.from_numpy(Xc[i : i + self.batch_size]), dim=1)
                yield i, (scale * (img @ gal.T)).softmax(dim=-1)

    def predict_distribution(self, X: Any) -> Distribution:
        """Probabilities over the GPS gallery: prob (N, M), support = gallery lat/lon degrees."""
        probs = np.concatenate([p.numpy() for _, p in self._probs(X)], axis=0)
        return Distribution(
            lat=self.gallery_[:, 0].astype(np.float64), lon=self.gallery_[:, 1].astype(np.float64), prob=probs
        )

    def predict_topk_indices(self, X: Any, k: int = 5) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """(N, k) gallery indices and their probabilities, best first (torch.topk, as GeoCLIP)."""
        import torch

        idx, val = [], []
        for _, p in self._probs(X):
            kk = max(1, min(int(k), p.shape[1]))
            t = torch.topk(p, kk, dim=1)
            idx.append(t.indices.numpy())
            val.append(t.values.numpy())
        return np.concatenate(idx, axis=0), np.concatenate(val, axis=0)

    def predict(self, X: Any) -> NDArray[np.float64]:
        """Most probable gallery point per input: (N, 2) latitude/longitude degrees."""
        idx, _ = self.predict_topk_indices(X, 1)
        return self.gallery_[idx[:, 0]].astype(np.float64)

    def predict_topk(self, X: Any, k: int = 5) -> list[list[Candidate]]:
        """The k most probable gallery points per input, best first."""
        idx, val = self.predict_topk_indices(X, k)
        return [
            [
                Candidate(lat=float(self.gallery_[j, 0]), lon=float(self.gallery_[j, 1]), probability=float(p))
                for j, p in zip(row, prow)
            ]
            for row, prow in zip(idx, val)
        ]

    # -- state ---------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """Config + tensors (location-encoder weights, logit scale, gallery): a bundle needs no wheel."""
        self.check_is_fitted()
        tensors = {f"loc.{k}": v.detach().cpu().numpy() for k, v in self.encoder_.state_dict().items()}
        tensors["logit_scale"] = np.asarray(self.logit_scale_, dtype=np.float32)
        tensors["gallery"] = self.gallery_
        config = {
            "name": self.name,
            "cache": bool(self.cache),
            "batch_size": int(self.batch_size),
            "gallery": None if self.gallery is None else "stored",
            "weights_hash": self.weights_hash_,
        }
        return config, tensors

    @classmethod
    def from_state(
        cls, config: dict[str, Any], tensors: dict[str, NDArray[Any]], *, partition: Any = None
    ) -> GeoCLIPHead:
        for key in ("logit_scale", "gallery"):
            if key not in tensors:
                raise InvalidInput(f"geoclip head state lacks tensor {key!r}; re-save the bundle")
        head = cls(gallery=None, cache=bool(config.get("cache", True)), batch_size=int(config.get("batch_size", 256)))
        loc = {k[4:]: v for k, v in tensors.items() if k.startswith("loc.")}
        head._setup(loc_state=loc, logit_scale=float(np.asarray(tensors["logit_scale"])), gallery=tensors["gallery"])
        head.gallery = None if config.get("gallery") is None else tensors["gallery"]
        return head


def load_geoclip_head(
    gallery: str | os.PathLike[str] | NDArray[Any] | None = None, *, cache: bool = True
) -> GeoCLIPHead:
    """GeoCLIP's pretrained head, ready to predict (gallery features loaded from or written to the cache)."""
    return GeoCLIPHead(gallery=gallery, cache=cache).fit()
