"""Partitions (geoscout.cells): every registered spec on real coordinates, references, properties."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoscout.cells import PARTITIONS, Partition, create_partition, list_partitions, load_partition
from geoscout.errors import InvalidInput, NotFittedError, UnknownName
from geoscout.geo import geohash_encode

# one spec per registered partition (keep in step with the registry: test_every_partition_is_tested)
SPECS = {
    "geohash": "geohash:3",
    "grid": "grid:1.0",
    "h3": "h3:3",
    "quadtree": "quadtree:10:60",
    "country": "country",
    "admin1": "admin1",
    "cities": "cities:40",
    "semantic": "semantic",
}
SPEC_KW = {"semantic": {"min_samples": 8, "max_samples": 24}}


@pytest.fixture(scope="module")
def coords(shared_data) -> pd.DataFrame:
    """Croatia Street View (one row per location) + world Street View + OSV-5M sample."""
    frames = []
    for name in ("streetview-croatia", "streetview-world", "osv5m-sample"):
        df = pd.read_csv(shared_data(name) / "manifest.csv")
        if "location_id" in df:
            df = df.drop_duplicates("location_id")
        frames.append(df.assign(dataset=name))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def fitted(coords):
    cache: dict[str, Partition] = {}

    def get(name: str) -> Partition:
        if name not in cache:
            cache[name] = create_partition(SPECS[name], **SPEC_KW.get(name, {})).fit(coords.lat, coords.lon)
        return cache[name]

    return get


def test_every_partition_is_tested():
    assert set(list_partitions()) == set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_not_fitted_raises(name):
    p = create_partition(SPECS[name], **SPEC_KW.get(name, {}))
    assert p.spec == SPECS[name]
    for call in (lambda: p.assign([45.0], [16.0]), lambda: p.n_cells, lambda: p.centroids, lambda: p.polygon(0)):
        with pytest.raises(NotFittedError):
            call()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_fit_assign_save_load_roundtrip(name, fitted, coords, tmp_path):
    p = fitted(name)
    la, lo = coords.lat.to_numpy(), coords.lon.to_numpy()
    n = p.n_cells
    assert 2 <= n <= len(coords)
    assert len(set(p.cell_ids)) == n
    idx = p.assign(la, lo)
    assert idx.shape == la.shape and idx.dtype == np.int64
    # every training point falls in exactly one cell (sea points: nearest cell, see regions.py)
    assert (idx >= 0).all()
    assert p.counts.sum() == len(coords)
    np.testing.assert_array_equal(np.bincount(idx, minlength=n), p.counts)
    c = p.centroids
    assert c.shape == (n, 2) and np.isfinite(c).all()
    assert (np.abs(c[:, 0]) <= 90).all() and (np.abs(c[:, 1]) <= 180).all()
    # the centroid of a cell with training points is the spherical mean of its points
    from geoscout.geo import spherical_mean

    k = int(np.argmax(p.counts))
    mlat, mlon = spherical_mean(la[idx == k], lo[idx == k])
    np.testing.assert_allclose(c[k], [mlat, mlon], atol=1e-9)
    # the polygon of a point's cell contains the point (or is its nearest cell: sea points)
    import shapely

    inside = p.assign(la, lo, fallback=None)
    sel = np.flatnonzero(inside >= 0)[:: max(1, len(la) // 60)]
    for j in sel:
        g = p.polygon(int(inside[j]))
        assert g.distance(shapely.Point(lo[j], la[j])) < 1e-6, (p.cell_ids[inside[j]], la[j], lo[j])
    # neighbours are symmetric and never include the cell itself
    for i in range(min(n, 8)):
        nb = p.neighbors(i)
        assert i not in nb
        for j in nb:
            assert i in p.neighbors(j)
    # GeoJSON round trip: identical assignment of training and random points
    path = p.save(tmp_path / f"{name}.geojson")
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == n
    assert doc["geoscout"]["spec"] == p.spec
    q = load_partition(path)
    assert type(q) is type(p) and q.spec == p.spec and q.cell_ids == p.cell_ids
    rng = np.random.default_rng(1)
    rla = np.concatenate([la, rng.uniform(-60, 75, 2000)])
    rlo = np.concatenate([lo, rng.uniform(-180, 180, 2000)])
    np.testing.assert_array_equal(q.assign(rla, rlo), p.assign(rla, rlo))
    np.testing.assert_array_equal(q.assign(rla, rlo, fallback="nearest"), p.assign(rla, rlo, fallback="nearest"))
    np.testing.assert_array_equal(q.counts, p.counts)
    np.testing.assert_allclose(q.centroids, p.centroids, rtol=0, atol=0)
    # scalar / 2-D inputs keep their shape
    assert p.assign(la[:6].reshape(2, 3), lo[:6].reshape(2, 3)).shape == (2, 3)


def test_bad_specs_and_inputs():
    with pytest.raises(UnknownName, match="geohash"):
        create_partition("geohashh:3")
    with pytest.raises(InvalidInput, match="precision"):
        create_partition("geohash:abc")
    with pytest.raises(InvalidInput, match="precision"):
        create_partition("geohash:13").fit([1.0], [2.0])
    with pytest.raises(InvalidInput, match="degrees"):
        create_partition("grid:x")
    with pytest.raises(InvalidInput, match="resolution"):
        create_partition("h3:16").fit([1.0], [2.0])
    with pytest.raises(InvalidInput, match="fallback"):
        create_partition("grid:1", fallback="closest").fit([1.0], [2.0])
    with pytest.raises(InvalidInput, match="lat"):
        create_partition("grid:1").fit([91.0], [2.0])
    with pytest.raises(InvalidInput, match="no training points"):
        create_partition("grid:1").fit([], [])
    assert "geohash" in PARTITIONS and "semantic" in PARTITIONS
    with pytest.raises(InvalidInput, match="MIN:MAX"):
        create_partition("quadtree:10")
    with pytest.raises(InvalidInput, match="twice"):
        create_partition("semantic", min_samples=50, max_samples=60).fit([45.0], [16.0])


def test_load_rejects_foreign_files(tmp_path):
    plain = tmp_path / "plain.geojson"
    plain.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(InvalidInput, match="not a geoscout partition"):
        load_partition(plain)
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(InvalidInput, match="GeoJSON"):
        load_partition(bad)
    with pytest.raises(InvalidInput, match="no such"):
        load_partition(tmp_path / "missing.geojson")


# ---------------------------------------------------------------------------- fixed schemes vs references
latitudes = st.floats(-89.9, 89.9, allow_nan=False)
longitudes = st.floats(-179.9, 179.9, allow_nan=False)
point_lists = st.lists(st.tuples(latitudes, longitudes), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pts=point_lists, k=st.integers(1, 6))
def test_geohash_cells_match_geohash_encode(pts, k):
    la, lo = np.array(pts).T
    p = create_partition(f"geohash:{k}").fit(la, lo)
    idx = p.assign(la, lo)
    assert (idx >= 0).all()
    got = np.array(p.cell_ids)[idx]
    np.testing.assert_array_equal(got, geohash_encode(la, lo, k))
    assert p.n_cells == len(set(got.tolist()))


def test_geohash_independent_reference():
    pygeohash = pytest.importorskip("pygeohash")
    rng = np.random.default_rng(0)
    la, lo = rng.uniform(-89, 89, 300), rng.uniform(-179, 179, 300)
    p = create_partition("geohash:4").fit(la, lo)
    ref = [pygeohash.encode(float(a), float(b), precision=4) for a, b in zip(la, lo)]
    assert [p.cell_ids[i] for i in p.assign(la, lo)] == ref


@settings(max_examples=30, deadline=None)
@given(pts=point_lists, r=st.integers(0, 5))
def test_h3_cells_match_h3(pts, r):
    import h3

    la, lo = np.array(pts).T
    p = create_partition(f"h3:{r}").fit(la, lo)
    got = [p.cell_ids[i] for i in p.assign(la, lo)]
    assert got == [h3.latlng_to_cell(float(a), float(b), r) for a, b in zip(la, lo)]
    i = 0
    assert set(p.neighbors(i)) == {
        j for j, c in enumerate(p.cell_ids) if c in set(h3.grid_disk(p.cell_ids[i], 1)) - {p.cell_ids[i]}
    }


@settings(max_examples=40, deadline=None)
@given(pts=point_lists, deg=st.sampled_from([0.25, 1.0, 2.5, 7.0, 45.0]))
def test_grid_cells_are_the_floor_boxes(pts, deg):
    la, lo = np.array(pts).T
    p = create_partition(f"grid:{deg}").fit(la, lo)
    idx = p.assign(la, lo)
    for a, b, i in zip(la, lo, idx):
        s, w = (float(v) for v in p.cell_ids[i].split(","))
        # the box [s, s + deg) x [w, w + deg) holds the point, and its corner lies on the grid
        assert s <= a < s + deg and w <= b < w + deg
        assert (s + 90) / deg == pytest.approx(round((s + 90) / deg))
        assert (w + 180) / deg == pytest.approx(round((w + 180) / deg))


def test_grid_neighbors_wrap_the_antimeridian():
    p = create_partition("grid:10").fit([5.0, 5.0, 15.0, 5.0], [-175.0, 175.0, 175.0, 0.0])
    i = p.index_of("0,-180")
    assert {p.cell_ids[j] for j in p.neighbors(i)} == {"0,170", "10,170"}
    assert p.neighbors(p.index_of("0,0")) == []


def test_unseen_cells_get_minus_one_or_the_nearest():
    p = create_partition("geohash:2").fit([45.8, 45.81, 40.7], [15.97, 15.98, -74.0])
    assert p.n_cells == 2
    zagreb, nyc = p.index_of(geohash_encode(45.8, 15.97, 2)), p.index_of(geohash_encode(40.7, -74.0, 2))
    assert p.assign([48.85], [2.35]).tolist() == [-1]  # Paris: a cell without training points
    assert p.assign([48.85], [2.35], fallback="nearest").tolist() == [zagreb]
    assert p.assign([38.9], [-77.0], fallback="nearest").tolist() == [nyc]
    q = create_partition("geohash:2", fallback="nearest").fit([45.8, 40.7], [15.97, -74.0])
    assert q.assign([48.85], [2.35]).tolist() == [q.index_of(geohash_encode(45.8, 15.97, 2))]


def test_min_count_drops_sparse_cells():
    la = [45.8] * 5 + [40.7]
    lo = [15.97] * 5 + [-74.0]
    p = create_partition("geohash:3", min_count=3).fit(la, lo)
    assert p.n_cells == 1 and p.counts.tolist() == [5]
    assert p.assign([40.7], [-74.0]).tolist() == [-1]
    with pytest.raises(InvalidInput, match="min_count"):
        create_partition("geohash:3", min_count=10).fit(la, lo)


# ---------------------------------------------------------------------------- country / admin1
def test_country_matches_osv5m_labels(fitted, coords):
    """Independent reference: the OSV-5M sample's own country column."""
    p = fitted("country")
    osv = coords[coords.dataset == "osv5m-sample"]
    got = np.array(p.cell_ids)[p.assign(osv.lat, osv.lon)]
    assert (got == osv.country.to_numpy()).mean() >= 0.95
    hr = coords[coords.dataset == "streetview-croatia"]
    assert (np.array(p.cell_ids)[p.assign(hr.lat, hr.lon)] == "HR").mean() >= 0.97


