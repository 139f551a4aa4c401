"""The server-side demo (``lwa-middleware demo --server-side``) served by a real uvicorn.

Driven with plain HTTP here (the emulator's consent form, then its redirect,
a cookie jar as the browser's); ``tests/signin/test_signin_browser.py``
clicks through the same pages in headless Chromium. The emulator and the
sign-in share a clock the tests move, so tokens expire without sleeping.
"""

from __future__ import annotations

import asyncio
import html
import http.client
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.clock import FakeClock
from support.private import (
    HtmlRefusals,
    bind_socket,
    build_server_side_demo_app,
    safe_next,
    serve_in_thread,
    url_for,
)

from lwa_middleware.signin import SignIn
from lwa_middleware.testing import BUILTIN_CUSTOMERS, Fault, LWAEmulator
from tests.signin.signin_support import session_of

LIFETIME = 120  # seconds an access token lives in these tests


@dataclass
class Demo:
    url: str
    app: HtmlRefusals
    lwa: LWAEmulator
    clock: FakeClock
    http: httpx2.Client
    seen: list[httpx2.Response] = field(default_factory=list)

    def get(self, path: str, **kwargs: object) -> httpx2.Response:
        return self.http.get(self.url + path, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def clocked_lwa() -> Iterator[tuple[LWAEmulator, FakeClock]]:
    clock = FakeClock.starting_now()
    with LWAEmulator(clock=clock, access_token_lifetime=LIFETIME) as lwa:
        yield lwa, clock


@pytest.fixture
def demo(clocked_lwa: tuple[LWAEmulator, FakeClock]) -> Iterator[Demo]:
    lwa, clock = clocked_lwa
    lwa.reset()
    sock = bind_socket("127.0.0.1", 0)
    url = url_for(sock)
    app = build_server_side_demo_app(lwa, url, clock=clock)
    seen: list[httpx2.Response] = []
    hooks = {"response": [lambda r: (r.read(), seen.append(r))]}
    with (
        serve_in_thread(app, sock=sock) as served,
        httpx2.Client(timeout=5, event_hooks=hooks) as http,
    ):
        assert served == url
        yield Demo(url, app, lwa, clock, http, seen)


def sign_in(
    demo: Demo,
    customer: int = 0,
    scopes: tuple[str, ...] = ("profile", "postal_code"),
    deny: bool = False,
    next_path: str = "/profile",
) -> httpx2.Response:
    """What the browser does: /login, the consent form, the callback; its answer."""
    login = demo.get("/login", params={"next": next_path})
    assert login.status_code == 302, login.text
    location = login.headers["location"]
    if deny:
        back = demo.lwa.deny(location)
    else:
        back = demo.lwa.consent(location, grant=scopes, customer=customer)
    assert back.startswith(demo.url + "/callback?")
    return demo.http.get(back)


def _cookie(demo: Demo) -> str:
    return demo.http.cookies["lwa_session"]


def _secrets(demo: Demo) -> list[str]:
    session = session_of(demo.app.signin, _cookie(demo))
    return [session.access_token, session.refresh_token, demo.lwa.client_secret]


def test_home_offers_sign_in_on_a_page_without_script(demo: Demo) -> None:
    home = demo.get("/")
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert 'id="login"' in home.text
    assert 'href="/login?next=/profile"' in home.text
    assert "<script" not in home.text
    csp = home.headers["content-security-policy"]
    assert "script-src" not in csp  # default-src 'none': no script at all
    assert "form-action 'self'" in csp
    assert home.headers["referrer-policy"] == "no-referrer"
    assert demo.get("/static/style.css").status_code == 200
    assert demo.lwa.calls["tokeninfo"] == 0


def test_profile_needs_sign_in_and_says_so_in_html(demo: Demo) -> None:
    page = demo.get("/profile")
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["www-authenticate"].startswith("Bearer realm=")
    assert "Sign-in needed" in page.text
    assert 'href="/login?next=/profile"' in page.text
    assert demo.get("/shipping").status_code == 401


def test_sign_in_profile_and_no_secret_ever_reaches_the_browser(demo: Demo) -> None:
    ada = BUILTIN_CUSTOMERS[0]
    back = sign_in(demo)
    assert back.status_code == 303
    assert back.headers["location"] == "/profile"
    cookie = back.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    profile = demo.get("/profile")
    assert profile.status_code == 200
    for text in (ada.name, ada.email, ada.postal_code, ada.user_id, "#1 (made at"):
        assert text in profile.text
    assert 'id="refreshes">0<' in profile.text
    assert f"in {LIFETIME} s" in profile.text or f"in {LIFETIME - 1} s" in profile.text
    assert 'id="logout"' in profile.text
    # Nothing the server holds ever came back: not in a URL, header or body.
    # The code came in the callback's URL (that is the code flow); the app
    # answered it with a redirect and never sent it back.
    (callback,) = [r for r in demo.seen if r.url.path == "/callback"]
    code = dict(parse_qsl(callback.url.query.decode()))["code"]
    for response in demo.seen:
        exposed = str(response.url) + str(response.headers) + response.text
        for secret in _secrets(demo):
            assert secret not in exposed
        if str(response.url).startswith(demo.url):
            assert code not in response.text
            assert code not in str(response.headers)
    assert set(demo.http.cookies.keys()) == {"lwa_session"}


def test_a_missing_scope_is_explained_from_the_refusal(demo: Demo) -> None:
    sign_in(demo, customer=1, scopes=("profile",))
    refused = demo.get("/shipping")
    assert refused.status_code == 403
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="postal_code"' in challenge
    assert refused.headers["content-type"].startswith("text/html")
    assert "Permission missing" in refused.text
    assert "needs the “postal_code” scope" in refused.text
    assert "scope=&quot;postal_code&quot;" in refused.text  # the header, shown
    assert 'href="/login?next=/shipping"' in refused.text
    assert "(not shared)" in demo.get("/profile").text

    sign_in(demo, customer=0, next_path="/shipping")
    quote = demo.get("/shipping")
    assert quote.status_code == 200
    assert f"Ships to {BUILTIN_CUSTOMERS[0].postal_code}" in quote.text


def test_an_expired_token_is_refreshed_without_the_user_noticing(demo: Demo) -> None:
    sign_in(demo)
    first = session_of(demo.app.signin, _cookie(demo)).access_token
    assert demo.get("/profile").status_code == 200
    demo.clock.advance(LIFETIME + 1)  # expired, at LWA too
    profile = demo.get("/profile")
    assert profile.status_code == 200
    assert 'id="refreshes">1<' in profile.text
    assert "#1 (made at" in profile.text  # the same session, the same account
    assert profile.history == []  # no redirect, no sign-in page
    second = session_of(demo.app.signin, _cookie(demo)).access_token
    assert second != first
    assert demo.lwa.calls["token"] == 2  # the code, then one refresh
    assert demo.get("/profile").status_code == 200
    assert demo.lwa.calls["token"] == 2


def test_an_outage_during_refresh_is_an_html_503(demo: Demo) -> None:
    sign_in(demo)
    demo.clock.advance(LIFETIME + 1)
    demo.lwa.inject(Fault.SERVER_ERROR, endpoint="token")
    page = demo.get("/profile")
    assert page.status_code == 503
    assert page.headers["retry-after"]
    assert "www-authenticate" not in page.headers
    assert "Try again shortly" in page.text
    demo.lwa.clear_faults()
    assert demo.get("/profile").status_code == 200


def test_logout_ends_the_session_and_refuses_its_token(demo: Demo) -> None:
    sign_in(demo)
    session_id = _cookie(demo)
    token = session_of(demo.app.signin, session_id).access_token
    assert demo.http.post(demo.url + "/logout").status_code == 403  # no Origin: refused
    out = demo.http.post(demo.url + "/logout", headers={"Origin": demo.url})
    assert out.status_code == 303
    assert out.headers["location"] == "/"
    assert "lwa_session" not in demo.http.cookies
    assert demo.get("/profile").status_code == 401
    demo.http.cookies.set("lwa_session", session_id)  # the old cookie, replayed
    assert demo.get("/profile").status_code == 401
    bearer = demo.get("/profile", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401
    assert 'error="invalid_token"' in bearer.headers["www-authenticate"]


def test_denied_consent_opens_no_session(demo: Demo) -> None:
    back = sign_in(demo, deny=True)
    assert back.status_code == 403
    assert "You cancelled the sign-in" in back.text
    assert "lwa_session" not in demo.http.cookies
    assert demo.lwa.calls["token"] == 0


# -- links built from the request path never leave the site --------------------------

#: Request targets sent as they are (``http.client`` does not normalise them);
#: the app sees them percent-decoded: tabs, newlines and backslashes, which
#: browsers drop from or read as ``/`` in a link, ``//`` (another host), ...
HOSTILE_TARGETS = [
    "//evil.example/x",
    "///evil.example/x",
    "/\\evil.example/x",
    "/%5Cevil.example/x",
    "/%09/evil.example/x",
    "/%0a/evil.example/x",
    "/%0d%0a/evil.example/x",
    "/%2F/evil.example/x",
    "/%20//evil.example/x",
    "/https:evil.example",
    "/%E2%98%83/x",
]
_HREF = re.compile(r'href="([^"]*)"')


def _raw_get(demo: Demo, target: str, headers: dict[str, str]) -> tuple[int, str]:
    host, port = urlsplit(demo.url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", target, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read().decode("utf-8")
    finally:
        connection.close()


def _stays_on_site(base: str, body: str) -> list[str]:
    """Every link of ``body``, after checking that each, resolved the way a
    browser does (tabs and newlines dropped, ``\\`` read as ``/``), stays on ``base``."""
    # The layout's empty icon (``data:,``, no request) is the one link not on a site.
    hrefs = [html.unescape(h) for h in _HREF.findall(body) if h != "data:,"]
    for href in hrefs:
        as_browser = re.sub(r"[\t\n\r]", "", href).replace("\\", "/")
        resolved = urlsplit(urljoin(base + "/here/page", as_browser))
        assert (resolved.scheme, resolved.netloc) == tuple(urlsplit(base)[:2]), href
        assert href.isascii(), href
        assert href.isprintable(), href
        assert " " not in href, href
    return hrefs


_TRY_AGAIN = re.compile(r'href="([^"]*)">Try again<')


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_the_503_page_never_links_off_site(demo: Demo, target: str) -> None:
    token = demo.lwa.issue_token()
    demo.lwa.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    status, body = _raw_get(demo, target, {"Authorization": f"Bearer {token}"})
    assert status == 503
    _stays_on_site(demo.url, body)
    assert _TRY_AGAIN.search(body)  # the link is there, on this site
    assert 'href="//' not in body


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_the_401_page_links_only_to_this_sites_login(demo: Demo, target: str) -> None:
    status, body = _raw_get(demo, target, {})
    assert status == 401
    logins = [h for h in _stays_on_site(demo.url, body) if h.startswith("/login?next=")]
    assert len(logins) == 1
    # The next= it carries is a path on this site (what /login keeps as it is).
    (next_path,) = [v for k, v in parse_qsl(urlsplit(logins[0]).query) if k == "next"]
    assert safe_next(next_path, "") == next_path


def test_the_503_page_keeps_an_ordinary_path(demo: Demo) -> None:
    token = demo.lwa.issue_token()
    demo.lwa.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    status, body = _raw_get(demo, "/profile/caf%C3%A9", {"Authorization": f"Bearer {token}"})
    assert status == 503
    found = _TRY_AGAIN.search(body)
    assert found
    assert found.group(1) == "/profile/caf%C3%A9"


def _refusal_page(path: str, status: int) -> str:
    """The page HtmlRefusals makes of a JSON refusal ``status`` on ``path``.

    Behind it, an app that refuses as the middleware does, so that any scope
    path can be tried: paths no HTTP server passes on (``https:evil``, raw
    control characters) but a proxy or a framework might."""

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        start = {"status": status, "headers": [(b"content-type", b"application/json")]}
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": b'{"error": "missing_token"}'})

    sent: list[Any] = []

    async def collect(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": [], "method": "GET"}
    asyncio.run(HtmlRefusals(refuse, _OFFLINE_SIGNIN)(scope, collect, collect))
    return str(sent[-1]["body"].decode())


#: Built, never called: HtmlRefusals only reads its login path.
_OFFLINE_SIGNIN = SignIn(
    client_id="amzn1.application-oa2-client.0123",
    client_secret="secret",
    redirect_uri="http://127.0.0.1:9/callback",
    session_secret="s" * 40,
)


@pytest.mark.parametrize(
    # "\ud800": a lone surrogate (hypothesis' text() never draws one), no UTF-8 for it.
    "path",
    ["https:evil.example", "//evil.example/x", "\\\\evil", "/\ud800/x"],
)
def test_paths_no_server_sends_do_not_link_off_site_either(path: str) -> None:
    for status in (401, 503):
        _stays_on_site("http://127.0.0.1:9", _refusal_page(path, status))


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters() | st.sampled_from(["/", "\t", "\n", "\\", ":"]), max_size=40))
def test_no_path_makes_a_refusal_page_link_off_site(path: str) -> None:
    for status in (401, 503):
        _stays_on_site("http://127.0.0.1:9", _refusal_page(path, status))
