"""Heads: label smoothing against hand-computed targets, fit/predict on separable data,
reproducibility, NotFittedError, state round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoscout.errors import InvalidInput, NotFittedError
from geoscout.geo import haversine_km, spherical_mean
from geoscout.heads import create_head, head_from_state, list_heads
from geoscout.heads.classifier import haversine_smoothing
from geoscout.heads.hybrid import apply_offset_km, offset_east_north_km

KM_PER_DEG = 6371.0 * math.pi / 180.0  # 111.19492664455873 km per degree of a great circle

OUR_HEADS = ("classifier", "hybrid", "multitask", "knn")
FAST = {"epochs": 8, "hidden": 64, "batch_size": 128, "seed": 3}
CLIMATES = np.array(["Cfb", "BWh", "Af", "Dfc", "Aw"], dtype=object)


def _params(name: str) -> dict:
    return {} if name == "knn" else dict(FAST)


@pytest.fixture(scope="module")
def separable():
    """Five well-separated places; embeddings are noisy copies of a per-place prototype."""
    rng = np.random.default_rng(0)
    places = np.array([[45.5, 16.0], [40.0, -100.0], [-30.0, 140.0], [60.0, 90.0], [0.0, 30.0]])
    n = 900
    lab = rng.integers(0, len(places), n)
    y = places[lab] + rng.normal(0.0, 0.5, (n, 2))
    proto = rng.normal(0.0, 1.0, (len(places), 32))
    X = (proto[lab] + rng.normal(0.0, 0.8, (n, 32))).astype(np.float32)
    aux = {
        "climate": CLIMATES[lab],
        "elevation_m": np.array([150.0, 1200.0, 50.0, 400.0, 900.0])[lab] + rng.normal(0, 20, n),
        "pop_density": np.array([80.0, 5.0, 30.0, 1.0, 200.0])[lab] * rng.uniform(0.5, 1.5, n),
        "month": rng.integers(1, 13, n).astype(float),
    }
    tr, te = np.arange(700), np.arange(700, n)
    return X, y, lab, aux, tr, te


@pytest.fixture(scope="module")
def partition(separable):
    from geoscout.cells import create_partition

    X, y, lab, aux, tr, te = separable
    return create_partition("grid:10").fit(y[tr, 0], y[tr, 1])


def _fit(name, separable, partition, **extra):
    X, y, lab, aux, tr, te = separable
    head = create_head(name, **{**_params(name), **extra})
    kw = {"partition": partition}
    if name == "multitask":
        kw["aux"] = {k: v[tr] for k, v in aux.items()}
    return head.fit(X[tr], y[tr], **kw)


# ------------------------------------------------------------------ label smoothing


def test_smoothing_matches_hand_computed_case():
    # three centroids on the equator at lon 0, 1 and 3 degrees; true point at (0, 0.5)
    cent = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    d = np.array([0.5, 0.5, 2.5]) * KM_PER_DEG  # 55.597, 55.597, 277.987 km
    got = haversine_smoothing([0.0], [0.5], cent, 75.0)
    w = np.exp(-(d - d.min()) / 75.0)  # = [1, 1, exp(-222.390/75) = 0.051550]
    assert w[2] == pytest.approx(0.0515503, rel=1e-5)
    np.testing.assert_allclose(got[0], w / w.sum(), rtol=1e-9)
    np.testing.assert_allclose(got[0], [0.48743627, 0.48743627, 0.02512747], rtol=1e-6)
    # a point on a centroid: the nearest cell gets the most, decaying with distance
    got = haversine_smoothing([0.0], [0.0], cent, 75.0)[0]
    expect = np.exp(-np.array([0.0, 1.0, 3.0]) * KM_PER_DEG / 75.0)
    np.testing.assert_allclose(got, expect / expect.sum(), rtol=1e-9)
    assert got.sum() == pytest.approx(1.0)


def test_tau_zero_is_one_hot():
    cent = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    got = haversine_smoothing([0.0, 0.0], [0.9, 2.9], cent, 0.0)
    np.testing.assert_array_equal(got, [[0, 1, 0], [0, 0, 1]])
    got = haversine_smoothing([0.0, 0.0], [0.9, 2.9], cent, 0.0, labels=[0, 1])  # the true cells win
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 1, 0]])
    with pytest.raises(InvalidInput):
        haversine_smoothing([0.0], [0.0], cent, -1.0)


def test_smoothing_large_tau_tends_to_uniform_and_small_tau_to_one_hot():
    cent = np.array([[10.0, 10.0], [11.0, 12.0], [-20.0, 50.0]])
    assert np.ptp(haversine_smoothing([10.2], [10.5], cent, 1e7)[0]) < 1e-3
    np.testing.assert_allclose(haversine_smoothing([10.2], [10.5], cent, 1.0)[0], [1, 0, 0], atol=1e-12)


def test_offset_frame_round_trip():
    rng = np.random.default_rng(1)
    clat, clon = rng.uniform(-70, 70, 200), rng.uniform(-180, 180, 200)
    lat = clat + rng.normal(0, 2, 200)
    lon = clon + rng.normal(0, 2, 200)
    off = offset_east_north_km(lat, lon, clat, clon)
    # the offset length is the great-circle distance; east is positive towards larger longitude nearby
    np.testing.assert_allclose(np.hypot(off[:, 0], off[:, 1]), haversine_km(lat, lon, clat, clon), rtol=1e-9)
    back_lat, back_lon = apply_offset_km(clat, clon, off[:, 0], off[:, 1])
    assert haversine_km(back_lat, back_lon, lat, lon).max() < 1e-6
    e = offset_east_north_km([0.0], [1.0], [0.0], [0.0])[0]
    np.testing.assert_allclose(e, [KM_PER_DEG, 0.0], atol=1e-9)


# ------------------------------------------------------------------ heads on separable data


def test_registry_lists_our_heads():
    assert set(OUR_HEADS) <= set(list_heads())


@pytest.mark.parametrize("name", OUR_HEADS)
def test_head_beats_the_prior_on_separable_data(name, separable, partition):
    X, y, lab, aux, tr, te = separable
    head = _fit(name, separable, partition)
    pred = head.predict(X[te])
    assert pred.shape == (len(te), 2)
    err = haversine_km(pred[:, 0], pred[:, 1], y[te, 0], y[te, 1])
    clat, clon = spherical_mean(y[tr, 0], y[tr, 1])
    prior = haversine_km(clat, clon, y[te, 0], y[te, 1])
    assert np.median(err) < 400 < np.median(prior)
    # the distribution is normalised and top-k is sorted
    dist = head.predict_distribution(X[te[:7]])
    np.testing.assert_allclose(dist.prob.sum(axis=1), 1.0, atol=1e-9)
    top = head.predict_topk(X[te[:7]], k=3)
    assert len(top) == 7 and all(1 <= len(c) <= 3 for c in top)
    for cands in top:
        probs = [c.probability for c in cands]
        assert probs == sorted(probs, reverse=True)
    assert (top[0][0].lat, top[0][0].lon) == pytest.approx(tuple(head.predict(X[te[:1]])[0]))


@pytest.mark.parametrize("name", OUR_HEADS)
def test_predict_before_fit_raises(name, separable):
    X = separable[0]
    head = create_head(name)
    for call in (head.predict, head.predict_distribution, lambda x: head.predict_topk(x, 3)):
        with pytest.raises(NotFittedError, match="not fitted"):
            call(X[:2])
    with pytest.raises(NotFittedError):
        head.get_state()


@pytest.mark.parametrize("name", OUR_HEADS)
def test_state_round_trip_gives_identical_predictions(name, separable, partition):
    import json

    X, y, lab, aux, tr, te = separable
    head = _fit(name, separable, partition)
    config, tensors = head.get_state()
    config = json.loads(json.dumps(config))  # must be JSON-able
    assert config["name"] == name
    back = head_from_state(config, {k: np.array(v) for k, v in tensors.items()}, partition=partition)
    a, b = head.predict_distribution(X[te]), back.predict_distribution(X[te])
    np.testing.assert_array_equal(a.prob, b.prob)
    np.testing.assert_array_equal(a.lat, b.lat)
    np.testing.assert_array_equal(head.predict(X[te]), back.predict(X[te]))
    with pytest.raises(InvalidInput, match="expected 32-dimensional"):
        back.predict(X[te, :16])


@pytest.mark.parametrize("name", ("classifier", "hybrid", "multitask"))
def test_same_seed_same_weights(name, separable, partition):
    a = _fit(name, separable, partition).get_state()[1]
    b = _fit(name, separable, partition).get_state()[1]
    c = _fit(name, separable, partition, seed=99).get_state()[1]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert any(not np.array_equal(a[k], c[k]) for k in a if k.startswith("net."))


def test_early_stopping_keeps_the_best_epoch(separable, partition):
    X, y, lab, aux, tr, te = separable
    head = create_head("classifier", epochs=12, hidden=64, patience=2, seed=0)
    head.fit(X[tr], y[tr], partition=partition, X_val=X[te], y_val=y[te])
    h = head.history_
    assert h["best_val_score"] == max(h["val_score"])
    assert h["epochs_run"] <= 12 and h["n_val"] == len(te)
    # the restored weights are the best epoch's: re-scoring the validation set reproduces it
    p = head.predict(X[te])
    score = np.mean(5000 * np.exp(-haversine_km(p[:, 0], p[:, 1], y[te, 0], y[te, 1]) / 1492.7))
    assert score == pytest.approx(h["best_val_score"], rel=1e-9)


def test_automatic_validation_split_is_grouped(separable, partition):
    X, y, lab, aux, tr, te = separable
    head = create_head("classifier", epochs=2, hidden=0, val_fraction=0.2, seed=0)
    head.fit(X[tr], y[tr], partition=partition)
    assert 0 < head.history_["n_val"] < len(tr) and head.history_["n_train"] + head.history_["n_val"] == len(tr)
    # groups keep all rows of a group together: with 5 groups (< 10) no split is made
    head.fit(X[tr], y[tr], partition=partition, groups=lab[tr])
    assert head.history_["n_val"] == 0


def test_class_balanced_and_linear_variants(separable, partition):
    X, y, lab, aux, tr, te = separable
    for kw in ({"class_balanced": True}, {"hidden": 0}, {"tau": 0.0}):
        head = _fit("classifier", separable, partition, **kw)
        err = haversine_km(*head.predict(X[te]).T, y[te, 0], y[te, 1])
        assert np.median(err) < 400, kw


def test_hybrid_offsets_move_predictions_towards_the_points(partition):
    """Each place lies off its cell centre; the hybrid head learns the offset, the classifier cannot."""
    from geoscout.cells import create_partition

    rng = np.random.default_rng(5)
    places = np.array([[44.0, 12.0], [33.0, -97.0], [-26.0, 133.0]])
    n = 600
    lab = rng.integers(0, 3, n)
    y = places[lab] + rng.normal(0, 0.05, (n, 2))
    X = (rng.normal(0, 1, (3, 16))[lab] + rng.normal(0, 0.3, (n, 16))).astype(np.float32)
    part = create_partition("grid:30").fit(y[:, 0], y[:, 1])
    kw = {"epochs": 25, "hidden": 32, "seed": 0, "val_fraction": 0.0}
    cls = create_head("classifier", **kw).fit(X[:500], y[:500], partition=part)
    hyb = create_head("hybrid", **kw).fit(X[:500], y[:500], partition=part)
    e_cls = np.median(haversine_km(*cls.predict(X[500:]).T, y[500:, 0], y[500:, 1]))
    e_hyb = np.median(haversine_km(*hyb.predict(X[500:]).T, y[500:, 0], y[500:, 1]))
    assert e_hyb < 0.5 * e_cls or e_cls < 30  # centroid already at the points (data-driven centroids)
    assert e_hyb < 60


def test_multitask_predicts_its_auxiliary_labels(separable, partition):
    X, y, lab, aux, tr, te = separable
    head = _fit("multitask", separable, partition, epochs=15)
    assert set(head.aux_tasks_) == {"climate", "elevation", "population", "month"}
    out = head.predict_aux(X[te])
    assert np.mean(out["climate"] == CLIMATES[lab[te]]) > 0.9
    assert np.median(np.abs(out["elevation_m"] - aux["elevation_m"][te])) < 300
    assert out["month"].min() >= 1 and out["month"].max() <= 12
    with pytest.raises(InvalidInput, match="unknown task"):
        _fit("multitask", separable, partition, aux_weights={"weather": 1.0})


def test_multitask_reads_labels_from_the_rasters(separable, partition, shared_geo):
    X, y, lab, aux, tr, te = separable
    head = create_head("multitask", aux_dir=str(shared_geo), **FAST).fit(X[tr], y[tr], partition=partition)
    assert {"climate", "elevation", "population"} <= set(head.aux_tasks_) and "month" not in head.aux_tasks_
    # Köppen classes of real places: the Croatian cluster is temperate (C*), the Australian desert B*
    assert any(c.startswith("C") for c in head.climate_classes_) and any(
        c.startswith("B") for c in head.climate_classes_
    )


def test_knn_pools_views_of_one_location():
    rng = np.random.default_rng(2)
    X = rng.normal(0, 1, (8, 16)).astype(np.float32)
    X[1:4] = X[0] + rng.normal(0, 0.1, (3, 16))  # four similar views of one panorama
    y = np.array([[45.0, 15.0]] * 4 + [[10.0, 10.0], [20.0, 20.0], [30.0, 30.0], [40.0, 40.0]])
    head = create_head("knn", k=6, temperature=0.1).fit(X, y)
    d = head.predict_distribution(X[:1] + 0.01)
    assert d.lat.shape == (1, 6)
    # neighbours at identical coordinates pool into one support point: no duplicate points keep mass
    keep = d.prob[0] > 0
    pts = {(a, b) for a, b in zip(d.lat[0][keep], d.lon[0][keep])}
    assert len(pts) == keep.sum() == 3
    np.testing.assert_allclose(d.prob.sum(), 1.0)
    one = create_head("knn", k=1).fit(X, y)
    np.testing.assert_array_equal(one.predict(X[5:6]), y[5:6])
    with pytest.raises(InvalidInput):
        create_head("knn", k=0).fit(X, y)


def test_bad_inputs_are_clear(separable, partition):
    X, y, *_ = separable
    head = create_head("classifier", **FAST)
    with pytest.raises(InvalidInput, match="targets"):
        head.fit(X[:10], y[:9], partition=partition)
    bad = X[:10].copy()
    bad[3, 0] = np.nan
    with pytest.raises(InvalidInput, match="row 3"):
        head.fit(bad, y[:10], partition=partition)
    with pytest.raises(InvalidInput, match="tau"):
        create_head("classifier", tau=-5).fit(X[:10], y[:10], partition=partition)


def test_chunked_standardisation_equals_numpy_without_copying_the_matrix():
    """Heads standardise large training sets chunk by chunk (float64, Chan's merge): same mean/std as numpy's
    two-pass result on the selected rows, even with a mean far larger than the spread."""
    from geoscout.heads._torch import column_mean_std, standardized_rows

    rng = np.random.default_rng(3)
    X = (1000.0 + rng.normal(0, 0.01, (5003, 7))).astype(np.float32)
    rows = rng.permutation(5003)[:4001]
    mean, std = column_mean_std(X, rows, chunk=256)
    ref = X[rows].astype(np.float64)
    np.testing.assert_allclose(mean, ref.mean(axis=0), rtol=1e-7)
    np.testing.assert_allclose(std, ref.std(axis=0) + 1e-6, rtol=1e-4)
    batch = np.array([5, 0, 4000])
    got = standardized_rows(X, rows, mean, std)(batch).numpy()
    np.testing.assert_allclose(got, (X[rows[batch]] - mean) / std, rtol=1e-6)