def test_country_cells_cover_land(shared_dir):
    from geoscout.places.land import land_mask  # the global-land-mask grid, memory-mapped

    p = create_partition("country", min_count=0).fit([45.8, 40.7], [15.97, -74.0])
    assert p.n_cells > 200
    rng = np.random.default_rng(3)
    la, lo = rng.uniform(-85, 85, 20000), rng.uniform(-180, 180, 20000)
    land = land_mask(la, lo)
    la, lo = la[land], lo[land]
    strict = p.assign(la, lo, fallback=None)
    assert (strict >= 0).mean() > 0.99  # Natural Earth vs the land mask differ only along coasts
    assert (p.assign(la, lo) >= 0).all()


def test_admin1_regions_of_croatia(fitted):
    from geoscout.cells.regions import admin1_regions, country_shapes

    regions = admin1_regions("HR")
    names = [n for n, _ in regions]
    assert len(names) == 21  # 20 counties + the City of Zagreb
    assert {"Zagreb", "Istria", "Split-Dalmatia", "Dubrovnik-Neretva"} <= set(names)
    # the regions tile the country: their areas add up to the country's
    import shapely

    hr = {c: g for c, _, g in country_shapes()}["HR"]
    total = sum(g.area for _, g in regions)
    assert total == pytest.approx(hr.area, rel=1e-3)
    assert shapely.union_all([g for _, g in regions]).symmetric_difference(hr).area < 1e-3 * hr.area
    p = fitted("admin1")
    zg = p.assign([45.8150], [15.9819])[0]
    assert p.cell_ids[zg] == "HR/Zagreb"
    split = p.assign([43.5081], [16.4402])[0]  # Split -> Split-Dalmatia
    assert p.cell_ids[split] == "HR/Split-Dalmatia"
    pula = p.assign([44.8666], [13.8496])[0]
    assert p.cell_ids[pula] == "HR/Istria"


