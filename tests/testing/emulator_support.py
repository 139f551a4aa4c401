"""Helpers shared by the emulator's tests: clients, calls and expected bodies.

Every client is built with ``trust_env=False`` so no proxy setting can send
a request anywhere but loopback.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import ssl
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2

from lwa_middleware.testing import LWAEmulator

JSON_TYPE = "application/json;charset=UTF-8"


INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The request has an invalid parameter : access_token",
}


MISSING_TOKEN = {
    "error": "invalid_request",
    "error_description": "The request is missing a required parameter : access_token",
}


def profile_error(response: httpx2.Response) -> dict[str, object]:
    """A profile error's body without its ``request_id``, after checking that
    it is there and equals the ``x-amzn-RequestId`` header ("Obtain Customer
    Profile Information" shows ``request_id`` in its error example)."""
    body = dict(response.json())
    assert body.pop("request_id") == response.headers["x-amzn-requestid"]
    return body


USER_ID = re.compile(r"amzn1\.account\.[A-Z0-9]{26}")


APP_ID = re.compile(r"amzn1\.application\.[0-9a-f]{32}")


TOKEN = re.compile(r"Atza\|[A-Za-z0-9_-]+")


#: The return URL the sign-in tests use; the ``signin`` fixture registers it.
REDIRECT = "http://127.0.0.1:9/callback"


# Building a TLS context per client costs ~30 ms (CA bundle load); the
# emulator speaks plain HTTP, so one shared context is plenty.
_TLS = ssl.create_default_context()


def make_client(timeout: float = 5.0) -> httpx2.Client:
    return httpx2.Client(timeout=timeout, trust_env=False, verify=_TLS)


def tokeninfo(c: httpx2.Client, lwa: LWAEmulator, token: str) -> httpx2.Response:
    return c.get(lwa.tokeninfo_url, headers={"x-amz-access-token": token})


def profile(c: httpx2.Client, lwa: LWAEmulator, token: str) -> httpx2.Response:
    return c.get(lwa.profile_url, headers={"Authorization": f"Bearer {token}"})


def call_in_thread(url: str, token: str) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def call() -> None:
        with make_client(timeout=30.0) as c:
            try:
                outcome["response"] = c.get(url, headers={"x-amz-access-token": token})
            except httpx2.HTTPError as exc:
                outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome


# -- sign-in ---------------------------------------------------------------------


def pkce_pair(verifier: str | None = None) -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636, appendix B)."""
    verifier = verifier or secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_form(lwa: LWAEmulator, **overrides: str) -> dict[str, str]:
    """What the consent page posts when the customer clicks Sign in."""
    form = {
        "client_id": lwa.client_id,
        "scope": "profile",
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": "xyz",
        "customer": "0",
        "action": "allow",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def consent_form(c: httpx2.Client, lwa: LWAEmulator, params: dict[str, str]) -> dict[str, str]:
    """Open the consent page of an authorize request; what its form posts on Allow.

    Its hidden fields (the consent ticket among them), the first customer,
    and every scope the page offers, ticked.
    """
    page = c.get(lwa.authorize_url, params=params)
    assert page.status_code == 200, page.text
    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
    offered = re.findall(r'<input type="checkbox" name="scope" value="([^"]*)" checked>', page.text)
    form = {name: html.unescape(value) for name, value in hidden}
    return {**form, "customer": "0", "action": "allow", "scope": " ".join(offered)}


def redirect_params(response: httpx2.Response) -> dict[str, str]:
    """The query of a redirect to :data:`REDIRECT`, one value per name."""
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert location.fragment == ""
    return dict(parse_qsl(location.query, keep_blank_values=True))


def authorize_url(lwa: LWAEmulator, **overrides: str) -> str:
    """The authorize URL an app sends the browser to (``customer``/``action`` left out)."""
    query = {k: v for k, v in authorize_form(lwa, **overrides).items()}
    query.pop("customer")
    query.pop("action")
    return f"{lwa.authorize_url}?{urlencode(query)}"


def get_code(c: httpx2.Client, lwa: LWAEmulator, **overrides: str) -> str:
    """Sign in on the consent page (every requested scope granted); the code."""
    customer = int(overrides.pop("customer", "0"))
    back = lwa.consent(authorize_url(lwa, **overrides), customer=customer)
    query = dict(parse_qsl(urlsplit(back).query))
    assert back.startswith(REDIRECT + "?"), back
    return query["code"]


def exchange(
    c: httpx2.Client,
    lwa: LWAEmulator,
    code: str,
    *,
    auth: tuple[str, str] | None = None,
    **fields: str | None,
) -> httpx2.Response:
    """``POST /auth/o2/token`` for ``code``; a field set to ``None`` is left out."""
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": lwa.client_id,
    }
    form.update(fields)
    data = {k: v for k, v in form.items() if v is not None}
    return c.post(lwa.token_url, data=data, auth=auth)


def refresh(
    c: httpx2.Client, lwa: LWAEmulator, refresh_token: str, **fields: str | None
) -> httpx2.Response:
    form: dict[str, str | None] = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": lwa.client_id,
        "client_secret": lwa.client_secret,
    }
    form.update(fields)
    return c.post(lwa.token_url, data={k: v for k, v in form.items() if v is not None})


def error_of(response: httpx2.Response) -> str:
    body = response.json()
    assert set(body) == {"error", "error_description"}
    return str(body["error"])


#: Where the emulator tests' :class:`~support.clock.FakeClock` starts: epoch
#: seconds in 2027, so token ``exp`` values look like real ones.
EPOCH = 1_800_000_000.0
