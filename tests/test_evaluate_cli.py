"""``geoscout evaluate`` through Typer's CliRunner on the real im2gps truth."""

from __future__ import annotations

import json

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
