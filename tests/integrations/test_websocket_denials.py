"""Refused WebSocket handshakes say why, on real servers, to a real client.

Where the server offers the ASGI ``websocket.http.response`` extension
(uvicorn, hypercorn with asyncio or trio), a refused handshake is answered with the real HTTP
status, the JSON body and the ``WWW-Authenticate`` challenge or
``Retry-After``, exactly as over HTTP. Elsewhere the middleware closes the
handshake with 1008 (not allowed) or 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from support.servers import ASGI_SERVERS

from lwa_middleware import LWAMiddleware, get_identity
from lwa_middleware.testing import Fault, LWAEmulator

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402

Serve = Callable[[Any], AbstractContextManager[str]]


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    identity = get_identity(websocket)
    await websocket.send_json({"user_id": identity.user_id if identity else None})
    await websocket.close()


def _app(lwa: LWAEmulator, **options: Any) -> LWAMiddleware:
    return LWAMiddleware(
        Starlette(routes=[WebSocketRoute("/ws", _echo), WebSocketRoute("/zip", _echo)]),
        client_id=lwa.client_id,
        api_base_url=lwa.base_url,
        routes={"/zip": ["postal_code"]},
        **options,
    )


@pytest.fixture(params=sorted(ASGI_SERVERS))
def serve(request: pytest.FixtureRequest) -> Serve:
    # hypercorn's trio worker included: the async path runs on anyio.
    return ASGI_SERVERS[request.param]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _refusal(url: str, headers: dict[str, str] | None = None) -> Any:
    async def go() -> Any:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(url, additional_headers=headers or {}, open_timeout=10):
                pass
        return caught.value.response

    return asyncio.run(go())


def _accepted(url: str, headers: dict[str, str]) -> Any:
    async def go() -> Any:
        async with connect(url, additional_headers=headers, open_timeout=10) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    return asyncio.run(go())


def test_a_valid_token_is_accepted(serve: Serve, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    with serve(_app(lwa_emulator)) as base:
        url = base.replace("http", "ws") + "/ws"
        body = _accepted(url, {"Authorization": f"Bearer {token}"})
    assert body == {"user_id": lwa_emulator.customer_for(token).user_id}


def test_no_token_gets_401_with_the_challenge(serve: Serve, lwa_emulator: LWAEmulator) -> None:
    with serve(_app(lwa_emulator)) as base:
        response = _refusal(base.replace("http", "ws") + "/ws")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="lwa"'
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.body)["error"] == "missing_token"


def test_a_bad_token_gets_401_invalid_token(serve: Serve, lwa_emulator: LWAEmulator) -> None:
    with serve(_app(lwa_emulator)) as base:
        response = _refusal(
            base.replace("http", "ws") + "/ws", {"Authorization": "Bearer Atza|" + "x" * 400}
        )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert json.loads(response.body)["error"] == "invalid_token"


def test_a_missing_scope_gets_403_with_scope(serve: Serve, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    with serve(_app(lwa_emulator)) as base:
        response = _refusal(base.replace("http", "ws") + "/zip", _bearer(token))
    assert response.status_code == 403
    assert 'scope="postal_code"' in response.headers["WWW-Authenticate"]
    assert json.loads(response.body)["error"] == "insufficient_scope"


def test_lwa_down_gets_503_with_retry_after(serve: Serve, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.DOWN)
    with serve(_app(lwa_emulator, retry_after=7)) as base:
        response = _refusal(base.replace("http", "ws") + "/ws", _bearer(token))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert "WWW-Authenticate" not in response.headers
    assert json.loads(response.body)["error"] == "temporarily_unavailable"


@pytest.mark.parametrize(("fault", "code"), [(None, 1008), (Fault.DOWN, 1013)])
def test_without_the_extension_the_handshake_is_closed_with_a_code(
    fault: Fault | None, code: int, lwa_emulator: LWAEmulator
) -> None:
    """Servers without ``websocket.http.response`` (daphne, older uvicorn)."""
    token = lwa_emulator.issue_token()
    if fault is not None:
        lwa_emulator.inject(fault)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    scope = {
        "type": "websocket", "path": "/ws", "root_path": "", "query_string": b"",
        "headers": [] if fault is None else [(b"authorization", f"Bearer {token}".encode())],
    }
    mw = _app(lwa_emulator)

    async def run() -> None:
        await mw(scope, receive, send)
        await mw.aclose()

    asyncio.run(run())
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == code
