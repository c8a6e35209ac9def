"""The partition is stored once (the bundle's partition.geojson) and the head's training options are one value;
bundles written before either change still load and predict exactly as they did."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from geoscout.bundle import ModelBundle
from geoscout.errors import InvalidInput
from geoscout.heads import TrainingOptions, create_head, head_from_state

OLD = Path(__file__).parent / "fixtures" / "old_layout"


@pytest.mark.parametrize("name", ["hybrid", "classifier"])
def test_a_bundle_written_by_the_old_layout_loads_and_predicts_as_it_did(name, tmp_path):
    """Bundles written by the previous code (cells in the head's state, flat training parameters; see
    fixtures/old_layout/make_old_layout.py) load, predict bit-identically, and re-save in the new layout."""
    expected = json.loads((OLD / f"expected-{name}.json").read_text())
    cfg = json.loads((OLD / name / "config.json").read_text())
    assert "cell_ids" in cfg["head"] and "epochs" in cfg["head"]["params"]  # really the old layout
    old = ModelBundle.load(OLD / name)
    X = np.asarray(expected["X"], dtype=np.float32)
    d = old.head.predict_distribution(X)
    np.testing.assert_array_equal(d.prob, np.asarray(expected["prob"]))
    np.testing.assert_array_equal(d.lat, np.asarray(expected["lat"]))
    np.testing.assert_array_equal(d.lon, np.asarray(expected["lon"]))
    assert d.cell == expected["cell"]
    assert old.head.options == TrainingOptions(epochs=3, lr=0.003, patience=2, seed=0)
    assert old.head.get_params()["hidden"] == 8

    new = old.save(tmp_path / name)
    new_cfg = json.loads((new / "config.json").read_text())
    assert "cell_ids" not in new_cfg["head"] and new_cfg["head"]["n_cells"] == len(expected["cell"])
    assert new_cfg["head"]["params"]["options"]["lr"] == 0.003 and "epochs" not in new_cfg["head"]["params"]
    assert "centroids" not in load_file(str(new / "weights.safetensors"))
    again = ModelBundle.load(new).head.predict_distribution(X)
    np.testing.assert_array_equal(again.prob, d.prob)
    np.testing.assert_array_equal(again.lat, d.lat)
    assert again.cell == d.cell
    old_bytes = sum(p.stat().st_size for p in (OLD / name).iterdir())
    assert sum(p.stat().st_size for p in new.iterdir()) < old_bytes


def test_the_shipped_model_in_the_new_layout_answers_exactly_as_shipped(tmp_path, shared_data):
    """geoscout-lite as shipped (whichever layout it has) and re-saved in the new one give identical predictions
    on real photos, and the re-saved copy is not larger."""
    from geoscout.locator import _builtin_dir, load_model

    shipped = _builtin_dir("geoscout-lite")
    resaved = ModelBundle.load(shipped).save(tmp_path / "lite")
    cfg = json.loads((resaved / "config.json").read_text())
    assert "cell_ids" not in cfg["head"]
    assert sum(p.stat().st_size for p in resaved.iterdir()) <= sum(p.stat().st_size for p in shipped.iterdir())
    root = shared_data("streetview-world")
    photos = sorted((root / "images").iterdir())[::40]
    a = load_model("geoscout-lite").locate(photos, top_k=5)
    b = load_model(str(resaved)).locate(photos, top_k=5)
    for p, q in zip(a, b, strict=True):
        assert [(c.lat, c.lon, c.probability, c.cell) for c in p.candidates] == [
            (c.lat, c.lon, c.probability, c.cell) for c in q.candidates
        ]
        assert (p.answer, p.radius_km) == (q.answer, q.radius_km)


@pytest.fixture(scope="module")
def fitted():
    from geoscout.cells import create_partition

    rng = np.random.default_rng(1)
    places = np.array([[45.5, 16.0], [40.0, -100.0], [-30.0, 140.0]])
    lab = rng.integers(0, 3, 150)
    y = places[lab] + rng.normal(0, 0.5, (150, 2))
    X = (rng.normal(0, 1, (3, 8))[lab] + rng.normal(0, 0.5, (150, 8))).astype(np.float32)
    part = create_partition("grid:10").fit(y[:, 0], y[:, 1])
    return create_head("classifier", hidden=8, epochs=2, seed=0).fit(X, y, partition=part), part, X


def test_a_head_state_takes_its_cells_from_the_partition_and_says_so_without_it(fitted):
    head, part, X = fitted
    config, tensors = head.get_state()
    assert "cell_ids" not in config and "centroids" not in tensors and config["n_cells"] == part.n_cells
    back = head_from_state(json.loads(json.dumps(config)), tensors, partition=part)
    np.testing.assert_array_equal(back.predict_proba(X), head.predict_proba(X))
    assert back.cell_ids_ == [str(c) for c in part.cell_ids]
    with pytest.raises(InvalidInput, match="trained on"):
        head_from_state(config, tensors)
    from geoscout.cells import create_partition

    other = create_partition("grid:30").fit(np.array([0.0, 50.0]), np.array([0.0, 100.0]))
    with pytest.raises(InvalidInput, match="belongs to another model"):
        head_from_state(config, tensors, partition=other)


def test_a_bundle_whose_partition_file_is_another_models_is_refused(fitted, tmp_path):
    from geoscout.cells import create_partition

    head, part, X = fitted
    out = ModelBundle(head=head, partition=part).save(tmp_path / "m")
    other = create_partition("grid:30").fit(np.array([0.0, 50.0]), np.array([0.0, 100.0]))
    shutil.copy(ModelBundle(head=head, partition=other).save(tmp_path / "o") / "partition.geojson", out)
    with pytest.raises(InvalidInput, match="belongs to another model"):
        ModelBundle.load(out, verify=False)


@pytest.mark.parametrize("name", ["classifier", "hybrid", "multitask", "contrastive"])
def test_training_options_are_one_value_with_the_estimator_contract(name):
    from sklearn.base import clone

    h = create_head(name, epochs=4, lr=3e-4, hidden=16)
    default = create_head(name).options
    assert h.options == dataclasses.replace(default, epochs=4, lr=3e-4)  # the head's own defaults elsewhere
    assert "epochs" not in h.get_params() and h.get_params()["options"] is h.options  # stored unchanged
    c = clone(h)
    assert c is not h and c.get_params() == h.get_params() and c.options == h.options
    assert h.set_params(options=TrainingOptions(epochs=2)) is h and h.options == TrainingOptions(epochs=2)
    h.set_params(options__lr=0.01, options__seed=7)
    assert (h.options.lr, h.options.seed, h.options.epochs) == (0.01, 7, 2)
    h.set_params(patience=3, hidden=32)  # flat training keywords still work
    assert h.options.patience == 3 and h.hidden == 32
    assert clone(h).options == h.options
    with pytest.raises(InvalidInput, match="no such training option"):
        h.set_params(options__nope=1)
    with pytest.raises(InvalidInput, match="epochs=0"):
        create_head(name, epochs=0)


def test_contrastive_keeps_its_own_training_defaults():
    assert create_head("contrastive").options == TrainingOptions(epochs=60, patience=8)
    assert create_head("contrastive", epochs=15).options == TrainingOptions(epochs=15, patience=8)
    assert create_head("classifier").options == TrainingOptions()


def test_heads_without_a_network_take_no_training_options():
    from geoscout.train import training_options

    assert "options" not in create_head("knn").get_params()
    with pytest.raises(InvalidInput, match="no parameter"):
        create_head("knn").set_params(lr=0.1)
    assert training_options("knn", epochs=5, seed=1) is None
    with pytest.raises(InvalidInput, match="trains no network"):
        training_options("knn", lr=0.1)
    assert training_options("contrastive", epochs=5) == TrainingOptions(epochs=5, patience=8)
    with pytest.raises(InvalidInput, match="no training option 'hidden'"):
        training_options("classifier", hidden=5)


def test_train_model_takes_one_options_value_and_seeds_the_split_apart(fitted):
    import pandas as pd

    from geoscout.train import TrainingData, train_model

    rng = np.random.default_rng(2)
    places = np.array([[45.5, 16.0], [40.0, -100.0], [-30.0, 140.0]])
    lab = rng.integers(0, 3, 120)
    y = places[lab] + rng.normal(0, 0.5, (120, 2))
    X = (rng.normal(0, 1, (3, 8))[lab] + rng.normal(0, 0.5, (120, 8))).astype(np.float32)
    frame = pd.DataFrame(
        {
            "dataset": "d",
            "image_id": [str(i) for i in range(120)],
            "location_id": [f"d/{i // 2}" for i in range(120)],
            "lat": y[:, 0],
            "lon": y[:, 1],
        }
    )
    td = TrainingData(X, frame, {"dim": 8}, 0)
    kw = {"data": td, "cells": "grid:30", "head_params": {"hidden": 8}, "progress": False, "retrieval": False}
    b = train_model(None, seed=1, options=TrainingOptions(epochs=2, lr=0.003, seed=5), **kw)
    assert b.head.options == TrainingOptions(epochs=2, lr=0.003, seed=5) and "(seed 1)" in b.training["split"]
    assert b.training["head_params"]["options"]["seed"] == 5
    b = train_model(None, options=TrainingOptions(epochs=2, seed=6), **kw)  # no seed: the options' draws the split
    assert b.head.options.seed == 6 and "(seed 6)" in b.training["split"]
    b = train_model(None, epochs=2, seed=3, **kw)  # without options: the head's defaults, epochs and seed
    assert b.head.options == TrainingOptions(epochs=2, seed=3) and "(seed 3)" in b.training["split"]
