"""GeoCLIP-style contrastive head, trained by us on any backbone's embeddings.

Two towers meet in a shared ``embed_dim`` space: an image MLP on the (standardised) backbone
embeddings and GeoCLIP's location encoder (Equal Earth projection -> random Fourier features at
several sigmas -> summed MLP branches, :class:`geoscout.geoclip.LocationEncoder`). Training is
InfoNCE with a learnable temperature: each image must pick its own GPS among the batch's GPS plus
a queue of GPS negatives (the coordinates of recent batches, jittered with Gaussian noise of
``gps_noise_km`` as GeoCLIP augments its GPS). Rows at the same place as the anchor are masked, so
the views of one panorama are never each other's negatives. Prediction is a softmax over a GPS
gallery: the deduplicated training coordinates, or a gallery you pass.

``warm_start=True`` starts the location tower from GeoCLIP's pretrained weights (the geoclip wheel;
fixes the tower to GeoCLIP's sizes: sigmas 2^0/2^4/2^8, 3 x 1024 hidden, 512 out).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidInput
from ..geo import validate_latlon
from ._registry import HEADS
from ._torch import column_mean_std, fit_head_network, mean_geoguessr, split_train_val, standardized_rows, torch_threads
from .base import Distribution, GeoHead, TrainingOptions, check_embeddings, check_targets

__all__ = ["ContrastiveHead"]

_KM_PER_DEG = 111.32


def _gallery_array(gallery: Any) -> NDArray[np.float64]:
    if isinstance(gallery, (str, os.PathLike)):
        from ..geoclip._wheel import load_gallery_csv

        return load_gallery_csv(Path(gallery))
    arr = np.asarray(gallery, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise InvalidInput(f"gallery: expected (M, 2) latitude/longitude degrees, got shape {arr.shape}")
    validate_latlon(arr[:, 0], arr[:, 1], what="gallery")
    return arr


def _build(d_in: int, image_hidden: int, loc_config: dict[str, Any], logit_scale: float) -> Any:
    import torch
    from torch import nn

    from ..geoclip.location_encoder import LocationEncoder

    class ContrastiveNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            out = int(loc_config["out_dim"])
            self.image = nn.Sequential(nn.Linear(d_in, image_hidden), nn.ReLU(), nn.Linear(image_hidden, out))
            self.location = LocationEncoder(
                loc_config["sigmas"],
                rff_dim=int(loc_config["rff_dim"]),
                hidden=int(loc_config["hidden"]),
                depth=int(loc_config["depth"]),
                out_dim=out,
                seed=None,
            )
            self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))

        def image_features(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.image(x), dim=1)

        def location_features(self, g: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.location(g), dim=1)

    return ContrastiveNet()


class _GpsQueue:
    """GeoCLIP's queue of GPS negatives: the coordinates of recent batches (at first random training coordinates),
    jittered by Gaussian noise of ``noise_deg`` degrees, drawn from ``gen``."""

    def __init__(self, yt: Any, size: int, noise_deg: float, gen: Any) -> None:
        import torch

        self.size, self.noise_deg, self.gen = size, noise_deg, gen
        start = torch.randint(0, len(yt), (size,), generator=gen)
        self.gps = yt[start].clone()
        self.ptr = 0

    def push(self, gps: Any) -> None:
        import torch

        if self.size == 0:
            return
        jitter = gps + self.noise_deg * torch.randn(gps.shape, generator=self.gen)
        jitter[:, 0] = jitter[:, 0].clamp(-90.0, 90.0)
        jitter[:, 1] = torch.remainder(jitter[:, 1] + 180.0, 360.0) - 180.0
        jitter = jitter[-self.size :]
        p, n = self.ptr, len(jitter)
        idx = (torch.arange(n) + p) % self.size
        self.gps[idx] = jitter
        self.ptr = (p + n) % self.size


def _infonce_loss(net: Any, x_batch: Any, yt: Any, queue: _GpsQueue) -> Any:
    """``loss(rows)``: InfoNCE of the rows' images against their own GPS among the batch's and the queue's (rows at
    the anchor's place are masked: positives, not negatives); the batch's GPS then join the queue."""
    import torch

    max_log_scale = float(np.log(100.0))

    def batch_loss(rows: NDArray[np.int64]) -> Any:
        gps = yt[rows]
        gps_all = torch.cat([gps, queue.gps], dim=0) if queue.size else gps
        img = net.image_features(x_batch(rows))
        loc = net.location_features(gps_all)
        scale = net.logit_scale.clamp(max=max_log_scale).exp()
        logits = scale * img @ loc.T
        same = torch.cdist(gps, gps_all) < 1e-4
        same[torch.arange(len(rows)), torch.arange(len(rows))] = False
        logits = logits.masked_fill(same, float("-inf"))
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(rows)))
        queue.push(gps.detach())
        return loss

    return batch_loss


@HEADS.register(
    "contrastive", help="GeoCLIP-style contrastive location encoder + GPS gallery, trained on your embeddings"
)
class ContrastiveHead(GeoHead):
    """Contrastive image/GPS head (GeoCLIP recipe) on backbone embeddings.

    Parameters: location tower ``sigmas`` / ``rff_dim`` / ``hidden`` / ``depth`` / ``embed_dim``
    (ignored with ``warm_start``); ``image_hidden`` width of the image MLP; ``queue_size`` GPS
    negatives; ``gps_noise_km`` jitter of queued GPS; ``temperature`` initial softmax temperature
    (learned, clamped to >= 0.01); ``gallery`` None (training coordinates) or (M, 2) / CSV path;
    ``options`` the :class:`~geoscout.heads.TrainingOptions` (AdamW, early stopping on the validation
    GeoGuessr score, seed, threads; by default 60 epochs with patience 8).
    """

    name = "contrastive"

    def __init__(
        self,
        *,
        sigmas: tuple[float, ...] | list[float] = (2.0**0, 2.0**4, 2.0**8),
        rff_dim: int = 128,
        hidden: int = 256,
        depth: int = 2,
        embed_dim: int = 256,
        image_hidden: int = 512,
        warm_start: bool = False,
        queue_size: int = 1024,
        gps_noise_km: float = 1.0,
        temperature: float = 0.07,
        gallery: Any = None,
        options: TrainingOptions = TrainingOptions(epochs=60, patience=8),
    ) -> None:
        self.sigmas = sigmas
        self.rff_dim = rff_dim
        self.hidden = hidden
        self.depth = depth
        self.embed_dim = embed_dim
        self.image_hidden = image_hidden
        self.warm_start = warm_start
        self.queue_size = queue_size
        self.gps_noise_km = gps_noise_km
        self.temperature = temperature
        self.gallery = gallery
        self.options = options

    # -- helpers -------------------------------------------------------------------------
    def _loc_config(self) -> dict[str, Any]:
        if self.warm_start:
            return {"sigmas": [1.0, 16.0, 256.0], "rff_dim": 256, "hidden": 1024, "depth": 3, "out_dim": 512}
        sig = [float(s) for s in self.sigmas]
        if not sig or any(s <= 0 for s in sig):
            raise InvalidInput(f"sigmas must be positive numbers, got {self.sigmas!r}")
        return {
            "sigmas": sig,
            "rff_dim": int(self.rff_dim),
            "hidden": int(self.hidden),
            "depth": int(self.depth),
            "out_dim": int(self.embed_dim),
        }

    def _encode_gallery(self, gallery: NDArray[np.float64], chunk: int = 8192) -> NDArray[np.float32]:
        import torch

        g = torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32))
        with torch.inference_mode():
            return np.concatenate(
                [self.net_.location_features(g[i : i + chunk]).numpy() for i in range(0, len(g), chunk)]
            ).astype(np.float32)

    def _probs(self, X: NDArray[np.float32], gal_feats: NDArray[np.float32]) -> NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            img = self.net_.image_features(torch.from_numpy((X - self.x_mean_) / self.x_std_))
            scale = self.net_.logit_scale.clamp(max=float(np.log(100.0))).exp()
            return (scale * img @ torch.from_numpy(gal_feats).T).softmax(dim=-1).numpy()

    # -- fit -----------------------------------------------------------------------------
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
    ) -> ContrastiveHead:
        """Fit on embeddings ``X`` (N, D) and ``y`` (N, 2) latitude/longitude degrees; ``partition``/``aux`` unused.

        Without ``X_val`` a ``val_fraction`` of locations (``groups``, default identical coordinates)
        is held out for early stopping. Returns ``self``.
        """
        import torch

        X = check_embeddings(X)
        y = check_targets(y, X.shape[0])
        if int(self.queue_size) < 0 or float(self.gps_noise_km) < 0 or not float(self.temperature) > 0:
            raise InvalidInput("queue_size and gps_noise_km must be >= 0 and temperature > 0")
        opts = self.options
        tr, X_val, y_val = split_train_val(X, y, X_val, y_val, groups, opts.val_fraction, opts.seed)
        ytr = y[tr]
        self.x_mean_, self.x_std_ = column_mean_std(X, tr)
        # the gallery: given, else the deduplicated training coordinates (all of y: no labels of X_val)
        gallery = _gallery_array(self.gallery) if self.gallery is not None else np.unique(np.round(y, 6), axis=0)
        self.gallery_ = gallery
        loc_cfg = self._loc_config()
        self.loc_config_ = loc_cfg

        with torch_threads(opts.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(opts.seed))
            net = _build(X.shape[1], int(self.image_hidden), loc_cfg, float(np.log(1.0 / float(self.temperature))))
            # the Fourier matrices are drawn from the seeded torch RNG here too (deterministic)
            if self.warm_start:
                from ..geoclip._wheel import load_wheel_weights

                net.location.load_state_dict(load_wheel_weights("location_encoder"), strict=True)
            self.net_ = net
            x_batch = standardized_rows(X, tr, self.x_mean_, self.x_std_)
            yt = torch.from_numpy(ytr.astype(np.float32))
            gen = torch.Generator().manual_seed(int(opts.seed) + 7)
            queue = _GpsQueue(yt, int(self.queue_size), float(self.gps_noise_km) / _KM_PER_DEG, gen)
            batch_loss = _infonce_loss(net, x_batch, yt, queue)

            val_fn = None
            if X_val is not None and len(X_val):
                Xv, yv = X_val, y_val

                def val_fn() -> float:
                    feats = self._encode_gallery(self.gallery_)
                    best = np.argmax(self._probs(Xv, feats), axis=1)
                    return mean_geoguessr(self.gallery_[best], yv)

            self.history_ = fit_head_network(self, net, batch_loss, len(tr), X.shape[1], val_fn, progress)
            self.gallery_features_ = self._encode_gallery(self.gallery_)
        return self

    # -- predict -------------------------------------------------------------------------
    def predict_distribution(self, X: Any) -> Distribution:
        """Probabilities over the GPS gallery: prob (N, M), support = gallery lat/lon degrees."""
        self.check_is_fitted()
        Xc = check_embeddings(X, dim=self.n_features_in_)
        probs = np.concatenate([self._probs(Xc[i : i + 1024], self.gallery_features_) for i in range(0, len(Xc), 1024)])
        return Distribution(lat=self.gallery_[:, 0], lon=self.gallery_[:, 1], prob=probs)

    # -- state ---------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """JSON config (params, tower sizes, history) + tensors (weights, standardisation, gallery)."""
        self.check_is_fitted()
        params = self.params_json()
        params["sigmas"] = [float(s) for s in params["sigmas"]]
        params["gallery"] = None if self.gallery is None else "stored"
        config = {
            "name": self.name,
            "params": params,
            "n_features_in": int(self.n_features_in_),
            "location_encoder": self.loc_config_,
            "image_hidden": int(self.image_hidden),
            "history": dict(getattr(self, "history_", {}).items()),
        }
        tensors = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        tensors.update({"x_mean": self.x_mean_, "x_std": self.x_std_, "gallery": self.gallery_})
        return config, tensors

    @classmethod
    def from_state(
        cls, config: dict[str, Any], tensors: dict[str, NDArray[Any]], *, partition: Any = None
    ) -> ContrastiveHead:
        """Rebuild a fitted head from :meth:`get_state` output (its gallery is its own: ``partition`` is unused)."""
        import torch

        for key in ("x_mean", "x_std", "gallery"):
            if key not in tensors:
                raise InvalidInput(f"contrastive head state lacks tensor {key!r}; re-save the bundle")
        params = cls._params_from_config(config)
        params["gallery"] = None
        head = cls(**params)
        net = _build(int(config["n_features_in"]), int(config["image_hidden"]), config["location_encoder"], 0.0)
        net.load_state_dict(
            {k[4:]: torch.as_tensor(np.asarray(v)) for k, v in tensors.items() if k.startswith("net.")}, strict=True
        )
        head.net_ = net.eval()
        head.loc_config_ = config["location_encoder"]
        head.x_mean_ = np.asarray(tensors["x_mean"], np.float32)
        head.x_std_ = np.asarray(tensors["x_std"], np.float32)
        head.gallery_ = np.asarray(tensors["gallery"], np.float64)
        if config.get("params", {}).get("gallery") is not None:
            head.gallery = head.gallery_
        head.history_ = config.get("history", {})
        head.n_features_in_ = int(config["n_features_in"])
        head.gallery_features_ = head._encode_gallery(head.gallery_)
        return head
