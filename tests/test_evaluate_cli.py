"""``geoscout evaluate`` through Typer's CliRunner on the real im2gps truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from geoscout.cli import app
from geoscout.geo import destination_point
from geoscout.predictions import write_predictions
from geoscout.types import Candidate, Prediction


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    from geoscout.data import load_dataset

    root = shared_data("im2gps")
    f = load_dataset(root).frame
    n = len(f)
    d = np.where(np.arange(n) % 4 == 0, 10.0, 300.0)  # 1 in 4 within 25 km, all within 750 km
    la, lo = destination_point(f["lat"].to_numpy(), f["lon"].to_numpy(), 45.0, d)
    preds = [Prediction(i, [Candidate(float(a), float(b), 1.0)]) for i, a, b in zip(f["image_id"], la, lo)]
    preds[1] = Prediction(preds[1].image_id, error="unreadable")
    tmp = tmp_path_factory.mktemp("cli")
    path = write_predictions(preds, tmp / "preds.csv")
    answered = np.ones(n, dtype=bool)
    answered[1] = False
    return root, path, tmp, float(np.mean(d[answered] < 25)), n


def test_evaluate_json_and_report_dir(setup):
    root, path, tmp, acc25, n = setup
    out = tmp / "report"
    res = CliRunner().invoke(
        app, ["evaluate", "-p", str(path), "--truth", str(root), "-o", str(out), "--format", "json", "--no-places"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    m = data["metrics"]
    assert m["n_truth"] == n and m["n_failed"] == 1 and m["n"] == n - 1
    assert m["acc@25km"] == pytest.approx(acc25) and m["acc@200km"] == pytest.approx(acc25) and m["acc@750km"] == 1.0
    for name in ("report.json", "report.md", "per_image.csv", "error_cdf.png", "error_map.png"):
        assert (out / name).is_file(), name


def test_evaluate_table_and_markdown(setup):
    root, path, _, acc25, n = setup
    res = CliRunner(env={"COLUMNS": "160"}).invoke(app, ["evaluate", "-p", str(path), "-t", str(root)])
    assert res.exit_code == 0, res.output
    assert "geoscout evaluation: im2gps" in res.stdout and f"{100 * acc25:.1f}%" in res.stdout
    assert f"{n - 1} answered of {n}" in res.stdout and "country" in res.stdout
    res = CliRunner().invoke(app, ["evaluate", "-p", str(path), "-t", str(root), "-f", "markdown", "--no-places"])
    assert res.exit_code == 0 and res.stdout.startswith("# geoscout evaluation: im2gps")


def test_evaluate_errors(setup, tmp_path):
    root, path, _, _, _ = setup
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "-p", str(tmp_path / "missing.jsonl"), "-t", str(root)])
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,lat,lon\nx,1,north\n", encoding="utf-8")
    res = runner.invoke(app, ["evaluate", "-p", str(bad), "-t", str(root)])
    assert res.exit_code == 2 and "line 2" in res.output and "lon must be a number" in res.output
    res = runner.invoke(app, ["evaluate", "-p", str(path), "-t", str(tmp_path / "no-such-dataset")])
    assert res.exit_code != 0 and "no-such-dataset" in res.output


@pytest.fixture()
def linked_dataset(shared_data, tmp_path, monkeypatch):
    """3 Street View panoramas (12 photos, file names 0.jpg .. 270.jpg repeat) reached through a symlinked folder."""
    import shutil

    import pandas as pd

    src = shared_data("streetview-croatia")
    m = pd.read_csv(src / "manifest.csv").head(12)
    real = tmp_path / "disk" / "croatia"
    for p in m["path"]:
        (real / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / p, real / p)
    m.to_csv(real / "manifest.csv", index=False)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "data").symlink_to(tmp_path / "disk", target_is_directory=True)
    monkeypatch.chdir(tmp_path / "work")
    return Path("data") / "croatia", m


def test_locate_then_evaluate_through_a_symlinked_dataset(linked_dataset):
    """The README's two commands on a dataset reached through a symlink: every photo is matched and scored."""
    root, m = linked_dataset
    runner = CliRunner()
    res = runner.invoke(app, ["locate", "-r", str(root / "images"), "-f", "jsonl", "-o", "p.jsonl"])
    assert res.exit_code == 0, res.output
    assert json.loads(Path("p.jsonl").read_text().splitlines()[0])["image_id"].startswith("data/croatia/images/")
    res = runner.invoke(app, ["evaluate", "-p", "p.jsonl", "-t", str(root), "-f", "json", "--no-places"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)["metrics"]
    assert (metrics["n_answered"], metrics["n_truth"], metrics["n_unmatched"], metrics["coverage"]) == (12, 12, 0, 1.0)


def test_evaluate_refuses_predictions_that_match_nothing(linked_dataset, tmp_path):
    root, m = linked_dataset
    preds = [Prediction(f"other/photo{i}.jpg", [Candidate(45.0, 16.0, 1.0)]) for i in range(5)]
    path = write_predictions(preds, tmp_path / "other.jsonl")
    res = CliRunner().invoke(app, ["evaluate", "-p", str(path), "-t", str(root), "--no-places"])
    assert res.exit_code == 2, res.output
    assert "only 0 of 5 predictions match" in res.output
    assert "'other/photo0.jpg'" in res.output and repr(m["path"].iloc[0]) in res.output  # one id from each side
    # one match in 12 is "almost nothing" by default; --min-matched 0 scores it anyway
    one = [Prediction(str(root / m["path"].iloc[0]), [Candidate(45.0, 16.0, 1.0)])] + preds * 2
    path = write_predictions(one, tmp_path / "one.jsonl")
    res = CliRunner().invoke(app, ["evaluate", "-p", str(path), "-t", str(root), "--no-places"])
    assert res.exit_code == 2 and "only 1 of 11 predictions" in res.output and "--min-matched" in res.output
    res = CliRunner().invoke(
        app, ["evaluate", "-p", str(path), "-t", str(root), "--no-places", "--min-matched", "0", "-f", "json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"]["n_answered"] == 1


def test_evaluate_exits_1_when_every_matched_prediction_failed(linked_dataset, tmp_path):
    root, m = linked_dataset
    preds = [Prediction(str(root / p), error="cannot decode") for p in m["path"]]
    path = write_predictions(preds, tmp_path / "failed.jsonl")
    res = CliRunner().invoke(app, ["evaluate", "-p", str(path), "-t", str(root), "--no-places", "-o", "rep"])
    assert res.exit_code == 1 and "nothing was scored" in res.output
    assert Path("rep/report.json").is_file()  # the report of what happened is still written


def test_evaluate_table_reads_at_80_columns(setup):
    """Metrics are rows: nothing is cut ('…') in an 80-column terminal."""
    root, path, _, acc25, n = setup
    res = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["evaluate", "-p", str(path), "-t", str(root), "--no-places"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in res.stdout
    row = next(line for line in lines if "within 25 km (city)" in line)
    assert f"{100 * acc25:.1f}%" in row
    assert any("GeoGuessr" in line for line in lines) and any(f"{n - 1}" in line for line in lines)
