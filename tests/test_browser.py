"""A real browser (Debian's chromium, driven by Playwright) uses the web page end to end.

Starts the real server (uvicorn) on 127.0.0.1 with a small real model, uploads a real photo
through the file picker, waits for the markers on the map, checks the top candidate's text,
and saves a screenshot under ``artifacts/`` as a test artefact.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def server_url(tiny_locator, live_server):
    from geoscout.server import ServerSettings, create_app

    with live_server(create_app(ServerSettings(), locator=tiny_locator)) as srv:
        yield srv.base


BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _keep_artifact(shot: Path) -> None:
    """Copy a screenshot into ./artifacts for people to look at (atomically: two suites may run at once)."""
    ARTIFACTS.mkdir(exist_ok=True)
    tmp = ARTIFACTS / f".{shot.name}.{os.getpid()}"
    shutil.copyfile(shot, tmp)
    os.replace(tmp, ARTIFACTS / shot.name)


def test_drop_a_photo_and_see_the_map(server_url, small_world_sample, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    photo = small_world_sample[0][0]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server_url + "/")
            # expect() polls from Playwright's side: the page's CSP forbids the eval behind wait_for_function
            playwright.expect(page.locator("#model")).to_have_text("tiny-knn", timeout=20000)
            page.wait_for_selector("#map svg path.country", timeout=20000)  # offline outlines drawn
            page.set_input_files("#files", str(photo))
            page.wait_for_selector("#map svg g.marker", timeout=60000)
            markers = page.locator("#map svg g.marker")
            assert markers.count() == 5
            first_row = page.locator("#results tr.candidate").first.inner_text()
            assert first_row.startswith("1") and "%" in first_row
            assert "Done" in page.locator("#status").inner_text()
            # the view fits the candidates: every marker inside it, zoomed in unless they span half the world
            vb = [float(v) for v in page.locator("#map svg").get_attribute("viewBox").split()]
            cxy = [
                (float(c.get_attribute("cx")), float(c.get_attribute("cy")))
                for c in page.locator("#map svg g.marker circle").all()
            ]
            assert all(vb[0] <= x <= vb[0] + vb[2] and vb[1] <= y <= vb[1] + vb[3] for x, y in cxy)
            xs, ys = [x for x, _ in cxy], [y for _, y in cxy]
            if max(xs) - min(xs) < 400 and max(ys) - min(ys) < 200:
                assert vb[2] < 1000
            # a failed upload clears the previous photo's map and table
            bad = tmp_path / "not-a-photo.jpg"
            bad.write_text("not a photo", encoding="utf-8")
            page.set_input_files("#files", str(bad))
            playwright.expect(page.locator("#results .error, #status.error")).to_have_count(1, timeout=60000)
            assert page.locator("#map svg g.marker").count() == 0 and page.locator("#results tr.candidate").count() == 0
            # a bad photo beside a good one: its failure is listed, naming the upload once
            page.set_input_files("#files", [str(photo), str(bad)])
            playwright.expect(page.locator("#results p.error")).to_have_count(1, timeout=60000)
            failure = page.locator("#results p.error").inner_text()
            assert failure.startswith("not-a-photo.jpg: not an image") and failure.count("not-a-photo.jpg") == 1
            bad.unlink()
            # keyboard: the drop zone is focusable and announced as a button
            page.focus("#drop")
            assert page.evaluate("document.activeElement.id") == "drop"
            page.screenshot(path=str(tmp_path / "web_page.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "web_page.png").stat().st_size > 10_000
    _keep_artifact(tmp_path / "web_page.png")


@pytest.mark.slow
def test_the_page_draws_the_text_boxes_and_lists_the_cues(live_server, tiny_locator, small_world_sample, tmp_path):
    """A sign drawn on a real photo: the page outlines the text read on the photo and lists the cues."""
    import copy

    from PIL import Image, ImageDraw, ImageFont

    from geoscout.cues import CueReader, ocr_status

    if ocr_status()["rapidocr"] is None:
        pytest.skip("needs rapidocr-onnxruntime (pip install 'geoscout[cues]')")
    font_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
    if not font_path.is_file():
        pytest.skip("needs fonts-dejavu-core")
    playwright = pytest.importorskip("playwright.sync_api")
    im = Image.open(small_world_sample[0][0]).convert("RGB")
    d = ImageDraw.Draw(im)
    d.rectangle((30, 80, 520, 150), fill=(20, 60, 140))
    d.text((45, 92), "+385 1 234 5678", font=ImageFont.truetype(str(font_path), 36), fill="white")
    photo = tmp_path / "sign.jpg"
    im.save(photo, quality=92)
    cued = copy.copy(tiny_locator)
    cued.cues = CueReader("text")
    from geoscout.server import ServerSettings, create_app

    with live_server(create_app(ServerSettings(), locator=cued)) as srv:
        url = srv.base
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url + "/")
                page.set_input_files("#files", str(photo))
                page.wait_for_selector("#cues li.cue", timeout=120000)
                lines = page.locator("#cues li.cue").all_inner_texts()
                assert any(t.startswith("phone") and "HR" in t for t in lines), lines
                rect = page.locator("#boxes rect.cue-box").first
                x, w = float(rect.get_attribute("x")), float(rect.get_attribute("width"))
                assert x >= 30 and x + w <= 520  # the box sits on the sign, in photo pixels
                page.screenshot(path=str(tmp_path / "web_page_cues.png"), full_page=True)
            finally:
                browser.close()
    _keep_artifact(tmp_path / "web_page_cues.png")
