"""The screenshot helper: new files in a folder are cropped, located and mapped; stop is clean."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from PIL import Image

from geoscout.errors import InvalidInput
from geoscout.watch import DEFAULT_CROP, CropBox, crop_screenshot, watch_folder


def test_crop_box_parse_and_default(small_world_sample):
    assert CropBox.parse("0,0.1,1,0.9") == CropBox(0.0, 0.1, 1.0, 0.9)
    with pytest.raises(InvalidInput):
        CropBox.parse("0,0.5,1")
    with pytest.raises(InvalidInput):
        CropBox(0.5, 0, 0.4, 1)
    shot = Image.new("RGB", (1920, 1080))
    out = crop_screenshot(shot, DEFAULT_CROP)
    assert out.size == (1920, round(0.78 * 1080) - round(0.08 * 1080))


def test_watch_locates_new_screenshots(tiny_locator, small_world_sample, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "old.png").write_bytes(b"already here")  # existing files are ignored by default
    map_path = tmp_path / "map.html"
    stop = threading.Event()
    seen = []
    t = threading.Thread(
        target=lambda: seen.extend(
            watch_folder(
                folder, tiny_locator, interval_s=0.05, settle_s=0.1, map_path=map_path, stop=stop, max_events=2
            )
        ),
        daemon=True,
    )
    t.start()
    time.sleep(0.2)
    # a 16:9 "screenshot": a real photo with game UI bars above and below
    photo = Image.open(small_world_sample[0][0]).convert("RGB").resize((1280, 504))
    shot = Image.new("RGB", (1280, 720), (20, 20, 20))
    shot.paste(photo, (0, 58))
    shot.save(tmp_path / "tmp.png")
    shutil.move(str(tmp_path / "tmp.png"), folder / "shot1.png")
    (folder / "shot2.jpg").write_bytes(b"not an image")
    t.join(timeout=60)
    stop.set()
    assert not t.is_alive()
    names = {p.image_id: p for p in seen}
    assert set(names) == {"shot1.png", "shot2.jpg"}
    assert names["shot1.png"].ok and not names["shot2.jpg"].ok
    page = map_path.read_text()
    assert "<svg" in page and '<meta http-equiv="refresh" content="3">' in page  # the page reloads itself
    assert page.count('src="data:image/jpeg;base64,') == 1 and 'alt="' + str(folder / "shot1.png") in page


def test_watch_rejects_missing_folder(tiny_locator, tmp_path):
    with pytest.raises(InvalidInput, match="not a folder"):
        watch_folder(tmp_path / "nope", tiny_locator)


def test_ctrl_c_while_the_model_loads_stops_quietly(monkeypatch, tmp_path):
    """Ctrl-C during the (seconds-long) model load ends `geoscout watch` with "stopped", not a traceback."""
    from typer.testing import CliRunner

    import geoscout.locator
    from geoscout.cli import app

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(geoscout.locator, "load_model", interrupted)
    result = CliRunner().invoke(app, ["watch", str(tmp_path)])
    assert result.exit_code == 130 and "stopped" in result.output
    assert not isinstance(result.exception, KeyboardInterrupt)


def _screenshot_bytes(photo_path) -> bytes:
    import io

    buf = io.BytesIO()
    Image.open(photo_path).convert("RGB").resize((1280, 720)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _watch_in_thread(folder, locator, **kw):
    seen: list = []
    # include_existing: the folder starts empty, so a file the test creates before the watcher's first
    # look is still new to it (no race on when the thread starts)
    t = threading.Thread(
        target=lambda: seen.extend(watch_folder(folder, locator, include_existing=True, **kw)), daemon=True
    )
    t.start()
    return t, seen


def test_a_screenshot_written_in_slow_chunks_is_located_once_complete(tiny_locator, small_world_sample, tmp_path):
    """The writer pauses far longer than the settle time: the half-written file fails to decode, the
    watcher says so and waits; once the writer finishes, the same file is located (not lost)."""
    folder = tmp_path / "shots"
    folder.mkdir()
    data = _screenshot_bytes(small_world_sample[0][1])
    saw_partial, stop = threading.Event(), threading.Event()
    partial_reasons, results = [], []

    def incomplete(path, reason):
        partial_reasons.append((path.name, reason))
        saw_partial.set()

    t, seen = _watch_in_thread(
        folder,
        tiny_locator,
        interval_s=0.02,
        settle_s=0.05,
        give_up_s=3600,  # this test never waits for a give-up: the writer controls when the file is whole
        on_incomplete=incomplete,
        on_result=lambda p, pred: results.append(pred),
        stop=stop,
        max_events=1,
    )
    with open(folder / "slow.jpg", "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        assert saw_partial.wait(120), "the watcher never looked at the partial file"  # the writer's pause
        fh.write(data[len(data) // 2 :])
    t.join(timeout=120)
    stop.set()
    assert not t.is_alive()
    assert partial_reasons and partial_reasons[0][0] == "slow.jpg"
    assert "truncated" in partial_reasons[0][1]
    assert [p.image_id for p in seen] == ["slow.jpg"] and seen[0].ok, seen
    assert results == seen  # reported once, and only when whole


def test_a_broken_file_that_stays_broken_is_reported_once(tiny_locator, small_world_sample, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    data = _screenshot_bytes(small_world_sample[0][1])
    gave_up, stop = threading.Event(), threading.Event()
    results = []

    def on_result(path, pred):
        results.append(pred)
        if path.name == "broken.jpg":
            gave_up.set()

    t, _ = _watch_in_thread(
        folder,
        tiny_locator,
        interval_s=0.02,
        settle_s=0.05,
        give_up_s=0.3,
        on_result=on_result,
        stop=stop,
        max_events=2,
    )
    (folder / "broken.jpg").write_bytes(data[: len(data) // 3])
    assert gave_up.wait(120)
    # many more rounds pass before the next screenshot settles: the broken one must not be reported again
    (folder / "next.jpg").write_bytes(data)
    t.join(timeout=120)
    stop.set()
    assert not t.is_alive()
    assert [p.image_id for p in results] == ["broken.jpg", "next.jpg"]
    assert "truncated" in results[0].error.message and "unchanged for 0.3 s" in results[0].error.message
    assert results[0].error.kind == "decode_error"
    assert results[1].ok
