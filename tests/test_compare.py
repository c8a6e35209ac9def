"""Photo-to-photo distance (`geoscout compare`): exact quantiles checked against geographiclib on a
sphere of radius 6371 km, and the real built-in model on real Street View / Mapillary photos."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from geographiclib.geodesic import Geodesic
from typer.testing import CliRunner

from geoscout.errors import InvalidInput
from geoscout.photo_distance import compare, distance_distribution

SPHERE = Geodesic(6_371_000.0, 0.0)


def _km(a, b):
    return SPHERE.Inverse(a[0], a[1], b[0], b[1])["s12"] / 1000.0


def test_point_masses_give_the_geodesic_distance():
    zagreb, lagos = (45.815, 15.982), (6.524, 3.379)
    est = distance_distribution([zagreb[0]], [zagreb[1]], [1.0], [lagos[0]], [lagos[1]], [1.0])
    ref = _km(zagreb, lagos)
    assert est.exact and est.pairs == 1
    for v in (est.median_km, est.low_km, est.high_km):
        assert v == pytest.approx(ref, rel=1e-9)


def test_quantiles_over_all_pairs_are_exact():
    """A: three places with 0.2/0.3/0.5; B: one place. Distances are the three geodesics with those weights."""
    a = [(45.0, 15.0), (48.85, 2.35), (40.4, -3.7)]
    b = (52.52, 13.40)
    est = distance_distribution([p[0] for p in a], [p[1] for p in a], [0.2, 0.3, 0.5], [b[0]], [b[1]], [1.0], level=0.5)
    d = [_km(p, b) for p in a]  # Croatia ~ 800 km, Paris ~ 880 km, Madrid ~ 1870 km
    assert d[0] < d[1] < d[2]
    # cumulative 0.2, 0.5, 1.0: the 25th percentile is d[1], the median d[1], the 75th d[2]
    assert est.low_km == pytest.approx(d[1], rel=1e-9)
    assert est.median_km == pytest.approx(d[1], rel=1e-9)
    assert est.high_km == pytest.approx(d[2], rel=1e-9)


def test_sampling_when_pairs_are_too_many_agrees_with_exact():
    rng = np.random.default_rng(3)
    la, lo = rng.uniform(-60, 70, 300), rng.uniform(-180, 180, 300)
    pa, pb = rng.dirichlet(np.ones(300)), rng.dirichlet(np.ones(300))
    exact = distance_distribution(la, lo, pa, la[::-1], lo[::-1], pb)
    sampled = distance_distribution(la, lo, pa, la[::-1], lo[::-1], pb, max_pairs=1000, samples=100_000, seed=0)
    again = distance_distribution(la, lo, pa, la[::-1], lo[::-1], pb, max_pairs=1000, samples=100_000, seed=0)
    assert exact.exact and not sampled.exact and sampled.pairs == 100_000
    assert sampled.median_km == again.median_km  # fixed seed: reproducible
    for key in ("median_km", "low_km", "high_km"):
        assert getattr(sampled, key) == pytest.approx(getattr(exact, key), rel=0.03)


def test_bad_level_and_empty_mass_are_refused():
    with pytest.raises(InvalidInput, match="level"):
        distance_distribution([0], [0], [1], [1], [1], [1], level=1.5)
    with pytest.raises(InvalidInput, match="no probability mass"):
        distance_distribution([0], [0], [0.0], [1], [1], [1])


@pytest.fixture(scope="module")
def lite():
    from geoscout.locator import load_model

    return load_model("geoscout-lite")


@pytest.fixture(scope="module")
def photos(shared_data):
    hr = shared_data("streetview-croatia")
    df = pd.read_csv(hr / "manifest.csv")
    views = df[df.location_id == df.location_id.iloc[0]]
    osv = shared_data("osv5m-sample")
    o = pd.read_csv(osv / "manifest.csv")
    far = o.iloc[int(np.argmin(o.lat.to_numpy()))]  # the southernmost photo: far from Croatia
    return hr / views.path.iloc[0], hr / views.path.iloc[2], osv / far.path


def test_two_views_of_one_place_vs_a_far_photo(lite, photos):
    a, b, far = photos
    same = compare(a, b, lite)
    other = compare(a, far, lite)
    assert same.distance.exact and same.distance.method == "distributions"
    assert same.distance.low_km <= same.distance.median_km <= same.distance.high_km
    assert same.distance.median_km < other.distance.median_km
    assert same.same_country > 0.5 and other.same_country < same.same_country
    assert same.country_a == "HR"
    # view a is a training photo of the built-in model: retrieval answers, with both views' neighbours in one region
    assert same.retrieval is not None and same.retrieval.median_km < 200.0
    assert same.retrieval.median_km < other.distance.median_km
    assert same.similarity_a == pytest.approx(1.0, abs=1e-3)
    # with an unreachable similarity bar retrieval is left out
    strict = compare(a, b, lite, near_similarity=1.5)
    assert strict.retrieval is None and strict.similarity_a is not None
    assert json.loads(json.dumps(same.to_dict()))["distance"]["median_km"] == pytest.approx(same.distance.median_km)


def test_a_model_without_retrieval_answers_from_distributions(tiny_locator, photos):
    a, _, far = photos
    c = compare(a, far, tiny_locator)
    assert c.retrieval is None and c.similarity_a is None
    assert 0 < c.distance.median_km < 20_050


def test_unreadable_photo_is_named(lite, photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(InvalidInput, match="broken.jpg"):
        compare(photos[0], bad, lite)


def test_cli_compare_table_and_json(photos):
    from geoscout.cli import app

    a, b, _ = photos
    res = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    assert "median" in res.output and "same country:" in res.output and "nearest training photos" in res.output
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--json", "--level", "0.5"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["distance"]["level"] == 0.5 and 0 <= d["same_country"] <= 1
    res = CliRunner().invoke(app, ["compare", str(a), "missing.jpg"])
    assert res.exit_code == 2 and "missing.jpg" in res.output


def test_public_api_names():
    import geoscout

    assert geoscout.compare is compare and "compare" in geoscout.__all__ and "Comparison" in geoscout.__all__
