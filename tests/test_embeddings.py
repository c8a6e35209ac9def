"""Embedding store: bad images, resumability after a kill, TTA, pooling, CLI — on real Street View photos."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoscout.backbones import create_backbone
from geoscout.embeddings import EmbeddingStore, default_store_path, embed_dataset, embed_images, pool_vectors
from geoscout.errors import InvalidInput

N_GOOD = 16  # 4 panoramas x 4 views of streetview-croatia
BACKBONE = "effnet-lite0"  # the store logic is backbone-agnostic; lite0 keeps the suite fast


def _set_png_size(png: bytes, w: int, h: int) -> bytes:
    """Rewrite a PNG's IHDR width/height (and its CRC): a tiny file claiming a huge image."""
    assert png[12:16] == b"IHDR"
    ihdr = png[16 : 20 + 13 - 4]
    ihdr = struct.pack(">II", w, h) + ihdr[8:]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


@pytest.fixture(scope="module")
def bb():
    return create_backbone(BACKBONE)


@pytest.fixture(scope="module")
def world(shared_data, tmp_path_factory):
    """A geoscout dataset in tmp: 16 real views, plus files made from real photos that are
    (after import) broken or odd: zero-byte, truncated, non-image, huge, CMYK, 16-bit, palette,
    RGBA, grayscale, EXIF-rotated."""
    import pandas as pd

    from geoscout.data import import_csv, load_dataset

    src = shared_data("streetview-croatia")
    man = pd.read_csv(src / "manifest.csv").head(N_GOOD)
    root = tmp_path_factory.mktemp("ds")
    (root / "images").mkdir()
    rows = []
    for i, r in man.iterrows():
        dst = root / "images" / f"v{i:02d}.jpg"
        shutil.copy(src / r["path"], dst)
        rows.append({"path": f"images/{dst.name}", "lat": r.lat, "lon": r.lon, "location_id": r.location_id})
    base = Image.open(shared_data("im2gps") / "images" / "104123223_7410c654ba_19_19355699@N00.jpg").convert("RGB")
    variants = {
        "cmyk.jpg": lambda p: base.convert("CMYK").save(p, quality=95),
        "gray.png": lambda p: base.convert("L").save(p),
        "gray16.png": lambda p: Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257).save(p),
        "palette.png": lambda p: base.quantize(64).save(p),
        "rgba.png": lambda p: base.convert("RGBA").save(p),
        "exif6.jpg": None,
        # broken after import (made valid first so the importer keeps them)
        "zero.jpg": lambda p: base.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(p, quality=90),
        "truncated.jpg": lambda p: base.rotate(3).save(p, quality=90),
        "notimage.jpg": lambda p: base.rotate(6).save(p, quality=90),
        "huge.png": lambda p: base.rotate(9).resize((200, 130)).save(p),
    }
    for name, make in variants.items():
        p = root / "images" / name
        if name == "exif6.jpg":  # pixels stored rotated 90 deg CCW, EXIF Orientation 6 says "rotate CW to view"
            exif = Image.Exif()
            exif[0x0112] = 6
            base.rotate(90, expand=True).save(p, quality=95, exif=exif.tobytes())
        else:
            make(p)
        rows.append({"path": f"images/{name}", "lat": 45.0, "lon": 15.0, "location_id": name})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    report = import_csv(root / "manifest.csv", out=root)
    assert not report.problems, report.problems
    # now break four of them
    img = root / "images"
    (img / "zero.jpg").write_bytes(b"")
    data = (img / "truncated.jpg").read_bytes()
    (img / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (img / "notimage.jpg").write_text("<html>404 not found</html>\n")
    (img / "huge.png").write_bytes(_set_png_size((img / "huge.png").read_bytes(), 30000, 30000))
    ds = load_dataset(root)
    assert len(ds) == N_GOOD + len(variants)
    return {"ds": ds, "root": root, "base": base}


@pytest.fixture(scope="module")
def store(world, bb, tmp_path_factory):
    out = tmp_path_factory.mktemp("stores") / "main"
    return embed_dataset(world["ds"], bb, out, batch_size=8, workers=2, progress=False)


def _id_of(ds, name: str) -> str:
    f = ds.frame
    return str(f.loc[f["path"].str.endswith(name), "image_id"].iloc[0])


def test_bad_images_are_recorded_and_the_rest_embedded(world, store):
    ds = world["ds"]
    fails = store.failures.set_index("image_id")["reason"]
    expect = {"zero.jpg": "empty", "truncated.jpg": "truncated", "notimage.jpg": "not an image", "huge.png": "exceeds"}
    assert len(fails) == len(expect)
    for name, word in expect.items():
        assert word in fails[_id_of(ds, name)], fails[_id_of(ds, name)]
    assert len(store) == len(ds) - len(expect)
    assert store.vectors.dtype == np.float16 and store.vectors.shape == (len(store), store.dim)
    assert set(store.ids) == set(ds.frame["image_id"]) - {_id_of(ds, n) for n in expect}
    v = store.load()
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=2e-3)
    assert store.last_run is not None and "skipped" in store.last_run.summary()


