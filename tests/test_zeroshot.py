"""Zero-shot places: a tiny CLIP (both towers, real BPE tokenizer) saved locally, real photos, installed places data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from geoscout.errors import InvalidInput

PHOTOS = (
    "streetview-world/images/Denmark_56.210641_10.577111.jpg",
    "im2gps/images/104123223_7410c654ba_19_19355699@N00.jpg",
)


@pytest.fixture(scope="module")
def photos(shared_dir):
    paths = [shared_dir / "data" / p for p in PHOTOS]
    for p in paths:
        if not p.is_file():
            pytest.skip(f"needs {p}")
    return [str(p) for p in paths]


def test_country_label_points_lie_in_their_country_by_an_independent_map(shared_geo):
    """Natural Earth 10m label points (ours) fall inside the same country of the separate 50m polygons."""
    import shapely

    from geoscout.zeroshot import country_places

    ps = country_places()
    assert len(ps) > 200 and len(set(ps.ids)) == len(ps)
    feats = json.loads((shared_geo / "naturalearth" / "ne_50m_admin_0_countries.json").read_text())["features"]
    shapes = {}
    for f in feats:
        code = f["properties"].get("ISO_A2")
        if code and len(code) == 2 and code != "-9":
            shapes[code] = shapely.geometry.shape(f["geometry"])
    index = {c: i for i, c in enumerate(ps.ids)}
    common = sorted(set(shapes) & set(index))
    inside = [
        shapes[c].distance(shapely.Point(ps.lon[index[c]], ps.lat[index[c]])) < 0.1 for c in common
    ]  # 0.1° ≈ 11 km
    assert len(common) > 180 and np.mean(inside) > 0.97, [c for c, ok in zip(common, inside) if not ok]
    hr = index["HR"]
    assert ps.fields[hr] == {"country": "Croatia"}


def test_admin1_points_near_natural_earths_own(shared_geo):
    """GeoNames-derived region points (ours) vs Natural Earth's admin-1 label points for Croatia (independent)."""
    from geographiclib.geodesic import Geodesic

    from geoscout.places import country_of
    from geoscout.zeroshot import admin1_places

    ps = admin1_places(["HR"])
    assert 18 <= len(ps) <= 24 and all(i.startswith("HR/") for i in ps.ids)
    assert set(country_of(ps.lat, ps.lon)) == {"HR"}  # every point inside Croatia's polygon
    ne = json.loads((shared_geo / "naturalearth" / "ne_10m_admin_1_label_points.json").read_text())["features"]
    ref = [f["geometry"]["coordinates"] for f in ne if f["properties"].get("iso_a2") == "HR"]
    assert len(ref) >= 20
    g = Geodesic(6371e3, 0)  # sphere, as the project measures distance
    nearest = [min(g.Inverse(lat, lon, la, lo)["s12"] / 1e3 for la, lo in zip(ps.lat, ps.lon)) for lon, lat in ref]
    assert np.median(nearest) < 40, nearest


