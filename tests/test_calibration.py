"""Calibration code against hand-computed cases; the guess rules; the reliability diagram of a real evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from geoscout.calibration import (
    Calibration,
    best_guess,
    conformal_scale,
    fit_temperature,
    mass_radius_km,
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
