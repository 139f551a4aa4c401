"""The docs' front-end recipe, run as written in headless Chromium.

docs/cli.md, "Signing in from a front end", shows a page signing in as Amazon
documents it for browsers (its JavaScript SDK, ``pkce: true``,
``amazon.Login.authorize`` then ``amazon.Login.retrieveToken``; "Login with
Amazon SDK for JavaScript Reference Guide") and says that moving it to
production changes one ``<script src>``. This test serves that block with
the ``src`` pointed at the emulator's stand-in (and the placeholder client id
filled in), behind ``LWAMiddleware``, and clicks through it: the customer
allows, and the page's ``/api/me`` call is answered for them; the customer
refuses, and no token is asked for. ``test_readme.py`` only parses the block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from support.browser import launch_chromium
from support.doc_blocks import BLOCKS
from support.private import serve_in_thread

from lwa_middleware import LWAMiddleware, get_identity
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator

pytestmark = pytest.mark.browser

AMAZON_SDK = '"https://assets.loginwithamazon.com/sdk/na/login1.js"'
CLIENT_ID_PLACEHOLDER = '"amzn1.application-oa2-client.…"'


def recipe() -> str:
    (block,) = [
        b
        for b in BLOCKS
        if b.path == "docs/cli.md"
        and b.heading == "Signing in from a front end"
        and b.lang == "javascript"
    ]
    # The one line production changes, and the placeholder every reader fills in.
    assert block.code.count(AMAZON_SDK) == 1
    assert block.code.count(CLIENT_ID_PLACEHOLDER) == 1
    return block.code


def recipe_app(lwa: LWAEmulator) -> LWAMiddleware:
    script = recipe().replace(AMAZON_SDK, f'"{lwa.sdk_url}"')
    script = script.replace(CLIENT_ID_PLACEHOLDER, f'"{lwa.client_id}"')
    page = (
        '<!doctype html><html><body><div id="amazon-root"></div>'
        '<button id="LoginWithAmazon">Login with Amazon</button>'
        f"<script>{script}</script></body></html>"
    )

    async def home(request: Request) -> Response:
        return HTMLResponse(page)

    async def me(request: Request) -> Response:
        identity = get_identity(request)
        assert identity is not None
        return JSONResponse({"user_id": identity.user_id, "name": identity.name})

    app = Starlette(routes=[Route("/", home), Route("/callback", home), Route("/api/me", me)])
    return LWAMiddleware(
        app,
        client_id=lwa.client_id,
        api_base_url=lwa.base_url,
        routes={"/": "public", "/callback": "public", "/favicon.ico": "public"},
        default="required",
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture
def page_on(browser: Any, lwa_emulator: LWAEmulator) -> Iterator[tuple[str, Any, list[Any]]]:
    """The recipe's URL, a fresh page on it, and every request the page made."""
    with serve_in_thread(recipe_app(lwa_emulator)) as url:
        lwa_emulator.add_redirect_uri(url + "/callback")
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        requests: list[Any] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda request: requests.append(request))
        try:
            page.goto(url + "/")
            page.wait_for_function("typeof amazon !== 'undefined' && amazon.Login.getClientId()")
            yield url, page, requests
            assert errors == []
        finally:
            context.close()


def to_consent(page: Any, lwa: LWAEmulator) -> None:
    """Click the recipe's button: the SDK sends the browser to LWA's consent page, with PKCE."""
    page.click("#LoginWithAmazon")
    page.wait_for_url(lwa.base_url + "/ap/oa?**")
    assert "code_challenge_method=S256" in page.url


def test_the_recipe_signs_in_through_the_sdk_stand_in(
    page_on: tuple[str, Any, list[Any]], lwa_emulator: LWAEmulator
) -> None:
    url, page, requests = page_on
    to_consent(page, lwa_emulator)
    # SECURITY.md: the PKCE verifier waits in a first-party cookie, SameSite=Lax,
    # for ten minutes at most (Secure too on https; this page is on http).
    # Chromium's own record (Playwright reports a SameSite never set as Lax).
    cdp = page.context.new_cdp_session(page)
    stored = cdp.send("Network.getCookies", {"urls": [url]})["cookies"]
    (verifier,) = [c for c in stored if c["name"] == "lwa_emulator_pkce"]
    assert verifier.get("sameSite") == "Lax"
    assert 0 < verifier["expires"] - time.time() <= 600
    with page.expect_response(url + "/api/me") as answered:
        page.click("#lwa-signin")
    assert answered.value.status == 200
    assert answered.value.json() == {
        "user_id": BUILTIN_CUSTOMERS[0].user_id,
        "name": BUILTIN_CUSTOMERS[0].name,
    }
    token = page.evaluate("sessionStorage.getItem('token')")
    assert token.startswith("Atza|")
    assert page.url == url + "/"  # the code left the address bar
    # The SDK exchanged the code from its frame on LWA's origin: the page
    # itself never fetched the token endpoint, and no CORS was needed.
    (exchange,) = [r for r in requests if r.url == lwa_emulator.token_url]
    assert exchange.frame != page.main_frame
    assert "access-control-allow-origin" not in exchange.response().headers
    assert all(token not in r.url for r in requests)
    assert not [c for c in page.context.cookies(url) if c["name"] == "lwa_emulator_pkce"]


def test_the_recipe_takes_a_refusal_without_asking_for_a_token(
    page_on: tuple[str, Any, list[Any]], lwa_emulator: LWAEmulator
) -> None:
    url, page, requests = page_on
    to_consent(page, lwa_emulator)
    page.click("#lwa-cancel")
    page.wait_for_url(url + "/")
    assert any("error=access_denied" in r.url for r in requests if r.url.startswith(url))
    assert page.evaluate("sessionStorage.getItem('token')") is None
    assert lwa_emulator.calls["token"] == 0
    assert not [r for r in requests if r.url == url + "/api/me"]
