"""Real servers over loopback sockets: uvicorn (ASGI) and a threaded WSGI server."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import uvicorn

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

try:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect
except ImportError:  # pragma: no cover
    ws_connect = None


@contextlib.contextmanager
def run_uvicorn(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL."""
    # log_config=None: do not let uvicorn reconfigure logging for the whole run.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        ws="auto",
        log_config=None,
        log_level=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def run_wsgi(app: Any) -> Iterator[str]:
    """Serve ``app`` with a threaded ``wsgiref`` server; yield its base URL."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _contract_over_sockets(base: str, lwa: LWAEmulator) -> None:
    valid = lwa.issue_token(scopes=["profile"], name="Ada")
    with httpx.Client(base_url=base, timeout=10) as client:
        ok = client.get("/me", headers={"Authorization": f"Bearer {valid}"})
        assert ok.status_code == 200
        assert ok.json()["identity"]["name"] == "Ada"
        by_query = client.get("/me?access_token=" + quote(valid, safe=""))
        assert by_query.status_code == 200

        missing = client.get("/me")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="lwa"'
        assert missing.headers["content-type"] == "application/json"

        invalid = client.get("/me", headers={"Authorization": "Bearer Atza|" + "i" * 400})
        assert invalid.status_code == 401
        assert invalid.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in invalid.headers["www-authenticate"]

        malformed = client.get("/me", headers={"Authorization": "Bearer a b"})
        assert malformed.status_code == 400

        forbidden = client.get("/zip", headers={"Authorization": f"Bearer {valid}"})
        assert forbidden.status_code == 403
        assert 'scope="postal_code"' in forbidden.headers["www-authenticate"]

        public = client.get("/public/x", headers={"Authorization": "Bearer a b"})
        assert public.status_code == 200

        lwa.inject(Fault.DOWN)
        fresh = lwa.issue_token()
        down = client.get("/me", headers={"x-amz-access-token": fresh})
        assert down.status_code == 503
        assert int(down.headers["retry-after"]) >= 1
        assert "www-authenticate" not in down.headers
        lwa.clear_faults()
        assert client.get("/me", headers={"x-amz-access-token": fresh}).status_code == 200
    assert lwa.token_in_url == 0


def test_uvicorn(lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]) -> None:
    with run_uvicorn(make_asgi()) as base:
        _contract_over_sockets(base, lwa_emulator)


def test_threaded_wsgi_server(
    lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    mw = make_wsgi()
    with run_wsgi(mw) as base:
        _contract_over_sockets(base, lwa_emulator)
    mw.close()


def test_uvicorn_concurrent_requests_share_one_lookup(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.2)

    async def burst(base: str) -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            responses = await asyncio.gather(
                *(
                    client.get("/me", headers={"Authorization": f"Bearer {token}"})
                    for _ in range(20)
                )
            )
        return [r.status_code for r in responses]

    with run_uvicorn(make_asgi()) as base:
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
        with httpx.Client(base_url=base, timeout=10) as client:
            barrier.wait(timeout=10)
            status = client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code
        with lock:
            statuses.append(status)

    with run_wsgi(mw) as base:
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
    with run_uvicorn(make_asgi()) as base:
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
