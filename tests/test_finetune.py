"""Caption pretraining on real photos with a tiny CLIP saved locally: captions, loss, resume after kill -9, modes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from geoscout.clip_finetune import FinetuneConfig, build_captions, caption, finetune
from geoscout.errors import InvalidInput


def test_public_api():
    import geoscout

    assert geoscout.finetune is finetune and geoscout.FinetuneConfig is FinetuneConfig
    assert "finetune" in geoscout.__all__


def test_caption_leaves_out_missing_parts():
    assert caption(country="Croatia", admin1="Istria", city="Pula", climate="Csa", month=7) == (
        "A Street View photo close to Pula in the region of Istria, Croatia. "
        "The climate is hot-summer Mediterranean. Taken in July."
    )
    assert caption(country="Croatia", city="Pula") == "A Street View photo close to Pula in Croatia."
    assert caption(country="Croatia", month=float("nan")) == "A Street View photo in Croatia."
    assert caption(admin1="Istria", climate="Cfb", month="12") == (
        "A Street View photo in the region of Istria. The climate is temperate oceanic. Taken in December."
    )
    assert caption() == "A Street View photo."


@pytest.fixture(scope="module")
def world_csv(shared_data, tmp_path_factory):
    """Every 4th photo of streetview-world (many countries) as a CSV with absolute paths."""
    import pandas as pd

    root = shared_data("streetview-world")
    df = pd.read_csv(root / "manifest.csv").iloc[::4].head(32).copy()
    df["path"] = [str(root / p) for p in df["path"]]
    path = tmp_path_factory.mktemp("ftdata") / "world.csv"
    df.to_csv(path, index=False)
    return path


def test_build_captions_from_coordinates(world_csv):
    from geoscout.data import load_dataset

    f = load_dataset(world_csv).frame
    caps = build_captions(f)
    assert len(caps) == len(f) and all(c.startswith("A Street View photo close to ") for c in caps)
    dk = [c for c, p in zip(caps, f["path"]) if "Denmark_" in str(p)]
    assert dk and all(c.endswith(", Denmark.") and "in the region of" in c for c in dk), dk
    labelled = f.assign(country_name="Croatia", admin1="Istria", city="Pula", month=3)
    assert set(build_captions(labelled)) == {
        "A Street View photo close to Pula in the region of Istria, Croatia. Taken in March."
    }


def _tensors(path):
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_loss_goes_down_on_real_photos(tiny_clip, world_csv, tmp_path):
    """Image tower trained on 32 real Street View photos for 4 epochs: the epoch-mean loss falls."""
    cfg = FinetuneConfig(batch_size=8, epochs=4, lr=1e-3, val_fraction=0.0, save_every=100)
    res = finetune([world_csv], f"hf:{tiny_clip}", tmp_path / "ft", cfg)
    assert res.steps == 16 and len(res.losses) == 16 and all(v is not None for v in res.losses)
    means = res.epoch_means(4)
    assert len(means) == 4 and means[-1] < 0.85 * means[0], means
    out = tmp_path / "ft"
    assert not (out / "checkpoint.safetensors").exists()
    info = json.loads((out / "finetune.json").read_text())
    assert info["epoch_mean_loss"] == pytest.approx(means) and info["use"] == f"--backbone hf:{out}"
    before, after = _tensors(tiny_clip / "model.safetensors"), _tensors(out / "model.safetensors")
    assert set(before) == set(after)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert any(k.startswith("vision_model.") for k in changed) and "visual_projection.weight" in changed
    assert not any(k.startswith(("text_model.", "text_projection.")) for k in changed)  # text tower frozen
    # the result is a backbone: embeddings and zero-shot prompts work from it
    from geoscout.backbones import create_backbone

    bb = create_backbone(f"hf:{out}")
    assert bb.has_text and bb.encode_text(["A Street View photo in Denmark."]).shape == (1, 16)
    assert bb.fingerprint()["weights_sha256"] != create_backbone(f"hf:{tiny_clip}").fingerprint()["weights_sha256"]


_KILLABLE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from geoscout.clip_finetune import FinetuneConfig, finetune

    csv, clip, out, flag = sys.argv[1:5]

    def on_step(step, loss):
        if step == 3:  # step 3 is done (checkpoint at step 2): signal, then wait to be killed
            Path(flag).write_text("3")
            time.sleep(600)

    cfg = FinetuneConfig(batch_size=4, max_steps=6, lr=1e-3, val_fraction=0.0, save_every=2, seed=1)
    finetune([csv], "hf:" + clip, out, cfg, on_step=on_step)
    """
)


def test_kill_and_resume_loses_and_repeats_no_step(tiny_clip, world_csv, tmp_path):
    cfg = FinetuneConfig(batch_size=4, max_steps=6, lr=1e-3, val_fraction=0.0, save_every=2, seed=1)
    whole = finetune([world_csv], f"hf:{tiny_clip}", tmp_path / "whole", cfg)
    out, flag = tmp_path / "killed", tmp_path / "flag"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(world_csv), str(tiny_clip), str(out), str(flag)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while not flag.exists():  # the child writes the flag after step 3 and then sleeps
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode()[-3000:])
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "checkpoint.safetensors").is_file() and not (out / "model.safetensors").exists()
    resumed = finetune([world_csv], f"hf:{tiny_clip}", out, cfg)
    assert resumed.resumed_from == 2 and resumed.steps == 6 and len(resumed.losses) == 6
    np.testing.assert_allclose(resumed.losses, whole.losses, rtol=1e-5)
    a, b = _tensors(tmp_path / "whole" / "model.safetensors"), _tensors(out / "model.safetensors")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # a finished run is not redone; another plan in the same folder is refused
    again = finetune([world_csv], f"hf:{tiny_clip}", out, cfg)
    assert again.steps == 6 and again.losses == resumed.losses
    with pytest.raises(InvalidInput, match="lr"):
        finetune([world_csv], f"hf:{tiny_clip}", out, FinetuneConfig(**{**cfg.__dict__, "lr": 5e-4}))