# ---------------------------------------------------------------------------- quadtree
clustered = st.lists(
    st.tuples(
        st.sampled_from([(45.8, 15.97), (40.7, -74.0), (-33.9, 151.2), (0.0, 0.0), (64.1, -21.9)]),
        st.floats(-3, 3),
        st.floats(-3, 3),
    ),
    min_size=1,
    max_size=300,
).map(
    lambda rows: (
        np.clip([r[0][0] + r[1] for r in rows], -90, 90),
        np.clip([r[0][1] + r[2] for r in rows], -180, 179.999),
    )
)


@settings(max_examples=40, deadline=None)
@given(pts=clustered, lo_hi=st.sampled_from([(1, 5), (3, 20), (5, 40), (10, 1000)]))
def test_quadtree_bounds_and_unique_cells(pts, lo_hi):
    import shapely

    la, lo = pts
    mn, mx = lo_hi
    p = create_partition(f"quadtree:{mn}:{mx}").fit(la, lo)
    idx = p.assign(la, lo)
    assert (idx >= 0).all() and p.counts.sum() == la.size
    # cell sizes: within [MIN, MAX] (a world with fewer than MIN points is one cell; a cell of one location may exceed MAX)
    for i, c in enumerate(p.counts):
        assert c >= min(mn, la.size)
        if c > mx:
            sel = idx == i
            assert (np.ptp(la[sel]) == 0 and np.ptp(lo[sel]) == 0) or mx < 4 * mn
    # the cells' boxes are disjoint: each training point lies in the polygon of its own cell only
    polys = [p.polygon(i) for i in range(p.n_cells)]
    assert sum(g.area for g in polys) == pytest.approx(shapely.union_all(polys).area)
    for a, b, i in list(zip(la, lo, idx))[:50]:
        assert polys[i].intersects(shapely.Point(b, a))


