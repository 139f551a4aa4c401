"""The demo app (``lwa_middleware.demo``) served by a real uvicorn on loopback.

The sign-in round trip is driven here with plain HTTP (the emulator's
consent page and form, then its redirect); ``test_demo_browser.py`` clicks
through the same flow in headless Chromium, through the JavaScript SDK.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from support.private import build_demo_app, serve_in_thread

from lwa_middleware import ConfigurationError, LWAMiddleware
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator


@dataclass
class Demo:
    url: str
    app: LWAMiddleware
    lwa: LWAEmulator
    http: httpx2.Client

    def get(self, path: str, token: str | None = None) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.get(self.url + path, headers=headers)

    def post(self, path: str, token: str | None = None) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.post(self.url + path, headers=headers)


@pytest.fixture
def demo(lwa_emulator: LWAEmulator) -> Iterator[Demo]:
    app = build_demo_app(lwa_emulator)
    with serve_in_thread(app) as url, httpx2.Client(timeout=5) as http:
        lwa_emulator.add_redirect_uri(url + "/callback")
        yield Demo(url, app, lwa_emulator, http)


def test_page_and_assets_are_public(demo: Demo) -> None:
    for path in ("/", "/callback"):
        page = demo.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        for element_id in ("login", "name", "email", "postal-code", "shipping", "shipping-result"):
            assert f'id="{element_id}"' in page.text
        csp = page.headers["content-security-policy"]
        # LWA's SDK is the one thing from elsewhere: its script and its frame.
        assert f"script-src 'self' {demo.lwa.base_url};" in csp
        assert f"frame-src {demo.lwa.base_url};" in csp
        # The page itself talks to its own origin only: no token endpoint.
        assert "connect-src 'self';" in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["referrer-policy"] == "no-referrer"
    script = demo.get("/static/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "/api/shipping" in script.text
    style = demo.get("/static/style.css")
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")
    # Public routes never reach LWA.
    assert demo.lwa.calls["tokeninfo"] == 0


def test_config_points_at_the_emulator(demo: Demo) -> None:
    config = demo.get("/api/config").json()
    # The one address that changes in production (Amazon's login1.js).
    assert config["sdk_url"] == demo.lwa.base_url + "/sdk/login1.js"
    assert demo.http.get(config["sdk_url"]).status_code == 200
    assert config["client_id"] == demo.lwa.client_id
    assert config["scopes"] == ["profile", "postal_code"]


def test_me_needs_a_token(demo: Demo) -> None:
    response = demo.get("/api/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer realm=")
    assert "error=" not in response.headers["www-authenticate"]
    assert response.json()["error"] == "missing_token"


def test_unlisted_paths_fall_under_the_required_default(demo: Demo) -> None:
    assert demo.get("/api/nothing-here").status_code == 401


def test_me_answers_the_identity_and_caches_it(demo: Demo) -> None:
    ada = BUILTIN_CUSTOMERS[0]
    token = demo.lwa.issue_token(scopes=["profile", "postal_code"], customer=ada)

    first = demo.get("/api/me", token)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    body = first.json()
    assert body["identity"]["name"] == ada.name
    assert body["identity"]["email"] == ada.email
    assert body["identity"]["postal_code"] == ada.postal_code
    assert body["identity"]["scopes"] == ["postal_code", "profile"]
    assert body["identity"]["client_id"] == demo.lwa.client_id
    assert body["display_name"] == ada.name
    assert 3500 < body["expires_in"] <= 3600
    assert token not in first.text

    assert demo.get("/api/me", token).status_code == 200
    assert demo.lwa.calls["tokeninfo"] == 1
    assert demo.lwa.calls["profile"] == 1
    stats = demo.get("/api/stats").json()
    assert stats["lookups"] == 1
    assert stats["hits"] == 1
    assert stats == demo.app.stats.snapshot()


def test_invalid_token_is_refused(demo: Demo) -> None:
    response = demo.get("/api/me", "Atza|" + "x" * 400)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_shipping_needs_the_postal_code_scope(demo: Demo) -> None:
    profile_only = demo.lwa.issue_token(scopes=["profile"])
    refused = demo.get("/api/shipping", profile_only)
    assert refused.status_code == 403
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="postal_code"' in challenge
    body = refused.json()
    assert body["error"] == "insufficient_scope"
    assert "postal_code" in body["error_description"]

    grace = BUILTIN_CUSTOMERS[1]
    with_zip = demo.lwa.issue_token(scopes=["profile", "postal_code"], customer=grace)
    quote = demo.get("/api/shipping", with_zip)
    assert quote.status_code == 200
    assert quote.json()["postal_code"] == grace.postal_code
    assert grace.postal_code in quote.json()["message"]


def test_logout_revokes_a_token_revoked_at_amazon_but_still_cached(demo: Demo) -> None:
    token = demo.lwa.issue_token(scopes=["profile"])
    assert demo.get("/api/me", token).status_code == 200
    demo.lwa.revoke(token)
    # Revoked at "Amazon", but still cached here: the very reason to revoke on logout.
    assert demo.get("/api/me", token).status_code == 200
    assert demo.lwa.calls["tokeninfo"] == 1

    logout = demo.post("/api/logout", token)
    assert logout.status_code == 200
    assert logout.json() == {"logged_out": True}

    after = demo.get("/api/me", token)
    assert after.status_code == 401
    assert after.json()["error"] == "invalid_token"


def test_logout_refuses_a_token_that_is_still_live_at_amazon(demo: Demo) -> None:
    # The demo is a template: its logout must revoke, not merely forget. A
    # forgotten token that is still live at Amazon would resolve again.
    token = demo.lwa.issue_token(scopes=["profile"])
    assert demo.get("/api/me", token).status_code == 200
    assert demo.post("/api/logout", token).status_code == 200
    after = demo.get("/api/me", token)
    assert after.status_code == 401
    assert after.json()["error"] == "invalid_token"
    # Refused here, without asking LWA (which would still vouch for it).
    assert demo.lwa.calls["tokeninfo"] == 1


def test_logout_needs_a_token_and_a_post(demo: Demo) -> None:
    assert demo.post("/api/logout").status_code == 401
    token = demo.lwa.issue_token(scopes=["profile"])
    assert demo.get("/api/logout", token).status_code == 405


def test_sign_in_round_trip_through_the_emulator(demo: Demo) -> None:
    """What the page's Login button, the emulator's form and the page's exchange do."""
    redirect_uri = demo.url + "/callback"
    verifier = secrets.token_urlsafe(32)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    authorize = {
        "client_id": demo.lwa.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "state": "s-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = demo.http.get(
        f"{demo.lwa.base_url}/ap/oa?{urlencode({**authorize, 'scope': 'profile postal_code'})}"
    )
    assert page.status_code == 200
    assert 'id="lwa-signin"' in page.text

    # postal_code unticked on the consent page.
    ticket = re.search(r'name="consent" value="([^"]+)"', page.text)
    assert ticket is not None
    form = {**authorize, "consent": ticket.group(1), "customer": "1", "scope": "profile"}
    answer = demo.http.post(f"{demo.lwa.base_url}/ap/oa", data=form)
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(redirect_uri + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s-123"]
    code = query["code"][0]

    # As the SDK does it: with the verifier, no secret.  An Origin header gets
    # no CORS answer: Amazon documents none on its token endpoint.
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": demo.lwa.client_id,
        "code_verifier": verifier,
    }
    tokens = demo.http.post(
        demo.lwa.base_url + "/auth/o2/token", data=exchange, headers={"Origin": demo.url}
    )
    assert tokens.status_code == 200
    assert "access-control-allow-origin" not in tokens.headers
    assert "refresh_token" not in tokens.json()
    token = tokens.json()["access_token"]

    me = demo.get("/api/me", token)
    assert me.status_code == 200
    assert me.json()["identity"]["name"] == BUILTIN_CUSTOMERS[1].name
    assert me.json()["identity"]["postal_code"] is None
    shipping = demo.get("/api/shipping", token)
    assert shipping.status_code == 403
    assert re.search(r'scope="postal_code"', shipping.headers["www-authenticate"])

    replay = demo.http.post(
        demo.lwa.base_url + "/auth/o2/token", data=exchange, headers={"Origin": demo.url}
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


def test_the_implicit_grant_is_refused(demo: Demo) -> None:
    query = urlencode(
        {
            "client_id": demo.lwa.client_id,
            "scope": "profile",
            "response_type": "token",
            "redirect_uri": demo.url + "/callback",
            "state": "s-1",
        }
    )
    answer = demo.http.get(f"{demo.lwa.base_url}/ap/oa?{query}")
    assert answer.status_code == 302
    query_back = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query_back["error"] == ["unsupported_response_type"]
    assert query_back["state"] == ["s-1"]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"cache_ttl": -1}, id="negative-ttl"),
        pytest.param({"timeout": 0}, id="zero-timeout"),
        # NaN compares false with everything, so "< 0" checks let it through.
        pytest.param({"timeout": float("nan")}, id="nan-timeout"),
        pytest.param({"cache_ttl": float("nan")}, id="nan-ttl"),
    ],
)
def test_build_demo_app_refuses_bad_options(
    lwa_emulator: LWAEmulator, options: dict[str, float]
) -> None:
    with pytest.raises(ConfigurationError):
        build_demo_app(lwa_emulator, **options)


def test_the_demo_refuses_strip_credentials_since_logout_needs_the_token() -> None:
    from support.private import build_demo_app

    from lwa_middleware import ConfigurationError
    from lwa_middleware.testing import LWAEmulator

    with LWAEmulator() as lwa, pytest.raises(ConfigurationError, match="strip_credentials"):
        build_demo_app(lwa, strip_credentials=True)
