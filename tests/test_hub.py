"""Sharing bundles through the Hugging Face hub, offline: a bundle exported into a folder laid out like the
hub cache is found by name through huggingface_hub's own cache resolver, verified, and a tampered file is
refused. The upload path is checked against a recording stand-in for HfApi (no network in tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geoscout.bundle import ModelBundle
from geoscout.errors import InvalidInput, MissingWeights
from geoscout.hub import download_bundle, export_to_cache, load_hub_bundle, parse_hub_ref, push_bundle

REPO = "geoscout-test/tiny-knn"


@pytest.fixture(scope="module")
def bundle_dir(shared_data, tmp_path_factory) -> Path:
    """A real bundle: a k-NN head on EfficientNet-Lite0 embeddings of 12 real photos."""
    import pandas as pd

    from geoscout.backbones import create_backbone
    from geoscout.embeddings import embed_images
    from geoscout.heads import create_head

    root = shared_data("osv5m-sample")
    df = pd.read_csv(root / "manifest.csv").iloc[1:13]
    X, failures = embed_images([str(root / p) for p in df["path"]], create_backbone("effnet-lite0"), batch_size=12)
    assert not failures
    head = create_head("knn", k=3).fit(X, df[["lat", "lon"]].to_numpy())
    b = ModelBundle(head=head, backbone_name="effnet-lite0", card="# tiny knn\n\nTest bundle.\n")
    return b.save(tmp_path_factory.mktemp("b") / "bundle")


def test_parse_hub_ref():
    assert parse_hub_ref("hf-bundle:user/name") == ("user/name", None)
    assert parse_hub_ref("hf-bundle:user/name@v1.2") == ("user/name", "v1.2")
    for bad in ("hf-bundle:name", "hf-bundle:../x/y", "hf-bundle:user/name@", "hf-bundle:a/b/c"):
        with pytest.raises(InvalidInput, match="USER/NAME"):
            parse_hub_ref(bad)


def test_round_trip_through_the_hub_cache(bundle_dir, tmp_path, shared_data, monkeypatch):
    from huggingface_hub import hf_hub_download

    from geoscout.locator import load_model

    cache = tmp_path / "hub"
    snap = export_to_cache(bundle_dir, REPO, cache)
    base = cache / "models--geoscout-test--tiny-knn"
    assert (base / "refs" / "main").read_text() == snap.name and (snap / "config.json").is_symlink()
    # huggingface_hub's own resolver finds the files offline
    p = hf_hub_download(REPO, "weights.safetensors", cache_dir=str(cache), local_files_only=True)
    assert Path(p).read_bytes() == (bundle_dir / "weights.safetensors").read_bytes()
    back, folder = load_hub_bundle(f"hf-bundle:{REPO}", cache_dir=cache, local_files_only=True)
    assert folder == snap and back.backbone_name == "effnet-lite0"
    # by name through load_model, with the standard environment variables
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    photo = shared_data("osv5m-sample") / "images" / "546314506564628.jpg"
    via_hub = load_model(f"hf-bundle:{REPO}", geocode=False).locate([str(photo)], top_k=3)[0]
    local = load_model(str(bundle_dir), geocode=False).locate([str(photo)], top_k=3)[0]
    assert np.allclose(
        [(c.lat, c.lon, c.probability) for c in via_hub.candidates],
        [(c.lat, c.lon, c.probability) for c in local.candidates],
    )


def test_tampered_file_is_refused(bundle_dir, tmp_path):
    cache = tmp_path / "hub"
    snap = export_to_cache(bundle_dir, REPO, cache)
    blob = (snap / "weights.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match="checksum mismatch"):
        load_hub_bundle(f"hf-bundle:{REPO}", cache_dir=cache, local_files_only=True)


def test_config_naming_files_outside_the_bundle_is_refused(bundle_dir, tmp_path):
    cache = tmp_path / "hub"
    snap = export_to_cache(bundle_dir, REPO, cache)
    cfg_blob = (snap / "config.json").resolve()
    cfg = json.loads(cfg_blob.read_text())
    cfg["files"]["../../../../etc/passwd"] = "0" * 64
    cfg_blob.write_text(json.dumps(cfg))
    with pytest.raises(InvalidInput, match="plain names"):
        download_bundle(f"hf-bundle:{REPO}", cache_dir=cache, local_files_only=True)


def test_offline_and_absent_is_a_clear_error(bundle_dir, tmp_path):
    with pytest.raises(MissingWeights, match="HF_HUB_OFFLINE"):
        download_bundle("hf-bundle:nobody/nothing", cache_dir=tmp_path / "empty", local_files_only=True)
    cache = tmp_path / "hub"
    export_to_cache(bundle_dir, REPO, cache, revision="v2")
    with pytest.raises(MissingWeights):  # only the v2 branch exists
        download_bundle(f"hf-bundle:{REPO}", cache_dir=cache, local_files_only=True)
    assert download_bundle(f"hf-bundle:{REPO}@v2", cache_dir=cache, local_files_only=True).is_dir()


class _RecordingApi:
    """Stands in for huggingface_hub.HfApi: records what would be sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, **kw):
        self.calls.append(("create_repo", kw))

    def create_branch(self, **kw):
        self.calls.append(("create_branch", kw))

    def create_commit(self, **kw):
        self.calls.append(("create_commit", kw))

        class Info:
            commit_url = f"https://huggingface.co/{kw['repo_id']}/commit/abc"

        return Info()


