"""GeoCLIP inside geoscout: parity with the `geoclip` wheel's own code (location encoder, predict),
the gallery-feature cache, the backbone's weights handling and the head contract."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from geoscout.errors import InvalidInput, MissingWeights  # noqa: E402

_spec = importlib.util.find_spec("geoclip") if "geoclip" not in sys.modules else None
if "geoclip" not in sys.modules and _spec is None:
    pytest.skip("the geoclip wheel is not installed", allow_module_level=True)


def _wheel():
    """geoclip's own modules, imported without its package __init__ (which needs torchvision)."""
    if "geoclip" not in sys.modules:
        mod = types.ModuleType("geoclip")
        mod.__path__ = list(_spec.submodule_search_locations)  # type: ignore[union-attr]
        sys.modules["geoclip"] = mod
    import importlib

    return importlib.import_module("geoclip.model.GeoCLIP"), importlib.import_module("geoclip.model.location_encoder")


SUBSET = 2000  # gallery points used by the fast tests (the full 100k gallery runs in the slow test)


@pytest.fixture(scope="module")
def photos(shared_data):
    root = shared_data("im2gps")
    import pandas as pd

    frame = pd.read_csv(root / "manifest.csv").head(3)
    return [root / p for p in frame["path"]]


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny random CLIPModel whose projection_dim (768) fits GeoCLIP's MLP, saved like a hub snapshot."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = CLIPConfig(
        projection_dim=768,
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "vocab_size": 99,
            "projection_dim": 768,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 224,
            "patch_size": 32,
            "projection_dim": 768,
        },
    )
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tinyclip")
    CLIPModel(cfg).eval().save_pretrained(d)
    CLIPImageProcessor().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def geoscout_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("gshome")
    mp = pytest.MonkeyPatch()
    mp.setenv("GEOSCOUT_HOME", str(home))
    yield home
    mp.undo()


def test_location_encoder_matches_geoclip():
    from geoscout.geoclip import LocationEncoder
    from geoscout.geoclip._wheel import load_wheel_weights

    _, le_mod = _wheel()
    theirs = le_mod.LocationEncoder()  # loads the wheel's weights itself
    ours = LocationEncoder()
    ours.load_state_dict(load_wheel_weights("location_encoder"), strict=True)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    rng = np.random.default_rng(0)
    gps = np.c_[rng.uniform(-90, 90, 200), rng.uniform(-180, 180, 200)]
    gps = np.r_[gps, [[90, 180], [-90, -180], [0, 0], [45.81, 15.98]]]
    g = torch.tensor(gps, dtype=torch.float32)
    with torch.no_grad():
        a, b = theirs(g), ours(g)
    assert a.shape == b.shape == (len(gps), 512)
    assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    # the projection itself against the wheel's
    assert torch.allclose(
        le_mod.equal_earth_projection(g), __import__("geoscout.geoclip", fromlist=["x"]).equal_earth_projection(g)
    )


def test_equal_earth_projection_reference_values():
    """Independent reference: Equal Earth maps the equator/prime meridian to 0 and is odd in lat and lon."""
    from geoscout.geoclip import equal_earth_projection

    g = torch.tensor([[0.0, 0.0], [30.0, 60.0], [-30.0, -60.0], [90.0, 0.0]])
    xy = equal_earth_projection(g)
    assert torch.allclose(xy[0], torch.zeros(2))
    assert torch.allclose(xy[1], -xy[2])
    # the pole's y: A1 t + A2 t^3 + A3 t^7 + A4 t^9 with t = asin(sqrt(3)/2) = pi/3, times SF/180
    t = np.pi / 3
    y = 1.340264 * t - 0.081106 * t**3 + 0.000893 * t**7 + 0.003796 * t**9
    assert xy[3, 1].item() == pytest.approx(y * 66.50336 / 180, rel=1e-5)


def test_fresh_encoder_config_and_seed():
    from geoscout.geoclip import LocationEncoder

    a = LocationEncoder((1.0, 16.0), hidden=64, depth=2, out_dim=32, seed=3)
    b = LocationEncoder((1.0, 16.0), hidden=64, depth=2, out_dim=32, seed=3)
    assert a.config == {"sigmas": [1.0, 16.0], "rff_dim": 256, "hidden": 64, "depth": 2, "out_dim": 32}
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k
    assert "LocEnc0.capsule.0.b" in a.state_dict()  # the Fourier matrix is saved, not trained
    assert not any(n.endswith(".b") for n, _ in a.named_parameters())


