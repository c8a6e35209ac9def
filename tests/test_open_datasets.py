"""Importers of the open datasets (OSV-5M, MP-16, Hugging Face) on fixtures in each publisher's format.

The fixtures are written from real photos of ../shared/data (the OSV-5M test sample and IM2GPS), laid out
as the publishers lay them out, with one malformed row each.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoscout.data import Dataset
from geoscout.data.open_datasets import import_open_dataset
from geoscout.errors import InvalidInput

OSV_HEADER = [
    "id",
    "latitude",
    "longitude",
    "thumb_original_url",
    "country",
    "sequence",
    "captured_at",
    "lon_bin",
    "lat_bin",
    "cell",
    "region",
    "sub-region",
    "city",
    "land_cover",
    "road_index",
    "drive_side",
    "climate",
    "soil",
    "dist_sea",
    "quadtree_10_5000",
    "quadtree_10_25000",
    "quadtree_10_1000",
    "quadtree_10_50000",
    "quadtree_10_12500",
    "quadtree_10_500",
    "quadtree_10_2500",
    "unique_region",
    "unique_sub-region",
    "unique_city",
    "unique_country",
    "creator_username",
    "creator_id",
]


def _osv_row(r: pd.Series, i: int) -> list[str]:
    mid = str(r["mapillary_image_id"])
    vals = {
        "id": mid,
        "latitude": repr(float(r["lat"])),
        "longitude": repr(float(r["lon"])),
        "thumb_original_url": f"https://example.invalid/{mid}.jpg",
        "country": r["country"],
        "sequence": f"seq{i // 3}",
        "captured_at": str(1467294240000 + i * 1000),  # Mapillary: milliseconds since the epoch
        "lon_bin": "0.0",
        "lat_bin": "0.0",
        "cell": "(0, 0)",
        "region": r["region"],
        "sub-region": "",
        "city": r["city"],
        "land_cover": str(i % 5),
        "road_index": f"{i / 10:.1f}",
        "drive_side": str(int(r["country"] in ("GB", "IN", "NZ", "MY", "ZM", "ID", "PK"))),
        "climate": str(1 + i % 30),
        "soil": str(i % 7),
        "dist_sea": f"{i * 3.5:.2f}",
        "unique_region": f"{r['region']}_{r['country']}",
        "unique_city": f"{r['city']}_{r['country']}",
        "unique_country": r["country"],
        "creator_username": f"user{i}",
        "creator_id": str(1000 + i),
    }
    return [str(vals.get(h, i)) for h in OSV_HEADER]


@pytest.fixture(scope="module")
def osv5m_dir(shared_data, tmp_path_factory) -> Path:
    """OSV-5M's layout: train.csv, test.csv, images/{train,test}/NN/<id>.jpg, with one broken row per file."""
    src = shared_data("osv5m-sample")
    df = pd.read_csv(src / "manifest.csv", dtype={"mapillary_image_id": str}).iloc[:12]
    root = tmp_path_factory.mktemp("osv5m")
    for split, part in (("train", df.iloc[:8]), ("test", df.iloc[8:])):
        with open(root / f"{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(OSV_HEADER)
            for i, (_, r) in enumerate(part.iterrows()):
                shard = root / "images" / split / f"{i % 2:02d}"
                shard.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / r["path"], shard / f"{r['mapillary_image_id']}.jpg")
                w.writerow(_osv_row(r, i))
            if split == "train":
                w.writerow(["999", "12.5", "oops"])  # malformed: 3 fields (line 10)
                bad = _osv_row(part.iloc[1], 1)
                bad[1] = "123.0"  # latitude out of range (line 11)
                w.writerow(bad)
                w.writerow([*_osv_row(part.iloc[0], 0)[:1], "1.0", "2.0", *_osv_row(part.iloc[0], 0)[3:]])
    return root


def test_osv5m_import_keeps_labels_and_reports_bad_rows(osv5m_dir, tmp_path):
    seen = []
    rep = import_open_dataset(
        "osv5m", osv5m_dir, tmp_path / "ds", chunk_size=3, progress=lambda d, t: seen.append((d, t))
    )
    assert rep.n_imported == 12
    assert rep.total == 15
    kinds = {p.row: p.kind for p in rep.problems}
    assert kinds == {10: "malformed_row", 11: "bad_coordinates", 12: "duplicate"}
    assert "3 fields" in next(p.reason for p in rep.problems if p.row == 10)
    assert "latitude 123" in next(p.reason for p in rep.problems if p.row == 11)
    assert seen[-1] == (15, 15) and len(seen) >= 4  # chunks of 3 rows
    ds = Dataset.open(tmp_path / "ds")
    assert len(ds) == 12
    f = ds.frame
    assert (f["split"] == "train").sum() == 8 and (f["split"] == "test").sum() == 4
    for col in ("land_cover", "road_index", "drive_side", "climate_code", "soil", "dist_sea"):
        assert f[col].dtype == np.float64, col
    assert f["climate_code"].between(1, 30).all()
    assert f["captured_at"].iloc[0].startswith("2016-06-30T")
    assert set(f["license"]) == {"CC-BY-SA-4.0"} and f["attribution"].iloc[0].endswith("(Mapillary)")
    src = pd.read_csv(osv5m_dir / "train.csv", dtype=str, on_bad_lines="skip").iloc[:8]
    got = f[f["split"] == "train"].set_index("mapillary_image_id")
    assert np.allclose(got.loc[src["id"], "lat"].to_numpy(), src["latitude"].astype(float).to_numpy())
    assert all(Path(p).is_file() for p in ds.image_paths())
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "ds" / "manifest.parquet").num_row_groups >= 4  # written chunk by chunk
    problems = pd.read_csv(tmp_path / "ds" / "problems.csv")
    assert list(problems["row"]) == [10, 11, 12]


