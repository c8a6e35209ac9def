"""A real browser (Debian's chromium, driven by Playwright) uses the web page end to end.

Starts the real server (uvicorn) on 127.0.0.1 with a small real model, uploads a real photo
through the file picker, waits for the markers on the map, checks the top candidate's text,
and saves a screenshot under ``artifacts/`` as a test artefact.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tiny_locator):
    import uvicorn

    from geoscout.server import ServerSettings, create_app

    port = _free_port()
    config = uvicorn.Config(
        create_app(ServerSettings(), locator=tiny_locator), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(timeout=10)


def test_drop_a_photo_and_see_the_map(server_url, small_world_sample):
    playwright = pytest.importorskip("playwright.sync_api")
    photo = small_world_sample[0][0]
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
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
            # keyboard: the drop zone is focusable and announced as a button
            page.focus("#drop")
            assert page.evaluate("document.activeElement.id") == "drop"
            page.screenshot(path=str(ARTIFACTS / "web_page.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "web_page.png").stat().st_size > 10_000
