"""Headless Chromium clicks through the server-side sign-in (``demo --server-side``).

Sign-in, profile, a denied consent, a tampered ``state``, a replayed code,
an expired access token refreshed without the user noticing, and logout;
and, all along, no access token, refresh token or code where the browser
keeps anything: committed page URLs, ``document.cookie``, web storage,
page HTML. The emulator and ``SignIn`` share a clock the test moves.

Uses ``/usr/bin/chromium`` (never ``playwright install``); skipped without
it unless ``CI`` is set, as in ``tests/test_demo_browser.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
from support.browser import launch_chromium
from support.clock import FakeClock
from support.private import (
    HtmlRefusals,
    bind_socket,
    build_server_side_demo_app,
    serve_in_thread,
    url_for,
)

from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.signin.signin_support import session_of

pytestmark = pytest.mark.browser

LIFETIME = 120


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def clocked_lwa() -> Iterator[tuple[LWAEmulator, FakeClock]]:
    clock = FakeClock.starting_now()
    with LWAEmulator(clock=clock, access_token_lifetime=LIFETIME) as lwa:
        yield lwa, clock


@dataclass
class Tab:
    url: str
    app: HtmlRefusals
    lwa: LWAEmulator
    clock: FakeClock
    page: Any
    context: Any
    requests: list[Any] = field(default_factory=list)
    committed: list[str] = field(default_factory=list)  # every URL the address bar showed

    def session(self) -> Any:
        (cookie,) = [c for c in self.context.cookies() if c["name"] == "lwa_session"]
        return session_of(self.app.signin, cookie["value"])


@pytest.fixture
def tab(browser: Any, clocked_lwa: tuple[LWAEmulator, FakeClock]) -> Iterator[Tab]:
    from playwright.sync_api import expect

    lwa, clock = clocked_lwa
    lwa.reset()
    sock = bind_socket("127.0.0.1", 0)
    url = url_for(sock)
    app = build_server_side_demo_app(lwa, url, clock=clock)
    with serve_in_thread(app, sock=sock):
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(10_000)
        expect.set_options(timeout=10_000)
        errors: list[str] = []
        tab = Tab(url, app, lwa, clock, page, context)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda request: tab.requests.append(request))
        page.on("framenavigated", lambda frame: tab.committed.append(frame.url))
        try:
            yield tab
            assert errors == []
        finally:
            context.close()


def _consent(tab: Tab, customer: int = 0, postal_code: bool = True) -> None:
    page = tab.page
    page.wait_for_url(tab.lwa.authorize_url + "?**")
    page.check(f'input[name="customer"][value="{customer}"]')
    page.check('input[name="scope"][value="profile"]')
    if postal_code:
        page.check('input[name="scope"][value="postal_code"]')
    else:
        page.uncheck('input[name="scope"][value="postal_code"]')


def _sign_in(tab: Tab, customer: int = 0, postal_code: bool = True) -> None:
    tab.page.goto(tab.url + "/")
    tab.page.click("#login")
    _consent(tab, customer, postal_code)
    tab.page.click("#lwa-signin")
    tab.page.wait_for_url(tab.url + "/profile")


def _callback_urls(tab: Tab) -> list[str]:
    return [r.url for r in tab.requests if r.url.startswith(tab.url + "/callback?")]


def _assert_nothing_secret_in_the_browser(tab: Tab, secrets: list[str]) -> None:
    page = tab.page
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("sessionStorage.length") == 0
    html = page.content()
    for secret in secrets:
        assert secret not in page.url
        assert secret not in html
        assert all(secret not in url for url in tab.committed)
    for request in tab.requests:  # tokens never travel through the browser at all
        for secret in secrets[:2]:
            assert secret not in request.url
            assert secret not in (request.post_data or "")


def test_sign_in_profile_refresh_and_logout(tab: Tab) -> None:
    from playwright.sync_api import expect

    page, ada = tab.page, BUILTIN_CUSTOMERS[0]
    page.goto(tab.url + "/profile")
    expect(page.locator("#refused-title")).to_contain_text("Sign-in needed")
    _sign_in(tab)
    expect(page.locator("#name")).to_have_text(ada.name)
    expect(page.locator("#email")).to_have_text(ada.email)
    expect(page.locator("#postal-code")).to_have_text(ada.postal_code)
    expect(page.locator("#refreshes")).to_have_text("0")
    session = tab.session()
    (callback,) = _callback_urls(tab)
    code = dict(parse_qsl(urlsplit(callback).query))["code"]
    # The callback URL (with the code) was answered by a redirect: never shown.
    assert not any("/callback" in url for url in tab.committed)
    secrets = [session.access_token, session.refresh_token, code, tab.lwa.client_secret]
    _assert_nothing_secret_in_the_browser(tab, secrets)
    (cookie,) = tab.context.cookies()
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"

    # The token expires (at LWA too); the next page view refreshes it on the server.
    tab.clock.advance(LIFETIME + 1)
    reloaded = page.reload()
    assert reloaded.status == 200
    assert reloaded.request.redirected_from is None
    assert page.url == tab.url + "/profile"
    expect(page.locator("#name")).to_have_text(ada.name)
    expect(page.locator("#refreshes")).to_have_text("1")
    renewed = tab.session()
    assert renewed.access_token != session.access_token
    assert tab.lwa.calls["token"] == 2
    _assert_nothing_secret_in_the_browser(
        tab, [*secrets, renewed.access_token, renewed.refresh_token]
    )

    page.click("a[href='/shipping']")
    expect(page.locator("#shipping-result")).to_contain_text(f"Ships to {ada.postal_code}")

    # Log out: back home signed out; the profile needs a sign-in again.
    page.click("#logout")
    page.wait_for_url(tab.url + "/")
    expect(page.locator("#login")).to_be_visible()
    assert [c for c in tab.context.cookies() if c["name"] == "lwa_session"] == []
    again = page.goto(tab.url + "/profile")
    assert again.status == 401
    expect(page.locator("#refused-title")).to_contain_text("Sign-in needed")
    # The session's last access token, still live at LWA, is refused as a Bearer token.
    bearer = httpx2.get(
        tab.url + "/profile", headers={"Authorization": f"Bearer {renewed.access_token}"}
    )
    assert bearer.status_code == 401
    assert 'error="invalid_token"' in bearer.headers["www-authenticate"]


def test_a_missing_scope_is_explained(tab: Tab) -> None:
    from playwright.sync_api import expect

    _sign_in(tab, customer=1, postal_code=False)
    expect(tab.page.locator("#postal-code")).to_have_text("(not shared)")
    with tab.page.expect_navigation() as navigation:
        tab.page.click("a[href='/shipping']")
    assert navigation.value.status == 403
    expect(tab.page.locator("#explanation")).to_contain_text("needs the “postal_code” scope")
    expect(tab.page.locator("#challenge")).to_contain_text('scope="postal_code"')


def test_denied_consent(tab: Tab) -> None:
    from playwright.sync_api import expect

    tab.page.goto(tab.url + "/")
    tab.page.click("#login")
    _consent(tab)
    with tab.page.expect_navigation(url=tab.url + "/callback?**") as navigation:
        tab.page.click("#lwa-cancel")
    assert navigation.value.status == 403
    expect(tab.page.locator("h1")).to_have_text("Sign-in cancelled")
    assert tab.context.cookies() == []
    assert tab.lwa.calls["token"] == 0


def test_tampered_state_is_refused(tab: Tab) -> None:
    from playwright.sync_api import expect

    tab.page.goto(tab.url + "/")
    tab.page.click("#login")
    _consent(tab)
    # The answer comes back with a state this browser's sign-in did not send.
    tab.page.eval_on_selector('input[name="state"]', "field => { field.value = 'tampered'; }")
    with tab.page.expect_navigation(url=tab.url + "/callback?**") as navigation:
        tab.page.click("#lwa-signin")
    assert navigation.value.status == 400
    expect(tab.page.locator("h1")).to_have_text("Sign-in refused")
    assert "state=tampered" in _callback_urls(tab)[0]
    assert tab.lwa.calls["token"] == 0  # the code was never exchanged
    assert tab.context.cookies() == []  # no session; the pending login is gone too


def test_replayed_code_is_refused(tab: Tab) -> None:
    from playwright.sync_api import expect

    _sign_in(tab, customer=2)
    expect(tab.page.locator("#name")).to_have_text(BUILTIN_CUSTOMERS[2].name)
    first = tab.session()
    (callback,) = _callback_urls(tab)
    # The same answer again (same code, same state; Back after signing in):
    # the pending login was used once, so the code is not exchanged a second
    # time, and the live session carries the browser on, signed in (issue 22).
    replay = tab.page.goto(callback)
    assert replay.status == 200
    assert tab.page.url == tab.url + "/"
    expect(tab.page.locator("#to-profile")).to_be_visible()  # the signed-in home
    assert tab.lwa.calls["token"] == 1
    assert tab.session().access_token == first.access_token  # no new session

    # Even inside a fresh sign-in (a new pending login), the old answer is refused.
    tab.page.goto(tab.url + "/login")
    tab.page.wait_for_url(tab.lwa.authorize_url + "?**")
    replay = tab.page.goto(callback)
    assert replay.status == 400
    expect(tab.page.locator("h1")).to_have_text("Sign-in refused")
    assert tab.lwa.calls["token"] == 1


def test_the_back_button_after_signing_in_stays_signed_in(tab: Tab) -> None:
    """Issue 22: Back after a successful sign-in said "Sign-in expired". With the
    browser's own Back button: it returns to LWA's consent page (the callback's
    303 is not a history entry); consenting there again sends that used
    sign-in's answer back, and the live session carries on, signed in."""
    from playwright.sync_api import expect

    _sign_in(tab)
    expect(tab.page.locator("#name")).to_have_text(BUILTIN_CUSTOMERS[0].name)
    first = tab.session()
    tab.page.go_back()
    tab.page.wait_for_url(tab.lwa.authorize_url + "?**")
    with tab.page.expect_navigation(url=tab.url + "/**") as navigation:
        tab.page.click("#lwa-signin")
    assert navigation.value.ok
    assert len(_callback_urls(tab)) == 2  # the answer to the used sign-in came back
    expect(tab.page.locator("h1")).not_to_have_text("Sign-in expired")
    expect(tab.page.locator("#to-profile")).to_be_visible()  # the signed-in home
    assert tab.lwa.calls["token"] == 1  # the second code was never exchanged
    assert tab.session().access_token == first.access_token