def test_backbone_missing_weights_messages(tmp_path, monkeypatch):
    from geoscout.backbones import create_backbone

    with pytest.raises(MissingWeights, match="--weights"):
        create_backbone("geoclip", weights=tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MissingWeights, match="model.safetensors"):
        create_backbone("geoclip", weights=tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingWeights, match=r"(?s)openai/clip-vit-large-patch14.*--weights DIR"):
        create_backbone("geoclip")


def test_registries():
    from geoscout.backbones._registry import BACKBONES
    from geoscout.heads import create_head, list_heads

    assert "geoclip" in BACKBONES
    assert "geoclip" in list_heads()
    assert type(create_head("geoclip")).__name__ == "GeoCLIPHead"


def _their_model(gc_mod, clip_dir, gallery):
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model = gc_mod.GeoCLIP(from_pretrained=True, clip_path=str(clip_dir)).eval()
    model.gps_gallery = torch.as_tensor(gallery, dtype=torch.float32)
    return model


def test_predict_matches_geoclip_predict(tiny_clip_dir, photos, geoscout_home):
    """Same weights (real location encoder, MLP, logit scale; tiny random CLIP) -> identical top-k."""
    from PIL import Image

    from geoscout.backbones import create_backbone
    from geoscout.geoclip._wheel import wheel_gallery
    from geoscout.heads.geoclip import GeoCLIPHead

    gc_mod, _ = _wheel()
    gallery = wheel_gallery()[:SUBSET]
    model = _their_model(gc_mod, tiny_clip_dir, gallery)
    backbone = create_backbone("geoclip", weights=tiny_clip_dir)
    head = GeoCLIPHead(gallery=gallery)
    pils = []
    for p in photos:
        with Image.open(p) as im:
            pils.append(im.convert("RGB"))  # decoded as geoclip's predict does
    feats = backbone.encode(pils)
    assert feats.shape == (len(photos), 512) and feats.dtype == np.float32
    assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    k = 10
    idx, prob = head.predict_topk_indices(feats, k)
    tops = head.predict_topk(feats, k)
    for i, p in enumerate(photos):
        gps, pr = model.predict(str(p), top_k=k)
        ours = np.array([[c.lat, c.lon] for c in tops[i]])
        np.testing.assert_allclose(ours, gps.numpy(), atol=1e-5)
        np.testing.assert_allclose(prob[i], pr.numpy(), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose([c.probability for c in tops[i]], pr.numpy(), rtol=1e-4, atol=1e-7)
    # the distribution agrees with the top-k and sums to one
    dist = head.predict_distribution(feats)
    assert dist.prob.shape == (len(photos), SUBSET)
    np.testing.assert_allclose(dist.prob.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(dist.prob, axis=1), idx[:, 0])
    np.testing.assert_allclose(head.predict(feats), gallery[idx[:, 0]], atol=1e-5)


def test_gallery_cache_written_once_and_reused(geoscout_home, monkeypatch):
    from geoscout.geoclip._wheel import wheel_gallery
    from geoscout.heads import geoclip as head_mod

    gallery = wheel_gallery()[SUBSET : SUBSET + 500]
    h1 = head_mod.GeoCLIPHead(gallery=gallery).fit()
    files = list((geoscout_home / "geoclip").glob("gallery-*.safetensors"))
    assert any(h1.weights_hash_ in f.name for f in files)
    assert not list((geoscout_home / "geoclip").glob(".*tmp"))  # atomic: no leftovers

    calls = []
    real = head_mod.LocationEncoder.forward

    def spy(self, x):
        calls.append(len(x))
        return real(self, x)

    monkeypatch.setattr(head_mod.LocationEncoder, "forward", spy)
    h2 = head_mod.GeoCLIPHead(gallery=gallery).fit()
    assert calls == []  # served from the cache
    np.testing.assert_array_equal(h1.gallery_features_, h2.gallery_features_)
    # a damaged cache file is recomputed, not trusted
    for f in (geoscout_home / "geoclip").glob(f"gallery-{h1.weights_hash_}-*.safetensors"):
        f.write_bytes(b"garbage")
    h3 = head_mod.GeoCLIPHead(gallery=gallery).fit()
    assert sum(calls) == len(gallery)
    np.testing.assert_allclose(h3.gallery_features_, h1.gallery_features_, atol=1e-6)


def test_head_state_roundtrip_and_errors(geoscout_home, tmp_path):
    from geoscout.geoclip._wheel import wheel_gallery
    from geoscout.heads import head_from_state
    from geoscout.heads.geoclip import GeoCLIPHead

    gallery = wheel_gallery()[:SUBSET]
    head = GeoCLIPHead(gallery=gallery).fit()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, 512)).astype(np.float32)
    cfg, tensors = head.get_state()
    assert cfg["name"] == "geoclip"
    import json

    json.dumps(cfg)
    again = head_from_state(cfg, tensors)
    np.testing.assert_allclose(again.predict_distribution(X).prob, head.predict_distribution(X).prob, atol=1e-6)
    with pytest.raises(InvalidInput, match="512"):
        head.predict(rng.normal(size=(2, 100)))
    with pytest.raises(InvalidInput, match="NaN"):
        head.predict(np.full((1, 512), np.nan))
    csv = tmp_path / "gal.csv"
    csv.write_text("LAT,LON\n45.8,15.9\n91,0\n")
    with pytest.raises(InvalidInput, match="gal.csv"):
        GeoCLIPHead(gallery=csv).fit()
    csv.write_text("LAT,LON\n45.8,15.9\n-33.9,151.2\n")
    small = GeoCLIPHead(gallery=csv).fit()
    assert small.predict_distribution(X).prob.shape == (3, 2)


