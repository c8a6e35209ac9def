"""The GeoCLIP-style contrastive head: learns where embeddings come from, honours the head contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from geoscout.errors import InvalidInput, NotFittedError
from geoscout.geo import haversine_km, spherical_mean
from geoscout.heads import create_head, head_from_state


def _synthetic(n: int, k: int = 12, d: int = 64, seed: int = 0):
    """k places on Earth; an embedding = its place's random direction + noise; GPS = place + ~20 km jitter."""
    rng = np.random.default_rng(seed)
    centers = np.c_[rng.uniform(-60, 70, k), rng.uniform(-180, 180, k)]
    dirs = rng.normal(size=(k, d))
    lab = rng.integers(0, k, n)
    X = (dirs[lab] + 0.6 * rng.normal(size=(n, d))).astype(np.float32)
    y = centers[lab] + rng.normal(scale=0.2, size=(n, 2))
    y[:, 0] = np.clip(y[:, 0], -89, 89)
    return X, y


SMALL = {
    "rff_dim": 64,
    "hidden": 128,
    "depth": 2,
    "embed_dim": 64,
    "image_hidden": 128,
    "queue_size": 256,
    "epochs": 6,
    "batch_size": 128,
    "patience": 3,
}


@pytest.fixture(scope="module")
def fitted():
    X, y = _synthetic(700)
    head = create_head("contrastive", **SMALL).fit(X[:600], y[:600])
    return head, X, y


def test_recovers_locations_far_better_than_the_prior(fitted):
    head, X, y = fitted
    Xte, yte = X[600:], y[600:]
    pred = head.predict(Xte)
    err = haversine_km(pred[:, 0], pred[:, 1], yte[:, 0], yte[:, 1])
    clat, clon = spherical_mean(y[:600, 0], y[:600, 1])
    prior = haversine_km(clat, clon, yte[:, 0], yte[:, 1])
    assert np.median(err) < 200, np.median(err)  # places are ~thousands of km apart
    assert np.median(err) < 0.1 * np.median(prior)
    assert head.history_["best_val_score"] is not None  # early stopping ran on a held-out validation split


def test_distribution_topk_and_state_roundtrip(fitted):
    head, X, _ = fitted
    dist = head.predict_distribution(X[600:605])
    assert dist.prob.shape == (5, len(head.gallery_))
    np.testing.assert_allclose(dist.prob.sum(axis=1), 1, atol=1e-5)
    top = head.predict_topk(X[600:605], 3)
    assert [len(t) for t in top] == [3] * 5
    assert all(t[0].probability >= t[1].probability >= t[2].probability for t in top)
    cfg, tensors = head.get_state()
    json.dumps(cfg)
    again = head_from_state(cfg, {k: np.array(v) for k, v in tensors.items()})
    np.testing.assert_allclose(again.predict_distribution(X[600:605]).prob, dist.prob, atol=1e-6)


def test_seeded_and_reproducible():
    X, y = _synthetic(120, seed=3)
    kw = dict(SMALL, epochs=2, val_fraction=0.0)
    a = create_head("contrastive", **kw).fit(X, y)
    b = create_head("contrastive", **kw).fit(X, y)
    np.testing.assert_array_equal(a.predict_distribution(X[:4]).prob, b.predict_distribution(X[:4]).prob)


def test_errors_and_gallery_option(tmp_path):
    head = create_head("contrastive", **SMALL)
    with pytest.raises(NotFittedError):
        head.predict(np.zeros((1, 64), np.float32))
    X, y = _synthetic(80, seed=5)
    with pytest.raises(InvalidInput, match="targets"):
        head.fit(X, y[:10])
    bad = y.copy()
    bad[3, 0] = 95
    with pytest.raises(InvalidInput):
        head.fit(X, bad)
    gal = np.array([[45.8, 15.97], [-33.9, 151.2], [40.7, -74.0]])
    h = create_head("contrastive", **dict(SMALL, epochs=2, gallery=gal)).fit(X, y)
    assert h.predict_distribution(X[:2]).prob.shape == (2, 3)
    with pytest.raises(InvalidInput, match="64"):
        h.predict(np.zeros((1, 10), np.float32))


def test_warm_start_loads_geoclip_location_encoder():
    pytest.importorskip("geoscout.geoclip")
    from geoscout.geoclip._wheel import load_wheel_weights

    try:
        ref = load_wheel_weights("location_encoder")
    except Exception:
        pytest.skip("geoclip wheel not installed")
    X, y = _synthetic(40, seed=2)
    h = create_head(
        "contrastive",
        warm_start=True,
        epochs=1,
        batch_size=40,
        queue_size=16,
        val_fraction=0.0,
        lr=0.0,
        weight_decay=0.0,
    ).fit(X, y)
    sd = h.net_.location.state_dict()
    assert set(sd) == set(ref)
    np.testing.assert_array_equal(sd["LocEnc2.capsule.0.b"].numpy(), ref["LocEnc2.capsule.0.b"].numpy())
    np.testing.assert_allclose(sd["LocEnc0.head.0.weight"].numpy(), ref["LocEnc0.head.0.weight"].numpy())


@pytest.mark.slow
def test_real_photos_beat_the_prior(shared_data):
    """Real EfficientNet-Lite0 embeddings of ../shared/data/streetview-world: the head's guesses score
    better than always guessing the training set's centre."""
    import pandas as pd

    from geoscout.embeddings import embed_images
    from geoscout.geo import geoguessr_score

    root = shared_data("streetview-world")
    frame = pd.read_csv(root / "manifest.csv")
    X, failed = embed_images([root / p for p in frame["path"]], "effnet-lite0", batch_size=32)
    ok = np.array([i not in failed for i in range(len(frame))])
    X, y = X[ok], frame[["lat", "lon"]].to_numpy()[ok]
    test = np.arange(len(X)) % 4 == 0
    head = create_head("contrastive", epochs=15, patience=4, queue_size=256, batch_size=64, seed=0)
    head.fit(X[~test], y[~test])
    pred = head.predict(X[test])
    ours = geoguessr_score(haversine_km(pred[:, 0], pred[:, 1], y[test, 0], y[test, 1])).mean()
    clat, clon = spherical_mean(y[~test, 0], y[~test, 1])
    prior = geoguessr_score(haversine_km(clat, clon, y[test, 0], y[test, 1])).mean()
    assert ours > prior + 300, (ours, prior)