# ---------------------------------------------------------------------------- cities
def test_cities_cells_are_nearest_places(fitted, coords):
    from geoscout.geo import pairwise_haversine_km

    p = fitted("cities")
    assert p.n_cells == 40 and any(c.endswith(", HR") for c in p.cell_ids)
    rng = np.random.default_rng(5)
    la, lo = rng.uniform(-80, 80, 500), rng.uniform(-180, 180, 500)
    d = pairwise_haversine_km(la, lo, p.sites_[:, 0], p.sites_[:, 1])
    np.testing.assert_array_equal(p.assign(la, lo), d.argmin(axis=1))
    # the spherical Voronoi polygons tile the globe
    import shapely

    polys = [p.polygon(i) for i in range(p.n_cells)]
    assert sum(g.area for g in polys) == pytest.approx(360 * 180, rel=1e-6)
    assert shapely.union_all(polys).area == pytest.approx(360 * 180, rel=1e-6)
    q = create_partition("cities:40", max_km=50).fit(coords.lat, coords.lon)
    far = q.assign([-60.0], [-140.0])  # South Pacific
    assert far.tolist() == [-1] and q.assign([-60.0], [-140.0], fallback="nearest")[0] >= 0


# ---------------------------------------------------------------------------- semantic
def _country_total(p, coords):
    idx = p.assign(coords.lat, coords.lon)
    countries = np.array(p.cell_country_)[idx]
    return idx, pd.Series(countries).value_counts()