@pytest.mark.slow
def test_full_gallery_matches_geoclip_predict(tiny_clip_dir, photos, geoscout_home):
    """The real 100k gallery through the disk cache: top-5 equal to geoclip's predict."""
    from geoscout.backbones import create_backbone
    from geoscout.heads.geoclip import load_geoclip_head

    gc_mod, _ = _wheel()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model = gc_mod.GeoCLIP(from_pretrained=True, clip_path=str(tiny_clip_dir)).eval()
    head = load_geoclip_head()
    assert head.gallery_.shape == (100_000, 2)
    assert list((geoscout_home / "geoclip").glob("gallery-*.safetensors"))
    from PIL import Image

    with Image.open(photos[0]) as im:
        feats = create_backbone("geoclip", weights=tiny_clip_dir).encode([im.convert("RGB")])
    top = head.predict_topk(feats, 5)[0]
    gps, pr = model.predict(str(photos[0]), top_k=5)
    np.testing.assert_allclose([[c.lat, c.lon] for c in top], gps.numpy(), atol=1e-5)
    np.testing.assert_allclose([c.probability for c in top], pr.numpy(), rtol=1e-4, atol=1e-7)


def test_onnx_runtime_is_the_default_and_agrees_with_torch(tiny_clip_dir, photos, geoscout_home):
    """GeoCLIP's tower runs on ONNX Runtime by default (exported once, cached by fingerprint, the torch ViT not
    built again); on real photos it gives torch's top-1 gallery point, features within cosine 1e-5 of torch's."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from geoscout.backbones import create_backbone
    from geoscout.geoclip._wheel import wheel_gallery
    from geoscout.heads.geoclip import GeoCLIPHead
    from geoscout.locator import load_model

    onnx = create_backbone("geoclip", weights=tiny_clip_dir)
    ref = create_backbone("geoclip", weights=tiny_clip_dir, runtime="torch")
    assert (onnx.runtime, ref.runtime) == ("onnx", "torch")
    assert list((geoscout_home / "onnx").glob("geoclip-*.onnx"))
    again = create_backbone("geoclip", weights=tiny_clip_dir)  # from the cached export
    assert again._module is None  # the torch tower was not built
    pils = []
    for p in photos:
        with Image.open(p) as im:
            pils.append(im.convert("RGB"))
    a, b = again.encode(pils), ref.encode(pils)
    assert again._module is None
    assert np.all((a * b).sum(axis=1) > 1 - 1e-5)
    head = GeoCLIPHead(gallery=wheel_gallery()[:SUBSET])
    ia, pa = head.predict_topk_indices(a, 1)
    ib, pb = head.predict_topk_indices(b, 1)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_allclose(pa, pb, rtol=1e-3)
    # and through locate: the same answers as --runtime torch
    la = load_model("geoclip", weights=str(tiny_clip_dir), geocode=False).locate(photos, top_k=3)
    lb = load_model("geoclip", weights=str(tiny_clip_dir), runtime="torch", geocode=False).locate(photos, top_k=3)
    assert [(p.top.lat, p.top.lon) for p in la] == [(p.top.lat, p.top.lon) for p in lb]


def test_int8_tower_agrees_with_torch_and_has_its_own_fingerprint(tiny_clip_dir, photos, geoscout_home, tmp_path):
    """``precision="int8"``: the encoder's MatMuls run in int8 on ONNX Runtime (its own cached model, built from
    the fp32 export without an fp32 session in between); on real photos its features stay within cosine 0.995 of
    torch's and its top-1 gallery point is among torch's top 5. Its fingerprint (so the ONNX cache key and every
    embedding store) differs from fp32's: an fp32 store refuses int8 vectors, naming the numerics."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from geoscout.backbones import create_backbone
    from geoscout.backbones.onnx_runtime import INT8_SCHEME, onnx_path
    from geoscout.embeddings import embed_dataset
    from geoscout.geoclip._wheel import wheel_gallery
    from geoscout.heads.geoclip import GeoCLIPHead

    q = create_backbone("geoclip", weights=tiny_clip_dir, precision="int8")
    ref = create_backbone("geoclip", weights=tiny_clip_dir, runtime="torch")
    assert (q.runtime, q.precision, ref.precision) == ("onnx", "int8", "fp32")
    assert q.fingerprint()["quantization"] == INT8_SCHEME and "quantization" not in ref.fingerprint()
    assert q.fingerprint_hash() != ref.fingerprint_hash()
    fp32_file, int8_file = onnx_path(q, precision="fp32"), onnx_path(q)
    assert fp32_file == onnx_path(ref) and int8_file != fp32_file
    assert fp32_file.is_file() and int8_file.is_file()
    assert int8_file.stat().st_size < fp32_file.stat().st_size
    pils = []
    for p in photos:
        with Image.open(p) as im:
            pils.append(im.convert("RGB"))
    a, b = q.encode(pils), ref.encode(pils)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.995, cos
    assert not np.allclose(a, b, atol=1e-6)  # it is a different numeric path, not the fp32 one renamed
    head = GeoCLIPHead(gallery=wheel_gallery()[:SUBSET])
    ia, _ = head.predict_topk_indices(a, 1)
    ib, _ = head.predict_topk_indices(b, 5)
    assert all(int(x[0]) in set(y.tolist()) for x, y in zip(ia, ib))
    # a second int8 backbone reuses the cached int8 model
    mtime = int8_file.stat().st_mtime_ns
    again = create_backbone("geoclip", weights=tiny_clip_dir, precision="int8")
    assert again._module is None and int8_file.stat().st_mtime_ns == mtime
    # an embedding store made in fp32 refuses int8 vectors (and says why)
    import pandas as pd

    root = Path(photos[0]).parent.parent
    frame = pd.read_csv(root / "manifest.csv").head(2)
    ds_dir = tmp_path / "ds"
    (ds_dir / "images").mkdir(parents=True)
    for p in frame["path"]:
        (ds_dir / "images" / Path(p).name).write_bytes((root / p).read_bytes())
    frame.assign(path=["images/" + Path(p).name for p in frame["path"]]).to_csv(ds_dir / "manifest.csv", index=False)
    store = tmp_path / "store"
    embed_dataset(str(ds_dir), backbone=ref, out=store, progress=False)
    with pytest.raises(InvalidInput, match=r"fp32.*int8 \(ort-dynamic"):
        embed_dataset(str(ds_dir), backbone=q, out=store, progress=False)


