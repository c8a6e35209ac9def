"""GPU end to end: embed, train, locate and Ray GPU actors on CUDA, with fp16/bf16 autocast, checked against the
CPU on real photos. Every test skips cleanly when torch sees no CUDA GPU (CPU CI); run them on a GPU machine:

    python -m pytest -q tests/test_gpu.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geoscout.devices import cuda_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]


@pytest.fixture(scope="module")
def photos(shared_data):
    root = shared_data("streetview-world")
    df = pd.read_csv(root / "manifest.csv").iloc[:16]
    return [str(root / p) for p in df["path"]], df


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_backbone_on_gpu_matches_cpu(photos, precision):
    import torch

    from geoscout.backbones import create_backbone
    from geoscout.embeddings import embed_images

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    paths, _ = photos
    cpu = create_backbone("effnet-lite2", device="cpu")
    gpu = create_backbone("effnet-lite2", device="cuda", precision=precision)
    assert gpu.device == "cuda" and gpu.precision == precision
    assert gpu.fingerprint() == cpu.fingerprint()  # stores made on either are interchangeable
    a, fa = embed_images(paths, cpu, batch_size=8)
    b, fb = embed_images(paths, gpu, batch_size=8)
    assert not fa and not fb and b.dtype == np.float32
    cos = np.sum(a * b, axis=1)
    assert cos.min() > (0.999 if precision == "fp32" else 0.98), cos


def test_auto_picks_the_gpu_with_mixed_precision():
    import torch

    from geoscout.backbones import create_backbone

    bb = create_backbone("effnet-lite0", device="auto")
    assert bb.device == "cuda" and bb.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")


def test_embed_dataset_and_train_on_gpu(shared_data, tmp_path):
    from geoscout.data import load_dataset
    from geoscout.embeddings import embed_dataset
    from geoscout.train import train_model

    ds = load_dataset(shared_data("streetview-world"))
    cpu = embed_dataset(ds, "effnet-lite0", tmp_path / "cpu", limit=24, progress=False)
    gpu = embed_dataset(ds, "effnet-lite0", tmp_path / "gpu", limit=24, progress=False, device="cuda")
    ids = list(cpu.ids)
    assert sorted(ids) == sorted(gpu.ids)
    assert np.sum(cpu.load(ids=ids) * gpu.load(ids=ids), axis=1).min() > 0.98
    bundle = train_model(
        [ds],
        backbone="effnet-lite0",
        cells="grid:30",
        head="classifier",
        epochs=2,
        store_dir=tmp_path / "s",
        progress=False,
        device="cuda",
    )
    assert bundle.training["n_train"] > 0


def test_locate_on_gpu_agrees_with_cpu(photos):
    from geoscout.locator import load_model

    paths, _ = photos
    cpu = load_model("geoscout-lite", device="cpu", geocode=False).locate(paths[:8], top_k=1)
    gpu = load_model("geoscout-lite", device="cuda", geocode=False).locate(paths[:8], top_k=1)
    same = [
        abs(a.candidates[0].lat - b.candidates[0].lat) < 1 and abs(a.candidates[0].lon - b.candidates[0].lon) < 1
        for a, b in zip(cpu, gpu)
    ]
    assert np.mean(same) >= 0.75


def test_ray_gpu_actors_embed(shared_data, tmp_path):
    pytest.importorskip("ray")
    from geoscout.data import load_dataset
    from geoscout.distributed import embed_dataset_ray
    from geoscout.embeddings import embed_dataset

    ds = load_dataset(shared_data("streetview-world"))
    store = embed_dataset_ray(
        ds,
        "effnet-lite0",
        tmp_path / "ray",
        address="local",
        num_workers=1,
        num_gpus_per_worker=1,
        batch_size=8,
        limit=16,
        progress=False,
    )
    ref = embed_dataset(ds, "effnet-lite0", tmp_path / "cpu", limit=16, progress=False)
    common = sorted(set(store.ids) & set(ref.ids))
    assert len(common) >= 8
    assert np.sum(store.load(ids=common) * ref.load(ids=common), axis=1).min() > 0.98


def test_cli_embed_on_gpu(shared_data, tmp_path):
    from typer.testing import CliRunner

    from geoscout.cli import app

    res = CliRunner().invoke(
        app,
        [
            "embed",
            str(shared_data("streetview-world")),
            "-b",
            "effnet-lite0",
            "-o",
            str(tmp_path / "s"),
            "--device",
            "cuda",
            "--limit",
            "8",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