def test_semantic_merge_split_and_borders(fitted, coords):
    from geoscout.cells.regions import country_shapes

    p = fitted("semantic")
    mn, mx = SPEC_KW["semantic"]["min_samples"], SPEC_KW["semantic"]["max_samples"]
    idx, per_country = _country_total(p, coords)
    counts = p.counts
    assert p.n_cells > 200  # every country is a cell or more (cover_land)
    assert any("#" in c for c in p.cell_ids) and any(len(m) > 1 for m in p.cell_members_)  # something split & merged
    shapes = {c: g for c, _, g in country_shapes()}
    for i, cid in enumerate(p.cell_ids):
        cc = p.cell_country_[i]
        # merged cells never cross borders: the cell lies inside its country's polygon
        g = p.polygon(i)
        assert g.difference(shapes[cc]).area <= 1e-4 * g.area + 1e-6, cid  # rounding to 1e-5 deg only
        if per_country.get(cc, 0) >= mn:  # merge respects min_samples
            assert counts[i] >= mn, (cid, counts[i])
        if counts[i] > mx:  # split respects max_samples (unless one location)
            sel = idx == i
            assert np.ptp(coords.lat[sel]) == 0 and np.ptp(coords.lon[sel]) == 0, (cid, counts[i])
    # Croatia's data are split into several cells, inside Croatia
    hr = [i for i, c in enumerate(p.cell_country_) if c == "HR"]
    assert len(hr) >= 5 and counts[hr].sum() == per_country["HR"]


def test_semantic_cells_cover_land(fitted):
    from geoscout.places.land import land_mask  # the global-land-mask grid, memory-mapped

    p = fitted("semantic")
    rng = np.random.default_rng(11)
    la, lo = rng.uniform(-85, 85, 20000), rng.uniform(-180, 180, 20000)
    land = land_mask(la, lo)
    strict = p.assign(la[land], lo[land], fallback=None)
    assert (strict >= 0).mean() > 0.99
    assert (p.assign(la[land], lo[land]) >= 0).all()


@pytest.fixture(scope="module")
def croatia_points(coords) -> np.ndarray:
    hr = coords[coords.dataset == "streetview-croatia"]
    return hr[["lat", "lon"]].to_numpy()


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_semantic_every_training_point_in_exactly_one_cell(croatia_points, data):
    import shapely

    pick = data.draw(st.lists(st.integers(0, len(croatia_points) - 1), min_size=30, max_size=250, unique=True))
    jitter = data.draw(st.floats(0.0, 0.05))
    rng = np.random.default_rng(len(pick))
    pts = croatia_points[pick] + rng.normal(0, jitter, (len(pick), 2))
    mn = data.draw(st.integers(3, 15))
    p = create_partition(
        "semantic", min_samples=mn, max_samples=data.draw(st.integers(2 * mn, 60)), cover_land=False
    ).fit(pts[:, 0], pts[:, 1])
    idx = p.assign(pts[:, 0], pts[:, 1])
    assert (idx >= 0).all() and p.counts.sum() == len(pts)
    polys = [p.polygon(i) for i in range(p.n_cells)]
    for (a, b), i in zip(pts, idx):
        pt = shapely.Point(b, a)
        hits = [j for j, g in enumerate(polys) if g.intersects(pt)]
        if hits:  # on land: exactly one cell (two only exactly on a shared edge), and it is the assigned one
            assert hits[0] == i and (len(hits) == 1 or min(polys[j].distance(pt) for j in hits) == 0)
        else:  # in the sea: the nearest cell
            assert min(range(len(polys)), key=lambda j: polys[j].distance(pt)) == i or polys[i].distance(pt) < 0.1


