"""The error table of the contract (``CONTRACT.md``, "Errors"), as data.

Each :class:`Case` is one row: how to build the request against a live
emulator, and what every transport must answer. ``tests/test_contract.py``
runs the table once per transport (ASGI and WSGI in process, uvicorn and
waitress over a socket), ``tests/test_more_servers.py`` once per further
server; both run :func:`check_success`, the success path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from lwa_middleware.testing import Fault, LWAEmulator

from .callers import Reply, bearer

__all__ = [
    "CASES",
    "OTHER_CLIENT",
    "Case",
    "Request",
    "challenge",
    "check_error",
    "check_success",
]

OTHER_CLIENT = "amzn1.application-oa2-client.someone-else"

# RFC 7235: auth-scheme 1*SP auth-param *( OWS "," OWS auth-param ), with
# auth-param = token BWS "=" BWS ( token / quoted-string ).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
_PARAM = rf"({_TOKEN})=({_TOKEN}|{_QUOTED})"
_CHALLENGE = re.compile(rf"Bearer {_PARAM}(?:, {_PARAM})*")


def challenge(value: str) -> dict[str, str]:
    """Parse one Bearer challenge strictly; unquote its values."""
    assert _CHALLENGE.fullmatch(value), value
    return {
        name: re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        for name, raw in re.findall(_PARAM, value)
    }


@dataclass(frozen=True)
class Request:
    path: str = "/me"
    headers: dict[str, Any] | None = None
    query: str = ""


@dataclass(frozen=True)
class Case:
    """One row: ``build`` makes the request (issuing tokens, injecting faults)."""

    name: str
    build: Callable[[LWAEmulator], Request]
    status: int = 401
    error: str | None = "invalid_token"  # None: any name (no token at all)
    scope: str | None = None  # the challenge's scope= attribute
    lwa_calls: int | None = None  # expected tokeninfo calls, when it matters

    def __str__(self) -> str:
        return self.name


def _q(token: str) -> str:
    return "access_token=" + quote(token, safe="")


def _revoked(lwa: LWAEmulator) -> Request:
    token = lwa.issue_token()
    lwa.revoke(token)
    return Request(headers={"x-amz-access-token": token})


def _faulted(fault: Fault) -> Callable[[LWAEmulator], Request]:
    def build(lwa: LWAEmulator) -> Request:
        token = lwa.issue_token()
        lwa.inject(fault)
        return Request(headers=bearer(token))

    return build


_BAD_REQUEST: dict[str, Any] = {"status": 400, "error": "invalid_request"}
_UNAVAILABLE: dict[str, Any] = {"status": 503, "error": "temporarily_unavailable"}

CASES: list[Case] = [
    # 401, no error= attribute: no token on a route that needs one.
    Case("missing", lambda lwa: Request(), error=None, lwa_calls=0),
    Case("missing_on_scoped_route", lambda lwa: Request("/zip"), error=None, lwa_calls=0),
    Case(
        "basic_is_no_token",
        lambda lwa: Request(headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        error=None,
        lwa_calls=0,
    ),
    # 400 invalid_request: two different tokens, a malformed Authorization.
    Case(
        "two_tokens_headers",
        lambda lwa: Request(
            headers={**bearer(lwa.issue_token()), "x-amz-access-token": lwa.issue_token()}
        ),
        lwa_calls=0,
        **_BAD_REQUEST,
    ),
    Case(
        "two_tokens_bearer_query",
        lambda lwa: Request(headers=bearer(lwa.issue_token()), query=_q(lwa.issue_token())),
        lwa_calls=0,
        **_BAD_REQUEST,
    ),
    Case(
        "two_tokens_query",
        lambda lwa: Request(query=_q(lwa.issue_token()) + "&" + _q(lwa.issue_token())),
        lwa_calls=0,
        **_BAD_REQUEST,
    ),
    Case(
        "bearer_without_token",
        lambda lwa: Request(headers={"Authorization": "Bearer"}),
        lwa_calls=0,
        **_BAD_REQUEST,
    ),
    Case(
        "bearer_two_words",
        lambda lwa: Request(headers={"Authorization": "Bearer abc def"}),
        lwa_calls=0,
        **_BAD_REQUEST,
    ),
    # 401 invalid_token: unknown, expired, revoked, another client's.
    Case("unknown", lambda lwa: Request(headers=bearer("Atza|" + "u" * 400)), lwa_calls=1),
    Case("garbage", lambda lwa: Request(headers=bearer("garbage")), lwa_calls=1),
    Case("expired", lambda lwa: Request(headers=bearer(lwa.issue_token(expires_in=-5)))),
    Case("revoked", _revoked),
    Case("other_client", lambda lwa: Request(query=_q(lwa.issue_token(aud=OTHER_CLIENT)))),
    # Not an LWA token at all: refused without asking LWA.
    Case("oversized", lambda lwa: Request(headers=bearer("Atza|" + "x" * 2100)), lwa_calls=0),
    Case(
        "not_visible_ascii",
        lambda lwa: Request(headers={"x-amz-access-token": b"Atza|caf\xc3\xa9"}),
        lwa_calls=0,
    ),
    # 403 insufficient_scope, naming the scopes.
    Case(
        "insufficient_scope",
        lambda lwa: Request("/zip", headers=bearer(lwa.issue_token(scopes=["profile"]))),
        status=403,
        error="insufficient_scope",
        scope="postal_code",
    ),
    Case(
        "insufficient_scope_wildcard",
        lambda lwa: Request(
            "/users/42/orders", headers=bearer(lwa.issue_token(scopes=["profile:user_id"]))
        ),
        status=403,
        error="insufficient_scope",
        scope="profile",
    ),
    # 503 temporarily_unavailable: Retry-After, no challenge.
    Case("lwa_down", _faulted(Fault.DOWN), **_UNAVAILABLE),
    Case("lwa_500", _faulted(Fault.SERVER_ERROR), **_UNAVAILABLE),
    Case("lwa_nonsense", _faulted(Fault.BAD_JSON), **_UNAVAILABLE),
]


def check_error(case: Case, reply: Reply, lwa: LWAEmulator, realm: str = "lwa") -> None:
    """``reply`` is the contract's answer to ``case``."""
    assert reply.status == case.status, (case.name, reply.status, reply.body)
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"error", "error_description"}
    assert isinstance(body["error_description"], str)
    assert body["error_description"]
    assert isinstance(body["error"], str)
    assert body["error"]
    if case.error is not None:
        assert body["error"] == case.error
    if case.status == 503:
        assert "www-authenticate" not in reply.headers
        assert reply.headers["retry-after"].isdigit()
        assert int(reply.headers["retry-after"]) >= 1
    else:
        assert "retry-after" not in reply.headers
        value = reply.headers["www-authenticate"]
        params = challenge(value)
        assert params["realm"] == realm
        if case.error is None:
            assert value == f'Bearer realm="{realm}"'
            assert "error" not in params
        else:
            assert params["error"] == case.error
            assert value.startswith(f'Bearer realm="{realm}", error="{case.error}"')
        if case.scope is not None:
            assert params["scope"] == case.scope
    if case.lwa_calls is not None:
        assert lwa.calls["tokeninfo"] == case.lwa_calls
        if case.lwa_calls == 0:
            assert lwa.calls["profile"] == 0
    assert lwa.token_in_url == 0


