"""Real servers over loopback sockets: single-flight across uvicorn tasks and
threaded-server threads, and websockets through uvicorn. (The error table over
uvicorn and waitress is ``test_contract.py``.)"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from urllib.parse import quote

import httpx2
import pytest
from support.servers import serve_uvicorn, serve_wsgiref

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

try:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect
except ImportError:  # pragma: no cover
    ws_connect = None


def test_uvicorn_concurrent_requests_share_one_lookup(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.2)

    async def burst(base: str) -> list[int]:
        async with httpx2.AsyncClient(base_url=base, timeout=10) as client:
            responses = await asyncio.gather(
                *(
                    client.get("/me", headers={"Authorization": f"Bearer {token}"})
                    for _ in range(20)
                )
            )
        return [r.status_code for r in responses]

    with serve_uvicorn(make_asgi()) as base:
        assert asyncio.run(burst(base)) == [200] * 20
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1


def test_threaded_wsgi_server_concurrent_requests_share_one_lookup(
    lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.2)
    mw = make_wsgi()
    n = 16
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(base: str) -> None:
        with httpx2.Client(base_url=base, timeout=10) as client:
            barrier.wait(timeout=10)
            status = client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code
        with lock:
            statuses.append(status)

    with serve_wsgiref(mw) as base:
        threads = [threading.Thread(target=worker, args=(base,)) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
    mw.close()
    assert statuses == [200] * n
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1


@pytest.mark.skipif(ws_connect is None, reason="the websockets package is not installed")
def test_uvicorn_websocket(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    user_id = lwa_emulator.customer_for(token).user_id
    with serve_uvicorn(make_asgi(), ws="auto") as base:
        ws_base = base.replace("http://", "ws://")
        with ws_connect(
            ws_base + "/ws", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5
        ) as ws:
            assert ws.recv(timeout=5) == '{"user_id":"' + user_id + '"}'
        with ws_connect(
            ws_base + "/ws?access_token=" + quote(token, safe=""), open_timeout=5
        ) as ws:
            assert user_id in ws.recv(timeout=5)
        for headers in ({}, {"Authorization": "Bearer Atza|" + "w" * 400}):
            with (
                pytest.raises(InvalidStatus) as excinfo,
                ws_connect(ws_base + "/ws", additional_headers=headers, open_timeout=5),
            ):
                pass  # pragma: no cover - the handshake must fail
            # uvicorn offers websocket.http.response: the refusal says why.
            assert excinfo.value.response.status_code == 401
        with ws_connect(ws_base + "/public/ws", open_timeout=5) as ws:
            assert ws.recv(timeout=5) == '{"user_id":null}'
