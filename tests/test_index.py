"""RetrievalIndex: exact search agrees with numpy; approximate search recalls the exact neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from geoscout.errors import InvalidInput, NotFittedError
from geoscout.index import RetrievalIndex, normalize_rows, recall_at_k


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(8, n // 200), dim))
    x = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.normal(size=(n, dim))
    return normalize_rows(x)


def test_flat_matches_numpy_bruteforce():
    x = _clustered(2000, 64)
    q = _clustered(20, 64, seed=1)
    idx = RetrievalIndex().fit(x)
    assert idx.kind_ == "flat" and idx.ntotal == 2000
    sims, ids = idx.search(q, 5)
    ref = np.argsort(-(q @ x.T), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, ref)
    np.testing.assert_allclose(sims, np.take_along_axis(q @ x.T, ref, axis=1), rtol=1e-5, atol=1e-5)


def test_auto_switches_to_ivfpq_and_keeps_recall(tmp_path):
    x = _clustered(6000, 32)
    q = x[:100] + 0.05 * np.random.default_rng(3).normal(size=(100, 32)).astype(np.float32)
    approx = RetrievalIndex(exact_max=2000, nprobe=8, threads=1).fit(x)
    assert approx.kind_ == "ivfpq"
    exact = RetrievalIndex(kind="flat").fit(x)
    _, a = approx.search(q, 10)
    _, e = exact.search(q, 10)
    r = recall_at_k(a, e, 10)
    assert r["nn_in_topk"] >= 0.9
    assert approx.memory_bytes() < 0.5 * exact.memory_bytes()
    approx.save(tmp_path / "gallery")
    again = RetrievalIndex.load(tmp_path / "gallery")
    np.testing.assert_array_equal(again.search(q, 10)[1], a)


def test_errors_are_clear():
    with pytest.raises(NotFittedError):
        RetrievalIndex().search(np.ones((1, 4)), 3)
    idx = RetrievalIndex().fit(np.eye(4))
    with pytest.raises(InvalidInput, match="same backbone"):
        idx.search(np.ones((1, 5)), 3)
    with pytest.raises(InvalidInput):
        RetrievalIndex(kind="bogus").fit(np.eye(4))
