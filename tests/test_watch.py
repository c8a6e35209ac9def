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
    assert map_path.is_file() and "<svg" in map_path.read_text()


def test_watch_rejects_missing_folder(tiny_locator, tmp_path):
    with pytest.raises(InvalidInput, match="not a folder"):
        watch_folder(tmp_path / "nope", tiny_locator)


def test_ctrl_c_while_the_model_loads_stops_quietly(monkeypatch, tmp_path):
    """Ctrl-C during the (seconds-long) model load ends `geoscout watch` with "stopped", not a traceback."""
    from typer.testing import CliRunner

    import geoscout.locate
    from geoscout.cli import app

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(geoscout.locate, "load_model", interrupted)
    result = CliRunner().invoke(app, ["watch", str(tmp_path)])
    assert result.exit_code == 130 and "stopped" in result.output
    assert not isinstance(result.exception, KeyboardInterrupt)
