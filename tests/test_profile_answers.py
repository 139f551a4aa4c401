"""The middleware reads every profile answer Amazon documents, in both middlewares.

Source of the answers: Amazon, "Obtain Customer Profile Information"
(developer.amazon.com/docs/login-with-amazon/obtain-customer-profile.html):
``400 invalid_request``, ``400 invalid_token``, ``401 insufficient_scope``,
``500 ServerError``. A token can die between the tokeninfo call (live) and
the profile call (dead), at the end of its hour or when the customer removes
the app; :func:`support.lwa_proxy.dead_profile_token` makes that happen on
every lookup, and the emulator itself answers the profile call.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import ROUTES
from starlette.testclient import TestClient
from support.lwa_proxy import Answer, RewritingProxy, dead_profile_token, json_answer
from werkzeug.test import Client

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, revalidate
from lwa_middleware.testing import Fault, LWAEmulator


class Caller:
    """One middleware (ASGI or WSGI) behind the proxy, with ``get`` and ``stats``."""

    def __init__(self, kind: str, mw: Any, stack: contextlib.ExitStack) -> None:
        self.mw = mw
        self.kind = kind
        if kind == "asgi":
            self._client: Any = stack.enter_context(TestClient(mw))
        else:
            self._client = Client(mw)
            stack.callback(mw.close)

    def get(self, token: str, path: str = "/users/1/orders") -> tuple[int, dict[str, str], Any]:
        response = self._client.get(path, headers={"Authorization": f"Bearer {token}"})
        body = response.json() if self.kind == "asgi" else response.get_json()
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, body


@pytest.fixture
def proxy(lwa_emulator: LWAEmulator) -> Iterator[RewritingProxy]:
    with RewritingProxy(lwa_emulator) as running:
        yield running


@pytest.fixture(params=["asgi", "wsgi"])
def caller(
    request: pytest.FixtureRequest,
    proxy: RewritingProxy,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> Iterator[Callable[..., Caller]]:
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> Caller:
            options.setdefault("api_base_url", proxy.base_url)
            factory = make_asgi if request.param == "asgi" else make_wsgi
            return Caller(request.param, factory(**options), stack)

        yield make


def test_profile_400_invalid_token_is_a_401_rejection_not_an_outage(
    lwa_emulator: LWAEmulator, proxy: RewritingProxy, caller: Callable[..., Caller]
) -> None:
    # Fact P7: "400 invalid_token" (expired, revoked, malformed, invalid).
    # Before the fix: 503 temporarily_unavailable, counted towards the breaker.
    proxy.rewrite_request = dead_profile_token
    c = caller(breaker_threshold=1)
    tokens = [lwa_emulator.issue_token(scopes=["profile"]) for _ in range(3)]
    for token in tokens:
        status, headers, body = c.get(token)
        assert status == 401, body
        assert body["error"] == "invalid_token"
        assert 'error="invalid_token"' in headers["www-authenticate"]
    # The emulator really answered 400 invalid_token to those profile calls.
    assert lwa_emulator.calls["profile"] == 3
    stats = c.mw.stats
    assert (stats.rejected, stats.upstream_errors, stats.breaker_opened) == (3, 0, 0)

    # A rejection like any other: remembered, LWA is not asked again.
    asked = lwa_emulator.calls["tokeninfo"]
    assert c.get(tokens[0])[0] == 401
    assert lwa_emulator.calls["tokeninfo"] == asked


def test_profile_400_invalid_token_evicts_a_cached_identity(
    lwa_emulator: LWAEmulator, proxy: RewritingProxy, caller: Callable[..., Caller]
) -> None:
    # Fact P7, "evicts the token like any rejection": a cached identity whose
    # token dies (profile's 400 invalid_token on a revalidate() route) is
    # gone, so stale_if_error cannot serve it when LWA goes down. Before the
    # fix the 400 was an outage, and the stale identity was served.
    c = caller(
        stale_if_error=True,
        negative_cache_ttl=0,
        routes={**ROUTES, "/pay": revalidate()},
    )
    token = lwa_emulator.issue_token(scopes=["profile"])
    assert c.get(token)[0] == 200  # cached
    proxy.rewrite_request = dead_profile_token
    status, _, body = c.get(token, "/pay")
    assert status == 401, body
    assert body["error"] == "invalid_token"
    proxy.rewrite_request = None
    lwa_emulator.inject(Fault.UNAVAILABLE)
    status, _, body = c.get(token)
    assert status == 503, body
    assert (c.mw.stats.stale_served, c.mw.stats.breaker_opened) == (0, 0)


def test_the_profile_call_asks_for_json_with_the_token_in_a_header(
    lwa_emulator: LWAEmulator, proxy: RewritingProxy, caller: Callable[..., Caller]
) -> None:
    # Fact P3 ("JSON only; clients may send Accept: application/json") and P1,
    # on the wire: the headers each middleware's HTTP stack really sent.
    seen: list[tuple[str, dict[str, str]]] = []

    def record(path: str, headers: dict[str, str]) -> dict[str, str]:
        seen.append((path, headers))
        return headers

    proxy.rewrite_request = record
    c = caller()
    token = lwa_emulator.issue_token(scopes=["profile"])
    assert c.get(token)[0] == 200
    (prof,) = [headers for path, headers in seen if path.startswith("/user/profile")]
    assert prof["accept"] == "application/json"
    assert prof["authorization"] == f"Bearer {token}"
    (info,) = [headers for path, headers in seen if path.startswith("/auth/o2/tokeninfo")]
    assert info["x-amz-access-token"] == token
    assert all(token not in path for path, _ in seen)


def _legacy_401(path: str, answer: Answer) -> Answer:
    """The emulator's old profile answer: 401 invalid_token, no request_id."""
    status, headers, _body = answer
    if path.startswith("/user/profile") and status == 400:
        data = json_answer(answer)
        if data.get("error") == "invalid_token":
            data.pop("request_id", None)
            return 401, headers, json.dumps(data).encode()
    return answer


