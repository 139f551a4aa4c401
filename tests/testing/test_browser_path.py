"""The browser's path to LWA as Amazon documents it: the JavaScript SDK, not CORS.

Amazon's pages: "Login with Amazon SDK for JavaScript Reference Guide"
(developer.amazon.com/docs/login-with-amazon/javascript-sdk-reference.html)
documents ``amazon.Login`` (``authorize`` with ``pkce: true``,
``retrieveToken``, ``retrieveProfile``, ``logout``, ``setClientId``,
``getClientId``, ``setSandboxMode``, ``setSiteDomain``, ``setUseCookie``);
"Add the Login with Amazon SDK for JavaScript"
(developer.amazon.com/docs/login-with-amazon/install-sdk-javascript.html)
loads it from ``https://assets.loginwithamazon.com/sdk/na/login1.js`` into
``#amazon-root`` and calls ``window.onAmazonLoginReady``.  No Amazon page
documents CORS on ``/auth/o2/token``, so the emulator sends none unless
asked to (``token_cors=True``, tested in ``test_token_endpoint``).  The SDK
in a real browser: ``tests/test_demo_browser.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import httpx2
import pytest

from lwa_middleware.testing import LWAEmulator

from .emulator_support import REDIRECT, get_code, pkce_pair

ORIGIN = "http://127.0.0.1:9"  # the origin of REDIRECT, a registered return URL


def test_no_cors_on_the_token_endpoint_by_default(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    verifier, challenge = pkce_pair()
    code = get_code(client, signin, code_challenge=challenge, code_challenge_method="S256")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": signin.client_id,
        "code_verifier": verifier,
    }
    answer = client.post(signin.token_url, data=form, headers={"Origin": ORIGIN})
    assert answer.status_code == 200  # answered, but a browser may not read it
    assert not [name for name in answer.headers if name.lower().startswith("access-control-")]
    refused = client.post(signin.token_url, data=form, headers={"Origin": ORIGIN})
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    preflight = client.options(
        signin.token_url,
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert not [name for name in preflight.headers if name.lower().startswith("access-control-")]


def test_the_opt_in_is_off_unless_asked_for(client: httpx2.Client) -> None:
    for flag, expected in ((False, None), (True, ORIGIN)):
        with LWAEmulator(redirect_uris=[REDIRECT], token_cors=flag) as lwa:
            code = get_code(client, lwa)
            answer = client.post(
                lwa.token_url,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT,
                    "client_id": lwa.client_id,
                    "client_secret": lwa.client_secret,
                },
                headers={"Origin": ORIGIN},
            )
            assert answer.status_code == 200
            assert answer.headers.get("access-control-allow-origin") == expected


SDK_METHODS = (
    "authorize",
    "getClientId",
    "logout",
    "retrieveProfile",
    "retrieveToken",
    "setClientId",
    "setSandboxMode",
    "setSiteDomain",
    "setUseCookie",
)


def test_the_sdk_stand_in_is_served_with_amazons_api(
    lwa_emulator: LWAEmulator, client: httpx2.Client, tmp_path: Path
) -> None:
    assert lwa_emulator.sdk_url == lwa_emulator.base_url + "/sdk/login1.js"
    script = client.get(lwa_emulator.sdk_url)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    for method in SDK_METHODS:
        assert f"    {method}: " in script.text, method
    assert "window.onAmazonLoginReady()" in script.text
    node = shutil.which("node")
    if node is not None:
        path = tmp_path / "login1.js"
        path.write_text(script.text, encoding="utf-8")
        check = subprocess.run([node, "--check", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_the_sdk_relay_answers_registered_origins_only(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    relay = signin.base_url + "/sdk/relay"
    page = client.get(relay, params={"client_id": signin.client_id, "origin": ORIGIN})
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert f"frame-ancestors {ORIGIN}" in csp
    assert "connect-src 'self'" in csp
    assert f"const APP = \"{ORIGIN}\";" in page.text
    for query in (
        {"client_id": signin.client_id, "origin": "http://127.0.0.1:10"},
        {"client_id": signin.client_id, "origin": "https://evil.example"},
        {"client_id": signin.client_id, "origin": "null"},
        {"client_id": "amzn1.application-oa2-client.nobody", "origin": ORIGIN},
        {"client_id": signin.client_id},
        {},
    ):
        refused = client.get(relay, params=query)
        assert refused.status_code == 400, query
        assert "<script" not in refused.text
        assert "frame-ancestors" not in refused.headers.get("content-security-policy", "")


@pytest.mark.parametrize("path", ["/sdk/login1.js", "/sdk/relay", "/sdk/popup"])
def test_sdk_routes_are_get_only(
    lwa_emulator: LWAEmulator, client: httpx2.Client, path: str
) -> None:
    assert client.post(lwa_emulator.base_url + path).status_code == 405


def test_sdk_popups_return_to_the_emulator_for_the_apps_origins_only(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    """authorize() in a popup (the SDK's default) needs only an Allowed Origin."""
    popup = signin.base_url + "/sdk/popup"
    query = {"client_id": signin.client_id, "scope": "profile", "response_type": "code"}
    own = f"{popup}?{urlencode({'origin': ORIGIN})}"
    page = client.get(signin.authorize_url, params={**query, "redirect_uri": own})
    assert page.status_code == 200
    back = signin.consent(f"{signin.authorize_url}?{urlencode({**query, 'redirect_uri': own})}")
    assert back.startswith(own + "&code=")
    for stranger in (
        f"{popup}?{urlencode({'origin': 'https://evil.example'})}",
        f"{popup}?{urlencode({'origin': ORIGIN, 'x': '1'})}",
        f"{popup}?origin=",
        popup,
        own.replace("/sdk/popup", "/sdk/relay"),
        own.replace(signin.base_url, "http://127.0.0.1:9"),
        own + "#top",
    ):
        refused = client.get(signin.authorize_url, params={**query, "redirect_uri": stranger})
        assert refused.status_code == 400, stranger
        assert "location" not in refused.headers

    answer = client.get(popup, params={"origin": ORIGIN, "code": "c", "state": "s"})
    assert answer.status_code == 200
    assert f"const APP = \"{ORIGIN}\";" in answer.text
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    for origin in ("https://evil.example", "", "null"):
        refused = client.get(popup, params={"origin": origin, "code": "c"})
        assert refused.status_code == 400
        assert "<script" not in refused.text


def test_allowed_origins_are_compared_as_origins(client: httpx2.Client) -> None:
    """A browser names a page's origin lower-cased and without its default
    port (``location.origin``, RFC 6454): a return URL registered as
    ``https://App.Example.com:443/callback`` makes ``https://app.example.com``
    an Allowed Origin, as ``SignIn`` compares them; nothing else is."""
    registered = "https://App.Example.com:443/callback"
    with LWAEmulator(redirect_uris=[registered], token_cors=True) as lwa:
        relay = lwa.base_url + "/sdk/relay"
        page = client.get(relay, params={"client_id": lwa.client_id, "origin": "https://app.example.com"})
        assert page.status_code == 200, page.text
        assert "frame-ancestors https://app.example.com" in page.headers["content-security-policy"]
        preflight = client.options(
            lwa.token_url,
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers.get("access-control-allow-origin") == "https://app.example.com"
        # Only a browser's (canonical) spelling is echoed into a header or a page.
        for origin in (
            "https://App.Example.com:443",
            "https://app.example.com:8443",
            "http://app.example.com",
            "https://app.example.com/",
            "https://app.example.com.evil.example",
        ):
            refused = client.get(relay, params={"client_id": lwa.client_id, "origin": origin})
            assert refused.status_code == 400, origin
