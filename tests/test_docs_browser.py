"""The API docs page (/docs) renders in a real browser with no network and under the server's CSP.

Debian's chromium (driven by Playwright) loads /docs from the real server on 127.0.0.1 with every request
to another host blocked: Swagger UI must come from the server itself and draw the /v1/locate operation.
"""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def base_url(tiny_locator, live_server):
    pytest.importorskip("swagger_ui_bundle")
    from geoscout.server import ServerSettings, create_app

    with live_server(create_app(ServerSettings(), locator=tiny_locator)) as srv:
        yield srv.base


def test_docs_render_offline_under_the_csp(base_url):
    playwright = pytest.importorskip("playwright.sync_api")
    foreign: list[str] = []
    csp_errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = browser.new_page()

            def route(r):
                if r.request.url.startswith(base_url):
                    r.continue_()
                else:  # a CDN or any other host: the page must not need it
                    foreign.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on(
                "console",
                lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.goto(base_url + "/docs")
            page.wait_for_selector(".swagger-ui .opblock-summary-path", timeout=30000)
            paths = page.locator(".swagger-ui .opblock-summary-path").all_inner_texts()
        finally:
            browser.close()
    assert any("/v1/locate" in t for t in paths), paths
    assert foreign == [], foreign
    assert csp_errors == [], csp_errors
