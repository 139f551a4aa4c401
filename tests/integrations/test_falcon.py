"""Falcon: ``get_identity`` on its WSGI request (``req.env``) and ASGI request (``req.scope``).

A real Falcon app behind each middleware, on the server users run it with:
``falcon.App`` behind ``LWAWSGIMiddleware`` on Werkzeug's threaded server,
``falcon.asgi.App`` behind ``LWAMiddleware`` on uvicorn.
"""

from __future__ import annotations

from typing import Any

import pytest
from integration_support import (
    assert_insufficient,
    assert_missing_token,
    bearer,
    http_client,
    uvicorn_server,
    wsgi_server,
)

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, get_identity
from lwa_middleware.testing import LWAEmulator

falcon = pytest.importorskip("falcon")
falcon_asgi = pytest.importorskip("falcon.asgi")

ROUTES = {"/health": "public", "/": "optional", "/shipping": ["postal_code"]}


def _body(req: Any) -> dict[str, Any]:
    identity = get_identity(req)
    return {
        "user_id": identity.user_id if identity else None,
        "postal_code": identity.postal_code if identity else None,
    }


class Resource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = _body(req)


class AsyncResource:
    async def on_get(self, req: Any, resp: Any) -> None:
        resp.media = _body(req)


def _add_routes(app: Any, resource: Any) -> Any:
    for path in ("/health", "/", "/me", "/shipping"):
        app.add_route(path, resource)
    return app


def _exercise(url: str, lwa: LWAEmulator) -> None:
    full = lwa.issue_token(scopes=["profile", "postal_code"], postal_code="10115")
    poor = lwa.issue_token(scopes=["profile"])
    user_id = lwa.customer_for(full).user_id
    with http_client(url) as client:
        assert client.get("/health", headers=bearer(full)).json()["user_id"] is None
        assert client.get("/").json() == {"user_id": None, "postal_code": None}
        assert client.get("/", headers=bearer(full)).json()["user_id"] == user_id
        assert client.get("/me", headers=bearer(full)).json()["user_id"] == user_id
        assert client.get("/shipping", headers=bearer(full)).json() == {
            "user_id": user_id,
            "postal_code": "10115",
        }
        assert_missing_token(client.get("/me"))
        assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
    assert lwa.calls["tokeninfo"] == 2


def test_get_identity_reads_falcon_wsgi_env(lwa_emulator: LWAEmulator) -> None:
    app = _add_routes(falcon.App(), Resource())
    protected = LWAWSGIMiddleware(
        app, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url, routes=ROUTES
    )
    with wsgi_server(protected) as url:
        _exercise(url, lwa_emulator)


def test_get_identity_reads_falcon_asgi_scope(lwa_emulator: LWAEmulator) -> None:
    app = _add_routes(falcon_asgi.App(), AsyncResource())
    protected = LWAMiddleware(
        app, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url, routes=ROUTES
    )
    with uvicorn_server(protected) as url:
        _exercise(url, lwa_emulator)


def test_falcon_requests_expose_what_get_identity_reads() -> None:
    # The attribute names this test relies on, checked without a server.
    from falcon import testing

    env = testing.create_environ("/me")
    env["lwa.identity"] = None
    assert falcon.Request(env).env is env
    assert get_identity(falcon.Request(env)) is None
