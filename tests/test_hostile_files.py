"""Hostile and careless files: named pipes, devices, symlink loops, and CSVs with bad rows.

Every read of a user's file goes through one helper (``geoscout._io.open_user_file``) that refuses
anything but a regular file before reading; a pipe must never hang and ``/dev/zero`` must never
be read. The tests carry a timeout so a hang fails instead of blocking the suite.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from geoscout._io import check_user_file, open_user_file, read_user_file
from geoscout.data.importers import import_csv, import_exif_folder
from geoscout.errors import InvalidInput
from geoscout.imageio import load_image

pytestmark = pytest.mark.timeout(120)
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")


@pytest.fixture()
def photos(shared_data, tmp_path) -> list[Path]:
    import pandas as pd

    root = shared_data("im2gps")
    df = pd.read_csv(root / "manifest.csv").head(3)
    out = []
    for i, rel in enumerate(df["path"]):
        dst = tmp_path / f"photo{i}.jpg"
        shutil.copyfile(root / rel, dst)
        out.append(dst)
    return out


@needs_fifo
def test_the_shared_helper_refuses_pipes_devices_folders_loops_and_big_files(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # nobody writes to it: a plain open() would block forever
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1000)
    cases = {
        fifo: r"named pipe \(FIFO\)",
        Path("/dev/zero"): "is a device",
        tmp_path: "is a folder",
        loop: "symlink loop",
        tmp_path / "nope.jpg": "file not found",
    }
    for path, words in cases.items():
        for call in (
            open_user_file,
            lambda p: read_user_file(p, max_bytes=10),
            check_user_file,
        ):
            with pytest.raises(InvalidInput, match=words) as err:
                call(path)
            assert str(err.value).startswith(f"{path}: ")
    with pytest.raises(InvalidInput, match="over the 999-byte limit"):
        read_user_file(big, max_bytes=999)
    assert read_user_file(big, max_bytes=1000) == b"x" * 1000


@needs_fifo
def test_decoding_a_pipe_or_a_device_fails_at_once(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match=r"pipe\.jpg: is a named pipe"):
        load_image(fifo)
    with pytest.raises(InvalidInput, match="/dev/zero: is a device"):
        load_image("/dev/zero")


@needs_fifo
@pytest.mark.timeout(900)  # the session's tiny model may be built inside this test
def test_locate_a_batch_with_a_pipe_and_a_loop(tiny_locator, small_world_sample, tmp_path):
    from geoscout.cli.locate_cmd import _expand

    good = tmp_path / "good.jpg"
    shutil.copyfile(small_world_sample[0][0], good)
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    inputs = _expand([tmp_path], recursive=False)  # the pipe and the loop are listed, to be reported
    assert sorted(p.name for p in inputs) == ["good.jpg", "loop.jpg", "pipe.jpg"]
    preds = {Path(p.image_id).name: p for p in tiny_locator.locate([str(p) for p in inputs], top_k=1)}
    assert preds["good.jpg"].error is None and preds["good.jpg"].candidates
    assert "is a named pipe" in preds["pipe.jpg"].error.message and preds["pipe.jpg"].error.kind == "not_a_file"
    assert "symlink loop" in preds["loop.jpg"].error.message and preds["loop.jpg"].error.kind == "unreadable"


@needs_fifo
def test_import_csv_with_a_pipe_and_dev_zero_rows(photos, tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    csv = tmp_path / "photos.csv"
    csv.write_text(
        "path,lat,lon\n"
        f"{photos[0].name},45.0,15.0\n"
        "pipe.jpg,45.1,15.1\n"
        "/dev/zero,45.2,15.2\n"
        f"{photos[1].name},45.3,15.3\n"
    )
    report = import_csv(csv)
    assert report.n_imported == 2
    by_row = {p.row: p for p in report.problems}
    assert set(by_row) == {3, 4}
    assert "named pipe" in by_row[3].reason and by_row[3].kind == "not_a_file"
    assert "is a device" in by_row[4].reason and by_row[4].kind == "not_a_file"


@needs_fifo
def test_import_folder_reports_pipes_and_symlink_loops(photos, tmp_path):
    folder = photos[0].parent
    os.mkfifo(folder / "pipe.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    report = import_exif_folder(folder)
    reasons = {p.path: p.reason for p in report.problems}
    assert "named pipe" in reasons["pipe.jpg"]
    assert "symlink loop" in reasons["loop.jpg"]


def test_one_bad_row_does_not_refuse_the_csv(photos, tmp_path):
    csv = tmp_path / "photos.csv"
    lines = [
        b"path,lat,lon,note",
        f"{photos[0].name},45.0,15.0,ok".encode(),
        f"{photos[1].name},45.1,15.1,caf\xe9".encode("latin-1"),  # not UTF-8
        b"ragged.jpg,45.2",  # too few fields
        f"{photos[2].name},NaN,15.3,literal".encode(),  # a literal NaN latitude
        b'quoted.jpg,45.4,15.4,"never closed',  # unterminated quote
        f'{photos[1].name},45.5,15.5,"a note\nover two lines"'.encode(),  # legal multi-line field
    ]
    csv.write_bytes(b"\n".join(lines) + b"\n")
    report = import_csv(csv)
    assert report.n_imported == 2  # row 2 and the multi-line row 7 (same photo as row 3, which was bad)
    by_row = {p.row: p for p in report.problems}
    assert by_row[3].kind == "bad_row" and "not UTF-8" in by_row[3].reason
    assert by_row[4].kind == "bad_row" and "2 fields where the header has 4" in by_row[4].reason
    assert by_row[5].kind == "bad_coordinates" and "'NaN' is not a number" in by_row[5].reason
    assert by_row[6].kind == "bad_row" and "unterminated quote" in by_row[6].reason
    assert set(by_row) == {3, 4, 5, 6}
    assert report.total == 6
    notes = set(report.dataset.frame["note"])
    assert notes == {"ok", "a note\nover two lines"}
    with pytest.raises(InvalidInput, match=r"photos\.csv: line 3 has bytes that are not UTF-8"):
        import_csv(csv, strict=True)


def test_import_cli_strict_flag(photos, tmp_path):
    from typer.testing import CliRunner

    from geoscout.cli import app

    csv = tmp_path / "photos.csv"
    csv.write_text(f"path,lat,lon\n{photos[0].name},45.0,15.0\nragged.jpg\n")
    res = CliRunner().invoke(app, ["import", str(csv), "-o", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    assert "1 of 2 image(s) imported" in res.output and "bad_row" in res.output
    res = CliRunner().invoke(app, ["import", str(csv), "-o", str(tmp_path / "ds2"), "--strict"])
    assert isinstance(res.exception, InvalidInput)  # `geoscout` prints it as "error: ..." and exits 2
    assert "photos.csv: line 3 has 1 fields where the header has 3" in str(res.exception)


def test_evaluate_skips_bad_prediction_lines_and_strict_refuses(shared_data, tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from geoscout.cli import app

    root = shared_data("im2gps")
    m = pd.read_csv(root / "manifest.csv").head(20)
    lines = [
        json.dumps({"image_id": p, "candidates": [{"lat": la, "lon": lo}]})
        for p, la, lo in zip(m["path"], m["lat"], m["lon"])
    ]
    lines.insert(5, '{"image_id": "broken", "candidates": [')  # one bad line among 20 good ones
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "-p", str(preds), "-t", str(root), "--no-places", "-f", "json"])
    assert res.exit_code == 0, res.output
    assert f"skipped 1 malformed line(s) of {preds}" in res.output and "line 6: not valid JSON" in res.output
    report = json.loads(res.stdout[res.stdout.index("{") :])
    assert report["metrics"]["n_predictions"] == 20 and report["metrics"]["n_bad_prediction_rows"] == 1
    assert report["metrics"]["acc@1km"] > 0  # the 20 readable lines were scored (exact answers)
    res = runner.invoke(app, ["evaluate", "-p", str(preds), "-t", str(root), "--no-places", "--strict"])
    assert res.exit_code == 2 and "line 6: not valid JSON" in res.output


def _heic_bytes(size=(96, 64)) -> bytes:
    import io

    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    im = Image.new("RGB", size, (30, 120, 200))
    buf = io.BytesIO()
    pillow_heif.from_pillow(im).save(buf, quality=90)
    return buf.getvalue()


def test_heic_photos_decode_with_the_heic_extra(tmp_path):
    path = tmp_path / "phone.heic"
    path.write_bytes(_heic_bytes())
    im = load_image(path)
    assert im.size == (96, 64) and im.mode == "RGB"
    r, g, b = im.getpixel((48, 32))
    assert abs(r - 30) < 12 and abs(g - 120) < 12 and abs(b - 200) < 12  # the real colour, decoded by libheif


def test_heic_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
    from PIL import Image

    import geoscout.imageio as imageio

    path = tmp_path / "phone.heic"
    path.write_bytes(_heic_bytes())
    # as without pillow-heif: Pillow knows no HEIF opener and the extra cannot be imported
    monkeypatch.setattr(Image, "ID", [i for i in Image.ID if i != "HEIF"])
    monkeypatch.setattr(imageio, "_heif_support", lambda: False)
    with pytest.raises(
        InvalidInput, match=r"HEIC/HEIF photo: install the optional extra with pip install 'geoscout\[heic\]'"
    ):
        load_image(path)


def test_no_decompression_bomb_warning_leaks(photos, tmp_path, monkeypatch):
    """Pillow warns on images over its own pixel threshold; our max_pixels check replaces that warning."""
    import warnings

    from PIL import Image

    from geoscout.backbones import create_backbone

    with Image.open(photos[0]) as im:
        w, h = im.size
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", w * h * 2 // 3)  # this photo is in Pillow's warning range now
    backbone = create_backbone("effnet-lite0")
    csv = tmp_path / "one.csv"
    csv.write_text(f"path,lat,lon\n{photos[0].name},45.0,15.0\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_image(photos[0])
        backbone.load_image(str(photos[0]))
        assert import_csv(csv).n_imported == 1
    assert not [c for c in caught if issubclass(c.category, Image.DecompressionBombWarning)], caught


def test_embed_a_csv_records_every_bad_row_in_the_store_failures(photos, tmp_path):
    import warnings

    from geoscout.embeddings import embed_dataset

    rows = [f"{photos[0].name},45.0,15.0", f"{photos[1].name},45.1,15.1"]
    rows += [f"missing{i}.jpg,45.0,15.0" for i in range(9)] + [f"{photos[2].name},NaN,15.0", "x.jpg,1"]
    csv = tmp_path / "set.csv"
    csv.write_text("path,lat,lon\n" + "\n".join(rows) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no raw warning on the way
        store = embed_dataset(csv, "effnet-lite0", tmp_path / "store", progress=False)
    assert len(store) == 2
    f = store.failures
    assert len(f) == 11  # all 11 bad rows, not the first few
    assert set(f["image_id"]) == {f"row {n}" for n in range(4, 15)}
    assert any("not a number" in r for r in f["reason"]) and any("bad_row" in r for r in f["reason"])
    store = embed_dataset(csv, "effnet-lite0", tmp_path / "store", progress=False)  # a re-run adds nothing
    assert len(store) == 2 and len(store.failures) == 11
