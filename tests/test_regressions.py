"""Regressions found in review: each test failed before its fix."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from werkzeug.test import Client

from lwa_middleware import Identity, LWAMiddleware, LWAWSGIMiddleware, get_identity
from lwa_middleware.errors import UpstreamUnavailable
from lwa_middleware.flow import UpstreamResponse, resolution_flow
from lwa_middleware.testing import LWAEmulator


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(app: LWAMiddleware, path: str, token: str | None = None, root: str = "") -> int:
    headers = [(b"authorization", b"Bearer " + token.encode())] if token else []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": root,
        "query_string": b"",
        "headers": headers,
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await app(scope, receive, send)
        await app.aclose()

    asyncio.run(run())
    status: int = sent[0]["status"]
    return status


def test_routes_below_a_root_path_keep_their_policy(lwa_emulator: LWAEmulator) -> None:
    app = LWAMiddleware(
        _ok,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={"/shipping": ["postal_code"], "/admin": "required"},
        default="public",
    )
    token = lwa_emulator.issue_token(scopes=["profile"])
    assert _call(app, "/svc/shipping", token, root="/svc") == 403
    assert _call(app, "/svc/admin", None, root="/svc") == 401
    assert _call(app, "/svcx/admin", None, root="/svc") == 200  # not below the root


@pytest.mark.parametrize("path", ["/admin\n", "/admin\r\n", "/files/a\n"])
def test_a_trailing_newline_does_not_escape_a_route(path: str, lwa_emulator: LWAEmulator) -> None:
    app = LWAMiddleware(
        _ok,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={"/admin": "required", "/files/**": "required"},
        default="public",
    )
    assert _call(app, path) == 401


def _flow_with(info_body: bytes, *, status: int = 200, retry_after: str | None = None) -> None:
    flow = resolution_flow(
        "Atza|x",
        tokeninfo_url="t",
        profile_url="p",
        client_ids=frozenset({"c"}),
        parallel=False,
    )
    next(flow)
    flow.send([UpstreamResponse(status, info_body, retry_after)])


def test_absurd_numbers_from_lwa_are_a_503_not_a_crash() -> None:
    body = b'{"aud": "c", "user_id": "u", "exp": 1' + b"0" * 400 + b"}"
    with pytest.raises(UpstreamUnavailable):
        _flow_with(body)
    for header in ("\u00b2", "9" * 5000):
        with pytest.raises(UpstreamUnavailable) as caught:
            _flow_with(b"{}", status=503, retry_after=header)
        assert caught.value.retry_after is None


def test_joined_token_headers_under_wsgi_are_two_tokens(lwa_emulator: LWAEmulator) -> None:
    app = LWAWSGIMiddleware(
        lambda e, s: (s("200 OK", []), [b"ok"])[1],
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
    )
    a, b = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    response = Client(app).get("/", environ_overrides={"HTTP_X_AMZ_ACCESS_TOKEN": f"{a},{b}"})
    assert response.status_code == 400
    assert json.loads(response.get_data())["error"] == "invalid_request"
    same = Client(app).get("/", environ_overrides={"HTTP_X_AMZ_ACCESS_TOKEN": f"{a}, {a}"})
    assert same.status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_get_identity_looks_in_meta_when_scope_lacks_it() -> None:
    identity = Identity(user_id="u", client_id="c", expires_at=0.0)

    class AsgiDjangoRequest:
        scope: dict[str, Any] = {"type": "http"}
        META = {"lwa.identity": identity}

    assert get_identity(AsgiDjangoRequest()) is identity


def test_wsgi_middleware_works_again_after_close(lwa_emulator: LWAEmulator) -> None:
    app = LWAWSGIMiddleware(
        lambda e, s: (s("200 OK", []), [b"ok"])[1],
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
    )
    client = Client(app)
    headers = {"Authorization": "Bearer " + lwa_emulator.issue_token()}
    assert client.get("/", headers=headers).status_code == 200
    app.close()
    headers = {"Authorization": "Bearer " + lwa_emulator.issue_token()}
    assert client.get("/", headers=headers).status_code == 200
