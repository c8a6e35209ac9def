"""ONNX Runtime is the default runtime of the EfficientNet backbones; torch stays the fallback and ``--runtime torch``.

The default locate path (cached ONNX export + a classifier bundle) imports no torch at all, and it answers
the same top-1 place as torch on real photos.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import geoscout
from geoscout.backbones import create_backbone
from geoscout.errors import InvalidInput

ort = pytest.importorskip("onnxruntime")


def test_auto_runtime_is_onnx_for_effnet_and_torch_on_request():
    assert create_backbone("effnet-lite0").runtime == "onnx"
    assert create_backbone("effnet-lite0", runtime="torch").runtime == "torch"
    with pytest.raises(InvalidInput, match="runtime"):
        create_backbone("effnet-lite0", runtime="tvm")


#: heavy libraries the default ``locate`` path must not import (each costs 0.1-2 s of a cold start)
HEAVY = ("torch", "pandas", "pyarrow", "scipy", "sklearn", "tqdm", "transformers")


def test_default_locate_imports_no_torch(tmp_path):
    """A fresh interpreter runs ``geoscout locate --example`` (cached export) without importing torch, pandas,
    scipy, scikit-learn or tqdm (benchmarks/locate_speed.py measures what that is worth)."""
    from geoscout.bundle import ModelBundle
    from geoscout.locator import _builtin_dir

    # the default model's backbone exports its ONNX file once, into the same cache the child uses
    create_backbone(ModelBundle.load(_builtin_dir("geoscout-lite")).backbone_name)
    src = str(Path(geoscout.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = (
        "import sys, json\n"
        "from geoscout.cli import main\n"
        "sys.argv = ['geoscout', 'locate', '--example', '-f', 'json', '-o', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = tmp_path / "p.json"
    for _ in range(2):  # the first run may build the machine's caches (tables, optimised graph); the second reads them
        res = subprocess.run(
            [sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert res.returncode == 0, res.stderr[-2000:]
        loaded = set(json.loads(res.stdout.strip().splitlines()[-1]))
        assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
        (pred,) = json.loads(out.read_text())
        assert pred["candidates"] and not pred.get("error")
        assert pred["candidates"][0]["country"]  # reverse geocoding ran (without pandas)


@pytest.mark.slow
def test_torch_and_onnx_give_the_same_top1_on_real_photos(shared_data):
    """Same bundle, both runtimes, photos from four shared sets: identical top-1 cell; probabilities within 0.01."""
    import pandas as pd

    from geoscout.locator import load_model

    photos = []
    for name in ("osv5m-sample", "streetview-world", "im2gps", "streetview-croatia"):
        root = shared_data(name)
        photos += [root / p for p in pd.read_csv(root / "manifest.csv")["path"].iloc[::40][:5]]
    a = load_model("geoscout-lite", runtime="torch", geocode=False).locate(photos, top_k=3)
    b = load_model("geoscout-lite", runtime="onnx", geocode=False).locate(photos, top_k=3)
    assert len(a) == len(b) == len(photos) >= 16
    assert [p.candidates[0].cell for p in a] == [p.candidates[0].cell for p in b]
    pa = np.array([p.candidates[0].probability for p in a])
    pb = np.array([p.candidates[0].probability for p in b])
    assert np.abs(pa - pb).max() < 0.01, np.abs(pa - pb).max()


def test_loaded_classifier_predicts_like_its_torch_network(tmp_path):
    """The numpy evaluation of a saved classifier matches the torch network it was trained as."""
    torch = pytest.importorskip("torch")
    from geoscout.bundle import ModelBundle
    from geoscout.heads import create_head

    rng = np.random.default_rng(0)
    y = np.stack([rng.uniform(-50, 60, 300), rng.uniform(-120, 140, 300)], axis=1)
    X = (np.repeat(y, 4, axis=1) / 100 + rng.normal(0, 0.3, (300, 8))).astype(np.float32)
    head = create_head("classifier", cells="geohash:1", hidden=16, epochs=3, seed=0).fit(X, y)
    net = head.net_.eval()
    with torch.no_grad():
        z = net(torch.from_numpy((X - head.x_mean_) / head.x_std_))["cell"].double()
    want = torch.softmax(z, dim=1).numpy()
    ModelBundle(head=head, partition=head.partition_).save(tmp_path / "b")
    loaded = ModelBundle.load(tmp_path / "b").head
    assert np.abs(loaded.predict_proba(X) - want).max() < 1e-5
    assert np.abs(head.predict_proba(X) - want).max() < 1e-5
