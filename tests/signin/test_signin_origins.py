"""Origins are compared as origins (RFC 6454): scheme, lower-cased host, port
left out when it is the scheme's default; on both sides, the app's (from
``redirect_uri``) and the request's ``Origin`` header.

A browser serialises ``Origin`` that way (lower-case host, no default port),
so a ``redirect_uri`` written ``https://App.example.com:443/callback`` must
still let the app's own pages post with the session cookie and sign out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient
from support.private import canonical_origin, origin_matches

from lwa_middleware.testing import LWAEmulator
from tests.signin.signin_support import make_signin, session_cookie, sign_in, starlette_app

CONFIGURED = "https://App.example.com:443"  # redirect_uri: {CONFIGURED}/callback
SERVED = "https://app.example.com"  # what the browser's address bar (and Origin) says


@pytest.fixture
def client(lwa_emulator: LWAEmulator) -> Iterator[TestClient]:
    signin = make_signin(lwa_emulator, origin=CONFIGURED)
    app = starlette_app(lwa_emulator, signin)
    with TestClient(app, base_url=SERVED, follow_redirects=False) as client:
        answer = sign_in(client, lwa_emulator)
        assert answer.status_code == 303, answer.text
        assert session_cookie(answer)
        yield client


@pytest.mark.parametrize(
    "origin", [SERVED, "https://APP.EXAMPLE.COM", "https://app.example.com:443", CONFIGURED]
)
def test_the_apps_own_origin_may_post_and_sign_out(client: TestClient, origin: str) -> None:
    me = client.post("/me", headers={"Origin": origin})
    assert me.status_code == 200, me.text
    assert me.json()["user_id"]
    out = client.post("/logout", headers={"Origin": origin})
    assert out.status_code == 303
    assert client.get("/me").status_code == 401  # signed out


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example.com",  # another scheme
        "https://app.example.com:8443",  # another port
        "https://app.example.com.evil.example",
        "https://app.example.com:99999",  # malformed from here on: refused, not a 500
        "https://[::1",
        "https://app.example.com/",  # an Origin is never followed by a path
        "https://user@app.example.com",
        "https://app.example.com, https://evil.example",
        "",
        "\u00e9",
    ],
)
def test_other_or_malformed_origins_are_refused(client: TestClient, origin: str) -> None:
    # Sec-Fetch-Site is only a fallback without a real Origin: another
    # origin, or junk, in Origin is an answer, and it is no.
    headers = {"Origin": origin.encode("utf-8"), "Sec-Fetch-Site": "same-origin"}
    me = client.post("/me", headers=headers)  # type: ignore[arg-type]
    assert me.status_code == 403, me.text
    assert me.json()["error"] == "cross_site_request"
    assert client.post("/logout", headers=headers).status_code == 403  # type: ignore[arg-type]
    assert client.get("/me").json()["user_id"]  # still signed in


@pytest.mark.parametrize("origin", [None, "null"])
def test_without_a_real_origin_sec_fetch_site_decides(
    client: TestClient, origin: str | None
) -> None:
    # Origin: null comes from opaque origins (sandboxed frames, data: URLs),
    # whose requests browsers mark cross-site; and from the app's own form
    # POSTs under Referrer-Policy: no-referrer, marked same-origin (the
    # server-side demo's logout in Chromium, tests/signin/test_signin_browser.py).
    base = {} if origin is None else {"Origin": origin}
    for site in (None, "cross-site", "same-site", "none", "same-origin, same-origin"):
        headers = base if site is None else {**base, "Sec-Fetch-Site": site}
        refused = client.post("/me", headers=headers)
        assert refused.status_code == 403, site
        assert refused.json()["error"] == "cross_site_request"
    same = {**base, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/me", headers=same).status_code == 200
    assert client.post("/logout", headers=same).status_code == 303


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://App.Example.com:443/callback", "https://app.example.com"),
        ("http://LOCALHOST:80/cb", "http://localhost"),
        ("http://127.0.0.1:8000/callback", "http://127.0.0.1:8000"),
        ("https://[::1]:443/x", "https://[::1]"),
        ("https://[::1]:8443", "https://[::1]:8443"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("null", None),
        ("https://a.example:99999", None),
        ("https://", None),
    ],
)
def test_canonical_origin(url: str, origin: str | None) -> None:
    assert canonical_origin(url) == origin


@given(st.binary(max_size=80))
def test_no_origin_header_value_raises(value: bytes) -> None:
    # Whatever the header holds, the answer is a bool (a refusal), not an error.
    matched = origin_matches([(b"origin", value)], SERVED)
    assert matched is (value == SERVED.encode())


def test_a_non_ascii_host_is_the_origin_browsers_send_not_a_lookalike(
    lwa_emulator: LWAEmulator,
) -> None:
    """Browsers turn a non-ASCII host into ASCII by UTS #46 (WHATWG URL,
    "domain to ASCII", non-transitional): ``faß.example`` is
    ``xn--fa-hia.example``. Python's ``idna`` codec (IDNA 2003) maps it to
    ``fass.example``, another name that anyone may own: a SignIn configured
    for ``faß.example`` must take its own pages' Origin and refuse that one's."""
    assert canonical_origin("https://faß.example/callback") == "https://xn--fa-hia.example"
    signin = make_signin(lwa_emulator, origin="https://faß.example")
    try:
        assert signin.same_origin([(b"origin", b"https://xn--fa-hia.example")])
        for other in (b"https://fass.example", b"https://fa\xc3\x9f.example"):
            assert not signin.same_origin([(b"origin", other)]), other
            websocket = [(b"origin", other), (b"sec-fetch-site", b"same-origin")]
            assert not origin_matches(websocket, signin.origin, require_origin=True)
    finally:
        signin.close()
