"""Falcon: ``get_identity`` on its WSGI request (``req.env``) and ASGI request (``req.scope``).

A real Falcon app behind each middleware, on the server users run it with:
``falcon.App`` behind ``LWAWSGIMiddleware`` on Werkzeug's threaded server,
``falcon.asgi.App`` behind ``LWAMiddleware`` on uvicorn.
"""

from __future__ import annotations

from typing import Any

import pytest
from integration_support import (
    IDENTITY_ROUTES,
    exercise_identity_routes,
    identity_body,
    uvicorn_server,
    wsgi_server,
)

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, get_identity
from lwa_middleware.testing import LWAEmulator

falcon = pytest.importorskip("falcon")
falcon_asgi = pytest.importorskip("falcon.asgi")


class Resource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = identity_body(req)


class AsyncResource:
    async def on_get(self, req: Any, resp: Any) -> None:
        resp.media = identity_body(req)


def _add_routes(app: Any, resource: Any) -> Any:
    for path in ("/health", "/", "/me", "/shipping"):
        app.add_route(path, resource)
    return app


def test_get_identity_reads_falcon_wsgi_env(lwa_emulator: LWAEmulator) -> None:
    app = _add_routes(falcon.App(), Resource())
    protected = LWAWSGIMiddleware(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes=IDENTITY_ROUTES,
    )
    with wsgi_server(protected) as url:
        exercise_identity_routes(url, lwa_emulator)


def test_get_identity_reads_falcon_asgi_scope(lwa_emulator: LWAEmulator) -> None:
    app = _add_routes(falcon_asgi.App(), AsyncResource())
    protected = LWAMiddleware(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes=IDENTITY_ROUTES,
    )
    with uvicorn_server(protected) as url:
        exercise_identity_routes(url, lwa_emulator)


def test_falcon_requests_expose_what_get_identity_reads() -> None:
    # The attribute names this test relies on, checked without a server.
    from falcon import testing

    env = testing.create_environ("/me")
    env["lwa.identity"] = None
    assert falcon.Request(env).env is env
    assert get_identity(falcon.Request(env)) is None
