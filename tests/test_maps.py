"""Offline maps: SVG structure and geometry, HTML page, PNGs, great-circle arcs."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from geographiclib.geodesic import Geodesic

from geoscout.errors import InvalidInput
from geoscout.geo import haversine_km
from geoscout.maps import (
    View,
    great_circle_segments,
    prediction_map_html,
    prediction_map_png,
    prediction_map_svg,
    world_map_png,
)
from geoscout.types import Candidate, Prediction

NS = {"s": "http://www.w3.org/2000/svg"}
SPHERE = Geodesic(6371.0, 0.0)


def _croatia() -> Prediction:
    return Prediction(
        "split.jpg",
        [
            Candidate(
                43.5081, 16.4402, 0.55, country="HR", country_name="Croatia", admin1="Split-Dalmatia", city="Split"
            ),
            Candidate(45.815, 15.9819, 0.25, country="HR", country_name="Croatia", city="Zagreb"),
            Candidate(44.7866, 20.4489, 0.12, country="RS", country_name="Serbia", city="Belgrade"),
            Candidate(41.9028, 12.4964, 0.08, country="IT", country_name="Italy", city="Rome"),
        ],
        radius_km=150.0,
        heatmap=[[43.5, 16.4, 0.3], [44.0, 16.0, 0.1], [45.8, 16.0, 0.2], [60.0, -100.0, 0.001]],
    )


def _markers(root: ET.Element) -> dict[int, ET.Element]:
    return {int(g.get("data-rank")): g for g in root.iterfind(".//s:g[@class='marker']", NS)}


def _marker_xy(g: ET.Element) -> tuple[float, float]:
    c = g.find("s:circle", NS)
    return float(c.get("cx")), float(c.get("cy"))


def test_svg_is_xml_with_markers_tooltips_radius_and_heat():
    p = _croatia()
    svg = prediction_map_svg(p, width=800, height=500)
    root = ET.fromstring(svg)
    assert root.get("width") == "800" and root.get("viewBox") == "0 0 800 500"
    marks = _markers(root)
    assert sorted(marks) == [1, 2, 3, 4]
    assert marks[1].find("s:text", NS).text == "1"
    tip = marks[1].find("s:title", NS).text
    assert "Split" in tip and "Croatia" in tip and "55.0 %" in tip and "43.5081" in tip
    # every marker lies inside the auto-zoomed canvas, and the radius polygon is there
    for g in marks.values():
        x, y = _marker_xy(g)
        assert 0 < x < 800 and 0 < y < 500
    assert root.find(".//s:g[@class='radius']/s:polygon", NS) is not None
    # heat circles from prediction.heatmap: the point in Canada is off the zoomed map
    heat = root.findall(".//s:g[@class='heat']/s:circle", NS)
    assert len(heat) == 3
    # country outlines with names as tooltips
    names = {t.text for t in root.iterfind(".//s:g[@class='land']/s:path/s:title", NS)}
    assert {"Croatia", "Italy", "Bosnia and Herzegovina"} <= names or {"HR", "IT", "BA"} <= names


def test_svg_geometry_matches_the_projection():
    """Marker pixel positions follow the view's equirectangular projection; the radius circle is 150 km."""
    p = _croatia()
    root = ET.fromstring(prediction_map_svg(p, width=800, height=500, heat=None))
    marks = _markers(root)
    (x1, y1), (x2, y2) = _marker_xy(marks[1]), _marker_xy(marks[2])
    # the vertical pixel distance is proportional to latitude difference, the horizontal one to
    # longitude difference times cos(phi0): ratio checks independent of the unknown scale
    (x4, y4) = _marker_xy(marks[4])
    lat_ratio = (y1 - y2) / (y4 - y1)
    assert lat_ratio == pytest.approx((45.815 - 43.5081) / (43.5081 - 41.9028), rel=0.01)
    lon_ratio = (x1 - x2) / (x1 - x4)
    assert lon_ratio == pytest.approx((16.4402 - 15.9819) / (16.4402 - 12.4964), rel=0.01)
    # radius polygon: each vertex ~150 km from the top candidate after inverting the projection
    poly = root.find(".//s:g[@class='radius']/s:polygon", NS)
    pts = np.array([[float(v) for v in xy.split(",")] for xy in poly.get("points").split()])
    scale_y = (y4 - y1) / (43.5081 - 41.9028)  # px per degree latitude
    scale_x = (x1 - x4) / (16.4402 - 12.4964)
    lat = 43.5081 - (pts[:, 1] - y1) / scale_y
    lon = 16.4402 + (pts[:, 0] - x1) / scale_x
    d = [SPHERE.Inverse(43.5081, 16.4402, a, b)["s12"] for a, b in zip(lat, lon)]
    assert np.allclose(d, 150.0, rtol=0.03)


