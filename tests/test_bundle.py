"""ModelBundle: atomic save, load without unpickling, identical predictions, clear errors on damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geoscout.bundle import FORMAT_VERSION, ModelBundle, RetrievalData
from geoscout.errors import InvalidInput, MissingWeights
from geoscout.heads import create_head


@pytest.fixture(scope="module")
def fitted():
    from geoscout.cells import create_partition

    rng = np.random.default_rng(0)
    places = np.array([[45.5, 16.0], [40.0, -100.0], [-30.0, 140.0]])
    lab = rng.integers(0, 3, 300)
    y = places[lab] + rng.normal(0, 0.5, (300, 2))
    X = (rng.normal(0, 1, (3, 24))[lab] + rng.normal(0, 0.5, (300, 24))).astype(np.float32)
    part = create_partition("grid:10").fit(y[:, 0], y[:, 1])
    head = create_head("hybrid", epochs=3, hidden=16, seed=0).fit(X, y, partition=part)
    ret = RetrievalData(
        vectors=X.astype(np.float16),
        lat=y[:, 0],
        lon=y[:, 1],
        cell=part.assign(y[:, 0], y[:, 1]),
        ids=[f"loc-{i // 4}/ä" for i in range(300)],
    )
    bundle = ModelBundle(
        head=head,
        partition=part,
        backbone_name="effnet-lite2",
        backbone_fingerprint={"dim": 24},
        retrieval=ret,
        training={"n_train": 300},
        card="# card\n",
    )
    return bundle, X, y


def test_round_trip_gives_identical_predictions(fitted, tmp_path):
    bundle, X, y = fitted
    out = bundle.save(tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == [
        "MODEL_CARD.md",
        "config.json",
        "partition.geojson",
        "retrieval.safetensors",
        "weights.safetensors",
    ]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format_version"] == FORMAT_VERSION and cfg["head"]["name"] == "hybrid"
    assert cfg["partition"]["spec"] == bundle.partition.spec and cfg["backbone"]["name"] == "effnet-lite2"
    back = ModelBundle.load(out)
    np.testing.assert_array_equal(back.head.predict(X), bundle.head.predict(X))
    np.testing.assert_array_equal(back.head.predict_distribution(X).prob, bundle.head.predict_distribution(X).prob)
    assert back.partition.n_cells == bundle.partition.n_cells
    np.testing.assert_array_equal(back.partition.assign(y[:, 0], y[:, 1]), bundle.partition.assign(y[:, 0], y[:, 1]))
    r = back.retrieval
    assert r.vectors.dtype == np.float16 and r.vectors.shape == (300, 24)
    np.testing.assert_array_equal(r.lat, y[:, 0])
    np.testing.assert_array_equal(r.cell, bundle.retrieval.cell)
    assert r.ids == bundle.retrieval.ids
    assert back.backbone_name == "effnet-lite2" and back.backbone_fingerprint == {"dim": 24}
    assert back.card == "# card\n" and back.training == {"n_train": 300}


def test_saved_bundle_has_the_usual_file_modes(fitted, tmp_path):
    """A bundle is shipped inside the package: it must be readable by others (not mkdtemp's 0700/0600)."""
    import os

    bundle, _, _ = fitted
    old = os.umask(0o022)
    try:
        out = bundle.save(tmp_path / "m")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {p.name: 0o644 for p in out.iterdir()}


def test_save_replaces_atomically_and_leaves_no_temp_dirs(fitted, tmp_path):
    bundle, X, y = fitted
    bundle.save(tmp_path / "m")
    (tmp_path / "m" / "stale.txt").write_text("old")
    bundle.save(tmp_path / "m")
    assert not (tmp_path / "m" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    with pytest.raises(InvalidInput, match="not a directory"):
        (tmp_path / "file").write_text("x")
        bundle.save(tmp_path / "file")


def test_failed_save_keeps_the_old_bundle(fitted, tmp_path, monkeypatch):
    bundle, X, y = fitted
    bundle.save(tmp_path / "m")
    before = (tmp_path / "m" / "weights.safetensors").read_bytes()

    def boom(path):
        raise OSError("disk full")

    monkeypatch.setattr(bundle.partition, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        bundle.save(tmp_path / "m")
    assert (tmp_path / "m" / "weights.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    ModelBundle.load(tmp_path / "m")


def test_corrupt_weights_are_rejected_clearly(fitted, tmp_path):
    bundle, *_ = fitted
    out = bundle.save(tmp_path / "m")
    w = out / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match="weights.safetensors: checksum mismatch"):
        ModelBundle.load(out)
    # without checksums, safetensors itself refuses a truncated file (no unpickling anywhere)
    w.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(InvalidInput, match="weights.safetensors: not a readable safetensors file"):
        ModelBundle.load(out, verify=False)


def test_missing_and_foreign_bundles(fitted, tmp_path):
    bundle, *_ = fitted
    with pytest.raises(MissingWeights, match="no such model bundle"):
        ModelBundle.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no config.json"):
        ModelBundle.load(tmp_path / "empty")
    out = bundle.save(tmp_path / "m")
    (out / "retrieval.safetensors").unlink()
    with pytest.raises(MissingWeights, match="retrieval.safetensors: missing"):
        ModelBundle.load(out)
    out = bundle.save(tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    cfg["format_version"] = FORMAT_VERSION + 1
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidInput, match="upgrade geoscout"):
        ModelBundle.load(out)
    (out / "config.json").write_text("{truncated")
    with pytest.raises(InvalidInput, match="corrupt JSON"):
        ModelBundle.load(out)


def test_knn_bundle_without_partition(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(0, 1, (50, 8)).astype(np.float32)
    y = np.column_stack([rng.uniform(-60, 60, 50), rng.uniform(-180, 180, 50)])
    head = create_head("knn", k=3).fit(X, y)
    out = ModelBundle(head=head, backbone_name="effnet-lite0").save(tmp_path / "k")
    back = ModelBundle.load(out)
    assert back.partition is None and back.retrieval is None and back.backbone_name == "effnet-lite0"
    np.testing.assert_array_equal(back.head.predict(X), head.predict(X))


def test_retrieval_data_validates_shapes():
    with pytest.raises(InvalidInput, match="disagree"):
        RetrievalData(vectors=np.zeros((3, 4)), lat=np.zeros(2), lon=np.zeros(3))
    with pytest.raises(InvalidInput, match="ids"):
        RetrievalData(vectors=np.zeros((3, 4)), lat=np.zeros(3), lon=np.zeros(3), ids=["a"])


def test_int8_retrieval_index_hand_computed_and_round_trip(fitted, tmp_path):
    """int8 storage: q = round(v / scale), scale = max |v| / 127 per row; the bundle saves q and scale (about half
    of float16's bytes) and loads back exactly the vectors ``as_int8`` gave in memory."""
    v = np.array([[0.5, -0.25, 0.0, 0.125], [0.0, 0.0, 0.0, 0.0], [-1.0, 0.3, 0.2, 0.1]], np.float16)
    r = RetrievalData(v, np.zeros(3), np.zeros(3)).as_int8()
    t = r.to_tensors()
    assert "vectors" not in t and t["vectors_int8"].dtype == np.int8
    np.testing.assert_array_equal(t["vectors_int8"], [[127, -64, 0, 32], [0, 0, 0, 0], [-127, 38, 25, 13]])
    np.testing.assert_allclose(t["vectors_scale"], [0.5 / 127, 1.0, 1.0 / 127], rtol=1e-6)
    np.testing.assert_allclose(r.vectors[0], np.array([127, -64, 0, 32]) * 0.5 / 127, rtol=1e-3)
    assert np.abs(r.vectors.astype(np.float32) - v.astype(np.float32)).max() <= 0.5 / 127 + 1e-3

    bundle, X, _ = fitted
    small = ModelBundle(
        head=bundle.head,
        partition=bundle.partition,
        backbone_name=bundle.backbone_name,
        retrieval=bundle.retrieval.as_int8(),
    )
    out = small.save(tmp_path / "q")
    assert json.loads((out / "config.json").read_text())["retrieval"]["storage"] == "int8"
    back = ModelBundle.load(out, verify=True).retrieval
    assert back.int8 and back.vectors.dtype == np.float16
    np.testing.assert_array_equal(back.vectors, small.retrieval.vectors)
    assert back.ids == bundle.retrieval.ids
    full = bundle.save(tmp_path / "f")
    ratio = (out / "retrieval.safetensors").stat().st_size / (full / "retrieval.safetensors").stat().st_size
    assert ratio < 0.85, ratio  # 24-d rows: ids and coordinates weigh as much as the vectors here
    a, b = (np.asarray(m, np.float32) for m in (bundle.retrieval.vectors, back.vectors))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999, cos.min()  # retrieval ranks by cosine: int8 keeps the geometry


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "sub/../../x", "..", "", "a\\..\\b", "."])
def test_bundle_file_names_must_be_plain_names_inside_it(fitted, tmp_path, name):
    bundle, *_ = fitted
    out = bundle.save(tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    cfg["files"][name] = "0" * 64
    (out / "config.json").write_text(json.dumps(cfg))
    for verify in (True, False):
        with pytest.raises(InvalidInput, match="not a plain file name inside the bundle"):
            ModelBundle.load(out, verify=verify)


def test_bundle_files_linking_outside_are_refused(fitted, tmp_path):
    import hashlib
    import shutil

    bundle, *_ = fitted
    out = bundle.save(tmp_path / "m")
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(out / "weights.safetensors", outside)
    (out / "weights.safetensors").symlink_to(outside)  # same bytes, same checksum: only the link is wrong
    assert (
        hashlib.sha256(outside.read_bytes()).hexdigest()
        == json.loads((out / "config.json").read_text())["files"]["weights.safetensors"]
    )
    with pytest.raises(InvalidInput, match="a link to a file outside the bundle"):
        ModelBundle.load(out)
    # a link inside the bundle is fine
    (out / "weights.safetensors").unlink()
    shutil.move(outside, out / "real.safetensors")
    (out / "weights.safetensors").symlink_to("real.safetensors")
    assert ModelBundle.load(out, verify=True).backbone_name == "effnet-lite2"


def test_loading_checks_the_backbone_fingerprint_and_says_what_differs(tmp_path):
    """The fingerprint written at training is checked on load: a shipped model loads; an altered one is refused."""
    import shutil

    import geoscout
    from geoscout.locator import load_model

    shipped = Path(geoscout.__file__).parent / "models" / "geoscout-lite"
    loc = load_model(str(shipped), geocode=False)
    assert loc.backbone.fingerprint()["backbone"] == "effnet-lite2"

    altered = tmp_path / "altered"
    shutil.copytree(shipped, altered)
    cfg = json.loads((altered / "config.json").read_text())
    cfg["backbone"]["fingerprint"]["preprocessing"]["input_size"] = 224
    cfg["backbone"]["fingerprint"]["weights_sha256"] = "0" * 64
    (altered / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidInput) as err:
        load_model(str(altered), geocode=False)
    msg = str(err.value)
    assert "preprocessing.input_size: trained with 224, given 260" in msg
    assert "weights_sha256: trained with '000" in msg and "effnet-lite2" in msg
    assert "resize_size" not in msg  # only what differs is named

    legacy = tmp_path / "legacy"  # bundles written before a fingerprint key existed still load
    shutil.copytree(shipped, legacy)
    cfg = json.loads((legacy / "config.json").read_text())
    del cfg["backbone"]["fingerprint"]["preprocessing"]["jpeg_draft"]
    (legacy / "config.json").write_text(json.dumps(cfg))
    assert load_model(str(legacy), geocode=False).backbone.name == "effnet-lite2"
