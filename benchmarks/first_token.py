"""One worker's first token, timed in a fresh interpreter (run by ``bench_scale.py``).

``python first_token.py asgi|wsgi warm|lazy BASE_URL VERIFY CLIENT_ID TOKEN``
prints the seconds the first request took. The app is imported and built
first, as a worker does at boot; *warm* then lets the middleware warm up the
way a server would (ASGI: lifespan startup; WSGI: construction itself, then
the 0.2 s a worker takes to start accepting), *lazy* switches the
warm start off (everything is built by the first lookup, as before).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].replace("lifespan.", "")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"ok"]


async def _asgi(warm: bool, options: dict[str, Any], token: str) -> float:
    app = LWAMiddleware(_app, **options)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    lifespan = None
    if warm:
        lifespan = asyncio.ensure_future(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, lifespan_send)
        )
        await inbox.put({"type": "lifespan.startup"})
        await started.wait()
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer " + token.encode())],
    }
    start = time.perf_counter()
    await app(scope, receive, send)
    took = time.perf_counter() - start
    assert statuses == [200], statuses
    if lifespan is not None:
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
    else:
        await app.aclose()
    return took


def _wsgi(warm: bool, options: dict[str, Any], token: str) -> float:
    if not warm:
        LWAWSGIMiddleware._warm = lambda self: None  # type: ignore[method-assign]
    app = LWAWSGIMiddleware(_wsgi_app, **options)
    time.sleep(0.2)  # the worker starts accepting
    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_AUTHORIZATION": "Bearer " + token}
    start = time.perf_counter()
    b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    took = time.perf_counter() - start
    assert status[0].startswith("200"), status
    app.close()
    return took


def main() -> None:
    adapter, mode, base_url, verify, client_id, token = sys.argv[1:7]
    options = {"client_id": client_id, "api_base_url": base_url, "verify": verify}
    warm = mode == "warm"
    took = asyncio.run(_asgi(warm, options, token)) if adapter == "asgi" else _wsgi(
        warm, options, token
    )
    print(took)


if __name__ == "__main__":
    main()