def test_world_view_and_auto_zoom_differ():
    p = _croatia()
    world = ET.fromstring(prediction_map_svg(p, zoom="world", width=960, height=480))
    zoomed = ET.fromstring(prediction_map_svg(p, zoom="auto", width=960, height=480))
    (wx1, _), (wx4, _) = _marker_xy(_markers(world)[1]), _marker_xy(_markers(world)[4])
    (zx1, _), (zx4, _) = _marker_xy(_markers(zoomed)[1]), _marker_xy(_markers(zoomed)[4])
    assert (wx1 - wx4) == pytest.approx((16.4402 - 12.4964) * 960 / 360, rel=0.01)  # plain 2:1 world
    assert (zx1 - zx4) > 5 * (wx1 - wx4)
    # world outlines are simplified: the SVG stays small
    assert len(prediction_map_svg(p, zoom="world")) < 1_000_000


def test_antimeridian_candidates_stay_together():
    p = Prediction("fiji", [Candidate(-17.7, 179.6, 0.6, city="Labasa"), Candidate(-18.1, -179.2, 0.4)], radius_km=80.0)
    root = ET.fromstring(prediction_map_svg(p, width=600, height=400))
    (x1, y1), (x2, y2) = _marker_xy(_markers(root)[1]), _marker_xy(_markers(root)[2])
    assert 0 < x1 < x2 < 600  # east of 180 drawn to the right, not across the world
    assert y2 > y1  # further south
    assert (x2 - x1) < 300


def test_failed_prediction_and_bad_arguments():
    root = ET.fromstring(prediction_map_svg(Prediction("x.jpg", error="cannot decode")))
    assert "cannot decode" in root.find(".//s:text[@class='error']", NS).text
    with pytest.raises(InvalidInput):
        prediction_map_svg(_croatia(), zoom="street")
    with pytest.raises(InvalidInput, match="same length"):
        prediction_map_svg(_croatia(), heat=([1.0, 2.0], [3.0], [0.5]))
    with pytest.raises(InvalidInput, match="not a valid"):
        prediction_map_svg(_croatia(), heat=np.array([[95.0, 0.0, 1.0]]))


def test_html_is_self_contained(tmp_path):
    preds = [
        _croatia(),
        Prediction("<b>bad</b>.jpg", error="truncated & broken"),
        Prediction("rome", [Candidate(41.9, 12.5, 1.0, city="Rome")]),
    ]
    path = prediction_map_html(preds, tmp_path / "map.html")
    text = path.read_text(encoding="utf-8")
    assert text.count("<svg") == 4 and "<table>" in text  # shared outlines, overview, 2 answered photos
    assert "&lt;b&gt;bad&lt;/b&gt;.jpg" in text and "truncated &amp; broken" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched from the network
    for svg in re.findall(r"<svg.*?</svg>", text, flags=re.S):
        ET.fromstring(svg)


def test_great_circle_segments_on_the_sphere():
    segs = great_circle_segments(48.8566, 2.3522, 40.7128, -74.006)
    assert len(segs) == 1
    s = segs[0]
    assert s[0] == pytest.approx([2.3522, 48.8566]) and s[-1] == pytest.approx([-74.006, 40.7128])
    total = float(np.sum(haversine_km(s[:-1, 1], s[:-1, 0], s[1:, 1], s[1:, 0])))
    assert total == pytest.approx(SPHERE.Inverse(48.8566, 2.3522, 40.7128, -74.006)["s12"], rel=1e-9)
    # across the antimeridian: two pieces meeting at +-180 at the same latitude
    a, b = great_circle_segments(-17.0, 178.0, -18.0, -178.0)
    assert a[-1, 0] == 180.0 and b[0, 0] == -180.0 and a[-1, 1] == pytest.approx(b[0, 1])
    assert np.all(a[:, 0] > 170) and np.all(b[:, 0] < -170)


def test_view_fit_keeps_aspect_and_points():
    lat = np.array([40.0, 42.0, 45.0])
    lon = np.array([10.0, 14.0, 12.0])
    v = View.fit(lat, lon, 800, 400)
    assert (v.lon_max - v.lon_min) * v.k / (v.lat_max - v.lat_min) == pytest.approx(2.0)
    x, y = v.xy(lat, lon)
    assert np.all((x > 0) & (x < 800) & (y > 0) & (y < 400))


