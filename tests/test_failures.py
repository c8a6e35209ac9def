"""Typed failures: each kind made once, from a real bad input, where it fails, and carried unchanged
through the library (Locator.locate), the CLI's JSON output and the server's response."""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from geoscout.cli import app
from geoscout.errors import FAILURE_KINDS, InvalidInput, PhotoFailure, UnreadableInput, failure_of
from geoscout.imageio import DEFAULT_MAX_PIXELS, load_image


def _example_jpeg() -> bytes:
    """scikit-learn's sample photo (installed with geoscout), as JPEG bytes."""
    import sklearn

    return (Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg").read_bytes()


def _pixel_bomb() -> bytes:
    """A real PNG of 8000 x 6000 = 48 M pixels (over the 40 M default) that compresses to a few KB."""
    buf = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buf, format="PNG")
    assert DEFAULT_MAX_PIXELS < 8000 * 6000
    return buf.getvalue()


#: file name -> the failure kind it must give (None: a good photo)
EXPECTED = {
    "good.jpg": None,
    "truncated.jpg": "decode_error",
    "text.jpg": "not_an_image",
    "empty.jpg": "empty",
    "huge.png": "too_large",
    "missing.jpg": "missing",
    "pipe.jpg": "not_a_file",
}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    """One real input per failure kind (and a good photo), in one folder."""
    root = tmp_path_factory.mktemp("bad")
    jpeg = _example_jpeg()
    (root / "good.jpg").write_bytes(jpeg)
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (root / "text.jpg").write_text("this is a shopping list, not a photo\n")
    (root / "empty.jpg").write_bytes(b"")
    (root / "huge.png").write_bytes(_pixel_bomb())
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "pipe.jpg")
    return {name: root / name for name in EXPECTED}


@pytest.fixture(scope="module")
def lite():
    from geoscout.locator import load_model

    return load_model("geoscout-lite")


def _expected(bad_inputs: dict[str, Path]) -> dict[str, str | None]:
    if sys.platform == "win32":  # no FIFOs
        return {k: v for k, v in EXPECTED.items() if k != "pipe.jpg"}
    return dict(EXPECTED)


def test_the_decoder_makes_each_failure_once_with_its_kind(bad_inputs):
    for name, kind in _expected(bad_inputs).items():
        path = str(bad_inputs[name])
        if kind is None:
            assert load_image(path).size == (640, 427)
            continue
        with pytest.raises(UnreadableInput) as info:
            load_image(path)
        f = info.value.failure
        assert (f.kind, f.source) == (kind, path), name
        assert str(info.value) == f.message == f"{path}: {f.reason}"
        assert not f.reason.startswith(path)  # the reason is words, the source is separate
        assert isinstance(info.value, InvalidInput)  # callers catching InvalidInput still do


def test_locate_returns_one_typed_failure_per_bad_photo_and_answers_the_good_one(lite, bad_inputs):
    expected = _expected(bad_inputs)
    paths = [str(bad_inputs[n]) for n in expected]
    preds = lite.locate(paths, top_k=3)
    assert [p.image_id for p in preds] == paths
    for p, (name, kind) in zip(preds, expected.items()):
        if kind is None:
            assert p.ok and p.error is None and len(p.candidates) == 3
            continue
        assert not p.ok and not p.candidates, name
        f = p.error
        assert isinstance(f, PhotoFailure) and f.kind == kind, (name, f)
        assert f.source == f.image_id == p.image_id == str(bad_inputs[name])
    by_kind = {p.error.kind: p.error for p in preds if p.error}
    assert "no such file" in by_kind["missing"].reason or "not found" in by_kind["missing"].reason
    assert "pixels exceeds the limit" in by_kind["too_large"].reason


def test_in_memory_photos_are_named_by_the_callers_id(lite, bad_inputs):
    data = bad_inputs["truncated.jpg"].read_bytes()
    (pred,) = lite.locate([data], ids=["upload-7.jpg"])
    assert pred.error == PhotoFailure("decode_error", pred.error.reason, "upload-7.jpg", "upload-7.jpg")
    assert "bytes>" not in pred.error.message


