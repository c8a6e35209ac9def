"""Calibration code against hand-computed cases; the guess rules; the reliability diagram of a real evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from geoscout.calibration import (
    Calibration,
    CalibrationRecords,
    best_guess,
    calibration_report,
    conformal_scale,
    fit_calibration,
    fit_novelty_temperature,
    fit_score_temperature,
    fit_temperature,
    mass_radius_km,
    novelty,
    radius_coverage,
    temper,
)
from geoscout.errors import InvalidInput


def test_temper_by_hand():
    # T = 2 takes square roots: (sqrt(.5), sqrt(.25), sqrt(.25)) / (0.70711 + 0.5 + 0.5)
    q = temper([0.5, 0.25, 0.25], 2.0)
    np.testing.assert_allclose(q, [0.414214, 0.292893, 0.292893], atol=1e-6)
    np.testing.assert_allclose(temper([0.5, 0.25, 0.25], 1.0), [0.5, 0.25, 0.25])
    # T = 0.5 squares: (.25, .0625, .0625) / .375
    np.testing.assert_allclose(temper([0.5, 0.25, 0.25], 0.5), [2 / 3, 1 / 6, 1 / 6])
    with pytest.raises(InvalidInput, match="temperature"):
        temper([1.0], 0.0)


def test_fit_temperature_by_hand():
    """Four photos, each predicted (0.9, 0.1); the first class is right three times in four.

    The NLL is minimal where the tempered probability equals the observed 0.75: logit ln 9 / T = ln 3, T = 2.
    """
    prob = np.tile([0.9, 0.1], (4, 1))
    assert fit_temperature(prob, [0, 0, 0, 1]) == pytest.approx(2.0, rel=1e-4)
    # right every time but one in ten at 0.5/0.5 confidence -> sharpen (T < 1)
    assert fit_temperature(np.tile([0.6, 0.4], (10, 1)), [0] * 9 + [1]) < 1.0
    with pytest.raises(InvalidInput):
        fit_temperature(prob, [0, 0, 2, 1])


def test_novelty_by_hand():
    """Reference e1, e2 and their bisector; e1's two most similar: itself (1) and the bisector (cos 45°)."""
    r = np.array([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    z = novelty([[1.0, 0.0], [0.0, -1.0]], r, k=2)
    np.testing.assert_allclose(z, [1 - (1 + math.sqrt(0.5)) / 2, 1 - (0 - math.sqrt(0.5)) / 2], atol=1e-6)
    assert novelty([[1.0, 0.0]], r, k=1)[0] == pytest.approx(0.0, abs=1e-6)  # seen in training
    assert novelty([[1.0, 0.0]], r, k=10)[0] == pytest.approx(1 - (1 + 0 + math.sqrt(0.5)) / 3, abs=1e-6)  # k > n
    with pytest.raises(InvalidInput, match="same d"):
        novelty([[1.0, 0.0, 0.0]], r)


def test_fit_novelty_temperature_by_hand():
    """Two kinds of photo, all predicted (0.9, 0.1). Familiar ones (novelty 0) are right 3 times in 4: T = 2
    makes 0.9 read 0.75 (ln 9 / T = ln 3). Novel ones (novelty 1) are right 3 times in 5: 0.6 needs
    9^(1/T) = 1.5, T = ln 9 / ln 1.5 = 5.419. With two novelty values the fit reaches both optima:
    T0 = 2 at z0 = 0 and slope = ln(5.419 / 2)."""
    prob = np.tile([0.9, 0.1], (9, 1))
    truth = [0, 0, 0, 1, 0, 0, 0, 1, 1]  # 3 of 4, then 3 of 5
    z = [0.0] * 4 + [1.0] * 5
    t0, slope, z0 = fit_novelty_temperature(prob, truth, z, center=0.0)
    assert z0 == 0.0
    assert t0 == pytest.approx(2.0, rel=1e-3)
    assert slope == pytest.approx(math.log(math.log(9) / math.log(1.5) / 2), rel=1e-3)
    c = Calibration(temperature=t0, novelty_k=5, novelty_center=z0, novelty_slope=slope)
    assert c.temperature_at(1.0) == pytest.approx(math.log(9) / math.log(1.5), rel=1e-3)
    assert c.temperature_at(None) == t0 and c.temperature_at(float("nan")) == t0
    assert Calibration(temperature=2.0, novelty_k=5, novelty_slope=100.0).temperature_at(1.0) == 50.0  # bounded
    assert fit_novelty_temperature(prob, truth, z)[2] == 1.0  # z0 defaults to the median novelty


def test_fit_score_temperature_by_hand():
    """All photos predicted (0.9, 0.1), their answer scoring 5000 if the first point is true and 0 if the second.
    Familiar photos score 5000, 5000, 5000, 0 (mean 3750): the squared error is least where 5000 * p = 3750,
    p = 0.75, T = 2. Novel ones score 5000 three times in five: p = 0.6, T = ln 9 / ln 1.5."""
    prob = np.tile([0.9, 0.1], (9, 1))
    pts = np.tile([5000.0, 0.0], (9, 1))
    scored = [5000.0, 5000, 5000, 0, 5000, 5000, 5000, 0, 0]
    t, slope, _ = fit_score_temperature(prob[:4], pts[:4], scored[:4])
    assert t == pytest.approx(2.0, rel=1e-3) and slope == 0.0
    t0, slope, z0 = fit_score_temperature(prob, pts, scored, [0.0] * 4 + [1.0] * 5, center=0.0)
    assert (t0, z0) == (pytest.approx(2.0, rel=1e-3), 0.0)
    assert slope == pytest.approx(math.log(math.log(9) / math.log(1.5) / 2), rel=1e-3)
    with pytest.raises(InvalidInput, match="disagree"):
        fit_score_temperature(prob, pts[:3], scored)


def test_mondrian_scales_by_hand():
    """Radius factors by novelty bin: edges (0.2, 0.4) make three bins; 0.4 itself belongs to the last."""
    bins = ({0.68: 1.0}, {0.68: 2.0}, {0.68: 3.0})
    c = Calibration(radius_scale={0.68: 1.5}, novelty_k=10, novelty_edges=(0.2, 0.4), radius_scale_bins=bins)
    assert [c.scales_at(z)[0.68] for z in (0.1, 0.2, 0.39, 0.4, 0.9)] == [1.0, 2.0, 2.0, 3.0, 3.0]
    assert c.scales_at(None)[0.68] == 1.5 and c.uses_novelty
    # a point mass at the centre: radius = factor x the 10 km floor
    r = Calibration(r_min_km=10.0, novelty_k=10, novelty_edges=(0.2, 0.4), radius_scale_bins=bins).radii(
        [0.0], [0.0], [1.0], (0.0, 0.0), novelty=0.5
    )
    assert r[0.68] == 30.0
    d = json.loads(json.dumps(c.to_dict()))
    assert Calibration.from_dict(d) == c
    with pytest.raises(InvalidInput, match="scale bins"):
        Calibration(novelty_k=10, novelty_edges=(0.2,), radius_scale_bins=bins)
    with pytest.raises(InvalidInput, match="method"):
        Calibration(method="isotonic")


def _records(n_right: int, n_wrong: int) -> CalibrationRecords:
    """Photos predicted (0.9, 0.1) on the points (0, 0) and (0, 10); all answer (0, 0). The right ones lie
    1, 2, ... km from it, the wrong ones 1,200 km."""
    n = n_right + n_wrong
    return CalibrationRecords(
        prob=[np.array([0.9, 0.1])] * n,
        lat=[np.zeros(2)] * n,
        lon=[np.array([0.0, 10.0])] * n,
        label=np.array([0] * n_right + [1] * n_wrong),
        novelty=np.full(n, np.nan),
        answer=np.zeros((n, 2)),
        d_km=np.array([float(i + 1) for i in range(n_right)] + [1200.0] * n_wrong),
    )


def test_fit_calibration_and_report_by_hand():
    """12 photos, 9 right: T = 2 makes 0.9 read 0.75. Tempered masses (0.75, 0.25): the 50 and 68 % mass radii
    are 0 (floored to 10 km), the 90 % one is the 10 degrees to the second point (6371 * pi / 18 km).
    Conformal factors (n = 12): 50 %: the ceil(13 * .5) = 7th smallest of d / 10 km = 0.7; 68 %: the 9th = 0.9;
    90 %: the 12th of d / r90 = 1200 / r90. Expected score at (0, 0): 0.75 * 5000 + 0.25 * 5000 exp(-r90 / 1492.7)."""
    rec = _records(9, 3)
    r90 = 6371.0 * math.pi / 18
    cal = fit_calibration(rec, method="global", r_min_km=10.0, fitted_on="hand")
    assert cal.temperature == pytest.approx(2.0, rel=1e-4)
    assert cal.radius_scale[0.5] == pytest.approx(0.7) and cal.radius_scale[0.68] == pytest.approx(0.9)
    assert cal.radius_scale[0.9] == pytest.approx(1200.0 / r90, rel=1e-6)
    rep = calibration_report(cal, rec)
    assert rep["cov50"] == pytest.approx(7 / 12) and rep["cov68"] == pytest.approx(9 / 12) and rep["cov90"] == 1.0
    assert rep["expected"] == pytest.approx(0.75 * 5000 + 0.25 * 5000 * math.exp(-r90 / 1492.7), rel=1e-4)
    scored = (sum(5000 * math.exp(-(i + 1) / 1492.7) for i in range(9)) + 3 * 5000 * math.exp(-1200 / 1492.7)) / 12
    assert rep["scored"] == pytest.approx(scored) and rep["n"] == 12
    both = CalibrationRecords.concat([rec.take(np.arange(6)), rec.take(np.arange(6, 12))])
    assert fit_calibration(both, r_min_km=10.0).radius_scale == cal.radius_scale
    with pytest.raises(InvalidInput, match="novelty"):
        fit_calibration(rec, method="novelty")  # no novelty measured
    with pytest.raises(InvalidInput, match="at least 10"):
        fit_calibration(rec.take(np.arange(5)))
    # the score objective: the expected score 5000 * p1 + 5000 exp(-r90 / 1492.7) * (1 - p1) matches the mean
    # achieved score (every photo has the same prediction, so the least squared error is at the mean)
    by_score = fit_calibration(rec, objective="score", r_min_km=10.0)
    assert calibration_report(by_score, rec)["expected"] == pytest.approx(scored, rel=1e-3)
    assert by_score.objective == "score" and Calibration.from_dict(by_score.to_dict()) == by_score


def test_conformal_scale_by_hand():
    # scores d / r = 1..9 (r = 10 km): level 0.5 -> ceil(10 * 0.5) = 5th smallest = 5; 0.9 -> 9th = 9
    d = np.arange(1, 10) * 10.0
    r = np.full(9, 10.0)
    assert conformal_scale(d, r, 0.5) == 5.0
    assert conformal_scale(d, r, 0.9) == 9.0
    assert conformal_scale(d, r, 0.68) == 7.0  # ceil(6.8) = 7
    # r_min: a point mass (r = 0) is measured against the floor
    assert conformal_scale([30.0, 10.0], [0.0, 0.0], 0.5, r_min_km=10.0) == 3.0  # scores 3, 1 -> ceil(1.5) = 2nd
    with pytest.raises(InvalidInput, match="r_min"):
        conformal_scale([1.0], [0.0], 0.5)
    assert radius_coverage([1, 5, 20, np.nan], [10, 10, 10, 10]) == pytest.approx(2 / 3)


def test_mass_radius_by_hand():
    # three points on the equator 0, 1, 2 degrees east (1 degree = 111.195 km on the 6371 km sphere)
    lat, lon, p = np.zeros(3), np.array([0.0, 1.0, 2.0]), np.array([0.5, 0.3, 0.2])
    deg = 6371.0 * math.pi / 180
    assert mass_radius_km(lat, lon, p, (0.0, 0.0), 0.5) == pytest.approx(0.0)
    assert mass_radius_km(lat, lon, p, (0.0, 0.0), 0.68) == pytest.approx(deg, rel=1e-9)
    assert mass_radius_km(lat, lon, p, (0.0, 0.0), 0.9) == pytest.approx(2 * deg, rel=1e-9)
    c = Calibration(radius_scale={0.5: 2.0, 0.68: 1.5, 0.9: 1.0}, r_min_km=10.0)
    radii = c.radii(lat, lon, p, (0.0, 0.0))
    assert radii[0.5] == pytest.approx(20.0) and radii[0.68] == pytest.approx(1.5 * deg)


def _gc_km(lat1, lon1, lat2, lon2):
    """Great-circle distance by the spherical law of cosines (independent of geoscout.geo)."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return 6371.0 * math.acos(max(-1.0, min(1.0, c)))


def test_best_guess_by_hand():
    """Mass on four points around (0, 0), ~500 km out, the east one a little more probable: the mode answers
    east, but the centre (probability 0 itself) has the higher expected GeoGuessr score and the lower
    expected distance."""
    a = 4.5
    lat = np.array([0.0, 0.0, a, -a, 0.0])
    lon = np.array([a, -a, 0.0, 0.0, 0.0])
    p = np.array([0.28, 0.24, 0.24, 0.24, 0.0])

    def by_hand(at: int) -> tuple[float, float]:
        d = [_gc_km(lat[at], lon[at], la, lo) for la, lo in zip(lat, lon)]
        return (
            sum(pi * 5000 * math.exp(-di / 1492.7) for pi, di in zip(p, d)),
            sum(pi * di for pi, di in zip(p, d)),
        )

    east, centre = by_hand(0), by_hand(4)
    assert centre[0] > east[0] and centre[1] < east[1]  # about 3,577 vs 3,509 points; 500 vs 579 km
    la, lo, s = best_guess(lat, lon, p, "mode")
    assert (la, lo) == (0.0, a) and s == pytest.approx(east[0], rel=1e-9)
    la, lo, s = best_guess(lat, lon, p, "expected-score")
    assert (la, lo) == (0.0, 0.0) and s == pytest.approx(centre[0], rel=1e-9)
    assert best_guess(lat, lon, p, "median")[:2] == (0.0, 0.0)
    # an extra point (e.g. a refined candidate) is a candidate too
    la, lo, _ = best_guess(lat[:4], lon[:4], p[:4], "expected-score", extra=[[0.0, 0.0]])
    assert (la, lo) == (0.0, 0.0)
    with pytest.raises(InvalidInput, match="guess rule"):
        best_guess(lat, lon, p, "max")


def test_calibration_roundtrip_and_validation():
    c = Calibration(temperature=1.7, radius_scale={0.5: 1.2, 0.68: 1.4, 0.9: 2.0}, r_min_km=25.0, n=40)
    d = json.loads(json.dumps(c.to_dict()))
    assert Calibration.from_dict(d) == c
    assert Calibration.from_dict(None) == Calibration()
    with pytest.raises(InvalidInput):
        Calibration(guess="nope")


def test_bundle_keeps_its_calibration(tmp_path):
    from geoscout.bundle import ModelBundle
    from geoscout.heads import create_head

    rng = np.random.default_rng(0)
    y = np.stack([rng.uniform(-50, 60, 80), rng.uniform(-120, 140, 80)], axis=1)
    X = rng.normal(size=(80, 8)).astype(np.float32)
    head = create_head("knn", k=3).fit(X, y)
    cal = Calibration(temperature=2.0, radius_scale={0.68: 3.0}, guess="median", fitted_on="test", n=80)
    ModelBundle(head=head, calibration=cal).save(tmp_path / "b")
    assert ModelBundle.load(tmp_path / "b").calibration == cal
    ModelBundle(head=head).save(tmp_path / "c")  # a bundle without calibration still loads (older bundles)
    assert ModelBundle.load(tmp_path / "c").calibration is None


def test_locator_guess_rules_and_reliability_diagram(tiny_locator, small_world_sample, tmp_path):
    """A real evaluation (real photos, a real model) states 50/68/90 % radii and draws the reliability diagram."""
    import pandas as pd

    from geoscout.evaluate import evaluate
    from geoscout.locator import Locator

    paths, lat, lon = small_world_sample
    paths, lat, lon = paths[:12], lat[:12], lon[:12]
    X, _ = tiny_locator.embed([str(p) for p in paths])
    ids = [str(p) for p in paths]
    by_rule = {}
    for rule in ("mode", "expected-score", "median"):
        loc = Locator(tiny_locator.backbone, tiny_locator.head, name="t", geocode=False, guess=rule)
        by_rule[rule] = loc.locate_embeddings(X, ids, top_k=3)
    for p in by_rule["mode"]:
        assert p.guess is None and p.answer is p.candidates[0]
        assert p.radii_km["50"] <= p.radii_km["68"] <= p.radii_km["90"] and p.radius_km == p.radii_km["68"]
    for p, m in zip(by_rule["expected-score"], by_rule["mode"]):
        assert p.guess is not None and [c.lat for c in p.candidates] == [c.lat for c in m.candidates]
        assert p.expected_score >= m.expected_score - 1e-9  # never worse in expectation than the mode
    truth = pd.DataFrame({"image_id": ids, "lat": lat, "lon": lon})
    report = evaluate(by_rule["expected-score"], truth, places=False)
    for q in ("50", "68", "90"):
        assert 0.0 <= report.metrics[f"coverage_{q}"] <= 1.0 and report.metrics[f"n_coverage_{q}"] == 12
    answer = np.array([[p.answer.lat, p.answer.lon] for p in by_rule["expected-score"]])
    np.testing.assert_allclose(report.per_image[["pred_lat", "pred_lon"]].to_numpy(), answer)
    out = report.save(tmp_path / "rep")
    png = out / "reliability.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "50 % radius" in (out / "report.md").read_text()


def test_temperature_restates_confidence_not_the_answer(tiny_locator, small_world_sample):
    """A calibrated locator answers the same point as the uncalibrated one (the bet is made under the model's
    own distribution) but states flatter probabilities and the calibrated radii."""
    from geoscout.locator import Locator

    paths = [str(p) for p in small_world_sample[0][:6]]
    X, _ = tiny_locator.embed(paths)
    plain = Locator(tiny_locator.backbone, tiny_locator.head, geocode=False, guess="expected-score")
    cal = Calibration(temperature=3.0, radius_scale={0.5: 2.0, 0.68: 2.0, 0.9: 2.0}, r_min_km=10.0)
    hot = Locator(tiny_locator.backbone, tiny_locator.head, geocode=False, calibration=cal, guess="expected-score")
    a, b = plain.locate_embeddings(X, paths, top_k=3), hot.locate_embeddings(X, paths, top_k=3)
    for p, q in zip(a, b):
        assert (p.answer.lat, p.answer.lon) == (q.answer.lat, q.answer.lon)
        assert q.candidates[0].probability <= p.candidates[0].probability + 1e-12
        assert q.radii_km["68"] >= 20.0  # 2 x at least the 10 km floor


def test_novelty_calibration_on_real_photos(tiny_locator, small_world_sample):
    """Mondrian + novelty calibration of a real model (Lite0 features of real photos, k-NN head, its training
    embeddings as retrieval data): each novelty bin's radii hold the truth for at least their share of the
    photos they were fitted on (the conformal rule), and the locator measures each photo's novelty."""
    from geoscout.bundle import ModelBundle, RetrievalData
    from geoscout.heads import create_head
    from geoscout.locator import Locator, calibrate

    paths, lat, lon = small_world_sample
    X, _ = tiny_locator.embed([str(p) for p in paths])
    y = np.stack([lat, lon], axis=1)
    tr = np.arange(len(X)) % 2 == 0
    head = create_head("knn", k=5).fit(X[tr], y[tr])
    bundle = ModelBundle(head=head, retrieval=RetrievalData(X[tr], y[tr, 0], y[tr, 1]))
    cal = calibrate(bundle, X[~tr], y[~tr], method="mondrian", bins=2, novelty_k=3)
    assert cal.uses_novelty and len(cal.novelty_edges) == 1 and cal.n == int((~tr).sum())
    loc = Locator(None, head, retrieval=bundle.retrieval, geocode=False, calibration=cal, guess="mode")
    z = loc.novelty(X[~tr])
    from geoscout.calibration import novelty as nov
    from geoscout.geo import l2_normalize

    ref = l2_normalize(X[tr].astype(np.float32))
    np.testing.assert_allclose(z, nov(X[~tr], ref, 3), atol=1e-3)  # the bundle keeps float16 vectors
    preds = loc.locate_embeddings(X[~tr], [str(i) for i in range(int((~tr).sum()))], top_k=3)
    from geoscout.geo import haversine_km

    d = np.array([float(haversine_km(p.answer.lat, p.answer.lon, a, b)) for p, (a, b) in zip(preds, y[~tr])])
    which = np.searchsorted(cal.novelty_edges, z, side="right")
    for b in (0, 1):
        r = np.array([p.radii_km["68"] for p in preds])[which == b]
        assert np.mean(d[which == b] <= r * (1 + 1e-9)) >= 0.68
    with pytest.raises(InvalidInput, match="training embeddings"):
        calibrate(ModelBundle(head=head), X[~tr], y[~tr], method="novelty")
    # a temperature that grows with novelty: each photo's stated probabilities are its own tempering
    hot = Calibration(temperature=1.0, novelty_k=3, novelty_center=float(np.median(z)), novelty_slope=5.0)
    loc = Locator(None, head, retrieval=bundle.retrieval, geocode=False, calibration=hot, guess="mode")
    preds = loc.locate_embeddings(X[~tr], [str(i) for i in range(int((~tr).sum()))], top_k=1)
    dist = head.predict_distribution(X[~tr])
    for i, p in enumerate(preds):
        want = temper(dist.prob[i], math.exp(5.0 * (z[i] - np.median(z)))).max()
        assert p.candidates[0].probability == pytest.approx(want, rel=1e-6)


def test_partial_sorts_equal_the_full_sort_definitions():
    """The top-k and mass-radius shortcuts (GeoCLIP's 100k-point support) give exactly the full-sort answers,
    ties (rounded coordinates, equal probabilities) and zero-probability points included."""
    from geoscout.calibration import _top_stable, mass_radii_km, mass_radius_km
    from geoscout.geo import haversine_km

    def radius_by_full_sort(lat, lon, prob, center, mass):
        d = haversine_km(center[0], center[1], lat, lon)
        order = np.argsort(d, kind="stable")
        cum = np.cumsum(prob[order]) / max(float(prob.sum()), 1e-12)
        return float(d[order][min(int(np.searchsorted(cum, mass - 1e-9)), len(order) - 1)])

    rng = np.random.default_rng(0)
    for t in range(60):
        n = int(rng.integers(1, 20000))
        p = rng.integers(0, 20, n).astype(float) if t % 2 else rng.random(n)
        k = int(rng.integers(1, n + 5))
        np.testing.assert_array_equal(_top_stable(p, k), np.argsort(-p, kind="stable")[:k])
        lat, lon = rng.uniform(-90, 90, n), rng.uniform(-180, 180, n)
        if t % 3 == 0:
            lat, lon = np.round(lat), np.round(lon)
        prob = rng.dirichlet(np.full(n, 0.05 if t % 2 else 1.0))
        prob[rng.random(n) < 0.3 * (t % 2)] = 0.0
        center = (float(rng.uniform(-90, 90)), float(rng.uniform(-180, 180)))
        levels = (0.5, 0.68, 0.9, 1.0)
        want = [radius_by_full_sort(lat, lon, prob, center, m) for m in levels]
        assert mass_radii_km(lat, lon, prob, center, levels) == want
        assert mass_radius_km(lat, lon, prob, center, 0.68) == want[1]