def test_int8_precision_refusals(tiny_clip_dir, geoscout_home):
    """int8 is offered only where it is built and measured: geoclip on ONNX Runtime on the CPU."""
    from geoscout.backbones import create_backbone
    from geoscout.devices import resolve_precision

    with pytest.raises(InvalidInput, match="runtime onnx"):
        create_backbone("geoclip", weights=tiny_clip_dir, precision="int8", runtime="torch")
    with pytest.raises(InvalidInput, match="offered for the geoclip backbone"):
        create_backbone("effnet-lite0", precision="int8")
    with pytest.raises(InvalidInput, match="runs on the CPU"):
        resolve_precision("int8", "cuda")
    with pytest.raises(InvalidInput, match="auto, fp32, fp16, bf16, int8"):
        resolve_precision("int4", "cpu")


def test_onnx_cache_key_follows_the_int8_recipe(tiny_clip_dir, geoscout_home, monkeypatch):
    """The int8 model's cache key (and fingerprint) carries the quantisation recipe: a changed recipe never reuses an
    older int8 model or int8 embeddings, and the fp32 export's key does not move with it."""
    from geoscout.backbones import create_backbone, onnx_runtime

    bb = create_backbone("geoclip", weights=tiny_clip_dir, runtime="torch")  # no export, no session
    fp32, int8 = onnx_runtime.onnx_path(bb), onnx_runtime.onnx_path(bb, precision="int8")
    assert fp32 != int8 and "quantization" not in bb.fingerprint()
    monkeypatch.setattr(onnx_runtime, "INT8_SCHEME", "another-int8-recipe")
    assert onnx_runtime.onnx_path(bb, precision="int8") not in (fp32, int8)
    assert onnx_runtime.onnx_path(bb) == fp32
    bb.precision = "int8"
    assert bb.fingerprint()["quantization"] == "another-int8-recipe"
    assert onnx_runtime.onnx_path(bb) == onnx_runtime.onnx_path(bb, precision="int8")
