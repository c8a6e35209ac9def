"""`geoscout import` through Typer's CliRunner on real photo sets."""

from __future__ import annotations

import csv
import shutil

import pandas as pd
from typer.testing import CliRunner

from geoscout.cli import app
from geoscout.data import Dataset

runner = CliRunner()


def test_import_im2gps_newcomer_path(shared_data, tmp_path):
    src = shared_data("im2gps") / "manifest.csv"
    out = tmp_path / "im2gps"
    res = runner.invoke(app, ["import", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "231 of 231 image(s) imported, 0 problem(s)" in res.output
    assert str(out / "manifest.parquet") in res.output.replace("\n", "")
    ds = Dataset.open(out)
    assert len(ds) == 231 and all(p.is_file() for p in ds.image_paths())
    assert not (out / "problems.csv").exists()


def test_import_croatia_with_spatial_split_and_csv(shared_data, tmp_path):
    out = tmp_path / "cro"
    res = runner.invoke(
        app,
        [
            "import",
            str(shared_data("streetview-croatia")),
            "-o",
            str(out),
            "--split",
            "0.8,0.1,0.1",
            "--spatial-block",
            "0.5",
            "--seed",
            "1",
            "--format",
            "csv",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "split by blocks of 0.5 deg" in res.output
    df = Dataset.open(out).frame
    assert len(df) == 1224 and set(df["split"]) == {"train", "val", "test"}
    assert (df.groupby("location_id")["split"].nunique() == 1).all()
    back = pd.read_csv(out / "manifest.csv")
    assert list(back.columns[:3]) == ["path", "lat", "lon"] and len(back) == 1224
    assert list(back["split"]) == list(df["split"])


def test_import_bad_csv_reports_and_exits_zero(shared_data, tmp_path):
    root = shared_data("streetview-strips")
    with open(root / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:3]
    src = tmp_path / "in.csv"
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "latitude", "lng"])
        w.writerow([str(root / rows[0]["path"]), rows[0]["lat"], rows[0]["lon"]])
        w.writerow(["nope.jpg", "1", "2"])
        w.writerow([str(root / rows[1]["path"]), "-91", rows[1]["lon"]])
        w.writerow([str(root / rows[2]["path"]), rows[2]["lat"], rows[2]["lon"]])
    out = tmp_path / "ds"
    res = runner.invoke(app, ["import", str(src), "-o", str(out), "--columns", "path=file,lat=latitude,lon=lng"])
    assert res.exit_code == 0, res.output
    assert "2 of 4 image(s) imported, 2 problem(s)" in res.output
    assert "missing_file" in res.output and "bad_coordinates" in res.output
    probs = pd.read_csv(out / "problems.csv")
    assert list(probs["row"]) == [3, 4] and list(probs["kind"]) == ["missing_file", "bad_coordinates"]
    assert len(Dataset.open(out)) == 2


def test_nothing_importable_exits_2(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    src = tmp_path / "in.csv"
    src.write_text("path,lat,lon\na.jpg,1,1\nb.jpg,2,2\n")
    res = runner.invoke(app, ["import", str(src), "-o", str(tmp_path / "ds")])
    assert res.exit_code == 2
    assert "0 of 2 image(s) imported" in res.output and "nothing could be imported" in res.output
    assert not (tmp_path / "ds" / "manifest.parquet").exists()
    assert len(pd.read_csv(tmp_path / "ds" / "problems.csv")) == 2


def test_user_errors(tmp_path, shared_data):
    src = shared_data("im2gps") / "manifest.csv"
    res = runner.invoke(app, ["import", str(src)])
    assert res.exit_code == 2 and "-o OUT" in res.output
    res = runner.invoke(app, ["import", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(app, ["import", str(src), "-o", str(tmp_path / "x"), "--split", "0.5,0.6,0.1"])
    assert res.exit_code == 2 and "sum to 1" in res.output
    res = runner.invoke(
        app, ["import", str(src), "-o", str(tmp_path / "z"), "--split", "0.8,0.1,0.1", "--spatial-block", "0"]
    )
    assert res.exit_code == 2 and "block size" in res.output
    res = runner.invoke(app, ["import", str(src), "-o", str(tmp_path / "y"), "--columns", "lat=breite"])
    assert res.exit_code != 0 and "breite" in str(res.exception or "") + res.output


def test_exif_folder_copy_then_split_and_export(shared_data, tmp_path):
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    photos = tmp_path / "photos"
    photos.mkdir()
    srcs = sorted((shared_data("osv5m-sample") / "images").iterdir())[:3]
    for i, s in enumerate(srcs):
        im = Image.open(s)
        exif = im.getexif()
        exif.get_ifd(0x8825).update(
            {
                1: "N",
                2: (IFDRational(40 + i), IFDRational(0), IFDRational(0)),
                3: "W",
                4: (IFDRational(3), IFDRational(30), IFDRational(0)),
            }
        )
        im.save(photos / f"p{i}.jpg", exif=exif)
    shutil.copy(srcs[0], photos / "plain.jpg")
    out = tmp_path / "ds"
    res = runner.invoke(app, ["import", str(photos), "-o", str(out), "--copy"])
    assert res.exit_code == 0, res.output
    assert "3 of 4 image(s) imported, 1 problem(s)" in res.output and "no_gps" in res.output
    ds = Dataset.open(out)
    assert sorted(ds.frame["lat"]) == [40.0, 41.0, 42.0] and (ds.frame["lon"] == -3.5).all()
    assert all(p.parent == (out / "images").resolve() for p in ds.image_paths())
    # the copies are named by content; the original file name is kept beside them
    assert sorted(ds.frame["original_path"]) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert all(not p.name.startswith("p") for p in ds.image_paths())
    # an existing dataset: split it in place and export a CSV
    res = runner.invoke(app, ["import", str(out), "--split", "0.34,0.33,0.33", "--export-csv", str(tmp_path / "e.csv")])
    assert res.exit_code == 0, res.output
    assert sorted(Dataset.open(out).frame["split"]) == ["test", "train", "val"]
    exported = pd.read_csv(tmp_path / "e.csv")
    assert len(exported) == 3
    # relative to the CSV's folder (the images lie under it), so import_csv reads it back
    assert sorted((tmp_path / p).resolve() for p in exported["path"]) == sorted(ds.image_paths())


def test_dataset_moved_to_new_folder_keeps_images(shared_data, tmp_path):
    src = shared_data("osv5m-sample")
    res = runner.invoke(app, ["import", str(src), "-o", str(tmp_path / "a"), "--copy"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["import", str(tmp_path / "a"), "-o", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    b = Dataset.open(tmp_path / "b")
    assert len(b) == 71 and all(p.is_file() and p.is_relative_to(tmp_path / "a") for p in b.image_paths())
