"""geoscout.data on real photo sets: import, validation, Parquet round trip, atomic writes, splits."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from geoscout.data import (
    Dataset,
    import_csv,
    import_exif_folder,
    load_dataset,
    parse_column_mapping,
    split_dataset,
)
from geoscout.errors import InvalidInput
from geoscout.imageio import load_image

SETS = {"streetview-croatia": 1224, "streetview-world": 159, "streetview-strips": 85, "osv5m-sample": 71, "im2gps": 231}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def loaded(shared_data):
    return {name: load_dataset(shared_data(name)) for name in SETS}


@pytest.mark.parametrize("name", list(SETS))
def test_load_shared_sets(name, loaded, shared_data):
    ds = loaded[name]
    rows = _csv_rows(shared_data(name) / "manifest.csv")
    assert len(ds) == SETS[name] == len(rows)
    df = ds.frame
    assert df["image_id"].is_unique
    assert df["lat"].dtype == np.float64 and df["lon"].dtype == np.float64
    # coordinates and paths exactly as in the CSV, read independently
    by_path = {r["path"]: r for r in rows}
    for p, lat, lon in zip(df["path"], df["lat"], df["lon"]):
        assert float(by_path[p]["lat"]) == lat and float(by_path[p]["lon"]) == lon
    # image_id is the first 16 hex chars of the file's SHA-256 (checked on a few files)
    for i in (0, len(ds) // 2, len(ds) - 1):
        digest = hashlib.sha256(ds.image_path(i).read_bytes()).hexdigest()
        assert df["image_id"].iloc[i] == digest[:16]
        assert ds.image_path(i).is_absolute() and ds.image_path(i).is_file()
        assert ds.image_path(df["image_id"].iloc[i]) == ds.image_path(i)
    assert not ds.writable
    assert ds.name == name
    assert (df["source"] == name).all()


def test_croatia_keeps_panorama_columns(loaded, shared_data):
    df = loaded["streetview-croatia"].frame
    rows = _csv_rows(shared_data("streetview-croatia") / "manifest.csv")
    assert list(df["location_id"]) == [r["location_id"] for r in rows]
    assert list(df["heading"]) == [float(r["heading"]) for r in rows]
    assert df["location_id"].nunique() == 306
    assert (df.groupby("location_id").size() == 4).all()


def test_location_defaults_to_image_id_and_extra_columns_kept(loaded):
    df = loaded["osv5m-sample"].frame
    assert (df["location_id"] == df["image_id"]).all()
    assert df["heading"].isna().all()
    assert {"country", "region", "city", "mapillary_image_id"} <= set(df.columns)
    assert df["mapillary_image_id"].map(type).eq(str).all()  # ids stay strings


@pytest.mark.parametrize("method", ["location", "spatial"])
def test_splits_never_straddle_a_location(loaded, method):
    ds = loaded["streetview-croatia"]
    s = split_dataset(ds, fractions=(0.7, 0.15, 0.15), seed=3, method=method, block_deg=0.5)
    assert s.index.equals(ds.frame.index)
    per_loc = s.groupby(ds.frame["location_id"]).nunique()
    assert (per_loc == 1).all()
    assert set(s) == {"train", "val", "test"}
    if method == "spatial":
        blocks = (
            np.floor(ds.frame["lat"] / 0.5).astype(int).astype(str)
            + ":"
            + np.floor(ds.frame["lon"] / 0.5).astype(int).astype(str)
        )
        assert (s.groupby(blocks).nunique() == 1).all()
    else:  # location groups are small, so shares are close to the targets
        share = s.value_counts(normalize=True)
        assert abs(share["train"] - 0.7) < 0.02 and abs(share["val"] - 0.15) < 0.02
    again = split_dataset(ds.frame, fractions=(0.7, 0.15, 0.15), seed=3, method=method, block_deg=0.5)
    assert again.equals(s)
    other = split_dataset(ds.frame, fractions=(0.7, 0.15, 0.15), seed=4, method=method, block_deg=0.5)
    assert not other.equals(s)


def test_split_edge_cases(loaded):
    df = loaded["im2gps"].frame
    s = split_dataset(df, fractions=(0.9, 0.0, 0.1))
    assert "val" not in set(s)
    assert s.value_counts()["test"] == 23
    for bad in [(0.5, 0.5), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1), "a,b,c"]:
        with pytest.raises(InvalidInput, match="split fractions"):
            split_dataset(df, fractions=bad)
    with pytest.raises(InvalidInput, match="method"):
        split_dataset(df, method="random")
    with pytest.raises(InvalidInput, match="block"):
        split_dataset(df, method="spatial", block_deg=0)


def test_csv_with_remapped_columns(tmp_path, shared_data):
    root = shared_data("streetview-croatia")
    rows = _csv_rows(root / "manifest.csv")[:8]
    src = tmp_path / "mine.csv"
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "latitude", "lng", "yaw", "pano", "when"])
        for r in rows:
            w.writerow(
                [str(root / r["path"]), r["lat"], r["lon"], r["heading"], r["location_id"], "2020-05-01 10:00:00"]
            )
    rep = import_csv(src, columns="path=file,lat=latitude,lon=lng,heading=yaw,location_id=pano,captured_at=when")
    assert rep.problems == [] and rep.n_imported == 8
    df = rep.dataset.frame
    assert list(df["lat"]) == [float(r["lat"]) for r in rows]
    assert list(df["heading"]) == [float(r["heading"]) for r in rows]
    assert list(df["location_id"]) == [r["location_id"] for r in rows]
    assert (df["captured_at"] == "2020-05-01T10:00:00").all()
    assert all(Path(p).is_absolute() for p in df["path"])  # outside the CSV's folder
    # aliases are found without a mapping (latitude/lng/file), unknown columns kept
    rep2 = import_csv(src)
    assert rep2.n_imported == 8 and {"yaw", "pano", "when"} <= set(rep2.dataset.frame.columns)
    with pytest.raises(InvalidInput, match="no column 'breite'.*columns are"):
        import_csv(src, columns={"lat": "breite"})
    with pytest.raises(InvalidInput, match="NAME=CSV_COLUMN"):
        parse_column_mapping("lat")


def _write_gps_jpeg(src: Path, dst: Path, *, lat_dms, lat_ref, lon_dms, lon_ref, orientation=None, alt=None, when=None):
    im = Image.open(src)
    exif = im.getexif()
    if orientation:
        exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    rat = lambda x: IFDRational(round(x * 100), 100)  # noqa: E731
    gps.update({1: lat_ref, 2: tuple(rat(v) for v in lat_dms), 3: lon_ref, 4: tuple(rat(v) for v in lon_dms)})
    if alt is not None:
        gps.update({5: b"\x01" if alt < 0 else b"\x00", 6: rat(abs(alt))})
    if when:
        exif.get_ifd(0x8769)[0x9003] = when
    im.save(dst, exif=exif, quality=92)


@pytest.fixture(scope="module")
def exif_folder(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("exif")
    im2 = shared_data("im2gps") / "images"
    srcs = sorted(im2.iterdir())[:4]
    (folder / "trip").mkdir()
    # Rio de Janeiro: S / W, rotated by orientation tag 6
    _write_gps_jpeg(
        srcs[0],
        folder / "rio.jpg",
        lat_dms=(22, 54, 24.48),
        lat_ref="S",
        lon_dms=(43, 10, 22.44),
        lon_ref="W",
        orientation=6,
        alt=-12.5,
        when="2021:06:30 14:05:09",
    )
    # Oslo: N / E, upright
    _write_gps_jpeg(
        srcs[1],
        folder / "trip" / "oslo.jpg",
        lat_dms=(59, 54, 50.4),
        lat_ref="N",
        lon_dms=(10, 45, 9.6),
        lon_ref="E",
        alt=23.0,
    )
    shutil.copy(srcs[2], folder / "trip" / "no_gps.jpg")  # a real photo without GPS
    im = Image.open(srcs[3])  # GPS latitude with a zero denominator
    exif = im.getexif()
    exif.get_ifd(0x8825).update(
        {
            1: "N",
            2: (IFDRational(1, 0), IFDRational(0), IFDRational(0)),
            3: "E",
            4: (IFDRational(5), IFDRational(0), IFDRational(0)),
        }
    )
    im.save(folder / "trip" / "zero_den.jpg", exif=exif)
    shutil.copy(folder / "rio.jpg", folder / "trip" / "rio_copy.jpg")  # duplicate content
    (folder / "notes.txt").write_text("not a photo")
    return folder, srcs


def test_exif_folder_import(exif_folder, tmp_path):
    folder, srcs = exif_folder
    rep = import_exif_folder(folder)
    df = rep.dataset.frame.set_index("path")
    assert sorted(df.index) == ["rio.jpg", "trip/oslo.jpg"]
    rio, oslo = df.loc["rio.jpg"], df.loc["trip/oslo.jpg"]
    assert rio["lat"] == pytest.approx(-(22 + 54 / 60 + 24.48 / 3600), abs=1e-9)
    assert rio["lon"] == pytest.approx(-(43 + 10 / 60 + 22.44 / 3600), abs=1e-9)
    assert oslo["lat"] == pytest.approx(59 + 54 / 60 + 50.4 / 3600, abs=1e-9)
    assert oslo["lon"] == pytest.approx(10 + 45 / 60 + 9.6 / 3600, abs=1e-9)
    assert rio["altitude_m"] == pytest.approx(-12.5) and oslo["altitude_m"] == pytest.approx(23.0)
    assert rio["captured_at"] == "2021-06-30T14:05:09" and pd.isna(oslo["captured_at"])
    # orientation 6: the stored size is the upright (rotated) one
    raw_w, raw_h = Image.open(folder / "rio.jpg").size
    assert (rio["width"], rio["height"]) == (raw_h, raw_w) != (raw_w, raw_h)
    assert load_image(rep.dataset.image_path(rio["image_id"])).size == (raw_h, raw_w)
    assert (oslo["width"], oslo["height"]) == Image.open(srcs[1]).size
    kinds = {p.path: p.kind for p in rep.problems}
    assert kinds == {
        "trip/no_gps.jpg": "no_gps",
        "trip/rio_copy.jpg": "duplicate",
        "notes.txt": "not_image",
        "trip/zero_den.jpg": "bad_coordinates",
    }
    dup = next(p for p in rep.problems if p.kind == "duplicate")
    assert "rio.jpg" in dup.reason
    assert "zero denominator" in next(p.reason for p in rep.problems if p.kind == "bad_coordinates")
    assert rep.total == 6


@pytest.fixture(scope="module")
def bad_csv(tmp_path_factory, shared_data):
    d = tmp_path_factory.mktemp("bad")
    root = shared_data("streetview-world")
    rows = _csv_rows(root / "manifest.csv")[:4]
    good = [root / r["path"] for r in rows]
    (d / "img").mkdir()
    shutil.copy(good[0], d / "img" / "copy_of_first.jpg")
    (d / "img" / "empty.jpg").write_bytes(b"")
    data = good[1].read_bytes()
    (d / "img" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "img" / "text.jpg").write_text("this is a text file renamed .jpg\n")
    lines = [
        ("path", "lat", "lon"),
        (str(good[0]), rows[0]["lat"], rows[0]["lon"]),  # 2 good
        ("img/does_not_exist.jpg", "10", "10"),  # 3 missing
        ("img/copy_of_first.jpg", "1", "2"),  # 4 duplicate of row 2
        (str(good[2]), "95", rows[2]["lon"]),  # 5 latitude out of range
        (str(good[3]), rows[3]["lat"], "abc"),  # 6 non-numeric longitude
        ("img/empty.jpg", "1", "1"),  # 7 zero bytes
        ("img/truncated.jpg", "1", "1"),  # 8 truncated JPEG
        ("img/text.jpg", "1", "1"),  # 9 not an image
        (str(good[1]), rows[1]["lat"], rows[1]["lon"]),  # 10 good
    ]
    with open(d / "bad.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(lines)
    return d / "bad.csv", good, rows


def test_bad_inputs_reported_good_rows_kept(bad_csv, tmp_path):
    src, good, rows = bad_csv
    rep = import_csv(src, tmp_path / "ds")
    assert rep.n_imported == 2 and rep.total == 9
    assert [float(x) for x in rep.dataset.frame["lat"]] == [float(rows[0]["lat"]), float(rows[1]["lat"])]
    got = {p.row: (p.kind, p.reason, p.path) for p in rep.problems}
    assert sorted(got) == [3, 4, 5, 6, 7, 8, 9]
    assert got[3][0] == "missing_file" and "not found" in got[3][1] and got[3][2] == "img/does_not_exist.jpg"
    assert got[4][0] == "duplicate" and "row 2" in got[4][1]
    assert got[5][0] == "bad_coordinates" and "latitude 95" in got[5][1]
    assert got[6][0] == "bad_coordinates" and "'abc' is not a number" in got[6][1]
    assert got[7][0] == "unreadable_image" and "0 bytes" in got[7][1]
    assert got[8][0] == "unreadable_image" and "truncated" in got[8][1]
    assert got[9][0] == "unreadable_image" and "not an image" in got[9][1]
    written = pd.read_csv(tmp_path / "ds" / "problems.csv")
    assert list(written["row"]) == [3, 4, 5, 6, 7, 8, 9]
    assert next(iter(written["path"])) == "img/does_not_exist.jpg"


def test_parquet_round_trip_and_csv_export(bad_csv, tmp_path):
    src, good, rows = bad_csv
    rep = import_csv(src, tmp_path / "ds")
    ds = Dataset.open(tmp_path / "ds")
    assert ds.writable and ds.manifest_path == (tmp_path / "ds" / "manifest.parquet").resolve()
    pd.testing.assert_frame_equal(ds.frame, rep.dataset.frame)
    assert load_dataset(tmp_path / "ds").frame.equals(ds.frame)
    assert ds.image_paths() == [p.resolve() for p in (good[0], good[1])]
    ds.frame["split"] = ["train", "test"]
    ds.save()
    assert list(Dataset.open(tmp_path / "ds").frame["split"]) == ["train", "test"]
    out_csv = ds.to_csv(tmp_path / "export" / "m.csv")
    back = import_csv(out_csv)
    assert back.problems == []
    assert list(back.dataset.frame["image_id"]) == list(ds.frame["image_id"])
    assert list(back.dataset.frame["split"]) == ["train", "test"]
    assert np.array_equal(back.dataset.frame[["lat", "lon"]].to_numpy(), ds.frame[["lat", "lon"]].to_numpy())


def test_copy_is_content_addressed_and_resumable(shared_data, tmp_path):
    src = shared_data("osv5m-sample") / "manifest.csv"
    out = tmp_path / "ds"
    rep = import_csv(src, out, copy=True)
    assert rep.n_imported == 71
    files = sorted((out / "images").iterdir())
    assert len(files) == 71
    for i in (0, 40):
        p = rep.dataset.image_path(i)
        assert p.parent == (out / "images").resolve()
        assert hashlib.sha256(p.read_bytes()).hexdigest()[:16] == rep.dataset.frame["image_id"].iloc[i]
    files[0].unlink()  # as if the first run was killed before copying it
    rep2 = import_csv(src, out, copy=True)
    assert sorted((out / "images").iterdir()) == files and rep2.n_imported == 71
    assert not list(out.rglob("*.tmp"))
    assert Dataset.open(out).frame["path"].str.startswith("images/").all()


def test_failed_write_leaves_old_manifest(bad_csv, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    src, _, _ = bad_csv
    import_csv(src, tmp_path / "ds")
    before = (tmp_path / "ds" / "manifest.parquet").read_bytes()
    ds = Dataset.open(tmp_path / "ds")
    ds.frame["note"] = ["a", "b"]
    real = pq.write_table

    def half_then_fail(table, where, **kw):
        real(table.slice(0, 1), where, **kw)
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        ds.save()
    assert (tmp_path / "ds" / "manifest.parquet").read_bytes() == before
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["manifest.parquet", "problems.csv"] or sorted(
        p.name for p in (tmp_path / "ds").iterdir()
    ) == ["manifest.parquet", "problems.csv"]
    assert len(Dataset.open(tmp_path / "ds")) == 2


def test_schema_validation_errors(tmp_path, loaded):
    frame = loaded["im2gps"].frame.head(3).copy()
    with pytest.raises(InvalidInput, match="missing required column"):
        Dataset.create(tmp_path / "a", frame.drop(columns=["lat"]))
    bad = frame.copy()
    bad.loc[1, "lat"] = 91.0
    with pytest.raises(InvalidInput, match="not a valid"):
        Dataset.create(tmp_path / "b", bad)
    dup = frame.copy()
    dup.loc[2, "image_id"] = dup.loc[0, "image_id"]
    with pytest.raises(InvalidInput, match="more than once"):
        Dataset.create(tmp_path / "c", dup)
    sp = frame.copy()
    sp["split"] = ["train", "dev", "test"]
    with pytest.raises(InvalidInput, match="'split'"):
        Dataset.create(tmp_path / "d", sp)
    ok = Dataset.create(tmp_path / "e", frame)
    with pytest.raises(InvalidInput, match="already holds"):
        Dataset.create(tmp_path / "e", frame)
    with pytest.raises(InvalidInput, match="no manifest.parquet"):
        Dataset.open(tmp_path / "nothing")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "manifest.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InvalidInput, match="not a readable Parquet"):
        Dataset.open(tmp_path / "f")
    with pytest.raises(InvalidInput, match="not writable"):
        loaded["im2gps"].save()
    with pytest.raises(InvalidInput, match="out of range"):
        ok.image_path(3)
    with pytest.raises(InvalidInput, match="neither a geoscout dataset"):
        load_dataset(tmp_path / "f" / "..")
    with pytest.raises(InvalidInput, match="empty"):
        (tmp_path / "empty.csv").write_text("")
        import_csv(tmp_path / "empty.csv")


def test_oversized_image_and_failed_copy_are_reported(shared_data, tmp_path, monkeypatch):
    import geoscout.data.importers as imp

    root = shared_data("streetview-world")
    rows = _csv_rows(root / "manifest.csv")[:3]
    Image.new("L", (8000, 5100)).save(tmp_path / "huge.png")  # 40.8 M pixels > the 40 M default limit
    src = tmp_path / "in.csv"
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "lat", "lon"])
        w.writerow(["huge.png", "1", "1"])
        for r in rows:
            w.writerow([str(root / r["path"]), r["lat"], r["lon"]])
    real = shutil.copyfile
    victim = (root / rows[1]["path"]).resolve()

    def flaky(a, b, *args, **kw):
        if Path(a) == victim:
            raise OSError(28, "No space left on device")
        return real(a, b, *args, **kw)

    monkeypatch.setattr(imp.shutil, "copyfile", flaky)
    rep = import_csv(src, tmp_path / "ds", copy=True)
    got = {p.row: (p.kind, p.reason) for p in rep.problems}
    assert got[2][0] == "unreadable_image" and "exceeds the limit" in got[2][1]
    assert got[4][0] == "copy_failed" and "No space left" in got[4][1]
    assert rep.n_imported == 2 and len(list((tmp_path / "ds" / "images").iterdir())) == 2
    assert len(Dataset.open(tmp_path / "ds")) == 2


def test_split_for_training_keeps_given_splits_and_splits_the_rest():
    import pandas as pd

    from geoscout.data import split_for_training

    f = pd.DataFrame(
        {
            "dataset": ["a"] * 8 + ["b"] * 40,
            "location_id": [f"a{i // 2}" for i in range(8)] + [f"b{i // 4}" for i in range(40)],
            "split": ["train", "train", "val", "val", "test", "test", "train", "train"] + [None] * 40,
        }
    )
    split, desc = split_for_training(f, val_fraction=0.2, seed=3)
    assert list(split[:8]) == list(f["split"][:8])
    b = split[8:]
    assert set(b) == {"train", "val"} and (b == "val").sum() == 8  # 2 of its 10 locations, 4 views each
    for loc in set(f["location_id"][8:]):  # views of one place stay together
        assert len(set(split[(f["location_id"] == loc).to_numpy()])) == 1
    assert desc.startswith("a: the manifest's split column") and "rows without a split of b" in desc
    split0, desc0 = split_for_training(f, val_fraction=0.0)
    assert set(split0[8:]) == {"train"} and "no validation" in desc0
    no_val = f.assign(split=["train"] * 6 + ["test"] * 2 + [None] * 40)[:14]  # a: train/test only; b: 6 views
    split1, _ = split_for_training(no_val, val_fraction=0.5, seed=0)
    assert set(split1[:6]) <= {"train", "val"} and list(split1[6:8]) == ["test", "test"]
    assert (split1 == "val").sum() >= 4  # validation drawn from a's train rows and b together
    with pytest.raises(InvalidInput, match=r"dataset 'a'.*'dev'"):
        split_for_training(f.assign(split=["dev"] * 48), val_fraction=0.2)