def test_pngs(tmp_path):
    from PIL import Image

    w = world_map_png(
        tmp_path / "w.png",
        points=[[45.8, 16.0], [-33.9, 151.2]],
        lines=[[45.8, 16.0, 40.0, -3.7], [-17.0, 179.0, -17.5, -179.0]],
        line_values=[1900.0, 230.0],
        extra_points=[[0.0, 0.0]],
        title="test",
    )
    p = prediction_map_png([_croatia()], tmp_path / "p.png")
    for path in (w, p):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width >= 1000 and im.height >= 500
            assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50
    with pytest.raises(InvalidInput):
        world_map_png(tmp_path / "bad.png", points=[[1.0, 2.0, 3.0]])
    with pytest.raises(InvalidInput, match="line_values"):
        world_map_png(tmp_path / "bad.png", lines=[[1.0, 2.0, 3.0, 4.0]], line_values=[1.0, 2.0])
    assert not (tmp_path / "bad.png").exists()


def test_html_embeds_thumbnails_of_real_photos(shared_data, tmp_path):
    import base64
    import io

    from PIL import Image

    photo = sorted((shared_data("im2gps") / "images").glob("*.jpg"))[0]
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a photo", encoding="utf-8")
    preds = [
        Prediction(str(photo), [Candidate(41.9, 12.5, 1.0)]),
        Prediction(str(not_image), [Candidate(1.0, 2.0, 1.0)]),
    ]
    text = prediction_map_html(preds, tmp_path / "t.html").read_text(encoding="utf-8")
    uris = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', text)
    assert len(uris) == 1
    with Image.open(io.BytesIO(base64.b64decode(uris[0]))) as im:
        assert im.format == "JPEG" and max(im.size) == 360
    assert "data:image/jpeg" not in prediction_map_html(preds, tmp_path / "n.html", thumbnails=False).read_text(
        encoding="utf-8"
    )


def test_folder_page_has_overview_shared_outlines_and_short_panorama_titles(shared_data, tmp_path):
    """Many photos: an overview map linking to each section; world outlines written once; a panorama
    named by its folder with one thumbnail per view."""
    views = sorted(str(p) for p in (shared_data("streetview-croatia") / "images").iterdir())[0]
    views = sorted(str(p) for p in Path(views).glob("*.jpg"))
    assert len(views) == 4
    world = [Candidate(45.0, 16.0, 0.4), Candidate(-30.0, 150.0, 0.3), Candidate(40.0, -100.0, 0.3)]
    preds = [Prediction("+".join(views), world, radius_km=9000.0)] + [
        Prediction(f"photo{i}.jpg", world, radius_km=9000.0) for i in range(5)
    ]
    text = prediction_map_html(preds, tmp_path / "folder.html").read_text(encoding="utf-8")
    overview = re.search(r'<svg[^>]*class="overview".*?</svg>', text, flags=re.S).group(0)
    assert [int(n) for n in re.findall(r'<a href="#p(\d+)">', overview)] == [1, 2, 3, 4, 5, 6]
    assert all(f'id="p{n}"' in text for n in range(1, 7))
    assert text.count('<g id="gs-world-960x480">') == 1 and text.count('<use href="#gs-world-960x480"/>') == 7
    folder = Path(views[0]).parent.name
    assert f"1. panorama {folder}/ (4 views: " in text and "+" not in re.search(r"<h2[^>]*>(.*?)</h2>", text).group(1)
    assert text.count('class="thumb"') == 4
    for svg in re.findall(r"<svg.*?</svg>", text, flags=re.S):
        ET.fromstring(svg)


def test_png_has_title_legend_and_labels(tmp_path):
    """The PNG map carries a title strip above the map, a legend box and place labels."""
    from PIL import Image

    one = prediction_map_png([_croatia()], tmp_path / "one.png")
    bare = prediction_map_png([_croatia()], tmp_path / "untitled.png", title="")
    with Image.open(one) as a, Image.open(bare) as b:
        top_a = np.asarray(a.convert("L"))[:45]
        top_b = np.asarray(b.convert("L"))[:45]
        assert (top_a < 100).sum() > 200 and (top_b < 100).sum() == 0  # the title's text, and nothing without it
        assert a.height == b.height == 750
        legend = np.asarray(a.convert("L"))[-120:, :260]  # lower-left corner: the legend's text
        assert (legend < 100).sum() > 200
