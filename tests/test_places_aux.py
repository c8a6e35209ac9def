"""Auxiliary rasters (Köppen-Geiger, ETOPO20, GPWv4) read from ../shared/geo, the download path
over real HTTP on 127.0.0.1, month/season, and the bit-packed land mask vs global-land-mask."""

from __future__ import annotations

import gzip
import http.server
import io
import threading
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from geoscout.errors import InvalidInput, MissingWeights
from geoscout.places import aux as auxmod
from geoscout.places.aux import KOPPEN_CLASSES, AuxRasters, month_of, season

PLACES = {  # name: (lat, lon)
    "sahara": (23.0, 13.0),  # Niger/Libya border, hot desert
    "everest": (27.9881, 86.9250),
    "tokyo": (35.6895, 139.6917),
    "mid_atlantic": (0.0, -30.0),
    "paris": (48.8566, 2.3522),
    "manaus": (-3.119, -60.0217),
    "dead_sea": (31.5, 35.5),
    "south_pole": (-89.9, 0.0),
}


@pytest.fixture(scope="module")
def rasters(shared_geo: Path) -> AuxRasters:
    return AuxRasters(shared_geo)


def _ll(*names: str) -> tuple[np.ndarray, np.ndarray]:
    return np.array([PLACES[n][0] for n in names]), np.array([PLACES[n][1] for n in names])


def test_climate_of_known_places(rasters):
    got = dict(zip(PLACES, rasters.climate(*_ll(*PLACES))))
    assert got["sahara"].startswith("BW")  # desert
    assert got["paris"] == "Cfb"
    assert got["manaus"].startswith("A")  # tropical
    assert got["tokyo"] == "Cfa"
    assert got["south_pole"] == "EF"
    assert got["mid_atlantic"] == ""


def test_climate_coastal_point_takes_adjacent_land(rasters, shared_geo):
    grid = auxmod._parse_koppen(shared_geo / "koppen" / "Koeppen-Geiger-ASCII.txt")
    # sea cells (no class) whose eastern neighbour is land, between 50 S and 50 N
    ii, jj = np.nonzero((grid == 0) & (np.roll(grid, -1, axis=1) > 0))
    keep = (ii > 80) & (ii < 280)
    ii, jj = ii[keep][:50], jj[keep][:50]
    assert ii.size == 50
    lat = -89.75 + 0.5 * ii
    lon = -180.0 + 0.5 * (jj + 1) - 0.01  # just inside the sea cell, next to its eastern neighbour
    want = np.array(KOPPEN_CLASSES)[grid[ii, (jj + 1) % 720] - 1]
    assert list(rasters.climate(lat, lon)) == list(want)
    # the open ocean stays unclassified
    assert rasters.climate(0.0, -30.0).item() == ""


def test_elevation_of_known_places(rasters):
    e = dict(zip(PLACES, rasters.elevation_m(*_ll(*PLACES))))
    assert e["everest"] > 4000
    assert e["mid_atlantic"] < -1000
    assert 0 < e["paris"] < 300
    assert e["south_pole"] > 2000
    # the seam of the 20.17..380.17 longitude axis: both sides of 20.17 E give a value, and wrap
    assert np.isfinite(rasters.elevation_m([50.0, 50.0], [20.0, 20.3])).all()
    assert rasters.elevation_m(10.0, 190.0) == rasters.elevation_m(10.0, -170.0)


def test_population_density_of_known_places(rasters):
    p = dict(zip(PLACES, rasters.population_density(*_ll(*PLACES))))
    assert p["tokyo"] > 1000
    assert p["paris"] > 1000
    assert p["sahara"] < 5
    assert np.isnan(p["mid_atlantic"])


def test_vectorised_shapes(rasters):
    lat = np.zeros((3, 4))
    lon = np.linspace(-170, 170, 12).reshape(3, 4)
    assert rasters.climate(lat, lon).shape == (3, 4)
    assert rasters.elevation_m(lat, lon).shape == (3, 4)
    assert rasters.population_density(lat, lon).shape == (3, 4)
    with pytest.raises(InvalidInput):
        rasters.elevation_m(91.0, 0.0)


def test_missing_aux_file_error_names_file_url_and_flag(tmp_path):
    with pytest.raises(MissingWeights) as exc:
        AuxRasters(tmp_path).climate(0.0, 0.0)
    msg = str(exc.value)
    assert "Koeppen-Geiger-ASCII.txt" in msg and "https://koeppen-geiger.vu-wien.ac.at" in msg and "--aux-dir" in msg
    with pytest.raises(MissingWeights, match="gpw_v4_population_density.*Earthdata"):
        AuxRasters(tmp_path).population_density(0.0, 0.0)
    with pytest.raises(MissingWeights, match="does not exist"):
        AuxRasters(tmp_path / "nope").elevation_m(0.0, 0.0)


