"""The play mode in a real browser (Debian's chromium driven by Playwright) against the real server on
loopback: five rounds clicked on the offline map, the truth and both scores shown, a total at the end.
Screenshots go to ``artifacts/``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def game_url(shared_data, tiny_locator, live_server):
    from geoscout.server import ServerSettings, create_app

    # panorama strips: photos the tiny model never saw (it is fitted on osv5m-sample and streetview-world)
    app = create_app(ServerSettings(game=str(shared_data("streetview-strips"))), locator=tiny_locator)
    with live_server(app) as srv:
        yield srv.base


def _photo_shown(page) -> None:
    """The round's photo has loaded (polled by Playwright without eval: the page's CSP forbids it)."""
    from playwright.sync_api import expect

    expect(page.locator("#photo")).to_have_js_property("complete", True, timeout=20000)
    assert page.locator("#photo").evaluate("img => img.naturalWidth") > 0


def test_play_five_rounds_in_the_browser(game_url):
    playwright = pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(game_url + "/")
            page.wait_for_selector("#play-link:not([hidden])", timeout=20000)  # the locate page links to the game
            page.click("#play-link a")
            page.wait_for_url(re.compile(r"/game$"))
            page.wait_for_selector("#game-map svg path.country", timeout=20000)  # offline outlines drawn
            _photo_shown(page)
            assert "Round 1 of 5" in page.locator("#game-status").inner_text()
            assert page.locator("#guess").is_disabled()
            for n in range(1, 6):
                box = page.locator("#game-map svg").bounding_box()
                assert box is not None
                # click Europe: x at lon 15 E, y at lat 45 N on the equirectangular map
                page.mouse.click(box["x"] + box["width"] * (195 / 360), box["y"] + box["height"] * (45 / 180))
                lat = float(page.input_value("#guess-lat"))
                lon = float(page.input_value("#guess-lon"))
                assert abs(lat - 45) < 1.5 and abs(lon - 15) < 1.5
                assert page.locator("#game-map svg circle.guess").count() == 1
                page.click("#guess")
                page.wait_for_selector("#round-summary", timeout=60000)
                summary = page.locator("#round-summary").inner_text()
                assert summary.startswith("It was ") and "You: " in summary and "The model: " in summary
                for cls in ("truth", "guess", "model"):
                    assert page.locator(f"#game-map svg circle.{cls}").count() == 1
                assert page.locator("#scores tr.round-row").count() == n
                if n == 1:
                    page.screenshot(path=str(ARTIFACTS / "game_round.png"), full_page=True)
                if n < 5:
                    page.click("#next")
                    expect(page.locator("#game-status")).to_have_text(re.compile(rf"^Round {n + 1} of 5"))
                    _photo_shown(page)
            status = page.locator("#game-status").inner_text()
            assert status.startswith("Game over: you scored") and "of 25,000" in status
            row_scores = [
                int(page.locator("#scores tr.round-row").nth(i).locator("td").nth(2).inner_text().replace(",", ""))
                for i in range(5)
            ]
            total = int(page.locator("#total-player").inner_text().replace(",", ""))
            assert abs(total - sum(row_scores)) <= 3  # each row is rounded on its own
            assert page.locator("#again").is_visible()
            page.screenshot(path=str(ARTIFACTS / "game_over.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "game_round.png").stat().st_size > 10_000
