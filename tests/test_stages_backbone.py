"""``effnet-lite2-stages``, the shipped geoscout-lite model's backbone: EfficientNet-Lite2's final pooled features
plus the mean and standard deviation over space of the outputs of stages 3-6, in one forward pass.

Its vector must be exactly the ``mean+stages`` feature of the feature cache the model was trained on
(``benchmarks/feature_cache.py`` + ``benchmarks/_world16.feature``), on ONNX Runtime (default) and torch alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoscout.backbones import create_backbone, list_backbones
from geoscout.backbones._lite import LITE_CONFIGS, stages_dim

pytest.importorskip("onnxruntime")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: ONNX Runtime and torch run the same float32 graph; their vectors differ by rounding only
RUNTIME_ATOL = 1e-4
#: the feature cache keeps float16 pooled features; the vectors built from them differ by float16 rounding only
CACHE_ATOL = 1e-3


@pytest.fixture(scope="module")
def stages():
    return create_backbone("effnet-lite2-stages")


@pytest.fixture(scope="module")
def sample(shared_data):
    """Real photos of three shared sets (Flickr, Street View, Mapillary), decoded as the backbone decodes them."""
    out = []
    for name, step in (("im2gps", 60), ("streetview-world", 50), ("osv5m-sample", 30)):
        root = shared_data(name)
        out += [root / p for p in pd.read_csv(root / "manifest.csv")["path"].iloc[::step]]
    return out


def test_registered_with_its_own_fingerprint(stages):
    lite2 = create_backbone("effnet-lite2")
    assert "effnet-lite2-stages" in list_backbones("effnet-*")
    assert stages.runtime == "onnx"  # the default on the CPU
    assert stages.dim == stages_dim(LITE_CONFIGS["lite2"]) == 2208  # 1280 + 2 x (48 + 88 + 120 + 208)
    fa, fb = stages.fingerprint(), lite2.fingerprint()
    assert fa["backbone"] == "effnet-lite2-stages" and fa["dim"] == 2208
    assert fa["weights_sha256"] == fb["weights_sha256"] and fa["preprocessing"] == fb["preprocessing"]
    assert stages.fingerprint_hash() != lite2.fingerprint_hash()  # stores and bundles of the two never mix


@pytest.mark.slow
def test_onnx_and_torch_give_the_same_vectors(stages, sample):
    torch_bb = create_backbone("effnet-lite2-stages", runtime="torch")
    ims = [stages.load_image(p) for p in sample]
    a, b = stages.encode(ims), torch_bb.encode(ims)
    assert a.shape == (len(sample), 2208) and len(sample) >= 8
    assert np.abs(a - b).max() < RUNTIME_ATOL, np.abs(a - b).max()
    # the first block is effnet-lite2's own embedding, scaled by 1 / sqrt(1 + 0.5^2): the stage block has norm 0.5
    lite2 = create_backbone("effnet-lite2").encode(ims)
    np.testing.assert_allclose(a[:, :1280] * np.sqrt(1.25), lite2, atol=RUNTIME_ATOL)
    np.testing.assert_allclose(np.linalg.norm(a[:, 1280:], axis=1), 0.5 / np.sqrt(1.25), atol=RUNTIME_ATOL)


@pytest.mark.slow
def test_vector_equals_the_feature_cache_row(stages, shared_data, tmp_path, monkeypatch):
    """The training features: ``feature_cache.py`` (its own multi-output ONNX export) + ``_world16.feature``
    for real im2gps photos give the vectors the backbone computes at locate time."""
    shared_data("im2gps")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import feature_cache
    from _world16 import feature

    rows = [0, 57, 140]
    feature_cache.embed_set(
        "im2gps",
        create_backbone("effnet-lite2"),
        feature_cache.session("lite2", tmp_path),
        tmp_path / "im2gps.npz",
        False,
        rows_of=rows,
    )
    z = np.load(tmp_path / "im2gps.npz")
    want = feature(z, "mean+stages")
    got = stages.encode([stages.load_image(shared_data("im2gps") / p) for p in z["path"]])
    assert want.shape == got.shape == (len(rows), 2208)
    assert np.abs(got - want).max() < CACHE_ATOL, np.abs(got - want).max()
    assert (got * want).sum(axis=1).min() > 0.99999


@pytest.mark.slow
def test_a_bundle_on_it_answers_the_same_top1_on_both_runtimes(shared_data, sample, tmp_path):
    """The user's path: train a bundle on effnet-lite2-stages embeddings of real photos (int8 retrieval index),
    then locate real photos it never saw with ONNX Runtime (default) and with torch: same top-1 cell."""
    from geoscout.bundle import ModelBundle
    from geoscout.locator import load_model
    from geoscout.train import train_model

    bundle = train_model(
        [shared_data("streetview-world"), shared_data("osv5m-sample")],
        backbone="effnet-lite2-stages",
        cells="grid:10",
        epochs=10,
        seed=0,
        store_dir=tmp_path / "stores",
        progress=False,
    )
    assert bundle.backbone_name == "effnet-lite2-stages" and bundle.backbone_fingerprint["dim"] == 2208
    bundle.retrieval = bundle.retrieval.as_int8()
    out = bundle.save(tmp_path / "bundle")
    assert ModelBundle.load(out, verify=True).retrieval.int8
    photos = [p for p in sample if "im2gps" in str(p)]  # never trained on
    a = load_model(out, runtime="onnx", geocode=False).locate(photos, top_k=3)
    b = load_model(out, runtime="torch", geocode=False).locate(photos, top_k=3)
    assert len(a) == len(b) == len(photos) >= 3 and not any(p.error for p in a + b)
    assert [p.candidates[0].cell for p in a] == [p.candidates[0].cell for p in b]
    pa = np.array([p.candidates[0].probability for p in a])
    pb = np.array([p.candidates[0].probability for p in b])
    assert np.abs(pa - pb).max() < 0.01, np.abs(pa - pb).max()