@pytest.mark.parametrize("mode", ["projection", "lora"])
def test_light_modes_change_only_their_part(tiny_clip, world_csv, tmp_path, mode):
    if mode == "lora":
        pytest.importorskip("peft")
    cfg = FinetuneConfig(train=mode, batch_size=8, max_steps=2, lr=1e-2, val_fraction=0.0)
    res = finetune([world_csv], f"hf:{tiny_clip}", tmp_path / mode, cfg)
    assert res.steps == 2
    before, after = _tensors(tiny_clip / "model.safetensors"), _tensors(tmp_path / mode / "model.safetensors")
    assert set(before) == set(after)  # LoRA merged back: a plain CLIP checkpoint
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    if mode == "projection":
        assert changed <= {"visual_projection.weight", "logit_scale"} and "visual_projection.weight" in changed
    else:
        assert changed and all(k.startswith("vision_model.") or k == "logit_scale" for k in changed), changed
        assert any(".self_attn." in k for k in changed)


def test_cli_finetune_then_train_and_locate_with_it(tiny_clip, world_csv, tmp_path):
    """The fine-tuned folder works as a backbone for train, locate -m zeroshot:hf:OUT and --prior zeroshot."""
    from geoscout.cli import app

    runner = CliRunner()
    out = tmp_path / "ft"
    res = runner.invoke(
        app,
        [
            "finetune",
            str(world_csv),
            "-b",
            f"hf:{tiny_clip}",
            "-o",
            str(out),
            "--batch-size",
            "8",
            "--max-steps",
            "3",
            "--lr",
            "1e-3",
            "--val-fraction",
            "0.25",
            "--log-every",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "step 3: loss" in res.output and f"use it with --backbone hf:{out}" in res.output
    assert "held-out loss" in res.output
    bundle = tmp_path / "bundle"
    res = runner.invoke(
        app,
        [
            "train",
            str(world_csv),
            "-o",
            str(bundle),
            "-b",
            f"hf:{out}",
            "--head",
            "knn",
            "--cells",
            "country",
            "--store-dir",
            str(tmp_path / "stores"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    photo = next(iter(__import__("pandas").read_csv(world_csv)["path"]))
    res = runner.invoke(app, ["locate", "-m", str(bundle), "--prior", "zeroshot", "-f", "json", photo])
    assert res.exit_code == 0, res.output
    (pred,) = json.loads(res.stdout)
    assert pred["candidates"] and pred["error"] is None
    res = runner.invoke(app, ["locate", "-m", f"zeroshot:hf:{out}", "--places", "countries:DK,DE,CH,HR", photo])
    assert res.exit_code == 0 and "68% radius" in " ".join(res.output.split()), res.output  # rich may wrap it


def test_finetune_errors(tiny_clip, world_csv, tmp_path):
    from geoscout.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["finetune", str(world_csv), "-b", "effnet-lite2", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "transformers CLIP backbone" in res.output
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["finetune", str(world_csv), "-b", f"hf:{tiny_clip}", "-o", str(taken)])
    assert res.exit_code == 2 and "not a finetune output" in res.output and (taken / "notes.txt").is_file()
    res = runner.invoke(
        app, ["finetune", str(world_csv), "-b", f"hf:{tiny_clip}", "-o", str(tmp_path / "y"), "--train", "all"]
    )
    assert res.exit_code == 2 and "image, projection, lora" in res.output
    import torch

    if not torch.cuda.is_available():
        res = runner.invoke(
            app, ["finetune", str(world_csv), "-b", f"hf:{tiny_clip}", "-o", str(tmp_path / "z"), "--device", "cuda"]
        )
        assert res.exit_code == 2 and "no CUDA device" in res.output


def test_finetune_on_cuda(tiny_clip, world_csv, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = FinetuneConfig(batch_size=8, max_steps=4, lr=1e-3, val_fraction=0.0, device="cuda")
    res = finetune([world_csv], f"hf:{tiny_clip}", tmp_path / "gpu", cfg)
    assert res.steps == 4 and all(v is not None for v in res.losses)
    assert (tmp_path / "gpu" / "model.safetensors").is_file()


def test_training_rows_keep_a_dataset_without_split(world_csv, tmp_path):
    """Two datasets, one with a split column, one without: the second trains too (it was dropped before)."""
    import pandas as pd

    from geoscout.clip_finetune import _training_rows

    df = pd.read_csv(world_csv)
    a, b = df.head(16).copy(), df.iloc[16:].copy()
    a["split"] = ["train"] * 12 + ["val"] * 2 + ["test"] * 2
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    train, val = _training_rows([tmp_path / "a.csv", tmp_path / "b.csv"], FinetuneConfig(batch_size=4), None)
    assert (train["dataset"] == "a").sum() == 12 and (val["dataset"] == "a").sum() == 2
    assert (train["dataset"] == "b").sum() + (val["dataset"] == "b").sum() == len(b) and (train["dataset"] == "b").any()
    assert not set(train["image_id"]) & set(val["image_id"])
