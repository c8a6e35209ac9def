"""Nearest-neighbour search over image embeddings (faiss), exact or approximate by size.

Vectors are L2-normalised and compared by inner product (= cosine similarity). Small
galleries use an exact ``IndexFlatIP``; above ``exact_max`` entries the index switches to
IVF-PQ (inverted lists + product quantisation), whose memory per entry is
``pq_bytes + 8`` bytes instead of ``4 * dim``. The choice is automatic and overridable.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._io import atomic_path, atomic_write_json
from .errors import InvalidInput, NotFittedError
from .geo import l2_normalize

__all__ = ["RetrievalIndex", "normalize_rows", "recall_at_k"]


def normalize_rows(x: Any) -> NDArray[np.float32]:
    """Float32 copy of ``x`` with unit-length rows (zero rows stay zero)."""
    a = np.array(x, dtype=np.float32, copy=True)
    if a.ndim != 2:
        raise InvalidInput(f"expected an (N, D) matrix of vectors, got shape {a.shape}")
    return l2_normalize(a)


def recall_at_k(approx_ids: NDArray[np.int64], exact_ids: NDArray[np.int64], k: int = 10) -> dict[str, float]:
    """Two standard recalls of an approximate search against exact search.

    ``nn_in_topk``: share of queries whose true nearest neighbour is among the k returned
    (faiss's "1-recall@k"); ``overlap``: mean share of the true top-k that was returned.
    """
    a, e = np.asarray(approx_ids)[:, :k], np.asarray(exact_ids)
    nn = float(np.mean([e[i, 0] in set(a[i]) for i in range(len(a))]))
    ov = float(np.mean([len(set(a[i]) & set(e[i, :k])) / k for i in range(len(a))]))
    return {"nn_in_topk": nn, "overlap": ov}


class RetrievalIndex:
    """Inner-product search over unit vectors, scikit-learn style (``fit`` then ``search``).

    ``kind``: ``"auto"`` (flat up to ``exact_max`` entries, IVF-PQ above), ``"flat"``,
    ``"ivfpq"`` or ``"hnsw"``. ``nlist`` defaults to ~4*sqrt(N) inverted lists; ``pq_bytes``
    to dim/4 bytes per vector (capped at 64); ``nprobe`` lists are visited per query (128: recall@10
    0.935 at 3.2 ms/query on a 10M-entry synthetic gallery on 2 cores, vs 0.775 at 32; see
    ``benchmarks/scale.py``). Raise it for recall, lower it for speed.
    """

    index_: Any  # the fitted faiss index

    def __init__(
        self,
        kind: str = "auto",
        *,
        exact_max: int = 200_000,
        nlist: int | None = None,
        pq_bytes: int | None = None,
        nprobe: int = 128,
        hnsw_m: int = 32,
        ef_search: int = 128,
        train_size: int = 100_000,
        seed: int = 0,
        threads: int | None = None,
    ) -> None:
        self.kind = kind
        self.exact_max = exact_max
        self.nlist = nlist
        self.pq_bytes = pq_bytes
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.train_size = train_size
        self.seed = seed
        self.threads = threads

    # ------------------------------------------------------------------ build
    def _resolve_kind(self, n: int) -> str:
        if self.kind not in ("auto", "flat", "ivfpq", "hnsw"):
            raise InvalidInput(f"index kind must be auto, flat, ivfpq or hnsw, got {self.kind!r}")
        if self.kind == "auto":
            return "flat" if n <= self.exact_max else "ivfpq"
        return self.kind

    def _pq_m(self, dim: int) -> int:
        m = self.pq_bytes or min(64, max(4, dim // 4))
        while dim % m:  # faiss needs dim divisible by the number of sub-quantisers
            m -= 1
        return m

    def fit(self, vectors: Any, *, n_total: int | None = None) -> RetrievalIndex:
        """Build the index on ``vectors`` (N, D); they are L2-normalised here.

        ``n_total`` lets a caller that will :meth:`add` more chunks later size the index
        for the final count (the first chunk then serves as the training sample).
        """
        import faiss

        if self.threads:
            faiss.omp_set_num_threads(int(self.threads))
        x = normalize_rows(vectors)
        n, dim = x.shape
        if n == 0:
            raise InvalidInput("cannot build a retrieval index from zero vectors")
        total = n_total or n
        kind = self._resolve_kind(total)
        index: Any
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.ef_search
        else:
            nlist = self.nlist or int(min(65536, max(16, 4 * math.sqrt(total))))
            nlist = min(nlist, max(1, n // 39))  # faiss wants >= 39 training points per list
            m = self._pq_m(dim)
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(self.seed)
            sample = x if n <= self.train_size else x[rng.choice(n, self.train_size, replace=False)]
            index.train(sample)
            index.nprobe = min(self.nprobe, nlist)
        index.add(x)
        self.index_ = index
        self.kind_ = kind
        self.dim_ = dim
        return self

    def add(self, vectors: Any) -> RetrievalIndex:
        """Append more vectors (ids continue from the current size)."""
        self._check()
        x = normalize_rows(vectors)
        if x.shape[1] != self.dim_:
            raise InvalidInput(f"vectors have {x.shape[1]} dims, the index has {self.dim_}")
        self.index_.add(x)
        return self

    # ------------------------------------------------------------------ query
    def _check(self) -> None:
        if not hasattr(self, "index_"):
            raise NotFittedError("RetrievalIndex is empty: call fit(vectors) or RetrievalIndex.load(path) first")

    def search(self, queries: Any, k: int = 10) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-``k`` (similarities, ids) per query row; ids are -1 where fewer than k exist."""
        self._check()
        q = normalize_rows(np.atleast_2d(queries))
        if q.shape[1] != self.dim_:
            raise InvalidInput(f"queries have {q.shape[1]} dims, the index has {self.dim_}; use the same backbone")
        k = max(1, min(int(k), self.ntotal))
        return self.index_.search(q, k)

    @property
    def ntotal(self) -> int:
        self._check()
        return int(self.index_.ntotal)

    def memory_bytes(self) -> int:
        """Bytes the index holds in memory (measured by serialising it)."""
        import faiss

        self._check()
        return int(faiss.serialize_index(self.index_).nbytes)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``<path>.faiss`` + ``<path>.json`` atomically (faiss's own format: no pickle)."""
        import faiss

        self._check()
        base = Path(path)
        with atomic_path(base.with_suffix(".faiss")) as tmp:
            faiss.write_index(self.index_, str(tmp))
        params = {
            k: getattr(self, k)
            for k in (
                "kind",
                "exact_max",
                "nlist",
                "pq_bytes",
                "nprobe",
                "hnsw_m",
                "ef_search",
                "train_size",
                "seed",
                "threads",
            )
        }
        atomic_write_json(base.with_suffix(".json"), {"params": params, "kind_": self.kind_, "dim_": self.dim_})
        return base

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RetrievalIndex:
        import faiss

        base = Path(path)
        meta_path, idx_path = base.with_suffix(".json"), base.with_suffix(".faiss")
        if not meta_path.is_file() or not idx_path.is_file():
            raise InvalidInput(f"{base}: expected {idx_path.name} and {meta_path.name}; rebuild the index")
        meta = json.loads(meta_path.read_text())
        obj = cls(**meta["params"])
        obj.index_ = faiss.read_index(str(idx_path))
        obj.kind_, obj.dim_ = meta["kind_"], int(meta["dim_"])
        if hasattr(obj.index_, "nprobe"):
            obj.index_.nprobe = min(obj.nprobe, obj.index_.nlist)
        return obj
