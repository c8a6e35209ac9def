"""The shipped default model geoscout-lite: installed with the package, small, intact, and answering real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from geoscout.bundle import ModelBundle
from geoscout.cli import app
from geoscout.locator import list_models, load_model

MAX_SHIPPED_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def lite():
    return load_model("geoscout-lite")


def test_the_default_model_ships_intact_and_small():
    from geoscout.locator import _builtin_dir

    folder = _builtin_dir("geoscout-lite")
    assert "geoscout-lite" in list_models()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"config.json", "weights.safetensors", "partition.geojson", "MODEL_CARD.md"}
    assert sum(p.stat().st_size for p in files) <= MAX_SHIPPED_BYTES
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in files), "shipped files must be readable by every user"
    bundle = ModelBundle.load(folder, verify=True)  # checks every file's sha256 against config.json
    assert bundle.backbone_name == "effnet-lite2"
    card = bundle.card
    assert "im2gps" in card and "streetview-croatia" in card, "the model card names its data and its test"


def test_example_photo_through_the_cli():
    result = CliRunner().invoke(app, ["locate", "--example", "-f", "json", "-k", "3"])
    assert result.exit_code == 0, result.output
    preds = json.loads(result.stdout[result.stdout.index("[") :])
    (p,) = preds
    assert p["image_id"].endswith("china.jpg") and not p.get("error")
    cands = p["candidates"]
    assert len(cands) == 3
    probs = [c["probability"] for c in cands]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert p["radius_km"] > 0 and 0 < p["expected_score"] <= 5000


def test_weights_match_their_training_data(lite, shared_data):
    """Most Croatian Street View photos (its main training set) land in Croatia: the shipped weights are the
    ones trained on that data with this backbone and preprocessing (a swapped or mis-decoded model would not)."""
    import pandas as pd

    root = shared_data("streetview-croatia")
    frame = pd.read_csv(root / "manifest.csv").iloc[::60]
    preds = lite.locate([root / p for p in frame["path"]], top_k=1)
    countries = [p.candidates[0].country for p in preds]
    assert np.mean([c == "HR" for c in countries]) >= 0.8, countries


def test_cli_table_names_a_missing_photo_once(tmp_path):
    missing = tmp_path / "[gone].jpg"
    result = CliRunner().invoke(app, ["locate", str(missing)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())  # rich wraps long lines at the terminal width
    assert f"{missing}: file not found; check the path" in out
    assert out.count(str(missing)) == 1
