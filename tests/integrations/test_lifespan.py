"""Clean shutdown: lifespan still reaches the app, and the middleware's pooled
clients (httpx to LWA, redis) are closed at shutdown, or, when nobody runs
lifespan, when their event loop shuts down: never left to the garbage
collector with sockets open (``ResourceWarning``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from integration_support import bearer, uvicorn_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from support.private import private_async_driver

from lwa_middleware import LWAMiddleware
from lwa_middleware.testing import LWAEmulator


def _app(lwa: LWAEmulator, events: list[str]) -> LWAMiddleware:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return LWAMiddleware(
        Starlette(routes=[Route("/me", me)], lifespan=lifespan),
        client_id=lwa.client_id,
        api_base_url=lwa.base_url,
    )


def _open_upstream_clients(mw: LWAMiddleware) -> int:
    driver = private_async_driver(mw)
    return 0 if driver is None else sum(k.ag_frame is not None for k in driver._keepers)


def test_lifespan_reaches_the_app_and_shutdown_closes_the_clients(
    lwa_emulator: LWAEmulator,
) -> None:
    events: list[str] = []
    mw = _app(lwa_emulator, events)
    with TestClient(mw) as client:
        assert events == ["startup"]
        assert client.get("/me", headers=bearer(lwa_emulator.issue_token())).status_code == 200
        assert _open_upstream_clients(mw) == 1
    assert events == ["startup", "shutdown"]
    assert _open_upstream_clients(mw) == 0


def test_uvicorn_lifespan_shutdown_closes_the_clients(lwa_emulator: LWAEmulator) -> None:
    events: list[str] = []
    mw = _app(lwa_emulator, events)
    with uvicorn_server(mw, lifespan="on") as base:
        response = httpx2.get(base + "/me", headers=bearer(lwa_emulator.issue_token()), timeout=10)
        assert response.status_code == 200
        assert _open_upstream_clients(mw) == 1
    assert events == ["startup", "shutdown"]
    assert _open_upstream_clients(mw) == 0


@pytest.mark.parametrize("with_redis", [False, True])
def test_no_socket_is_left_to_the_garbage_collector(with_redis: bool, tmp_path: Path) -> None:
    """A test client without ``with`` runs no lifespan and starts an event loop
    per request: each loop's clients are closed as it shuts down."""
    if with_redis:
        pytest.importorskip("redis")
    script = tmp_path / "leaks.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import gc, sys
            sys.path.insert(0, {str(Path(__file__).parents[1])!r})
            from starlette.applications import Starlette
            from starlette.responses import JSONResponse
            from starlette.routing import Route
            from starlette.testclient import TestClient
            from lwa_middleware import LWAMiddleware
            from lwa_middleware.testing import LWAEmulator

            async def me(request):
                return JSONResponse({{"ok": True}})

            def main(options):
                with LWAEmulator() as lwa:
                    app = LWAMiddleware(
                        Starlette(routes=[Route("/me", me)]),
                        client_id=lwa.client_id, api_base_url=lwa.base_url, **options,
                    )
                    client = TestClient(app)
                    for _ in range(3):
                        token = lwa.issue_token()
                        auth = {{"Authorization": "Bearer " + token}}
                        assert client.get("/me", headers=auth).status_code == 200
                    del client, app
                    gc.collect()

            if {with_redis!r}:
                from shared_cache_support import RedisServer, redis_binary
                server = RedisServer(redis_binary())
                server.start()
                try:
                    main({{"redis_url": server.url, "cache_key_secret": "k" * 32}})
                finally:
                    server.close()
            else:
                main({{}})
            gc.collect()
            print("clean")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ResourceWarning" not in result.stderr, result.stderr[-3000:]
    assert result.stdout.strip().endswith("clean")