def test_a_panorama_whose_views_all_fail_keeps_their_common_kind(lite, bad_inputs):
    (pred,) = lite.locate([str(bad_inputs["missing.jpg"]), str(bad_inputs["missing.jpg"])], panorama=True)
    assert pred.error.kind == "missing" and pred.error.image_id == "panorama"
    (pred,) = lite.locate([str(bad_inputs["missing.jpg"]), str(bad_inputs["text.jpg"])], panorama=True)
    assert pred.error.kind == "unreadable" and "missing.jpg" in pred.error.message and "text.jpg" in pred.error.message


def test_cli_json_carries_error_text_and_kind_and_the_table_names_each_once(bad_inputs):
    expected = _expected(bad_inputs)
    paths = [str(bad_inputs[n]) for n in expected]
    runner = CliRunner()
    res = runner.invoke(app, ["locate", *paths, "-f", "json", "--cues", "none"])
    assert res.exit_code == 1, res.output  # most inputs failed: not a success, though every answer is written
    got = {Path(d["image_id"]).name: d for d in json.loads(res.stdout)}
    for name, kind in expected.items():
        d = got[name]
        assert d["error_kind"] == kind, (name, d)
        if kind is not None:
            assert d["error"].startswith(f"{bad_inputs[name]}: ") and not d["candidates"]
            assert d["error_source"] == str(bad_inputs[name])
    assert f"{len(expected) - 1} of {len(expected)} inputs could not be read" in res.stderr
    table = runner.invoke(app, ["locate", paths[1], "--cues", "none"])
    assert table.exit_code == 1  # every input failed
    assert table.stdout.count("truncated.jpg") == 1 and "truncated or corrupt" in table.stdout


def test_server_answers_each_kind_in_the_predictions_and_in_an_all_failed_error(lite, bad_inputs):
    from fastapi.testclient import TestClient

    from geoscout.server import ServerSettings, create_app

    uploads = ["good.jpg", "truncated.jpg", "text.jpg", "huge.png"]
    files = [
        ("files", (n, bad_inputs[n].read_bytes(), "image/png" if n.endswith("png") else "image/jpeg")) for n in uploads
    ]
    settings = ServerSettings(max_files=4)
    with TestClient(create_app(settings, locator=lite)) as client:
        r = client.post("/v1/locate", files=files)
        assert r.status_code == 200, r.text
        preds = {p["image_id"]: p for p in r.json()["predictions"]}
        assert {n: preds[n]["error_kind"] for n in uploads} == {n: EXPECTED[n] for n in uploads}
        assert preds["truncated.jpg"]["error"].startswith("truncated.jpg: ")
        r = client.post("/v1/locate", files=files[1:])
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == "unreadable_images"
        assert [(f["image_id"], f["kind"]) for f in err["failures"]] == [
            ("truncated.jpg", "decode_error"),
            ("text.jpg", "not_an_image"),
            ("huge.png", "too_large"),
        ]
        assert err["message"] == "; ".join(f["message"] for f in err["failures"])


def test_failure_of_and_the_exception_travel_between_processes():
    e = UnreadableInput.of("a.jpg", "empty file (0 bytes)", "empty")
    back = pickle.loads(pickle.dumps(e))  # Ray ships exceptions by pickling
    assert isinstance(back, UnreadableInput) and back.failure == e.failure and str(back) == str(e)
    assert failure_of(e, image_id="x").image_id == "x"
    assert failure_of(InvalidInput("cannot split"), source="s.jpg").kind == "invalid"
    assert failure_of(MemoryError(), source="s.jpg").kind == "out_of_memory"
    assert failure_of(RuntimeError("boom")).kind == "internal"
    with pytest.raises(ValueError, match="choose one of"):
        PhotoFailure("exploded", "no")  # type: ignore[arg-type]
    assert set(EXPECTED.values()) - {None} <= set(FAILURE_KINDS)
