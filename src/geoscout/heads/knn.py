"""k-nearest-neighbour retrieval head: place a photo where its most similar training photos are.

Training embeddings are L2-normalised and searched exactly with faiss ``IndexFlatIP``
(cosine similarity). The distribution over a query's ``k`` neighbours is
``softmax(similarity / temperature)``; neighbours at the same coordinates (views of one
panorama) pool their probability. ``k = 1`` is plain 1-NN retrieval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidInput
from ..geo import l2_normalize
from ._registry import HEADS
from .base import Distribution, GeoHead, check_embeddings, check_targets

__all__ = ["KNNHead"]


def _normalise(X: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.ascontiguousarray(l2_normalize(X), dtype=np.float32)


@HEADS.register("knn", help="k-NN retrieval over training embeddings (faiss, cosine); k=1 is 1-NN")
class KNNHead(GeoHead):
    """Retrieval head. ``k`` neighbours, ``temperature`` of the softmax over their cosine similarities."""

    name = "knn"

    def __init__(self, *, k: int = 10, temperature: float = 0.05) -> None:
        self.k = k
        self.temperature = temperature

    def fit(self, X: Any, y: Any, **kwargs: Any) -> KNNHead:
        """Index the training embeddings ``X`` (N, D) with their lat/lon ``y`` (N, 2); other arguments are ignored."""
        if int(self.k) < 1:
            raise InvalidInput(f"k must be >= 1, got {self.k}")
        if not float(self.temperature) > 0:
            raise InvalidInput(f"temperature must be > 0, got {self.temperature}")
        X = check_embeddings(X)
        y = check_targets(y, X.shape[0])
        # stored as float16 (like bundles' retrieval data) so a reloaded head predicts identically
        self.vectors_ = _normalise(X).astype(np.float16)
        self.latlon_ = y.astype(np.float64)
        self._index: Any = None
        self.n_features_in_ = X.shape[1]
        return self

    def _get_index(self) -> Any:
        if getattr(self, "_index", None) is None:
            import faiss

            index = faiss.IndexFlatIP(self.vectors_.shape[1])
            index.add(self.vectors_.astype(np.float32))
            self._index = index
        return self._index

    def kneighbors(self, X: Any, k: int | None = None) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """(similarities, indices) of the ``k`` nearest training rows per query, most similar first."""
        self.check_is_fitted()
        Xq = _normalise(check_embeddings(X, dim=self.n_features_in_))
        k = min(int(k or self.k), self.vectors_.shape[0])
        sim, idx = self._get_index().search(Xq, k)
        return sim, idx.astype(np.int64)

    def predict_distribution(self, X: Any) -> Distribution:
        """Per query, its neighbours' coordinates (N, k) with softmax(similarity / temperature) probabilities."""
        sim, idx = self.kneighbors(X)
        z = (sim.astype(np.float64) - sim.max(axis=1, keepdims=True)) / float(self.temperature)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        lat = self.latlon_[idx, 0]
        lon = self.latlon_[idx, 1]
        # pool neighbours sharing coordinates onto their first (most similar) occurrence
        for j in range(1, idx.shape[1]):
            same = (lat[:, :j] == lat[:, j : j + 1]) & (lon[:, :j] == lon[:, j : j + 1])
            dup = same.any(axis=1)
            if dup.any():
                first = same.argmax(axis=1)
                rows = np.nonzero(dup)[0]
                p[rows, first[rows]] += p[rows, j]
                p[rows, j] = 0.0
        return Distribution(lat=lat, lon=lon, prob=p, cell=None)

    def get_state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        self.check_is_fitted()
        config = {"name": self.name, "params": self.get_params(), "n_features_in": int(self.n_features_in_)}
        return config, {"vectors": np.ascontiguousarray(self.vectors_), "latlon": np.ascontiguousarray(self.latlon_)}

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, NDArray[Any]], *, partition: Any = None) -> KNNHead:
        if config.get("name") != cls.name:
            raise InvalidInput(f"head config is for {config.get('name')!r}, not {cls.name!r}")
        try:
            head = cls(**{k: v for k, v in config.get("params", {}).items() if k in cls._param_names()})
            head.vectors_ = np.asarray(tensors["vectors"], dtype=np.float16)
            head.latlon_ = np.asarray(tensors["latlon"], dtype=np.float64)
            d = int(config["n_features_in"])
        except KeyError as exc:
            raise InvalidInput(f"knn head state lacks {exc}") from None
        if head.vectors_.ndim != 2 or head.vectors_.shape[1] != d or head.latlon_.shape != (head.vectors_.shape[0], 2):
            raise InvalidInput("knn head state is inconsistent: vectors / latlon shapes do not match")
        head._index = None
        head.n_features_in_ = d
        return head