def check_success(caller: Any, lwa: LWAEmulator) -> None:
    """The success path through ``caller`` (eleven requests reach the app):
    a resolved identity, served from the cache on every route and token
    source; public and optional routes; LWA down (503), then back."""
    token = lwa.issue_token(
        scopes=["profile", "postal_code"], name="Ada Lovelace", email="ada@example.com"
    )
    customer = lwa.customer_for(token)
    first = caller.get("/me", token)
    assert first.status == 200, first.body
    identity = first.json()["identity"]
    assert identity["user_id"] == customer.user_id
    assert identity["name"] == "Ada Lovelace"
    assert identity["email"] == "ada@example.com"
    assert identity["postal_code"] == customer.postal_code
    assert identity["scopes"] == ["postal_code", "profile"]
    assert identity["client_id"] == lwa.client_id
    # Cached: every route and every token source, no further LWA call.
    for path in ("/me", "/zip", "/uid", "/users/1/orders", "/optional"):
        again = caller.get(path, token)
        assert again.status == 200, path
        assert again.json()["identity"] == identity
    assert caller.get("/me", query="access_token=" + quote(token, safe="")).status == 200
    assert caller.get("/me", headers={"x-amz-access-token": token}).status == 200
    assert lwa.calls["tokeninfo"] == 1
    assert lwa.calls["profile"] == 1
    # Public: no credential is read, whatever the request carries.
    public = caller.get("/public/x", headers={"Authorization": "Bearer a b"})
    assert public.status == 200
    assert public.json()["identity"] is None
    # Optional: anonymous without a token.
    assert caller.get("/optional").json()["identity"] is None
    # Down, then back: fail closed, then resolve.
    lwa.inject(Fault.DOWN)
    fresh = lwa.issue_token()
    assert caller.get("/me", headers=bearer(fresh)).status == 503
    lwa.clear_faults()
    assert caller.get("/me", headers=bearer(fresh)).status == 200
    assert lwa.token_in_url == 0
