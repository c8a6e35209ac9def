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


def test_flip_tta_in_the_runtime_path(lite, shared_data):
    """load_model(tta=True) / `locate --tta`: a photo is embedded as the normalised mean of its own embedding and
    its mirror image's (the flip TTA row of benchmarks/RESULTS.md), and the prediction is made from that vector."""
    import pandas as pd

    root = shared_data("streetview-world")
    path = root / pd.read_csv(root / "manifest.csv")["path"].iloc[0]
    tta = load_model("geoscout-lite", tta=True, geocode=False)
    assert tta.tta and not lite.tta
    X, failures = tta.embed([str(path)])
    assert not failures
    bb = lite.backbone
    x = bb.preprocess(bb.load_image(path))[None]  # the photo as the backbone sees it, then its mirror image
    a = bb.encode_batch(x)[0]
    b = bb.encode_batch(np.ascontiguousarray(x[..., ::-1]))[0]
    want = (a + b) / np.linalg.norm(a + b)
    assert float(X[0] @ want) > 0.99999 and float(X[0] @ a) < 0.999  # the mirror changed it, as intended
    (p,) = tta.locate([str(path)], top_k=1)
    (q,) = tta.locate_embeddings(X, [str(path)], top_k=1)
    assert (p.answer.lat, p.answer.lon) == (q.answer.lat, q.answer.lon)
    refused = CliRunner().invoke(app, ["locate", "--example", "--tta", "--ray", "local"])
    assert refused.exit_code != 0 and "--tta runs on this machine only" in refused.output