def test_osv5m_split_and_limit(osv5m_dir, tmp_path, capsys):
    rep = import_open_dataset("osv5m", osv5m_dir, tmp_path / "t", split="test", progress=True)
    assert rep.n_imported == 4 and rep.n_problems == 0
    err = capsys.readouterr().err
    assert "import osv5m" in err and "4/4" in err  # the project's progress bar, on stderr
    rep = import_open_dataset("osv5m", osv5m_dir, tmp_path / "l", limit=5, chunk_size=2)
    assert rep.total == 5 and rep.n_imported == 5


def test_osv5m_missing_image_reported(osv5m_dir, tmp_path):
    root = tmp_path / "osv"
    shutil.copytree(osv5m_dir, root)
    gone = next((root / "images" / "test").rglob("*.jpg"))
    gone.unlink()
    rep = import_open_dataset("osv5m", root, tmp_path / "ds", split="test")
    assert rep.n_imported == 3
    (p,) = rep.problems
    assert p.kind == "missing_file" and gone.stem in p.reason and p.row is not None


@pytest.fixture(scope="module")
def mp16_dir(shared_data, tmp_path_factory) -> Path:
    """mp16_places365.csv (IMG_ID,LAT,LON,S3_Label,...) with the images at IMG_ID under the folder."""
    src = shared_data("im2gps")
    df = pd.read_csv(src / "manifest.csv").iloc[:10]
    root = tmp_path_factory.mktemp("mp16")
    rows = []
    for i, r in enumerate(df.itertuples(index=False)):
        rel = f"{i % 3:02x}/{i:02x}/{Path(r.path).name}"
        (root / Path(rel).parent).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / r.path, root / rel)
        rows.append([rel, "someone", r.lat, r.lon, i % 3, i % 16, i % 365, 0.1, 0.2, 0.7])
    with open(root / "mp16_places365.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "IMG_ID",
                "AUTHOR",
                "LAT",
                "LON",
                "S3_Label",
                "S16_Label",
                "S365_Label",
                "Prob_indoor",
                "Prob_natural",
                "Prob_urban",
            ]
        )
        w.writerows(rows)
        w.writerow(["ff/ff/missing.jpg", "x", "10", "20", 0, 0, 0, 0.1, 0.2, 0.7])  # line 12: no such image
        w.writerow([rows[0][0], "x", "north", "20", 0, 0, 0, 0.1, 0.2, 0.7])  # line 13: bad latitude
        w.writerow([rows[1][0], "x", "10", "20", "three", 0, 0, 0.1, 0.2, 0.7])  # line 14: label not a number
    return root


def test_mp16_import(mp16_dir, tmp_path):
    rep = import_open_dataset("mp16", mp16_dir, tmp_path / "ds")
    assert rep.n_imported == 10
    kinds = {p.row: p.kind for p in rep.problems}
    assert kinds == {12: "missing_file", 13: "bad_coordinates", 14: "bad_value"}
    assert "S3_Label 'three'" in next(p.reason for p in rep.problems if p.row == 14)
    f = Dataset.open(tmp_path / "ds").frame
    assert f["s365_label"].dtype == np.float64 and f["prob_urban"].iloc[0] == pytest.approx(0.7)
    assert f["mp16_id"].iloc[0] == "00/00/" + f["mp16_id"].iloc[0].split("/")[-1]
    assert set(f["source"]) == {"mp16"} and f["attribution"].iloc[0] == "someone (Flickr)"


def test_mp16_wrong_format_fails_before_writing(osv5m_dir, tmp_path):
    with pytest.raises(InvalidInput, match="IMG_ID|img_id"):
        import_open_dataset("mp16", osv5m_dir / "train.csv", tmp_path / "ds")
    assert not (tmp_path / "ds" / "manifest.parquet").exists()


