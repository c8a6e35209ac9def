"""The Ray path (geoscout.distributed) gives the same results as the single-process path.

One local Ray instance (2 CPUs) serves the whole module; real photos from ../shared/data,
real EfficientNet-Lite0 weights.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest

from geoscout.errors import InvalidInput

N_IMAGES = 12
BACKBONE = "effnet-lite0"


def test_clear_error_without_ray(monkeypatch):
    from geoscout.distributed import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'geoscout\[ray\]'"):
        require_ray()


def test_bad_arguments_are_named():
    from geoscout.distributed import locate_ray

    with pytest.raises(InvalidInput, match="num_workers"):
        locate_ray(["a.jpg"], "geoscout-lite", address=None, num_workers=0)
    with pytest.raises(InvalidInput, match="no images"):
        locate_ray([], "geoscout-lite", address=None)


def test_no_cluster_at_auto_is_a_clear_error(monkeypatch, tmp_path):
    ray = pytest.importorskip("ray", reason="needs the ray extra")
    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # "auto" finds any Ray cluster on this machine (the address file under the Ray temp dir, then any running
    # gcs_server process): another test run's cluster must not be found, so this machine is made to have none.
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    import ray._private.services as ray_services

    monkeypatch.setattr(ray_services, "find_gcs_addresses", functools.cache(list))  # Ray calls its cache_clear
    from geoscout.distributed import ray_session

    with pytest.raises(InvalidInput, match=r"--ray auto: no Ray cluster.*ray start --head"):
        with ray_session("auto"):
            pass


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'geoscout[ray]'")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def small_dataset(shared_data, tmp_path_factory):
    """A dataset folder: 12 real Street View photos (absolute paths) + one corrupt JPEG."""
    import pandas as pd

    from geoscout.data import Dataset, load_dataset

    src = load_dataset(shared_data("streetview-world"))
    root = tmp_path_factory.mktemp("ray-ds")
    frame = src.frame.iloc[:N_IMAGES].copy()
    frame["path"] = [str(src.image_path(i)) for i in range(N_IMAGES)]
    bad = root / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    row = frame.iloc[[0]].copy()
    row["path"], row["image_id"], row["location_id"] = str(bad), "0123456789abcdef", "0123456789abcdef"
    frame = pd.concat([frame.iloc[:5], row, frame.iloc[5:]], ignore_index=True)
    return Dataset.create(root / "ds", frame)


@pytest.fixture(scope="module")
def reference_store(small_dataset, tmp_path_factory):
    from geoscout.embeddings import embed_dataset

    return embed_dataset(
        small_dataset, BACKBONE, tmp_path_factory.mktemp("ref") / "store", batch_size=8, workers=1, progress=False
    )


def _assert_same_store(store, ref):
    assert len(store.ids) == len(set(store.ids.tolist())), "duplicate ids in the store"
    assert sorted(store.ids.tolist()) == sorted(ref.ids.tolist())
    np.testing.assert_allclose(store.load(ref.ids), ref.load(), atol=2e-3, rtol=0)
    cos = (store.load(ref.ids) * ref.load()).sum(axis=1)
    assert cos.min() > 0.999  # float16 storage
    assert store.fingerprint == ref.fingerprint and store.options == ref.options
    f, g = store.failures.sort_values("image_id"), ref.failures.sort_values("image_id")
    assert f["image_id"].tolist() == g["image_id"].tolist() == ["0123456789abcdef"]
    assert f["reason"].tolist() == g["reason"].tolist()


@pytest.mark.ray
def test_ray_embed_equals_single_process(ray_local, small_dataset, reference_store, tmp_path):
    from geoscout.distributed import embed_dataset_ray
    from geoscout.embeddings import EmbeddingStore

    store = embed_dataset_ray(
        small_dataset, BACKBONE, tmp_path / "ray", address=None, num_workers=2, batch_size=6, progress=False
    )
    run = store.last_run
    assert run.embedded == N_IMAGES and len(run.failed) == 1 and "broken.jpg" in str(run.failed[0].source)
    _assert_same_store(EmbeddingStore.open(tmp_path / "ray"), reference_store)


@pytest.mark.ray
def test_cli_ray_resumes_a_killed_store_without_duplicates(ray_local, small_dataset, reference_store, tmp_path):
    from geoscout.distributed import embed_dataset_ray
    from geoscout.embeddings import EmbeddingStore, embed_dataset

    out = tmp_path / "partial"
    embed_dataset(small_dataset, BACKBONE, out, batch_size=4, workers=1, limit=7, progress=False)
    first = EmbeddingStore.open(out).ids.tolist()
    # a writer killed mid-batch: bytes and ids past the committed counts
    with open(out / "vectors.f16", "ab") as fh:
        fh.write(np.ones((3, 1280), np.float16).tobytes()[:5000])
    with open(out / "ids.txt", "a") as fh:
        fh.write("deadbeefdeadbeef\nabc")
    from typer.testing import CliRunner

    from geoscout.cli import app

    res = CliRunner().invoke(
        app,
        [
            "embed",
            str(small_dataset.root),
            "-b",
            BACKBONE,
            "-o",
            str(out),
            "--batch-size",
            "4",
            "--ray",
            "local",
            "--ray-workers",
            "1",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    EmbeddingStore.open(out)
    reopened = EmbeddingStore.open(out)
    assert reopened.ids.tolist()[: len(first)] == first and len(first) == 6  # + 1 failure
    _assert_same_store(reopened, reference_store)
    # complete: both paths now find nothing to do (no Ray needed)
    again = embed_dataset_ray(small_dataset, BACKBONE, out, address=None, progress=False)
    assert again.last_run.embedded == 0 and len(again) == N_IMAGES
    assert len(embed_dataset(small_dataset, BACKBONE, out, progress=False)) == N_IMAGES


@pytest.mark.ray
def test_ray_refuses_a_store_of_another_backbone(ray_local, small_dataset, reference_store):
    from geoscout.distributed import embed_dataset_ray

    with pytest.raises(InvalidInput, match="overwrite"):
        embed_dataset_ray(small_dataset, "effnet-lite2", reference_store.path, address=None, progress=False)


@pytest.fixture(scope="module")
def bundle_dir(reference_store, small_dataset, tmp_path_factory):
    """A real (tiny) model bundle: classifier head fitted on the reference store's embeddings."""
    from geoscout.bundle import ModelBundle, RetrievalData
    from geoscout.cells import create_partition
    from geoscout.heads import create_head

    frame = small_dataset.frame.set_index("image_id")
    ids = reference_store.ids.tolist()
    X = reference_store.load()
    y = frame.loc[ids, ["lat", "lon"]].to_numpy(np.float64)
    part = create_partition("grid:20").fit(y[:, 0], y[:, 1])
    head = create_head("classifier", hidden=32, epochs=5, seed=0, val_fraction=0.0, threads=1).fit(X, y, partition=part)
    ret = RetrievalData(vectors=X, lat=y[:, 0], lon=y[:, 1], cell=part.assign(y[:, 0], y[:, 1]))
    bundle = ModelBundle(
        head=head,
        partition=part,
        backbone_name=BACKBONE,
        backbone_fingerprint=reference_store.fingerprint,
        retrieval=ret,
        training={"n_train": len(X)},
    )
    return bundle.save(tmp_path_factory.mktemp("bundle") / "model")


