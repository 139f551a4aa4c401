"""Click through the demo in headless Chromium (Playwright driving Debian's chromium).

The page signs in as Amazon documents it for browsers: through LWA's
JavaScript SDK (the emulator's stand-in, ``/sdk/login1.js``) with
``pkce: true``, ``amazon.Login.authorize`` and ``amazon.Login.retrieveToken``
("Login with Amazon SDK for JavaScript Reference Guide",
developer.amazon.com/docs/login-with-amazon/javascript-sdk-reference.html).
A normal sign-in, a denied consent, a tampered ``state`` (refused by the
page) and a replayed code (refused by the emulator).  The page never calls
the token endpoint itself, and the endpoint sends no CORS headers: Amazon
documents none.

Never runs ``playwright install``: it uses ``/usr/bin/chromium``. Without it
the test is skipped, or fails when ``CI`` is set, so CI cannot go green by
silently not running it. Set ``LWA_ARTIFACTS`` to a directory to keep the
screenshots.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from support.browser import launch_chromium
from support.private import build_demo_app, serve_in_thread

from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator

pytestmark = pytest.mark.browser



@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def _keep(screenshot: Path) -> None:
    artifacts = os.environ.get("LWA_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artifacts) / screenshot.name)


@pytest.fixture
def demo(browser: Any, lwa_emulator: LWAEmulator) -> Iterator[tuple[str, Any, list[Any]]]:
    """The demo's URL, a fresh page on it, and every request the page made."""
    from playwright.sync_api import expect

    app = build_demo_app(lwa_emulator)
    with serve_in_thread(app) as url:
        lwa_emulator.add_redirect_uri(url + "/callback")
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10_000)
        expect.set_options(timeout=10_000)
        errors: list[str] = []
        requests: list[Any] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda request: requests.append(request))
        try:
            yield url, page, requests
            assert errors == []
        finally:
            context.close()


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


def _storage(page: Any, key: str) -> Any:
    return page.evaluate(f"sessionStorage.getItem('lwa-demo:{key}')")


# Where the SDK stand-in keeps the PKCE verifier between authorize and
# retrieveToken: a first-party cookie, as Amazon's SDK needs cookies on.
_PKCE_COOKIE = "lwa_emulator_pkce"


def _cookies(page: Any) -> str:
    return str(page.evaluate("document.cookie"))


def _token_requests(requests: list[Any], lwa: LWAEmulator) -> list[Any]:
    return [r for r in requests if r.url == lwa.token_url and r.method == "POST"]