def test_flat_aux_dir_and_1deg_fallback(tmp_path, shared_geo):
    (tmp_path / "gpw_v4_population_density_rev11_2020_1_deg.asc").write_bytes(
        (shared_geo / "gpw" / "gpw_v4_population_density_rev11_2020_1_deg.asc").read_bytes()
    )
    d = AuxRasters(tmp_path).population_density(*_ll("tokyo", "mid_atlantic"))
    assert d[0] > 500 and np.isnan(d[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def local_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_download_into_cache_over_http(tmp_path, monkeypatch, shared_geo, local_server):
    monkeypatch.setenv("GEOSCOUT_HOME", str(tmp_path / "home"))
    koppen = (shared_geo / "koppen" / "Koeppen-Geiger-ASCII.txt").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Koeppen-Geiger-ASCII.txt", b"    Lat     Lon     Cls\n" + koppen)  # official header line
    _Handler.files = {"/kg.zip": buf.getvalue(), "/login.zip": b"<html>please log in</html>"}
    for name in ("etopo20data.gz", "etopo20lats.gz", "etopo20lons.gz"):
        _Handler.files[f"/{name}"] = (shared_geo / "etopo" / name).read_bytes()
    sources = dict(auxmod.SOURCES)
    sources["Koeppen-Geiger-ASCII.txt"] = auxmod.AuxSource(local_server + "/kg.zip", "Koeppen-Geiger-ASCII.txt")
    for name in ("etopo20data.gz", "etopo20lats.gz", "etopo20lons.gz"):
        sources[name] = auxmod.AuxSource(f"{local_server}/{name}")
    gpw = "gpw_v4_population_density_rev11_2020_30_min.asc"
    sources[gpw] = auxmod.AuxSource(local_server + "/login.zip", gpw, "needs a login")
    monkeypatch.setattr(auxmod, "SOURCES", sources)

    r = AuxRasters()
    assert r.climate(48.8566, 2.3522).item() == "Cfb"
    assert r.elevation_m(27.9881, 86.925).item() > 4000
    cached = tmp_path / "home" / "aux"
    assert (cached / "Koeppen-Geiger-ASCII.txt").is_file() and (cached / "etopo20data.gz").is_file()
    assert not [p for p in cached.iterdir() if p.name.startswith(".")]  # no temp files left behind
    with pytest.raises(MissingWeights, match="not a zip"):
        r.population_density(0.0, 0.0)
    assert not (cached / gpw).exists()
    # a 404 and an unreachable port are clear errors too
    sources["etopo20lats.gz"] = auxmod.AuxSource(local_server + "/missing.gz")
    (cached / "etopo20lats.gz").unlink()
    with pytest.raises(MissingWeights, match="HTTP 404.*--aux-dir"):
        AuxRasters().elevation_m(0.0, 0.0)
    with pytest.raises(MissingWeights, match="downloading is off"):
        AuxRasters(download=False).elevation_m(0.0, 0.0)


def test_corrupt_aux_file_is_a_clear_error(tmp_path):
    (tmp_path / "Koeppen-Geiger-ASCII.txt").write_text("lat lon class\n1 2 XYZ\n")
    with pytest.raises(InvalidInput, match="Köppen"):
        AuxRasters(tmp_path).climate(0.0, 0.0)
    with gzip.open(tmp_path / "etopo20data.gz", "wt") as fh:
        fh.write("1 2 3\n")
    for n in ("etopo20lats.gz", "etopo20lons.gz"):
        with gzip.open(tmp_path / n, "wt") as fh:
            fh.write("0\n1\n")
    with pytest.raises(InvalidInput, match="ETOPO20"):
        AuxRasters(tmp_path).elevation_m(0.0, 0.0)


def test_month_and_season():
    import datetime

    months = month_of(
        [
            "2023-07-04T10:00:00Z",
            "2021-12-01",
            None,
            "garbage",
            "2020-03-01T01:00:00+02:00",
            "2019:11:02 10:00:00",
            datetime.datetime(2020, 5, 1),
            float("nan"),
            "2020-13-01",
        ]
    ).tolist()
    import pandas as pd

    assert [None if pd.isna(m) else m for m in months] == [7, 12, None, None, 3, 11, 5, None, None]
    assert list(season([48.0, -33.9, 48.0, -33.9, 0.5, 10.0], [1, 1, 7, 7, 4, None])) == [
        "winter",
        "summer",
        "summer",
        "winter",
        "spring",
        "",
    ]


@pytest.mark.slow
def test_packed_land_mask_equals_global_land_mask():
    from global_land_mask import globe  # loads the 933 MB mask: slow, so only here

    from geoscout.places.land import land_mask

    rng = np.random.default_rng(3)
    lat = np.concatenate([rng.uniform(-90, 90, 200_000), [90, -90, 0, 0, 89.999]])
    lon = np.concatenate([rng.uniform(-180, 180, 200_000), [180, -180, 180, -180, 179.999]])
    assert (land_mask(lat, lon) == globe.is_land(lat.copy(), lon.copy())).all()
