"""Click through the demo in headless Chromium (Playwright driving Debian's chromium).

Never runs ``playwright install``: it uses ``/usr/bin/chromium``. Without it
the test is skipped, or fails when ``CI`` is set, so CI cannot go green by
silently not running it. Set ``LWA_ARTIFACTS`` to a directory to keep the
screenshots.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lwa_middleware.demo import build_demo_app, serve_in_thread
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (required when CI is set)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install 'lwa-middleware[test]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _keep(screenshot: Path) -> None:
    artifacts = os.environ.get("LWA_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artifacts) / screenshot.name)


def _sign_in(page: Any, lwa: LWAEmulator, customer: int, postal_code: bool) -> None:
    page.click("#login")
    page.wait_for_url(lwa.base_url + "/ap/oa?**")
    page.check(f'input[name="customer"][value="{customer}"]')
    page.check('input[name="scope"][value="profile"]')
    if postal_code:
        page.check('input[name="scope"][value="postal_code"]')
    else:
        page.uncheck('input[name="scope"][value="postal_code"]')
    page.click("#lwa-signin")


def test_click_through_the_demo(browser: Any, lwa_emulator: LWAEmulator, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    app = build_demo_app(lwa_emulator)
    with serve_in_thread(app) as url:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10_000)
        expect.set_options(timeout=10_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            # A sign-in answer the page did not ask for is ignored.
            page.goto(url + "/callback#access_token=Atza%7Cforged&state=guess")
            expect(page.locator("#message")).to_contain_text("did not ask for")
            assert "access_token" not in page.url
            expect(page.locator("#login")).to_be_visible()
            assert lwa_emulator.calls["tokeninfo"] == 0

            # First sign-in: Grace Hopper, without sharing her postal code.
            grace = BUILTIN_CUSTOMERS[1]
            _sign_in(page, lwa_emulator, customer=1, postal_code=False)
            expect(page.locator("#name")).to_have_text(grace.name)
            expect(page.locator("#email")).to_have_text(grace.email)
            expect(page.locator("#postal-code")).to_have_text("(not shared)")
            expect(page.locator("#scopes")).to_have_text("profile")
            # The token left the address bar as soon as it was read.
            assert page.url == url + "/"
            token = page.evaluate("sessionStorage.getItem('lwa-demo:token')")
            assert token.startswith("Atza|")
            assert lwa_emulator.customer_for(token) == grace

            page.click("#shipping")
            result = page.locator("#shipping-result")
            expect(result).to_contain_text("403 Forbidden")
            expect(result).to_contain_text("insufficient_scope")
            expect(result).to_contain_text("needs the “postal_code” scope")
            expect(result).to_contain_text('scope="postal_code"')
            expect(page.locator(".stat-lookups")).to_have_text("1")

            screenshot = tmp_path / "demo.png"
            page.screenshot(path=str(screenshot), full_page=True)
            _keep(screenshot)
            assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert screenshot.stat().st_size > 10_000

            # Log out, then sign in again as Ada, sharing the postal code.
            page.click("#logout")
            expect(page.locator("#login")).to_be_visible()
            assert page.evaluate("sessionStorage.getItem('lwa-demo:token')") is None

            ada = BUILTIN_CUSTOMERS[0]
            _sign_in(page, lwa_emulator, customer=0, postal_code=True)
            expect(page.locator("#name")).to_have_text(ada.name)
            expect(page.locator("#postal-code")).to_have_text(ada.postal_code)
            page.click("#shipping")
            expect(result).to_contain_text("200 OK")
            expect(result).to_contain_text(f"Ships to {ada.postal_code}")
            # One LWA lookup per sign-in; the other calls were cache hits.
            expect(page.locator(".stat-lookups")).to_have_text("2")
            assert lwa_emulator.calls["tokeninfo"] == 2

            second = tmp_path / "demo-shipping.png"
            page.screenshot(path=str(second), full_page=True)
            _keep(second)
            assert errors == []
        finally:
            context.close()