def test_click_through_the_demo(
    demo: tuple[str, Any, list[Any]], lwa_emulator: LWAEmulator, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    url, page, requests = demo
    # A sign-in answer the page did not ask for is ignored, and not exchanged.
    page.goto(url + "/callback?code=forged&state=guess")
    expect(page.locator("#message")).to_contain_text("did not ask for")
    assert page.url == url + "/"
    expect(page.locator("#login")).to_be_visible()
    assert lwa_emulator.calls["token"] == 0
    assert lwa_emulator.calls["tokeninfo"] == 0

    # First sign-in: Grace Hopper, without sharing her postal code.
    grace = BUILTIN_CUSTOMERS[1]
    _sign_in(page, lwa_emulator, customer=1, postal_code=False)
    expect(page.locator("#name")).to_have_text(grace.name)
    expect(page.locator("#email")).to_have_text(grace.email)
    expect(page.locator("#postal-code")).to_have_text("(not shared)")
    expect(page.locator("#scopes")).to_have_text("profile")
    # The code left the address bar as soon as it was read.
    assert page.url == url + "/"
    token = _storage(page, "token")
    assert token.startswith("Atza|")
    assert lwa_emulator.customer_for(token) == grace
    # State and verifier are single-use: gone once the answer came back.
    assert _storage(page, "state") is None
    assert _PKCE_COOKIE not in _cookies(page)

    # The page loaded the SDK from the emulator (one <script src> to change
    # for production) and asked for exactly what the demo requests.
    assert any(r.url == lwa_emulator.sdk_url for r in requests)
    authorize = next(r for r in requests if r.url.startswith(lwa_emulator.authorize_url + "?"))
    query = parse_qs(urlsplit(authorize.url).query)
    assert query["scope"] == ["profile postal_code"]
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [url + "/callback"]
    # The browser's side of PKCE: S256 challenge out, verifier to the token
    # endpoint from the SDK's frame on LWA's origin (not from the page: no
    # cross-origin fetch, no CORS), no secret, token never in a URL.
    (exchange,) = _token_requests(requests, lwa_emulator)
    assert exchange.frame.url.startswith(lwa_emulator.base_url + "/sdk/relay?")
    assert exchange.frame != page.main_frame
    form = parse_qs(exchange.post_data)
    assert set(form) == {"grant_type", "code", "redirect_uri", "client_id", "code_verifier"}
    assert form["grant_type"] == ["authorization_code"]
    assert form["redirect_uri"] == [url + "/callback"]
    assert "authorization" not in exchange.headers
    assert "access-control-allow-origin" not in exchange.response().headers
    assert form["code_verifier"][0] not in authorize.url
    assert all(token not in r.url for r in requests)
    api = [r for r in requests if r.url == url + "/api/me"]
    assert api
    assert api[0].headers["authorization"] == f"Bearer {token}"

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
    assert _storage(page, "token") is None

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
    assert lwa_emulator.calls["token"] == 2

    # The SDK's profile call answers in the shape of Amazon's reference.
    profile = page.evaluate(
        "token => new Promise((done) => amazon.Login.retrieveProfile(token, done))",
        _storage(page, "token"),
    )
    assert profile == {
        "success": True,
        "profile": {
            "CustomerId": ada.user_id,
            "Name": ada.name,
            "PrimaryEmail": ada.email,
            "PostalCode": ada.postal_code,
        },
    }

    second = tmp_path / "demo-shipping.png"
    page.screenshot(path=str(second), full_page=True)
    _keep(second)


def test_denied_consent(demo: tuple[str, Any, list[Any]], lwa_emulator: LWAEmulator) -> None:
    from playwright.sync_api import expect

    url, page, requests = demo
    page.goto(url + "/")
    page.click("#login")
    page.wait_for_url(lwa_emulator.base_url + "/ap/oa?**")
    # The SDK sent the browser there, with PKCE.
    assert any(r.url == lwa_emulator.sdk_url for r in requests)
    assert "code_challenge_method=S256" in page.url
    page.click("#lwa-cancel")
    expect(page.locator("#message")).to_contain_text("Sign-in did not complete: access_denied")
    assert page.url == url + "/"
    expect(page.locator("#login")).to_be_visible()
    assert _storage(page, "token") is None
    assert lwa_emulator.calls["token"] == 0


def test_tampered_state_is_refused_by_the_page(
    demo: tuple[str, Any, list[Any]], lwa_emulator: LWAEmulator
) -> None:
    from playwright.sync_api import expect

    url, page, requests = demo
    page.goto(url + "/")
    page.click("#login")
    page.wait_for_url(lwa_emulator.base_url + "/ap/oa?**")
    # The answer comes back with a state this tab did not send.
    page.eval_on_selector('input[name="state"]', "field => { field.value = 'tampered'; }")
    page.click("#lwa-signin")
    expect(page.locator("#message")).to_contain_text("did not ask for")
    assert page.url == url + "/"
    assert any(r.url.startswith(url + "/callback?code=") for r in requests)
    # The code was never exchanged, so no token.
    assert _token_requests(requests, lwa_emulator) == []
    assert lwa_emulator.calls["token"] == 0
    assert _storage(page, "token") is None
    expect(page.locator("#login")).to_be_visible()


def test_replayed_code_is_refused_by_the_emulator(
    demo: tuple[str, Any, list[Any]], lwa_emulator: LWAEmulator
) -> None:
    from playwright.sync_api import expect

    url, page, requests = demo
    page.goto(url + "/")
    _sign_in(page, lwa_emulator, customer=2, postal_code=False)
    expect(page.locator("#name")).to_have_text(BUILTIN_CUSTOMERS[2].name)
    callback = next(r.url for r in requests if r.url.startswith(url + "/callback?code="))
    (exchange,) = _token_requests(requests, lwa_emulator)
    verifier = parse_qs(exchange.post_data)["code_verifier"][0]
    state = parse_qs(urlsplit(callback).query)["state"][0]

    # Replay the same answer with everything the page and the SDK need to
    # accept it (the state, and the SDK's verifier cookie): only the emulator
    # can refuse it now.
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    saved = {"c": lwa_emulator.client_id, "r": url + "/callback", "v": verifier}
    page.evaluate(
        "([state, saved]) => { sessionStorage.setItem('lwa-demo:state', state);"
        f" document.cookie = '{_PKCE_COOKIE}=' + encodeURIComponent(JSON.stringify(saved))"
        " + '; Path=/'; }",
        [state, saved],
    )
    with page.expect_response(lambda r: r.url == lwa_emulator.token_url) as replayed:
        page.goto(callback)
    assert replayed.value.status == 400
    expect(page.locator("#message")).to_contain_text("LWA refused the sign-in code: invalid_grant")
    assert page.url == url + "/"
    assert _storage(page, "token") is None
    assert lwa_emulator.calls["token"] == 2


def test_sdk_answers_in_the_shapes_of_amazons_reference(
    demo: tuple[str, Any, list[Any]], lwa_emulator: LWAEmulator
) -> None:
    """retrieveToken/retrieveProfile errors, the verifier cookie, logout and setUseCookie."""
    from playwright.sync_api import expect

    url, page, _ = demo
    page.goto(url + "/")
    expect(page.locator("#login")).to_be_enabled()
    assert page.evaluate("amazon.Login.getClientId()") == lwa_emulator.client_id
    retrieve = "code => new Promise((done) => amazon.Login.retrieveToken(code, done))"
    # No authorize with pkce on this site (no verifier cookie): refused here.
    lonely = page.evaluate(retrieve, "some-code")
    assert lonely["error"] == "invalid_request"
    assert lwa_emulator.calls["token"] == 0
    # With a verifier, an unknown code reaches LWA and comes back in its words.
    saved = {"c": lwa_emulator.client_id, "r": url + "/callback", "v": "v" * 43}
    page.evaluate(
        f"saved => {{ document.cookie = '{_PKCE_COOKIE}=' +"
        " encodeURIComponent(JSON.stringify(saved)) + '; Path=/'; }",
        saved,
    )
    refused = page.evaluate(retrieve, "some-code")
    assert refused["error"] == "invalid_grant"
    assert isinstance(refused["error_description"], str)
    assert "access_token" not in refused
    assert lwa_emulator.calls["token"] == 1
    assert _PKCE_COOKIE not in _cookies(page)  # one exchange per verifier
    profile = page.evaluate(
        "t => new Promise((done) => amazon.Login.retrieveProfile(t, done))", "Atza|not-a-token"
    )
    assert profile["success"] is False
    assert profile["error"]
    # setUseCookie: the access token of the next exchange goes to a cookie,
    # which logout() clears.  The code comes from the consent helper, for a
    # challenge whose verifier the SDK's cookie holds.
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    query = {
        "client_id": lwa_emulator.client_id,
        "scope": "profile",
        "response_type": "code",
        "redirect_uri": url + "/callback",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    back = lwa_emulator.consent(f"{lwa_emulator.authorize_url}?{urlencode(query)}")
    code = parse_qs(urlsplit(back).query)["code"][0]
    page.evaluate(
        f"saved => {{ document.cookie = '{_PKCE_COOKIE}=' +"
        " encodeURIComponent(JSON.stringify(saved)) + '; Path=/'; }",
        {**saved, "v": verifier},
    )
    page.evaluate("amazon.Login.setUseCookie(true)")
    tokens = page.evaluate(retrieve, code)
    assert tokens["success"] is True
    assert tokens["token_type"] == "bearer"
    assert int(tokens["expires_in"]) == int(lwa_emulator.access_token_lifetime)
    assert set(tokens) == {"success", "access_token", "token_type", "expires_in"}
    held = f"amazon_Login_accessToken={quote(tokens['access_token'], safe='')}"
    assert held in _cookies(page)
    page.evaluate("amazon.Login.logout()")
    assert "amazon_Login_accessToken" not in _cookies(page)


def test_sdk_popup_sign_in_and_denial(
    demo: tuple[str, Any, list[Any]], lwa_emulator: LWAEmulator
) -> None:
    """authorize() with Amazon's default, popup: true: the page stays, next gets the answer."""
    from playwright.sync_api import expect

    url, page, _ = demo
    page.goto(url + "/")
    expect(page.locator("#login")).to_be_enabled()
    page.evaluate("window.answers = []")
    start = (
        "state => amazon.Login.authorize({ scope: 'profile', pkce: true, state: state },"
        " (response) => window.answers.push(response))"
    )

    def through_popup(state: str, action: str) -> dict[str, Any]:
        with page.expect_popup() as opened:
            page.evaluate(start, state)
        popup = opened.value
        popup.wait_for_url(lwa_emulator.base_url + "/ap/oa?**")
        # The popup's consent page, too, offers exactly what was requested.
        assert popup.locator('input[name="scope"]').count() == 1
        with popup.expect_event("close"):
            popup.click(action)
        page.wait_for_function(
            f"window.answers.length > 0 && window.answers.at(-1).state === '{state}'"
        )
        answer: dict[str, Any] = page.evaluate("window.answers.at(-1)")
        return answer

    allowed = through_popup("p-0", "#lwa-signin")
    assert allowed["status"] == "complete"
    assert allowed["scope"] == "profile"
    assert set(allowed) == {"status", "code", "scope", "state"}
    # The popup's code is exchanged like any other, from the page.
    tokens = page.evaluate(
        "code => new Promise((done) => amazon.Login.retrieveToken(code, done))", allowed["code"]
    )
    assert tokens["success"] is True
    assert lwa_emulator.customer_for(tokens["access_token"]) == BUILTIN_CUSTOMERS[0]

    denied = through_popup("p-1", "#lwa-cancel")
    assert denied["status"] == "complete"
    assert denied["error"] == "access_denied"
    assert "code" not in denied
    assert page.url == url + "/"  # the page itself never left
