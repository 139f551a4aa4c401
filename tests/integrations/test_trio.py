"""The ASGI middleware under trio: Starlette's TestClient, hypercorn's trio
worker, single-flight across trio tasks, and the shared cache (whose asyncio
client trio cannot use, so its blocking client runs in a worker thread)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from integration_support import bearer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from lwa_middleware import LWAMiddleware, get_identity
from lwa_middleware.testing import Fault, LWAEmulator

trio = pytest.importorskip("trio")


async def _who(request: Request) -> JSONResponse:
    identity = get_identity(request)
    return JSONResponse({"user_id": identity.user_id if identity else None})


def _app(lwa: LWAEmulator, **options: Any) -> LWAMiddleware:
    inner = Starlette(routes=[Route("/me", _who), Route("/", _who), Route("/health", _who)])
    return LWAMiddleware(
        inner,
        client_id=lwa.client_id,
        api_base_url=lwa.base_url,
        routes={"/health": "public", "/": "optional"},
        **options,
    )


def test_starlette_test_client_on_trio(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    with TestClient(_app(lwa_emulator), backend="trio") as client:
        assert client.get("/me", headers=bearer(token)).json() == {
            "user_id": lwa_emulator.customer_for(token).user_id
        }
        assert client.get("/me", headers=bearer(token)).status_code == 200
        assert client.get("/me").status_code == 401
        assert client.get("/").json() == {"user_id": None}
        assert client.get("/health").status_code == 200
        lwa_emulator.inject(Fault.DOWN)
        refused = client.get("/me", headers=bearer(lwa_emulator.issue_token()))
        assert refused.status_code == 503
        assert "retry-after" in refused.headers
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_trio_tasks_share_one_lookup(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.2)
    app = _app(lwa_emulator)
    statuses: list[int] = []

    async def main() -> None:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:

            async def one() -> None:
                statuses.append((await client.get("/me", headers=bearer(token))).status_code)

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(one)
        await app.aclose()

    trio.run(main)
    assert statuses == [200] * 20
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert app.stats.coalesced == 19


def test_a_cancelled_trio_leader_does_not_cancel_the_shared_lookup(
    lwa_emulator: LWAEmulator,
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.3)
    app = _app(lwa_emulator)
    statuses: list[int] = []

    async def main() -> None:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:

            async def one() -> None:
                statuses.append((await client.get("/me", headers=bearer(token))).status_code)

            leader_scope = trio.CancelScope()
            async with trio.open_nursery() as outer:
                outer.start_soon(_cancellable, leader_scope, client, token)
                await trio.sleep(0.05)
                for _ in range(5):
                    outer.start_soon(one)
                await trio.sleep(0.05)
                leader_scope.cancel()
        await app.aclose()

    trio.run(main)
    assert statuses == [200] * 5
    assert lwa_emulator.calls["tokeninfo"] == 1


async def _cancellable(scope: Any, client: httpx2.AsyncClient, token: str) -> None:
    with scope:
        await client.get("/me", headers=bearer(token))


@contextlib.contextmanager
def _hypercorn_trio(app: Any) -> Iterator[str]:
    pytest.importorskip("hypercorn")
    from hypercorn.config import Config
    from hypercorn.trio import serve

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    fd = sock.detach()  # hypercorn owns (and closes) the listening socket
    config = Config()
    config.bind = [f"fd://{fd}"]
    config.loglevel = "ERROR"
    state: dict[str, Any] = {}
    started = threading.Event()

    async def main() -> None:
        state["token"] = trio.lowlevel.current_trio_token()
        state["stop"] = trio.Event()
        started.set()
        await serve(app, config, shutdown_trigger=state["stop"].wait)

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert started.wait(20)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx2.get(url + "/health", timeout=2)
            break
        except httpx2.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield url
    finally:
        trio.from_thread.run_sync(state["stop"].set, trio_token=state["token"])
        thread.join(20)


def test_hypercorn_trio_worker(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    poor = lwa_emulator.issue_token(scopes=["profile"])
    app = LWAMiddleware(
        Starlette(routes=[Route("/me", _who), Route("/health", _who), Route("/zip", _who)]),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={"/health": "public", "/zip": ["postal_code"]},
    )
    with _hypercorn_trio(app) as base, httpx2.Client(base_url=base, timeout=10) as client:
        assert client.get("/me", headers=bearer(token)).json() == {
            "user_id": lwa_emulator.customer_for(token).user_id
        }
        assert client.get("/me").status_code == 401
        assert client.get("/zip", headers=bearer(poor)).status_code == 403
        for _ in range(5):
            assert client.get("/me", headers=bearer(token)).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 2


@pytest.mark.redis
def test_the_shared_cache_works_under_trio(lwa_emulator: LWAEmulator) -> None:
    from shared_cache_support import RedisServer, redis_binary

    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary)
    server.start()
    try:
        options = {"redis_url": server.url, "cache_key_secret": "k" * 32}
        token = lwa_emulator.issue_token()
        with TestClient(_app(lwa_emulator, **options), backend="trio") as trio_client:
            assert trio_client.get("/me", headers=bearer(token)).status_code == 200
        # Another worker (asyncio this time) finds the entry trio wrote.
        other = _app(lwa_emulator, **options)
        with TestClient(other) as asyncio_client:
            assert asyncio_client.get("/me", headers=bearer(token)).status_code == 200
        assert lwa_emulator.calls["tokeninfo"] == 1
        assert other.stats.shared_hits == 1
    finally:
        server.close()
