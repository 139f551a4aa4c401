"""Sanic: a Sanic app behind ``LWAMiddleware``, as an ASGI app on uvicorn.

Sanic is an ASGI app when an ASGI server runs it (its own server runs only
Sanic apps, so no ASGI middleware sits in front there). ``get_identity``
reads ``request.scope``, which Sanic exposes in ASGI mode; lifespan runs
Sanic's start-up and, through the middleware, closes its LWA clients at
shutdown. WebSockets: uvicorn offers ``websocket.http.response``, so a
refused handshake gets the real 401.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from integration_support import (
    IDENTITY_ROUTES,
    bearer,
    exercise_identity_routes,
    identity_body,
)
from support.servers import serve_uvicorn

from lwa_middleware import LWAMiddleware
from lwa_middleware.testing import LWAEmulator

sanic = pytest.importorskip("sanic")
websockets = pytest.importorskip("websockets")
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402


def _sanic_app() -> Any:
    app = sanic.Sanic("lwa_sanic_test", configure_logging=False)

    async def view(request: Any) -> Any:
        return sanic.response.json(identity_body(request))

    for path in ("/health", "/", "/me", "/shipping"):
        app.add_route(view, path, name=path.strip("/") or "root")

    @app.websocket("/ws")
    async def ws(request: Any, socket: Any) -> None:
        await socket.send(json.dumps(identity_body(request)))

    return app


@pytest.fixture(scope="module")
def url(lwa_emulator_server: LWAEmulator) -> Iterator[str]:
    protected = LWAMiddleware(
        _sanic_app(),
        client_id=lwa_emulator_server.client_id,
        api_base_url=lwa_emulator_server.base_url,
        routes=IDENTITY_ROUTES,
    )
    with serve_uvicorn(protected, lifespan="on", ws="auto") as base:
        yield base


def test_get_identity_reads_the_sanic_request(url: str, lwa_emulator: LWAEmulator) -> None:
    exercise_identity_routes(url, lwa_emulator)


def test_sanic_websocket(url: str, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    ws_url = url.replace("http://", "ws://") + "/ws"
    with connect(ws_url, additional_headers=bearer(token), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["user_id"] == (
            lwa_emulator.customer_for(token).user_id
        )
    with pytest.raises(InvalidStatus) as caught, connect(ws_url, open_timeout=10):
        pass  # pragma: no cover - the handshake must fail
    assert caught.value.response.status_code == 401
    assert caught.value.response.headers["WWW-Authenticate"] == 'Bearer realm="lwa"'
    assert json.loads(caught.value.response.body)["error"] == "missing_token"
