"""Locator: real photos in, ranked places out; summaries checked by hand; bad input isolated."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from geoscout.errors import InvalidInput
from geoscout.geo import geoguessr_score, haversine_km
from geoscout.locator import expected_geoguessr_score, split_strip, uncertainty_radius_km


def test_uncertainty_radius_hand_case():
    # three support points on the equator at 0, 1 and 10 degrees east; mass .5/.3/.2
    lat = np.zeros(3)
    lon = np.array([0.0, 1.0, 10.0])
    prob = np.array([0.5, 0.3, 0.2])
    one_deg = float(haversine_km(0, 0, 0, 1))
    assert uncertainty_radius_km(lat, lon, prob, (0.0, 0.0), mass=0.5) == 0.0
    assert uncertainty_radius_km(lat, lon, prob, (0.0, 0.0), mass=0.68) == pytest.approx(one_deg)
    assert uncertainty_radius_km(lat, lon, prob, (0.0, 0.0), mass=0.9) == pytest.approx(10 * one_deg, rel=1e-6)


def test_expected_score_hand_case():
    lat = np.zeros(2)
    lon = np.array([0.0, 20.0])
    prob = np.array([0.75, 0.25])
    d = float(haversine_km(0, 0, 0, 20))
    assert expected_geoguessr_score(lat, lon, prob, (0.0, 0.0)) == pytest.approx(
        0.75 * 5000 + 0.25 * float(geoguessr_score(d))
    )


def test_split_strip_real_panorama(shared_data):
    strip = sorted((shared_data("streetview-strips") / "images").glob("*"))[0]
    views = split_strip(strip)
    w, h = Image.open(strip).size
    assert len(views) == round(w / h) and all(v.size[1] == h for v in views)
    assert sum(v.size[0] for v in views) == w


def test_locate_real_photos(tiny_locator, small_world_sample):
    paths, lat, lon = small_world_sample
    preds = tiny_locator.locate([str(p) for p in paths[:6]], top_k=3)
    assert len(preds) == 6
    for p, la, lo in zip(preds, lat, lon):
        assert p.ok and 1 <= len(p.candidates) <= 3
        probs = [c.probability for c in p.candidates]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert p.radius_km is not None and p.radius_km >= 0
        assert 0 <= p.expected_score <= 5000
        # k-NN over a gallery holding this very photo: the top candidate is the photo's own place
        assert float(haversine_km(la, lo, p.top.lat, p.top.lon)) < 1.0
        assert p.top.country is not None or p.top.country_name is None


def test_bad_photo_in_batch_does_not_sink_the_others(tiny_locator, small_world_sample, tmp_path):
    paths, _, _ = small_world_sample
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(paths[0].read_bytes()[:200])
    missing = tmp_path / "missing.jpg"
    preds = tiny_locator.locate([str(paths[0]), str(broken), str(missing), str(paths[1])], top_k=2)
    assert [p.ok for p in preds] == [True, False, False, True]
    assert "broken.jpg" in preds[1].error.message and "missing.jpg" in preds[2].error.message
    assert preds[1].error.kind == "decode_error" and preds[2].error.kind == "missing"


def test_panorama_fusion_equals_mean_embedding(tiny_locator, shared_data):
    import pandas as pd

    root = shared_data("streetview-croatia")
    df = pd.read_csv(root / "manifest.csv")
    views = df[df.location_id == df.location_id.iloc[0]]
    files = [str(root / p) for p in views.path]
    pred = tiny_locator.locate(files, panorama=True, top_k=3)
    assert len(pred) == 1 and pred[0].ok
    X, _ = tiny_locator.embed(files)
    v = X.mean(axis=0)
    v /= np.linalg.norm(v)
    ref = tiny_locator.locate_embeddings(v[None, :], ["pano"], top_k=3)[0]
    assert [(c.lat, c.lon) for c in pred[0].candidates] == [(c.lat, c.lon) for c in ref.candidates]


def test_empty_and_bad_arguments(tiny_locator):
    with pytest.raises(InvalidInput):
        tiny_locator.locate([])
    with pytest.raises(InvalidInput):
        tiny_locator.locate(["x.jpg"], top_k=0)


def _two_place_cell():
    """One cell holding two places A and B, 4 locations each, 4 views per location (repeated coordinates)."""
    rng = np.random.default_rng(0)
    e_a, e_b = np.eye(16)[0], np.eye(16)[1]
    lat, lon, vec = [], [], []
    for centre, e in (((45.0, 15.0), e_a), ((45.8, 16.0), e_b)):
        for j in range(4):
            la, lo = centre[0] + 0.03 * j, centre[1] + 0.02 * j
            for _ in range(4):
                v = e + 0.05 * rng.normal(size=16)
                lat.append(la), lon.append(lo), vec.append(v / np.linalg.norm(v))
    return np.array(vec, np.float32), np.array(lat), np.array(lon), e_b.astype(np.float32)


@pytest.mark.parametrize("method", ["retrieval", "protonet"])
def test_refinement_moves_to_the_most_similar_place_and_the_guard_holds(method):
    import warnings

    from geoscout.locator import RefineConfig, _Refiner

    vec, lat, lon, query = _two_place_cell()
    cell = np.zeros(len(lat), np.int64)
    b_lat, b_lon = lat[16:].mean(), lon[16:].mean()
    lat0, lon0 = 45.4, 15.5  # the cell's own estimate, between A and B
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. OPTICS dividing by zero on repeated points
        refiner = _Refiner(vec, lat, lon, cell, RefineConfig(method=method, k=8, min_cluster_size=3))
        la, lo = refiner.refine(query, 0, lat0, lon0)
    assert float(haversine_km(la, lo, b_lat, b_lon)) < 15.0
    assert float(haversine_km(la, lo, 45.0, 15.0)) > 80.0
    guarded = _Refiner(vec, lat, lon, cell, RefineConfig(method=method, k=8, min_cluster_size=3, max_move_km=10.0))
    assert guarded.refine(query, 0, lat0, lon0) == (lat0, lon0)  # a move over max_move_km is cancelled
    assert refiner.refine(query, 7, lat0, lon0) == (lat0, lon0)  # a cell with no training images: no move


def test_protonet_prototypes_are_locations_not_repeated_views():
    from geoscout.locator import RefineConfig, _Refiner

    vec, lat, lon, _ = _two_place_cell()
    protos = _Refiner(
        vec, lat, lon, np.zeros(len(lat), np.int64), RefineConfig(method="protonet", min_cluster_size=3)
    ).prototypes()
    # 8 distinct locations in two tight groups: 2 clusters, or single locations where OPTICS leaves noise
    assert 2 <= len(protos.lat) <= 8
    near = [
        min(float(haversine_km(a, b, 45.0, 15.0)), float(haversine_km(a, b, 45.8, 16.0)))
        for a, b in zip(protos.lat, protos.lon)
    ]
    assert max(near) < 15.0


def test_failed_in_memory_input_is_named_by_its_id(tiny_locator, small_world_sample):
    """Bytes have no name of their own: a failure reason leads with the caller's id, not '<N bytes>'."""
    data = small_world_sample[0][0].read_bytes()
    good, bad = tiny_locator.locate([data, data[: len(data) // 3]], top_k=2, ids=["whole.jpg", "cut.jpg"])
    assert good.candidates and not good.error
    assert bad.error.message.startswith("cut.jpg: ") and "bytes>" not in bad.error.message
    assert bad.error.source == bad.error.image_id == "cut.jpg" and bad.error.kind == "decode_error"


def test_locate_in_steps_with_progress_gives_the_same_answers(tiny_locator, small_world_sample, capsys):
    """Many photos are located a few batches at a time (so a progress bar can move): same answers as one pass."""
    paths = [*(str(p) for p in small_world_sample[0][:6]), "no/such/photo.jpg"]
    whole = tiny_locator.locate(paths, top_k=3)
    old = tiny_locator.batch_size
    tiny_locator.batch_size = 1  # steps of 4 photos
    try:
        stepped = tiny_locator.locate(paths, top_k=3, progress=True)
    finally:
        tiny_locator.batch_size = old
    assert [p.image_id for p in stepped] == [p.image_id for p in whole]
    for a, b in zip(stepped[:-1], whole[:-1]):  # batch size 1 vs 16 moves the float32 features by rounding only
        assert [(c.lat, c.lon, c.country) for c in a.candidates] == [(c.lat, c.lon, c.country) for c in b.candidates]
        assert [c.probability for c in a.candidates] == pytest.approx([c.probability for c in b.candidates], abs=1e-4)
    assert stepped[-1].error and "no/such/photo.jpg" in stepped[-1].error.message and not whole[-1].ok
    err = capsys.readouterr().err
    assert "7/7" in err and "photo" in err
