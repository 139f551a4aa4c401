"""Cache-hit cost: LWAMiddleware vs Starlette's AuthenticationMiddleware vs a bare floor.

Every variant wraps the same bare ASGI app and is called in-process with the
same request (a cached token in ``Authorization: Bearer``), so the figures are
whole-request times without sockets. They are CPU times of this process
(``time.process_time``), which other processes on a shared machine disturb
less than wall-clock time. Variants run interleaved, round after
round, and each figure is the median of the rounds: a noisy neighbour slows
all of them alike, so the *ratios* are what to read.

Run: ``python benchmarks/bench_hot_path.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

HEADERS_TEMPLATE = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) bench"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"connection", b"keep-alive"),
]


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class FloorMiddleware:
    """The least any token middleware can do: find the header, look it up, set the key."""

    def __init__(self, app: Any, table: dict[bytes, Any]) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scope["lwa.identity"] = self.table.get(value[7:])
                    break
        await self.app(scope, receive, send)


class HashingFloorMiddleware(FloorMiddleware):
    """The floor, plus the whole-token SHA-256 any safe cache key costs."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scope["lwa.identity"] = self.table.get(hashlib.sha256(value[7:]).digest())
                    break
        await self.app(scope, receive, send)


class DictBackend(AuthenticationBackend):
    def __init__(self, table: dict[str, tuple[AuthCredentials, BaseUser]]) -> None:
        self.table = table

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        return self.table.get(header[7:])


class HashingDictBackend(DictBackend):
    """The dict backend keyed as a safe cache must be: on the token's SHA-256."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        return self.table.get(hashlib.sha256(header[7:].encode()).hexdigest())


def _scope(token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/api/orders",
        "raw_path": b"/api/orders",
        "root_path": "",
        "query_string": b"page=2",
        "headers": [*HEADERS_TEMPLATE, (b"authorization", b"Bearer " + token.encode())],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


async def _time_asgi(app: Any, scope: dict[str, Any], n: int) -> float:
    headers = scope["headers"]
    start = time.process_time()
    for _ in range(n):
        # A fresh scope per request, as a server gives; every variant pays it.
        s = dict(scope)
        s["headers"] = headers
        await app(s, _receive, _send)
    return (time.process_time() - start) / n * 1e6


def _time_wsgi(app: Any, environ: dict[str, Any], n: int) -> float:
    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        return None

    start = time.process_time()
    for _ in range(n):
        body = app(dict(environ), start_response)
        for _chunk in body:
            pass
    return (time.process_time() - start) / n * 1e6


def _interleave(
    variants: dict[str, Callable[[int], float]], rounds: int, n: int
) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():  # warm-up
        run(max(100, n // 10))
    for _ in range(rounds):
        for name, run in variants.items():
            samples[name].append(run(n))
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_asgi(emulator: LWAEmulator, rounds: int = 7, n: int = 20_000) -> dict[str, float]:
    token = emulator.issue_token(scopes=["profile"])
    lwa = LWAMiddleware(bare_app, client_id=emulator.client_id, api_base_url=emulator.base_url)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(lwa(_scope(token), _receive, _send))  # warm the cache
        assert lwa.stats.misses == 1
        user = SimpleUser("amzn1.account.X")
        starlette_mw = AuthenticationMiddleware(
            bare_app, backend=DictBackend({token: (AuthCredentials(["profile"]), user)})
        )
        hashing_starlette = AuthenticationMiddleware(
            bare_app,
            backend=HashingDictBackend(
                {hashlib.sha256(token.encode()).hexdigest(): (AuthCredentials(["profile"]), user)}
            ),
        )
        floor = FloorMiddleware(bare_app, {token.encode(): object()})
        hashing = HashingFloorMiddleware(
            bare_app, {hashlib.sha256(token.encode()).digest(): object()}
        )
        scope = _scope(token)

        def runner(app: Any) -> Callable[[int], float]:
            return lambda k: loop.run_until_complete(_time_asgi(app, scope, k))

        result = _interleave(
            {
                "bare app": runner(bare_app),
                "floor middleware": runner(floor),
                "floor + SHA-256": runner(hashing),
                "Starlette AuthenticationMiddleware": runner(starlette_mw),
                "Starlette AuthenticationMiddleware, SHA-256 key": runner(hashing_starlette),
                "LWAMiddleware": runner(lwa),
            },
            rounds,
            n,
        )
        assert lwa.stats.misses == 1, "the benchmark must measure cache hits only"
        loop.run_until_complete(lwa.aclose())
        return result
    finally:
        loop.close()


def _wsgi_bare(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _wsgi_floor(table: dict[str, Any]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION")
        environ["lwa.identity"] = table.get(header[7:]) if header else None
        return _wsgi_bare(environ, start_response)

    return app


def _wsgi_hashing_floor(table: dict[bytes, Any]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION")
        environ["lwa.identity"] = (
            table.get(hashlib.sha256(header[7:].encode("latin-1")).digest()) if header else None
        )
        return _wsgi_bare(environ, start_response)

    return app


def bench_wsgi(emulator: LWAEmulator, rounds: int = 7, n: int = 20_000) -> dict[str, float]:
    token = emulator.issue_token(scopes=["profile"])
    lwa = LWAWSGIMiddleware(
        _wsgi_bare, client_id=emulator.client_id, api_base_url=emulator.base_url
    )
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/orders",
        "QUERY_STRING": "page=2",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "api.example.com",
        "HTTP_ACCEPT": "application/json",
        "HTTP_USER_AGENT": "bench",
        "HTTP_AUTHORIZATION": "Bearer " + token,
        "wsgi.url_scheme": "https",
    }
    _time_wsgi(lwa, environ, 1)  # warm the cache
    assert lwa.stats.misses == 1
    result = _interleave(
        {
            "bare app": lambda k: _time_wsgi(_wsgi_bare, environ, k),
            "floor middleware": lambda k: _time_wsgi(_wsgi_floor({token: object()}), environ, k),
            "floor + SHA-256": lambda k: _time_wsgi(
                _wsgi_hashing_floor({hashlib.sha256(token.encode()).digest(): object()}),
                environ,
                k,
            ),
            "LWAWSGIMiddleware": lambda k: _time_wsgi(lwa, environ, k),
        },
        rounds,
        n,
    )
    assert lwa.stats.misses == 1
    lwa.close()
    return result


def main() -> None:
    with LWAEmulator() as emulator:
        asgi = bench_asgi(emulator)
        wsgi = bench_wsgi(emulator)
    print("ASGI, µs per cache-hit request:")
    for name, value in asgi.items():
        print(f"  {name:50s} {value:8.2f}")
    ratio = asgi["LWAMiddleware"] / asgi["Starlette AuthenticationMiddleware"]
    print(f"  LWA / Starlette auth: {ratio:.2f}")
    print(f"  LWA / floor:          {asgi['LWAMiddleware'] / asgi['floor middleware']:.2f}")
    print("WSGI, µs per cache-hit request:")
    for name, value in wsgi.items():
        print(f"  {name:50s} {value:8.2f}")
    print(f"  LWA / floor:          {wsgi['LWAWSGIMiddleware'] / wsgi['floor middleware']:.2f}")


if __name__ == "__main__":
    main()
