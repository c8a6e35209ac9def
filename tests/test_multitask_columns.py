"""Multi-task head on arbitrary manifest columns (OSV-5M's labels): fit, predict_aux, state round trip, and
the path from `import --from osv5m` through `train_model`."""

from __future__ import annotations

import numpy as np
import pytest

from geoscout.errors import InvalidInput
from geoscout.heads import create_head, head_from_state

FAST = {"epochs": 12, "hidden": 64, "batch_size": 128, "seed": 3}
OFF = {"climate": 0.0, "elevation": 0.0, "population": 0.0, "month": 0.0}


@pytest.fixture(scope="module")
def data():
    from geoscout.cells import create_partition

    rng = np.random.default_rng(0)
    places = np.array([[45.5, 16.0], [40.0, -100.0], [-30.0, 140.0], [60.0, 90.0], [0.0, 30.0]])
    n = 800
    lab = rng.integers(0, len(places), n)
    y = places[lab] + rng.normal(0.0, 0.5, (n, 2))
    proto = rng.normal(0.0, 1.0, (len(places), 32))
    X = (proto[lab] + rng.normal(0.0, 0.8, (n, 32))).astype(np.float32)
    land = np.array([10.0, 30.0, 60.0, 10.0, 40.0])[lab]
    land[::17] = np.nan  # unknown labels are masked, not a class
    aux = {"land_cover": land, "dist_sea": np.array([5.0, 900.0, 300.0, 1500.0, 50.0])[lab] + rng.normal(0, 10, n)}
    part = create_partition("grid:10").fit(y[:600, 0], y[:600, 1])
    return X, y, lab, aux, part


def test_multitask_learns_manifest_columns(data):
    X, y, lab, aux, part = data
    cols = {"land_cover": "class", "dist_sea": "value"}
    head = create_head("multitask", aux_columns=cols, aux_weights=OFF, **FAST)
    head.fit(X[:600], y[:600], partition=part, aux={k: v[:600] for k, v in aux.items()})
    assert head.aux_tasks_ == [] and [t["column"] for t in head.extra_tasks_] == ["land_cover", "dist_sea"]
    assert head.extra_tasks_[0]["classes"] == ["10", "30", "40", "60"]
    out = head.predict_aux(X[600:])
    truth = np.array(["10", "30", "60", "10", "40"], dtype=object)[lab[600:]]
    assert np.mean(out["land_cover"] == truth) > 0.9
    err = np.median(np.abs(out["dist_sea"] - aux["dist_sea"][600:]))
    prior = np.median(np.abs(aux["dist_sea"][:600].mean() - aux["dist_sea"][600:]))  # predict the training mean
    assert err < 0.5 * prior
    config, tensors = head.get_state()
    back = head_from_state(config, tensors, partition=part)
    np.testing.assert_allclose(back.predict_aux(X[600:])["dist_sea"], out["dist_sea"], rtol=1e-5)
    np.testing.assert_array_equal(back.predict(X[600:]), head.predict(X[600:]))


def test_multitask_column_errors(data):
    X, y, lab, aux, part = data
    with pytest.raises(InvalidInput, match="no column 'soil'"):
        create_head("multitask", aux_columns={"soil": "class"}, aux_weights=OFF, **FAST).fit(
            X[:100], y[:100], partition=part, aux={k: v[:100] for k, v in aux.items()}
        )
    with pytest.raises(InvalidInput, match="'class'"):
        create_head("multitask", aux_columns={"soil": "categorical"}, **FAST).fit(X[:100], y[:100], partition=part)
    with pytest.raises(InvalidInput, match="needs numbers"):
        create_head("multitask", aux_columns={"c": "value"}, aux_weights=OFF, **FAST).fit(
            X[:100], y[:100], partition=part, aux={"c": np.array(["a"] * 100, dtype=object)}
        )


def test_osv5m_labels_flow_from_import_to_a_trained_bundle(shared_data, tmp_path):
    """`import --from osv5m` keeps the labels; train_model carries the aux_columns into the multi-task head."""
    import csv
    import shutil

    import pandas as pd

    from geoscout.bundle import ModelBundle
    from geoscout.data.open_datasets import OSV5M_AUX_TASKS, import_open_dataset
    from geoscout.train import train_model
    from test_open_datasets import OSV_HEADER, _osv_row

    src = shared_data("osv5m-sample")
    df = pd.read_csv(src / "manifest.csv", dtype={"mapillary_image_id": str}).iloc[:16]
    root = tmp_path / "osv5m"
    with open(root.mkdir() or root / "train.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(OSV_HEADER)
        for i, (_, r) in enumerate(df.iterrows()):
            (root / "images" / "train" / "00").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / r["path"], root / "images" / "train" / "00" / f"{r['mapillary_image_id']}.jpg")
            w.writerow(_osv_row(r, i))
    rep = import_open_dataset("osv5m", root, tmp_path / "ds")
    assert rep.n_imported == 16
    bundle = train_model(
        [str(tmp_path / "ds")],
        backbone="effnet-lite0",
        cells="grid:30",
        head="multitask",
        epochs=2,
        val_fraction=0.0,
        head_params={"hidden": 32, "aux_columns": OSV5M_AUX_TASKS, "aux_weights": OFF},
        store_dir=tmp_path / "stores",
        retrieval=False,
        progress=False,
    )
    cols = [t["column"] for t in bundle.head.extra_tasks_]
    assert cols == list(OSV5M_AUX_TASKS)
    bundle.save(tmp_path / "b")
    back = ModelBundle.load(tmp_path / "b")
    assert [t["column"] for t in back.head.extra_tasks_] == cols


def test_cli_aux_column_is_checked():
    from typer.testing import CliRunner

    from geoscout.cli import app

    res = CliRunner().invoke(app, ["train", "ds", "-o", "b", "--head", "multitask", "--aux-column", "soil:cat"])
    assert res.exit_code == 2 and "COLUMN:class or COLUMN:value" in res.output
    res = CliRunner().invoke(app, ["train", "ds", "-o", "b", "--aux-column", "osv5m"])
    assert res.exit_code == 2 and "--head multitask" in res.output


def test_train_never_uses_a_manifests_test_rows():
    """OSV-5M imports carry split = train / test; the validation split drawn by train_model leaves test rows out."""
    import pandas as pd

    from geoscout.train import TrainingData, train_model

    rng = np.random.default_rng(1)
    n = 60
    frame = pd.DataFrame(
        {
            "dataset": "osv",
            "image_id": [f"i{i}" for i in range(n)],
            "location_id": [f"osv/l{i}" for i in range(n)],
            "lat": rng.uniform(-50, 50, n),
            "lon": rng.uniform(-150, 150, n),
            "split": ["test" if i % 3 == 0 else "train" for i in range(n)],
        }
    )
    td = TrainingData(rng.normal(size=(n, 8)).astype(np.float32), frame, {"backbone": "x"}, 0)
    bundle = train_model(None, data=td, cells="grid:30", head="knn", val_fraction=0.2, progress=False)
    s = bundle.training
    assert s["n_train"] + s["n_val"] == 40 and s["n_val"] > 0
