"""Evaluation metrics vs. hand computation, and end to end on the real im2gps truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from geographiclib.geodesic import Geodesic

from geoscout.errors import InvalidInput
from geoscout.evaluate import distance_metrics, evaluate
from geoscout.geo import destination_point, haversine_km
from geoscout.types import Candidate, Prediction

SPHERE = Geodesic(6371.0, 0.0)  # lengths in km on the sphere the metrics use


def _direct(lat: float, lon: float, azi: float, km: float) -> tuple[float, float]:
    g = SPHERE.Direct(lat, lon, azi, km)
    return g["lat2"], g["lon2"]


# --------------------------------------------------------------------------- distance_metrics


def test_distance_metrics_by_hand():
    d = [0.0, 0.5, 24.0, 30.0, 199.0, 1000.0, 2600.0, 9000.0]
    m = distance_metrics(d)
    assert m["n"] == 8
    assert m["acc@1km"] == 2 / 8
    assert m["acc@25km"] == 3 / 8
    assert m["acc@200km"] == 5 / 8
    assert m["acc@750km"] == 5 / 8
    assert m["acc@2500km"] == 6 / 8
    assert m["mean_km"] == pytest.approx(sum(d) / 8)
    assert m["median_km"] == pytest.approx((30.0 + 199.0) / 2)
    assert m["geoguessr"] == pytest.approx(sum(5000 * math.exp(-x / 1492.7) for x in d) / 8)
    assert m["exp1160"] == pytest.approx(sum(math.exp(-x / 1160) for x in d) / 8)


def test_scores_at_reference_distances():
    m0 = distance_metrics([0.0])
    assert m0["geoguessr"] == 5000.0 and m0["exp1160"] == 1.0
    m1 = distance_metrics([1492.7])
    assert m1["geoguessr"] == pytest.approx(5000.0 / math.e, rel=1e-12)
    assert distance_metrics([1160.0])["exp1160"] == pytest.approx(1.0 / math.e, rel=1e-12)


@pytest.mark.parametrize("threshold", [1.0, 25.0, 200.0, 750.0, 2500.0])
def test_threshold_is_strict_on_the_sphere(threshold):
    """A guess exactly t km away (geographiclib Direct, R = 6371 km) is not within t km; 10 m closer is."""
    lat, lon = 43.5081, 16.4402
    on = _direct(lat, lon, 37.0, threshold)
    inside = _direct(lat, lon, 37.0, threshold - 0.01)
    d_on = float(haversine_km(lat, lon, *on))
    d_in = float(haversine_km(lat, lon, *inside))
    key = f"acc@{threshold:g}km"
    assert distance_metrics([d_on])[key] == 0.0
    assert distance_metrics([d_in])[key] == 1.0


def test_distance_metrics_edge_cases():
    empty = distance_metrics([])
    assert empty["n"] == 0 and all(math.isnan(v) for k, v in empty.items() if k != "n")
    with pytest.raises(InvalidInput, match="item 1"):
        distance_metrics([1.0, float("nan")])
    with pytest.raises(InvalidInput, match="item 0"):
        distance_metrics([-1.0])
    assert set(distance_metrics([1.0], thresholds=(5, 50))) >= {"acc@5km", "acc@50km"}


# --------------------------------------------------------------------------- evaluate on small frames


def test_coverage_failed_missing_unmatched_and_duplicates():
    truth = pd.DataFrame(
        {"image_id": ["a", "b", "c", "d"], "lat": [0.0, 10.0, 20.0, 30.0], "lon": [0.0, 10.0, 20.0, 30.0]}
    )
    b = _direct(10.0, 10.0, 90.0, 10.0)
    preds = [
        Prediction("a", [Candidate(0.0, 0.0, 1.0)]),
        Prediction("b", [Candidate(*b, 1.0)]),
        Prediction("b", [Candidate(-50.0, -50.0, 1.0)]),  # duplicate: ignored, counted
        Prediction("c", error="cannot decode"),
        Prediction("zz", [Candidate(1.0, 1.0, 1.0)]),  # no truth
    ]
    r = evaluate(preds, truth, places=False)
    m = r.metrics
    assert (m["n_truth"], m["n_predictions"], m["n_answered"], m["n_failed"], m["n_missing"]) == (4, 5, 2, 1, 1)
    assert (m["n_unmatched"], m["n_duplicate_predictions"]) == (1, 1)
    assert m["coverage"] == 0.5 and r.unmatched_ids == ["zz"]
    assert m["n"] == 2 and m["acc@1km"] == 0.5 and m["acc@25km"] == 1.0
    assert m["acc_all@1km"] == 0.25 and m["acc_all@25km"] == 0.5
    per = r.per_image.set_index("image_id")
    assert per.loc["c", "status"] == "failed" and per.loc["c", "error"] == "cannot decode"
    assert per.loc["d", "status"] == "missing" and math.isnan(per.loc["d", "distance_km"])
    assert per.loc["b", "distance_km"] == pytest.approx(10.0, abs=1e-9)
    md = r.to_markdown()
    assert "answered: 2 of 4" in md and "cannot decode" in md and "unanswered = miss" in md


def test_top_k_is_best_of_k():
    truth = pd.DataFrame({"image_id": ["a", "b"], "lat": [48.0, -20.0], "lon": [2.0, 47.0]})
    a_near = _direct(48.0, 2.0, 10.0, 20.0)
    b_near = _direct(-20.0, 47.0, 200.0, 150.0)
    preds = [
        Prediction("a", [Candidate(10.0, 10.0, 0.5), Candidate(*a_near, 0.3), Candidate(0.0, 100.0, 0.2)]),
        Prediction("b", [Candidate(60.0, 60.0, 0.6), Candidate(50.0, 50.0, 0.3), Candidate(*b_near, 0.1)]),
    ]
    r = evaluate(preds, truth, places=False)
    m = r.metrics
    assert m["top_k"] == 3
    assert m["acc@2500km"] == 0.0
    assert (m["top3_acc@1km"], m["top3_acc@25km"], m["top3_acc@200km"]) == (0.0, 0.5, 1.0)
    assert r.per_image["best_k_km"].to_numpy() == pytest.approx([20.0, 150.0], abs=1e-9)
    r2 = evaluate(preds, truth, places=False, k=2)
    assert r2.metrics["top_k"] == 2 and r2.metrics["top2_acc@25km"] == 0.5 and r2.metrics["top2_acc@200km"] == 0.5
    assert "best of top-3" in r.to_markdown()


def test_calibration_by_hand():
    """Radius coverage and expected vs scored GeoGuessr, from predictions that state their confidence."""
    truth = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "lat": [10.0, 20.0, 30.0, 40.0], "lon": [0.0] * 4})
    off = [_direct(la, 0.0, 90.0, km) for la, km in ((10.0, 50.0), (20.0, 300.0), (30.0, 10.0), (40.0, 100.0))]
    preds = [
        Prediction("a", [Candidate(*off[0], 0.9)], radius_km=100.0, expected_score=4000.0),  # inside
        Prediction("b", [Candidate(*off[1], 0.9)], radius_km=200.0, expected_score=3000.0),  # outside
        Prediction("c", [Candidate(*off[2], 0.9)], radius_km=10.5, expected_score=5000.0),  # inside (edge)
        Prediction("d", [Candidate(*off[3], 0.9)]),  # states nothing
    ]
    r = evaluate(preds, truth, places=False)
    m = r.metrics
    assert m["n_radius"] == 3 and m["radius_coverage"] == pytest.approx(2 / 3)
    assert m["n_expected"] == 3 and m["expected_geoguessr"] == pytest.approx(4000.0)
    scored = np.mean([5000 * math.exp(-km / 1492.7) for km in (50.0, 300.0, 10.0)])
    assert m["geoguessr_on_expected"] == pytest.approx(scored, rel=1e-9)
    assert "## Calibration" in r.to_markdown() and "66.7 %" in r.to_markdown()
    plain = evaluate([Prediction("a", [Candidate(*off[0], 1.0)])], truth.head(1), places=False)
    assert plain.metrics["n_radius"] == 0 and "## Calibration" not in plain.to_markdown()


def test_bad_truth_is_a_clear_error():
    with pytest.raises(InvalidInput, match="lacks column"):
        evaluate([], pd.DataFrame({"lat": [1.0], "lon": [2.0]}))
    with pytest.raises(InvalidInput, match="not a valid"):
        evaluate([], pd.DataFrame({"image_id": ["a"], "lat": [100.0], "lon": [2.0]}))
    with pytest.raises(InvalidInput, match="'a' candidate 2 has an invalid"):
        evaluate(
            [Prediction("a", [Candidate(1.0, 2.0, 0.5), Candidate(91.0, 2.0, 0.5)])],
            pd.DataFrame({"image_id": ["a"], "lat": [1.0], "lon": [2.0]}),
            places=False,
        )
    with pytest.raises(InvalidInput, match="expected geoscout.types.Prediction"):
        evaluate([{"image_id": "a"}], pd.DataFrame({"image_id": ["a"], "lat": [1.0], "lon": [2.0]}))


def test_truth_at_sea_excluded_from_country_accuracy():
    truth = pd.DataFrame(
        {"image_id": ["paris", "atlantic", "lyon"], "lat": [48.8566, 0.0, 45.764], "lon": [2.3522, -30.0, 4.8357]}
    )
    preds = [
        Prediction("paris", [Candidate(48.80, 2.30, 1.0)]),
        Prediction("atlantic", [Candidate(48.80, 2.30, 1.0)]),
        Prediction("lyon", [Candidate(50.8503, 4.3517, 1.0)]),  # Brussels: wrong country
    ]
    m = evaluate(preds, truth).metrics
    assert m["n_truth_at_sea"] == 1 and m["n_country"] == 2
    assert m["country_acc"] == 0.5
    assert m["admin1_acc"] == 0.5  # Paris is in Ile-de-France both ways


# --------------------------------------------------------------------------- real im2gps truth


@pytest.fixture(scope="module")
def im2gps(shared_data):
    from geoscout.data import load_dataset

    return load_dataset(shared_data("im2gps"))


@pytest.fixture(scope="module")
def truth_countries(im2gps):
    from geoscout.places import country_of, reverse_geocode

    f = im2gps.frame
    return np.asarray(country_of(f["lat"], f["lon"]), dtype=object), reverse_geocode(
        f["lat"].to_numpy(), f["lon"].to_numpy()
    )


DISTANCES = np.array([0.4, 12.0, 24.0, 90.0, 450.0, 1300.0, 2200.0, 6000.0])


@pytest.fixture(scope="module")
def shifted(im2gps):
    f = im2gps.frame
    n = len(f)
    d = DISTANCES[np.arange(n) % len(DISTANCES)]
    bearing = np.random.default_rng(7).uniform(0, 360, n)
    la, lo = destination_point(f["lat"].to_numpy(), f["lon"].to_numpy(), bearing, d)
    preds = [Prediction(i, [Candidate(float(a), float(b), 1.0)]) for i, a, b in zip(f["image_id"], la, lo)]
    return preds, d


def test_im2gps_shifted_predictions_give_exact_accuracies(im2gps, shifted):
    preds, d = shifted
    r = evaluate(preds, im2gps, places=False)
    m = r.metrics
    assert m["n"] == m["n_truth"] == len(im2gps) and m["coverage"] == 1.0
    for t in (1, 25, 200, 750, 2500):
        assert m[f"acc@{t}km"] == pytest.approx(np.mean(d < t), abs=1e-15), t
    assert m["median_km"] == pytest.approx(np.median(d), rel=1e-9)
    assert m["geoguessr"] == pytest.approx(np.mean(5000 * np.exp(-d / 1492.7)), rel=1e-9)
    per = r.per_image
    assert per["distance_km"].to_numpy() == pytest.approx(d, rel=1e-9, abs=1e-9)


def test_im2gps_country_swap(im2gps, truth_countries):
    """Even rows predict their own spot, odd rows a spot in another country -> exact country/admin-1 accuracy."""
    codes, rg = truth_countries
    f = im2gps.frame
    lat, lon = f["lat"].to_numpy(), f["lon"].to_numpy()
    land = np.array([isinstance(c, str) for c in codes])
    has_admin = land & rg["admin1"].map(lambda x: isinstance(x, str) and x != "").to_numpy()
    preds = []
    for i, iid in enumerate(f["image_id"]):
        if i % 2 == 0:
            preds.append(Prediction(iid, [Candidate(lat[i], lon[i], 1.0)]))
        else:
            j = next(j for j in range(len(f)) if land[j] and codes[j] != codes[i] and (i + j) % 3 == 0)
            preds.append(Prediction(iid, [Candidate(lat[j], lon[j], 1.0)]))
    even = np.arange(len(f)) % 2 == 0
    r = evaluate(preds, im2gps)
    m = r.metrics
    assert m["n_country"] == land.sum() and m["n_truth_at_sea"] == (~land).sum()
    assert m["country_acc"] == pytest.approx((even & land).sum() / land.sum(), abs=1e-15)
    assert m["n_admin1"] == has_admin.sum()
    assert m["admin1_acc"] == pytest.approx((even & has_admin).sum() / has_admin.sum(), abs=1e-15)
    per = r.per_image
    assert per.loc[even & land, "country_correct"].all() and not per.loc[~even & land, "country_correct"].any()
    assert per.loc[~land, "country_correct"].isna().all()
    bc = r.by_country
    us = bc.loc["US"]
    in_us = codes == "US"
    assert us["n"] == in_us.sum() and us["country_acc"] == pytest.approx((even & in_us).sum() / in_us.sum())
    assert bc["n"].sum() == len(f)


def test_report_files(im2gps, shifted, tmp_path):
    from PIL import Image

    preds, d = shifted
    preds = list(preds)
    preds[3] = Prediction(preds[3].image_id, error="could not read image")
    r = evaluate(preds[:-2], im2gps)
    out = r.save(tmp_path / "report")
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["metrics"]["n_failed"] == 1 and data["metrics"]["n_missing"] == 2
    assert data["metrics"]["coverage"] == pytest.approx((len(im2gps) - 3) / len(im2gps))
    assert "policy" in data and data["by_country"][0]["country"] == "US"
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| top-1 |" in md and "city 25 km" in md and "United States" in md
    per = pd.read_csv(out / "per_image.csv")
    assert len(per) == len(im2gps) and (per["status"] == "missing").sum() == 2
    for name, min_size in (("error_cdf.png", (600, 350)), ("error_map.png", (1000, 500))):
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width >= min_size[0] and im.height >= min_size[1]
            # not blank: the map and the curves draw many colours
            assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50
    assert not list(out.glob(".*tmp"))


def test_predictions_named_by_image_path_are_matched(im2gps, shifted):
    """`geoscout locate DIR/images/*.jpg` names predictions by path: absolute, as in the manifest, or file name."""
    import os

    preds, d = shifted
    f = im2gps.frame
    renamed = []
    for i, p in enumerate(preds):
        if i % 4 == 0:
            iid = str(im2gps.image_path(i))
        elif i % 4 == 1:
            iid = os.path.relpath(im2gps.image_path(i))  # relative to the working directory
        elif i % 4 == 2:
            iid = os.path.basename(f["path"].iloc[i])
        else:
            iid = p.image_id
        renamed.append(Prediction(iid, p.candidates))
    renamed.append(Prediction("elsewhere/not-in-truth.jpg", [Candidate(0.0, 0.0, 1.0)]))
    m = evaluate(renamed, im2gps, places=False).metrics
    assert m["n_answered"] == len(f) and m["n_unmatched"] == 1
    assert m["n_matched_by_path"] == len(f) - len(range(3, len(f), 4))
    assert m["acc@25km"] == pytest.approx(np.mean(d < 25), abs=1e-15)


def test_unit_location_scores_one_answer_per_panorama(shared_data):
    """streetview-croatia: 4 views per location; panorama predictions named 'v1+v2+v3+v4', by location or by one view."""
    m = pd.read_csv(shared_data("streetview-croatia") / "manifest.csv").head(40)
    truth = pd.DataFrame(
        {
            "image_id": m["path"],
            "path": m["path"],
            "lat": m["lat"],
            "lon": m["lon"],
            "location_id": m["location_id"].astype(str),
        }
    )
    locs = list(dict.fromkeys(truth["location_id"]))
    assert len(locs) == 10
    preds = []
    for j, loc in enumerate(locs[:9]):
        views = truth[truth["location_id"] == loc]
        lat, lon = _direct(float(views["lat"].iloc[0]), float(views["lon"].iloc[0]), 0.0, 5.0 if j % 3 else 60.0)
        pid = ["+".join(views["path"]), loc, views["path"].iloc[2]][j % 3]
        preds.append(Prediction(pid, [Candidate(lat, lon, 1.0)]))
    preds.append(
        Prediction(truth["path"].iloc[0] + "+" + truth["path"].iloc[39], [Candidate(0.0, 0.0, 1.0)])
    )  # mixes 2 places
    r = evaluate(preds, truth, unit="location", places=False)
    mm = r.metrics
    assert (mm["unit"], mm["n_truth"], mm["n_answered"], mm["n_missing"], mm["n_unmatched"]) == (
        "location",
        10,
        9,
        1,
        1,
    )
    assert mm["acc@25km"] == pytest.approx(6 / 9) and mm["acc@200km"] == 1.0
    assert set(r.per_image["image_id"]) == set(locs)
    per_image = evaluate(preds, truth, places=False).metrics  # by image, only 3 single-view ids match
    assert per_image["n_answered"] == 3 and per_image["n_truth"] == 40
    with pytest.raises(InvalidInput, match="unit must be"):
        evaluate(preds, truth, unit="panorama", places=False)


def test_report_with_no_answer_still_saves(tmp_path):
    truth = pd.DataFrame({"image_id": ["a", "b"], "lat": [1.0, 2.0], "lon": [3.0, 4.0]})
    r = evaluate([Prediction("a", error="decode failed")], truth, places=False)
    assert r.metrics["n"] == 0 and math.isnan(r.metrics["acc@25km"]) and r.metrics["acc_all@25km"] == 0.0
    out = r.save(tmp_path / "empty")
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["metrics"]["acc@25km"] is None and data["metrics"]["coverage"] == 0.0
    assert (out / "error_cdf.png").stat().st_size > 1000 and (out / "error_map.png").stat().st_size > 1000


def test_predictions_matched_by_their_path_relative_to_the_dataset(tmp_path):
    """File names repeat (0.jpg in every panorama folder): a path ending in the dataset-relative path matches."""
    truth = pd.DataFrame(
        {
            "image_id": ["i1", "i2", "i3", "i4"],
            "path": ["images/a/0.jpg", "images/a/90.jpg", "images/b/0.jpg", "images/b/90.jpg"],
            "lat": [1.0, 1.0, 2.0, 2.0],
            "lon": [1.0, 1.0, 2.0, 2.0],
        }
    )
    preds = [
        Prediction("/mnt/elsewhere/copy/images/a/0.jpg", [Candidate(1.0, 1.0, 1.0)]),
        Prediction("b/90.jpg", [Candidate(2.0, 2.0, 1.0)]),
        Prediction("0.jpg", [Candidate(2.0, 2.0, 1.0)]),  # ambiguous: two truth images are called 0.jpg
    ]
    r = evaluate(preds, truth, places=False)
    per = r.per_image.set_index("image_id")
    assert per.loc["i1", "status"] == "ok" and per.loc["i4", "status"] == "ok"
    assert r.unmatched_ids == ["0.jpg"] and r.metrics["n_matched_by_path"] == 2
    with pytest.raises(InvalidInput, match=r"only 0 of 1 predictions match.*'0.jpg' matches none.*'images/a/0.jpg'"):
        evaluate(preds[2:], truth, places=False)
    with pytest.raises(InvalidInput, match="no predictions"):
        evaluate([], truth, places=False)