def test_push_sends_exactly_the_bundle_files(bundle_dir):
    api = _RecordingApi()
    url = push_bundle(bundle_dir, REPO, revision="v1", private=True, api=api)
    assert url.endswith("/commit/abc")
    names = [c[0] for c in api.calls]
    assert names == ["create_repo", "create_branch", "create_commit"]
    assert api.calls[0][1]["private"] is True and api.calls[1][1]["branch"] == "v1"
    ops = api.calls[2][1]["operations"]
    listed = json.loads((bundle_dir / "config.json").read_text())["files"]
    assert sorted(o.path_in_repo for o in ops) == sorted([*listed, "config.json", "README.md"])
    readme = next(o for o in ops if o.path_in_repo == "README.md").path_or_fileobj
    assert b"library_name: geoscout" in readme and b"# tiny knn" in readme


def test_push_refuses_a_damaged_bundle(bundle_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(bundle_dir, bad)
    (bad / "weights.safetensors").write_bytes(b"x")
    with pytest.raises(InvalidInput, match="checksum"):
        push_bundle(bad, REPO, api=_RecordingApi())


def test_cli_push_to_cache_then_locate(bundle_dir, tmp_path, shared_data):
    from typer.testing import CliRunner

    from geoscout.cli import app

    cache = tmp_path / "hub"
    res = CliRunner().invoke(app, ["push", str(bundle_dir), REPO, "--to-cache", str(cache)])
    assert res.exit_code == 0, res.output
    photo = shared_data("osv5m-sample") / "images" / "546314506564628.jpg"
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    res = CliRunner().invoke(app, ["locate", "-m", f"hf-bundle:{REPO}", str(photo), "--format", "json"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["candidates"]
    res = CliRunner().invoke(app, ["locate", "-m", "hf-bundle:nobody/nothing", str(photo)], env=env)
    assert res.exit_code == 2 and "nobody/nothing" in res.output and "HF_HUB_OFFLINE" in res.output


def test_cache_link_outside_the_repository_is_refused(bundle_dir, tmp_path):
    cache = tmp_path / "hub"
    snap = export_to_cache(bundle_dir, REPO, cache)
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes((snap / "weights.safetensors").read_bytes())
    (snap / "weights.safetensors").unlink()
    (snap / "weights.safetensors").symlink_to(outside)
    with pytest.raises(InvalidInput, match="outside the bundle"):
        load_hub_bundle(f"hf-bundle:{REPO}", cache_dir=cache, local_files_only=True)
