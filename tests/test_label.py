"""label_dataset and `geoscout label` on real photo sets from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from geoscout.cli import app
from geoscout.data import Dataset
from geoscout.labels import label_dataset


def _subset(shared_data, name: str, n: int) -> pd.DataFrame:
    root = shared_data(name)
    m = pd.read_csv(root / "manifest.csv").head(n).copy()
    m["path"] = [str(root / p) for p in m["path"]]
    m["image_id"] = [f"{i:016x}" for i in range(len(m))]
    return m


@pytest.fixture(scope="module")
def world_frame(shared_data) -> pd.DataFrame:
    m = _subset(shared_data, "streetview-world", 40)
    m["captured_at"] = ["2021-07-15T12:00:00", "2019-01-03", None, "not a date"] * 10
    return m


def test_label_dataset_fills_every_column(tmp_path, world_frame, shared_geo):
    ds = Dataset.create(tmp_path / "ds", world_frame)
    out = label_dataset(ds, aux_dir=shared_geo, cells=("geohash:2",))
    assert out is ds
    df = ds.frame
    for col in (
        "country",
        "country_name",
        "admin1",
        "city",
        "month",
        "climate",
        "elevation_m",
        "pop_density",
        "cell:geohash:2",
    ):
        assert col in df.columns, col
    assert df["country"].notna().mean() > 0.9
    assert df["country"].nunique() >= 5
    assert df["climate"].notna().mean() > 0.9
    assert df["elevation_m"].notna().all()
    assert [None if pd.isna(v) else int(v) for v in df["month"][:4]] == [7, 1, None, None]
    assert ds.label_report.skipped == {}
    # labels agree with an independent look-up of the same points
    from geoscout.geo import geohash_encode

    assert list(df["cell:geohash:2"]) == [geohash_encode(a, b, 2) for a, b in zip(df["lat"], df["lon"])]
    ds.save()
    back = Dataset.open(tmp_path / "ds").frame
    assert list(back["country"]) == list(df["country"])
    assert str(back["month"].dtype) == "Int8"
    assert np.allclose(back["elevation_m"], df["elevation_m"])


def test_label_without_aux_and_with_missing_aux(tmp_path, world_frame):
    df = label_dataset(world_frame.head(5), aux=False)
    assert "climate" not in df.columns and df["country"].notna().all()
    with pytest.warns(UserWarning) as caught:
        df = label_dataset(world_frame.head(5), aux_dir=tmp_path)
    text = " ".join(str(w.message) for w in caught)
    assert "Koeppen-Geiger-ASCII.txt" in text and "etopo20" in text and "gpw_v4" in text
    assert set(df.attrs["label_report"].skipped) == {"climate", "elevation_m", "pop_density"}
    from geoscout.errors import MissingWeights

    with pytest.raises(MissingWeights, match="--aux-dir"):
        label_dataset(world_frame.head(5), aux_dir=tmp_path, strict_aux=True)


def test_bad_rows_are_skipped_and_reported(world_frame):
    frame = world_frame.head(6).copy()
    frame.loc[1, "lat"] = np.nan
    frame.loc[3, "lat"] = 123.0
    with pytest.warns(UserWarning, match="2 row"):
        df = label_dataset(frame, aux=False)
    assert df.attrs["label_report"].invalid_rows == [1, 3]
    assert df["country"].isna().tolist() == [False, True, False, True, False, False]


def test_unknown_cell_spec_is_a_clear_error(world_frame):
    from geoscout.errors import GeoscoutError

    with pytest.raises(GeoscoutError):
        label_dataset(world_frame.head(3), aux=False, cells=("nosuchpartition:3",))


runner = CliRunner()


def test_cli_label_writes_manifest_atomically(tmp_path, world_frame, shared_geo):
    Dataset.create(tmp_path / "ds", world_frame.head(12))
    res = runner.invoke(
        app, ["label", str(tmp_path / "ds"), "--aux-dir", str(shared_geo), "--cells", "geohash:3,country"]
    )
    assert res.exit_code == 0, res.output
    assert "labelled 12 image(s)" in res.output
    df = Dataset.open(tmp_path / "ds").frame
    assert {"country", "climate", "cell:geohash:3", "cell:country"} <= set(df.columns)
    assert df["cell:country"].notna().sum() >= df["country"].notna().sum() - 1
    assert sorted(os.listdir(tmp_path / "ds")) == ["manifest.parquet"]  # no temp files


def test_cli_label_read_only_source_needs_output(tmp_path, shared_data):
    csv = tmp_path / "few.csv"
    _subset(shared_data, "streetview-croatia", 8).drop(columns=["image_id"]).to_csv(csv, index=False)
    res = runner.invoke(app, ["label", str(csv), "--no-aux"])
    assert res.exit_code == 2 and "-o OUT" in res.output
    res = runner.invoke(app, ["label", str(csv), "--no-aux", "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    df = Dataset.open(tmp_path / "out").frame
    assert (df["country"] == "HR").mean() >= 0.75
    assert all(Path(p).is_file() for p in Dataset.open(tmp_path / "out").image_paths())
    res = runner.invoke(app, ["label", str(csv), "--no-aux", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--force" in res.output
    res = runner.invoke(app, ["label", str(tmp_path / "nope")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["label", str(csv), "--no-aux", "--aux-dir", str(tmp_path)])
    assert res.exit_code == 2
