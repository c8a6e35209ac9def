"""Typed failures recorded everywhere a failure is written down: evaluate's per-image table, an
embedding store's failures.csv, a CLIP fine-tune's ``failed`` record and an import's problems, each from
real bad inputs (a truncated JPEG, a text file named .jpg) among real photos of ../shared."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from geoscout.errors import PhotoFailure

BAD = {"truncated.jpg": "decode_error", "text.jpg": "not_an_image"}


@pytest.fixture(scope="module")
def mixed(shared_data, tmp_path_factory):
    """8 real OSV-5M photos and the two bad files, copied into one folder with a manifest.csv."""
    src = shared_data("osv5m-sample")
    df = pd.read_csv(src / "manifest.csv").head(10)
    root = tmp_path_factory.mktemp("mixed")
    (root / "images").mkdir()
    for p in df["path"]:
        shutil.copy(src / p, root / p)
    good = (src / df["path"].iloc[8]).read_bytes()
    df.loc[8, "path"], df.loc[9, "path"] = "images/truncated.jpg", "images/text.jpg"
    (root / "images" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "images" / "text.jpg").write_text("this is a shopping list, not a photo\n")
    df[["path", "lat", "lon"]].to_csv(root / "manifest.csv", index=False)
    return root, df


def test_evaluate_table_has_the_error_kind_beside_the_error(mixed, tmp_path):
    from geoscout.evaluate import evaluate
    from geoscout.locator import load_model

    root, df = mixed
    paths = [str(root / p) for p in df["path"]]
    preds = load_model("geoscout-lite").locate(paths, top_k=3)
    truth = pd.DataFrame({"image_id": paths, "lat": df["lat"], "lon": df["lon"]})
    r = evaluate(preds, truth, places=False)
    per = r.per_image.set_index("image_id")
    cols = list(r.per_image.columns)
    assert cols[cols.index("error") + 1] == "error_kind"
    for name, kind in BAD.items():
        row = per.loc[str(root / "images" / name)]
        assert (row["status"], row["error_kind"]) == ("failed", kind)
        assert row["error"].startswith(f"{root / 'images' / name}: ")
    assert per["error_kind"].isna().sum() == 8  # the answered photos have none
    r.save(tmp_path / "report")
    back = pd.read_csv(tmp_path / "report" / "per_image.csv")
    assert sorted(back["error_kind"].dropna()) == sorted(BAD.values())
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"(decode_error): {root / 'images' / 'truncated.jpg'}" in md


def test_embedding_store_records_the_kind_and_old_stores_still_load(mixed, tmp_path):
    from geoscout.backbones import create_backbone
    from geoscout.embeddings import EmbeddingStore, embed_dataset

    root, _ = mixed
    bb = create_backbone("effnet-lite0")
    # a CSV dataset checks its photos when read: the bad ones come as the dataset's problems
    store = embed_dataset(root, bb, tmp_path / "store", batch_size=4)
    f = store.failures.set_index("path")
    assert {k: f.loc[k, "kind"] for k in f.index if k.endswith(tuple(BAD))} == {
        "images/truncated.jpg": "decode_error",
        "images/text.jpg": "not_an_image",
    }
    assert len(store) == 8
    summary = store.last_run.summary()  # what `geoscout embed` prints: the kinds counted, each photo with its kind
    assert (
        "2 failed (1 decode_error, 1 not_an_image)" in summary or "2 failed (1 not_an_image, 1 decode_error)" in summary
    )
    assert "skipped [decode_error] images/truncated.jpg: " in summary
    # a store written before the kinds: no kind column; it loads (kind unknown) and takes new failures
    fp = tmp_path / "store" / "failures.csv"
    old = pd.read_csv(fp, dtype=str, keep_default_na=False).drop(columns="kind")
    old.to_csv(fp, index=False)
    reopened = EmbeddingStore.open(tmp_path / "store")
    assert list(reopened.failures["kind"]) == ["unknown", "unknown"]
    missing = PhotoFailure("missing", "file not found", "gone.jpg", "gone")
    reopened.append([], np.zeros((0, bb.dim)), [missing])
    again = EmbeddingStore.open(tmp_path / "store").failures.set_index("image_id")
    assert again.loc["gone", "kind"] == "missing" and (again["kind"] == "unknown").sum() == 2
    assert list(pd.read_csv(fp).columns) == ["image_id", "path", "reason", "kind"]


def test_import_problems_carry_the_failure_made_where_the_file_failed(mixed, tmp_path):
    from geoscout.data import import_csv

    root, _ = mixed
    report = import_csv(root / "manifest.csv", out=tmp_path / "ds")
    assert report.n_imported == 8
    by_name = {p.path.rsplit("/", 1)[-1]: p for p in report.problems}
    for name, kind in BAD.items():
        p = by_name[name]
        assert p.kind == "unreadable_image" and isinstance(p.failure, PhotoFailure)
        assert p.failure.kind == kind and p.failure.source == str(root / "images" / name)
        assert p.reason == f"unreadable image: {p.failure.reason}"
    written = pd.read_csv(tmp_path / "ds" / "problems.csv")
    assert dict(zip(written["path"].str.rsplit("/", n=1).str[-1], written["failure_kind"])) == BAD


def test_finetune_records_typed_failures_of_photos_broken_after_import(mixed, tiny_clip, tmp_path):
    from geoscout.clip_finetune import FinetuneConfig, finetune
    from geoscout.data import load_dataset

    root, df = mixed
    good = tmp_path / "photos"
    shutil.copytree(root, good)
    (good / "manifest.csv").write_text(df.head(8)[["path", "lat", "lon"]].to_csv(index=False))
    ds = load_dataset(good)  # all 8 read fine now
    first, second = (good / p for p in df["path"].iloc[:2])
    first.write_bytes(first.read_bytes()[:2000])  # then one is truncated and one overwritten by text
    second.write_text("not a photo any more\n")
    cfg = FinetuneConfig(batch_size=8, max_steps=2, lr=1e-3, val_fraction=0.0, save_every=100)
    res = finetune([ds], f"hf:{tiny_clip}", tmp_path / "ft", cfg)
    kinds = {f.source: f.kind for f in res.failed.values()}
    assert kinds == {str(first): "decode_error", str(second): "not_an_image"}
    assert all(isinstance(f, PhotoFailure) and f.image_id == k for k, f in res.failed.items())
    record = json.loads((tmp_path / "ft" / "finetune.json").read_text())["failed"]
    assert {v["kind"] for v in record.values()} == {"decode_error", "not_an_image"}
    # a finished run read back (and a run written before the kinds, whose record is text) gives failures
    again = finetune([ds], f"hf:{tiny_clip}", tmp_path / "ft", cfg)
    assert again.failed == res.failed
    assert PhotoFailure.from_dict("a.jpg: truncated").kind == "unknown"


def test_embed_cli_exit_status_says_whether_most_images_failed(mixed, tmp_path):
    """`geoscout embed` exits 0 when a few photos fail (8 of 10 embedded) and 1 when most do (1 of 3); the good
    photo is embedded and every failure recorded either way."""
    from typer.testing import CliRunner

    from geoscout.cli import app
    from geoscout.embeddings import EmbeddingStore

    root, df = mixed
    runner = CliRunner()
    few = df.iloc[[0, 8, 9]][["path", "lat", "lon"]].assign(path=lambda d: [str(root / p) for p in d["path"]])
    few.to_csv(tmp_path / "few.csv", index=False)
    for dataset, out, code, embedded in ((root, "most-good", 0, 8), (tmp_path / "few.csv", "most-bad", 1, 1)):
        res = runner.invoke(app, ["embed", str(dataset), "-o", str(tmp_path / out), "--backbone", "effnet-lite0"])
        assert res.exit_code == code, res.output
        store = EmbeddingStore.open(tmp_path / out)
        assert len(store) == embedded and len(store.failures) == 2
    assert "most images could not be embedded (2 of 3)" in res.stderr
