"""geoscout.places: countries, admin-1, cities, land/sea. References: GeoNames / Wikipedia
coordinates of named places and, for random points, the independent Natural Earth 50m
GeoJSON in ../shared/geo."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from geoscout.errors import InvalidInput
from geoscout.places import (
    CountryShape,
    country_of,
    country_polygons,
    geonames_cities,
    is_land,
    reverse_geocode,
    world_outlines,
)


@pytest.fixture(scope="module")
def random_points() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 100_000
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))  # uniform on the sphere
    lon = rng.uniform(-180, 180, n)
    return lat, lon


@pytest.fixture(scope="module")
def random_labels(random_points):
    return reverse_geocode(*random_points)


def test_paris():
    df = reverse_geocode(48.8566, 2.3522)
    assert list(df.columns)[:6] == ["country", "country_name", "continent", "admin1", "city", "on_land"]
    row = df.iloc[0]
    assert (row.country, row.country_name, row.continent) == ("FR", "France", "Europe")
    assert row.admin1 == "Île-de-France"
    assert row.city == "Paris"
    assert bool(row.on_land) is True
    assert row.city_km < 2.0


def test_mid_atlantic_is_nothing():
    row = reverse_geocode(0.0, -30.0).iloc[0]
    assert row.country is None and row.country_name is None and row.admin1 is None and row.city is None
    assert bool(row.on_land) is False
    assert math.isnan(row.city_km)
    assert not is_land(0.0, -30.0)
    assert country_of(0.0, -30.0) is None or country_of(0.0, -30.0).item() is None


@pytest.mark.parametrize(
    "lat, lon, code, city",
    [
        (48.5839, 7.7455, "FR", "Strasbourg"),  # Strasbourg ...
        (48.5730, 7.8152, "DE", "Kehl"),  # ... and Kehl across the Rhine
        (31.7587, -106.4869, "US", "El Paso"),
        (31.7202, -106.4608, "MX", "Ciudad Juárez"),
        # Gorizia's own GeoNames point lies ~0.9 km inside Slovenia on the 10m border
        # (Natural Earth 10m is ~1 km accurate); a point 2 km west is unambiguous.
        (45.9436, 13.5900, "IT", None),
        (45.9560, 13.6484, "SI", "Nova Gorica"),
    ],
)
def test_both_sides_of_borders(lat, lon, code, city):
    row = reverse_geocode(lat, lon).iloc[0]
    assert row.country == code
    if city:
        assert row.city == city


def test_minus_99_trap_france_norway_kosovo():
    got = country_of([46.0, 61.0, 42.6629, 78.2232], [2.0, 9.0, 21.1655, 15.6267])  # France, Norway, Pristina, Svalbard
    assert list(got) == ["FR", "NO", "XK", "NO"]
    codes = {s.iso2 for s in country_polygons()}
    assert {"FR", "NO", "XK", "TW"} <= codes
    assert "-99" not in codes and all(len(c) == 2 for c in codes)


def test_antimeridian_fiji_and_chukotka():
    # Labasa (179.36 E), Vanua Balavu (-179.0, east of 180), Taveuni (-16.85, 179.97 ... -179.9)
    df = reverse_geocode([-16.4332, -17.2300, 64.7337], [179.36451, -178.9700, 177.5149])
    assert list(df.country) == ["FJ", "FJ", "RU"]
    # 180 and -180 are the same meridian
    assert country_of(-16.8, 180.0).item() == country_of(-16.8, -180.0).item()
    assert country_of(10.0, 190.0).item() == country_of(10.0, -170.0).item()


def test_coast_tolerance_snaps_piers_only_when_asked():
    # Brighton Palace Pier end, ~0.5 km off the 10m coastline
    lat, lon = 50.8139, -0.1365
    assert country_of(lat, lon).item() == "GB"
    assert country_of(lat, lon, coast_km=0.0).item() in (None, "GB")
    # 30 km out in the English Channel: no country even with a generous tolerance
    assert country_of(50.5, -0.14, coast_km=5.0).item() is None
    with pytest.raises(InvalidInput):
        country_of(lat, lon, coast_km=-1)


def test_invalid_coordinates_raise_clearly():
    with pytest.raises(InvalidInput, match="latitude"):
        reverse_geocode([10.0, 95.0], [0.0, 0.0])
    with pytest.raises(InvalidInput):
        country_of(float("nan"), 0.0)


def test_shapes_and_empty_input():
    assert reverse_geocode([], []).shape == (0, 7)
    assert country_of(np.zeros((2, 3)), np.zeros((2, 3))).shape == (2, 3)
    assert is_land(np.zeros((2, 3)), np.zeros((2, 3))).shape == (2, 3)


def test_100k_random_points_shape_and_consistency(random_points, random_labels):
    lat, lon = random_points
    df = random_labels
    assert df.shape == (len(lat), 7)
    has = df["country"].notna()
    # ~29 % of the sphere is land (incl. Antarctica); countries cover nearly all of it
    assert 0.26 < has.mean() < 0.32
    assert 0.26 < df["on_land"].mean() < 0.32
    assert df.loc[has, "country_name"].notna().all() and df.loc[has, "continent"].notna().all()
    # a point with a country is land unless it was snapped from the sea within 2 km
    assert (df.loc[has, "on_land"]).mean() > 0.99
    # a named city is of the labelled country
    cities = geonames_cities()
    lookup = cities.drop_duplicates(["name", "country"]).set_index(["name", "country"])
    named = df[df["city"].notna() & has]
    assert len(named) > 0.8 * has.sum() - 0.1 * len(df)  # Antarctica has no GeoNames places
    assert all((c, k) in lookup.index for c, k in zip(named["city"].head(500), named["country"].head(500)))


def test_random_points_agree_with_natural_earth_50m(random_points, random_labels, shared_geo):
    import shapely

    gj = json.loads((shared_geo / "naturalearth" / "ne_50m_admin_0_countries.json").read_text())
    lat, lon = random_points
    sub = slice(0, 20_000)
    pts = shapely.points(lon[sub], lat[sub])
    ref = np.full(pts.size, None, dtype=object)
    for f in gj["features"]:
        p = f["properties"]
        code = next((p.get(k) for k in ("ISO_A2_EH", "ISO_A2", "WB_A2") if len(str(p.get(k) or "")) == 2), None)
        g = shapely.geometry.shape(f["geometry"])
        shapely.prepare(g)
        inside = shapely.contains_xy(g, lon[sub], lat[sub])
        ref[inside & (ref == None)] = code  # noqa: E711
    ours = random_labels["country"].to_numpy(dtype=object)[sub]
    both = (ref != None) & (ours != None)  # noqa: E711
    assert both.sum() > 4000
    agree = (ref[both] == ours[both]).mean()
    assert agree > 0.99, agree
    # land/sea agrees with the 50m polygons except along coasts
    assert ((ref != None) == (ours != None)).mean() > 0.98  # noqa: E711


def test_country_polygons_and_outlines():
    shapes = country_polygons()
    assert 230 <= len(shapes) <= 260
    assert all(isinstance(s, CountryShape) for s in shapes)
    assert len({s.iso2 for s in shapes}) == len(shapes)
    fr = next(s for s in shapes if s.iso2 == "FR")
    assert fr.geometry.contains(__import__("shapely").Point(2.35, 48.85))
    out = world_outlines(0.5)
    assert len(out) == len(shapes)
    full = sum(__import__("shapely").get_num_coordinates(s.geometry) for s in shapes)
    simple = sum(__import__("shapely").get_num_coordinates(g) for _, g in out)
    assert simple < full / 5
    assert world_outlines(0.5)[0][1] is out[0][1]  # cached


def test_geonames_cities():
    df = geonames_cities()
    assert list(df.columns) == ["name", "lat", "lon", "country", "admin1", "admin2", "population"]
    assert len(df) > 100_000
    big = geonames_cities(5_000_000)
    assert 20 < len(big) < 200
    assert {"Tokyo", "São Paulo"} & set(big["name"])
    assert (big["population"] >= 5_000_000).all()
    with pytest.raises(InvalidInput):
        geonames_cities(-1)


def test_croatia_set_is_croatian(shared_data):
    m = pd.read_csv(shared_data("streetview-croatia") / "manifest.csv")
    loc = m.drop_duplicates("location_id")
    df = reverse_geocode(loc["lat"].to_numpy(), loc["lon"].to_numpy())
    frac = (df["country"] == "HR").mean()
    assert frac >= 0.95, df["country"].value_counts().to_dict()
    assert set(df.loc[df["country"] == "HR", "country_name"]) == {"Croatia"}


@pytest.mark.slow  # parses and tiles the 10m shapefile from scratch (~4 s idle, more on a busy machine)
def test_first_use_from_many_threads_loads_once_then_uses_the_disk_cache(monkeypatch, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    import shapely

    from geoscout.places import countries

    before = country_polygons()
    calls = []
    real = countries._records

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(countries, "_records", counting)
    monkeypatch.setenv("GEOSCOUT_HOME", str(tmp_path))  # empty cache: parse the shapefile once
    countries._tables.clear()
    try:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda _: tuple(country_of([48.85, 59.9], [2.35, 10.75])), range(8)))
        assert set(got) == {("FR", "NO")}
        assert len(calls) == 1
        assert len(list((tmp_path / "places").glob("countries_*.npz"))) == 1
        countries._tables.clear()  # now from the WKB cache: same shapes, no parsing
        after = country_polygons()
        assert len(calls) == 1
        assert [s.iso2 for s in after] == [s.iso2 for s in before]
        assert [s.name for s in after] == [s.name for s in before]
        assert all(shapely.equals_exact(a.geometry, b.geometry, 0) for a, b in zip(after, before))
    finally:
        countries._tables.clear()