def test_places_file_names_and_coordinates(tmp_path):
    from geographiclib.geodesic import Geodesic

    from geoscout.zeroshot import load_place_list, place_set

    f = tmp_path / "places.csv"
    f.write_text("name,lat,lon,country\nZagreb,,,HR\nSplit,,,\nDenmark,,,\nMy farm,45.1,17.2,HR\n", encoding="utf-8")
    ps = place_set(str(f))
    assert ps.kind == "places" and ps.ids == ["Zagreb", "Split", "Denmark", "My farm"]
    g = Geodesic(6371e3, 0)

    def km(i, la, lo):
        return g.Inverse(ps.lat[i], ps.lon[i], la, lo)["s12"] / 1e3

    assert km(0, 45.8150, 15.9819) < 10 and km(1, 43.5081, 16.4402) < 10  # the cities, from GeoNames
    assert km(2, 56.0, 9.5) < 150 and (ps.lat[3], ps.lon[3]) == (45.1, 17.2)
    assert ps.country == ["HR", "HR", "DK", "HR"]
    # the point of each place is its own; assign() picks the nearest listed place
    assert list(ps.assign([45.8, 43.5, 55.7], [16.0, 16.4, 12.5])) == [0, 1, 2]
    txt = tmp_path / "places.txt"
    txt.write_text("# my list\nZagreb\nNowhereville Qq\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="Nowhereville Qq"):
        load_place_list(txt)
    with pytest.raises(InvalidInput, match="expected countries"):
        place_set("continents")
    with pytest.raises(InvalidInput, match="XX"):
        place_set("countries:HR,XX")


def test_public_api():
    import geoscout
    from geoscout.zeroshot import fuse_with_prior, zeroshot_head

    assert geoscout.zeroshot_head is zeroshot_head and geoscout.fuse_with_prior is fuse_with_prior


def test_prompt_files(tmp_path):
    from geoscout.zeroshot import DEFAULT_PROMPTS, load_prompts

    shipped = load_prompts()
    assert shipped["countries"][0] == "A Street View photo in {country}." and set(shipped) == {
        "countries",
        "admin1",
        "places",
    }
    own = tmp_path / "p.toml"
    own.write_text(DEFAULT_PROMPTS.read_text().replace("A road in {country}.", "A dirt road in {country}."))
    assert "A dirt road in {country}." in load_prompts(own)["countries"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[countries]\ntemplates = ["A photo in {city}."]\n')
    with pytest.raises(InvalidInput, match=r"\{city\}"):
        load_prompts(bad)
    bad.write_text("[countries]\ntemplates = [")
    with pytest.raises(InvalidInput, match="not a valid TOML"):
        load_prompts(bad)


def test_zeroshot_locate_matches_clip_reference(tiny_clip, photos):
    """Probabilities equal CLIP's softmax over prompt-ensemble text features, computed with transformers directly."""
    import torch
    from transformers import AutoTokenizer, CLIPModel

    from geoscout.locator import load_model
    from geoscout.zeroshot import load_prompts

    loc = load_model(f"zeroshot:hf:{tiny_clip}", places="countries:HR,DK,FR,US,AU")
    preds = loc.locate(photos, top_k=5)
    ps = loc.head.places
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    tok = AutoTokenizer.from_pretrained(tiny_clip)
    templates = load_prompts()["countries"]
    with torch.no_grad():
        text = []
        for f in ps.fields:
            enc = tok([t.format(**f) for t in templates], padding=True, return_tensors="pt")
            t = model.get_text_features(**enc)
            t = getattr(t, "pooler_output", t)
            t = t / t.norm(dim=1, keepdim=True)
            m = t.mean(0)
            text.append(m / m.norm())
        text = torch.stack(text)
        px = torch.from_numpy(np.stack([loc.backbone.preprocess(loc.backbone.load_image(p)) for p in photos]))
        im = model.get_image_features(pixel_values=px)
        im = getattr(im, "pooler_output", im)
        im = im / im.norm(dim=1, keepdim=True)
        ref = torch.softmax(model.logit_scale.exp() * im @ text.T, dim=1).numpy()
    for i, p in enumerate(preds):
        assert p.ok and len(p.candidates) == 5
        got = {c.cell: c.probability for c in p.candidates}
        want = dict(zip(ps.ids, ref[i]))
        for k in ps.ids:
            assert got[k] == pytest.approx(want[k], abs=1e-5)
        top = ps.ids.index(p.top.cell)
        assert (p.top.lat, p.top.lon) == (ps.lat[top], ps.lon[top]) and p.top.country == p.top.cell
        assert 0 < p.radius_km < 20000 and 0 < p.expected_score < 5000


def test_radius_spreads_a_country_over_its_places(tiny_clip):
    """All mass on Croatia: the 68 % radius is the country's spread of population (tens to a few hundred km)."""
    from geographiclib.geodesic import Geodesic

    from geoscout.backbones import create_backbone
    from geoscout.zeroshot import zeroshot_head

    head = zeroshot_head(create_backbone(f"hf:{tiny_clip}"), "countries:HR,DK")
    prob = np.array([0.0, 1.0]) if head.places.ids == ["DK", "HR"] else np.array([1.0, 0.0])
    i = head.places.ids.index("HR")
    radius, expected = head.summarize(prob, (head.places.lat[i], head.places.lon[i]))
    # Croatia: the farthest towns (Dubrovnik, Istria) are ~200-400 km from a central point
    far = Geodesic(6371e3, 0).Inverse(head.places.lat[i], head.places.lon[i], 42.65, 18.09)["s12"] / 1e3
    assert 30 < radius < far, (radius, far)
    assert 4000 < expected < 5000


def test_no_text_tower_is_one_clear_line(photos):
    res = CliRunner().invoke(_app(), ["locate", "-m", "zeroshot:effnet-lite0", photos[0]])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "no text tower" in lines[0] and "effnet-lite0" in lines[0], res.output
    res = CliRunner().invoke(_app(), ["locate", "--prior", "zeroshot", photos[0]])
    assert res.exit_code == 2 and "no text tower" in res.output and "effnet-lite2" in res.output
    res = CliRunner().invoke(_app(), ["locate", "--places", "admin1", photos[0]])
    assert res.exit_code == 2 and "apply to -m zeroshot" in res.output


def test_cli_zeroshot_with_own_places_and_prompts(tiny_clip, photos, tmp_path):
    places = tmp_path / "places.txt"
    places.write_text("Zagreb\nSplit\nRijeka\nCopenhagen\n", encoding="utf-8")
    prompts = tmp_path / "prompts.toml"
    prompts.write_text('[places]\ntemplates = ["A photo of {place}.", "A street in {place}."]\n')
    res = CliRunner().invoke(
        _app(),
        [
            "locate",
            "-m",
            f"zeroshot:hf:{tiny_clip}",
            "--places",
            str(places),
            "--prompts",
            str(prompts),
            "-f",
            "json",
            "-k",
            "4",
            photos[0],
        ],
    )
    assert res.exit_code == 0, res.output
    (pred,) = json.loads(res.stdout)
    cells = [c["cell"] for c in pred["candidates"]]
    assert sorted(cells) == ["Copenhagen", "Rijeka", "Split", "Zagreb"]
    assert sum(c["probability"] for c in pred["candidates"]) == pytest.approx(1.0)
    cph = next(c for c in pred["candidates"] if c["cell"] == "Copenhagen")
    assert cph["country"] == "DK" and abs(cph["lat"] - 55.68) < 0.1


def test_prior_fusion_is_the_product_of_experts(tiny_clip, small_world_sample):
    """A k-NN head on tiny-CLIP embeddings of real photos, fused with the zero-shot country prior."""
    from geoscout.backbones import create_backbone
    from geoscout.embeddings import embed_images
    from geoscout.heads import create_head
    from geoscout.locator import Locator
    from geoscout.places import country_of
    from geoscout.zeroshot import PriorFusedHead, fuse_with_prior

    paths, lat, lon = small_world_sample
    paths, lat, lon = paths[:40], lat[:40], lon[:40]
    bb = create_backbone(f"hf:{tiny_clip}")
    X, failures = embed_images([str(p) for p in paths], bb, batch_size=16)
    assert not failures
    head = create_head("knn", k=5).fit(X, np.stack([lat, lon], axis=1))
    loc = Locator(bb, head, name="tiny-clip-knn")
    fused = fuse_with_prior(loc, "countries", weight=0.5)
    assert isinstance(fused.head, PriorFusedHead) and loc.head is head  # the original is untouched
    base = head.predict_distribution(X[:5])
    got = fused.head.predict_distribution(X[:5])
    prior = fused.head.prior
    pz = prior.predict_proba(X[:5])
    codes = country_of(base.lat, base.lon)
    col = np.array([prior.places.ids.index(c) if c in prior.places.ids else -1 for c in codes.ravel()])
    col = col.reshape(codes.shape)
    for i in range(5):
        idx = col if col.ndim == 1 else col[i]
        w = np.where(idx >= 0, pz[i, np.maximum(idx, 0)], pz[i].min())
        want = base.prob[i] * w**0.5
        np.testing.assert_allclose(got.prob[i], want / want.sum(), rtol=1e-9, atol=1e-12)
    same = PriorFusedHead(head, prior, weight=0.0).predict_distribution(X[:5])
    np.testing.assert_allclose(same.prob, base.prob, atol=1e-12)
    preds = fused.locate([str(p) for p in paths[:2]], top_k=3)
    assert all(p.ok for p in preds) and "zeroshot(countries)" in fused.name


def _app():
    from geoscout.cli import app

    return app