@pytest.mark.ray
def test_cli_locate_on_ray_equals_locator(ray_local, small_dataset, bundle_dir, tmp_path):
    from typer.testing import CliRunner

    from geoscout.cli import app
    from geoscout.locator import load_model
    from geoscout.predictions import read_predictions

    paths = [str(p) for p in small_dataset.image_paths()[:7]] + [str(tmp_path / "missing.jpg")]
    expected = load_model(bundle_dir).locate(paths, top_k=3)
    out = tmp_path / "preds.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "locate",
            *paths,
            "--model",
            str(bundle_dir),
            "-k",
            "3",
            "-f",
            "jsonl",
            "-o",
            str(out),
            "--ray",
            "local",
            "--ray-workers",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    got = read_predictions(out)
    assert [p.image_id for p in got] == [p.image_id for p in expected] == paths
    assert got[5].error and expected[5].error and "broken.jpg" in got[5].error.message
    assert got[5].error == expected[5].error  # the same typed failure through Ray
    assert got[-1].error and expected[-1].error
    for g, e in zip(got, expected):
        assert (g.error is None) == (e.error is None)
        assert len(g.candidates) == len(e.candidates)
        for cg, ce in zip(g.candidates, e.candidates):
            assert cg.cell == ce.cell and cg.country == ce.country
            assert cg.lat == pytest.approx(ce.lat, abs=1e-3) and cg.lon == pytest.approx(ce.lon, abs=1e-3)
            assert cg.probability == pytest.approx(ce.probability, abs=1e-4)