def test_sea_points_go_to_the_nearest_country(fitted):
    p = fitted("country")
    # the Adriatic between Split and the island of Brač, and 30 km off Istria: no polygon holds them
    la, lo = np.array([43.45, 45.0]), np.array([16.5, 13.2])
    assert (p.assign(la, lo, fallback=None) == -1).all()
    assert [p.cell_ids[i] for i in p.assign(la, lo)] == ["HR", "HR"]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_country_every_training_point_in_exactly_one_cell(coords, data):
    import shapely

    pick = data.draw(st.lists(st.integers(0, len(coords) - 1), min_size=1, max_size=80, unique=True))
    jitter = data.draw(st.sampled_from([0.0, 0.01, 0.3]))
    rng = np.random.default_rng(len(pick))
    la = np.clip(coords.lat.to_numpy()[pick] + rng.normal(0, jitter, len(pick)), -90, 90)
    lo = np.clip(coords.lon.to_numpy()[pick] + rng.normal(0, jitter, len(pick)), -180, 179.999)
    p = create_partition("country").fit(la, lo)
    idx = p.assign(la, lo)
    assert (idx >= 0).all() and p.counts.sum() == len(la) and (p.counts >= 1).all()
    for a, b, i in zip(la, lo, idx):
        hits = [j for j in range(p.n_cells) if p.polygon(j).intersects(shapely.Point(b, a))]
        assert hits == [i] or (not hits and p.polygon(i).distance(shapely.Point(b, a)) < 1.0)


def test_semantic_split_finds_dense_clusters_with_optics():
    from geoscout.cells.semantic import SemanticPartition

    rng = np.random.default_rng(0)
    a = np.column_stack([45.80 + rng.normal(0, 0.005, 30), 15.97 + rng.normal(0, 0.005, 30)])  # Zagreb
    b = np.column_stack([45.55 + rng.normal(0, 0.005, 30), 18.69 + rng.normal(0, 0.005, 30)])  # Osijek
    noise = np.column_stack([rng.uniform(44.5, 46.0, 25), rng.uniform(14.5, 19.0, 25)])
    pts = np.concatenate([a, b, noise])
    p = SemanticPartition(min_samples=10, max_samples=40)
    p._validate_params()
    labels = p._part_labels(pts[:, 0], pts[:, 1], np.ones(len(pts), dtype=np.int64))
    sizes = np.bincount(labels)
    assert (sizes >= 10).all() and (sizes <= 40).all()
    # OPTICS turns a dense cluster into a part: >= 90% of its points share a part made mostly of them
    pure = []
    for block in (labels[:30], labels[30:60]):
        lab = np.bincount(block).argmax()
        pure.append(np.bincount(block)[lab] >= 27 and np.bincount(block)[lab] / sizes[lab] >= 0.75)
    assert any(pure)
    # without OPTICS (only bisection) the same points give other parts
    q = SemanticPartition(min_samples=10, max_samples=40, optics_max_points=0)
    q._validate_params()
    assert not np.array_equal(q._part_labels(pts[:, 0], pts[:, 1], np.ones(len(pts), dtype=np.int64)), labels)


def test_h3_polygons_hold_their_points_everywhere():
    import shapely

    rng = np.random.default_rng(4)
    la = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 1500))), [89.99, -89.99, 10.0, -16.5]])
    lo = np.concatenate([rng.uniform(-180, 180, 1500), [45.0, -120.0, 179.999, -179.95]])
    p = create_partition("h3:1").fit(la, lo)
    idx = p.assign(la, lo)
    for a, b, i in zip(la, lo, idx):
        g = p.polygon(int(i))
        assert g.is_valid and g.distance(shapely.Point(b, a)) < 1e-3, (p.cell_ids[i], a, b)