def _hf_table(paths, lat, lon, *, struct: bool):
    import pyarrow as pa

    blobs = [Path(p).read_bytes() for p in paths]
    if struct:
        image = pa.array(
            [{"bytes": b, "path": Path(p).name} for b, p in zip(blobs, paths)],
            type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        )
    else:
        image = pa.array(blobs, type=pa.binary())
    return pa.table(
        {
            "image": image,
            "latitude": pa.array(lat, pa.float32()),
            "longitude": pa.array(lon, pa.float32()),
            "country": pa.array(["xx"] * len(lat)),
            "embedding": pa.array([[1.0, 2.0]] * len(lat)),
        }
    )


@pytest.fixture(scope="module")
def world_sample(shared_data):
    src = shared_data("streetview-world")
    df = pd.read_csv(src / "manifest.csv").iloc[:9]
    return [src / p for p in df["path"]], df["lat"].tolist(), df["lon"].tolist()


def test_hf_parquet_shards(world_sample, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths, lat, lon = world_sample
    d = tmp_path / "hf" / "data"
    d.mkdir(parents=True)
    pq.write_table(_hf_table(paths[:5], lat[:5], lon[:5], struct=True), d / "train-00000-of-00001.parquet")
    bad_lat = [*list(lat[5:]), 95.0]
    t = _hf_table([*paths[5:], paths[0]], bad_lat, [*lon[5:], 0.0], struct=True)
    t = t.append_column("split", pa.array(["holdout"] * t.num_rows))  # the publisher's own column of that name
    pq.write_table(t, d / "test-00000-of-00001.parquet")
    rep = import_open_dataset("hf", tmp_path / "hf", tmp_path / "ds", chunk_size=2)
    assert rep.n_imported == 9 and rep.n_problems == 1
    (p,) = rep.problems
    assert p.kind == "bad_coordinates" and p.path == "test-00000-of-00001.parquet#4"
    ds = Dataset.open(tmp_path / "ds")
    f = ds.frame
    assert sorted(f["split"].value_counts().items()) == [("test", 4), ("train", 5)]
    assert set(f.loc[f["split"] == "test", "hf_split"]) == {"holdout"}
    assert all(p.parent == (tmp_path / "ds" / "images").resolve() for p in ds.image_paths())
    assert all(p.is_file() for p in ds.image_paths())
    assert "embedding" not in f.columns and set(f["country"]) == {"xx"}
    assert np.allclose(f.loc[f["split"] == "train", "lat"].to_numpy(), np.float32(lat[:5]), atol=1e-5)
    assert not list((tmp_path / "ds" / "images").glob(".incoming-*"))


def test_hf_save_to_disk_folder(world_sample, tmp_path):
    datasets = pytest.importorskip("datasets")
    paths, lat, lon = world_sample
    tab = _hf_table(paths[:4], lat[:4], lon[:4], struct=False).drop(["embedding"])
    blobs = tab.column("image").to_pylist()
    blobs[2] = b"not a jpeg at all"
    d = datasets.Dataset.from_dict({"image": blobs, "latitude": lat[:4], "longitude": lon[:4]})
    dd = datasets.DatasetDict({"validation": d})
    dd.save_to_disk(str(tmp_path / "saved"))
    rep = import_open_dataset("hf", tmp_path / "saved", tmp_path / "ds")
    assert rep.n_imported == 3
    (p,) = rep.problems
    assert p.kind == "unreadable_image" and p.path.endswith("#2") and str(tmp_path / "ds") not in p.reason
    assert set(Dataset.open(tmp_path / "ds").frame["split"]) == {"val"}


def test_hf_no_coordinates_is_a_clear_error(world_sample, tmp_path):
    import pyarrow.parquet as pq

    paths, lat, lon = world_sample
    pq.write_table(_hf_table(paths[:2], lat[:2], lon[:2], struct=True).drop(["latitude"]), tmp_path / "x.parquet")
    with pytest.raises(InvalidInput, match="latitude"):
        import_open_dataset("hf", tmp_path / "x.parquet", tmp_path / "ds")


def test_cli_import_from_osv5m(osv5m_dir, tmp_path):
    from typer.testing import CliRunner

    from geoscout.cli import app

    res = CliRunner().invoke(app, ["import", "--from", "osv5m", str(osv5m_dir), "-o", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    assert "12 of 15 row(s), 3 problem(s)" in res.output
    assert "malformed_row" in res.output and "line 10" in res.output
    assert len(Dataset.open(tmp_path / "ds")) == 12
    res = CliRunner().invoke(app, ["import", "--from", "mp16", str(osv5m_dir / "train.csv"), "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "img_id" in res.output.lower()
    res = CliRunner().invoke(app, ["import", str(osv5m_dir / "train.csv"), "--limit", "3", "-o", str(tmp_path / "y")])
    assert res.exit_code == 2 and "--from" in res.output
