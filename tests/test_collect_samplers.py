"""Samplers: reproducible from a seed, where they promise to be (checked against independent references)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from geoscout.collect.samplers import SAMPLERS, create_sampler, parse_bbox, parse_quotas, parse_spacing, uniform_sphere
from geoscout.errors import InvalidInput, UnknownName
from geoscout.geo import haversine_km

BOX = "13.4,42.4,19.5,46.6"  # W,S,E,N around Croatia


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    p = tmp_path_factory.mktemp("poly") / "sq.geojson"
    p.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {
                            "type": "MultiPolygon",
                            "coordinates": [
                                [[[10.0, 50.0], [11.0, 50.0], [11.0, 51.0], [10.0, 51.0], [10.0, 50.0]]],
                                [[[-60.0, -10.0], [-59.0, -10.0], [-59.5, -9.0], [-60.0, -10.0]]],
                            ],
                        },
                    }
                ],
            }
        )
    )
    return p


def _cases(square, shared_geo=None):
    return {
        "land": {},
        "bbox": {"bbox": BOX},
        "polygon": {"polygon": str(square)},
        "grid": {"spacing": "25km", "bbox": BOX},
        "countries": {"countries": "HR:3,SI:2"},
        "cities": {"min_population": 100000, "radius_km": 2.0},
        "citybox": {"cities": "London,Manchester", "box_km": 8},
    }


@pytest.mark.parametrize("name", ["land", "bbox", "polygon", "grid", "countries", "cities", "citybox"])
def test_reproducible_from_seed(name, square):
    kw = _cases(square)[name]
    s = create_sampler(name, **kw)
    a, b, c = s.sample(40, seed=5), create_sampler(name, **kw).sample(40, seed=5), s.sample(40, seed=6)
    assert a == b and len(a) == 40
    assert a != c
    assert all(-90 <= p.lat <= 90 and -180 <= p.lon < 180 for p in a)
    # the stream is a prefix-stable sequence: resuming at k gives the same points as a fresh stream
    import itertools

    assert list(itertools.islice(s.points(5), 10, 20)) == a[10:20]


def test_registry_lists_and_rejects():
    assert set(SAMPLERS.list()) == {"land", "population", "cities", "countries", "bbox", "polygon", "grid", "citybox"}
    with pytest.raises(UnknownName, match="Did you mean 'grid'"):
        create_sampler("gird")


def test_uniform_sphere_is_area_uniform():
    from scipy.stats import kstest

    lat, lon = uniform_sphere(np.random.default_rng(0), 20000)
    assert kstest(np.sin(np.radians(lat)), "uniform", args=(-1, 2)).pvalue > 0.01
    assert kstest(lon, "uniform", args=(-180, 360)).pvalue > 0.01
    lat, lon = uniform_sphere(np.random.default_rng(1), 5000, (170.0, -10.0, -170.0, 10.0))  # across 180°
    assert ((lon >= 170) | (lon < -170)).all() and np.abs(lat).max() <= 10


def test_land_samplers_are_on_land():
    """Against an independent reference: Natural Earth country polygons (10 m) via reverse_geocode/country_of."""
    from geoscout.places import country_of

    pts = create_sampler("land").sample(1500, seed=0)
    lat, lon = np.array([p.lat for p in pts]), np.array([p.lon for p in pts])
    cc = country_of(lat, lon)
    inside = np.array([c is not None for c in cc])
    # Antarctica and a few coastal cells sit outside any polygon's exact line; nearly all is in a country
    assert inside.mean() > 0.93
    assert (np.abs(lat) < 60).mean() > 0.6  # not just the poles
    box = create_sampler("bbox", bbox=BOX).sample(400, seed=1)
    cc = country_of(np.array([p.lat for p in box]), np.array([p.lon for p in box]))
    assert {c for c in cc if c} <= {"HR", "SI", "BA", "HU", "RS", "ME", "IT", "AT"}
    assert np.mean([c is not None for c in cc]) > 0.97  # the Adriatic is excluded


def test_polygon_sampler_exact_inside_and_area_weighted(square):
    from matplotlib.path import Path as MplPath

    pts = create_sampler("polygon", polygon=str(square)).sample(3000, seed=2)
    lat, lon = np.array([p.lat for p in pts]), np.array([p.lon for p in pts])
    a = MplPath([(10, 50), (11, 50), (11, 51), (10, 51)]).contains_points(np.c_[lon, lat])
    b = MplPath([(-60, -10), (-59, -10), (-59.5, -9)]).contains_points(np.c_[lon, lat])
    assert (a | b).all()
    # part areas on the sphere: square ~ 1 deg x cos(50.5°) ; triangle ~ 0.5 deg² x cos(9.5°)
    expect = (math.cos(math.radians(50.5))) / (math.cos(math.radians(50.5)) + 0.5 * math.cos(math.radians(9.5)))
    assert abs(a.mean() - expect) < 0.03


def test_country_quotas_and_polygon_by_code():
    from geoscout.places import country_of

    s = create_sampler("countries", countries="HR:10,SI:5")
    assert s.quotas == {"HR": 10, "SI": 5}
    pts = s.sample(200, seed=0)
    groups = [p.group for p in pts]
    assert set(groups) == {"HR", "SI"}
    cc = country_of(np.array([p.lat for p in pts]), np.array([p.lon for p in pts]))
    assert np.mean([c == g for c, g in zip(cc, groups)]) > 0.97
    pts = create_sampler("polygon:SI").sample(100, seed=3)
    assert np.mean(country_of(np.array([p.lat for p in pts]), np.array([p.lon for p in pts])) == "SI") > 0.97
    with pytest.raises(InvalidInput, match="ISO alpha-2"):
        create_sampler("polygon", polygon="XX")


def test_grid_spacing_km():
    s = create_sampler("grid", spacing="20km", bbox=BOX)
    pts = s.sample(10_000, seed=0)
    assert len(pts) == len(s) and len({(p.lat, p.lon) for p in pts}) == len(pts)
    lat, lon = np.array([p.lat for p in pts]), np.array([p.lon for p in pts])
    from sklearn.neighbors import BallTree

    tree = BallTree(np.radians(np.c_[lat, lon]), metric="haversine")
    d, _ = tree.query(np.radians(np.c_[lat, lon]), k=2)
    nn = d[:, 1] * 6371.0
    assert np.median(nn) == pytest.approx(20.0, rel=0.05)
    assert (
        create_sampler("grid", spacing="1deg", bbox=BOX, land_only=False).sample(1000)
        and len(create_sampler("grid", spacing="1deg", bbox=BOX, land_only=False)) == 6 * 4
    )


def test_cities_and_citybox_near_their_places():
    from geoscout.places import geonames_cities

    cities = geonames_cities(min_population=100000)
    pts = create_sampler("cities", min_population=100000, radius_km=2.0).sample(300, seed=0)
    from sklearn.neighbors import BallTree

    tree = BallTree(np.radians(cities[["lat", "lon"]].to_numpy(dtype=float)), metric="haversine")
    d, _ = tree.query(np.radians([[p.lat, p.lon] for p in pts]), k=1)
    assert (d[:, 0] * 6371.0 <= 2.0 + 1e-6).all()
    pts = create_sampler("citybox", cities="London,Manchester", box_km=8).sample(100, seed=1)
    ref = {"London": (51.5074, -0.1278), "Manchester": (53.4808, -2.2426)}  # independent city centres
    for p in pts:
        assert haversine_km(p.lat, p.lon, *ref[p.group]) < 4 * math.sqrt(2) + 3.0
    assert {p.group for p in pts} == {"London", "Manchester"}
    with pytest.raises(InvalidInput, match="not in GeoNames"):
        create_sampler("citybox", cities="Londonnnnx")


def test_population_sampler_follows_people(shared_geo):
    from geoscout.places import country_of

    pts = create_sampler("population", aux_dir=str(shared_geo)).sample(2000, seed=0)
    cc = country_of(np.array([p.lat for p in pts]), np.array([p.lon for p in pts]))
    share = np.mean([c in ("IN", "CN") for c in cc])
    assert 0.28 < share < 0.46  # ~36 % of the world's people (2020); ~9 % of its land
    land = create_sampler("land").sample(2000, seed=0)
    cc = country_of(np.array([p.lat for p in land]), np.array([p.lon for p in land]))
    assert np.mean([c in ("IN", "CN") for c in cc]) < 0.15
    from geoscout.errors import GeoscoutError

    with pytest.raises(GeoscoutError, match="--aux-dir"):
        create_sampler("population", aux_dir=str(shared_geo / "nope"))
    with pytest.raises(GeoscoutError, match="gpw_v4_population_density_rev11_2020_30_min.asc not found") as err:
        create_sampler("population", aux_dir=str(shared_geo / "koppen"))
    # collect has no --no-aux: the way out it names is another sampler
    assert "--no-aux" not in str(err.value) and "choose a sampler that needs no raster" in str(err.value)


def test_parsers():
    assert parse_bbox("13.4,42.4,19.5,46.6") == (13.4, 42.4, 19.5, 46.6)
    assert parse_quotas("hr:100, SI:50,HR:1") == {"HR": 101, "SI": 50}
    assert parse_spacing("10km") == (10.0, "km") and parse_spacing("0.5deg") == (0.5, "deg")
    for bad in ("1,2,3", "0,50,1,40", "a,b,c,d"):
        with pytest.raises(InvalidInput, match="bbox"):
            parse_bbox(bad)
    with pytest.raises(InvalidInput, match="CODE:COUNT"):
        parse_quotas("HR")
    with pytest.raises(InvalidInput, match="not a known country"):
        parse_quotas("HRX:10")
    with pytest.raises(InvalidInput, match="spacing"):
        parse_spacing("ten km")


def test_countries_by_name_or_code():
    """--polygon Croatia works like --polygon HR (and HRV); a typo names the close matches."""
    hr = create_sampler("polygon", polygon="HR")
    for spec in ("Croatia", "croatia", "HRV", "hr"):
        s = create_sampler("polygon", polygon=spec)
        assert s.spec == "HR" and s.geometry.equals(hr.geometry)
    with pytest.raises(InvalidInput, match=r"'Croatiaa'.*alpha-2 or alpha-3 code or an English name.*Croatia \(HR\)"):
        create_sampler("polygon", polygon="Croatiaa")
    assert parse_quotas("Croatia:3,SVN:2,hr:1") == {"HR": 4, "SI": 2}