def test_odd_modes_decode_to_the_same_picture(world, store):
    ds, bb = world["ds"], None
    base_vec = embed_images([world["base"]], create_backbone(BACKBONE))[0][0]
    v = {
        n: store.load([_id_of(ds, n)])[0]
        for n in ("cmyk.jpg", "gray.png", "gray16.png", "palette.png", "rgba.png", "exif6.jpg")
    }
    assert float(v["cmyk.jpg"] @ base_vec) > 0.97
    assert float(v["palette.png"] @ base_vec) > 0.9
    assert float(v["rgba.png"] @ base_vec) > 0.995  # opaque alpha: identical pixels
    assert float(v["exif6.jpg"] @ base_vec) > 0.97  # upright again
    assert float(v["gray16.png"] @ v["gray.png"]) > 0.995  # 16-bit scaled to 8-bit
    # without honouring EXIF the rotated picture embeds differently
    sideways = embed_images([world["base"].rotate(90, expand=True)], create_backbone(BACKBONE))[0][0]
    assert float(sideways @ base_vec) < float(v["exif6.jpg"] @ base_vec) - 0.05
    del bb


def test_rerun_is_a_noop(world, store, bb):
    before = (store.path / "vectors.f16").stat().st_mtime_ns, (store.path / "index.json").read_text()
    again = embed_dataset(world["ds"], bb, store.path, batch_size=8, progress=False)
    assert again.last_run.embedded == 0 and not again.last_run.failed
    assert ((store.path / "vectors.f16").stat().st_mtime_ns, (store.path / "index.json").read_text()) == before
    assert len(again) == len(store)


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates(world, store, bb, tmp_path):
    """Kill a real `embed_dataset` process (SIGKILL while it encodes its 3rd batch), then resume."""
    out = tmp_path / "killed"
    script = f"""
import os, signal
from geoscout.backbones import create_backbone
from geoscout.data import load_dataset
from geoscout.embeddings import embed_dataset
bb = create_backbone({BACKBONE!r})
calls = []
orig = bb.encode_batch
def encode_batch(batch, **kw):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(batch, **kw)
bb.encode_batch = encode_batch
embed_dataset(load_dataset({str(world['root'])!r}), bb, {str(out)!r}, batch_size=4, workers=2, progress=False)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    partial = EmbeddingStore.open(out)
    n_committed = len(partial) + len(partial.failures)
    assert n_committed == 8  # two batches committed, the third lost
    # simulate the other half of a crash: bytes appended but the index never updated
    with open(out / "vectors.f16", "ab") as fh:
        fh.write(b"\x00" * 1000)
    with open(out / "ids.txt", "a") as fh:
        fh.write("deadbeefdeadbeef\npartial")
    assert len(EmbeddingStore.open(out)) == len(partial)  # readers ignore uncommitted bytes
    resumed = embed_dataset(world["ds"], bb, out, batch_size=4, progress=False)
    assert resumed.last_run.embedded + len(resumed.last_run.failed) == len(world["ds"]) - n_committed
    assert len(set(resumed.ids)) == len(resumed.ids) == len(store)
    assert (out / "vectors.f16").stat().st_size == len(resumed) * resumed.dim * 2
    np.testing.assert_allclose(resumed.load(store.ids), store.load(), atol=2e-3)
    assert set(resumed.failures["image_id"]) == set(store.failures["image_id"])


def test_fingerprint_mismatch_and_tta(world, store, bb, tmp_path):
    with pytest.raises(InvalidInput, match="--overwrite"):
        embed_dataset(world["ds"], bb, store.path, tta=True, progress=False)
    out = tmp_path / "tta"
    shutil.copytree(store.path, out)
    s = embed_dataset(world["ds"], bb, out, tta=True, overwrite=True, limit=3, batch_size=3, progress=False)
    assert len(s) == 3 and s.options == {"tta": True}
    ids = list(s.ids)
    paths = [world["ds"].image_path(i) for i in ids]
    ims = [bb.load_image(p) for p in paths]
    plain = bb.encode(ims)
    flipped = bb.encode([im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in ims])
    want = plain + flipped
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(s.load(), want, atol=3e-3)
    assert s.fingerprint == store.fingerprint and s.fingerprint["backbone"] == BACKBONE


def test_pool_by_location(world, store):
    ds = world["ds"]
    mapping = dict(zip(ds.frame["image_id"], ds.frame["location_id"]))
    keys, means = store.pool_by(mapping)
    views = ds.frame[ds.frame["path"].str.startswith("images/v")]
    assert set(views["location_id"]) <= set(keys)
    loc = views["location_id"].iloc[0]
    member = views.loc[views["location_id"] == loc, "image_id"].tolist()
    assert len(member) == 4
    want = store.load(member).mean(axis=0)
    want /= np.linalg.norm(want)
    np.testing.assert_allclose(means[list(keys).index(loc)], want, atol=1e-5)
    k2, m2 = pool_vectors(np.array([[1.0, 0.0], [0.0, 1.0], [np.nan, np.nan]]), ["a", "a", "b"])
    assert list(k2) == ["a", "b"] and np.allclose(m2[0], [2**-0.5, 2**-0.5]) and np.isnan(m2[1]).all()


def test_embed_images_mixed_sources(world, store, bb):
    ds = world["ds"]
    i0 = store.ids[0]
    p = ds.image_path(i0)
    vecs, failed = embed_images(
        [p, p.read_bytes(), Image.open(p), b"", str(world["root"] / "missing.jpg")], bb, batch_size=2
    )
    assert set(failed) == {3, 4} and "empty" in failed[3].reason and "not found" in failed[4].reason
    assert (failed[3].kind, failed[3].source) == ("empty", "<0 bytes>") and failed[4].kind == "missing"
    assert np.isnan(vecs[3]).all() and np.isnan(vecs[4]).all()
    ref = store.load([i0])[0]
    for k in range(2):  # path and bytes go through the same (JPEG draft) decoder as the store
        np.testing.assert_allclose(vecs[k], ref, atol=2e-3)
    assert float(vecs[2] @ ref) > 0.97  # an already-decoded full-size PIL image: same picture, no DCT scaling


def test_default_store_path(world, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSCOUT_HOME", str(tmp_path / "home"))
    ds = world["ds"]
    assert (
        default_store_path(ds, "hf:openai/clip-vit-base-patch32")
        == Path(ds.root).resolve() / "embeddings" / "hf_openai_clip-vit-base-patch32"
    )
    from geoscout.data import Dataset

    ro = Dataset(ds.root, ds.frame, name="croatia", writable=False)
    p = default_store_path(ro, "effnet-lite2")
    assert p.parent.parent == tmp_path / "home" / "embeddings" and p.name == "effnet-lite2"
    assert p.parent.name.startswith("croatia-")


def test_cli_embed_noop_and_pool(world, store):
    from typer.testing import CliRunner

    from geoscout.cli import app
    from geoscout.embeddings import load_pooled

    res = CliRunner().invoke(
        app, ["embed", str(world["root"]), "--backbone", BACKBONE, "-o", str(store.path), "--pool-panoramas"]
    )
    assert res.exit_code == 0, res.output
    assert "up to date" in res.output and str(store.path) in res.output
    keys, vecs = load_pooled(store.path)
    assert len(keys) == len(store) - N_GOOD + N_GOOD // 4 and vecs.shape[1] == store.dim
    bad = CliRunner().invoke(app, ["embed", str(world["root"]), "--backbone", "effnet-lite9"])
    assert bad.exit_code != 0


def test_one_writer_at_a_time(world, store, bb):
    import fcntl
    import threading

    result = {}
    with open(store.path / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        t = threading.Thread(
            target=lambda: result.setdefault("s", embed_dataset(world["ds"], bb, store.path, progress=False))
        )
        t.start()
        t.join(0.5)
        assert t.is_alive() and "s" not in result  # waits for the other writer
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    t.join(60)
    assert result["s"].last_run.embedded == 0 and len(result["s"]) == len(store)