def test_profile_401_invalid_token_still_means_a_rejected_token(
    lwa_emulator: LWAEmulator, proxy: RewritingProxy, caller: Callable[..., Caller]
) -> None:
    # The RFC 6750 shape (and the emulator's before it followed Amazon's page).
    proxy.rewrite_request = dead_profile_token
    proxy.rewrite_answer = _legacy_401
    c = caller()
    status, _, body = c.get(lwa_emulator.issue_token(scopes=["profile"]))
    assert status == 401
    assert body["error"] == "invalid_token"
    assert (c.mw.stats.rejected, c.mw.stats.upstream_errors) == (1, 0)


def _no_profile_token(path: str, headers: dict[str, str]) -> dict[str, str]:
    if path.startswith("/user/profile"):
        return {
            k: v for k, v in headers.items() if k not in ("authorization", "x-amz-access-token")
        }
    return headers


def test_profile_400_invalid_request_is_an_upstream_error_never_remembered(
    lwa_emulator: LWAEmulator, proxy: RewritingProxy, caller: Callable[..., Caller]
) -> None:
    # Fact P6: "400 invalid_request". Our request was malformed: the client
    # gets 503 (not its token's fault), and the token is not remembered as
    # rejected, so it works as soon as the request is right again.
    proxy.rewrite_request = _no_profile_token
    c = caller()
    token = lwa_emulator.issue_token(scopes=["profile"])
    status, headers, body = c.get(token)
    assert status == 503, body
    assert body["error"] == "temporarily_unavailable"
    assert int(headers["retry-after"]) >= 1
    assert (c.mw.stats.rejected, c.mw.stats.upstream_errors) == (0, 1)

    proxy.rewrite_request = None
    assert c.get(token)[0] == 200


def test_profile_500_server_error_is_a_503_with_retry_after(
    lwa_emulator: LWAEmulator, caller: Callable[..., Caller]
) -> None:
    # Fact P9: "500 ServerError". Straight from the emulator, no proxy rewriting.
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="profile", times=1)
    c = caller()
    token = lwa_emulator.issue_token(scopes=["profile"])
    status, headers, body = c.get(token)
    assert status == 503
    assert body["error"] == "temporarily_unavailable"
    assert int(headers["retry-after"]) >= 1
    assert c.mw.stats.upstream_errors == 1
    assert c.get(token)[0] == 200  # never cached


def test_profile_401_insufficient_scope_keeps_its_meaning(
    lwa_emulator: LWAEmulator, caller: Callable[..., Caller]
) -> None:
    # Fact P8: "401 insufficient_scope": a live token without profile scopes
    # proves who it is (tokeninfo), but not the scope a route needs.
    c = caller()
    token = lwa_emulator.issue_token(scopes=["alexa::ask_skills:readwrite"])
    status, _, body = c.get(token)
    assert status == 403
    assert body["error"] == "insufficient_scope"
    assert c.get(token, "/optional")[0] == 200
    assert (c.mw.stats.rejected, c.mw.stats.upstream_errors) == (0, 0)
